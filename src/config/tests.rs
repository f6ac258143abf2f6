//! The job file's validation, end to end through [`JobConfig::parse`]: data-driven tables of
//! edits to one good file and what each must give.

// Tests are tables of cases and stories told in order; they read better whole, so the
// 70-line limit on functions (clippy.toml) is for the product's code only.
#![allow(clippy::too_many_lines)]

use std::path::Path;

use super::*;

const GOOD: &str = r#"
[source]
url = "mysql://archiver@127.0.0.1:3407/shop"
password_env = "PW"
table = "rewards"

[archive]
table = "rewards_archive"

[job]
where = "created_at < '2025-06-01'"
batch_rows = 500
wal_dir = "wal"
"#;

fn parse(text: &str) -> Result<JobConfig, ConfigError> {
    JobConfig::parse(text, Path::new("/etc/archiver"), &|name| {
        (name == "PW").then(|| "secret".to_string())
    })
}

#[test]
fn good_config_resolves_everything() {
    let config = parse(GOOD).unwrap();
    assert_eq!(config.source.table.to_string(), "shop.rewards");
    assert_eq!(config.archive.table.to_string(), "shop.rewards_archive");
    assert_eq!(config.batching.rows, 500);
    assert_eq!(config.batching.attempts_max, ATTEMPTS_MAX_DEFAULT);
    assert_eq!(config.wal_dir, Path::new("/etc/archiver/wal"));
    let opts = config.source.endpoint.connect_opts().unwrap();
    assert_eq!(opts.pass(), Some("secret"));
    assert_eq!(config.source.endpoint.server(), "127.0.0.1:3407");
    assert!(!format!("{config:?}").contains("secret"));
}

#[test]
fn archive_on_another_server_has_its_own_endpoint() {
    let text = GOOD.replace(
        "[archive]\n",
        "[archive]\nurl = \"mysql://arch@10.0.0.2:3306/cold\"\npassword_env = \"PW\"\n",
    );
    let config = parse(&text).unwrap();
    let archive = config.archive.endpoint.as_ref().expect("own endpoint");
    assert_eq!(archive.server(), "10.0.0.2:3306");
    assert_eq!(config.archive.table.to_string(), "cold.rewards_archive");
    assert_eq!(config.identity().archive_server, "10.0.0.2:3306");
}

