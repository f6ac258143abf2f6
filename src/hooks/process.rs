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
    /// Prefix of its forwarded output lines.
    pub label: String,
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
        child.stdout.take().map(|out| forward(out, spec.label.clone())),
        child.stderr.take().map(|err| forward(err, spec.label.clone())),
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

/// Forwards `pipe` to our stderr, one prefixed line at a time, until every holder closed it.
fn forward(pipe: impl Read + Send + 'static, label: String) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = Vec::new();
        loop {
            line.clear();
            match (&mut reader).take(LINE_BYTES_MAX).read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line);
                    let text = text.trim_end_matches(['\n', '\r']);
                    let _ = writeln!(std::io::stderr().lock(), "{label}{text}");
                }
            }
        }
    })
}
