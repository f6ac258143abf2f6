//! Snapshots (issue 8, log compaction): the records that rebuild a [`State`]
//! ([`State::snapshot`]), what such a rebuild holds ([`State::retained`]), and the replay of
//! those records: collecting the images while a snapshot is open, then checking and
//! installing the state they make at `SnapshotFinished`.
//!
//! The images (`event::RunImage`, ...) are wire types; the conversions below destructure every
//! struct whole, so a field added to `Run` or `Batch` and forgotten here does not compile.

use std::collections::BTreeSet;

use super::batches::Batches;

use crate::event::{
    chunk_images, ActivityImage, BatchErrorImage, BatchImage, BatchStatusImage, ClaimImage,
    ConflictImage, CountsImage, Event, RunEndImage, RunImage, RunSettingsImage, SnapshotActivity,
    SnapshotBatches, SnapshotClaims, SnapshotConflicts, SnapshotFinished, SnapshotRuns,
    SnapshotSettings, SnapshotStarted, StepImage, PAYLOAD_BYTES_MAX, SNAPSHOT_CHUNK_BYTES_MAX,
};

use super::{
    Activity, Batch, BatchError, BatchStatus, Claim, Conflict, Counts, LiveSettings, Problem, Run,
    RunEnd, State, Step, CONFLICTS_STORED_MAX,
};

/// Why [`State::snapshot`] gives no records.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotRefused {
    /// Nothing to snapshot: no `LogCreated` (or snapshot) applied yet.
    #[error("the log is empty: there is no state to snapshot")]
    Empty,
    /// A snapshot is half-applied: the state is the one before it, the log is mid-compaction.
    #[error("the snapshot started at lsn {started_lsn} is not finished")]
    Open {
        /// LSN of its `SnapshotStarted`.
        started_lsn: u64,
    },
    /// One image does not fit a record (a key beyond any server's key length).
    #[error("a {record} record would carry {bytes} bytes, more than a record holds")]
    TooLarge {
        /// The record's name.
        record: &'static str,
        /// Its payload size.
        bytes: usize,
    },
}

/// A snapshot between its `SnapshotStarted` and its `SnapshotFinished`: the images so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct OpenSnapshot {
    /// LSN of `SnapshotStarted`.
    started_lsn: u64,
    /// The `SnapshotStarted` record.
    header: SnapshotStarted,
    /// Run images received.
    pub(super) runs: Vec<RunImage>,
    /// Batch images received.
    pub(super) batches: Vec<BatchImage>,
    /// Conflict images received.
    pub(super) conflicts: Vec<ConflictImage>,
    /// Activity images received (not announced: at most one per run).
    pub(super) activity: Vec<ActivityImage>,
    /// Run settings images received (not announced: at most one per run).
    pub(super) settings: Vec<RunSettingsImage>,
    /// Unconfirmed commit images received (not announced: at most one per batch).
    pub(super) claims: Vec<ClaimImage>,
}

