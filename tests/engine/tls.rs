//! TLS in every mode against the sandbox (issue 9, item 6). `tools/sandbox` serves TLS with a
//! CA of its own (`ARCHIVER_SANDBOX_TLS_DIR`): a server certificate for DNS:localhost only, a
//! client certificate, and the users `archiver_tls` (REQUIRE SSL) and `archiver_x509` (REQUIRE
//! X509). A wrong CA and a wrong client certificate are made here with `openssl`.
//!
//! Whether a session is encrypted is read from the session itself: at `-v` the archiver logs
//! the session's `Ssl_version` and `Ssl_cipher`, and one case also opens a connection with the
//! job's own options and asks the server. A server that offers no TLS at all is played by a
//! listener here that sends a MariaDB greeting without the TLS capability (the sandbox always
//! offers TLS): it checks that `preferred` then connects again without TLS and that the other
//! modes refuse.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use super::*;

/// The rows of the TLS jobs: small, the point is the connection.
const ROWS: u64 = 300;

/// The sandbox's TLS directory (`ARCHIVER_SANDBOX_TLS_DIR`, else `tools/sandbox env`), after
/// checking the server really serves TLS.
fn sandbox_tls_dir(db: &mut TestDb) -> PathBuf {
    let have_ssl: String = db.query_scalar("SELECT @@have_ssl");
    assert_eq!(
        have_ssl, "YES",
        "the sandbox runs without TLS (started by a tools/sandbox from before TLS): run tools/sandbox restart"
    );
    if let Some(dir) = std::env::var_os("ARCHIVER_SANDBOX_TLS_DIR") {
        return PathBuf::from(dir);
    }
    let output = Command::new(common::repo_dir().join("tools/sandbox"))
        .arg("env")
        .env("ARCHIVER_SANDBOX_INSTANCE", "main")
        .output()
        .expect("run tools/sandbox env");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("export ARCHIVER_SANDBOX_TLS_DIR="))
        .map(PathBuf::from)
        .expect("tools/sandbox env prints ARCHIVER_SANDBOX_TLS_DIR")
}

/// Runs `openssl ARGS` in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed (tools/sandbox needs it too)");
    assert!(output.status.success(), "openssl {args:?}: {output:?}");
}

/// Makes, in `dir`, a CA the sandbox never heard of (`wrong-ca.pem`) and a client certificate
/// it signed (`wrong-client.pem`, `wrong-client.key`, PKCS#1), and the same certificate as
/// X.509 v1 (`v1-client.pem`: what openssl makes without extensions, which rustls refuses).
#[rustfmt::skip]
fn make_wrong_ca(dir: &Path) {
    openssl(dir, &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "wrong-ca.key", "-out", "wrong-ca.pem", "-days", "2", "-subj", "/CN=not the sandbox CA"]);
    openssl(dir, &["genrsa", "-traditional", "-out", "wrong-client.key", "2048"]);
    openssl(dir, &["req", "-new", "-key", "wrong-client.key", "-out", "wrong-client.csr", "-subj", "/CN=archiver_x509"]);
    std::fs::write(dir.join("client.ext"), "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n").unwrap();
    openssl(dir, &["x509", "-req", "-in", "wrong-client.csr", "-CA", "wrong-ca.pem", "-CAkey", "wrong-ca.key", "-CAcreateserial", "-days", "2", "-extfile", "client.ext", "-out", "wrong-client.pem"]);
    openssl(dir, &["x509", "-req", "-in", "wrong-client.csr", "-CA", "wrong-ca.pem", "-CAkey", "wrong-ca.key", "-CAcreateserial", "-days", "2", "-out", "v1-client.pem"]);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.join("wrong-client.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// A job on `db` connecting as `user` to `host`, with `tls` lines in `[source]`.
fn tls_job(sandbox: &Sandbox, db: &TestDb, user: &str, host: &str, tls: &str) -> Job {
    let job = Job::new(sandbox, db, "tenant < 3", "batch_rows = 100");
    let text = std::fs::read_to_string(&job.config)
        .unwrap()
        .replacen(
            "mysql://archiver@127.0.0.1:",
            &format!("mysql://{user}@{host}:"),
            1,
        )
        .replacen("table = \"src\"\n", &format!("table = \"src\"\n{tls}\n"), 1);
    std::fs::write(&job.config, text).unwrap();
    job
}

/// What a case expects of `archiver run -v`.
enum Expect {
    /// Success, every row moved, the session over TLS (`true`) or not.
    Moved { encrypted: bool },
    /// Refused (exit 64) before anything moved, the message holding every piece.
    Refused(&'static [&'static str]),
}

