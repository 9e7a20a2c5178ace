//! Why binding an endpoint or opening a session failed.

use super::frame::{RecvError, SendError};
use super::hello::{Hello, HANDSHAKE_TIMEOUT, HELLO_MAGIC};
use super::settings::MAX_BULK_CONNECTIONS;
use super::tls::{PeerNameError, TlsSetupError};
use std::net::SocketAddr;

/// Why [`Transport::bind`](super::Transport::bind) failed.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// The TLS files are unusable.
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    /// bulk_connections is out of range.
    #[error("bulk_connections is {0}; it must be 1 to {MAX_BULK_CONNECTIONS}")]
    BulkConnections(usize),
    /// The UDP socket could not be bound or configured.
    #[error("could not bind the UDP socket {addr}: {source}")]
    Socket {
        /// The listen address.
        addr: SocketAddr,
        /// The system's reason.
        #[source]
        source: std::io::Error,
    },
}

/// Why [`Transport::connect`](super::Transport::connect) failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// QUIC or TLS failed (unreachable, certificate not trusted, wrong
    /// server name, closed by the peer with a reason...).
    #[error("could not connect to {peer}: {reason}")]
    Connection {
        /// The peer's address.
        peer: SocketAddr,
        /// quinn's or rustls's reason.
        reason: String,
    },
    /// The peer's certificate names no allowed peer.
    #[error(transparent)]
    PeerName(#[from] PeerNameError),
    /// Sending the Hello or a Join failed.
    #[error(transparent)]
    Send(#[from] SendError),
    /// Reading the answer failed (it is malformed, or the peer closed).
    #[error(transparent)]
    Recv(#[from] RecvError),
    /// The peer refused the session and said why.
    #[error("peer {peer} refused the session: {reason}")]
    Refused {
        /// The peer's address.
        peer: SocketAddr,
        /// The peer's reason.
        reason: String,
    },
    /// The peer answered with another magic or protocol version.
    #[error(transparent)]
    Version(#[from] VersionMismatch),
    /// A step did not finish within [`HANDSHAKE_TIMEOUT`].
    #[error("peer {peer} did not answer within {HANDSHAKE_TIMEOUT:?} while {step}")]
    Timeout {
        /// The peer's address.
        peer: SocketAddr,
        /// The step.
        step: &'static str,
    },
}

/// Why [`Transport::accept`](super::Transport::accept) failed for one incoming peer. The endpoint
/// stays usable: call accept again for the next peer.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// The QUIC or TLS handshake failed (e.g. a client certificate from
    /// another CA).
    #[error("refused a connection from {peer}: {reason}")]
    Connection {
        /// The peer's address.
        peer: SocketAddr,
        /// quinn's or rustls's reason.
        reason: String,
    },
    /// The peer's certificate names no allowed peer.
    #[error(transparent)]
    PeerName(#[from] PeerNameError),
    /// Reading the Hello failed (malformed, too large, closed).
    #[error(transparent)]
    Recv(#[from] RecvError),
    /// Answering the Hello failed.
    #[error(transparent)]
    Send(#[from] SendError),
    /// The peer's Hello has another magic or protocol version (it was sent
    /// Refused with this reason).
    #[error(transparent)]
    Version(#[from] VersionMismatch),
    /// The peer asked for an unacceptable number of bulk connections.
    #[error("peer {peer} asked for {count} bulk connections; 1 to {MAX_BULK_CONNECTIONS} allowed")]
    BulkConnections {
        /// The peer's address.
        peer: SocketAddr,
        /// The requested count.
        count: u32,
    },
    /// A step did not finish within [`HANDSHAKE_TIMEOUT`].
    #[error("peer {peer} did not finish {step} within {HANDSHAKE_TIMEOUT:?}")]
    Timeout {
        /// The peer's address.
        peer: SocketAddr,
        /// The step.
        step: &'static str,
    },
    /// The endpoint was closed.
    #[error("the endpoint was closed")]
    Closed,
}

/// The two agents speak different protocols: each side checks the other's
/// Hello, so both can say which versions met.
#[derive(Debug, thiserror::Error)]
#[error("peer {peer} ({agent}) speaks protocol version {theirs} (magic {magic:#010x}); this agent speaks version {ours}")]
pub struct VersionMismatch {
    /// The peer's address.
    pub peer: SocketAddr,
    /// The peer's agent name.
    pub agent: String,
    /// The peer's magic.
    pub magic: u32,
    /// The peer's version.
    pub theirs: u32,
    /// This side's version.
    pub ours: u32,
}

impl VersionMismatch {
    /// Checks the peer's Hello against this agent's magic and version.
    pub(super) fn check(peer: SocketAddr, hello: &Hello, ours: u32) -> Result<(), Self> {
        if hello.magic == HELLO_MAGIC && hello.version == ours {
            return Ok(());
        }
        Err(Self {
            peer,
            agent: hello.agent.clone(),
            magic: hello.magic,
            theirs: hello.version,
            ours,
        })
    }
}