#[test]
fn bad_configs_are_refused_with_the_reason() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "batch_rows = 500",
            "batch_rows = 500\nbatchrows = 3",
            "unknown field `batchrows`",
        ),
        (
            "batch_rows = 500",
            "batch_rows = 0",
            "batch_rows = 0 is out of range",
        ),
        ("archiver@127", "archiver:pw@127", "url contains a password"),
        (
            "table = \"rewards\"",
            "table = \"a.b.c\"",
            "is not `table` or `database.table`",
        ),
        (
            "where = \"created_at < '2025-06-01'\"",
            "where = \"  \"",
            "where is empty",
        ),
        (
            "table = \"rewards_archive\"",
            "table = \"rewards\"",
            "is the source table",
        ),
        (
            "mysql://archiver@",
            "postgres://archiver@",
            "must start with mysql://",
        ),
        (
            "3407/shop",
            "3407/shop?require_ssl=true",
            "TLS is set by the section's keys tls_mode",
        ),
        (
            "3407/shop",
            "3407/shop?verify_ca=false&pool_max=3&sslmode=on",
            "\"pool_max\" is refused: it sets the driver's connection pool",
        ),
        (
            "3407/shop",
            "3407/shop?sslmode=on",
            "\"sslmode\" is refused: it is not a parameter archiver knows",
        ),
        (
            "3407/shop",
            "3407/shop?client_found_rows=true",
            "affected-row counts",
        ),
        (
            "3407/shop",
            "3407/shop?compression=",
            "not a valid MySQL URL",
        ),
        (
            "3407/shop",
            "3407/shop?tcp_nodelay=maybe",
            "not a valid MySQL URL",
        ),
        ("127.0.0.1:3407", "127.0.0.1:port", "not a valid MySQL URL"),
        (
            "batch_rows = 500",
            "batch_rows = 100001",
            "[job] batch_rows = 100001 is out of range; use 1 to 100000",
        ),
        (
            "batch_rows = 500",
            "batch_time_ms = 10001",
            "[job] batch_time_ms = 10001 is out of range; use 0 to 10000",
        ),
        (
            "batch_rows = 500",
            "batch_rows_min = 0",
            "[job] batch_rows_min = 0 is out of range; use 1 to 100000",
        ),
        (
            "batch_rows = 500",
            "batch_rows_max = 100001",
            "[job] batch_rows_max = 100001 is out of range; use 1 to 100000",
        ),
        (
            "batch_rows = 500",
            "batch_rows_min = 2000\nbatch_rows_max = 1000",
            "[job] batch_rows_min = 2000 is above batch_rows_max = 1000",
        ),
        (
            "batch_rows = 500",
            "batch_rows = 500\nbatch_rows_max = 400",
            "[job] batch_rows = 500 (the first batch's size, adapted from there to batch_time_ms = 500) is outside batch_rows_max = 400; change either, or set batch_time_ms = 0",
        ),
        (
            "batch_rows = 500",
            "batch_rows = 500\nbatch_rows_min = 600",
            "is outside batch_rows_min = 600",
        ),
        (
            "batch_rows = 500",
            "batch_time_ms = 0\nbatch_rows_max = 400",
            "[job] batch_rows_min and batch_rows_max bound the adaptive batch size, which batch_time_ms = 0 turns off",
        ),
        (
            "batch_rows = 500",
            "batch_time_ms = 0\nbatch_rows_min = 1",
            "remove them, or set batch_time_ms",
        ),
        (
            "batch_rows = 500",
            "attempts_max = 0",
            "[job] attempts_max = 0 is out of range; use 1 to 100",
        ),
        (
            "batch_rows = 500",
            "attempts_max = 101",
            "[job] attempts_max = 101 is out of range; use 1 to 100",
        ),
        (
            "batch_rows = 500",
            "sleep_ms = 60001",
            "[job] sleep_ms = 60001 is out of range; use 0 to 60000",
        ),
        (
            "batch_rows = 500",
            "lock_wait_timeout_s = 0",
            "[job] lock_wait_timeout_s = 0 is out of range; use 1 to 3600",
        ),
        (
            "batch_rows = 500",
            "lock_wait_timeout_s = 3601",
            "[job] lock_wait_timeout_s = 3601 is out of range; use 1 to 3600",
        ),
        (
            "batch_rows = 500",
            "reconnect_timeout_s = 0",
            "[job] reconnect_timeout_s = 0 is out of range; use 1 to 86400",
        ),
        (
            "batch_rows = 500",
            "reconnect_timeout_s = 86401",
            "[job] reconnect_timeout_s = 86401 is out of range; use 1 to 86400",
        ),
        (
            "batch_rows = 500",
            "keep_runs = 1001",
            "[job] keep_runs = 1001 is out of range; use 0 to 1000",
        ),
        (
            "batch_rows = 500",
            "compact_above_records = 1000000001",
            "[job] compact_above_records = 1000000001 is out of range; use 0 to 1000000000",
        ),
    ];
    for (from, to, expected) in cases {
        let text = GOOD.replacen(from, to, 1);
        let message = match parse(&text) {
            Ok(_) => panic!("{to}: accepted"),
            Err(e) => e.0,
        };
        assert!(
            message.contains(expected),
            "{to}: expected {expected:?} in {message:?}"
        );
    }
}

