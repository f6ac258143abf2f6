//! Live control of a running job (issue 9): `archiver run` listens on a Unix socket in its WAL
//! directory (`control.sock`, mode 0600) and answers HTTP ([`http`]), so `curl --unix-socket`
//! works as well as `archiver ctl`. [`Routes`] maps requests to answers:
//!
//! - `GET /status`: what the process is doing ([`Report`], JSON);
//! - `POST /pause`, `POST /resume`: hold the run between batches, no transaction open;
//! - `POST /stop`: finish the current step and exit "stopped early" (2), as a first SIGTERM;
//! - `POST /set?batch_rows=N&sleep_ms=N&max_lag_s=N`: change settings for the rest of the run,
//!   each checked against the job file's range (`config::limits`), recorded in the WAL as a
//!   `SettingsChanged` before the answer, so a resumed run keeps them; a new run starts from
//!   the job file again.
//!
//! The server is a task beside the engine loop and never touches the journal: status comes from
//! the [`Report`] the engine publishes ([`watch`]) between steps; pause, resume and set are
//! commands sent to the engine ([`mpsc`]), which obeys them between steps, where the flag files
//! are checked ([`Control::obey`]), and during the pause between batches; stop is the same
//! request a signal makes ([`ShutdownTrigger`]), so it also cuts short a reconnection or a
//! backoff.
//!
//! The socket is created only once the WAL lock is held (one runner per WAL directory, so a
//! socket left by a killed run is removed and bound again), and removed before the lock is
//! released ([`Control`]'s drop).

pub mod http;

use std::collections::VecDeque;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

use self::http::{Request, Response};
use super::now_unix_us;
use super::sentinel::{Sentinel, Verdict};
use super::shutdown::{Shutdown, ShutdownTrigger};
use crate::config::{ConfigError, JobConfig, Limit, BATCH_ROWS, MAX_LAG_S, SLEEP_MS};
use crate::error::Error;
use crate::event::{Event, JobIdentity, SettingsChanged};
use crate::journal::{Durability, Journal};
use crate::state::{Counts, LiveSettings, State};

/// Permissions of the socket file: owner only, whatever the umask.
pub const SOCKET_MODE: u32 = 0o600;

/// Longest path a Unix socket can be bound at, in bytes (`sun_path` holds 108 with its NUL).
pub const SOCKET_PATH_BYTES_MAX: usize = 107;

/// Connections served at once; more wait to be accepted.
const CONNECTIONS_MAX: usize = 16;

/// Commands waiting for the engine; more are answered 503.
const COMMANDS_QUEUED_MAX: usize = 16;

/// How long a pause, resume or set waits for the engine to obey it before the answer is 202
/// Accepted, in milliseconds. The engine obeys between steps; a batch waiting for a lock, or a
/// reconnection, may take longer, and the command is then obeyed when it ends.
pub const REPLY_WAIT_MS: u64 = 10_000;

/// The settings `set` changes, each with the range of its job-file key.
const SETTABLE: [(&str, Limit); 3] = [
    ("batch_rows", BATCH_ROWS),
    ("sleep_ms", SLEEP_MS),
    ("max_lag_s", MAX_LAG_S),
];

/// The endpoints and their methods.
const ENDPOINTS: [(&str, &str); 6] = [
    ("GET", "/status"),
    ("GET", "/metrics"),
    ("POST", "/pause"),
    ("POST", "/resume"),
    ("POST", "/stop"),
    ("POST", "/set"),
];

/// What the process is doing, as status says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Working through its batches (or waiting between them).
    Running,
    /// Held between batches, no transaction open.
    Paused,
    /// Asked to stop: finishing its current step, then exiting "stopped early".
    Stopping,
}

/// Rows and batches, as status counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// Rows deleted from the source, each with an identical archived copy.
    pub rows_moved: u64,
    /// Batches done.
    pub batches_done: u64,
    /// Rows whose identical copy the archive already held.
    pub rows_already: u64,
    /// Rows kept in the source because the archive holds a different row.
    pub rows_conflicting: u64,
    /// Failed attempts at batches.
    pub failures: u64,
}

