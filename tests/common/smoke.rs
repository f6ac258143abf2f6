//! Smoke tests of the helpers themselves against the real sandbox: if these fail, every other
//! integration test's failure is suspect.

use super::*;

/// A table exercising the checksum's renderings: composite key, NULLs, DECIMAL, DATETIME(6),
/// 4-byte UTF-8, a BLOB.
const MIXED_TABLE: &str = "CREATE TABLE mixed (
    a INT NOT NULL, b VARCHAR(20) NOT NULL,
    amount DECIMAL(12,2) NULL, at DATETIME(6) NULL, txt TEXT NULL, bin BLOB NULL,
    PRIMARY KEY (a, b)) CHARACTER SET utf8mb4";
const MIXED_ROWS: &str = "INSERT INTO mixed VALUES
    (1, 'x', 12.50, '2024-01-01 00:00:00.123456', 'plain', X'00FF'),
    (1, 'y', NULL, NULL, NULL, NULL),
    (2, '😀', -0.01, '2025-06-01 12:00:00.000001', 'émoji 😀', ''),
    (3, 'NULL', 0.00, '2024-02-29 23:59:59', 'NULL', X'4E554C4C')";

#[test]
fn sandbox_settings_are_consistent() {
    let sb = sandbox();
    assert!(sb.url().starts_with("mysql://"), "{}", sb.url());
    assert!(
        sb.url().contains(&format!(":{}/", sb.port())),
        "{}",
        sb.url()
    );
    assert!(
        !sb.url().contains(sb.password()),
        "the URL must not carry the password"
    );
}

#[test]
fn fresh_database_exec_query_and_drop() {
    let sb = sandbox();
    let name = {
        let mut db = sb.fresh_database("smoke");
        db.exec(
            "CREATE TABLE t (id INT PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'a'), (2, NULL)",
        );
        assert_eq!(db.query_scalar::<u64>("SELECT COUNT(*) FROM t"), 2);
        assert_eq!(
            db.query_scalar::<Option<String>>("SELECT v FROM t WHERE id = 2"),
            None
        );
        let rows: Vec<(i32, Option<String>)> = db.query_rows("SELECT id, v FROM t ORDER BY id");
        assert_eq!(rows, vec![(1, Some("a".into())), (2, None)]);
        assert!(db.try_exec("SELECT * FROM no_such_table").is_err());
        db.name().to_string()
    };
    let mut other = sb.fresh_database("smoke_check");
    let left: u64 = other.query_scalar(&format!(
        "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {}",
        sql_string(&name)
    ));
    assert_eq!(left, 0, "database {name} should be dropped with its TestDb");
}

#[test]
fn checksum_is_order_independent_null_safe_and_splits_over_a_union() {
    let mut db = sandbox().fresh_database("checksum");
    db.exec(MIXED_TABLE);
    db.exec(MIXED_ROWS);
    let original = db.checksum("mixed");
    assert_eq!(original.0, 4);

    // The same rows inserted in another order give the same checksum.
    db.exec("CREATE TABLE shuffled LIKE mixed; INSERT INTO shuffled SELECT * FROM mixed ORDER BY a DESC, b DESC");
    assert_eq!(db.checksum("shuffled"), original);

    // Split over two tables: the union's checksum is the original's.
    db.exec("CREATE TABLE part LIKE mixed; INSERT INTO part SELECT * FROM mixed WHERE a >= 2; DELETE FROM mixed WHERE a >= 2");
    assert_eq!(db.checksum_union("mixed", "part"), original);
    assert_ne!(db.checksum("mixed"), original);

    // NULL differs from the string 'NULL' and from the empty string; a cent matters.
    for change in [
        "UPDATE part SET bin = NULL WHERE a = 3",
        "UPDATE part SET txt = NULL WHERE a = 3",
        "UPDATE part SET bin = NULL WHERE a = 2",
        "UPDATE part SET amount = 0.01 WHERE a = 3",
        "UPDATE part SET at = '2025-06-01 12:00:00.000002' WHERE a = 2",
    ] {
        db.exec("START TRANSACTION");
        db.exec(change);
        assert_ne!(
            db.checksum_union("mixed", "part"),
            original,
            "not detected: {change}"
        );
        db.exec("ROLLBACK");
    }
    assert_eq!(db.checksum_union("mixed", "part"), original);

    // A duplicated row changes the checksum (XOR alone would cancel a pair).
    db.exec("CREATE TABLE dup AS SELECT * FROM part; INSERT INTO dup SELECT * FROM part");
    let twice = db.checksum_tables(&["mixed", "part", "dup"]);
    assert_eq!(twice.1, original.1, "xor cancels the pair");
    assert_ne!(twice, original);
}

