//! Running one hook command, bounded: its own process group, the summary written to its stdin
//! (a hook that does not read it is fine), its output forwarded line by line to our stderr,
//! and past its time bound its whole group killed, SIGTERM then SIGKILL.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::HookCommand;

/// After SIGTERM, how long a hook's process group has to exit before it gets SIGKILL, in
/// milliseconds.
pub const KILL_GRACE_MS: u64 = 2_000;

/// How often the hook is checked on while it runs, in milliseconds.
const POLL_MS: u64 = 10;

/// Longest line of a hook's output forwarded as one line, in bytes; a longer one is cut into
/// several.
const LINE_BYTES_MAX: u64 = 4_096;

/// After SIGKILL, how long the output of a group member that escaped the group (a `setsid`
/// daemon holding the pipe) is waited for before it is left behind, in milliseconds.
const OUTPUT_AFTER_KILL_MS: u64 = 500;

/// One hook to run.
pub struct Spec<'a> {
    /// What to run.
    pub command: &'a HookCommand,
    /// Variables set for it.
    pub set_env: Vec<(&'static str, String)>,
    /// Variables removed from the environment it inherits.
    pub remove_env: Vec<String>,
    /// Written to its stdin, which is then closed.
    pub stdin: Vec<u8>,
    /// How long it may run.
    pub timeout: Duration,
    /// How its output lines are forwarded.
    pub output: Output,
}

/// How a hook's output lines reach our stderr.
#[derive(Debug, Clone)]
pub enum Output {
    /// As text, each line after `label`.
    Text {
        /// The prefix, e.g. "archiver: hook on_success: ".
        label: String,
    },
    /// As log events (target `archiver::hook`, fields `hook` and `stream`), which
    /// `--log-format json` writes as JSON lines like every other line.
    Json {
        /// The hook's key, e.g. "on_success".
        hook: &'static str,
    },
}

/// How a hook ended.
#[derive(Debug)]
pub enum Ended {
    /// It exited (or was killed by someone else) within its time.
    Exited(ExitStatus),
    /// It ran past its time: its group got SIGTERM, and SIGKILL if `killed` after the grace.
    TimedOut {
        /// Whether SIGKILL was needed.
        killed: bool,
    },
    /// It could not be started.
    NotStarted(std::io::Error),
}

/// Runs `spec` to its end or its time bound. Blocks the calling thread.
pub fn run(spec: Spec<'_>) -> Ended {
    let mut command = match spec.command {
        HookCommand::Shell(text) => {
            let mut command = Command::new("/bin/sh");
            command.arg("-c").arg(text);
            command
        }
        HookCommand::Argv(argv) => {
            let mut command = Command::new(&argv[0]);
            command.args(&argv[1..]);
            command
        }
    };
    for name in &spec.remove_env {
        command.env_remove(name);
    }
    command
        .envs(spec.set_env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so that the whole of it (a shell and what it started) can be killed.
        .process_group(0);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => return Ended::NotStarted(error),
    };
    if let Some(mut stdin) = child.stdin.take() {
        let summary = spec.stdin;
        // A thread, so that a hook that never reads cannot block us; EPIPE when it exits
        // without reading is expected (Rust ignores SIGPIPE) and not an error of the hook.
        std::thread::spawn(move || {
            let _ = stdin.write_all(&summary);
        });
    }
    let outputs = [
        child
            .stdout
            .take()
            .map(|out| forward(out, spec.output.clone(), "stdout")),
        child
            .stderr
            .take()
            .map(|err| forward(err, spec.output.clone(), "stderr")),
    ];
    let mut hook = Running { child, outputs };
    if let Some(status) = hook.wait_until(Instant::now() + spec.timeout) {
        return Ended::Exited(status);
    }
    hook.signal_group(libc::SIGTERM);
    let grace = Instant::now() + Duration::from_millis(KILL_GRACE_MS);
    if hook.wait_until(grace).is_some() {
        return Ended::TimedOut { killed: false };
    }
    hook.signal_group(libc::SIGKILL);
    let _ = hook.child.wait();
    hook.wait_until(Instant::now() + Duration::from_millis(OUTPUT_AFTER_KILL_MS));
    Ended::TimedOut { killed: true }
}

/// A started hook and the threads forwarding its output.
struct Running {
    /// The process group's leader.
    child: Child,
    /// The stdout and stderr forwarders; finished once every holder of the pipe closed it.
    outputs: [Option<JoinHandle<()>>; 2],
}