impl OpenSnapshot {
    /// Images of each kind: name, announced, received.
    fn tallies(&self) -> [(&'static str, u64, usize); 3] {
        [
            ("run", self.header.runs, self.runs.len()),
            ("batch", self.header.batches, self.batches.len()),
            ("conflict", self.header.conflicts, self.conflicts.len()),
        ]
    }
}

impl State {
    /// The records that rebuild this state, in order: `SnapshotStarted`, chunks of runs, of
    /// the live settings of the runs that have some, of batches, of conflicts, of run activity
    /// (each payload at most [`SNAPSHOT_CHUNK_BYTES_MAX`] bytes unless one
    /// image alone is larger), `SnapshotFinished`. Replayed alone, or after the log they cover,
    /// they rebuild [`State::retained`]`(keep_runs)`: every run with its counts, every batch not
    /// done, the done batches of the last `keep_runs` runs, the stored conflicts, the totals.
    /// `taken_unix_us` is the caller's clock (informational).
    pub fn snapshot(
        &self,
        keep_runs: u32,
        taken_unix_us: i64,
    ) -> Result<Vec<Event>, SnapshotRefused> {
        if let Some(open) = &self.open_snapshot {
            return Err(SnapshotRefused::Open {
                started_lsn: open.started_lsn,
            });
        }
        let job = self.job.clone().ok_or(SnapshotRefused::Empty)?;
        let runs: Vec<RunImage> = self.runs.iter().map(RunImage::from).collect();
        let settings: Vec<RunSettingsImage> = self
            .runs
            .iter()
            .filter(|run| run.live.any())
            .map(|run| settings_image(run.run_id, &run.live))
            .collect();
        let batches: Vec<BatchImage> = self
            .batches
            .iter()
            .filter(|b| self.keeps(keep_runs, b))
            .map(BatchImage::from)
            .collect();
        let conflicts: Vec<ConflictImage> =
            self.conflicts.iter().map(ConflictImage::from).collect();
        let mut events = vec![Event::SnapshotStarted(SnapshotStarted {
            covers_lsn: self.last_lsn,
            job,
            created_lsn: self.created_lsn,
            created_unix_us: self.created_unix_us,
            taken_unix_us,
            keep_runs,
            totals: CountsImage::from(&self.totals),
            conflicts_unstored: self.conflicts_unstored,
            runs: runs.len() as u64,
            batches: batches.len() as u64,
            conflicts: conflicts.len() as u64,
        })];
        let bound = SNAPSHOT_CHUNK_BYTES_MAX;
        let chunks_of_runs = chunk_images(runs, bound).into_iter();
        events.extend(chunks_of_runs.map(|runs| Event::SnapshotRuns(SnapshotRuns { runs })));
        let chunks_of_settings = chunk_images(settings, bound).into_iter();
        events.extend(
            chunks_of_settings
                .map(|settings| Event::SnapshotSettings(SnapshotSettings { settings })),
        );
        let chunks_of_batches = chunk_images(batches, bound).into_iter();
        events.extend(
            chunks_of_batches.map(|batches| Event::SnapshotBatches(SnapshotBatches { batches })),
        );
        events.extend(self.claim_events());
        let chunks_of_conflicts = chunk_images(conflicts, bound).into_iter();
        events.extend(
            chunks_of_conflicts
                .map(|conflicts| Event::SnapshotConflicts(SnapshotConflicts { conflicts })),
        );
        events.extend(self.activity_events());
        events.push(Event::SnapshotFinished(SnapshotFinished {
            covers_lsn: self.last_lsn,
        }));
        if let Some(big) = events.iter().find(|e| e.payload_len() > PAYLOAD_BYTES_MAX) {
            return Err(SnapshotRefused::TooLarge {
                record: big.name(),
                bytes: big.payload_len(),
            });
        }
        Ok(events)
    }

    /// The `SnapshotClaims` chunks: the unconfirmed commits (only a batch not done can have
    /// one, and every such batch is kept).
    fn claim_events(&self) -> Vec<Event> {
        let claims: Vec<ClaimImage> = self
            .batches
            .iter()
            .filter_map(|b| b.claim.as_ref().map(|claim| claim_image(b.batch_id, claim)))
            .collect();
        chunk_images(claims, SNAPSHOT_CHUNK_BYTES_MAX)
            .into_iter()
            .map(|claims| Event::SnapshotClaims(SnapshotClaims { claims }))
            .collect()
    }

    /// The `SnapshotActivity` chunks: the time each run ran, for the runs with any activity
    /// (the start of an invocation under way included, so a log compacted and then continued
    /// measures the same spans as one never compacted).
    fn activity_events(&self) -> Vec<Event> {
        let activity: Vec<ActivityImage> = self
            .runs
            .iter()
            .filter(|run| run.activity != Activity::default())
            .map(|run| ActivityImage {
                run_id: run.run_id,
                active_us: run.activity.active_us,
                active_rows: run.activity.active_rows,
                since_unix_us: run.activity.since.map(|(at, _)| at),
                since_rows: run.activity.since.map_or(0, |(_, rows)| rows),
            })
            .collect();
        chunk_images(activity, SNAPSHOT_CHUNK_BYTES_MAX)
            .into_iter()
            .map(|activity| Event::SnapshotActivity(SnapshotActivity { activity }))
            .collect()
    }

    /// Whether two states say the same of the job, whatever LSN each has reached: a compacted
    /// log's snapshot records take LSNs after those they replace, so the state it replays to is
    /// `retained` with only `last_lsn` moved on.
    pub fn same_but_last_lsn(&self, other: &State) -> bool {
        let moved = State {
            last_lsn: other.last_lsn,
            ..self.clone()
        };
        moved == *other
    }

