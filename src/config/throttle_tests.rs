//! `[throttle]` validation through [`JobConfig::parse`]: a table of job-file tails and what
//! each must give.

// Tests are tables of cases; they read better whole, so the 70-line limit on functions
// (clippy.toml) is for the product's code only.
#![allow(clippy::too_many_lines)]

use std::path::Path;

use super::*;

const BASE: &str = r#"
[source]
url = "mysql://archiver@10.0.0.1:3306/shop"
password_env = "PW"
table = "rewards"

[archive]
table = "rewards_archive"

[job]
where = "created_at < '2025-06-01'"
wal_dir = "wal"
"#;

fn parse(tail: &str) -> Result<JobConfig, ConfigError> {
    let text = format!("{BASE}\n{tail}");
    JobConfig::parse(&text, Path::new("/etc/archiver"), &|name| {
        (name == "PW").then(|| "secret".to_string())
    })
}

#[test]
fn without_a_throttle_table_nothing_throttles() {
    let config = parse("").unwrap();
    let throttle = &config.throttle;
    assert!(throttle.replicas.is_empty());
    assert!(throttle.max_load.is_empty() && throttle.critical_load.is_empty());
    assert!(throttle.sleep_coef.abs() < f64::EPSILON);
    assert_eq!(throttle.check_interval_ms, CHECK_INTERVAL_MS.default);
}

#[test]
fn a_full_throttle_table_is_read_key_for_key() {
    let config = parse(
        r#"
[throttle]
max_lag_s = 3
max_lag_wait_s = 600
heartbeat_table = "percona.heartbeat"
max_load = "Threads_running=25, Threads_connected=500"
max_load_wait_s = 900
critical_load = "Threads_running=100"
sleep_coef = 0.5
check_interval_ms = 250

[[throttle.replica]]
url = "mysql://monitor@10.0.0.2:3306"
password_env = "PW"

[[throttle.replica]]
url = "mysql://monitor@10.0.0.3:3306/shop"
"#,
    )
    .unwrap();
    let t = &config.throttle;
    let servers: Vec<String> = t.replicas.iter().map(Endpoint::server).collect();
    assert_eq!(servers, ["10.0.0.2:3306", "10.0.0.3:3306"]);
    assert_eq!(t.replicas[0].connect_opts().unwrap().pass(), Some("secret"));
    assert_eq!(t.replicas[1].connect_opts().unwrap().pass(), None);
    assert_eq!(
        t.lag_source,
        LagSource::Heartbeat(TableName {
            schema: "percona".into(),
            table: "heartbeat".into()
        })
    );
    assert_eq!((t.max_lag_s, t.max_lag_wait_s), (3, 600));
    let max: Vec<String> = t.max_load.iter().map(ToString::to_string).collect();
    assert_eq!(max, ["Threads_running=25", "Threads_connected=500"]);
    assert_eq!(t.max_load_wait_s, 900);
    assert_eq!(t.critical_load[0].to_string(), "Threads_running=100");
    assert!((t.sleep_coef - 0.5).abs() < f64::EPSILON);
    assert_eq!(t.check_interval_ms, 250);
    assert!(!format!("{config:?}").contains("secret"));
}

#[test]
fn replicas_without_a_heartbeat_table_read_the_replication_status() {
    let config = parse("[[throttle.replica]]\nurl = \"mysql://monitor@10.0.0.2:3306\"\n").unwrap();
    assert_eq!(config.throttle.lag_source, LagSource::ReplicaStatus);
    assert_eq!(config.throttle.max_lag_s, MAX_LAG_S.default);
    assert_eq!(config.throttle.max_lag_wait_s, MAX_LAG_WAIT_S.default);
    let config = parse("[throttle]\nmax_load = \"Threads_running=25\"\n").unwrap();
    assert_eq!(config.throttle.max_load_wait_s, MAX_LOAD_WAIT_S.default);
    // A whole number is a coefficient too.
    let config = parse("[throttle]\nsleep_coef = 2\n").unwrap();
    assert!((config.throttle.sleep_coef - 2.0).abs() < f64::EPSILON);
}

