//! The TLS keys' rules, through [`JobConfig::parse`]: what is refused when the job file is
//! read, what is refused when a connection is opened (the files), and the driver options each
//! mode gives. Certificates are made with `openssl`, as the sandbox makes its own.

#![allow(clippy::too_many_lines)]

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::config::{ConfigError, JobConfig, TlsMode};

const GOOD: &str = r#"
[source]
url = "mysql://archiver@db1.example:3306/shop"
password_env = "PW"
table = "rewards"

[archive]
table = "rewards_archive"

[job]
where = "created_at < '2025-06-01'"
wal_dir = "wal"
"#;

/// `GOOD` with `lines` added to `[source]`, parsed with `base` as the job file's directory.
fn parse_with(lines: &str, base: &Path) -> Result<JobConfig, ConfigError> {
    let text = GOOD.replacen(
        "table = \"rewards\"\n",
        &format!("table = \"rewards\"\n{lines}\n"),
        1,
    );
    JobConfig::parse(&text, base, &|name| {
        (name == "PW").then(|| "secret".to_string())
    })
}

/// A directory with a CA, a client certificate and its key in the forms the keys accept, and
/// the forms they refuse, made by `openssl`.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| {
            let output = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("openssl is installed (the sandbox needs it too)");
            assert!(output.status.success(), "openssl {args:?}: {output:?}");
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=test CA",
        ]);
        run(&["genrsa", "-traditional", "-out", "client.key", "2048"]);
        run(&[
            "req",
            "-new",
            "-key",
            "client.key",
            "-out",
            "client.csr",
            "-subj",
            "/CN=client",
        ]);
        run(&[
            "x509",
            "-req",
            "-in",
            "client.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            "client.pem",
        ]);
        run(&[
            "pkcs8",
            "-topk8",
            "-nocrypt",
            "-in",
            "client.key",
            "-out",
            "client-pkcs8.key",
        ]);
        run(&[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "client-ec.key",
        ]);
        std::fs::write(dir.path().join("not-pem.txt"), "just text\n").unwrap();
        std::fs::copy(
            dir.path().join("client.pem"),
            dir.path().join("client-cert-only.pem"),
        )
        .unwrap();
        let files = Files { dir };
        for key in [
            "client.key",
            "client-pkcs8.key",
            "client-ec.key",
            "ca.key",
            "client-cert-only.pem",
        ] {
            files.chmod(key, 0o600);
        }
        files
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn chmod(&self, name: &str, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(self.path(name), std::fs::Permissions::from_mode(mode)).unwrap();
    }
}