    /// This state as its snapshot kept with `keep_runs` rebuilds it: the same, less the done
    /// batches of every run but the last `keep_runs` (those runs keep their counts, their batch
    /// id ranges and their first batch's upper bound). `last_lsn` stays this state's; an open
    /// snapshot is left out (the state is the one before it).
    pub fn retained(&self, keep_runs: u32) -> State {
        State {
            job: self.job.clone(),
            created_lsn: self.created_lsn,
            created_unix_us: self.created_unix_us,
            last_lsn: self.last_lsn,
            runs: self.runs.clone(),
            batches: self.batches.filtered(|b| self.keeps(keep_runs, b)),
            last_batch_id: self.last_batch_id,
            pending: self.pending.clone(),
            parked: self.parked.clone(),
            conflicts: self.conflicts.clone(),
            conflicts_unstored: self.conflicts_unstored,
            totals: self.totals,
            open_snapshot: None,
        }
    }

    /// Whether a snapshot kept with `keep_runs` keeps `batch`: any batch not done, and the done
    /// batches of the last `keep_runs` runs.
    fn keeps(&self, keep_runs: u32, batch: &Batch) -> bool {
        let runs_dropped = self.runs.len().saturating_sub(keep_runs as usize) as u64;
        batch.status != BatchStatus::Done || batch.run_id > runs_dropped
    }

    /// LSN of the open snapshot's `SnapshotStarted`, if a snapshot is half-applied.
    pub fn snapshot_open_since(&self) -> Option<u64> {
        self.open_snapshot.as_ref().map(|open| open.started_lsn)
    }

    /// A `SnapshotStarted` begins a log (nothing applied yet; the compacted log continues the
    /// numbering of the one it replaces, so an LSN names one record for the job's life), or
    /// follows the whole log it covers.
    pub(super) fn check_snapshot_started(
        &self,
        lsn: u64,
        e: &SnapshotStarted,
    ) -> Result<(), Problem> {
        if self.job.is_none() {
            if e.covers_lsn >= lsn {
                return Err(Problem::SnapshotCoversItself {
                    covers_lsn: e.covers_lsn,
                });
            }
            return Ok(());
        }
        if e.covers_lsn != self.last_lsn {
            return Err(Problem::SnapshotNotAtEnd {
                covers_lsn: e.covers_lsn,
                last_lsn: self.last_lsn,
            });
        }
        Ok(())
    }

    /// While a snapshot is open: images within the announced counts, or the end of it (then
    /// the rebuilt state); anything else is a contradiction.
    pub(super) fn check_in_snapshot(
        &self,
        open: &OpenSnapshot,
        lsn: u64,
        event: &Event,
    ) -> Result<Option<State>, Problem> {
        let [runs, batches, conflicts] = open.tallies();
        let (tally, adding) = match event {
            Event::SnapshotRuns(e) => (runs, e.runs.len()),
            Event::SnapshotBatches(e) => (batches, e.batches.len()),
            Event::SnapshotConflicts(e) => (conflicts, e.conflicts.len()),
            // Not announced by `SnapshotStarted`; at most one per run.
            Event::SnapshotActivity(e) => (
                ("run activity", open.header.runs, open.activity.len()),
                e.activity.len(),
            ),
            // Not announced; at most one per run.
            Event::SnapshotSettings(e) => (
                ("run settings", open.header.runs, open.settings.len()),
                e.settings.len(),
            ),
            // Not announced; at most one per batch.
            Event::SnapshotClaims(e) => (
                ("unconfirmed commit", open.header.batches, open.claims.len()),
                e.claims.len(),
            ),
            Event::SnapshotFinished(e) => return self.rebuild(open, lsn, e).map(Some),
            _ => {
                return Err(Problem::SnapshotOpen {
                    started_lsn: open.started_lsn,
                })
            }
        };
        let (images, declared, collected) = tally;
        if (collected + adding) as u64 > declared {
            return Err(Problem::SnapshotTooManyImages { images, declared });
        }
        Ok(None)
    }

    pub(super) fn apply_snapshot_started(&mut self, lsn: u64, e: &SnapshotStarted) {
        self.open_snapshot = Some(Box::new(OpenSnapshot {
            started_lsn: lsn,
            header: e.clone(),
            runs: Vec::new(),
            batches: Vec::new(),
            conflicts: Vec::new(),
            activity: Vec::new(),
            settings: Vec::new(),
            claims: Vec::new(),
        }));
    }

