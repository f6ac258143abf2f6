//! TLS at connect: the second attempts the modes promise and the driver does not make, TLS
//! failures as refusals that say what to do, and the check that a session that must be
//! encrypted is.
//!
//! - `preferred`: the driver fails when the server offers no TLS; we connect again without.
//! - `verify_ca`: the driver's switch that skips the host-name check matches rustls's error by
//!   its text, which current rustls no longer renders that way (mysql_async issue #404), so a
//!   certificate for another name is refused although its chain is good. rustls checks the
//!   chain before the name, so a name mismatch means the chain passed: we connect again asking
//!   the driver to check the certificate for a name it presented itself. The second session's
//!   chain is checked in full; only the host is not, which is what `verify_ca` means.
//! - A TLS failure (unknown CA, wrong host, no TLS on the server) is a [`Refusal`]: nothing a
//!   reconnection could fix, so never retried as a lost connection would be.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, DriverError, IoError, TlsError};
use rustls::CertificateError;

use super::error::connect_target;
use super::{DbError, DbResult};
use crate::config::{Endpoint, Refusal, TlsAttempt, TlsMode};

/// The session's TLS status variables: the protocol version and cipher, empty without TLS.
const SESSION_TLS_SQL: &str =
    "SHOW SESSION STATUS WHERE Variable_name IN ('Ssl_version', 'Ssl_cipher')";

/// Opens a connection to `endpoint` as its TLS mode says, making the mode's second attempt
/// when the first fails the way it calls for.
pub(super) async fn open(endpoint: &Endpoint) -> DbResult<Conn> {
    let first = match Conn::new(endpoint.connect_opts()?).await {
        Ok(conn) => return Ok(conn),
        Err(error) => error,
    };
    let presented;
    let attempt = match endpoint.tls.mode {
        TlsMode::Preferred if offers_no_tls(&first) => {
            tracing::info!(
                "{}: the server offers no TLS; connecting without it (tls_mode = \"preferred\")",
                endpoint.label()
            );
            TlsAttempt::Plain
        }
        TlsMode::VerifyCa => match presented_name(&first) {
            Some(name) => {
                presented = name;
                tracing::debug!(
                    "{}: the certificate is not for the url's host; checking its chain with the name {presented:?} it presents (tls_mode = \"verify_ca\")",
                    endpoint.label()
                );
                TlsAttempt::ServerName(&presented)
            }
            None => return Err(failed(endpoint, first)),
        },
        _ => return Err(failed(endpoint, first)),
    };
    Conn::new(endpoint.connect_opts_for(attempt)?)
        .await
        .map_err(|error| failed(endpoint, error))
}