#[test]
fn rules_between_the_keys_are_checked_when_the_file_is_read() {
    let files = Files::new();
    let base = files.dir.path();
    let cases: &[(&str, &str)] = &[
        ("tls_mode = \"verify-full\"", "[source] tls_mode = \"verify-full\" is not a TLS mode; use one of \"disabled\", \"preferred\", \"required\", \"verify_ca\", \"verify_identity\""),
        ("tls_mode = \"VERIFY_CA\"", "is not a TLS mode"),
        ("tls_mode = \"verify_ca\"", "[source] tls_mode = \"verify_ca\" needs tls_ca_file"),
        ("tls_mode = \"verify_identity\"", "[source] tls_mode = \"verify_identity\" needs tls_ca_file"),
        ("tls_mode = \"required\"\ntls_ca_file = \"ca.pem\"", "[source] tls_ca_file is set but tls_mode is \"required\", which does not check"),
        ("tls_ca_file = \"ca.pem\"", "tls_mode is \"preferred\" (the default)"),
        ("tls_cert_file = \"client.pem\"", "[source] tls_cert_file is set without tls_key_file"),
        ("tls_key_file = \"client.key\"", "[source] tls_key_file is set without tls_cert_file"),
        ("tls_mode = \"disabled\"\ntls_cert_file = \"client.pem\"\ntls_key_file = \"client.key\"", "[source] tls_mode = \"disabled\" but tls_cert_file is set"),
        ("tls_mode = \"disabled\"\ntls_ca_file = \"ca.pem\"", "tls_ca_file is set but tls_mode is \"disabled\""),
        ("tls_ca = \"ca.pem\"", "unknown field `tls_ca`"),
        ("tls_mode = true", "invalid type"),
    ];
    for (lines, expected) in cases {
        let message = parse_with(lines, base).map(|_| ()).unwrap_err().0;
        assert!(message.contains(expected), "{lines:?}: {message}");
    }
    // A mode that needs TLS needs TCP.
    for (url, expected) in [
        (
            "mysql://archiver@db1.example:3306/shop?socket=/run/mysqld/mysqld.sock",
            "connects through a Unix socket",
        ),
        (
            "mysql://archiver@db1.example:3306/shop?prefer_socket=true",
            "sets prefer_socket",
        ),
    ] {
        let text = GOOD
            .replacen("mysql://archiver@db1.example:3306/shop", url, 1)
            .replacen(
                "table = \"rewards\"\n",
                "table = \"rewards\"\ntls_mode = \"required\"\n",
                1,
            );
        let message = JobConfig::parse(&text, base, &|_| None)
            .map(|_| ())
            .unwrap_err()
            .0;
        assert!(message.contains(expected), "{url}: {message}");
        assert!(message.starts_with("[source] url"), "{message}");
    }
    // `[archive]` has TLS keys only with a url of its own; each section is named in messages.
    let text = GOOD.replacen("[archive]\n", "[archive]\ntls_mode = \"required\"\n", 1);
    let message = JobConfig::parse(&text, base, &|_| None)
        .map(|_| ())
        .unwrap_err()
        .0;
    assert!(
        message.contains("[archive] sets tls_* keys but no url"),
        "{message}"
    );
    let text = GOOD.replacen(
        "[archive]\n",
        "[archive]\nurl = \"mysql://cold@db2.example/cold\"\ntls_mode = \"verify_ca\"\n",
        1,
    );
    let message = JobConfig::parse(&text, base, &|_| None)
        .map(|_| ())
        .unwrap_err()
        .0;
    assert!(
        message.contains("[archive] tls_mode = \"verify_ca\" needs tls_ca_file"),
        "{message}"
    );
}

#[test]
fn unusable_files_are_refused_when_connecting() {
    let files = Files::new();
    let base = files.dir.path();
    files.chmod("client.pem", 0o644);
    let verify = "tls_mode = \"verify_identity\"\n";
    let client = "tls_cert_file = \"client.pem\"\ntls_key_file =";
    let cases: Vec<(String, String)> = vec![
        (
            format!("{verify}tls_ca_file = \"missing.pem\""),
            format!(
                "[source] cannot read tls_ca_file {}",
                files.path("missing.pem").display()
            ),
        ),
        (
            format!("{verify}tls_ca_file = \"not-pem.txt\""),
            "tls_ca_file".to_string()
                + &format!(
                    " {} holds no PEM certificate",
                    files.path("not-pem.txt").display()
                ),
        ),
        (
            format!("{verify}tls_ca_file = \"client.key\""),
            "holds no PEM certificate".to_string(),
        ),
        (
            format!("{client} \"client-pkcs8.key\""),
            "holds a PKCS#8 key (BEGIN PRIVATE KEY); archiver reads RSA keys in PKCS#1 form"
                .to_string(),
        ),
        (
            format!("{client} \"client-pkcs8.key\""),
            "openssl rsa -in".to_string(),
        ),
        (
            format!("{client} \"client-ec.key\""),
            "holds an EC key".to_string(),
        ),
        (
            format!("{client} \"client-cert-only.pem\""),
            "holds no private key".to_string(),
        ),
        (
            format!("{client} \"gone.key\""),
            "[source] cannot read tls_key_file".to_string(),
        ),
        (
            "tls_cert_file = \"not-pem.txt\"\ntls_key_file = \"client.key\"".to_string(),
            "[source] tls_cert_file".to_string()
                + &format!(
                    " {} holds no PEM certificate",
                    files.path("not-pem.txt").display()
                ),
        ),
    ];
    for (lines, expected) in &cases {
        let config = parse_with(lines, base)
            .unwrap_or_else(|e| panic!("{lines:?}: the job file itself is fine: {}", e.0));
        let message = config
            .source
            .endpoint
            .connect_opts()
            .map(|_| ())
            .unwrap_err()
            .0;
        assert!(message.contains(expected.as_str()), "{lines:?}: {message}");
    }
    // A private key other users can read is refused, as a password file is; owner or group
    // only is used.
    let lines = format!("{client} \"client.key\"");
    for (mode, refused) in [(0o600, false), (0o640, false), (0o644, true), (0o606, true)] {
        files.chmod("client.key", mode);
        let config = parse_with(&lines, base).unwrap();
        let opened = config.source.endpoint.connect_opts();
        if refused {
            let message = opened.map(|_| ()).unwrap_err().0;
            assert!(
                message.contains("can be read or changed by every user"),
                "{mode:o}: {message}"
            );
            assert!(message.contains("chmod 600"), "{message}");
        } else {
            assert!(opened.is_ok(), "{mode:o}: {:?}", opened.err());
        }
    }
}

