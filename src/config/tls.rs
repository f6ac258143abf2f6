//! TLS of a server connection: the keys `tls_mode`, `tls_ca_file`, `tls_cert_file` and
//! `tls_key_file` of `[source]` and `[archive]`, checked when the job file is read, and turned
//! into the driver's options for each way of connecting ([`TlsAttempt`]).
//!
//! What cannot depend on the files is checked at once and is an error of the job file (a mode
//! that is not one of the five, `verify_ca` without a CA, a certificate without its key). The
//! files themselves are read at once too, but a file that cannot be used is an error only when
//! a connection is opened, as for the password: `status`, `replay` and `reset` never connect,
//! and must work for an operator who cannot read the service's private key.

use std::path::{Path, PathBuf};

use mysql_async::{ClientIdentity, SslOpts};
use rustls::pki_types::pem::{PemObject, SectionKind};
use rustls::pki_types::CertificateDer;

use super::{err, ConfigError};

/// How a connection uses TLS; the names and meanings of the MySQL client's `--ssl-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Never: plain TCP (or the Unix socket).
    Disabled,
    /// TLS when the server offers it, its certificate not checked; plain TCP when it offers
    /// none.
    Preferred,
    /// TLS or no connection; the server's certificate is not checked.
    Required,
    /// TLS, and the server's certificate must chain to `tls_ca_file`; the host name is not
    /// checked.
    VerifyCa,
    /// TLS, the certificate must chain to `tls_ca_file` and be valid for the url's host.
    VerifyIdentity,
}

impl TlsMode {
    /// The mode when the job file sets none: the MySQL client's default.
    pub const DEFAULT: TlsMode = TlsMode::Preferred;

    /// Every mode with its name in the job file.
    const NAMED: [(&'static str, TlsMode); 5] = [
        ("disabled", TlsMode::Disabled),
        ("preferred", TlsMode::Preferred),
        ("required", TlsMode::Required),
        ("verify_ca", TlsMode::VerifyCa),
        ("verify_identity", TlsMode::VerifyIdentity),
    ];

    /// Its name in the job file.
    pub fn name(self) -> &'static str {
        Self::NAMED
            .iter()
            .find(|(_, mode)| *mode == self)
            .map(|(name, _)| *name)
            .expect("every mode is named")
    }

    /// Whether the server's certificate is checked against the CA.
    pub fn verifies(self) -> bool {
        matches!(self, TlsMode::VerifyCa | TlsMode::VerifyIdentity)
    }

    /// Whether a connection without TLS is refused.
    pub fn requires_tls(self) -> bool {
        matches!(
            self,
            TlsMode::Required | TlsMode::VerifyCa | TlsMode::VerifyIdentity
        )
    }
}

/// The TLS keys of a section, as the file sets them.
#[derive(Debug, Clone, Copy, Default)]
pub struct TlsKeys<'a> {
    /// `tls_mode`.
    pub mode: Option<&'a str>,
    /// `tls_ca_file`.
    pub ca_file: Option<&'a Path>,
    /// `tls_cert_file`.
    pub cert_file: Option<&'a Path>,
    /// `tls_key_file`.
    pub key_file: Option<&'a Path>,
}

impl TlsKeys<'_> {
    /// Whether any TLS key is set (an `[archive]` without url must set none).
    pub fn any(&self) -> bool {
        self.mode.is_some()
            || self.ca_file.is_some()
            || self.cert_file.is_some()
            || self.key_file.is_some()
    }
}

/// The TLS settings of one endpoint, checked. `Debug` shows the mode and the paths, never the
/// key.
#[derive(Clone)]
pub struct Tls {
    /// `tls_mode`, or [`TlsMode::DEFAULT`].
    pub mode: TlsMode,
    /// `tls_ca_file`, relative to the job file's directory unless absolute.
    pub ca_file: Option<PathBuf>,
    /// `tls_cert_file` and `tls_key_file`, likewise resolved.
    pub client_files: Option<(PathBuf, PathBuf)>,
    /// The files' contents as read with the job file, or why they cannot be used (the error a
    /// connection reports).
    material: Result<Material, String>,
}

/// The contents of the TLS files, read once with the job file.
#[derive(Clone)]
struct Material {
    /// The CA certificate(s), PEM.
    ca: Option<Vec<u8>>,
    /// The client certificate chain and its PKCS#1 RSA key, PEM.
    client: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("mode", &self.mode.name())
            .field("ca_file", &self.ca_file)
            .field(
                "client_cert_file",
                &self.client_files.as_ref().map(|c| &c.0),
            )
            .field("usable", &self.material.is_ok())
            .finish()
    }
}

/// One way of connecting: as configured, or one of the second attempts the modes call for
/// (made by `db::tls`, which knows when).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsAttempt<'a> {
    /// As `tls_mode` says.
    AsConfigured,
    /// Without TLS: `preferred` after the server said it offers none.
    Plain,
    /// `verify_ca` checking the certificate for this name, one the certificate itself
    /// presented, instead of the url's host: the chain is checked in full, the host is not.
    ServerName(&'a str),
}

