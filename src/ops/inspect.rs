//! `archiver replay --inspect`: prints what a WAL directory holds (segments, every record
//! decoded, damage located to the byte) and the state replay reconstructs, for a person or as
//! JSON lines. It is strictly read-only: it takes no lock and opens every file read-only, so it
//! can run beside a live writer and on a log that recovery refuses.
//!
//! It goes through the same scanner as recovery (`wal::scan`), so what it calls a torn tail is
//! exactly what recovery would cut, and what it calls corruption is what recovery refuses.

use std::fmt::Write as _;
use std::io::Write;
use std::ops::ControlFlow;
use std::path::Path;

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::event::{type_name, DecodeError, Event, RECORD_TYPE_MAX};
use crate::wal::format::segment_file_name;
use crate::wal::scan::{scan_dir, Damage, DirScan, ScanItem, SegmentSummary};
use crate::wal::{CompactLeftover, Record, RecoveryMode, SegmentStatus};

/// Payload bytes shown (as hex) for a record that does not decode.
const UNDECODABLE_HEX_BYTES_MAX: usize = 64;

/// Receives the records replay would apply, in LSN order, and summarises the resulting state.
/// The engine implements it with the real state machine.
pub trait StateSink {
    /// Applies one event; an error means the log is semantically corrupt at `lsn`.
    fn apply(&mut self, lsn: u64, event: &Event) -> Result<(), String>;
    /// The state in human form, one line each, printed at the end.
    fn summary_lines(&self) -> Vec<String>;
    /// The state as JSON, printed as the `summary` of the last line (`{"kind":"state",...}`).
    fn summary_json(&self) -> Value;
}

/// A sink that only counts events by type (used by tests, and until a state machine exists).
#[derive(Debug, Default, Clone)]
pub struct CountingSink {
    /// Events applied, by record type (index 0 unused).
    pub by_type: [u64; RECORD_TYPE_MAX as usize + 1],
    /// LSN of the last event applied (0 = none).
    pub last_lsn: u64,
}

impl StateSink for CountingSink {
    fn apply(&mut self, lsn: u64, event: &Event) -> Result<(), String> {
        self.by_type[usize::from(event.record_type().min(RECORD_TYPE_MAX))] += 1;
        self.last_lsn = lsn;
        Ok(())
    }

    fn summary_lines(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "{} events applied, last lsn {}",
            self.by_type.iter().sum::<u64>(),
            self.last_lsn
        )];
        for (t, n) in self.by_type.iter().enumerate().filter(|(_, n)| **n > 0) {
            lines.push(format!("{}: {n}", type_name(t as u16).unwrap_or("Unknown")));
        }
        lines
    }

    fn summary_json(&self) -> Value {
        let counts: serde_json::Map<String, Value> = self
            .by_type
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(t, n)| {
                (
                    type_name(t as u16).unwrap_or("Unknown").to_string(),
                    json!(n),
                )
            })
            .collect();
        json!({ "events": self.by_type.iter().sum::<u64>(), "last_lsn": self.last_lsn, "by_type": counts })
    }
}

/// What inspect concluded about the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InspectVerdict {
    /// Every record valid, nothing to cut.
    Clean,
    /// A torn tail (or a torn last segment) that recovery will cut; nothing else wrong.
    TornTail,
    /// Damage recovery refuses (the CLI exits non-zero).
    Corrupt,
}

impl InspectVerdict {
    /// The verdict as printed.
    pub fn as_str(self) -> &'static str {
        match self {
            InspectVerdict::Clean => "clean",
            InspectVerdict::TornTail => "torn-tail",
            InspectVerdict::Corrupt => "corrupt",
        }
    }
}

/// The error for a `--wal-dir` that holds no log: `inspect` and `compact` say the same.
pub fn no_segments(dir: &Path) -> String {
    format!(
        "{} holds no WAL segments (files named wal-<16 hex digits>.seg); is it the right --wal-dir?",
        dir.display()
    )
}