/// Logs how the session is protected (`-v`), and refuses a session without TLS when the mode
/// requires it (the driver should never make one; this makes sure).
pub(super) async fn check_session(conn: &mut Conn, endpoint: &Endpoint) -> DbResult<()> {
    let rows: Vec<(String, String)> = conn.query(SESSION_TLS_SQL).await?;
    let value = |name: &str| {
        rows.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    let (version, cipher) = (value("Ssl_version"), value("Ssl_cipher"));
    if version.is_empty() {
        if endpoint.tls.mode.requires_tls() {
            return Err(DbError::Refused(Refusal(format!(
                "cannot connect to {}: the session is not encrypted, and tls_mode = {:?} requires TLS; check that the url reaches the server over TCP",
                connect_target(endpoint),
                endpoint.tls.mode.name()
            ))));
        }
        tracing::info!(
            "{}: connected without TLS (tls_mode = {:?})",
            endpoint.label(),
            endpoint.tls.mode.name()
        );
    } else {
        tracing::info!(
            "{}: connected over TLS ({version}, {cipher}; tls_mode = {:?})",
            endpoint.label(),
            endpoint.tls.mode.name()
        );
    }
    Ok(())
}

/// A failed connect: a TLS failure as a refusal, anything else as [`DbError::connect`] sorts it.
fn failed(endpoint: &Endpoint, error: mysql_async::Error) -> DbError {
    match refusal(endpoint, &error) {
        Some(refusal) => DbError::Refused(refusal),
        None => DbError::connect(endpoint, error),
    }
}

/// The driver's answer when it asked for TLS and the server's greeting offered none.
fn offers_no_tls(error: &mysql_async::Error) -> bool {
    matches!(
        error,
        mysql_async::Error::Driver(DriverError::NoClientSslFlagFromServer)
    )
}

/// The rustls error of a failed handshake, which the driver passes up inside an I/O error.
/// (One raised while it builds its TLS configuration comes as `IoError::Tls`: see [`refusal`].)
fn rustls_error(error: &mysql_async::Error) -> Option<&rustls::Error> {
    match error {
        mysql_async::Error::Io(IoError::Io(io)) => io.get_ref()?.downcast_ref::<rustls::Error>(),
        _ => None,
    }
}

/// A TLS failure as a refusal naming the endpoint and what to do; `None` when `error` is not
/// one (a lost connection, a server error).
fn refusal(endpoint: &Endpoint, error: &mysql_async::Error) -> Option<Refusal> {
    let mode = endpoint.tls.mode.name();
    let why = if offers_no_tls(error) {
        format!("the server offers no TLS, and tls_mode = {mode:?} requires it; enable TLS on the server (ssl_cert, ssl_key), or set tls_mode = \"preferred\" to connect without it")
    } else if matches!(error, mysql_async::Error::Driver(DriverError::NoKeyFound)) {
        "tls_key_file holds no RSA private key the TLS library can read; name a PKCS#1 RSA key (BEGIN RSA PRIVATE KEY)".to_string()
    } else if let mysql_async::Error::Io(IoError::Tls(TlsError::Tls(e))) = error {
        // Raised while the driver builds its TLS configuration, before any handshake: the CA
        // was checked with the job file, so it is the client certificate or its key.
        format!("the client certificate cannot be used ({e}); tls_cert_file must hold an X.509 v3 certificate and tls_key_file its RSA key")
    } else if let mysql_async::Error::Io(IoError::Tls(TlsError::InvalidDnsName(e))) = error {
        format!("the url's host is not a name TLS can check ({e}); name the server by a DNS name or an IP address")
    } else {
        explain(endpoint, rustls_error(error)?)
    };
    Some(Refusal(format!(
        "cannot connect to {}: {why}",
        connect_target(endpoint)
    )))
}

/// What a rustls failure means for this endpoint, and what to do.
fn explain(endpoint: &Endpoint, error: &rustls::Error) -> String {
    let mode = endpoint.tls.mode.name();
    let ca = endpoint
        .tls
        .ca_file
        .as_ref()
        .map_or_else(String::new, |p| format!(" {}", p.display()));
    match error {
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => format!("the server's TLS certificate is not valid for the host {:?} ({error}); tls_mode = {mode:?} checks that the url names the server by a name its certificate holds: use such a name in the url, or set tls_mode = \"verify_ca\" to check the CA only", endpoint.opts.ip_or_hostname()),
        rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        ) => format!("the server's TLS certificate is not signed by the CA in tls_ca_file{ca} ({error}); set tls_ca_file to the CA that issued the server's certificate"),
        rustls::Error::InvalidCertificate(
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. },
        ) => format!("the server's TLS certificate is outside its validity period ({error}); renew it on the server, or check this machine's clock"),
        rustls::Error::InvalidCertificate(_) => format!("the server's TLS certificate is refused ({error}); tls_mode = {mode:?} checks it against tls_ca_file{ca}"),
        rustls::Error::AlertReceived(_) => format!("the server ended the TLS handshake ({error}); if it checks client certificates, tls_cert_file must be signed by a CA it trusts and tls_key_file be its key"),
        _ => format!("TLS failed ({error}); check the server's TLS settings and this section's tls_* keys (README: TLS)"),
    }
}

/// The first name the server's certificate presented, when `error` is rustls refusing it for
/// another name; as a name the driver can check it against.
fn presented_name(error: &mysql_async::Error) -> Option<String> {
    match rustls_error(error)? {
        rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
            presented,
            ..
        }) => presented.iter().find_map(|name| server_name(name)),
        _ => None,
    }
}

/// A name as rustls lists the certificate's names (webpki's rendering, `DnsName("db1")` or
/// `IpAddress(10.0.0.1)`), as a name to check: a wildcard `*.example.com` becomes a name it
/// covers. Anything else is `None`, and the connection is refused: a change of that rendering
/// fails closed, never open (pinned by `tests/engine/tls.rs`, which connects with `verify_ca`
/// to 127.0.0.1 presenting a certificate for localhost only).
fn server_name(presented: &str) -> Option<String> {
    if let Some(dns) = presented
        .strip_prefix("DnsName(\"")
        .and_then(|rest| rest.strip_suffix("\")"))
    {
        return Some(match dns.strip_prefix("*.") {
            Some(domain) => format!("archiver-verify-ca.{domain}"),
            None => dns.to_string(),
        });
    }
    presented
        .strip_prefix("IpAddress(")
        .and_then(|rest| rest.strip_suffix(')'))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::server_name;

    #[test]
    fn presented_names_become_names_to_check() {
        let cases = [
            ("DnsName(\"localhost\")", Some("localhost")),
            (
                "DnsName(\"*.db.example\")",
                Some("archiver-verify-ca.db.example"),
            ),
            ("IpAddress(10.0.0.1)", Some("10.0.0.1")),
            ("IpAddress(::1)", Some("::1")),
            ("DirectoryName", None),
            ("UniformResourceIdentifier(\"spiffe://x\")", None),
            ("localhost", None),
        ];
        for (presented, expected) in cases {
            assert_eq!(server_name(presented).as_deref(), expected, "{presented}");
        }
    }
}
