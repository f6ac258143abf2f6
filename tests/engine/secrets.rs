//! A password appears in no output of the archiver (issue 9, item 6): a job whose server
//! account has a distinctive password, given through `password_env` and through
//! `password_file`, goes through a stopped run, a full run, `status`, `replay --inspect`, a
//! dry run and runs that fail (a wrong password, an unreachable server), all at `-vv`; then
//! every byte each of them wrote (stdout, stderr, every file under the WAL directory and the
//! job's directory but the password file) is searched for the password. The command line never
//! carries it: no command has a password flag, and the running process's argv (and, with a
//! password file, its environment) does not hold it.
//!
//! More outputs join the search by adding them to [`Outputs`] (metrics textfiles, hook
//! outputs): see `outputs_of_later_features`.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use super::*;

/// The account's password: long and unlike anything the archiver prints.
const PASSWORD: &str = "Zq7~unmistakable-secret-4711";
/// A wrong password, for the failing login: it must not show either.
const WRONG_PASSWORD: &str = "Wr0ng~unmistakable-guess-0815";
/// The rows matching `MIXED_PREDICATE` move in batches of this many, with a pause between, so
/// that the stopped run has a batch to stop after.
const JOB_LINES: &str = "batch_rows = 20\nsleep_ms = 50";

/// Every output to search, by what produced it.
#[derive(Default)]
struct Outputs(Vec<(String, Vec<u8>)>);

impl Outputs {
    /// A command's stdout and stderr.
    fn command(&mut self, what: &str, output: &Output) {
        self.0
            .push((format!("{what}: stdout"), output.stdout.clone()));
        self.0
            .push((format!("{what}: stderr"), output.stderr.clone()));
    }

    /// Every file under `dir`, its name and its bytes, except `skip`.
    fn files(&mut self, what: &str, dir: &Path, skip: Option<&Path>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if Some(path.as_path()) == skip {
                continue;
            }
            if path.is_dir() {
                self.files(what, &path, skip);
            } else {
                let name = format!("{what}: {}", path.display());
                self.0.push((
                    format!("{name} (name)"),
                    path.display().to_string().into_bytes(),
                ));
                self.0
                    .push((name, std::fs::read(&path).unwrap_or_default()));
            }
        }
    }

    /// Every output that holds one of `secrets`, named.
    fn holding(&self, secrets: &[&str]) -> Vec<String> {
        let mut found = Vec::new();
        for (what, bytes) in &self.0 {
            for secret in secrets {
                if bytes.windows(secret.len()).any(|w| w == secret.as_bytes()) {
                    found.push(format!("{what} holds {secret:?}"));
                }
            }
        }
        found
    }

    /// Fails naming every output that holds one of `secrets`.
    fn assert_free_of(&self, secrets: &[&str]) {
        assert!(
            self.0.len() > 10,
            "the search covers the outputs: {}",
            self.0.len()
        );
        let found = self.holding(secrets);
        assert!(found.is_empty(), "{}", found.join("\n"));
    }
}

/// Outputs that later features write (metrics textfiles, hook outputs): each adds its files
/// here, and the search covers them.
fn outputs_of_later_features(job: &Job, outputs: &mut Outputs) {
    let out = job.config.parent().unwrap().join("later");
    for file in [
        "job.prom",
        "on_start.env",
        "on_success.json",
        "on_failure.env",
        "on_stop.json",
    ] {
        assert!(
            out.join(file).exists(),
            "{file} was written: the search covers it"
        );
    }
    outputs.files("metrics textfile and hook outputs", &out, None);
}

/// How the job file gives the password.
#[derive(Clone, Copy, Debug)]
enum Source {
    /// `password_env = "ARCHIVER_SECRET_PW"`.
    Env,
    /// `password_file = "<job dir>/pw"` (mode 0600).
    File,
}

/// A server account with [`PASSWORD`], dropped by [`Account::drop_it`].
struct Account {
    name: String,
}

impl Account {
    fn create(db: &mut TestDb, tag: &str) -> Account {
        let name = format!("sec_{tag}_{}", std::process::id());
        for host in ["127.0.0.1", "localhost"] {
            db.exec(&format!("DROP USER IF EXISTS '{name}'@'{host}'"));
            db.exec(&format!(
                "CREATE USER '{name}'@'{host}' IDENTIFIED BY '{PASSWORD}'"
            ));
            db.exec(&format!("GRANT ALL PRIVILEGES ON *.* TO '{name}'@'{host}'"));
        }
        Account { name }
    }

    fn drop_it(self, db: &mut TestDb) {
        for host in ["127.0.0.1", "localhost"] {
            db.exec(&format!("DROP USER IF EXISTS '{}'@'{host}'", self.name));
        }
    }
}

