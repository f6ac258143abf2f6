//! The job's Prometheus metrics: one registry (`prometheus-client`, which writes the
//! exposition format; nothing here hand-writes it), rendered by [`Metrics::render`] for the
//! control socket's `GET /metrics` and for node_exporter's textfile collector
//! (`engine::textfile`).
//!
//! **The counts are what the WAL says.** Counters start at the log's totals (seeded from the
//! state replayed at start, [`Metrics::seed`]) and then move only when the journal tells its
//! observer of an appended event ([`MetricsObserver`]), never from the engine's own
//! bookkeeping. So they count the job's whole history and do not restart at zero with each
//! cron run, which would make Prometheus lose the increase of a run that ended between two
//! scrapes. Timings (the batch duration histogram, throttle seconds) are measured by the
//! engine and count this process only.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::config::JobConfig;
use crate::db::Tally;
use crate::event::{EarlierCommit, Event, RunOutcome};
use crate::journal::{self, Observer};
use crate::state::{BatchStatus, State};

/// Upper bounds of the batch duration histogram's buckets, in seconds: a batch of 1,000 rows
/// takes about 20 ms on a quiet server; lock waits (`lock_wait_timeout_s`, 10 s by default)
/// and large batches reach the top buckets.
pub const BATCH_DURATION_BUCKETS_S: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// The HTTP content type of [`Metrics::render`]'s text: Prometheus parses it as OpenMetrics
/// only when told so (with `text/plain` it would read counters as untyped).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How an invocation stands or ended, as the `archiver_outcome` gauge says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Still running.
    Running,
    /// Finished its run; nothing needs attention.
    Done,
    /// Finished, with conflicts or parked batches.
    Attention,
    /// Stopped on request with work left.
    Stopped,
    /// Stopped by an error.
    Failed,
}

impl Outcome {
    /// Every outcome, in the order the gauge lists them.
    const ALL: [Outcome; 5] = [
        Outcome::Running,
        Outcome::Done,
        Outcome::Attention,
        Outcome::Stopped,
        Outcome::Failed,
    ];

    /// The label value.
    fn label(self) -> &'static str {
        match self {
            Outcome::Running => "running",
            Outcome::Done => "done",
            Outcome::Attention => "attention",
            Outcome::Stopped => "stopped",
            Outcome::Failed => "failed",
        }
    }
}

