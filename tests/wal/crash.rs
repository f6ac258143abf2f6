//! Crash: a child process (`archiver debug wal-append`) appends with sync and prints each durable
//! LSN; it is killed with SIGKILL at random moments, many times over the same directory. After
//! every kill, every acknowledged record is present with exactly the bytes written, and nothing
//! after the last valid record is invented.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use archiver::wal::stress::{expected_payload, expected_type};

use super::{read_all, Rng};

const KILLS: usize = 40;
const PAYLOAD_BYTES: usize = 700;

#[test]
fn kill_9_at_random_moments_loses_nothing_acknowledged() {
    let seed = super::seed();
    eprintln!("crash test seed {seed} (ARCHIVER_TEST_SEED to replay)");
    let mut rng = Rng::new(seed);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let mut acknowledged = 0u64;
    let mut kills = 0;
    for round in 0..KILLS {
        let sync_every = 1 + rng.below(4);
        let mut child = Command::new(env!("CARGO_BIN_EXE_archiver"))
            .args(["debug", "wal-append", "--wal-dir"])
            .arg(&dir)
            .args(["--records", "100000000", "--payload-bytes"])
            .arg(PAYLOAD_BYTES.to_string())
            .args(["--sync-every", &sync_every.to_string()])
            .args(["--segment-bytes", "16384"])
            // Every other round syncs on another thread while appending goes on (group
            // commit's `begin_sync`), acknowledging a sync only once it is finished.
            .args(if round % 2 == 1 {
                &["--split-sync"][..]
            } else {
                &[]
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let opened = lines.next().expect("child prints its start").unwrap();
        let next_lsn: u64 = opened
            .strip_prefix("opened next_lsn ")
            .unwrap_or_else(|| panic!("round {round}: unexpected line {opened:?}"))
            .parse()
            .unwrap();
        // Recovery kept everything acknowledged before the previous kill, and invented nothing.
        assert!(
            next_lsn > acknowledged,
            "round {round}: next_lsn {next_lsn} <= acknowledged {acknowledged}"
        );
        // Read a random number of acknowledgements, or for a random time, then kill.
        let wanted = rng.below(60);
        let deadline = Instant::now() + Duration::from_micros(rng.below(30_000));
        let mut seen = 0;
        while seen < wanted || Instant::now() < deadline {
            let line = lines.next().expect("child still running").unwrap();
            let lsn: u64 = line.strip_prefix("durable ").unwrap().parse().unwrap();
            assert!(lsn >= acknowledged);
            acknowledged = lsn;
            seen += 1;
        }
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success(), "round {round}: child ended on its own");
        kills += 1;
        // Whatever the child printed before it died counts as acknowledged too.
        for line in lines.map_while(Result::ok) {
            if let Some(lsn) = line.strip_prefix("durable ") {
                acknowledged = lsn.parse().unwrap();
            }
        }
        check(&dir, acknowledged, round);
    }
    assert!(kills >= 30);
    // A writer opens the log after the last kill, and it still holds every acknowledged record.
    let (w, _, seen) = super::open(&dir, super::small(16384)).unwrap();
    assert!(seen.len() as u64 >= acknowledged);
    drop(w);
    eprintln!("{kills} kills, {acknowledged} records acknowledged");
}

fn check(dir: &std::path::Path, acknowledged: u64, round: usize) {
    let records = read_all(dir).unwrap_or_else(|e| panic!("round {round}: {e}"));
    assert!(
        records.len() as u64 >= acknowledged,
        "round {round}: {} records, {acknowledged} acknowledged",
        records.len()
    );
    for (i, (lsn, t, payload)) in records.iter().enumerate() {
        assert_eq!(*lsn, i as u64 + 1, "round {round}");
        assert_eq!(*t, expected_type(*lsn), "round {round}: lsn {lsn}");
        assert!(
            *payload == expected_payload(*lsn, PAYLOAD_BYTES),
            "round {round}: lsn {lsn} has bytes that were never written"
        );
    }
}