impl Running {
    /// Waits until the leader exited and its output is closed (no process of the group holds
    /// it any more), or `deadline`; the leader's status in the first case.
    fn wait_until(&mut self, deadline: Instant) -> Option<ExitStatus> {
        loop {
            let status = self.child.try_wait().ok().flatten();
            let closed = self
                .outputs
                .iter()
                .all(|o| o.as_ref().is_none_or(JoinHandle::is_finished));
            if let (Some(status), true) = (status, closed) {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(POLL_MS));
        }
    }

    /// Sends `signal` to the hook's whole process group (its pid is the group's id). The group
    /// outlives a leader that exited while members remain, and its id is not reused meanwhile.
    fn signal_group(&self, signal: libc::c_int) {
        if let Ok(group) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill has no memory effects; a negative pid names the group.
            unsafe {
                libc::kill(-group, signal);
            }
        }
    }
}

/// Forwards `pipe` (the hook's `stream`) to our stderr, a line at a time, as `output` says,
/// until every holder closed it.
fn forward(
    pipe: impl Read + Send + 'static,
    output: Output,
    stream: &'static str,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = Vec::new();
        loop {
            line.clear();
            match (&mut reader)
                .take(LINE_BYTES_MAX)
                .read_until(b'\n', &mut line)
            {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line);
                    let text = text.trim_end_matches(['\n', '\r']);
                    match &output {
                        Output::Text { label } => {
                            let _ = writeln!(std::io::stderr().lock(), "{label}{text}");
                        }
                        Output::Json { hook } => {
                            tracing::info!(target: "archiver::hook", hook, stream, "{text}");
                        }
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_shell(text: &str, stdin: Vec<u8>, timeout_ms: u64) -> Ended {
        run(Spec {
            command: &HookCommand::Shell(text.to_string()),
            set_env: vec![("ARCHIVER_TEST_VALUE", "42".to_string())],
            remove_env: vec!["PATH_TO_NOWHERE".to_string()],
            stdin,
            timeout: Duration::from_millis(timeout_ms),
            output: Output::Text {
                label: "test: ".to_string(),
            },
        })
    }

    fn code(ended: &Ended) -> Option<i32> {
        match ended {
            Ended::Exited(status) => status.code(),
            _ => None,
        }
    }

    #[test]
    fn the_exit_status_and_the_environment_come_through() {
        let ended = run_shell("exit $((ARCHIVER_TEST_VALUE - 35))", Vec::new(), 60_000);
        assert_eq!(code(&ended), Some(7), "{ended:?}");
    }

    /// A hook that never reads a stdin far larger than a pipe holds does not block us.
    #[test]
    fn a_hook_that_ignores_its_stdin_does_not_hang() {
        let ended = run_shell("exit 0", vec![b'x'; 4 << 20], 60_000);
        assert_eq!(code(&ended), Some(0), "{ended:?}");
    }

    /// One that reads all of it gets all of it.
    #[test]
    fn a_hook_reads_its_whole_stdin() {
        let ended = run_shell("[ \"$(wc -c)\" -eq 1048576 ]", vec![b'x'; 1 << 20], 60_000);
        assert_eq!(code(&ended), Some(0), "{ended:?}");
    }

    /// The leader exited, but a process it left in the background still holds its output: the
    /// hook is not over, and past its bound the group is killed.
    #[test]
    fn a_background_process_holding_the_output_is_part_of_the_hook() {
        let ended = run_shell("sleep 600 & exit 0", Vec::new(), 200);
        assert!(
            matches!(ended, Ended::TimedOut { killed: false }),
            "{ended:?}"
        );
    }

    /// One that redirected its output away is left running: it is no longer the hook's.
    #[test]
    fn a_detached_background_process_is_left_alone() {
        let ended = run_shell("sleep 1 >/dev/null 2>&1 & exit 3", Vec::new(), 60_000);
        assert_eq!(code(&ended), Some(3), "{ended:?}");
    }

    #[test]
    fn a_missing_program_is_not_started() {
        let ended = run(Spec {
            command: &HookCommand::Argv(vec!["/nonexistent/hook".to_string()]),
            set_env: Vec::new(),
            remove_env: Vec::new(),
            stdin: Vec::new(),
            timeout: Duration::from_secs(60),
            output: Output::Text {
                label: String::new(),
            },
        });
        assert!(matches!(ended, Ended::NotStarted(_)), "{ended:?}");
    }
}
