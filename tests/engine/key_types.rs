//! Keys of every type round-trip exactly (issue 6, "key values that round-trip exactly for
//! every key type"): a batch ends at a key read from the server and the next one starts after
//! it, so a key that comes back even slightly changed (a float printed short, a TIME's sign, a
//! BIT's bytes, trailing bytes of a VARBINARY, a TIMESTAMP in a zone that repeats an hour)
//! re-reads or skips rows. Each table holds the extremes of its key type, interleaves matching
//! and non-matching rows, and moves them two rows a batch, on one server and across two.

use super::*;

/// (key column type, key values as SQL literals), extremes and neighbours included.
const KEY_TYPES: &[(&str, &[&str])] = &[
    ("TINYINT", &["-128", "-1", "0", "1", "127"]),
    (
        "BIGINT",
        &[
            "-9223372036854775808",
            "-1",
            "0",
            "1",
            "9223372036854775807",
        ],
    ),
    (
        "BIGINT UNSIGNED",
        &[
            "0",
            "1",
            "9223372036854775807",
            "9223372036854775808",
            "18446744073709551615",
        ],
    ),
    (
        "DECIMAL(30,10)",
        &[
            "-99999.0000000001",
            "-0.0000000001",
            "0",
            "0.0000000001",
            "12345678901234567890.1234567890",
        ],
    ),
    (
        "CHAR(8) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
        &["''", "'a'", "'B'", "'é'", "'z y'", "'Ω'", "'𝄞'"],
    ),
    (
        "VARCHAR(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
        &[
            "'A'",
            "'a'",
            "'a\\tb'",
            "'é'",
            // e and a combining acute: another key than the precomposed é under _bin.
            "CONCAT('e', _utf8mb4 0xCC81)",
            "'😀'",
        ],
    ),
    (
        "VARCHAR(20) CHARACTER SET latin1 COLLATE latin1_swedish_ci",
        // 'Ã¥' is the UTF-8 bytes of 'å' read as latin1: a key comparison that skips the
        // conversion to the column's character set matches it instead of 'å'.
        &["'a'", "'b '", "'ö'", "'å'", "'z'", "'Ã¥'"],
    ),
    // Multi-byte character sets other than utf8mb4 travel converted between servers.
    (
        "VARCHAR(20) CHARACTER SET utf16 COLLATE utf16_bin",
        &["'a'", "'日本'", "'😀'", "'z'", "'Ω'"],
    ),
    (
        "VARCHAR(20) CHARACTER SET sjis",
        &["'a'", "'日本'", "'ｱｲ'", "'表'", "'z'"],
    ),
    (
        "CHAR(4) CHARACTER SET gbk",
        &["'a'", "'中文'", "'汉'", "'z'"],
    ),
    (
        "VARBINARY(8)",
        &[
            "x''", "x'00'", "x'0000'", "x'01'", "x'00FF'", "x'FF'", "x'FF00'",
        ],
    ),
    (
        "BINARY(3)",
        &["x'000000'", "x'000001'", "x'20'", "x'FFFFFF'"],
    ),
    (
        "DATE",
        &[
            "'0000-00-00'",
            "'1000-01-01'",
            "'2024-02-29'",
            "'9999-12-31'",
        ],
    ),
    (
        "DATETIME(6)",
        &[
            "'0000-00-00 00:00:00'",
            "'1000-01-01 00:00:00.000001'",
            "'2024-11-03 01:30:00'",
            "'2024-11-03 01:30:00.000001'",
            "'9999-12-31 23:59:59.999999'",
        ],
    ),
    (
        "TIME(3)",
        &[
            "'-838:59:59'",
            "'-00:00:00.001'",
            "'00:00:00'",
            "'12:34:56.789'",
            "'838:59:59'",
        ],
    ),
    ("YEAR", &["0", "1901", "2024", "2155"]),
    (
        "TIMESTAMP(6)",
        &[
            "'1970-01-01 00:00:01'",
            // Both instants of New York's repeated hour, as UTC.
            "'2024-11-03 05:30:00'",
            "'2024-11-03 06:30:00'",
            "'2024-11-03 06:30:00.000001'",
            "'2038-01-19 03:14:07.999999'",
        ],
    ),
    (
        "BIT(10)",
        &["b'0'", "b'1'", "b'1000000000'", "b'1111111111'"],
    ),
    // MariaDB's own types: UUID orders by its swapped segments, not as text.
    (
        "UUID",
        &[
            "'00000000-0000-0000-0000-000000000000'",
            "'ffffffff-0000-0000-0000-000000000001'",
            "'00000000-ffff-0000-0000-000000000001'",
            "'12345678-1234-1234-1234-123456789abc'",
            "'ffffffff-ffff-ffff-ffff-ffffffffffff'",
        ],
    ),
    (
        "INET6",
        &[
            "'::'",
            "'::1'",
            "'::ffff:10.0.0.1'",
            "'fe80::1'",
            "'ffff::'",
        ],
    ),
    // Members listed out of alphabetical order: the key orders by member index, not by text.
    ("ENUM('x','y','z')", &["'x'", "'y'", "'z'"]),
    (
        "ENUM('zeta','alpha','mu','beta')",
        &["'zeta'", "'alpha'", "'mu'", "'beta'"],
    ),
    (
        "SET('c','a','b')",
        &["''", "'a'", "'b'", "'a,b'", "'c'", "'a,b,c'", "'c,b'"],
    ),
];