    /// Adds a checked chunk of images to the open snapshot.
    pub(super) fn collect_snapshot(&mut self, add: impl FnOnce(&mut OpenSnapshot)) {
        add(self
            .open_snapshot
            .as_mut()
            .expect("checked: a snapshot is open"));
    }

    /// The state `SnapshotFinished` at `lsn` installs: the images made into a state, checked
    /// for consistency, and (when the snapshot follows its log) equal to what this state keeps.
    fn rebuild(
        &self,
        open: &OpenSnapshot,
        lsn: u64,
        e: &SnapshotFinished,
    ) -> Result<State, Problem> {
        if e.covers_lsn != open.header.covers_lsn {
            return Err(Problem::SnapshotEndMismatch {
                covers_lsn: e.covers_lsn,
                open_covers_lsn: open.header.covers_lsn,
            });
        }
        for (images, declared, collected) in open.tallies() {
            if collected as u64 != declared {
                return Err(Problem::SnapshotImagesMissing {
                    images,
                    declared,
                    collected: collected as u64,
                });
            }
        }
        let mut rebuilt =
            state_of_images(open, lsn).map_err(|detail| Problem::SnapshotInvalid { detail })?;
        check_consistent(&rebuilt).map_err(|detail| Problem::SnapshotInvalid { detail })?;
        if self.job.is_some() {
            let mut kept = self.retained(open.header.keep_runs);
            kept.last_lsn = lsn;
            if let Some(part) = first_difference(&rebuilt, &kept) {
                return Err(Problem::SnapshotDiffers { part });
            }
        }
        rebuilt.last_lsn = lsn;
        Ok(rebuilt)
    }
}

/// The state the images of `open` make, with `last_lsn` = `lsn`; an error names a batch id
/// held twice.
fn state_of_images(open: &OpenSnapshot, lsn: u64) -> Result<State, String> {
    let header = &open.header;
    let mut batches = Batches::default();
    let mut pending = BTreeSet::new();
    let mut parked = BTreeSet::new();
    for image in &open.batches {
        let batch = Batch::from(image);
        if batch.is_pending() {
            pending.insert(batch.batch_id);
        }
        if matches!(batch.status, BatchStatus::Parked { .. }) {
            parked.insert(batch.batch_id);
        }
        if let Err(batch_id) = batches.push(batch) {
            return Err(format!("batch {batch_id} is held twice or out of id order"));
        }
    }
    apply_claim_images(&mut batches, &open.claims)?;
    let mut runs: Vec<Run> = open.runs.iter().map(Run::from).collect();
    apply_activity_images(&mut runs, &open.activity)?;
    apply_settings_images(&mut runs, &open.settings)?;
    let last_batch_id = runs
        .iter()
        .filter_map(|r| r.last_batch_id)
        .max()
        .unwrap_or(0);
    Ok(State {
        job: Some(header.job.clone()),
        created_lsn: header.created_lsn,
        created_unix_us: header.created_unix_us,
        last_lsn: lsn,
        runs,
        batches,
        last_batch_id,
        pending,
        parked,
        conflicts: open.conflicts.iter().map(Conflict::from).collect(),
        conflicts_unstored: header.conflicts_unstored,
        totals: Counts::from(&header.totals),
        open_snapshot: None,
    })
}

/// Gives the runs their activity images (`SnapshotActivity`).
fn apply_activity_images(runs: &mut [Run], images: &[ActivityImage]) -> Result<(), String> {
    for image in images {
        let index = usize::try_from(image.run_id.wrapping_sub(1)).unwrap_or(usize::MAX);
        // Run i is in place i - 1 in any valid snapshot; a run out of place is reported by
        // the consistency check that follows, with the numbering it breaks.
        let Some(run) = runs.get_mut(index) else {
            return Err(format!(
                "activity of run {}, which it does not hold",
                image.run_id
            ));
        };
        if run.activity != Activity::default() {
            return Err(format!("run {} has its activity twice", image.run_id));
        }
        run.activity = Activity {
            active_us: image.active_us,
            active_rows: image.active_rows,
            since: image.since_unix_us.map(|at| (at, image.since_rows)),
        };
        if run.activity == Activity::default() {
            return Err(format!("run {}'s activity image is empty", image.run_id));
        }
    }
    Ok(())
}

/// Gives the batches their unconfirmed commits (`SnapshotClaims`): only batches not done, once.
fn apply_claim_images(batches: &mut Batches, images: &[ClaimImage]) -> Result<(), String> {
    for image in images {
        let Some(batch) = batches.get_mut(image.batch_id) else {
            return Err(format!(
                "an unconfirmed commit of batch {}, which it does not hold",
                image.batch_id
            ));
        };
        if batch.status == BatchStatus::Done {
            return Err(format!(
                "batch {} is done but has an unconfirmed commit",
                image.batch_id
            ));
        }
        if batch.claim.is_some() {
            return Err(format!(
                "batch {} has an unconfirmed commit twice",
                image.batch_id
            ));
        }
        batch.claim = Some(Claim {
            lsn: image.lsn,
            attempt: image.attempt,
            counts: image.counts,
            witness: image.witness.clone(),
        });
    }
    Ok(())
}

/// The image of a batch's unconfirmed commit.
fn claim_image(batch_id: u64, claim: &Claim) -> ClaimImage {
    ClaimImage {
        batch_id,
        lsn: claim.lsn,
        attempt: claim.attempt,
        counts: claim.counts,
        witness: claim.witness.clone(),
    }
}

/// Gives the runs their live settings images (`SnapshotSettings`).
fn apply_settings_images(runs: &mut [Run], images: &[RunSettingsImage]) -> Result<(), String> {
    for image in images {
        let index = usize::try_from(image.run_id.wrapping_sub(1)).unwrap_or(usize::MAX);
        let Some(run) = runs.get_mut(index).filter(|r| r.run_id == image.run_id) else {
            return Err(format!(
                "live settings of run {}, which it does not hold",
                image.run_id
            ));
        };
        if run.live.any() {
            return Err(format!("run {} has live settings twice", image.run_id));
        }
        run.live = LiveSettings::from(image);
        if !run.live.any() || run.live.batch_rows == Some(0) {
            return Err(format!("run {}'s live settings are invalid", image.run_id));
        }
    }
    Ok(())
}

/// What a snapshot must satisfy to be a state some valid log reaches (what `apply` would have
/// refused on the way there): runs numbered from 1 with only the last open, their batch ranges
/// consecutive, every batch inside its run's range, totals the sum of the runs' counts,
/// conflicts within their limits.
fn check_consistent(state: &State) -> Result<(), String> {
    let mut last_batch_id = 0;
    let mut sum = Counts::default();
    for (i, run) in state.runs.iter().enumerate() {
        if run.run_id != i as u64 + 1 {
            return Err(format!("run {} is listed in place {}", run.run_id, i + 1));
        }
        if run.is_open() && i + 1 < state.runs.len() {
            return Err(format!("run {} is open but not the last", run.run_id));
        }
        match (run.first_batch_id, run.last_batch_id) {
            (None, None) => {}
            (Some(first), Some(last)) if first == last_batch_id + 1 && last >= first => {
                last_batch_id = last;
            }
            _ => return Err(format!("run {}'s batch ids do not follow", run.run_id)),
        }
        sum.add(&run.counts);
    }
    if sum != state.totals {
        return Err("the totals are not the sum of the runs' counts".to_string());
    }
    for batch in state.batches.iter() {
        let run = state.run(batch.run_id);
        if !run.is_some_and(|r| r.batch_ids().contains(&batch.batch_id)) {
            return Err(format!(
                "batch {} is not among run {}'s batches",
                batch.batch_id, batch.run_id
            ));
        }
    }
    let stored = state.conflicts.len();
    if stored > CONFLICTS_STORED_MAX
        || stored as u64 + state.conflicts_unstored != state.totals.conflicts
    {
        return Err(format!(
            "{stored} conflicts stored and {} not stored, of {} counted",
            state.conflicts_unstored, state.totals.conflicts
        ));
    }
    Ok(())
}

/// The first part in which two states differ, `last_lsn` and an open snapshot aside.
fn first_difference(a: &State, b: &State) -> Option<&'static str> {
    let parts = [
        ("job", a.job == b.job),
        (
            "creation",
            (a.created_lsn, a.created_unix_us) == (b.created_lsn, b.created_unix_us),
        ),
        ("runs", a.runs == b.runs),
        ("batches", a.batches == b.batches),
        ("batch ids", a.last_batch_id == b.last_batch_id),
        ("pending batches", a.pending == b.pending),
        ("parked batches", a.parked == b.parked),
        ("conflicts", a.conflicts == b.conflicts),
        (
            "unstored conflicts",
            a.conflicts_unstored == b.conflicts_unstored,
        ),
        ("totals", a.totals == b.totals),
    ];
    parts
        .into_iter()
        .find(|(_, same)| !same)
        .map(|(part, _)| part)
}