/// The job as `account` with the password given by `source` (`password` is what it holds).
fn write_job(job: &Job, account: &Account, source: Source, password: &str, port: u16) {
    let dir = job.config.parent().unwrap();
    let text = std::fs::read_to_string(&job.config).unwrap();
    let url_start = text.find("mysql://").unwrap();
    let url_end = url_start + text[url_start..].find('"').unwrap();
    let database = text[url_start..url_end]
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let url = format!("mysql://{}@127.0.0.1:{port}/{database}", account.name);
    let mut text = format!("{}{url}{}", &text[..url_start], &text[url_end..]);
    let line_start = text.find("password_").unwrap();
    let line_end = line_start + text[line_start..].find('\n').unwrap();
    let line = match source {
        Source::Env => "password_env = \"ARCHIVER_SECRET_PW\"".to_string(),
        Source::File => {
            let path = password_file(dir);
            std::fs::write(&path, format!("{password}\n")).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            format!("password_file = {:?}", path.display().to_string())
        }
    };
    text.replace_range(line_start..line_end, &line);
    if !text.contains("[hooks]") {
        text.push_str(&later_features_tables(dir));
    }
    std::fs::write(&job.config, text).unwrap();
}

/// A metrics textfile and every hook, each hook writing its environment and its stdin into
/// `dir/later/`, so that the search covers what they were given.
fn later_features_tables(dir: &Path) -> String {
    let out = dir.join("later");
    std::fs::create_dir_all(&out).unwrap();
    let mut text = format!(
        "\n[metrics]\ntextfile = {:?}\n\n[hooks]\n",
        out.join("job.prom").display().to_string()
    );
    for hook in [
        "on_start",
        "on_success",
        "on_failure",
        "on_conflict",
        "on_stop",
    ] {
        let base = out.join(hook).display().to_string();
        text.push_str(&format!(
            "{hook} = {:?}\n",
            format!("env >> '{base}.env'; cat >> '{base}.json'")
        ));
    }
    text
}

fn password_file(dir: &Path) -> PathBuf {
    dir.join("pw")
}

/// `archiver SUBCOMMAND --config job ARGS` with the environment `source` needs.
fn archiver(job: &Job, source: Source, password: &str, subcommand: &str, args: &[&str]) -> Output {
    command(job, source, password, subcommand)
        .args(args)
        .output()
        .expect("run archiver")
}

fn command(job: &Job, source: Source, password: &str, subcommand: &str) -> std::process::Command {
    let mut command = job.command(subcommand);
    command.env_remove("ARCHIVER_PASSWORD");
    match source {
        Source::Env => command.env("ARCHIVER_SECRET_PW", password),
        Source::File => command.env_remove("ARCHIVER_SECRET_PW"),
    };
    command
}