impl From<&Counts> for Progress {
    fn from(c: &Counts) -> Progress {
        Progress {
            rows_moved: c.rows_deleted,
            batches_done: c.batches_done,
            rows_already: c.rows_already,
            rows_conflicting: c.rows_conflicting,
            failures: c.failures,
        }
    }
}

/// The settings in force for the next batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Settings {
    /// Rows per batch.
    pub batch_rows: u32,
    /// Pause between batches, in milliseconds.
    pub sleep_ms: u32,
    /// Replica lag bound of the throttle, in seconds; `None` when none is configured.
    pub max_lag_s: Option<u32>,
}

/// `GET /status`: what the running process reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The job, as its log records it.
    pub job: Option<JobIdentity>,
    /// This process.
    pub pid: u32,
    /// The open run (or the last, once finished).
    pub run_id: Option<u64>,
    /// Running, paused or stopping.
    pub state: RunState,
    /// Since when it is in that state, microseconds since the Unix epoch.
    pub state_since_unix_us: i64,
    /// Why it is paused: `archiver ctl pause`, or the pause file.
    pub pause_reason: Option<String>,
    /// When this invocation started, microseconds since the Unix epoch.
    pub started_unix_us: i64,
    /// What the run did, over all its invocations.
    pub run: Progress,
    /// What this invocation did.
    pub invocation: Progress,
    /// The settings in force.
    pub settings: Settings,
    /// The settings changed live for this run (`set`), with when.
    pub live: LiveSettings,
    /// LSN of the last record.
    pub last_lsn: u64,
    /// Where the open run stands as the progress display shows it: rows left, rate, ETA.
    pub progress: Option<super::progress::Snapshot>,
    /// What holds the job between batches, why, since when; the replicas' lag; time waited.
    pub throttle: Option<ThrottleReport>,
}

/// The throttle as `status` reports it (`engine::throttle`'s state and totals).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ThrottleReport {
    /// What holds the job now (`sleep`, `replica_lag`, `load`); `None` while it runs.
    pub holding: Option<&'static str>,
    /// Why, for people.
    pub reason: Option<String>,
    /// Since when, microseconds since the Unix epoch.
    pub since_unix_us: Option<i64>,
    /// The lag bound in force, in seconds.
    pub max_lag_s: u32,
    /// Each replica as the last check saw it: `host:port`, lag in seconds, or the problem.
    pub replicas: Vec<(String, Option<f64>, Option<String>)>,
    /// Seconds waited in this invocation, by reason.
    pub waited_s: Vec<(&'static str, f64)>,
}

impl ThrottleReport {
    fn of(handle: &super::ThrottleHandle) -> ThrottleReport {
        let (state, totals) = (handle.state(), handle.totals());
        ThrottleReport {
            holding: state.kind.map(super::ThrottleKind::label),
            reason: state.reason,
            since_unix_us: state.since_unix_us,
            max_lag_s: state.max_lag_s,
            replicas: state
                .replicas
                .into_iter()
                .map(|r| (r.server, r.lag_s, r.problem))
                .collect(),
            waited_s: super::ThrottleKind::ALL
                .iter()
                .map(|k| (k.label(), totals.of(*k).as_secs_f64()))
                .collect(),
        }
    }
}

/// What the socket shows besides the engine's report, read when asked: the metrics, the
/// throttle (live, also while the engine waits in it) and the progress display's figures.
#[derive(Clone)]
pub struct Views {
    /// The job's metrics, served at `GET /metrics`.
    pub metrics: Arc<super::metrics::Metrics>,
    /// The throttle's state and totals.
    pub throttle: super::ThrottleHandle,
    /// The progress display's latest figures.
    pub progress: Arc<std::sync::Mutex<super::progress::Snapshot>>,
}

impl std::fmt::Debug for Views {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Views")
            .field("throttle", &self.throttle)
            .field("progress", &self.progress)
            .finish_non_exhaustive()
    }
}