/// Creates `name` with a primary key of `key_type` (alone, or after a leading INT when
/// `composite`) and, with `values`, one row per value: `n` counts from 1, so rows with `n % 3 =
/// 0` stay (the predicate is `n % 3 <> 0`) between rows that move.
fn create(db: &mut TestDb, name: &str, key_type: &str, composite: bool, values: &[&str]) {
    let key = if composite { "g, k" } else { "k" };
    db.exec(&format!(
        "CREATE TABLE {name} (g INT NOT NULL, k {key_type} NOT NULL, n INT NOT NULL,
         v VARCHAR(20) NULL, PRIMARY KEY ({key})) ENGINE=InnoDB"
    ));
    db.exec("SET time_zone = '+00:00'");
    for (i, value) in values.iter().enumerate() {
        let n = i + 1;
        // With a composite key every value appears under two groups.
        for g in if composite { &[1, 2][..] } else { &[1][..] } {
            let n = n + (g - 1) * values.len();
            db.exec(&format!(
                "INSERT INTO {name} VALUES ({g}, {value}, {n}, 'row {n}')"
            ));
        }
    }
}

const PREDICATE: &str = "n % 3 <> 0";

/// Moves every key type's table and checks the end state on both tables.
fn move_every_key_type(archive_server: Option<&Sandbox>, composite: bool) {
    let sandbox = common::sandbox();
    for (key_type, values) in KEY_TYPES {
        let what = format!("{key_type} (composite: {composite})");
        let mut source = sandbox.fresh_database("keys");
        create(&mut source, "src", key_type, composite, values);
        let original = source.checksum("src");
        let total: u64 = source.query_scalar("SELECT COUNT(*) FROM src");
        let matching = count_matching(&mut source, PREDICATE);
        assert!(
            matching > 1 && matching < total,
            "{what}: {matching}/{total}"
        );
        let (job, mut archive) = match archive_server {
            None => {
                create(&mut source, "arch", key_type, composite, &[]);
                (
                    Job::new(&sandbox, &source, PREDICATE, "batch_rows = 2"),
                    None,
                )
            }
            Some(server) => {
                let mut archive = server.fresh_database("keys_arch");
                create(&mut archive, "arch", key_type, composite, &[]);
                let job = two_server_job(&source, &archive, PREDICATE, "batch_rows = 2");
                (job, Some(archive))
            }
        };
        for round in ["run", "second run"] {
            let output = job.archiver("run", &[]);
            assert_success(&output, &format!("{what}: {round}"));
            let left: u64 =
                source.query_scalar(&format!("SELECT COUNT(*) FROM src WHERE {PREDICATE}"));
            assert_eq!(left, 0, "{what}: {round}: matching rows left");
            let kept: u64 = source.query_scalar("SELECT COUNT(*) FROM src");
            assert_eq!(kept, total - matching, "{what}: {round}: rows kept");
            let archive_db = archive.as_mut().unwrap_or(&mut source);
            archive_db.exec("SET time_zone = '+00:00'");
            let archived: u64 = archive_db.query_scalar("SELECT COUNT(*) FROM arch");
            assert_eq!(archived, matching, "{what}: {round}: rows archived");
            let stray: u64 = archive_db.query_scalar(&format!(
                "SELECT COUNT(*) FROM arch WHERE NOT ({PREDICATE})"
            ));
            assert_eq!(stray, 0, "{what}: {round}: non-matching rows archived");
        }
        // Row for row, byte for byte: the source's rest and the archive are the original.
        match archive.as_mut() {
            None => assert_eq!(
                source.checksum_union("src", "arch"),
                original,
                "{what}: source + archive == original"
            ),
            Some(archive) => {
                let (kept, archived) = (source.checksum("src"), archive.checksum("arch"));
                assert_eq!(kept.0 + archived.0, original.0, "{what}");
                assert_eq!(kept.1 ^ archived.1, original.1, "{what}: xor of row hashes");
                assert_eq!(kept.2 + archived.2, original.2, "{what}: sum of row CRCs");
            }
        }
        assert_eq!(
            job.rows_deleted(),
            matching,
            "{what}: the WAL counts every row once"
        );
    }
}