#[test]
fn bad_throttle_settings_are_refused_with_what_to_do() {
    let replica = "[[throttle.replica]]\nurl = \"mysql://monitor@10.0.0.2:3306\"\n";
    let cases: &[(&str, &str)] = &[
        ("[throttle]\nmax_lag = 3\n", "unknown field `max_lag`"),
        (
            "[[throttle.replica]]\nurl = \"mysql://m@10.0.0.2:3306\"\nport = 1\n",
            "unknown field `port`",
        ),
        (
            "[throttle]\nmax_lag_s = 5\n",
            "[throttle] max_lag_s is set but no replica is listed",
        ),
        (
            "[throttle]\nheartbeat_table = \"db.hb\"\n",
            "[throttle] heartbeat_table is set but no replica is listed",
        ),
        (
            "[throttle]\nmax_lag_wait_s = 5\n",
            "[throttle] max_lag_wait_s is set but no replica is listed",
        ),
        (
            "[throttle]\nmax_load_wait_s = 5\n",
            "[throttle] max_load_wait_s is set but no max_load is given; add max_load = \"VARIABLE=N\", or remove max_load_wait_s",
        ),
        (
            "[throttle]\nmax_load = \"Threads_running=25\"\nmax_load_wait_s = 0\n",
            "[throttle] max_load_wait_s = 0 is out of range; use 1 to 86400",
        ),
        (
            "[throttle]\nmax_load = \"Threads_running=25\"\nmax_load_wait_s = 86401\n",
            "[throttle] max_load_wait_s = 86401 is out of range; use 1 to 86400",
        ),
        (
            "[[throttle.replica]]\nurl = \"mysql://m:pw@10.0.0.2:3306\"\n",
            "[throttle.replica] url contains a password",
        ),
        (
            "[[throttle.replica]]\nurl = \"http://10.0.0.2\"\n",
            "[throttle.replica] url \"http://10.0.0.2\" must start with mysql://",
        ),
        (
            "[[throttle.replica]]\nurl = \"mysql://m@10.0.0.2\"\npassword_env = \"PW\"\npassword_file = \"pw\"\n",
            "[throttle.replica] sets both password_env and password_file",
        ),
        (
            "[[throttle.replica]]\nurl = \"mysql://monitor@10.0.0.1:3306/x\"\n",
            "names the source server 10.0.0.1:3306",
        ),
        (
            &format!("{replica}{replica}"),
            "10.0.0.2:3306 is listed twice",
        ),
        (
            &format!("[throttle]\nmax_lag_s = 0\n{replica}"),
            "[throttle] max_lag_s = 0 is out of range; use 1 to 86400",
        ),
        (
            &format!("[throttle]\nmax_lag_wait_s = 86401\n{replica}"),
            "[throttle] max_lag_wait_s = 86401 is out of range",
        ),
        (
            "[throttle]\ncheck_interval_ms = 10\n",
            "[throttle] check_interval_ms = 10 is out of range; use 100 to 60000",
        ),
        (
            &format!("[throttle]\nheartbeat_table = \"heartbeat\"\n{replica}"),
            "heartbeat_table \"heartbeat\" is not `database.table`",
        ),
        ("[throttle]\nsleep_coef = -1.0\n", "sleep_coef = -1 is out of range; use 0 to 100"),
        ("[throttle]\nsleep_coef = 100.5\n", "sleep_coef = 100.5 is out of range"),
        ("[throttle]\nsleep_coef = nan\n", "sleep_coef = NaN is out of range"),
        (
            "[throttle]\nmax_load = \"Threads_running\"\n",
            "max_load entry \"Threads_running\" is not VARIABLE=N",
        ),
        (
            "[throttle]\nmax_load = \"Threads_running=25,\"\n",
            "max_load entry \"\" is not VARIABLE=N",
        ),
        (
            "[throttle]\nmax_load = \"Threads'running=25\"\n",
            "\"Threads'running\" is not a status variable name",
        ),
        (
            "[throttle]\nmax_load = \"=25\"\n",
            "\"\" is not a status variable name",
        ),
        (
            "[throttle]\nmax_load = \"Threads_running=-1\"\n",
            "Threads_running=-1 needs a whole number from 1 to 1000000000",
        ),
        (
            "[throttle]\nmax_load = \"Threads_running=0\"\n",
            "Threads_running=0 needs a whole number",
        ),
        (
            "[throttle]\ncritical_load = \"Threads_running=2.5\"\n",
            "critical_load: Threads_running=2.5 needs a whole number",
        ),
        (
            "[throttle]\nmax_load = \"Threads_running=5,threads_RUNNING=6\"\n",
            "max_load names threads_RUNNING twice",
        ),
        (
            "[throttle]\nmax_load = \"Threads_running=50\"\ncritical_load = \"threads_running=50\"\n",
            "critical_load threads_running=50 is not above max_load Threads_running=50",
        ),
    ];
    for (tail, expected) in cases {
        let error = parse(tail).expect_err(tail).0;
        assert!(
            error.contains(expected),
            "{tail}\n  gave: {error}\n  want: {expected}"
        );
    }
}

#[test]
fn a_replica_password_that_cannot_be_read_fails_only_when_connecting() {
    let config = parse(
        "[[throttle.replica]]\nurl = \"mysql://m@10.0.0.2:3306\"\npassword_env = \"NOT_SET\"\n",
    )
    .unwrap();
    let error = config.throttle.replicas[0].connect_opts().unwrap_err().0;
    assert!(
        error.contains("[throttle.replica] password_env names NOT_SET"),
        "{error}"
    );
}

/// The `[throttle]` blocks of README.md and examples/rewards.toml (uncommented) are job-file
/// text that parses, with the values their comments give.
#[test]
fn the_documented_throttle_tables_parse() {
    let readme = include_str!("../../README.md");
    let start = readme
        .find("```toml\n[throttle]")
        .expect("README's [throttle] block");
    let block = &readme[start + "```toml\n".len()..];
    let block = &block[..block.find("```").expect("closed")];
    let config = parse(block).unwrap();
    assert_eq!(config.throttle.replicas.len(), 1);
    assert_eq!(
        config.throttle.max_load[0].to_string(),
        "Threads_running=25"
    );
    let example = include_str!("../../examples/rewards.toml");
    let start = example
        .find("# [throttle]")
        .expect("the example's [throttle] section");
    // The section ends where the example's next table that is not the throttle's begins.
    let section = &example[start..];
    let end = section
        .match_indices("\n# [")
        .map(|(i, _)| i)
        .find(|&i| {
            !section[i..].starts_with("\n# [throttle")
                && !section[i..].starts_with("\n# [[throttle")
        })
        .unwrap_or(section.len());
    let uncommented: String = section[..end]
        .lines()
        .map(|line| line.strip_prefix("# ").unwrap_or(line))
        .filter(|line| line.starts_with('[') || line.contains(" = "))
        .map(|line| format!("{line}\n"))
        .collect();
    let config = parse(&uncommented).unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
    assert_eq!(config.throttle.replicas.len(), 1);
    assert_eq!(
        config.throttle.critical_load[0].to_string(),
        "Threads_running=100"
    );
}
