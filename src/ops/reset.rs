//! `archiver reset`: marks failed or parked batches for retry by the next run, by appending
//! `BatchReset` through the journal (checked like every append). Takes the WAL lock, so it is
//! refused while a run is active.

use std::io::Write;

use crate::config::{ConfigError, JobConfig};
use crate::error::Error;
use crate::event::{BatchReset, Event};
use crate::journal::{self, Durability, Journal};
use crate::state::{BatchStatus, State};

/// What `archiver reset` selects.
#[derive(Debug, Clone)]
pub enum ResetSelection {
    /// One batch by id.
    Batch(u64),
    /// Every failed or parked batch.
    Failed,
    /// Failed or parked batches whose last error matches a LIKE pattern.
    ErrorLike(String),
}

/// SQL `LIKE` matching, case-insensitive: `%` any run, `_` one character, `\` escapes.
pub fn like(pattern: &str, text: &str) -> bool {
    fn go(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('%', rest)) => (0..=t.len()).any(|i| go(rest, &t[i..])),
            Some(('_', rest)) => !t.is_empty() && go(rest, &t[1..]),
            Some(('\\', rest)) if !rest.is_empty() => {
                !t.is_empty() && t[0] == rest[0] && go(&rest[1..], &t[1..])
            }
            Some((c, rest)) => !t.is_empty() && t[0] == *c && go(rest, &t[1..]),
        }
    }
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let t: Vec<char> = text.to_lowercase().chars().collect();
    go(&p, &t)
}

/// The batches `selection` names, and the reason recorded with their reset.
fn select(state: &State, selection: &ResetSelection) -> Result<(Vec<u64>, String), ConfigError> {
    let retryable = |pattern: Option<&str>| -> Vec<u64> {
        state
            .batches()
            .filter(|b| b.status != BatchStatus::Done)
            .filter(|b| match (&b.last_error, pattern) {
                (None, _) => false,
                (Some(_), None) => true,
                (Some(error), Some(pattern)) => like(pattern, &error.message),
            })
            .map(|b| b.batch_id)
            .collect()
    };
    Ok(match selection {
        ResetSelection::Batch(id) => {
            let batch = state.batch(*id).ok_or_else(|| {
                ConfigError(format!(
                    "batch {id} is not in the log; `archiver status` lists the failed batches"
                ))
            })?;
            if batch.status == BatchStatus::Done {
                return Err(ConfigError(format!(
                    "batch {id} is done; there is nothing to retry"
                )));
            }
            (vec![*id], format!("reset --batch {id}"))
        }
        ResetSelection::Failed => (retryable(None), "reset --failed".to_string()),
        ResetSelection::ErrorLike(pattern) => (
            retryable(Some(pattern)),
            format!("reset --error-like {pattern:?}"),
        ),
    })
}

/// Appends `BatchReset` for the selected batches so the next run retries them, and says which.
pub fn reset(
    config: &JobConfig,
    selection: &ResetSelection,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let mut journal = Journal::open(&config.wal_dir)?;
    journal::check_identity(journal.state(), &config.identity(), &config.wal_dir)?;
    let (ids, reason) = select(journal.state(), selection)?;
    for &batch_id in &ids {
        let event = Event::BatchReset(BatchReset {
            batch_id,
            reason: reason.clone(),
        });
        journal.append(event, Durability::Buffered)?;
    }
    journal.close()?;
    if ids.is_empty() {
        writeln!(out, "no batch matched; nothing reset")?;
    } else {
        let list: Vec<String> = ids.iter().map(u64::to_string).collect();
        writeln!(
            out,
            "reset {} batch(es): {}; the next run retries them",
            ids.len(),
            list.join(", ")
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::like;

    #[test]
    fn like_patterns_match_as_sql_does() {
        let cases = [
            ("%deadlock%", "Deadlock found when trying to get lock", true),
            ("lock wait%", "Lock wait timeout exceeded", true),
            ("lock_wait%", "lock wait timeout", true),
            ("%table%", "Deadlock found", false),
            ("100\\%", "100%", true),
            ("100\\%", "1000", false),
            ("", "", true),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(like(pattern, text), expected, "{pattern:?} ~ {text:?}");
        }
    }
}