impl From<&Counts> for CountsImage {
    fn from(c: &Counts) -> Self {
        let Counts {
            batches_planned,
            batches_done,
            rows_planned,
            rows_copied,
            rows_already,
            rows_deleted,
            rows_conflicting,
            conflicts,
            failures,
        } = *c;
        CountsImage {
            batches_planned,
            batches_done,
            rows_planned,
            rows_copied,
            rows_already,
            rows_deleted,
            rows_conflicting,
            conflicts,
            failures,
        }
    }
}

impl From<&CountsImage> for Counts {
    fn from(c: &CountsImage) -> Self {
        let CountsImage {
            batches_planned,
            batches_done,
            rows_planned,
            rows_copied,
            rows_already,
            rows_deleted,
            rows_conflicting,
            conflicts,
            failures,
        } = *c;
        Counts {
            batches_planned,
            batches_done,
            rows_planned,
            rows_copied,
            rows_already,
            rows_deleted,
            rows_conflicting,
            conflicts,
            failures,
        }
    }
}

impl From<&RunEnd> for RunEndImage {
    fn from(e: &RunEnd) -> Self {
        let RunEnd {
            lsn,
            outcome,
            finished_unix_us,
        } = *e;
        RunEndImage {
            lsn,
            outcome,
            finished_unix_us,
        }
    }
}

