//! Mutual TLS for the QUIC endpoints: both sides present a certificate
//! signed by the site's CA (see [`super::certs`]), and each may further
//! restrict which peer names it talks to.
//!
//! One crypto provider, ring, is used explicitly everywhere (rustls would
//! otherwise pick one from its cargo features at run time).

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// ALPN protocol name: a peer speaking anything else is refused during the
/// TLS handshake.
pub const ALPN: &[u8] = b"ferry";

/// Where an agent's TLS material lives (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA certificate that signs every agent of the site.
    pub ca: PathBuf,
    /// This agent's certificate chain (its own certificate first).
    pub cert: PathBuf,
    /// This agent's private key.
    pub key: PathBuf,
}

/// Why the TLS configuration could not be built from the PEM files.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// A PEM file is missing, unreadable or holds nothing usable.
    #[error("could not load the {what} from {path}: {reason}")]
    Pem {
        /// CA certificate, certificate chain or private key.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The parser's or system's reason.
        reason: String,
    },
    /// rustls refused the material (e.g. a key that does not match the
    /// certificate, or a CA certificate it cannot use as a trust anchor).
    #[error("the TLS configuration is unusable: {0}")]
    Rustls(String),
}

/// The peer's certificate did not name a peer this agent accepts.
#[derive(Debug, thiserror::Error)]
pub enum PeerNameError {
    /// QUIC completed without a client certificate (cannot happen with the
    /// verifier used, checked all the same).
    #[error("peer {peer} presented no certificate")]
    NoCertificate {
        /// The peer's address.
        peer: SocketAddr,
    },
    /// The certificate could not be parsed for its names.
    #[error("peer {peer} presented a certificate whose names cannot be read: {reason}")]
    Unparsable {
        /// The peer's address.
        peer: SocketAddr,
        /// webpki's reason.
        reason: String,
    },
    /// The certificate is valid but names none of the allowed peers.
    #[error("peer {peer} is not allowed: its certificate names {names:?}, none of which is in the allowed peers {allowed:?}")]
    NotAllowed {
        /// The peer's address.
        peer: SocketAddr,
        /// The DNS names in the peer's certificate.
        names: Vec<String>,
        /// The configured allow-list.
        allowed: Vec<String>,
    },
    /// The Hello names an agent the certificate is not valid for.
    #[error("peer {peer} calls itself {agent:?} in its Hello, but its certificate names {names:?}; a peer may only speak as a name its certificate carries")]
    AgentName {
        /// The peer's address.
        peer: SocketAddr,
        /// The agent name in its Hello.
        agent: String,
        /// The DNS names in the peer's certificate.
        names: Vec<String>,
    },
}

/// The rustls configurations of one endpoint, for both directions.
pub(crate) struct TlsConfigs {
    pub(crate) server: quinn::ServerConfig,
    pub(crate) client: quinn::ClientConfig,
}