/// A `set` request, checked: each given setting within its range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SettingsChange {
    /// Rows per batch.
    pub batch_rows: Option<u32>,
    /// Pause between batches, in milliseconds.
    pub sleep_ms: Option<u32>,
    /// Replica lag bound, in seconds.
    pub max_lag_s: Option<u32>,
}

impl SettingsChange {
    /// The change `pairs` ask for; an error names the first key or value refused.
    pub fn parse(pairs: &[(String, String)]) -> Result<SettingsChange, String> {
        if pairs.is_empty() {
            return Err(
                "nothing to set; give one or more of batch_rows=N, sleep_ms=N, max_lag_s=N".into(),
            );
        }
        let mut change = SettingsChange::default();
        for (key, value) in pairs {
            let Some((name, limit)) = SETTABLE.iter().find(|(name, _)| name == key) else {
                return Err(format!(
                    "unknown setting {key:?}; settable live: batch_rows, sleep_ms, max_lag_s"
                ));
            };
            let slot = change.slot(name);
            if slot.is_some() {
                return Err(format!("{name} is given twice"));
            }
            let number: u32 = value
                .parse()
                .map_err(|_| format!("{name} = {value:?} is not a whole number"))?;
            if !(limit.min..=limit.max).contains(&number) {
                return Err(format!(
                    "{name} = {number} is out of range; use {} to {}",
                    limit.min, limit.max
                ));
            }
            *slot = Some(number);
        }
        Ok(change)
    }

    fn slot(&mut self, name: &str) -> &mut Option<u32> {
        match name {
            "batch_rows" => &mut self.batch_rows,
            "sleep_ms" => &mut self.sleep_ms,
            _ => &mut self.max_lag_s,
        }
    }

    /// "batch_rows 200, sleep_ms 50".
    fn text(&self) -> String {
        [
            ("batch_rows", self.batch_rows),
            ("sleep_ms", self.sleep_ms),
            ("max_lag_s", self.max_lag_s),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| format!("{name} {v}")))
        .collect::<Vec<_>>()
        .join(", ")
    }
}

/// What the server asks of the engine.
#[derive(Debug)]
enum Command {
    Pause,
    Resume,
    Set(SettingsChange),
}

/// A command and where its answer goes.
#[derive(Debug)]
struct Envelope {
    command: Command,
    reply: oneshot::Sender<Response>,
}

/// The router: what each request means. Cheap to clone, one per connection; the same routes can
/// serve another listener (TCP) or more paths (`/metrics`).
#[derive(Debug, Clone)]
pub struct Routes {
    /// Commands for the engine.
    commands: mpsc::Sender<Envelope>,
    /// The engine's latest report.
    report: Arc<watch::Sender<Report>>,
    /// Asks the run to stop, as a signal does.
    trigger: ShutdownTrigger,
    /// Metrics, throttle and progress.
    views: Views,
}

impl Routes {
    /// The answer to `request`.
    pub async fn respond(&self, request: Request) -> Response {
        let Some(&(method, path)) = ENDPOINTS.iter().find(|(_, p)| *p == request.path) else {
            return Response::message(
                404,
                format!(
                    "no endpoint {}; this socket serves GET /status, GET /metrics, POST /pause, POST /resume, \
                     POST /stop, POST /set?KEY=VALUE",
                    request.path
                ),
            );
        };
        if request.method != method {
            let mut refused = Response::message(405, format!("{path} takes {method}"));
            refused.allow = Some(method);
            return refused;
        }
        match path {
            "/status" => Response::json(200, &self.status()),
            "/metrics" => Response {
                status: 200,
                content_type: super::metrics::CONTENT_TYPE,
                allow: None,
                body: self.views.metrics.render(),
            },
            "/pause" => self.ask(Command::Pause).await,
            "/resume" => self.ask(Command::Resume).await,
            "/stop" => self.stop(),
            _ => match SettingsChange::parse(&request.parameters()) {
                Ok(change) => self.ask(Command::Set(change)).await,
                Err(message) => Response::message(400, format!("{message}; nothing recorded")),
            },
        }
    }