impl From<&RunEndImage> for RunEnd {
    fn from(e: &RunEndImage) -> Self {
        let RunEndImage {
            lsn,
            outcome,
            finished_unix_us,
        } = *e;
        RunEnd {
            lsn,
            outcome,
            finished_unix_us,
        }
    }
}

impl From<&Run> for RunImage {
    fn from(r: &Run) -> Self {
        let Run {
            run_id,
            started_lsn,
            now_unix_us,
            key_bound,
            batch_rows,
            attempts_max,
            started_unix_us,
            cursor,
            first_upper,
            first_batch_id,
            last_batch_id,
            counts,
            finished,
            // Not part of the run image (its layout is fixed): `SnapshotActivity` carries it.
            activity: _,
            // Not part of the run image (its layout is fixed): `SnapshotSettings` carries it.
            live: _,
        } = r.clone();
        RunImage {
            run_id,
            started_lsn,
            now_unix_us,
            key_bound,
            batch_rows,
            attempts_max,
            started_unix_us,
            cursor,
            first_upper,
            first_batch_id,
            last_batch_id,
            counts: CountsImage::from(&counts),
            finished: finished.as_ref().map(RunEndImage::from),
        }
    }
}

impl From<&RunImage> for Run {
    fn from(r: &RunImage) -> Self {
        let RunImage {
            run_id,
            started_lsn,
            now_unix_us,
            key_bound,
            batch_rows,
            attempts_max,
            started_unix_us,
            cursor,
            first_upper,
            first_batch_id,
            last_batch_id,
            counts,
            finished,
        } = r.clone();
        Run {
            run_id,
            started_lsn,
            now_unix_us,
            key_bound,
            batch_rows,
            attempts_max,
            started_unix_us,
            cursor,
            first_upper,
            first_batch_id,
            last_batch_id,
            counts: Counts::from(&counts),
            finished: finished.as_ref().map(RunEnd::from),
            activity: Activity::default(),
            live: LiveSettings::default(),
        }
    }
}

/// The image of a run's live settings.
fn settings_image(run_id: u64, live: &LiveSettings) -> RunSettingsImage {
    let LiveSettings {
        batch_rows,
        sleep_ms,
        max_lag_s,
        changed_lsn,
        changed_unix_us,
    } = *live;
    RunSettingsImage {
        run_id,
        changed_lsn,
        batch_rows,
        sleep_ms,
        max_lag_s,
        changed_unix_us,
    }
}

