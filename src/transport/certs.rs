//! Certificates for ferry's mutual TLS: a private certificate authority per
//! site and one host certificate per agent, signed by it.
//!
//! Agents trust only their site's CA (never the system's web roots), and
//! name each other by the DNS name in the host certificate, so an operator
//! needs nothing but these files: `migrate-agent certs init` makes the CA,
//! `migrate-agent certs issue` a host certificate.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// File name of the CA certificate in a CA directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the CA's private key in a CA directory (mode 0600).
pub const CA_KEY_FILE: &str = "ca.key";
/// File name of a host certificate in an issued directory.
pub const CERT_FILE: &str = "cert.pem";
/// File name of a host's private key in an issued directory (mode 0600).
pub const KEY_FILE: &str = "key.pem";

/// Why making, issuing or writing a certificate failed.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen refused the parameters or a key.
    #[error("could not {what}: {source}")]
    Generate {
        /// What was being made.
        what: String,
        /// rcgen's reason.
        #[source]
        source: rcgen::Error,
    },
    /// A file could not be read or written.
    #[error("could not {what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The system's reason.
        #[source]
        source: std::io::Error,
    },
    /// A certificate could not be parsed to read its validity.
    #[error("could not parse the certificate {what}: {reason}")]
    Parse {
        /// The certificate: its file, or the peer that sent it.
        what: String,
        /// The parser's reason.
        reason: String,
    },
    /// A file that would be overwritten already exists.
    #[error("{path} already exists; refusing to overwrite a certificate or key")]
    Exists {
        /// The file.
        path: PathBuf,
    },
}

/// Paths of the files written by [`init_ca`] or [`issue`].
#[derive(Debug, Clone)]
pub struct WrittenFiles {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, mode 0600).
    pub key: PathBuf,
}

fn gen_err(what: impl Into<String>) -> impl FnOnce(rcgen::Error) -> CertError {
    let what = what.into();
    move |source| CertError::Generate { what, source }
}

/// Creates a new certificate authority in `dir` (created if missing):
/// [`CA_CERT_FILE`] and [`CA_KEY_FILE`]. Refuses to overwrite existing files,
/// since replacing a CA silently would cut every agent off.
pub fn init_ca(dir: &Path, common_name: &str) -> Result<WrittenFiles, CertError> {
    let mut params =
        CertificateParams::new(Vec::<String>::new()).map_err(gen_err("make CA parameters"))?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().map_err(gen_err("generate the CA key"))?;
    let cert = params
        .self_signed(&key)
        .map_err(gen_err("self-sign the CA certificate"))?;
    write_pair(
        dir,
        CA_CERT_FILE,
        &cert.pem(),
        CA_KEY_FILE,
        &key.serialize_pem(),
    )
}

/// Days a host certificate is valid for when `certs issue` is not given
/// `--days`: a year, so that renewal is a yearly routine `check` and
/// `status` warn about ([`EXPIRY_WARNING`] ahead).
pub const DEFAULT_VALIDITY_DAYS: u32 = 365;

/// How long before a certificate expires `check` and `status` warn.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 86_400);

/// [`issue_for_days`] for [`DEFAULT_VALIDITY_DAYS`].
pub fn issue(
    ca_dir: &Path,
    name: &str,
    ip: Option<IpAddr>,
    out: &Path,
) -> Result<WrittenFiles, CertError> {
    issue_for_days(ca_dir, name, ip, DEFAULT_VALIDITY_DAYS, out)
}

/// Issues a host certificate for `name` (DNS SAN, and an IP SAN when `ip` is
/// given), valid for both TLS client and server use from now for `days`
/// days, signed by the CA in `ca_dir`; writes [`CERT_FILE`] and
/// [`KEY_FILE`] into `out` (created if missing), refusing to overwrite.
pub fn issue_for_days(
    ca_dir: &Path,
    name: &str,
    ip: Option<IpAddr>,
    days: u32,
    out: &Path,
) -> Result<WrittenFiles, CertError> {
    let ca_cert_path = ca_dir.join(CA_CERT_FILE);
    let ca_key_path = ca_dir.join(CA_KEY_FILE);
    let ca_pem = read(&ca_cert_path)?;
    let ca_key_pem = read(&ca_key_path)?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(gen_err(format!(
        "parse the CA key {}",
        ca_key_path.display()
    )))?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).map_err(gen_err(format!(
        "parse the CA certificate {}",
        ca_cert_path.display()
    )))?;

    let mut params = CertificateParams::new(vec![name.to_string()])
        .map_err(gen_err(format!("use {name:?} as a DNS name")))?;
    if let Some(ip) = ip {
        params.subject_alt_names.push(SanType::IpAddress(ip));
    }
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    let now = SystemTime::now();
    // Valid from an hour ago: a peer whose clock is a little behind this
    // machine's still accepts a certificate issued a moment ago.
    params.not_before = (now - Duration::from_secs(3600)).into();
    params.not_after = (now + Duration::from_secs(u64::from(days) * 86_400)).into();
    let key = KeyPair::generate().map_err(gen_err("generate the host key"))?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(gen_err(format!("sign the certificate for {name}")))?;
    write_pair(out, CERT_FILE, &cert.pem(), KEY_FILE, &key.serialize_pem())
}

/// When the first certificate of the PEM file `path` expires (its
/// notAfter).
pub fn pem_file_expiry(path: &Path) -> Result<SystemTime, CertError> {
    let pem = read(path)?;
    let parse_err = |reason: String| CertError::Parse {
        what: path.display().to_string(),
        reason,
    };
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| parse_err(e.to_string()))?;
    der_expiry(&pem.contents).map_err(parse_err)
}

/// When the DER certificate `der` (a peer's, from its TLS handshake)
/// expires; the error is the parser's reason.
pub fn der_expiry(der: &[u8]) -> Result<SystemTime, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let secs = cert.validity().not_after.timestamp();
    Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64))
}

fn read(path: &Path) -> Result<String, CertError> {
    fs::read_to_string(path).map_err(|source| CertError::Io {
        what: "read",
        path: path.to_path_buf(),
        source,
    })
}

fn write_pair(
    dir: &Path,
    cert_name: &str,
    cert_pem: &str,
    key_name: &str,
    key_pem: &str,
) -> Result<WrittenFiles, CertError> {
    fs::create_dir_all(dir).map_err(|source| CertError::Io {
        what: "create the directory",
        path: dir.to_path_buf(),
        source,
    })?;
    let files = WrittenFiles {
        cert: dir.join(cert_name),
        key: dir.join(key_name),
    };
    for path in [&files.cert, &files.key] {
        if path.exists() {
            return Err(CertError::Exists { path: path.clone() });
        }
    }
    // The key first, created 0600 so it is never readable by others.
    write_new(&files.key, key_pem, 0o600)?;
    write_new(&files.cert, cert_pem, 0o644)?;
    Ok(files)
}

fn write_new(path: &Path, text: &str, mode: u32) -> Result<(), CertError> {
    let io = |source| CertError::Io {
        what: "write",
        path: path.to_path_buf(),
        source,
    };
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}