impl Tls {
    /// The driver's TLS options for `attempt` (`None`: no TLS), or why the files cannot be
    /// used. `over_socket`: the url names a Unix socket, which TLS does not cover.
    pub fn ssl_opts(
        &self,
        attempt: TlsAttempt<'_>,
        over_socket: bool,
    ) -> Result<Option<SslOpts>, ConfigError> {
        if self.mode == TlsMode::Disabled || attempt == TlsAttempt::Plain || over_socket {
            return Ok(None);
        }
        let material = self
            .material
            .as_ref()
            .map_err(|why| ConfigError(why.clone()))?;
        let identity = material
            .client
            .as_ref()
            .map(|(cert, key)| ClientIdentity::new(cert.clone().into(), key.clone().into()));
        let mut opts = SslOpts::default().with_client_identity(identity);
        if let Some(ca) = &material.ca {
            // The CA named is the only one trusted: not the built-in web roots too.
            opts = opts
                .with_root_certs(vec![ca.clone().into()])
                .with_disable_built_in_roots(true);
        }
        opts = match self.mode {
            TlsMode::Disabled => return Ok(None),
            TlsMode::Preferred | TlsMode::Required => opts.with_danger_accept_invalid_certs(true),
            // The driver's own switch for this (honoured once it recognises rustls's current
            // name-mismatch error; see db::tls), and the name it is told to check otherwise.
            TlsMode::VerifyCa => match attempt {
                TlsAttempt::ServerName(name) => opts
                    .with_danger_skip_domain_validation(true)
                    .with_danger_tls_hostname_override(Some(name.to_string())),
                _ => opts.with_danger_skip_domain_validation(true),
            },
            TlsMode::VerifyIdentity => opts,
        };
        Ok(Some(opts))
    }
}

/// The TLS settings `[section]` configures, checked; `url` and `over_socket` say how the
/// connection is made, `base` is the job file's directory.
pub(super) fn tls(
    section: &str,
    keys: TlsKeys<'_>,
    url: &str,
    over_socket: bool,
    base: &Path,
) -> Result<Tls, ConfigError> {
    let mode = mode(section, keys.mode)?;
    check_keys(section, mode, keys)?;
    check_transport(section, mode, url, over_socket)?;
    let resolve = |path: &Path| {
        if path.is_relative() {
            base.join(path)
        } else {
            path.to_path_buf()
        }
    };
    let ca_file = keys.ca_file.map(resolve);
    let client_files = keys
        .cert_file
        .zip(keys.key_file)
        .map(|(c, k)| (resolve(c), resolve(k)));
    let material = read_material(section, ca_file.as_deref(), client_files.as_ref());
    Ok(Tls {
        mode,
        ca_file,
        client_files,
        material,
    })
}

/// `tls_mode`, or the default.
fn mode(section: &str, raw: Option<&str>) -> Result<TlsMode, ConfigError> {
    let Some(raw) = raw else {
        return Ok(TlsMode::DEFAULT);
    };
    match TlsMode::NAMED.iter().find(|(name, _)| *name == raw) {
        Some((_, mode)) => Ok(*mode),
        None => {
            let names: Vec<String> = TlsMode::NAMED
                .iter()
                .map(|(n, _)| format!("{n:?}"))
                .collect();
            err(format!(
                "[{section}] tls_mode = {raw:?} is not a TLS mode; use one of {}",
                names.join(", ")
            ))
        }
    }
}

/// The rules between the keys: what a mode needs, and the keys it would silently ignore.
fn check_keys(section: &str, mode: TlsMode, keys: TlsKeys<'_>) -> Result<(), ConfigError> {
    let name = mode.name();
    let how = if keys.mode.is_some() {
        ""
    } else {
        " (the default)"
    };
    if mode.verifies() && keys.ca_file.is_none() {
        return err(format!("[{section}] tls_mode = {name:?} needs tls_ca_file, the CA certificate (PEM) the server's certificate must be signed by; set it, or use tls_mode = \"required\" to encrypt without checking the certificate"));
    }
    if keys.ca_file.is_some() && !mode.verifies() {
        return err(format!("[{section}] tls_ca_file is set but tls_mode is {name:?}{how}, which does not check the server's certificate; set tls_mode = \"verify_identity\" (or \"verify_ca\") to check it against the CA, or remove tls_ca_file"));
    }
    match (keys.cert_file, keys.key_file) {
        (Some(_), None) => return err(format!("[{section}] tls_cert_file is set without tls_key_file; a client certificate needs its private key: set both, or neither")),
        (None, Some(_)) => return err(format!("[{section}] tls_key_file is set without tls_cert_file; a client key needs its certificate: set both, or neither")),
        _ => {}
    }
    if mode == TlsMode::Disabled && keys.cert_file.is_some() {
        return err(format!("[{section}] tls_mode = \"disabled\" but tls_cert_file is set; a client certificate is only sent over TLS: choose a tls_mode that uses TLS, or remove tls_cert_file and tls_key_file"));
    }
    Ok(())
}