impl From<&RunSettingsImage> for LiveSettings {
    fn from(image: &RunSettingsImage) -> Self {
        let RunSettingsImage {
            run_id: _,
            changed_lsn,
            batch_rows,
            sleep_ms,
            max_lag_s,
            changed_unix_us,
        } = *image;
        LiveSettings {
            batch_rows,
            sleep_ms,
            max_lag_s,
            changed_lsn,
            changed_unix_us,
        }
    }
}

impl From<Step> for StepImage {
    fn from(step: Step) -> Self {
        match step {
            Step::Copy => StepImage::Copy,
            Step::Delete => StepImage::Delete,
        }
    }
}

impl From<StepImage> for Step {
    fn from(step: StepImage) -> Self {
        match step {
            StepImage::Copy => Step::Copy,
            StepImage::Delete => Step::Delete,
        }
    }
}

impl From<BatchStatus> for BatchStatusImage {
    fn from(status: BatchStatus) -> Self {
        match status {
            BatchStatus::Planned => BatchStatusImage::Planned,
            BatchStatus::Copied => BatchStatusImage::Copied,
            BatchStatus::Parked { step } => BatchStatusImage::Parked { step: step.into() },
            BatchStatus::Done => BatchStatusImage::Done,
        }
    }
}

impl From<BatchStatusImage> for BatchStatus {
    fn from(status: BatchStatusImage) -> Self {
        match status {
            BatchStatusImage::Planned => BatchStatus::Planned,
            BatchStatusImage::Copied => BatchStatus::Copied,
            BatchStatusImage::Parked { step } => BatchStatus::Parked { step: step.into() },
            BatchStatusImage::Done => BatchStatus::Done,
        }
    }
}

impl From<&BatchError> for BatchErrorImage {
    fn from(e: &BatchError) -> Self {
        let BatchError {
            lsn,
            attempt,
            class,
            message,
        } = e.clone();
        BatchErrorImage {
            lsn,
            attempt,
            class,
            message,
        }
    }
}

impl From<&BatchErrorImage> for BatchError {
    fn from(e: &BatchErrorImage) -> Self {
        let BatchErrorImage {
            lsn,
            attempt,
            class,
            message,
        } = e.clone();
        BatchError {
            lsn,
            attempt,
            class,
            message,
        }
    }
}

impl From<&Batch> for BatchImage {
    fn from(b: &Batch) -> Self {
        let Batch {
            batch_id,
            run_id,
            planned_lsn,
            lower,
            upper,
            rows_planned,
            status,
            attempts,
            failures,
            resets,
            last_error,
            rows_copied,
            rows_already,
            rows_deleted,
            rows_conflicting,
            conflicts,
            // Not part of the batch image (its layout is fixed): `SnapshotClaims` carries it.
            claim: _,
        } = b.clone();
        BatchImage {
            batch_id,
            run_id,
            planned_lsn,
            lower,
            upper,
            rows_planned,
            status: status.into(),
            attempts,
            failures,
            resets,
            last_error: last_error.as_ref().map(BatchErrorImage::from),
            rows_copied,
            rows_already,
            rows_deleted,
            rows_conflicting,
            conflicts,
        }
    }
}

impl From<&BatchImage> for Batch {
    fn from(b: &BatchImage) -> Self {
        let BatchImage {
            batch_id,
            run_id,
            planned_lsn,
            lower,
            upper,
            rows_planned,
            status,
            attempts,
            failures,
            resets,
            last_error,
            rows_copied,
            rows_already,
            rows_deleted,
            rows_conflicting,
            conflicts,
        } = b.clone();
        Batch {
            batch_id,
            run_id,
            planned_lsn,
            lower,
            upper,
            rows_planned,
            status: status.into(),
            attempts,
            failures,
            resets,
            last_error: last_error.as_ref().map(BatchError::from),
            rows_copied,
            rows_already,
            rows_deleted,
            rows_conflicting,
            conflicts,
            claim: None,
        }
    }
}

impl From<&Conflict> for ConflictImage {
    fn from(c: &Conflict) -> Self {
        let Conflict { batch_id, key, lsn } = c.clone();
        ConflictImage { batch_id, key, lsn }
    }
}

impl From<&ConflictImage> for Conflict {
    fn from(c: &ConflictImage) -> Self {
        let ConflictImage { batch_id, key, lsn } = c.clone();
        Conflict { batch_id, key, lsn }
    }
}
