//! `archiver ctl`: the client of a running job's control socket (served by `archiver run`, see
//! `engine::control`). It finds the socket from the job file's `wal_dir`, sends one HTTP
//! request over it, and prints the answer: status as lines (or the JSON as served), the other
//! answers as their message. A job that is not running, or a request the job refuses, is an
//! error with the reason.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::config::{ConfigError, JobConfig};
use crate::error::Error;

/// Longest `ctl` waits for the job's answer, in seconds: the job answers a pause, resume or
/// set once it obeys it, and after 10 s at most with "accepted" (`REPLY_WAIT_MS`).
pub const CTL_TIMEOUT_S: u64 = 30;

/// Largest answer read, in bytes (a status is about 1 KiB).
const RESPONSE_BYTES_MAX: u64 = 1 << 20;

/// What `ctl` asks of the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CtlRequest {
    /// `GET /status`.
    Status,
    /// `POST /pause`.
    Pause,
    /// `POST /resume`.
    Resume,
    /// `POST /stop`.
    Stop,
    /// `POST /set?KEY=VALUE&...`, from `KEY=VALUE` arguments.
    Set(Vec<String>),
}

impl CtlRequest {
    /// The method and target of the request; an argument of `set` without `=` is refused.
    fn target(&self) -> Result<(&'static str, String), ConfigError> {
        Ok(match self {
            CtlRequest::Status => ("GET", "/status".into()),
            CtlRequest::Pause => ("POST", "/pause".into()),
            CtlRequest::Resume => ("POST", "/resume".into()),
            CtlRequest::Stop => ("POST", "/stop".into()),
            CtlRequest::Set(settings) => {
                if settings.is_empty() {
                    return Err(ConfigError(
                        "ctl set needs KEY=VALUE, e.g. `archiver ctl --config JOB.toml set batch_rows=500`; settable: batch_rows, sleep_ms, max_lag_s".into(),
                    ));
                }
                let mut pairs = Vec::new();
                for setting in settings {
                    let Some((key, value)) = setting.split_once('=') else {
                        return Err(ConfigError(format!(
                            "ctl set takes KEY=VALUE (e.g. batch_rows=500), not {setting:?}"
                        )));
                    };
                    pairs.push(format!("{}={}", encode(key), encode(value)));
                }
                ("POST", format!("/set?{}", pairs.join("&")))
            }
        })
    }
}

/// Percent-encodes what is not plainly safe in a query.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `archiver ctl`: sends `request` to the job's running process and prints its answer
/// (`json`: as served). `job_file` names the job in messages.
pub fn ctl(
    config: &JobConfig,
    job_file: &Path,
    request: &CtlRequest,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let (method, target) = request.target()?;
    let socket = config.control_socket();
    let (status, body) = exchange(&socket, method, &target).map_err(|error| {
        use std::io::ErrorKind::{ConnectionRefused, NotFound};
        match error.kind() {
            NotFound | ConnectionRefused => anyhow::anyhow!(
                "no running job for {}: {} does not exist or nobody listens; start one with archiver run",
                job_file.display(),
                socket.display()
            ),
            _ => anyhow::anyhow!("cannot talk to the job over {}: {error}", socket.display()),
        }
    })?;
    let value: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    if status >= 400 {
        let reason = value["error"].as_str().unwrap_or(body.trim());
        let message = format!("the running job refused `{method} {target}` ({status}): {reason}");
        return Err(if status == 400 {
            ConfigError(message).into()
        } else {
            anyhow::anyhow!(message).into()
        });
    }
    if json {
        writeln!(out, "{}", body.trim_end())?;
    } else if *request == CtlRequest::Status {
        for line in status_lines(&value) {
            writeln!(out, "{line}")?;
        }
    } else {
        writeln!(out, "{}", value["message"].as_str().unwrap_or(body.trim()))?;
    }
    Ok(())
}

/// One request over the socket at `path`: the status code and the body.
fn exchange(path: &Path, method: &str, target: &str) -> std::io::Result<(u16, String)> {
    let mut stream = UnixStream::connect(path)?;
    let timeout = Some(Duration::from_secs(CTL_TIMEOUT_S));
    stream.set_read_timeout(timeout)?;
    stream.set_write_timeout(timeout)?;
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: archiver\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes())?;
    let mut answer = Vec::new();
    stream.take(RESPONSE_BYTES_MAX).read_to_end(&mut answer)?;
    let answer = String::from_utf8_lossy(&answer);
    let invalid = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP answer");
    let (head, body) = answer.split_once("\r\n\r\n").ok_or_else(invalid)?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(invalid)?;
    Ok((status, body.to_string()))
}

/// A time for people: `2026-12-01 16:40:01 UTC`.
fn time_text(unix_us: Option<i64>) -> String {
    unix_us
        .and_then(chrono::DateTime::from_timestamp_micros)
        .map_or("unknown".into(), |t| {
            t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
        })
}