/// Prints everything the WAL in `dir` holds to `out` (JSON lines if `json`), feeds the records
/// replay would apply to `sink`, and returns the verdict. Never writes to `dir`. Errors are
/// I/O errors and unusable directories (missing, not a directory, no segment in it).
pub fn inspect(
    dir: &Path,
    json: bool,
    out: &mut dyn Write,
    sink: &mut dyn StateSink,
) -> anyhow::Result<InspectVerdict> {
    let meta = std::fs::metadata(dir)
        .with_context(|| format!("cannot inspect the WAL directory {}", dir.display()))?;
    if !meta.is_dir() {
        bail!("cannot inspect {}: it is not a directory", dir.display());
    }
    // Pass 1: the segment table and the damage, so they can be printed before the records.
    let overview = scan_dir(dir, RecoveryMode::TolerateTornTail, &mut |_| {
        ControlFlow::Continue(())
    })?;
    if overview.segments.is_empty() {
        bail!("{}", no_segments(dir));
    }
    let mut printer = Printer {
        json,
        out,
        sink,
        replaying: true,
        replayed_lsn: overview.start_lsn - 1,
        semantic_error: false,
    };
    printer.header(dir, &overview)?;
    // Pass 2: records and damage in file order.
    let mut failed = Ok(());
    scan_dir(dir, RecoveryMode::TolerateTornTail, &mut |item| {
        let result = match item {
            ScanItem::Record(record) => printer.record(&record),
            ScanItem::Damage(damage) => printer.damage(damage),
        };
        match result {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                failed = Err(e);
                ControlFlow::Break(())
            }
        }
    })?;
    failed?;
    let verdict = verdict(&overview, printer.semantic_error);
    printer.footer(&overview, verdict)?;
    Ok(verdict)
}

fn verdict(scan: &DirScan, semantic_error: bool) -> InspectVerdict {
    let corrupt = semantic_error
        || scan
            .damages
            .iter()
            .any(|d| matches!(d, Damage::Corruption { .. }));
    if corrupt {
        InspectVerdict::Corrupt
    } else if scan.damages.is_empty() {
        InspectVerdict::Clean
    } else {
        InspectVerdict::TornTail
    }
}

struct Printer<'a> {
    json: bool,
    out: &'a mut dyn Write,
    sink: &'a mut dyn StateSink,
    /// Records still go to the sink (no corruption or semantic error seen yet).
    replaying: bool,
    /// Last LSN applied to the sink.
    replayed_lsn: u64,
    /// The sink refused an event or a payload did not decode.
    semantic_error: bool,
}