#[test]
fn every_key_type_round_trips_on_one_server() {
    move_every_key_type(None, false);
}

#[test]
fn every_key_type_round_trips_in_a_composite_key_on_one_server() {
    move_every_key_type(None, true);
}

#[test]
fn every_key_type_round_trips_between_servers_in_different_zones() {
    move_every_key_type(Some(&common::archive_sandbox()), false);
}

#[test]
fn every_key_type_round_trips_in_a_composite_key_between_servers() {
    move_every_key_type(Some(&common::archive_sandbox()), true);
}

/// Floating-point keys cannot be carried and compared exactly: refused before any row moves,
/// alone or in a composite key, on either table.
#[test]
fn floating_point_keys_are_refused() {
    let sandbox = common::sandbox();
    for (key_type, composite) in [
        ("FLOAT", false),
        ("DOUBLE", true),
        ("DOUBLE UNSIGNED", false),
        ("FLOAT(7,3)", true),
    ] {
        let mut db = sandbox.fresh_database("float_key");
        create(
            &mut db,
            "src",
            key_type,
            composite,
            &["0", "0.1", "0.2", "1.5", "99.5"],
        );
        create(&mut db, "arch", key_type, composite, &[]);
        let before = (db.checksum("src"), db.checksum("arch"));
        let job = Job::new(&sandbox, &db, PREDICATE, "batch_rows = 2");
        for args in [&["--dry-run"][..], &[][..]] {
            let output = job.archiver("run", args);
            assert_exit(&output, 64, &format!("{key_type} {args:?}"));
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                stderr.contains("includes the floating-point column `k`"),
                "{stderr}"
            );
        }
        assert_eq!(
            (db.checksum("src"), db.checksum("arch")),
            before,
            "{key_type}"
        );
        assert!(
            !job.wal_dir.exists(),
            "{key_type}: a refused job wrote a WAL"
        );
    }
}