#[test]
fn each_mode_gives_the_driver_its_options() {
    let files = Files::new();
    let base = files.dir.path();
    let ca = "tls_ca_file = \"ca.pem\"";
    // (lines, mode, TLS asked, certificate checked, host checked, stays on TCP)
    #[rustfmt::skip]
    let cases: &[(String, TlsMode, bool, bool, bool, bool)] = &[
        (String::new(), TlsMode::Preferred, true, false, false, true),
        ("tls_mode = \"disabled\"".into(), TlsMode::Disabled, false, false, false, false),
        ("tls_mode = \"preferred\"".into(), TlsMode::Preferred, true, false, false, true),
        ("tls_mode = \"required\"".into(), TlsMode::Required, true, false, false, true),
        (format!("tls_mode = \"verify_ca\"\n{ca}"), TlsMode::VerifyCa, true, true, false, true),
        (format!("tls_mode = \"verify_identity\"\n{ca}"), TlsMode::VerifyIdentity, true, true, true, true),
    ];
    for (lines, mode, asked, checked, host, tcp) in cases {
        let config = parse_with(lines, base).unwrap_or_else(|e| panic!("{lines}: {}", e.0));
        let endpoint = &config.source.endpoint;
        assert_eq!(endpoint.tls.mode, *mode, "{lines}");
        let opts = endpoint.connect_opts().unwrap();
        assert_eq!(opts.ssl_opts().is_some(), *asked, "{lines}");
        if let Some(ssl) = opts.ssl_opts() {
            assert_eq!(!ssl.accept_invalid_certs(), *checked, "{lines}");
            assert_eq!(
                ssl.disable_built_in_roots(),
                *checked,
                "only the CA named is trusted: {lines}"
            );
            assert_eq!(ssl.root_certs().len(), usize::from(*checked), "{lines}");
            if *checked {
                assert_eq!(!ssl.skip_domain_validation(), *host, "{lines}");
            }
        }
        assert_eq!(!opts.prefer_socket(), *tcp, "{lines}");
        assert_eq!(opts.pass(), Some("secret"));
    }
    // A Unix socket url with the default mode: no TLS asked (it does not cover a socket).
    let text = GOOD.replacen("3306/shop", "3306/shop?socket=/run/mysqld/mysqld.sock", 1);
    let config = JobConfig::parse(&text, base, &|_| Some("secret".into())).unwrap();
    assert!(config
        .source
        .endpoint
        .connect_opts()
        .unwrap()
        .ssl_opts()
        .is_none());
    // A client certificate goes with every mode that uses TLS; the key never shows in Debug.
    let config = parse_with(
        "tls_cert_file = \"client.pem\"\ntls_key_file = \"client.key\"",
        base,
    )
    .unwrap();
    let opts = config.source.endpoint.connect_opts().unwrap();
    assert!(opts.ssl_opts().and_then(|s| s.client_identity()).is_some());
    let key = std::fs::read_to_string(files.path("client.key")).unwrap();
    let body = key.lines().nth(1).unwrap();
    let shown = format!("{config:?}");
    assert!(!shown.contains(body), "{shown}");
    assert!(shown.contains("client.pem"), "{shown}");
}
