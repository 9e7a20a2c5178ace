//! ferry's transport between two agents: QUIC (quinn) with mutual TLS
//! (rustls with ring, certificates from [`certs`]).
//!
//! A [`Transport`] is one UDP endpoint that both accepts and opens
//! [`Session`]s. A session is one control stream (a bidirectional stream
//! carrying postcard messages, see [`frame`]) plus several bulk QUIC
//! connections for page streams ([`pages`]): one connection is served by
//! one CPU, so page streams are spread over `bulk_connections` of them.
//!
//! Opening a session: the client opens the control connection and sends
//! `Hello{magic, protocol version, agent name, session id, bulk count}`;
//! the server answers with its own Hello, or with `Refused{reason}` before
//! closing (a version mismatch is thus reported with its reason on both
//! sides). The client then opens the bulk connections, each announcing
//! `Join{session id, index}`.
//!
//! Files: `settings` (what an endpoint is given, as plain values: the
//! agent's configuration file is `config`'s business), `hello` (the
//! handshake's messages and bounds), `limits` (what one peer may hold
//! on an accepting agent at once), `endpoint` ([`Transport`]: bind,
//! connect, accept), `session` ([`Session`]: control stream and page
//! streams), `error` (why binding or a handshake failed), and the wire formats in
//! [`frame`] and [`pages`].

pub mod certs;
mod endpoint;
mod error;
pub mod frame;
mod hello;
mod limits;
pub mod pages;
mod session;
mod settings;
pub mod tls;

pub use endpoint::Transport;
pub use error::{AcceptError, BindError, ConnectError, HandshakeError, Role, VersionMismatch};
pub use frame::{
    read_bounded, read_message, write_message, PageHeader, RecvError, SendError, MAX_FRAME_PAGES,
};
#[cfg(fuzzing)]
pub(crate) use hello::{Opener, Reply, MAX_OPENER_LEN};
pub use hello::{HANDSHAKE_TIMEOUT, HELLO_MAGIC};
pub use limits::MAX_SESSIONS_PER_PEER;
pub use pages::{PageFrame, PageReceiver, PageSender};
pub use session::{ControlReceiver, ControlSender, IncomingPages, OpenPagesError, Session};
pub use settings::{Settings, DEFAULT_BULK_CONNECTIONS, MAX_BULK_CONNECTIONS};
pub use tls::{PeerNameError, TlsFiles, TlsSetupError};

/// The protocol version this build speaks; peers must speak the same.
/// It goes up with every wire change from now on (a message variant added,
/// removed, reordered or changed, in src/migration/protocol.rs or in the
/// frames): the unit test in protocol.rs pins the bytes of every message
/// variant and fails until it is raised and the new bytes pinned.
/// 2: sessions open with an `Opening` that chooses the conversation
/// (migration, dry-run probe, post-copy resume), each with its own
/// message enums; rootfs sync has its own; the checkpoint it carries is
/// the model of image format 4.
/// 3: the checkpoint is the model of image format 5 (TCP connections,
/// UDP peers and queues, unix socket state, pidfds, fd owners, the
/// network lock and its flows, shared fd tables); the offer carries the
/// tree's TCP connections.
/// 4: image format 6. 5: image format 7; the container offer carries a
/// Docker container's spec.
/// 6: the checkpoint is the model of image format 8 (cgroup membership,
/// pseudo-terminal pairs and fanotify groups, copy-on-write sharing with
/// the parent, private mappings of shared objects, packet rings, the TCP
/// states LAST_ACK, CLOSING, closed and reset).
/// 7: image format 9 (a plain tree's network namespace, SYN_SENT
/// connections); the pre-copy switch-over is a two-phase commit
/// (`ToSource::Prepared`, `ToDestination::Commit`, `Opening::Outcome`
/// answered with a `Verdict`).
pub const PROTOCOL_VERSION: u32 = 7;