#[test]
fn checksum_matches_tools_checksum() {
    let mut db = sandbox().fresh_database("tool_checksum");
    db.exec(MIXED_TABLE);
    db.exec(MIXED_ROWS);
    let (rows, xor, sum) = db.checksum("mixed");
    let output = Command::new(repo_dir().join("tools/checksum"))
        .args(["--database", db.name(), "mixed"])
        .env("ARCHIVER_SANDBOX_PORT", db.sandbox().port().to_string())
        .output()
        .expect("run tools/checksum");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("rows={rows} xor={xor:016x} sum={sum}")
    );
}

#[test]
fn server_kill_and_restart_keeps_committed_rows() {
    let server = sandbox().exclusive();
    let mut db = server.fresh_database("lifecycle");
    db.exec(
        "CREATE TABLE t (id INT PRIMARY KEY) ENGINE=InnoDB; INSERT INTO t VALUES (1), (2), (3)",
    );
    server.kill_server();
    assert!(
        db.try_exec("SELECT 1").is_err(),
        "the server should be down"
    );
    server.start_server();
    // exec reconnects after the restart; InnoDB crash recovery kept the committed rows.
    assert_eq!(db.query_scalar::<u64>("SELECT COUNT(*) FROM t"), 3);
}

#[test]
fn several_test_dbs_in_one_thread_share_one_hold() {
    let sb = sandbox();
    let mut a = sb.fresh_database("reentrant_a");
    let mut b = sb.fresh_database("reentrant_b");
    a.exec("CREATE TABLE t (id INT PRIMARY KEY)");
    b.exec("CREATE TABLE t (id INT PRIMARY KEY)");
    assert_ne!(a.name(), b.name());
    assert!(a.url().ends_with(&format!("/{}", a.name())), "{}", a.url());
}

#[test]
#[should_panic(expected = "exclusive() while this thread holds a TestDb")]
fn exclusive_while_holding_a_test_db_panics_instead_of_deadlocking() {
    let sb = sandbox();
    let _db = sb.fresh_database("no_deadlock");
    let _server = sb.exclusive();
}

#[test]
fn job_toml_is_the_documented_config_and_parses() {
    let db = sandbox().fresh_database("job_toml");
    let wal = Path::new("/tmp/wal \"dir\"");
    let text = job_toml(
        &db,
        "rewards",
        "rewards_archive",
        "note = 'a\\b' AND x < 1",
        1000,
        wal,
    );
    let config: toml::Table = text.parse().unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(config["source"]["url"].as_str(), Some(db.url().as_str()));
    assert_eq!(
        config["source"]["password_env"].as_str(),
        Some("ARCHIVER_PASSWORD")
    );
    assert_eq!(config["source"]["table"].as_str(), Some("rewards"));
    assert_eq!(config["archive"]["table"].as_str(), Some("rewards_archive"));
    assert_eq!(
        config["job"]["where"].as_str(),
        Some("note = 'a\\b' AND x < 1")
    );
    assert_eq!(config["job"]["batch_rows"].as_integer(), Some(1000));
    assert_eq!(config["job"]["wal_dir"].as_str(), Some("/tmp/wal \"dir\""));
    assert_eq!(config["job"]["attempts_max"].as_integer(), Some(5));
    assert!(!text.contains(db.password()), "no password in the config");
}

#[test]
fn the_archive_sandbox_is_another_server_in_another_time_zone() {
    let main = super::sandbox();
    let other = super::archive_sandbox();
    let mut a = main.fresh_database("smoke_main");
    let mut b = other.fresh_database("smoke_other");
    let main_port: u16 = a.query_scalar("SELECT @@port");
    let other_port: u16 = b.query_scalar("SELECT @@port");
    assert_eq!((main_port, other_port), (main.port(), other.port()));
    assert_ne!(main_port, other_port);
    let zone: String = b.query_scalar("SELECT @@global.time_zone");
    assert_eq!(zone, "America/New_York");
    let log_bin: u8 = b.query_scalar("SELECT @@log_bin");
    assert_eq!(log_bin, 1, "the archive sandbox writes a binary log");
    // Named zones work on the main server too (time zone tables loaded).
    a.exec("SET time_zone = 'Europe/Berlin'");
    let offset: i64 = a.query_scalar("SELECT TIMESTAMPDIFF(HOUR, '2024-07-01 00:00:00', CONVERT_TZ('2024-07-01 00:00:00', 'UTC', 'Europe/Berlin'))");
    assert_eq!(offset, 2);
}