fn name_of(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

impl Printer<'_> {
    fn line(&mut self, value: Value) -> anyhow::Result<()> {
        serde_json::to_writer(&mut *self.out, &value)?;
        self.out.write_all(b"\n")?;
        Ok(())
    }

    fn header(&mut self, dir: &Path, scan: &DirScan) -> anyhow::Result<()> {
        if self.json {
            for s in &scan.segments {
                self.line(segment_json(s))?;
            }
            for leftover in &scan.compact_leftovers {
                self.line(leftover_json(leftover))?;
            }
            return Ok(());
        }
        writeln!(self.out, "WAL directory: {}", dir.display())?;
        match scan.log_id {
            Some(id) => writeln!(self.out, "log id: {id:032x}")?,
            None => writeln!(self.out, "log id: unknown (no valid segment header)")?,
        }
        writeln!(self.out, "segments ({}):", scan.segments.len())?;
        writeln!(
            self.out,
            "  {:<26} {:>12} {:>12} {:>12} {:>10}  status",
            "name", "bytes", "first lsn", "last lsn", "records"
        )?;
        for s in &scan.segments {
            writeln!(
                self.out,
                "  {:<26} {:>12} {:>12} {:>12} {:>10}  {}{}",
                s.name,
                s.file_bytes,
                opt(s.first_lsn),
                opt(s.last_lsn),
                s.records,
                s.status.as_str(),
                if s.base { ", base" } else { "" }
            )?;
        }
        self.compaction_lines(scan)?;
        writeln!(self.out, "records:")?;
        Ok(())
    }

    /// What a compaction left: where the log begins, superseded segments, unfinished files.
    fn compaction_lines(&mut self, scan: &DirScan) -> anyhow::Result<()> {
        if let Some(seq) = scan.base_seq {
            writeln!(
                self.out,
                "the log begins at base segment {} (lsn {}), written by a compaction",
                segment_file_name(seq),
                scan.start_lsn
            )?;
        }
        let superseded = superseded_count(scan);
        if superseded > 0 {
            writeln!(
                self.out,
                "{superseded} superseded segment(s) above are not part of the log and are not read; the writer's next open deletes them"
            )?;
        }
        if !scan.compact_leftovers.is_empty() {
            writeln!(
                self.out,
                "unfinished compaction files (not part of the log, not read; the writer's next open deletes them):"
            )?;
            for leftover in &scan.compact_leftovers {
                writeln!(
                    self.out,
                    "  {:<34} {:>12}",
                    name_of(&leftover.path),
                    leftover.file_bytes
                )?;
            }
        }
        Ok(())
    }

    /// Prints one record, decoded if it decodes, and feeds it to the sink while replaying.
    fn record(&mut self, record: &Record<'_>) -> anyhow::Result<()> {
        let segment = segment_file_name(record.segment_seq);
        let decoded = Event::decode(record.record_type, record.payload);
        match &decoded {
            Ok(event) => self.event_line(record, &segment, event)?,
            Err(e) => self.undecodable_line(record, &segment, e)?,
        }
        if !self.replaying {
            return Ok(());
        }
        let applied = decoded
            .map_err(|e| format!("payload does not decode: {e}"))
            .and_then(|event| self.sink.apply(record.lsn, &event));
        match applied {
            Ok(()) => self.replayed_lsn = record.lsn,
            Err(message) => self.refused(record, &segment, &message)?,
        }
        Ok(())
    }

    fn event_line(
        &mut self,
        record: &Record<'_>,
        segment: &str,
        event: &Event,
    ) -> anyhow::Result<()> {
        if self.json {
            return self.line(json!({
                "kind": "record", "lsn": record.lsn, "segment": segment,
                "offset": record.offset, "type": record.record_type,
                "type_name": event.name(), "payload_bytes": record.payload.len(),
                "event": event.to_json(),
            }));
        }
        writeln!(
            self.out,
            "  lsn {} {} offset {} {} {}",
            record.lsn,
            segment,
            record.offset,
            event.name(),
            event.text()
        )?;
        Ok(())
    }

    fn undecodable_line(
        &mut self,
        record: &Record<'_>,
        segment: &str,
        error: &DecodeError,
    ) -> anyhow::Result<()> {
        let shown = &record.payload[..record.payload.len().min(UNDECODABLE_HEX_BYTES_MAX)];
        if self.json {
            return self.line(json!({
                "kind": "record", "lsn": record.lsn, "segment": segment,
                "offset": record.offset, "type": record.record_type,
                "type_name": type_name(record.record_type),
                "payload_bytes": record.payload.len(),
                "error": error.to_string(), "payload_hex": hex(shown),
            }));
        }
        writeln!(
            self.out,
            "  lsn {} {} offset {} type {} UNDECODABLE: {error}; payload {} bytes: {}{}",
            record.lsn,
            segment,
            record.offset,
            record.record_type,
            record.payload.len(),
            hex(shown),
            if shown.len() < record.payload.len() {
                "..."
            } else {
                ""
            }
        )?;
        Ok(())
    }

    /// Replay refused `record` (`message` says why): stops replaying and reports the damage.
    fn refused(&mut self, record: &Record<'_>, segment: &str, message: &str) -> anyhow::Result<()> {
        self.replaying = false;
        self.semantic_error = true;
        let detail = format!("replay refuses lsn {}: {message}", record.lsn);
        if self.json {
            return self.line(json!({
                "kind": "damage", "class": "state", "segment": segment,
                "offset": record.offset, "lsn": record.lsn, "detail": detail,
                "consequence": "recovery would refuse this log",
            }));
        }
        writeln!(
            self.out,
            "  DAMAGE (state) {segment} offset {}: {detail}; recovery would refuse this log",
            record.offset
        )?;
        Ok(())
    }

    fn damage(&mut self, damage: &Damage) -> anyhow::Result<()> {
        let (class, segment, offset, detail, consequence) = match damage {
            Damage::TornTail(cut) => (
                "torn-tail",
                &cut.segment,
                cut.offset,
                cut.detail.clone(),
                format!(
                    "recovery cuts the log here ({} bytes after the cut are discarded); records before it are intact",
                    cut.bytes_discarded
                ),
            ),
            Damage::TornCreation { segment, detail } => (
                "torn-creation",
                segment,
                0,
                detail.clone(),
                "the last segment's creation was interrupted by a crash; it holds no records and recovery deletes it".to_string(),
            ),
            Damage::Corruption {
                segment,
                offset,
                detail,
            } => {
                self.replaying = false;
                (
                    "corruption",
                    segment,
                    *offset,
                    detail.clone(),
                    "recovery refuses to open this log; records after this point are shown but not replayed".to_string(),
                )
            }
        };
        let name = name_of(segment);
        if self.json {
            return self.line(json!({
                "kind": "damage", "class": class, "segment": name, "offset": offset,
                "detail": detail, "consequence": consequence,
            }));
        }
        writeln!(
            self.out,
            "  DAMAGE ({class}) {name} offset {offset}: {detail}; {consequence}"
        )?;
        Ok(())
    }

    fn footer(&mut self, scan: &DirScan, verdict: InspectVerdict) -> anyhow::Result<()> {
        if self.json {
            let summary = self.sink.summary_json();
            return self.line(json!({
                "kind": "state", "verdict": verdict.as_str(),
                "segments": scan.segments.len() - superseded_count(scan), "records": scan.records,
                "start_lsn": scan.start_lsn,
                "superseded_segments": superseded_count(scan),
                "compact_leftovers": scan.compact_leftovers.len(),
                "replayed_through_lsn": self.replayed_lsn, "summary": summary,
            }));
        }
        writeln!(
            self.out,
            "state (replay of lsn {}..={}):",
            scan.start_lsn, self.replayed_lsn
        )?;
        for line in self.sink.summary_lines() {
            writeln!(self.out, "  {line}")?;
        }
        let what = match verdict {
            InspectVerdict::Clean => "the log is intact".to_string(),
            InspectVerdict::TornTail => {
                "the log ends in a torn tail that recovery cuts; nothing acknowledged is lost"
                    .to_string()
            }
            InspectVerdict::Corrupt => format!(
                "the log is corrupt ({} damage report(s) above); recovery refuses it",
                scan.damages
                    .iter()
                    .filter(|d| matches!(d, Damage::Corruption { .. }))
                    .count()
                    + usize::from(self.semantic_error)
            ),
        };
        writeln!(
            self.out,
            "verdict: {}: {} records in {} segments; {what}",
            verdict.as_str(),
            scan.records,
            scan.segments.len() - superseded_count(scan)
        )?;
        Ok(())
    }
}

/// Segments below the log's base segment, listed but not part of the log.
fn superseded_count(scan: &DirScan) -> usize {
    scan.segments
        .iter()
        .filter(|s| s.status == SegmentStatus::Superseded)
        .count()
}

fn leftover_json(leftover: &CompactLeftover) -> Value {
    json!({
        "kind": "compact-leftover", "name": name_of(&leftover.path), "seq": leftover.seq,
        "bytes": leftover.file_bytes,
        "consequence": "an unfinished compaction's file: not part of the log, not read; the writer's next open deletes it",
    })
}

fn segment_json(s: &SegmentSummary) -> Value {
    json!({
        "kind": "segment", "name": s.name, "seq": s.seq, "bytes": s.file_bytes,
        "log_id": s.log_id.map(|id| format!("{id:032x}")),
        "header_first_lsn": s.header_first_lsn, "first_lsn": s.first_lsn,
        "last_lsn": s.last_lsn, "records": s.records, "status": s.status.as_str(),
        "base": s.base,
    })
}