/// Every column type, copied as a non-key column with values that are easy to alter in transit
/// (float precision, BIT bytes, zero dates, negative times, TIMESTAMPs in New York's repeated
/// hour, JSON text, geometry, UUID, INET6), on one server and across two in other zones: the
/// archive holds exactly the original rows.
#[test]
fn every_column_type_copies_exactly() {
    let sandbox = common::sandbox();
    let table = |db: &mut TestDb, name: &str| {
        db.exec(&format!(
            "CREATE TABLE {name} (id INT PRIMARY KEY,
               ti TINYINT UNSIGNED NULL, bi BIGINT NULL, bt BIT(64) NULL, f FLOAT NULL,
               d DOUBLE NULL, dec65 DECIMAL(65,30) NULL, dt DATE NULL, dtm DATETIME(6) NULL,
               ts TIMESTAMP(6) NULL, tm TIME(6) NULL, yr YEAR NULL,
               c CHAR(10) CHARACTER SET latin1 NULL,
               v VARCHAR(50) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
               t TEXT CHARACTER SET utf8mb4 NULL, b BLOB NULL, j JSON NULL,
               e ENUM('b','a') NULL, st SET('y','x') NULL, g POINT NULL, u UUID NULL,
               ip INET6 NULL, gen INT AS (id * 2) VIRTUAL) ENGINE=InnoDB"
        ));
    };
    let rows = [
        r#"1, 255, -9223372036854775808, b'1000000000000000000000000000000000000000000000000000000000000001', 0.1, 1/3, -0.000000000000000000000000000001, '0000-00-00', '0000-00-00 00:00:00', '2024-11-03 05:30:00.000001', '-838:59:59.999999', 0, 'é ', 'A\tb ', '𝄞 text', x'00FF00', '{"k": [1, 2.50, null]}', 'a', 'x,y', POINT(1.5, -2.25), '12345678-1234-1234-1234-123456789abc', '::ffff:1.2.3.4'"#,
        r#"2, 0, 9223372036854775807, b'0', 3.4e38, 1e308, 99999999999999999999999999999999999.999999999999999999999999999999, '9999-12-31', '9999-12-31 23:59:59.999999', '2024-11-03 06:30:00', '838:59:59', 2155, '', '', '', x'', '[]', 'b', '', POINT(0, 0), '00000000-0000-0000-0000-000000000000', '::'"#,
        "3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL",
        r#"4, 1, -1, b'1', -1.17549435e-38, -2.2250738585072014e-308, 0, '2024-02-29', '2024-03-10 02:30:00', '2024-03-10 07:30:00', '-00:00:00.000001', 1901, 'x', 'é', REPEAT('ü', 1000), REPEAT(x'FF', 3000), '"just a string"', 'a', 'y', POINT(-180, 90), 'ffffffff-ffff-ffff-ffff-ffffffffffff', 'fe80::1'"#,
    ];
    for archive_server in [None, Some(common::archive_sandbox())] {
        let what = match archive_server {
            Some(_) => "two servers",
            None => "one server",
        };
        let mut source = sandbox.fresh_database("coltypes");
        table(&mut source, "src");
        source.exec("SET time_zone = '+00:00'");
        for row in rows {
            source.exec(&format!(
                "INSERT INTO src (id, ti, bi, bt, f, d, dec65, dt, dtm, ts, tm, yr, c, v, t, b, j, e, st, g, u, ip) VALUES ({row})"
            ));
        }
        let original = source.checksum("src");
        let (job, mut archive) = match &archive_server {
            None => {
                table(&mut source, "arch");
                (
                    Job::new(&sandbox, &source, "id > 0", "batch_rows = 3"),
                    None,
                )
            }
            Some(server) => {
                let mut archive = server.fresh_database("coltypes_arch");
                table(&mut archive, "arch");
                let job = two_server_job(&source, &archive, "id > 0", "batch_rows = 3");
                (job, Some(archive))
            }
        };
        assert_success(&job.archiver("run", &[]), what);
        assert_eq!(
            source.query_scalar::<u64>("SELECT COUNT(*) FROM src"),
            0,
            "{what}"
        );
        let archive_db = archive.as_mut().unwrap_or(&mut source);
        archive_db.exec("SET time_zone = '+00:00'");
        assert_eq!(
            archive_db.checksum("arch"),
            original,
            "{what}: row for row, byte for byte"
        );
        let geometry: String =
            archive_db.query_scalar("SELECT ST_AsText(g) FROM arch WHERE id = 1");
        assert_eq!(geometry, "POINT(1.5 -2.25)", "{what}");
    }
}

/// A unique key on a generated (PERSISTENT) column beside a composite primary key (MariaDB
/// refuses a primary key on a generated column): the column is never copied, the archive
/// computes it from the same expression (the pre-flight compares expressions), on both paths.
#[test]
fn a_unique_generated_column_moves_on_both_paths() {
    let sandbox = common::sandbox();
    let create = |db: &mut TestDb, name: &str| {
        db.exec(&format!(
            "CREATE TABLE {name} (a INT NOT NULL, b VARCHAR(10) NOT NULL,
             k VARCHAR(30) AS (CONCAT(b, '-', a)) PERSISTENT, n INT NULL, PRIMARY KEY (b, a),
             UNIQUE KEY (k))"
        ));
    };
    for archive_server in [None, Some(common::archive_sandbox())] {
        let mut source = sandbox.fresh_database("genkey");
        create(&mut source, "src");
        source
            .exec("INSERT INTO src (a, b, n) SELECT seq, CHAR(65 + seq % 5), seq FROM seq_1_to_40");
        let original = source.checksum("src");
        let predicate = "n % 4 <> 0";
        let matching = count_matching(&mut source, predicate);
        let (job, mut archive) = match &archive_server {
            None => {
                create(&mut source, "arch");
                (
                    Job::new(&sandbox, &source, predicate, "batch_rows = 7"),
                    None,
                )
            }
            Some(server) => {
                let mut archive = server.fresh_database("genkey_arch");
                create(&mut archive, "arch");
                (
                    two_server_job(&source, &archive, predicate, "batch_rows = 7"),
                    Some(archive),
                )
            }
        };
        assert_success(&job.archiver("run", &[]), "generated key");
        assert_eq!(count_matching(&mut source, predicate), 0);
        assert_eq!(job.rows_deleted(), matching);
        let kept = source.checksum("src");
        let archived = archive.as_mut().unwrap_or(&mut source).checksum("arch");
        assert_eq!(kept.0 + archived.0, original.0);
        assert_eq!(
            kept.1 ^ archived.1,
            original.1,
            "row hashes: nothing altered"
        );
    }
}