/// A mode that needs TLS needs TCP: a url that names a Unix socket, or that asks to move to
/// the server's socket, is refused with it.
fn check_transport(
    section: &str,
    mode: TlsMode,
    url: &str,
    over_socket: bool,
) -> Result<(), ConfigError> {
    if !mode.requires_tls() {
        return Ok(());
    }
    let name = mode.name();
    if over_socket {
        return err(format!("[{section}] url connects through a Unix socket (socket=...), which TLS does not cover, but tls_mode = {name:?} needs TLS; connect over TCP (remove socket=), or set tls_mode = \"disabled\" for the socket"));
    }
    let prefers_socket = url
        .split_once('?')
        .map(|(_, query)| query)
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .any(|(key, value)| key == "prefer_socket" && value != "false");
    if prefers_socket {
        return err(format!("[{section}] url sets prefer_socket, which moves the connection to the server's Unix socket, leaving TLS behind, but tls_mode = {name:?} needs TLS; remove prefer_socket from the url"));
    }
    Ok(())
}

/// Permission bits of a private key file that let other users (not the owner, not its group)
/// read or change it; as for the password file.
const KEY_FILE_OTHERS_MODE: u32 = 0o007;

/// Reads and checks the files: the CA and the client certificate hold PEM certificates, the
/// key is a PKCS#1 RSA key (the one form the driver reads) that other users cannot read.
fn read_material(
    section: &str,
    ca_file: Option<&Path>,
    client_files: Option<&(PathBuf, PathBuf)>,
) -> Result<Material, String> {
    let ca = match ca_file {
        Some(path) => Some(certificates(section, "tls_ca_file", path, true)?),
        None => None,
    };
    let client = match client_files {
        Some((cert, key)) => Some((
            certificates(section, "tls_cert_file", cert, false)?,
            private_key(section, key)?,
        )),
        None => None,
    };
    Ok(Material { ca, client })
}

/// The bytes of `path`, or a message naming the key and the file.
fn read(section: &str, key: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path)
        .map_err(|e| format!("[{section}] cannot read {key} {}: {e}", path.display()))
}

/// A PEM file of certificates; `anchors`: each must also be usable as a trust anchor (a CA).
fn certificates(section: &str, key: &str, path: &Path, anchors: bool) -> Result<Vec<u8>, String> {
    let bytes = read(section, key, path)?;
    let shown = path.display();
    let mut roots = rustls::RootCertStore::empty();
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        let cert = cert.map_err(|e| format!("[{section}] {key} {shown} is not valid PEM: {e}"))?;
        if anchors {
            roots.add(cert).map_err(|e| {
                format!("[{section}] {key} {shown} holds a certificate that cannot be a CA: {e}")
            })?;
        }
        count += 1;
    }
    if count == 0 {
        return Err(format!("[{section}] {key} {shown} holds no PEM certificate (a -----BEGIN CERTIFICATE----- block)"));
    }
    Ok(bytes)
}

/// A PEM file whose first private key is PKCS#1 RSA ("BEGIN RSA PRIVATE KEY"), not readable
/// by other users.
fn private_key(section: &str, path: &Path) -> Result<Vec<u8>, String> {
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display();
    let mode = std::fs::metadata(path)
        .map_err(|e| format!("[{section}] cannot read tls_key_file {shown}: {e}"))?
        .permissions()
        .mode();
    if mode & KEY_FILE_OTHERS_MODE != 0 {
        return Err(format!(
            "[{section}] tls_key_file {shown} can be read or changed by every user of this machine (mode {:04o}); make it the owner's only: chmod 600 {shown}",
            mode & 0o7777
        ));
    }
    let bytes = read(section, "tls_key_file", path)?;
    let first_key = <(SectionKind, Vec<u8>)>::pem_slice_iter(&bytes)
        .map(|section| section.map(|(kind, _)| kind))
        .find(|kind| {
            !matches!(
                kind,
                Ok(SectionKind::Certificate | SectionKind::PublicKey | SectionKind::Csr)
            )
        });
    match first_key {
        Some(Ok(SectionKind::RsaPrivateKey)) => Ok(bytes),
        Some(Ok(SectionKind::PrivateKey)) => Err(format!("[{section}] tls_key_file {shown} holds a PKCS#8 key (BEGIN PRIVATE KEY); archiver reads RSA keys in PKCS#1 form (BEGIN RSA PRIVATE KEY): convert it with openssl rsa -in {shown} -traditional -out KEY.pem and name that file")),
        Some(Ok(SectionKind::EcPrivateKey)) => Err(format!("[{section}] tls_key_file {shown} holds an EC key; archiver's TLS library takes RSA client keys only: issue the client certificate for an RSA key")),
        Some(Err(e)) => Err(format!("[{section}] tls_key_file {shown} is not valid PEM: {e}")),
        _ => Err(format!("[{section}] tls_key_file {shown} holds no private key (a -----BEGIN RSA PRIVATE KEY----- block; an encrypted key must be decrypted first)")),
    }
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