/// The status report as lines.
fn status_lines(report: &serde_json::Value) -> Vec<String> {
    let job = &report["job"];
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("?").to_string();
    let number = |v: &serde_json::Value| v.as_u64().map_or("?".into(), |n| n.to_string());
    let mut lines = vec![format!(
        "job: `{}`.`{}` on {} -> `{}`.`{}` on {}, where {}",
        text(&job["source_schema"]),
        text(&job["source_table"]),
        text(&job["source_server"]),
        text(&job["archive_schema"]),
        text(&job["archive_table"]),
        text(&job["archive_server"]),
        text(&job["predicate"]),
    )];
    let mut state = format!(
        "{} since {}",
        text(&report["state"]),
        time_text(report["state_since_unix_us"].as_i64())
    );
    if let Some(reason) = report["pause_reason"].as_str() {
        state.push_str(&format!(" ({reason})"));
    }
    lines.push(format!(
        "process {}, run {}: {state}",
        number(&report["pid"]),
        number(&report["run_id"])
    ));
    let (run, now) = (&report["run"], &report["invocation"]);
    lines.push(format!(
        "run: {} rows moved in {} batches, {} already archived, {} kept for conflicts, {} failed attempts",
        number(&run["rows_moved"]),
        number(&run["batches_done"]),
        number(&run["rows_already"]),
        number(&run["rows_conflicting"]),
        number(&run["failures"]),
    ));
    lines.push(format!(
        "this invocation (since {}): {} rows moved in {} batches",
        time_text(report["started_unix_us"].as_i64()),
        number(&now["rows_moved"]),
        number(&now["batches_done"]),
    ));
    lines.push(settings_line(&report["settings"], &report["live"]));
    lines.extend(live_lines(report));
    lines.push(format!("last lsn {}", number(&report["last_lsn"])));
    lines
}

/// The running process's progress (rows left, rate, ETA) and throttle (what holds the job and
/// why, the replicas' lag, time waited): also shown by `archiver status` while a run is active.
pub fn live_lines(report: &serde_json::Value) -> Vec<String> {
    let mut lines = Vec::new();
    let p = &report["progress"];
    if p.is_object() {
        let rate = p["rows_per_s"]
            .as_f64()
            .map_or("no rate yet".to_string(), |r| format!("{r:.0} rows/s"));
        let left = p["rows_left"]
            .as_u64()
            .map_or("unknown".to_string(), |n| n.to_string());
        let eta = p["eta_s"]
            .as_f64()
            .map_or("unknown".to_string(), |e| format!("{e:.0} s"));
        // The rows the run's batches plan now: the adaptive size, or the fixed one.
        let batch = p["batch_rows"]
            .as_u64()
            .map_or(String::new(), |n| format!(", batch {n} rows"));
        lines.push(format!(
            "progress: {left} matching rows left, {rate} in this invocation{batch}, ETA {eta}"
        ));
    }
    let t = &report["throttle"];
    if t.is_object() {
        let holding = match t["holding"].as_str() {
            Some(kind) => format!(
                "holding ({kind}: {}) since {}",
                t["reason"].as_str().unwrap_or("?"),
                time_text(t["since_unix_us"].as_i64())
            ),
            None => "not holding".to_string(),
        };
        let waited: Vec<String> = t["waited_s"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|w| {
                format!(
                    "{} {:.1} s",
                    w[0].as_str().unwrap_or("?"),
                    w[1].as_f64().unwrap_or(0.0)
                )
            })
            .collect();
        lines.push(format!("throttle: {holding}; waited {}", waited.join(", ")));
        for replica in t["replicas"].as_array().into_iter().flatten() {
            let seen = match (replica[1].as_f64(), replica[2].as_str()) {
                (Some(lag), _) => format!("{lag:.0} s behind (bound {} s)", t["max_lag_s"]),
                (None, Some(problem)) => problem.to_string(),
                (None, None) => "not checked yet".to_string(),
            };
            lines.push(format!(
                "  replica {}: {seen}",
                replica[0].as_str().unwrap_or("?")
            ));
        }
    }
    lines
}

/// The running process's status report, if one answers on the job's socket (`None`: no run is
/// active, or it does not answer).
pub fn running_report(config: &JobConfig) -> Option<serde_json::Value> {
    let (status, body) = exchange(&config.control_socket(), "GET", "/status").ok()?;
    (status == 200).then(|| serde_json::from_str(&body).ok())?
}

/// "settings: batch_rows 10 (changed live), sleep_ms 100, max_lag_s none".
fn settings_line(settings: &serde_json::Value, live: &serde_json::Value) -> String {
    let shown: Vec<String> = ["batch_rows", "sleep_ms", "max_lag_s"]
        .into_iter()
        .map(|name| {
            let value = settings[name]
                .as_u64()
                .map_or("none".to_string(), |n| n.to_string());
            let changed = if live[name].is_null() {
                ""
            } else {
                " (changed live)"
            };
            format!("{name} {value}{changed}")
        })
        .collect();
    format!("settings: {}", shown.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_arguments_become_a_query_and_bad_ones_are_refused() {
        let set = CtlRequest::Set(vec!["batch_rows=5".into(), "sleep_ms=1 0".into()]);
        assert_eq!(
            set.target().unwrap(),
            ("POST", "/set?batch_rows=5&sleep_ms=1%200".to_string())
        );
        let error = CtlRequest::Set(vec!["batch_rows".into()])
            .target()
            .unwrap_err();
        assert!(error.0.contains("KEY=VALUE"), "{error}");
        assert!(CtlRequest::Set(vec![]).target().is_err());
        assert_eq!(
            CtlRequest::Status.target().unwrap(),
            ("GET", "/status".into())
        );
    }
}
