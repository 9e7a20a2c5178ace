//! What an endpoint is configured with, as plain values: the transport
//! knows nothing of the agent's configuration file (`config` builds a
//! [`Settings`] from it).

use super::tls::TlsFiles;
use std::net::SocketAddr;

/// Bulk connections per session when the configuration says nothing.
pub const DEFAULT_BULK_CONNECTIONS: usize = 2;
/// Most bulk connections a peer may ask for in one session.
pub const MAX_BULK_CONNECTIONS: usize = 16;

/// What one endpoint needs: where to listen, who it is, its TLS files and
/// whom it accepts.
#[derive(Debug, Clone)]
pub struct Settings {
    /// UDP address to bind (port 0: any free port).
    pub listen: SocketAddr,
    /// This agent's name, sent in Hello (normally its certificate's name).
    pub agent_name: String,
    /// CA, certificate and key files.
    pub tls: TlsFiles,
    /// When set, a peer whose certificate names none of these is refused
    /// after the TLS handshake, on both the accepting and opening side.
    pub allowed_peers: Option<Vec<String>>,
    /// Bulk connections opened per session by
    /// [`Transport::connect`](super::Transport::connect).
    pub bulk_connections: usize,
    /// The protocol version announced:
    /// [`PROTOCOL_VERSION`](super::PROTOCOL_VERSION), except in tests that
    /// check how a mismatch is refused.
    pub protocol_version: u32,
}
