//! Why binding an endpoint or opening a session failed. Both sides of the
//! handshake share one error type, [`HandshakeError`]: the failures they
//! have in common (QUIC or TLS, the peer's name, sending, receiving, the
//! version, a step timing out) are written once, and [`Role`] words them
//! for the side that reports them.

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

/// Which end of the handshake reports a [`HandshakeError`]: the same
/// failure reads "could not connect to" on one and "refused a connection
/// from" on the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// This agent opens the session
    /// ([`Transport::connect`](super::Transport::connect)).
    Connecting,
    /// A peer opens it ([`Transport::accept`](super::Transport::accept)).
    Accepting,
}

impl Role {
    /// The text of [`HandshakeError::Connection`].
    fn connection_failed(self, peer: &SocketAddr, reason: &str) -> String {
        match self {
            Role::Connecting => format!("could not connect to {peer}: {reason}"),
            Role::Accepting => format!("refused a connection from {peer}: {reason}"),
        }
    }

    /// The text of [`HandshakeError::Timeout`].
    fn timed_out(self, peer: &SocketAddr, step: &str) -> String {
        match self {
            Role::Connecting => {
                format!("peer {peer} did not answer within {HANDSHAKE_TIMEOUT:?} while {step}")
            }
            Role::Accepting => {
                format!("peer {peer} did not finish {step} within {HANDSHAKE_TIMEOUT:?}")
            }
        }
    }
}

/// Why opening a session failed, on either side. After a failed accept
/// the endpoint stays usable: call accept again for the next peer.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// QUIC or TLS failed (unreachable, certificate not trusted, wrong
    /// server name, a client certificate from another CA, closed by the
    /// peer with a reason...).
    #[error("{}", .role.connection_failed(.peer, .reason))]
    Connection {
        /// The side reporting it.
        role: Role,
        /// The peer's address.
        peer: SocketAddr,
        /// quinn's or rustls's reason.
        reason: String,
    },
    /// The peer's certificate names no allowed peer.
    #[error(transparent)]
    PeerName(#[from] PeerNameError),
    /// Sending the Hello, its answer or a Join failed.
    #[error(transparent)]
    Send(#[from] SendError),
    /// Reading the Hello or its answer failed (malformed, too large, or
    /// the peer closed).
    #[error(transparent)]
    Recv(#[from] RecvError),
    /// The peer's Hello has another magic or protocol version (when
    /// accepting, the peer was sent Refused with this reason).
    #[error(transparent)]
    Version(#[from] VersionMismatch),
    /// A step did not finish within [`HANDSHAKE_TIMEOUT`].
    #[error("{}", .role.timed_out(.peer, .step))]
    Timeout {
        /// The side reporting it.
        role: Role,
        /// The peer's address.
        peer: SocketAddr,
        /// The step.
        step: &'static str,
    },
    /// Connecting: the peer refused the session and said why.
    #[error("peer {peer} refused the session: {reason}")]
    Refused {
        /// The peer's address.
        peer: SocketAddr,
        /// The peer's reason.
        reason: String,
    },
    /// Accepting: the peer asked for an unacceptable number of bulk
    /// connections.
    #[error("peer {peer} asked for {count} bulk connections; 1 to {MAX_BULK_CONNECTIONS} allowed")]
    BulkConnections {
        /// The peer's address.
        peer: SocketAddr,
        /// The requested count.
        count: u32,
    },
    /// Accepting: the peer agent already has as many sessions open or
    /// opening here as one peer may.
    #[error("peer {peer} ({agent}) already has {sessions} sessions open or opening here, the most one peer may have; refused")]
    TooManySessions {
        /// The peer's address.
        peer: SocketAddr,
        /// The peer's agent name.
        agent: String,
        /// Its sessions open or opening.
        sessions: usize,
    },
    /// Accepting: as many connections are in their handshake as this
    /// agent serves at once, from this address or from all.
    #[error("refused a connection from {peer}: {handshakes} connections {scope} are in their handshake already, the most this agent serves at once")]
    TooManyHandshakes {
        /// The peer's address.
        peer: SocketAddr,
        /// Handshakes in progress.
        handshakes: usize,
        /// "from that address" or "from all peers".
        scope: &'static str,
    },
    /// Accepting: the endpoint was closed.
    #[error("the endpoint was closed")]
    Closed,
}

impl HandshakeError {
    /// A [`HandshakeError::Connection`] with quinn's or rustls's reason.
    pub(super) fn connection(role: Role, peer: SocketAddr, reason: impl std::fmt::Display) -> Self {
        HandshakeError::Connection {
            role,
            peer,
            reason: reason.to_string(),
        }
    }

    /// A [`HandshakeError::Timeout`] of `step`.
    pub(super) fn timeout(role: Role, peer: SocketAddr, step: &'static str) -> Self {
        HandshakeError::Timeout { role, peer, step }
    }
}

/// Why [`Transport::connect`](super::Transport::connect) failed: a
/// [`HandshakeError`] of [`Role::Connecting`].
pub type ConnectError = HandshakeError;

/// Why [`Transport::accept`](super::Transport::accept) failed for one
/// incoming peer: a [`HandshakeError`] of [`Role::Accepting`].
pub type AcceptError = HandshakeError;

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