fn pem_err(what: &'static str, path: &Path, reason: impl ToString) -> TlsSetupError {
    TlsSetupError::Pem {
        what,
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn load_certs(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_err(what, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(what, path, e))?;
    if certs.is_empty() {
        return Err(pem_err(what, path, "the file holds no CERTIFICATE block"));
    }
    Ok(certs)
}

fn rustls_err(e: impl ToString) -> TlsSetupError {
    TlsSetupError::Rustls(e.to_string())
}

/// The plain rustls configurations of an agent: what QUIC uses, also
/// usable over TCP (the transport benchmark compares the two).
pub struct RustlsConfigs {
    /// Requires a client certificate signed by the CA.
    pub server: Arc<rustls::ServerConfig>,
    /// Verifies the server against the CA and presents the agent's
    /// certificate.
    pub client: Arc<rustls::ClientConfig>,
}

/// Loads the PEM files and builds the server side (which requires a client
/// certificate signed by the CA) and the client side (which verifies the
/// server against the same CA and presents the same certificate), TLS 1.3
/// only, with the ring provider.
pub fn rustls_configs(files: &TlsFiles) -> Result<RustlsConfigs, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for ca in load_certs("CA certificate", &files.ca)? {
        roots
            .add(ca)
            .map_err(|e| pem_err("CA certificate", &files.ca, e))?;
    }
    let roots = Arc::new(roots);
    let chain = load_certs("certificate chain", &files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| pem_err("private key", &files.key, e))?;

    let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(rustls_err)?;
    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(rustls_err)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(rustls_err)?;
    server.alpn_protocols = vec![ALPN.to_vec()];
    server.max_early_data_size = 0;

    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(rustls_err)?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(rustls_err)?;
    client.alpn_protocols = vec![ALPN.to_vec()];
    Ok(RustlsConfigs {
        server: Arc::new(server),
        client: Arc::new(client),
    })
}

/// The QUIC configurations built on [`rustls_configs`].
pub(crate) fn load(files: &TlsFiles) -> Result<TlsConfigs, TlsSetupError> {
    let configs = rustls_configs(files)?;
    let server = QuicServerConfig::try_from(configs.server).map_err(rustls_err)?;
    let client = QuicClientConfig::try_from(configs.client).map_err(rustls_err)?;
    Ok(TlsConfigs {
        server: quinn::ServerConfig::with_crypto(Arc::new(server)),
        client: quinn::ClientConfig::new(Arc::new(client)),
    })
}

/// The peer's end-entity certificate, parsed for its names.
fn peer_certificate(conn: &quinn::Connection) -> Result<CertificateDer<'static>, PeerNameError> {
    let peer = conn.remote_address();
    conn.peer_identity()
        .and_then(|id| id.downcast::<Vec<CertificateDer<'static>>>().ok())
        .and_then(|certs| certs.first().cloned())
        .ok_or(PeerNameError::NoCertificate { peer })
}

/// Whether `cert` is valid for `name`, and the DNS names it carries.
fn valid_for(
    peer: SocketAddr,
    cert: &CertificateDer<'static>,
    names: &[String],
) -> Result<(bool, Vec<String>), PeerNameError> {
    let cert = webpki::EndEntityCert::try_from(cert).map_err(|e| PeerNameError::Unparsable {
        peer,
        reason: e.to_string(),
    })?;
    let ok = names.iter().any(|name| {
        ServerName::try_from(name.as_str())
            .is_ok_and(|name| cert.verify_is_valid_for_subject_name(&name).is_ok())
    });
    Ok((ok, cert.valid_dns_names().map(str::to_string).collect()))
}

/// When the certificate the peer presented in the handshake of `conn`
/// expires; the error says why that is unknown.
pub(crate) fn peer_certificate_expiry(
    conn: &quinn::Connection,
) -> Result<std::time::SystemTime, String> {
    let cert = peer_certificate(conn).map_err(|e| e.to_string())?;
    super::certs::der_expiry(&cert)
}

/// Checks, after the handshake, that the peer's certificate is valid for at
/// least one of the `allowed` names (no allow-list: every certificate the
/// CA signed is accepted).
pub(crate) fn check_peer_name(
    conn: &quinn::Connection,
    allowed: Option<&[String]>,
) -> Result<(), PeerNameError> {
    let Some(allowed) = allowed else {
        return Ok(());
    };
    let peer = conn.remote_address();
    let (ok, names) = valid_for(peer, &peer_certificate(conn)?, allowed)?;
    if ok {
        return Ok(());
    }
    Err(PeerNameError::NotAllowed {
        peer,
        names,
        allowed: allowed.to_vec(),
    })
}

/// Checks that the agent name a peer announces in its Hello is one its
/// certificate is valid for: the name is what a post-copy resume is
/// authorised by, so a peer must not speak for another agent.
pub(crate) fn check_agent_name(conn: &quinn::Connection, agent: &str) -> Result<(), PeerNameError> {
    let peer = conn.remote_address();
    let (ok, names) = valid_for(peer, &peer_certificate(conn)?, &[agent.to_string()])?;
    if ok {
        return Ok(());
    }
    Err(PeerNameError::AgentName {
        peer,
        agent: agent.to_string(),
        names,
    })
}