#[test]
fn limits_accept_their_bounds_and_default_when_absent() {
    /// Reads the value a case checks.
    type Field = fn(&JobConfig) -> u32;
    let cases: &[(&str, Field, u32)] = &[
        ("", |c| c.batching.rows, 1_000),
        ("batch_rows = 1", |c| c.batching.rows, 1),
        ("batch_rows = 100000", |c| c.batching.rows, 100_000),
        ("", |c| c.batching.time_ms, 500),
        ("batch_time_ms = 0", |c| c.batching.time_ms, 0),
        ("batch_time_ms = 10000", |c| c.batching.time_ms, 10_000),
        ("", |c| c.batching.rows_min, 1),
        ("", |c| c.batching.rows_max, 10_000),
        ("batch_rows = 50000", |c| c.batching.rows_max, 50_000),
        ("batch_rows = 9000", |c| c.batching.rows_max, 10_000),
        (
            "batch_rows_min = 1000\nbatch_rows_max = 1000",
            |c| c.batching.rows_max,
            1_000,
        ),
        (
            "batch_rows = 100000\nbatch_rows_min = 100000",
            |c| c.batching.rows_min,
            100_000,
        ),
        ("batch_time_ms = 0\nbatch_rows = 7", |c| c.batching.rows, 7),
        ("", |c| c.batching.attempts_max, 5),
        ("attempts_max = 1", |c| c.batching.attempts_max, 1),
        ("attempts_max = 100", |c| c.batching.attempts_max, 100),
        ("", |c| c.batching.sleep_ms, 0),
        ("sleep_ms = 60000", |c| c.batching.sleep_ms, 60_000),
        ("", |c| c.sessions.lock_wait_timeout_s, 10),
        (
            "lock_wait_timeout_s = 1",
            |c| c.sessions.lock_wait_timeout_s,
            1,
        ),
        (
            "lock_wait_timeout_s = 3600",
            |c| c.sessions.lock_wait_timeout_s,
            3_600,
        ),
        ("", |c| c.sessions.reconnect_timeout_s, 120),
        (
            "reconnect_timeout_s = 1",
            |c| c.sessions.reconnect_timeout_s,
            1,
        ),
        (
            "reconnect_timeout_s = 86400",
            |c| c.sessions.reconnect_timeout_s,
            86_400,
        ),
        ("", |c| c.history.keep_runs, 10),
        ("keep_runs = 0", |c| c.history.keep_runs, 0),
        ("keep_runs = 1000", |c| c.history.keep_runs, 1_000),
        ("", |c| c.history.compact_above_records, 100_000),
        (
            "compact_above_records = 0",
            |c| c.history.compact_above_records,
            0,
        ),
    ];
    for (line, field, expected) in cases {
        let text = GOOD.replacen("batch_rows = 500", line, 1);
        let config = parse(&text).unwrap_or_else(|e| panic!("{line}: {}", e.0));
        assert_eq!(field(&config), *expected, "{line:?}");
    }
}

#[test]
fn a_missing_password_is_an_error_only_when_connecting() {
    let text = GOOD.replacen("password_env = \"PW\"", "password_env = \"NOPE\"", 1);
    let config = parse(&text).expect("status, replay and reset need no password");
    let message = config.source.endpoint.connect_opts().unwrap_err().0;
    assert!(message.contains("NOPE, which is not set"), "{message}");
    let text = GOOD.replacen(
        "password_env = \"PW\"",
        "password_file = \"/nonexistent/pw\"",
        1,
    );
    let config = parse(&text).expect("parsed without reading the file's absence as fatal");
    let message = config.source.endpoint.connect_opts().unwrap_err().0;
    assert!(
        message.contains("cannot read password_file /nonexistent/pw"),
        "{message}"
    );
}

/// A password file every user may read is refused when connecting (as `ssh` refuses such a
/// key), naming the file, its mode and the fix; one readable by its owner, or by its group (a
/// service group), is used.
#[test]
fn a_password_file_readable_by_every_user_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pw");
    std::fs::write(&path, "secret\nignored\n").unwrap();
    let text = GOOD.replacen(
        "password_env = \"PW\"",
        &format!("password_file = {:?}", path.display().to_string()),
        1,
    );
    let cases: &[(u32, Option<&str>)] = &[
        (0o600, None),
        (0o640, None),
        (0o400, None),
        (0o644, Some("mode 0644")),
        (0o604, Some("mode 0604")),
        (0o602, Some("mode 0602")),
    ];
    for &(mode, refused) in cases {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let config = parse(&text).expect("the job file itself is fine");
        let opened = config.source.endpoint.connect_opts();
        match refused {
            None => assert!(opened.is_ok(), "{mode:o}: {:?}", opened.err()),
            Some(what) => {
                let message = opened.unwrap_err().0;
                assert!(message.contains(what), "{mode:o}: {message}");
                assert!(message.contains("every user"), "{message}");
                assert!(message.contains("chmod 600"), "{message}");
            }
        }
    }
}