/// One label: its name and value.
type Label = [(&'static str, String); 1];

/// A counter of seconds (fractional).
type SecondsCounter = Counter<f64, AtomicU64>;

/// A gauge holding a float.
type FloatGauge = Gauge<f64, AtomicU64>;

/// The job's metrics. Shared (`Arc`) between the engine, the journal's observer, the textfile
/// writer and whoever serves `/metrics`; every metric is atomic.
pub struct Metrics {
    /// Every metric below, registered under the `archiver_` prefix.
    registry: Registry,
    /// `archiver_rows_archived_total`: rows deleted from the source after an identical copy
    /// was committed in the archive (`BatchDeleted.rows_deleted`).
    rows_archived: Counter,
    /// `archiver_rows_copied_total`: rows inserted into the archive.
    rows_copied: Counter,
    /// `archiver_rows_already_archived_total`: rows whose identical copy the archive already
    /// held (a redone batch, or rows archived before).
    rows_already: Counter,
    /// `archiver_conflicts_total`: `ConflictFound` records (a different row under the key).
    conflicts: Counter,
    /// `archiver_batches_total{outcome}`: done, failed attempts, parkings.
    batches: Family<Label, Counter>,
    /// `archiver_batches_parked`: batches parked now, waiting for `archiver reset`.
    batches_parked: Gauge,
    /// `archiver_batch_duration_seconds`: wall time of each batch attempt of this process.
    batch_duration: Histogram,
    /// `archiver_throttle_seconds_total{reason}`: time spent waiting on purpose.
    throttle: Family<Label, SecondsCounter>,
    /// Throttle time in all, in microseconds, for the run's statistics.
    throttle_us: AtomicU64,
    /// Throttle waits counted, for the run's statistics.
    throttle_waits: AtomicU64,
    /// `archiver_replica_lag_seconds{replica}`: the lag last seen on each replica.
    replica_lag: Family<Label, FloatGauge>,
    /// `archiver_last_success_timestamp_seconds`: when a run last finished (`RunFinished`).
    last_success: FloatGauge,
    /// `archiver_run_id`: the run in progress, or the last one.
    run_id: Gauge,
    /// `archiver_wal_bytes`: the log's segment files on disk.
    wal_bytes: Gauge,
    /// `archiver_outcome{outcome}`: 1 for how this invocation stands or ended, 0 for the rest.
    outcome: Family<Label, Gauge>,
    /// The WAL directory, measured for `archiver_wal_bytes` at each render.
    wal_dir: PathBuf,
    /// Whether the counters were seeded from the log's totals (done once).
    seeded: AtomicBool,
}

/// Adds `value` to `counter`, in the counter's integer units.
fn add(counter: &Counter, value: u64) {
    if value > 0 {
        counter.inc_by(value);
    }
}

/// Unix microseconds as the seconds a `_timestamp_seconds` gauge holds.
fn unix_seconds(unix_us: i64) -> f64 {
    unix_us as f64 / 1e6
}

/// A label set of one label.
fn label(name: &'static str, value: &str) -> Label {
    [(name, value.to_string())]
}

impl Metrics {
    /// The metrics of `config`'s job, all at zero (see [`Metrics::seed`]).
    pub fn new(config: &JobConfig) -> Metrics {
        let mut metrics = Metrics {
            registry: Registry::with_prefix("archiver"),
            rows_archived: Counter::default(),
            rows_copied: Counter::default(),
            rows_already: Counter::default(),
            conflicts: Counter::default(),
            batches: Family::default(),
            batches_parked: Gauge::default(),
            batch_duration: Histogram::new(BATCH_DURATION_BUCKETS_S),
            throttle: Family::default(),
            throttle_us: AtomicU64::new(0),
            throttle_waits: AtomicU64::new(0),
            replica_lag: Family::default(),
            last_success: FloatGauge::default(),
            run_id: Gauge::default(),
            wal_bytes: Gauge::default(),
            outcome: Family::default(),
            wal_dir: config.wal_dir.clone(),
            seeded: AtomicBool::new(false),
        };
        metrics.register(config);
        metrics
    }

    /// Registers every metric, with its help text; units become name suffixes. The series
    /// every dashboard expects exist from the start, at zero.
    fn register(&mut self, config: &JobConfig) {
        self.register_counts();
        self.register_gauges(config);
        self.throttle.get_or_create_owned(&label("reason", "sleep"));
        for outcome in ["done", "failed", "parked"] {
            self.batches.get_or_create_owned(&label("outcome", outcome));
        }
        self.set_outcome(Outcome::Running);
    }

    /// The counters and the histogram.
    fn register_counts(&mut self) {
        let r = &mut self.registry;
        r.register("rows_archived", "Rows moved: deleted from the source after an identical copy was committed in the archive", self.rows_archived.clone());
        r.register(
            "rows_copied",
            "Rows inserted into the archive",
            self.rows_copied.clone(),
        );
        r.register(
            "rows_already_archived",
            "Rows whose identical copy the archive already held (duplicates)",
            self.rows_already.clone(),
        );
        r.register("conflicts", "Rows kept in the source because the archive holds a different row under their key (found again by every run until resolved)", self.conflicts.clone());
        r.register("batches", "Batches by outcome: done, failed (each failed attempt), parked (a failure that parked the batch)", self.batches.clone());
        // The unit is in the name, without a UNIT line: OpenMetrics parsers disagree on whether
        // a histogram may carry one (openmetrics-parser refuses it).
        r.register("batch_duration_seconds", "Wall time of each batch attempt of this process: lock, copy, delete, commit and the WAL records", self.batch_duration.clone());
        r.register_with_unit(
            "throttle",
            "Time spent waiting on purpose between batches, by reason",
            Unit::Seconds,
            self.throttle.clone(),
        );
    }

    /// The gauges, the job's info among them.
    fn register_gauges(&mut self, config: &JobConfig) {
        let r = &mut self.registry;
        r.register(
            "batches_parked",
            "Batches parked now, waiting for archiver reset",
            self.batches_parked.clone(),
        );
        r.register_with_unit(
            "replica_lag",
            "Replication lag last seen on each replica",
            Unit::Seconds,
            self.replica_lag.clone(),
        );
        r.register_with_unit(
            "last_success_timestamp",
            "When a run of the job last finished all its work (Unix time); 0 if none has",
            Unit::Seconds,
            self.last_success.clone(),
        );
        r.register(
            "run_id",
            "The run in progress, or the last one",
            self.run_id.clone(),
        );
        r.register_with_unit(
            "wal",
            "Size of the WAL's segment files on disk",
            Unit::Bytes,
            self.wal_bytes.clone(),
        );
        r.register(
            "outcome",
            "How this invocation stands (running) or ended: 1 for its outcome, 0 for the others",
            self.outcome.clone(),
        );
        let info: Family<[(&'static str, String); 2], Gauge> = Family::default();
        info.get_or_create_owned(&[
            ("source", config.source.table.to_string()),
            ("archive", config.archive.table.to_string()),
        ])
        .set(1);
        r.register(
            "job_info",
            "The job: its source and archive tables (always 1)",
            info,
        );
    }

    /// Starts the counters at the totals of the log replayed into `state`, and the gauges at
    /// what it says. Only the first call counts (a second would count the history twice).
    pub fn seed(&self, state: &State) {
        if self.seeded.swap(true, Ordering::SeqCst) {
            return;
        }
        let totals = state.totals();
        add(&self.rows_archived, totals.rows_deleted);
        add(&self.rows_copied, totals.rows_copied);
        add(&self.rows_already, totals.rows_already);
        add(&self.conflicts, totals.conflicts);
        add(&self.batch_counter("done"), totals.batches_done);
        add(&self.batch_counter("failed"), totals.failures);
        let parked = state.parked_batches().count() as u64;
        add(&self.batch_counter("parked"), parked);
        self.batches_parked
            .set(i64::try_from(parked).unwrap_or(i64::MAX));
        let last_finished = state
            .runs()
            .iter()
            .filter_map(|run| run.finished.as_ref())
            .filter(|end| end.outcome == RunOutcome::Completed)
            .map(|end| end.finished_unix_us)
            .max();
        if let Some(finished_unix_us) = last_finished {
            self.last_success.set(unix_seconds(finished_unix_us));
        }
        if let Some(run) = state.open_run().or(state.last_run()) {
            self.run_id
                .set(i64::try_from(run.run_id).unwrap_or(i64::MAX));
        }
    }

    /// Whether [`Metrics::seed`] was called.
    pub fn seeded(&self) -> bool {
        self.seeded.load(Ordering::SeqCst)
    }

    fn batch_counter(&self, outcome: &'static str) -> Counter {
        self.batches.get_or_create_owned(&label("outcome", outcome))
    }

    /// Counts `seconds` of waiting on purpose for `reason` (e.g. `sleep`, `replica_lag`,
    /// `threads_running`).
    pub fn add_throttle(&self, reason: &str, seconds: f64) {
        if seconds.is_nan() || seconds <= 0.0 {
            return;
        }
        self.throttle
            .get_or_create(&label("reason", reason))
            .inc_by(seconds);
        let micros = (seconds * 1e6).round() as u64;
        self.throttle_us.fetch_add(micros, Ordering::Relaxed);
        self.throttle_waits.fetch_add(1, Ordering::Relaxed);
    }

    /// Throttle waits of this process and their time in all, every reason.
    pub fn throttle_tally(&self) -> Tally {
        Tally {
            count: self.throttle_waits.load(Ordering::Relaxed),
            total: std::time::Duration::from_micros(self.throttle_us.load(Ordering::Relaxed)),
        }
    }

    /// The replication lag last seen on `replica`, in seconds.
    pub fn set_replica_lag_seconds(&self, replica: &str, lag: f64) {
        self.replica_lag
            .get_or_create(&label("replica", replica))
            .set(lag);
    }

    /// Records one batch attempt's wall time.
    pub fn observe_batch(&self, duration: std::time::Duration) {
        self.batch_duration.observe(duration.as_secs_f64());
    }

    /// Says how this invocation stands or ended.
    pub fn set_outcome(&self, outcome: Outcome) {
        for each in Outcome::ALL {
            let value = i64::from(each == outcome);
            self.outcome
                .get_or_create(&label("outcome", each.label()))
                .set(value);
        }
    }

    /// The metrics in the OpenMetrics text format (`# EOF` at the end), to be served as
    /// [`CONTENT_TYPE`]. Measures the WAL directory first.
    pub fn render(&self) -> String {
        if let Ok(bytes) = journal::log_bytes(&self.wal_dir) {
            self.wal_bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("writing into a String cannot fail");
        text
    }

    /// The metrics in the classic Prometheus text format (0.0.4), the one node_exporter's
    /// textfile collector parses: see [`classic_text`].
    pub fn render_classic(&self) -> String {
        classic_text(&self.render())
    }

    /// What the journal's observer does with an appended event, given the state it made.
    fn count(&self, event: &Event, state: &State) {
        match event {
            Event::BatchDeleted(e) => {
                add(&self.rows_archived, e.rows_deleted);
                add(&self.rows_copied, e.rows_copied);
                add(&self.rows_already, e.rows_already);
                self.batch_counter("done").inc();
            }
            Event::BatchCopied(e) => {
                add(&self.rows_copied, e.rows_copied);
                add(&self.rows_already, e.rows_already);
            }
            // An earlier commit found to have happened counts now, as its lost BatchDeleted
            // would have (the state adds the same).
            Event::BatchCommitting(e) => {
                if let EarlierCommit::Committed(earlier) = &e.earlier {
                    add(&self.rows_archived, earlier.rows_deleted);
                    add(&self.rows_copied, earlier.rows_copied);
                    add(&self.rows_already, earlier.rows_already);
                }
            }
            Event::ConflictFound(_) => {
                self.conflicts.inc();
            }
            Event::BatchFailed(e) => {
                self.batch_counter("failed").inc();
                let parked = state
                    .batch(e.batch_id)
                    .is_some_and(|b| matches!(b.status, BatchStatus::Parked { .. }));
                if parked {
                    self.batch_counter("parked").inc();
                }
                self.count_parked(state);
            }
            Event::BatchReset(_) => self.count_parked(state),
            Event::RunStarted(e) => {
                self.run_id.set(i64::try_from(e.run_id).unwrap_or(i64::MAX));
            }
            Event::RunFinished(e) if e.outcome == RunOutcome::Completed => {
                self.last_success.set(unix_seconds(e.finished_unix_us));
            }
            _ => {}
        }
    }

    fn count_parked(&self, state: &State) {
        let parked = state.parked_batches().count() as u64;
        self.batches_parked
            .set(i64::try_from(parked).unwrap_or(i64::MAX));
    }
}

/// The journal's observer that moves the metrics: attach with `Journal::observe`.
pub struct MetricsObserver(pub Arc<Metrics>);

impl Observer for MetricsObserver {
    fn post_apply(&mut self, event: &Event, state: &State) {
        self.0.count(event, state);
    }
}

/// OpenMetrics text as classic Prometheus text: OpenMetrics names a counter's family without
/// its `_total` (`# TYPE archiver_rows_archived counter`, then the series
/// `archiver_rows_archived_total`), which the classic parser reads as a family with no series
/// and an untyped series of another name: node_exporter then exported every counter untyped
/// and without help. Here each counter's `# HELP` and `# TYPE` name its `_total` series, and
/// the `# UNIT` and `# EOF` lines, which the classic format lacks, are left out. Gauges and
/// histograms are written alike in both.
fn classic_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 16 * counters.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let (name, rest) = line.strip_prefix(prefix)?.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {rest}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    use openmetrics_parser::{openmetrics, OpenMetricsValue};

    use super::*;
    use crate::event::{
        BatchDeleted, BatchFailed, BatchPlanned, ConflictFound, ErrorClass, Key, KeyValue,
        LogCreated, RunFinished, RunStarted,
    };

    fn config() -> JobConfig {
        let text = "[source]\nurl = \"mysql://a@127.0.0.1:1/shop\"\ntable = \"rewards\"\n\
                    [archive]\ntable = \"rewards_archive\"\n\
                    [job]\nwhere = \"id < 10\"\nwal_dir = \"/nonexistent/wal\"\n";
        JobConfig::parse(text, Path::new("/etc"), &|_| None).unwrap()
    }

    fn key(id: u64) -> Key {
        vec![KeyValue::UInt(id)]
    }

    /// A log's story: a run whose first batch moves 7 rows (2 already archived) and keeps one
    /// conflict, whose second batch is parked by a batch-class error, finished at 1.5 s after
    /// the epoch's 1,700,000,000th second.
    fn story() -> Vec<Event> {
        let config = config();
        vec![
            Event::LogCreated(LogCreated {
                job: config.identity(),
                created_unix_us: 1,
            }),
            Event::RunStarted(RunStarted {
                run_id: 1,
                now_unix_us: 2,
                key_bound: Some(key(100)),
                batch_rows: 10,
                attempts_max: 3,
                started_unix_us: 2,
            }),
            Event::BatchPlanned(BatchPlanned {
                batch_id: 1,
                run_id: 1,
                lower: None,
                upper: key(10),
                rows_planned: 8,
            }),
            Event::ConflictFound(ConflictFound {
                batch_id: 1,
                key: key(4),
            }),
            Event::BatchDeleted(BatchDeleted {
                batch_id: 1,
                rows_copied: 5,
                rows_already: 2,
                rows_deleted: 7,
                rows_conflicting: 1,
            }),
            Event::BatchPlanned(BatchPlanned {
                batch_id: 2,
                run_id: 1,
                lower: Some(key(10)),
                upper: key(20),
                rows_planned: 10,
            }),
            Event::BatchFailed(BatchFailed {
                batch_id: 2,
                attempt: 1,
                class: ErrorClass::Batch,
                message: "a value the archive refuses".into(),
            }),
            Event::RunFinished(RunFinished {
                run_id: 1,
                outcome: RunOutcome::Completed,
                finished_unix_us: 1_700_000_001_500_000,
            }),
        ]
    }

    /// Names the series of family `name` with these labels: `name{suffix}{k="v",...}`,
    /// labels sorted, no braces without labels.
    fn series_namer<K: std::fmt::Display, V: std::fmt::Debug>(
        name: &str,
        labels: impl Iterator<Item = (K, V)>,
    ) -> impl Fn(&str) -> String + '_ {
        let mut labels: Vec<String> = labels.map(|(k, v)| format!("{k}={v:?}")).collect();
        labels.sort();
        move |suffix: &str| {
            if labels.is_empty() {
                format!("{name}{suffix}")
            } else {
                format!("{name}{suffix}{{{}}}", labels.join(","))
            }
        }
    }

    /// Every sample of an exposition parsed by the strict OpenMetrics parser, as
    /// `name{label="value",...}` (labels sorted) -> value; a histogram gives `_count`, `_sum`.
    fn samples(text: &str) -> HashMap<String, f64> {
        let exposition = openmetrics::parse_openmetrics(text)
            .unwrap_or_else(|e| panic!("not valid OpenMetrics: {e:?}\n{text}"));
        let mut samples = HashMap::new();
        for (name, family) in &exposition.families {
            for sample in family.iter_samples() {
                let set = sample.get_labelset().unwrap();
                let series = series_namer(name, set.iter());
                match &sample.value {
                    OpenMetricsValue::Counter(c) => {
                        samples.insert(series("_total"), c.value.as_f64());
                    }
                    OpenMetricsValue::Gauge(n) => {
                        samples.insert(series(""), n.as_f64());
                    }
                    OpenMetricsValue::Histogram(h) => {
                        samples.insert(series("_count"), h.count.unwrap_or(0) as f64);
                        samples.insert(series("_sum"), h.sum.map_or(0.0, |s| s.as_f64()));
                    }
                    other => panic!("unexpected metric type in {name}: {other:?}"),
                }
            }
        }
        samples
    }

    /// Every sample of a classic Prometheus text exposition (node_exporter's textfile
    /// format), keyed as [`samples`] keys them, and the family of each series that has no type.
    fn classic_samples(text: &str) -> (HashMap<String, f64>, Vec<String>) {
        try_classic_samples(text)
            .unwrap_or_else(|e| panic!("not valid Prometheus text: {e}\n{text}"))
    }

    fn try_classic_samples(text: &str) -> Result<(HashMap<String, f64>, Vec<String>), String> {
        use openmetrics_parser::{prometheus, PrometheusType, PrometheusValue};
        let exposition = prometheus::parse_prometheus(text).map_err(|e| format!("{e:?}"))?;
        let mut samples = HashMap::new();
        let mut untyped = Vec::new();
        for (name, family) in &exposition.families {
            if family.family_type == PrometheusType::Unknown {
                untyped.push(name.clone());
            }
            for sample in family.iter_samples() {
                let set = sample.get_labelset().unwrap();
                let series = series_namer(name, set.iter());
                match &sample.value {
                    PrometheusValue::Counter(c) => {
                        samples.insert(series(""), c.value.as_f64());
                    }
                    PrometheusValue::Gauge(n) | PrometheusValue::Unknown(n) => {
                        samples.insert(series(""), n.as_f64());
                    }
                    PrometheusValue::Histogram(h) => {
                        samples.insert(series("_count"), h.count.unwrap_or(0) as f64);
                        samples.insert(series("_sum"), h.sum.map_or(0.0, |s| s.as_f64()));
                    }
                    other => panic!("unexpected metric type in {name}: {other:?}"),
                }
            }
        }
        Ok((samples, untyped))
    }

    /// The textfile's classic text holds the same series with the same values as the
    /// OpenMetrics text, every one of them typed (counters as counters, under their `_total`
    /// names), and no `# EOF` or `# UNIT` line. The OpenMetrics text itself, read the classic
    /// way as node_exporter reads a textfile, leaves the counters untyped: what this fixes.
    #[test]
    fn the_textfile_text_is_classic_prometheus_text_with_typed_counters() {
        let config = config();
        let metrics = Metrics::new(&config);
        let mut state = State::new();
        for (lsn, event) in (1..).zip(story()) {
            state.apply(lsn, &event).unwrap();
        }
        metrics.seed(&state);
        metrics.observe_batch(std::time::Duration::from_millis(30));
        metrics.add_throttle("sleep", 0.25);
        let openmetrics_text = metrics.render();
        let classic = metrics.render_classic();
        assert!(
            !classic.contains("# EOF") && !classic.contains("# UNIT"),
            "{classic}"
        );
        assert!(
            classic.contains("# TYPE archiver_rows_archived_total counter\n")
                && classic.contains("# HELP archiver_rows_archived_total "),
            "{classic}"
        );
        let (series, untyped) = classic_samples(&classic);
        assert!(
            untyped.is_empty(),
            "untyped families {untyped:?} in\n{classic}"
        );
        assert_eq!(series, samples(&openmetrics_text));
        assert_eq!(series.get("archiver_rows_archived_total"), Some(&7.0));
        // Read the classic way, the OpenMetrics text does not give the counters their type:
        // node_exporter's parser takes them as untyped series, this stricter one refuses the
        // series named unlike their family.
        match try_classic_samples(&openmetrics_text) {
            Err(refused) => assert!(refused.contains("archiver_rows_archived"), "{refused}"),
            Ok((_, untyped)) => assert!(
                untyped.contains(&"archiver_rows_archived_total".to_string()),
                "{untyped:?}"
            ),
        }
    }

    /// The counts the observer moves as events are appended are exactly the counts a replay of
    /// the same log seeds: the metrics say what the WAL says, whichever way they learnt it. The
    /// text parses as strict OpenMetrics.
    #[test]
    fn live_counts_equal_the_seeded_counts_and_parse_as_exposition_text() {
        let config = config();
        let live = Arc::new(Metrics::new(&config));
        live.seed(&State::new());
        let mut observer = MetricsObserver(live.clone());
        let mut state = State::new();
        for (lsn, event) in (1..).zip(story()) {
            state.apply(lsn, &event).unwrap();
            observer.post_apply(&event, &state);
        }
        live.observe_batch(std::time::Duration::from_millis(30));
        live.add_throttle("sleep", 0.25);
        live.add_throttle("replica_lag", 1.5);
        live.set_replica_lag_seconds("replica1:3306", 12.0);
        let seeded = Metrics::new(&config);
        seeded.seed(&state);
        seeded.seed(&state); // a second seed counts nothing
        let live_text = live.render();
        let (live, seeded) = (samples(&live_text), samples(&seeded.render()));
        let expected: &[(&str, f64)] = &[
            ("archiver_rows_archived_total", 7.0),
            ("archiver_rows_copied_total", 5.0),
            ("archiver_rows_already_archived_total", 2.0),
            ("archiver_conflicts_total", 1.0),
            ("archiver_batches_total{outcome=\"done\"}", 1.0),
            ("archiver_batches_total{outcome=\"failed\"}", 1.0),
            ("archiver_batches_total{outcome=\"parked\"}", 1.0),
            ("archiver_batches_parked", 1.0),
            ("archiver_last_success_timestamp_seconds", 1_700_000_001.5),
            ("archiver_run_id", 1.0),
            ("archiver_outcome{outcome=\"running\"}", 1.0),
            ("archiver_outcome{outcome=\"done\"}", 0.0),
            (
                "archiver_job_info{archive=\"rewards_archive\",source=\"shop.rewards\"}",
                1.0,
            ),
        ];
        for (series, value) in expected {
            let series = series.replace("rewards_archive", "shop.rewards_archive");
            assert_eq!(live.get(&series), Some(value), "live {series}");
            assert_eq!(seeded.get(&series), Some(value), "seeded {series}");
        }
        let timings: &[(&str, f64)] = &[
            ("archiver_batch_duration_seconds_count", 1.0),
            ("archiver_throttle_seconds_total{reason=\"sleep\"}", 0.25),
            (
                "archiver_throttle_seconds_total{reason=\"replica_lag\"}",
                1.5,
            ),
            (
                "archiver_replica_lag_seconds{replica=\"replica1:3306\"}",
                12.0,
            ),
        ];
        for (series, value) in timings {
            assert_eq!(live.get(*series), Some(value), "{series}");
        }
        assert_eq!(
            seeded.get("archiver_batch_duration_seconds_count"),
            Some(&0.0),
            "timings are this process's own"
        );
    }

    /// The outcome gauge is 1 for exactly one outcome; with no run finished, the last success
    /// is 0.
    #[test]
    fn the_outcome_gauge_says_one_outcome() {
        let metrics = Metrics::new(&config());
        metrics.set_outcome(Outcome::Stopped);
        let samples = samples(&metrics.render());
        let ones: Vec<_> = samples
            .iter()
            .filter(|(name, value)| name.starts_with("archiver_outcome{") && **value == 1.0)
            .map(|(name, _)| name.as_str())
            .collect();
        assert_eq!(ones, ["archiver_outcome{outcome=\"stopped\"}"]);
        assert_eq!(
            samples.get("archiver_last_success_timestamp_seconds"),
            Some(&0.0)
        );
    }
}