    /// The engine's latest report; "stopping" as soon as a stop is requested, by any means.
    pub fn status(&self) -> Report {
        let mut report = self.report.borrow().clone();
        if self.trigger.requested() && report.state != RunState::Stopping {
            report.state = RunState::Stopping;
            report.state_since_unix_us = now_unix_us();
            report.pause_reason = None;
        }
        report.throttle = Some(ThrottleReport::of(&self.views.throttle));
        let progress = self.views.progress.lock().map(|p| p.clone());
        report.progress = progress.ok().filter(|p| p.run_id != 0);
        report
    }

    fn stop(&self) -> Response {
        if !self.trigger.requested() {
            tracing::warn!(
                "stop requested through the control socket: stopping after the current step"
            );
            self.trigger.request();
            let now = now_unix_us();
            self.report.send_modify(|report| {
                report.state = RunState::Stopping;
                report.state_since_unix_us = now;
                report.pause_reason = None;
            });
        }
        Response::message(
            200,
            "stopping: the run finishes its current step and exits with code 2 (stopped early); \
             the next `archiver run` resumes it",
        )
    }

    /// Sends `command` to the engine and waits (a bounded time) for its answer.
    async fn ask(&self, command: Command) -> Response {
        let (reply, answer) = oneshot::channel();
        let what = match &command {
            Command::Pause => "the pause".to_string(),
            Command::Resume => "the resume".to_string(),
            Command::Set(change) => format!("the change ({})", change.text()),
        };
        if let Err(error) = self.commands.try_send(Envelope { command, reply }) {
            let message = match error {
                mpsc::error::TrySendError::Full(_) => format!(
                    "busy: {COMMANDS_QUEUED_MAX} requests already wait for the run; try again"
                ),
                mpsc::error::TrySendError::Closed(_) => "the run is ending".to_string(),
            };
            return Response::message(503, message);
        }
        match tokio::time::timeout(Duration::from_millis(REPLY_WAIT_MS), answer).await {
            Ok(Ok(response)) => response,
            Ok(Err(_)) => Response::message(503, "the run ended before it could obey"),
            Err(_) => Response::message(
                202,
                format!(
                    "accepted: the run is busy (a batch waiting for a lock, a reconnection, \
                     or held by the pause file); it applies {what} as soon as that ends"
                ),
            ),
        }
    }
}

/// Refuses a WAL directory whose socket path is too long to bind, before anything is written.
pub fn check_socket_path(config: &JobConfig) -> Result<(), ConfigError> {
    let path = config.control_socket();
    let bytes = path.as_os_str().len();
    if bytes > SOCKET_PATH_BYTES_MAX {
        return Err(ConfigError(format!(
            "the control socket {} would be {bytes} bytes long, more than the \
             {SOCKET_PATH_BYTES_MAX} a Unix socket path may have; choose a shorter [job] wal_dir",
            path.display()
        )));
    }
    Ok(())
}

/// Binds the socket at `path` owner-only, replacing a socket file left by a killed run (the
/// caller holds the WAL lock, so nobody else listens on it).
fn bind(path: &Path) -> std::io::Result<UnixListener> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "the path exists and is not a socket; remove it",
            ))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    // Created 0600 whatever the umask: the umask is narrowed around the bind (nothing else in
    // this process creates files meanwhile), and the mode set again after it.
    // SAFETY: umask only swaps the process's file mode mask; it cannot fail.
    let previous = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above, restoring the mask we replaced.
    unsafe { libc::umask(previous) };
    let listener = bound?;
    if let Err(error) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))
    {
        let _ = std::fs::remove_file(path);
        return Err(error);
    }
    Ok(listener)
}