#[test]
fn urls_are_never_echoed_with_their_password() {
    for (url, shown) in [
        ("postgres://u:secret@h/db", "postgres://u:***@h/db"),
        ("u:secret@h:3306/db", "u:***@h:3306/db"),
        ("mysql2://u:s3/cr@t@h/db", "mysql2://u:***@h/db"),
        ("postgres://u@h:5432/db", "postgres://u@h:5432/db"),
        ("h:3306", "h:3306"),
    ] {
        assert_eq!(masked_url(url), shown, "{url}");
    }
    for url in [
        "postgres://u:secret@h/db",
        "mysql://u:secret@h/db?require_ssl=true",
        "mysql://u:secret@h/db?compression=",
        "mysql://u:secret@h:notaport/db",
        "MYSQL://u:secret@h/db",
    ] {
        let text = GOOD.replacen("mysql://archiver@127.0.0.1:3407/shop", url, 1);
        let message = parse(&text).unwrap_err().0;
        assert!(!message.contains("secret"), "{url}: {message}");
    }
}

/// `[metrics]`: absent, no file and the default interval; a relative textfile is taken from the
/// job file's directory; a name node_exporter would never read, an interval out of range and
/// an unknown key are refused, each naming the `[metrics]` key.
#[test]
fn the_metrics_table_is_validated() {
    let config = parse(GOOD).unwrap();
    assert_eq!(config.metrics.textfile, None);
    assert_eq!(config.metrics.textfile_interval_s, 10);
    let with = |table: &str| parse(&format!("{GOOD}\n[metrics]\n{table}\n"));
    let config =
        with("textfile = \"prom/archiver_rewards.prom\"\ntextfile_interval_s = 3600").unwrap();
    assert_eq!(
        config.metrics.textfile.as_deref(),
        Some(Path::new("/etc/archiver/prom/archiver_rewards.prom"))
    );
    assert_eq!(config.metrics.textfile_interval_s, 3_600);
    let refused: &[(&str, &str)] = &[
        (
            "textfile = \"/var/lib/x/archiver.txt\"",
            "does not end in .prom",
        ),
        ("textfile = \"/var/lib/x/.prom\"", "does not end in .prom"),
        (
            "textfile_interval_s = 0",
            "[metrics] textfile_interval_s = 0 is out of range; use 1 to 3600",
        ),
        (
            "textfile_interval_s = 3601",
            "[metrics] textfile_interval_s = 3601 is out of range",
        ),
        ("text_file = \"a.prom\"", "unknown field `text_file`"),
    ];
    for (table, expected) in refused {
        let error = with(table).expect_err(table).0;
        assert!(error.contains(expected), "{table}: {error}");
    }
}

/// examples/rewards.toml parses, adaptive by default, and its commented bounds of the adaptive
/// size parse too once uncommented.
#[test]
fn the_example_job_sizes_batches_to_half_a_second() {
    let example = include_str!("../../examples/rewards.toml");
    let config = parse(example).unwrap_or_else(|e| panic!("{}", e.0));
    let b = &config.batching;
    assert_eq!(
        (b.rows, b.time_ms, b.rows_min, b.rows_max),
        (1_000, 500, 1, 10_000)
    );
    let uncommented = example
        .replace("# batch_rows_min = ", "batch_rows_min = ")
        .replace("# batch_rows_max = ", "batch_rows_max = ");
    assert_ne!(uncommented, example, "the example shows the bounds");
    let config = parse(&uncommented).unwrap_or_else(|e| panic!("{}", e.0));
    let b = &config.batching;
    assert_eq!((b.rows, b.rows_min, b.rows_max), (1_000, 100, 20_000));
}