/// One connection setting and what it must give.
struct Case {
    name: &'static str,
    user: &'static str,
    host: &'static str,
    /// `[source]` lines; `{tls}` is the sandbox's TLS directory, `{dir}` the test's.
    tls: &'static str,
    expect: Expect,
}

const CASES: &[Case] = &[
    Case { name: "disabled, ordinary account", user: "archiver", host: "127.0.0.1", tls: "tls_mode = \"disabled\"", expect: Expect::Moved { encrypted: false } },
    Case { name: "disabled, account that requires TLS", user: "archiver_tls", host: "127.0.0.1", tls: "tls_mode = \"disabled\"", expect: Expect::Refused(&["cannot connect to 127.0.0.1:", "[source] mysql://archiver_tls@127.0.0.1:", "Access denied", "(error 1045)", "an account that requires TLS (REQUIRE SSL or X509) is refused the same way: set tls_mode"]) },
    Case { name: "preferred by default, account that requires TLS", user: "archiver_tls", host: "127.0.0.1", tls: "", expect: Expect::Moved { encrypted: true } },
    Case { name: "preferred", user: "archiver", host: "127.0.0.1", tls: "tls_mode = \"preferred\"", expect: Expect::Moved { encrypted: true } },
    Case { name: "required", user: "archiver_tls", host: "127.0.0.1", tls: "tls_mode = \"required\"", expect: Expect::Moved { encrypted: true } },
    Case { name: "verify_ca, the sandbox's CA, by IP (the certificate names localhost only)", user: "archiver_tls", host: "127.0.0.1", tls: "tls_mode = \"verify_ca\"\ntls_ca_file = \"{tls}/ca.pem\"", expect: Expect::Moved { encrypted: true } },
    Case { name: "verify_ca, a CA that did not sign the server's certificate", user: "archiver", host: "127.0.0.1", tls: "tls_mode = \"verify_ca\"\ntls_ca_file = \"{dir}/wrong-ca.pem\"", expect: Expect::Refused(&["cannot connect to 127.0.0.1:", "[source] mysql://archiver@127.0.0.1:", "the server's TLS certificate is not signed by the CA in tls_ca_file", "wrong-ca.pem", "UnknownIssuer", "set tls_ca_file to the CA that issued the server's certificate"]) },
    Case { name: "verify_identity by the certificate's name", user: "archiver_tls", host: "localhost", tls: "tls_mode = \"verify_identity\"\ntls_ca_file = \"{tls}/ca.pem\"", expect: Expect::Moved { encrypted: true } },
    Case { name: "verify_identity by an IP the certificate does not name", user: "archiver", host: "127.0.0.1", tls: "tls_mode = \"verify_identity\"\ntls_ca_file = \"{tls}/ca.pem\"", expect: Expect::Refused(&["cannot connect to 127.0.0.1:", "the server's TLS certificate is not valid for the host \"127.0.0.1\"", "localhost", "set tls_mode = \"verify_ca\" to check the CA only"]) },
    Case { name: "verify_identity, a CA that did not sign it", user: "archiver", host: "localhost", tls: "tls_mode = \"verify_identity\"\ntls_ca_file = \"{dir}/wrong-ca.pem\"", expect: Expect::Refused(&["cannot connect to localhost:", "not signed by the CA in tls_ca_file"]) },
    Case { name: "account that requires a client certificate, none given", user: "archiver_x509", host: "127.0.0.1", tls: "tls_mode = \"required\"", expect: Expect::Refused(&["Access denied", "(error 1045)", "REQUIRE X509", "set tls_cert_file and tls_key_file"]) },
    Case { name: "client certificate signed by the server's CA", user: "archiver_x509", host: "localhost", tls: "tls_mode = \"verify_identity\"\ntls_ca_file = \"{tls}/ca.pem\"\ntls_cert_file = \"{tls}/client.pem\"\ntls_key_file = \"{tls}/client.key\"", expect: Expect::Moved { encrypted: true } },
    Case { name: "client certificate of a CA the server does not trust", user: "archiver_x509", host: "127.0.0.1", tls: "tls_mode = \"required\"\ntls_cert_file = \"{dir}/wrong-client.pem\"\ntls_key_file = \"{dir}/wrong-client.key\"", expect: Expect::Refused(&["cannot connect to 127.0.0.1:", "[source] mysql://archiver_x509@127.0.0.1:", "the server ended the TLS handshake", "UnknownCA", "tls_cert_file must be signed by a CA it trusts"]) },
    Case { name: "client certificate as X.509 v1", user: "archiver_x509", host: "127.0.0.1", tls: "tls_mode = \"required\"\ntls_cert_file = \"{dir}/v1-client.pem\"\ntls_key_file = \"{dir}/wrong-client.key\"", expect: Expect::Refused(&["cannot connect to 127.0.0.1:", "the client certificate cannot be used", "UnsupportedCertVersion", "X.509 v3"]) },
];