/// Accepts connections and serves each with `routes`, at most [`CONNECTIONS_MAX`] at once,
/// until aborted (which drops the connections in flight).
async fn listen(listener: UnixListener, routes: Routes) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept(), if connections.len() < CONNECTIONS_MAX => match accepted {
                Ok((stream, _)) => {
                    let routes = routes.clone();
                    connections.spawn(async move {
                        http::serve(stream, |request| async move { routes.respond(request).await }).await;
                    });
                }
                Err(error) => {
                    tracing::warn!("control socket: cannot accept a connection: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Serves `GET /metrics` on `listener` (`[metrics] listen`) until the task is aborted; any other
/// request is a 404: pause, stop and set stay on the owner-only socket.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    metrics: Arc<super::metrics::Metrics>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept(), if connections.len() < CONNECTIONS_MAX => match accepted {
                Ok((stream, _)) => {
                    let metrics = metrics.clone();
                    connections.spawn(async move {
                        http::serve(stream, |request| async move {
                            if request.method == "GET" && request.path == "/metrics" {
                                Response {
                                    status: 200,
                                    content_type: super::metrics::CONTENT_TYPE,
                                    allow: None,
                                    body: metrics.render(),
                                }
                            } else {
                                Response::message(404, "this port serves GET /metrics only".to_string())
                            }
                        })
                        .await;
                    });
                }
                Err(error) => {
                    tracing::warn!("metrics port: cannot accept a connection: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// The server task; dropping it stops the task and removes the socket file.
#[derive(Debug)]
struct Server {
    /// The socket file.
    path: PathBuf,
    /// The listening task.
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
        if let Err(error) = std::fs::remove_file(&self.path) {
            if error.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(
                    "cannot remove the control socket {}: {error}",
                    self.path.display()
                );
            }
        }
    }
}

/// What a report needs besides the state: this invocation's start and the job file's settings.
#[derive(Debug, Clone)]
struct Baseline {
    /// The log's totals when this invocation began.
    before: Counts,
    /// When this invocation began.
    started_unix_us: i64,
    /// The job file's settings (a run started with them, unless changed live).
    configured: Settings,
}

impl Baseline {
    fn report(&self, state: &State) -> Report {
        let open = state.open_run();
        let run = open.or(state.last_run());
        let live = open.map_or(LiveSettings::default(), |r| r.live);
        Report {
            job: state.job().cloned(),
            pid: std::process::id(),
            run_id: run.map(|r| r.run_id),
            state: RunState::Running,
            state_since_unix_us: self.started_unix_us,
            pause_reason: None,
            started_unix_us: self.started_unix_us,
            run: run.map_or(Progress::default(), |r| Progress::from(&r.counts)),
            invocation: Progress::from(&state.totals().since(&self.before)),
            settings: Settings {
                batch_rows: open.map_or(self.configured.batch_rows, |r| r.batch_rows_now()),
                sleep_ms: live.sleep_ms.unwrap_or(self.configured.sleep_ms),
                max_lag_s: live.max_lag_s.or(self.configured.max_lag_s),
            },
            live,
            last_lsn: state.last_lsn(),
            progress: None,
            throttle: None,
        }
    }
}

/// The engine's side of the control socket: the server (stopped, its socket removed, when
/// this is dropped), the commands waiting, the report it publishes.
#[derive(Debug)]
pub struct Control {
    /// The listening task and its socket file.
    _server: Server,
    /// Commands from the server.
    commands: mpsc::Receiver<Envelope>,
    /// Commands received while waiting, obeyed at the next check.
    waiting: VecDeque<Envelope>,
    /// The report the server answers `GET /status` with.
    report: Arc<watch::Sender<Report>>,
    /// Since when `ctl pause` holds the run; `None` while not paused.
    paused_since: Option<i64>,
    /// What reports add to the state.
    baseline: Baseline,
    /// The routes the socket serves, for another listener to serve too.
    routes: Routes,
}

/// Binds the job's control socket (the caller holds the WAL lock) and starts serving it; `stop`
/// requests go through `trigger`. `state` is the log as this invocation found it.
pub fn start(
    config: &JobConfig,
    state: &State,
    trigger: ShutdownTrigger,
    views: Views,
) -> Result<Control, Error> {
    let path = config.control_socket();
    let listener = bind(&path).map_err(|error| {
        anyhow::anyhow!(
            "cannot listen on the control socket {}: {error}",
            path.display()
        )
    })?;
    let baseline = Baseline {
        before: *state.totals(),
        started_unix_us: now_unix_us(),
        configured: Settings {
            batch_rows: config.batching.rows,
            sleep_ms: config.batching.sleep_ms,
            max_lag_s: (!config.throttle.replicas.is_empty()).then_some(config.throttle.max_lag_s),
        },
    };
    let report = Arc::new(watch::Sender::new(baseline.report(state)));
    let (sender, commands) = mpsc::channel(COMMANDS_QUEUED_MAX);
    let routes = Routes {
        commands: sender,
        report: report.clone(),
        trigger,
        views,
    };
    let task = tokio::spawn(listen(listener, routes.clone()));
    tracing::info!("control socket: {}", path.display());
    Ok(Control {
        _server: Server { path, task },
        commands,
        waiting: VecDeque::new(),
        report,
        paused_since: None,
        baseline,
        routes,
    })
}

impl Control {
    /// The routes the socket serves: another listener (a TCP port) serves the same with
    /// `http::serve(stream, |request| routes.respond(request))`.
    pub fn routes(&self) -> Routes {
        self.routes.clone()
    }

    /// Between steps: obeys the commands waiting, then holds while paused, obeying commands
    /// meanwhile (a set is recorded, resume ends the hold), until resumed or a stop is
    /// requested.
    pub async fn obey(
        &mut self,
        journal: &mut Journal,
        shutdown: &mut Shutdown,
    ) -> Result<Verdict, Error> {
        loop {
            while let Some(envelope) = self.next_waiting() {
                self.handle(envelope, journal)?;
            }
            self.publish(journal.state(), shutdown.requested(), None);
            if self.paused_since.is_none() {
                return Ok(Verdict::Go);
            }
            // Held: what the last batch appended unsynced is made durable (and visible to
            // `status` and `inspect`) rather than left in the buffer for the whole pause.
            journal.sync()?;
            tokio::select! {
                () = shutdown.recv() => {
                    self.publish(journal.state(), true, None);
                    return Ok(Verdict::Stop);
                }
                () = self.command_arrives() => {}
            }
        }
    }

    /// Whether [`Control::obey`] has something to do: a command waiting, or a pause.
    pub fn has_news(&self) -> bool {
        self.paused_since.is_some() || !self.waiting.is_empty() || !self.commands.is_empty()
    }

    /// Completes when a command arrives (kept for the next [`Control::obey`]); a wait selects
    /// on it to end early. Cancel-safe.
    pub async fn command_arrives(&mut self) {
        match self.commands.recv().await {
            Some(envelope) => self.waiting.push_back(envelope),
            None => std::future::pending().await,
        }
    }

    /// Shows "paused (pause file)" in status while the sentinel's pause file holds the run.
    pub fn note_pause_file(&self, state: &State, sentinel: &Sentinel) {
        if sentinel.pause.exists() {
            self.publish(state, false, Some(&sentinel.pause));
        }
    }

    fn next_waiting(&mut self) -> Option<Envelope> {
        self.waiting
            .pop_front()
            .or_else(|| self.commands.try_recv().ok())
    }

    /// Publishes the report of `state`; the state's "since" moves only when it changes.
    fn publish(&self, state: &State, stopping: bool, pause_file: Option<&Path>) {
        let (run_state, reason) = if stopping {
            (RunState::Stopping, None)
        } else if let Some(file) = pause_file {
            let reason = format!("pause file {} (remove it to resume)", file.display());
            (RunState::Paused, Some(reason))
        } else if self.paused_since.is_some() {
            let reason = "archiver ctl pause (POST /pause); ctl resume resumes".to_string();
            (RunState::Paused, Some(reason))
        } else {
            (RunState::Running, None)
        };
        let mut fresh = self.baseline.report(state);
        self.report.send_modify(|report| {
            let same = report.state == run_state && report.pause_reason == reason;
            fresh.state_since_unix_us = if same {
                report.state_since_unix_us
            } else {
                now_unix_us()
            };
            fresh.state = run_state;
            fresh.pause_reason = reason;
            *report = fresh;
        });
    }

    /// Obeys one command and answers it. Only a failure to record a change is an error (the
    /// WAL failed: the run stops).
    fn handle(&mut self, envelope: Envelope, journal: &mut Journal) -> Result<(), Error> {
        let response = match envelope.command {
            Command::Pause => self.pause(),
            Command::Resume => self.resume(),
            Command::Set(change) => match self.record(change, journal) {
                Ok(response) => response,
                Err(error) => {
                    let message = format!("could not record the change; the run stops: {error}");
                    let _ = envelope.reply.send(Response::message(500, message));
                    return Err(error);
                }
            },
        };
        let _ = envelope.reply.send(response);
        Ok(())
    }

    fn pause(&mut self) -> Response {
        if self.paused_since.is_none() {
            self.paused_since = Some(now_unix_us());
            tracing::warn!(
                "paused through the control socket: holding between batches, no transaction open; `archiver ctl resume` resumes"
            );
        }
        Response::message(
            200,
            "paused between batches, no transaction open; `archiver ctl resume` (POST /resume) \
             resumes, `archiver ctl stop` stops",
        )
    }

    fn resume(&mut self) -> Response {
        if self.paused_since.take().is_none() {
            return Response::message(200, "not paused (by ctl); nothing to resume");
        }
        tracing::warn!("resumed through the control socket");
        Response::message(200, "resumed")
    }

    /// Appends the change as a `SettingsChanged` of the open run, durably, and answers with the
    /// settings now in force.
    fn record(&self, change: SettingsChange, journal: &mut Journal) -> Result<Response, Error> {
        let Some(run_id) = journal.state().open_run().map(|run| run.run_id) else {
            return Ok(Response::message(
                409,
                "no run is open (the job is starting or finishing); nothing recorded",
            ));
        };
        let event = Event::SettingsChanged(SettingsChanged {
            run_id,
            batch_rows: change.batch_rows,
            sleep_ms: change.sleep_ms,
            max_lag_s: change.max_lag_s,
            changed_unix_us: now_unix_us(),
        });
        let lsn = journal.append(event, Durability::Durable)?;
        tracing::warn!(
            "settings changed through the control socket for run {run_id}: {}",
            change.text()
        );
        let settings = self.baseline.report(journal.state()).settings;
        Ok(Response::json(
            200,
            &serde_json::json!({
                "message": format!(
                    "recorded at lsn {lsn}: {} for run {run_id}, from its next batch on \
                     (a new run starts from the job file again)",
                    change.text()
                ),
                "lsn": lsn,
                "run_id": run_id,
                "settings": settings,
            }),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn settings_are_checked_against_the_job_file_ranges() {
        let ok = SettingsChange::parse(&pairs(&[("batch_rows", "200"), ("sleep_ms", "0")]));
        assert_eq!(
            ok,
            Ok(SettingsChange {
                batch_rows: Some(200),
                sleep_ms: Some(0),
                max_lag_s: None
            })
        );
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[], "nothing to set"),
            (
                &[("batch_rows", "0")],
                "batch_rows = 0 is out of range; use 1 to 100000",
            ),
            (&[("batch_rows", "100001")], "out of range"),
            (
                &[("sleep_ms", "60001")],
                "sleep_ms = 60001 is out of range; use 0 to 60000",
            ),
            (&[("max_lag_s", "0")], "max_lag_s = 0 is out of range"),
            (&[("batch_rows", "-1")], "is not a whole number"),
            (
                &[("batch_rows", "ten")],
                "batch_rows = \"ten\" is not a whole number",
            ),
            (&[("rows", "10")], "unknown setting \"rows\""),
            (
                &[("sleep_ms", "1"), ("sleep_ms", "2")],
                "sleep_ms is given twice",
            ),
        ];
        for (input, expected) in cases {
            let error = SettingsChange::parse(&pairs(input)).unwrap_err();
            assert!(error.contains(expected), "{input:?}: {error}");
        }
    }
}