/// A run stopped by SIGTERM after its first batch: exit 2. While it runs, its argv (and with
/// a password file, its environment) is read from /proc and must not hold the password.
fn stopped_run(job: &Job, source: Source, db: &mut TestDb, outputs: &mut Outputs) {
    let child = command(job, source, PASSWORD, "run")
        .arg("-vv")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn archiver");
    let mut child = child;
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(120);
    while db.query_scalar::<u64>("SELECT COUNT(*) FROM arch") == 0 {
        assert!(Instant::now() < deadline, "the run moved nothing in 120 s");
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended before moving a row: {status:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Running (between batches, sleep_ms): its argv and environment as `ps` would read them.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    assert!(
        !cmdline.is_empty() && !environ.is_empty(),
        "argv and environment read while it runs"
    );
    outputs
        .0
        .push(("argv of the running process".into(), cmdline));
    match source {
        Source::File => outputs
            .0
            .push(("environment of the running process".into(), environ)),
        // The variable password_env names holds it, by design; the search must see it there.
        Source::Env => {
            let probe = Outputs(vec![("environment".into(), environ)]);
            assert_eq!(
                probe.holding(&[PASSWORD]).len(),
                1,
                "the search finds a password"
            );
        }
    }
    unsafe {
        libc::kill(pid as i32, libc::SIGTERM);
    }
    let output = child.wait_with_output().unwrap();
    assert_exit(&output, 2, "stopped run");
    outputs.command("stopped run", &output);
}

/// The whole story for one password source.
fn no_output_holds_the_password(source: Source) {
    let sandbox = common::sandbox();
    let mut db = mixed_db(&sandbox, "secrets", 600);
    let original = db.checksum("src");
    let matching = count_matching(&mut db, MIXED_PREDICATE);
    let tag = match source {
        Source::Env => "env",
        Source::File => "file",
    };
    let account = Account::create(&mut db, tag);
    let job = Job::new(&sandbox, &db, MIXED_PREDICATE, JOB_LINES);
    write_job(&job, &account, source, PASSWORD, sandbox.port());
    let mut outputs = Outputs::default();

    stopped_run(&job, source, &mut db, &mut outputs);
    let output = archiver(&job, source, PASSWORD, "run", &["-vv"]);
    assert_success(&output, "full run");
    outputs.command("full run", &output);
    assert_moved(&mut db, MIXED_PREDICATE, original, matching);
    for args in [&[][..], &["--format", "json"][..]] {
        let output = archiver(&job, source, PASSWORD, "status", args);
        assert_success(&output, "status");
        outputs.command(&format!("status {args:?}"), &output);
    }
    for format in ["text", "json"] {
        let output = common::archiver_cmd()
            .args(["replay", "--inspect", "--format", format, "--wal-dir"])
            .arg(&job.wal_dir)
            .output()
            .unwrap();
        assert_success(&output, "replay --inspect");
        outputs.command(&format!("replay --inspect --format {format}"), &output);
    }
    let output = archiver(&job, source, PASSWORD, "run", &["--dry-run", "-vv"]);
    assert_success(&output, "dry run");
    outputs.command("dry run", &output);

    // A wrong password: refused, and neither password shows.
    write_job(&job, &account, source, WRONG_PASSWORD, sandbox.port());
    let output = archiver(&job, source, WRONG_PASSWORD, "run", &["-vv"]);
    assert_exit(&output, 64, "wrong password");
    assert!(String::from_utf8_lossy(&output.stderr).contains("Access denied"));
    outputs.command("run with a wrong password", &output);
    let output = archiver(&job, source, WRONG_PASSWORD, "run", &["--dry-run", "-vv"]);
    assert_exit(&output, 64, "dry run with a wrong password");
    outputs.command("dry run with a wrong password", &output);

    // An unreachable server (another server: another job, with its own log): given up after
    // the reconnection window.
    write_job(&job, &account, source, PASSWORD, 1);
    let wal = format!("{:?}", job.wal_dir.display().to_string());
    let other_wal = format!(
        "{:?}",
        job.wal_dir
            .with_file_name("wal-unreachable")
            .display()
            .to_string()
    );
    let text = std::fs::read_to_string(&job.config)
        .unwrap()
        .replacen(&wal, &other_wal, 1)
        .replacen("[job]\n", "[job]\nreconnect_timeout_s = 1\n", 1);
    std::fs::write(&job.config, text).unwrap();
    let output = archiver(&job, source, PASSWORD, "run", &["-vv"]);
    assert_exit(&output, 1, "unreachable server");
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot connect to 127.0.0.1:1"));
    outputs.command("run against an unreachable server", &output);

    outputs_of_later_features(&job, &mut outputs);
    outputs.files("WAL directory", &job.wal_dir, None);
    let job_dir = job.config.parent().unwrap();
    outputs.files("job directory", job_dir, Some(&password_file(job_dir)));
    outputs.assert_free_of(&[PASSWORD, WRONG_PASSWORD]);
    if let Source::File = source {
        // The one file that holds it, left out above: the search finds it there.
        let mut probe = Outputs::default();
        probe.files("job directory", job_dir, None);
        assert_eq!(
            probe.holding(&[PASSWORD]).len(),
            1,
            "the search finds a password"
        );
    }
    account.drop_it(&mut db);
}

#[test]
fn no_output_holds_a_password_given_by_password_env() {
    no_output_holds_the_password(Source::Env);
}

#[test]
fn no_output_holds_a_password_given_by_password_file() {
    no_output_holds_the_password(Source::File);
}

/// No command takes a password on its command line (where `ps` would show it): every help
/// text is searched for a password option.
#[test]
fn no_command_has_a_password_flag() {
    let help = |args: &[&str]| {
        let output = common::archiver_cmd()
            .args(args)
            .arg("--help")
            .output()
            .unwrap();
        assert_success(&output, &format!("{args:?} --help"));
        String::from_utf8_lossy(&output.stdout).to_lowercase()
    };
    let top = help(&[]);
    let subcommands: Vec<String> = top
        .lines()
        .skip_while(|l| !l.starts_with("commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect();
    assert!(subcommands.len() >= 4, "{top}");
    for text in std::iter::once(top.clone()).chain(subcommands.iter().map(|c| help(&[c]))) {
        for flag in ["--password", "--pass ", "-p <", "--pw"] {
            assert!(!text.contains(flag), "{flag} in:\n{text}");
        }
    }
}