/// Every mode against the real server: what works moves every row over the session the mode
/// promises; what is refused says why and what to do, exits 64 and leaves no WAL and every row
/// in place.
#[test]
fn every_tls_mode_against_the_sandbox() {
    let sandbox = common::sandbox();
    let dir = tempfile::tempdir().unwrap();
    make_wrong_ca(dir.path());
    let mut failures = Vec::new();
    for case in CASES {
        let mut db = mixed_db(&sandbox, "tls", ROWS);
        let tls_dir = sandbox_tls_dir(&mut db);
        let original = db.checksum("src");
        let matching = count_matching(&mut db, "tenant < 3");
        let lines = case
            .tls
            .replace("{tls}", &tls_dir.display().to_string())
            .replace("{dir}", &dir.path().display().to_string());
        let job = tls_job(&sandbox, &db, case.user, case.host, &lines);
        let output = job.archiver("run", &["-v"]);
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match case.expect {
                Expect::Moved { encrypted } => {
                    assert_success(&output, case.name);
                    assert_moved(&mut db, "tenant < 3", original, matching);
                    let said = if encrypted {
                        "connected over TLS (TLSv1."
                    } else {
                        "connected without TLS"
                    };
                    assert!(
                        stderr.contains(&format!("[source] mysql://{}@{}:", case.user, case.host)),
                        "{stderr}"
                    );
                    assert!(stderr.contains(said), "expected {said:?}: {stderr}");
                }
                Expect::Refused(pieces) => {
                    assert_exit(&output, 64, case.name);
                    for piece in pieces {
                        assert!(stderr.contains(piece), "expected {piece:?} in: {stderr}");
                    }
                    assert!(!stderr.contains(sandbox.password()), "{stderr}");
                    assert!(!job.wal_dir.exists(), "a refused run writes no WAL");
                    assert_eq!(db.checksum("src"), original, "no row moved");
                    assert_eq!(db.query_scalar::<u64>("SELECT COUNT(*) FROM arch"), 0);
                }
            }));
        if let Err(panic) = outcome {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(format!("{}: {why}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// The session of a job's own options is encrypted and authenticated by the client
/// certificate, asked of the server from a connection the test opens with those options.
#[test]
fn the_jobs_session_is_encrypted_as_the_server_sees_it() {
    let sandbox = common::sandbox();
    let mut db = mixed_db(&sandbox, "tls_seen", 10);
    let tls_dir = sandbox_tls_dir(&mut db);
    let t = tls_dir.display();
    let job = tls_job(
        &sandbox,
        &db,
        "archiver_x509",
        "localhost",
        &format!("tls_mode = \"verify_identity\"\ntls_ca_file = \"{t}/ca.pem\"\ntls_cert_file = \"{t}/client.pem\"\ntls_key_file = \"{t}/client.key\""),
    );
    let text = std::fs::read_to_string(&job.config).unwrap();
    let password = sandbox.password().to_string();
    let env = move |name: &str| (name == "ARCHIVER_PASSWORD").then(|| password.clone());
    let config = archiver::config::JobConfig::parse(&text, job.config.parent().unwrap(), &env)
        .expect("the job file loads");
    let opts = config.source.endpoint.connect_opts().expect("its options");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (user, cipher): (String, String) = runtime.block_on(async {
        use mysql_async::prelude::Queryable;
        let mut conn = mysql_async::Conn::new(opts)
            .await
            .expect("connect with the job's options");
        let user: Option<String> = conn.query_first("SELECT CURRENT_USER()").await.unwrap();
        let cipher: Option<(String, String)> = conn
            .query_first("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
            .await
            .unwrap();
        conn.disconnect().await.unwrap();
        (user.unwrap(), cipher.unwrap().1)
    });
    assert!(user.starts_with("archiver_x509@"), "{user}");
    assert!(!cipher.is_empty(), "the session is encrypted");
}

/// A listener that plays a server offering no TLS: each connection gets a MariaDB greeting
/// without the TLS capability; what the client sends back is recorded, and a login is answered
/// with an access-denied error naming the fake.
struct NoTlsServer {
    port: u16,
    /// Per connection, the first packet the client sent (empty if it sent none and hung up).
    received: Arc<Mutex<Vec<Vec<u8>>>>,
}

/// `CLIENT_SSL`, the capability the greeting leaves out.
const CLIENT_SSL: u32 = 0x800;

impl NoTlsServer {
    fn start() -> NoTlsServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let record = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                stream
                    .set_read_timeout(Some(std::time::Duration::from_secs(30)))
                    .unwrap();
                let _ = stream.write_all(&greeting());
                let packet = read_packet(&mut stream).unwrap_or_default();
                if !packet.is_empty() {
                    let _ = stream.write_all(&access_denied());
                }
                record.lock().unwrap().push(packet);
            }
        });
        NoTlsServer { port, received }
    }

    /// What the first `count` connections sent, once they have (the client may exit before
    /// this side has read its connection to the end).
    fn received(&self, count: usize) -> Vec<Vec<u8>> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let received = self.received.lock().unwrap().clone();
            if received.len() >= count || std::time::Instant::now() > deadline {
                return received;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

/// A MariaDB 10.11 HandshakeV10 greeting (sequence 0) whose capabilities lack `CLIENT_SSL`.
fn greeting() -> Vec<u8> {
    // LONG_PASSWORD, LONG_FLAG, CONNECT_WITH_DB, PROTOCOL_41, TRANSACTIONS, SECURE_CONNECTION,
    // MULTI_STATEMENTS, MULTI_RESULTS, PLUGIN_AUTH, PLUGIN_AUTH_LENENC_CLIENT_DATA.
    let capabilities: u32 = 0x0000_0001
        | 0x4
        | 0x8
        | 0x200
        | 0x2000
        | 0x8000
        | 0x1_0000
        | 0x2_0000
        | 0x8_0000
        | 0x20_0000;
    assert_eq!(capabilities & CLIENT_SSL, 0);
    let mut p = vec![10u8];
    p.extend_from_slice(b"5.5.5-10.11.99-MariaDB-no-tls\0");
    p.extend_from_slice(&7u32.to_le_bytes());
    p.extend_from_slice(b"abcdefgh\0");
    p.extend_from_slice(&(capabilities as u16).to_le_bytes());
    p.push(45); // utf8mb4_general_ci
    p.extend_from_slice(&2u16.to_le_bytes()); // autocommit
    p.extend_from_slice(&((capabilities >> 16) as u16).to_le_bytes());
    p.push(21);
    p.extend_from_slice(&[0; 10]);
    p.extend_from_slice(b"ijklmnopqrst\0");
    p.extend_from_slice(b"mysql_native_password\0");
    frame(0, &p)
}

/// An ERR packet, sequence 2 (after the client's handshake response).
fn access_denied() -> Vec<u8> {
    let mut p = vec![0xff];
    p.extend_from_slice(&1045u16.to_le_bytes());
    p.extend_from_slice(b"#28000Access denied by the test's server without TLS");
    frame(2, &p)
}

fn frame(sequence: u8, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_le_bytes();
    let mut out = vec![len[0], len[1], len[2], sequence];
    out.extend_from_slice(payload);
    out
}

/// One packet's payload; empty when the client hangs up first.
fn read_packet(stream: &mut std::net::TcpStream) -> std::io::Result<Vec<u8>> {
    let mut header = [0u8; 4];
    if stream.read_exact(&mut header).is_err() {
        return Ok(Vec::new());
    }
    let len = usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
    let mut payload = vec![0; len];
    stream.read_exact(&mut payload)?;
    Ok(payload)
}

/// `preferred` falls back to a plain connection only when the server offers no TLS (against
/// the sandbox, which offers it, the cases above show TLS used); the modes that require TLS
/// refuse such a server, saying so, without sending it anything.
#[test]
fn preferred_connects_without_tls_only_to_a_server_that_offers_none() {
    let sandbox = common::sandbox();
    let db = mixed_db(&sandbox, "tls_none", 10);
    for (mode, connections) in [("preferred", 2), ("required", 1), ("verify_identity", 1)] {
        let server = NoTlsServer::start();
        let ca = "tls_ca_file = \"/dev/null\"";
        let lines = match mode {
            "verify_identity" => format!("tls_mode = \"{mode}\"\n{ca}"),
            _ => format!("tls_mode = \"{mode}\""),
        };
        let job = tls_job(&sandbox, &db, "archiver", "127.0.0.1", &lines);
        let text = std::fs::read_to_string(&job.config).unwrap().replacen(
            &format!(":{}/", sandbox.port()),
            &format!(":{}/", server.port),
            1,
        );
        std::fs::write(&job.config, text).unwrap();
        if mode == "verify_identity" {
            // Its CA must be a real one for the job file to load; the sandbox's serves.
            let mut db = mixed_db(&sandbox, "tls_none_ca", 0);
            let ca_file = sandbox_tls_dir(&mut db).join("ca.pem");
            let text = std::fs::read_to_string(&job.config).unwrap().replacen(
                "/dev/null",
                &ca_file.display().to_string(),
                1,
            );
            std::fs::write(&job.config, text).unwrap();
        }
        let output = job.archiver("run", &["-v"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_exit(&output, 64, mode);
        let received = server.received(connections);
        assert_eq!(received.len(), connections, "{mode}: {stderr}");
        assert!(
            received[0].is_empty(),
            "{mode}: the first connection sends nothing once it sees no TLS"
        );
        assert!(!job.wal_dir.exists());
        if mode == "preferred" {
            assert!(
                stderr.contains(
                    "the server offers no TLS; connecting without it (tls_mode = \"preferred\")"
                ),
                "{stderr}"
            );
            // The second connection logs in without asking for TLS: a full handshake response
            // (an SSL request is 32 bytes), capabilities without CLIENT_SSL, our user.
            let login = &received[1];
            assert!(login.len() > 32, "{login:?}");
            let capabilities = u32::from_le_bytes(login[0..4].try_into().unwrap());
            assert_eq!(capabilities & CLIENT_SSL, 0, "plain login");
            assert!(login.windows(9).any(|w| w == b"archiver\0"), "{login:?}");
            assert!(
                stderr.contains("Access denied by the test's server without TLS"),
                "{stderr}"
            );
        } else {
            assert!(stderr.contains(&format!("the server offers no TLS, and tls_mode = \"{mode}\" requires it; enable TLS on the server")), "{stderr}");
            assert!(
                stderr.contains(&format!(
                    "cannot connect to 127.0.0.1:{} ([source] mysql://archiver@127.0.0.1:{}/",
                    server.port, server.port
                )),
                "{stderr}"
            );
        }
    }
}

/// The archive's own server has TLS settings of its own: a two-server job with each section
/// verifying its server against that server's CA.
#[test]
fn source_and_archive_have_their_own_tls() {
    let main = common::sandbox();
    let other = common::archive_sandbox();
    let mut source = mixed_db(&main, "tls_two_src", ROWS);
    let mut archive = other.fresh_database("tls_two_arch");
    create_mixed(&mut archive, "arch", 0);
    let main_ca = sandbox_tls_dir(&mut source).join("ca.pem");
    let have_ssl: String = archive.query_scalar("SELECT @@have_ssl");
    assert_eq!(
        have_ssl, "YES",
        "the archive sandbox serves TLS (restart it if it predates TLS)"
    );
    let other_ca = {
        let output = Command::new(common::repo_dir().join("tools/sandbox"))
            .arg("env")
            .env("ARCHIVER_SANDBOX_INSTANCE", "archive")
            .output()
            .unwrap();
        let dir = std::env::var("ARCHIVER_SANDBOX2_TLS_DIR")
            .ok()
            .unwrap_or_else(|| {
                String::from_utf8_lossy(&output.stdout)
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("export ARCHIVER_SANDBOX2_TLS_DIR=")
                            .map(str::to_string)
                    })
                    .expect("tools/sandbox env prints ARCHIVER_SANDBOX2_TLS_DIR")
            });
        PathBuf::from(dir).join("ca.pem")
    };
    let original = source.checksum("src");
    let matching = count_matching(&mut source, "tenant < 3");
    let job = two_server_job(&source, &archive, "tenant < 3", "batch_rows = 100");
    let text = std::fs::read_to_string(&job.config).unwrap();
    let text = text
        .replacen(
            "mysql://archiver@127.0.0.1:",
            "mysql://archiver@localhost:",
            2,
        )
        .replacen(
            "table = \"src\"\n",
            &format!(
                "table = \"src\"\ntls_mode = \"verify_identity\"\ntls_ca_file = {:?}\n",
                main_ca.display().to_string()
            ),
            1,
        )
        .replacen(
            "table = \"arch\"\n",
            &format!(
                "table = \"arch\"\ntls_mode = \"verify_identity\"\ntls_ca_file = {:?}\n",
                other_ca.display().to_string()
            ),
            1,
        );
    std::fs::write(&job.config, &text).unwrap();
    let output = job.archiver("run", &["-v"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_success(&output, "two servers over TLS");
    assert!(
        stderr.contains("[source] mysql://archiver@localhost:")
            && stderr.contains("[archive] mysql://archiver@localhost:"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("connected over TLS (TLSv1.").count(),
        stderr.matches("connected ").count(),
        "{stderr}"
    );
    utc_checksums(&mut source, &mut archive, original, matching);

    // Each section checks its own server against its own CA: swapped, both are refused.
    let swapped = text
        .replacen(&main_ca.display().to_string(), "MAIN", 1)
        .replacen(
            &other_ca.display().to_string(),
            &main_ca.display().to_string(),
            1,
        )
        .replacen("MAIN", &other_ca.display().to_string(), 1);
    std::fs::write(&job.config, swapped).unwrap();
    let output = job.archiver("run", &[]);
    assert_exit(
        &output,
        64,
        "the source's certificate against the archive's CA",
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("([source] mysql://archiver@localhost:")
            && stderr.contains("not signed by the CA in tls_ca_file"),
        "{stderr}"
    );
}

/// The archive holds exactly the matching rows and the source the rest, checksummed in UTC.
fn utc_checksums(
    source: &mut TestDb,
    archive: &mut TestDb,
    original: (u64, u64, u64),
    matching: u64,
) {
    source.exec("SET time_zone = '+00:00'");
    archive.exec("SET time_zone = '+00:00'");
    let left: u64 = source.query_scalar("SELECT COUNT(*) FROM src WHERE tenant < 3");
    assert_eq!(left, 0);
    let archived = archive.checksum("arch");
    assert_eq!(archived.0, matching);
    let kept = source.checksum("src");
    assert_eq!(kept.0 + archived.0, original.0);
    assert_eq!(kept.1 ^ archived.1, original.1, "xor of row digests");
    assert_eq!(kept.2 + archived.2, original.2, "sum of row crcs");
}
