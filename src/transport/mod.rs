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

pub mod certs;
pub mod frame;
pub mod pages;
pub mod tls;

pub use frame::{read_message, write_message, PageHeader, RecvError, SendError, MAX_FRAME_PAGES};
pub use pages::{PageFrame, PageReceiver, PageSender};
pub use tls::{PeerNameError, TlsFiles, TlsSetupError};

use crate::config::AgentConfig;
use quinn::{Connection, Endpoint, RecvStream, SendStream, VarInt};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::future::Future;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The protocol version this build speaks; peers must speak the same.
/// It goes up with every wire change from now on (a message variant added,
/// removed, reordered or changed, in src/migration/protocol.rs or in the
/// frames): the unit test in protocol.rs pins the bytes of every message
/// variant and fails until it is raised and the new bytes pinned.
/// 2: sessions open with an `Opening` that chooses the conversation
/// (migration, dry-run probe, post-copy resume), each with its own
/// message enums; rootfs sync has its own.
pub const PROTOCOL_VERSION: u32 = 2;
/// First field of every Hello: "FERY".
pub const HELLO_MAGIC: u32 = u32::from_le_bytes(*b"FERY");
/// Bulk connections per session when the configuration says nothing.
pub const DEFAULT_BULK_CONNECTIONS: usize = 2;
/// Most bulk connections a peer may ask for in one session.
pub const MAX_BULK_CONNECTIONS: usize = 16;
/// Each step of opening a session (TLS, Hello, each Join) must finish
/// within this time, so a silent peer cannot hang an agent.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// UDP socket buffers asked for (with SO_SNDBUFFORCE/SO_RCVBUFFORCE when
/// CAP_NET_ADMIN allows): quinn loses packets with the 208 KiB default.
const SOCKET_BUFFER: usize = 8 << 20;
/// Per-stream flow-control window.
const STREAM_WINDOW: u32 = 16 << 20;
/// Per-connection flow-control window.
const CONNECTION_WINDOW: u32 = 64 << 20;
/// Highest MTU probed: quinn sends up to 10 GSO segments per sendmsg and
/// segments x MTU must stay under 64 KiB, or the send fails silently and
/// the MTU collapses.
const MTU_UPPER_BOUND: u16 = 6000;
/// A peer silent this long is gone: short, because a workload may be
/// frozen waiting on it (keep-alives keep a slow but live peer).
const IDLE_TIMEOUT_MS: u32 = 5_000;
/// Keep-alive interval, well under [`IDLE_TIMEOUT_MS`].
const KEEP_ALIVE: Duration = Duration::from_secs(1);
/// QUIC application close code for a refusal (reason in the close frame).
const CLOSE_REFUSED: u32 = 1;
/// QUIC application close code for a normal end of session.
const CLOSE_DONE: u32 = 0;

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
    /// Bulk connections opened per session by [`Transport::connect`].
    pub bulk_connections: usize,
    /// The protocol version announced: [`PROTOCOL_VERSION`], except in
    /// tests that check how a mismatch is refused.
    pub protocol_version: u32,
}

impl Settings {
    /// The transport part of an agent's configuration file.
    pub fn from_config(config: &AgentConfig) -> Self {
        Settings {
            listen: config.listen,
            agent_name: config.name.clone(),
            tls: TlsFiles {
                ca: config.ca.clone(),
                cert: config.cert.clone(),
                key: config.key.clone(),
            },
            allowed_peers: config.allowed_peers.clone(),
            bulk_connections: config.bulk_connections,
            protocol_version: PROTOCOL_VERSION,
        }
    }
}

/// Why [`Transport::bind`] failed.
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

/// Why [`Transport::connect`] failed.
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

/// Why [`Transport::accept`] failed for one incoming peer. The endpoint
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
    fn check(peer: SocketAddr, hello: &Hello, ours: u32) -> Result<(), Self> {
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

/// Why [`Session::open_pages`] failed.
#[derive(Debug, thiserror::Error)]
#[error("could not open a page stream to {peer}: {source}")]
pub struct OpenPagesError {
    /// The peer's address.
    pub peer: SocketAddr,
    /// quinn's reason (the connection is gone).
    #[source]
    pub source: quinn::ConnectionError,
}

/// A Hello: who the peer is and what it speaks.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Hello {
    magic: u32,
    version: u32,
    agent: String,
    session: u64,
    bulk_connections: u32,
}

/// The first message on a new connection's first stream. Wire
/// compatibility rule for every later version: `Hello` stays variant 0 and
/// Hello starts with magic and version, so an older or newer peer can
/// always read them and refuse with a reason.
#[derive(Debug, Serialize, Deserialize)]
enum Opener {
    /// A new session (on its control connection).
    Hello(Hello),
    /// A bulk connection of a session already opened.
    Join { session: u64, index: u32 },
}

/// The accepting side's answer to a Hello.
#[derive(Debug, Serialize, Deserialize)]
enum Reply {
    Welcome(Hello),
    Refused { reason: String },
}

/// A control connection whose Hello was read, waiting for accept().
struct Opened {
    conn: Connection,
    send: SendStream,
    recv: RecvStream,
    hello: Hello,
}

type Joins = Arc<Mutex<HashMap<u64, mpsc::Sender<(u32, Connection)>>>>;

/// One QUIC endpoint (client and server) with ferry's TLS and tuning.
pub struct Transport {
    endpoint: Endpoint,
    settings: Arc<Settings>,
    client_config: quinn::ClientConfig,
    opened: tokio::sync::Mutex<mpsc::Receiver<Result<Opened, AcceptError>>>,
    joins: Joins,
    acceptor: JoinHandle<()>,
}

impl Drop for Transport {
    fn drop(&mut self) {
        self.acceptor.abort();
        self.endpoint
            .close(VarInt::from_u32(CLOSE_DONE), b"endpoint closed");
    }
}

fn timeout<T>(
    fut: impl Future<Output = T>,
) -> impl Future<Output = Result<T, tokio::time::error::Elapsed>> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, fut)
}

fn transport_config() -> Arc<quinn::TransportConfig> {
    let mut tc = quinn::TransportConfig::default();
    tc.stream_receive_window(VarInt::from_u32(STREAM_WINDOW))
        .receive_window(VarInt::from_u32(CONNECTION_WINDOW))
        .send_window(u64::from(CONNECTION_WINDOW))
        .max_concurrent_uni_streams(VarInt::from_u32(256))
        .max_idle_timeout(Some(VarInt::from_u32(IDLE_TIMEOUT_MS).into()))
        .keep_alive_interval(Some(KEEP_ALIVE));
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(MTU_UPPER_BOUND);
    tc.mtu_discovery_config(Some(mtu));
    Arc::new(tc)
}

/// Raises a socket buffer with the *FORCE option (ignores rmem_max, needs
/// CAP_NET_ADMIN), falling back to the plain option capped by the sysctl.
fn raise_buffers(socket: &UdpSocket) {
    use nix::sys::socket::{setsockopt, sockopt};
    if setsockopt(socket, sockopt::SndBufForce, &SOCKET_BUFFER).is_err() {
        if let Err(e) = setsockopt(socket, sockopt::SndBuf, &SOCKET_BUFFER) {
            tracing::warn!("could not raise the UDP send buffer: {e}");
        }
    }
    if setsockopt(socket, sockopt::RcvBufForce, &SOCKET_BUFFER).is_err() {
        if let Err(e) = setsockopt(socket, sockopt::RcvBuf, &SOCKET_BUFFER) {
            tracing::warn!("could not raise the UDP receive buffer: {e}");
        }
    }
}

fn hello(settings: &Settings, session: u64, bulk: usize) -> Hello {
    Hello {
        magic: HELLO_MAGIC,
        version: settings.protocol_version,
        agent: settings.agent_name.clone(),
        session,
        bulk_connections: bulk as u32,
    }
}

impl Transport {
    /// Loads the TLS files, binds the UDP socket (raising its buffers) and
    /// starts accepting connections in the background. Must be called in a
    /// tokio runtime.
    pub async fn bind(settings: Settings) -> Result<Transport, BindError> {
        if !(1..=MAX_BULK_CONNECTIONS).contains(&settings.bulk_connections) {
            return Err(BindError::BulkConnections(settings.bulk_connections));
        }
        let tls = tls::load(&settings.tls)?;
        let addr = settings.listen;
        let sock_err = |source| BindError::Socket { addr, source };
        let socket = UdpSocket::bind(addr).map_err(sock_err)?;
        raise_buffers(&socket);
        let config = transport_config();
        let mut server = tls.server;
        server.transport_config(config.clone());
        let mut client = tls.client;
        client.transport_config(config);
        let runtime = quinn::default_runtime()
            .ok_or_else(|| sock_err(std::io::Error::other("no async runtime found for quinn")))?;
        let mut endpoint_config = quinn::EndpointConfig::default();
        // quinn's default (1472) would cap MTU discovery at Ethernet's size
        // even on loopback or a jumbo-frame veth.
        endpoint_config
            .max_udp_payload_size(MTU_UPPER_BOUND)
            .map_err(|e| sock_err(std::io::Error::other(e.to_string())))?;
        let endpoint =
            Endpoint::new(endpoint_config, Some(server), socket, runtime).map_err(sock_err)?;
        let settings = Arc::new(settings);
        let joins: Joins = Arc::default();
        let (tx, rx) = mpsc::channel(16);
        let acceptor = tokio::spawn(accept_loop(
            endpoint.clone(),
            settings.clone(),
            joins.clone(),
            tx,
        ));
        Ok(Transport {
            endpoint,
            settings,
            client_config: client,
            opened: tokio::sync::Mutex::new(rx),
            joins,
            acceptor,
        })
    }

    /// Closes every connection of this endpoint and waits until the peers
    /// were told (the close frames sent and drained), so a peer sees the
    /// close at once instead of after the idle timeout. Call before the
    /// runtime ends.
    pub async fn shutdown(&self) {
        self.endpoint
            .close(VarInt::from_u32(CLOSE_DONE), b"endpoint closed");
        self.endpoint.wait_idle().await;
    }

    /// The bound UDP address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Opens a session to the agent at `addr`, whose certificate must be
    /// valid for `server_name` (and, with an allow-list, name an allowed
    /// peer).
    pub async fn connect(
        &self,
        addr: SocketAddr,
        server_name: &str,
    ) -> Result<Session, ConnectError> {
        let control = self.connect_one(addr, server_name).await?;
        let (mut send, mut recv) = timeout(control.open_bi())
            .await
            .map_err(|_| ConnectError::Timeout {
                peer: addr,
                step: "opening the control stream",
            })?
            .map_err(|e| conn_err(addr, e))?;
        let session: u64 = rand_u64();
        let bulk = self.settings.bulk_connections;
        let ours = hello(&self.settings, session, bulk);
        frame::write_message(&mut send, addr, &Opener::Hello(ours)).await?;
        let reply: Reply = timeout(frame::read_message(&mut recv, addr))
            .await
            .map_err(|_| ConnectError::Timeout {
                peer: addr,
                step: "waiting for the answer to Hello",
            })?
            .map_err(|e| explain_recv(&control, e))?;
        let theirs = match reply {
            Reply::Refused { reason } => return Err(ConnectError::Refused { peer: addr, reason }),
            Reply::Welcome(h) => h,
        };
        if let Err(mismatch) = VersionMismatch::check(addr, &theirs, self.settings.protocol_version)
        {
            control.close(
                VarInt::from_u32(CLOSE_REFUSED),
                b"protocol version mismatch",
            );
            return Err(mismatch.into());
        }
        let mut conns = Vec::with_capacity(bulk);
        for index in 0..bulk {
            let conn = self.connect_one(addr, server_name).await?;
            let mut join = timeout(conn.open_uni())
                .await
                .map_err(|_| ConnectError::Timeout {
                    peer: addr,
                    step: "opening a bulk connection",
                })?
                .map_err(|e| conn_err(addr, e))?;
            frame::write_message(
                &mut join,
                addr,
                &Opener::Join {
                    session,
                    index: index as u32,
                },
            )
            .await?;
            // Ends the Join stream; the connection stays open for pages.
            let _ = join.finish();
            conns.push(conn);
        }
        Ok(Session::new(addr, theirs.agent, control, send, recv, conns))
    }

    async fn connect_one(
        &self,
        addr: SocketAddr,
        server_name: &str,
    ) -> Result<Connection, ConnectError> {
        let connecting = self
            .endpoint
            .connect_with(self.client_config.clone(), addr, server_name)
            .map_err(|e| ConnectError::Connection {
                peer: addr,
                reason: e.to_string(),
            })?;
        let conn = timeout(connecting)
            .await
            .map_err(|_| ConnectError::Timeout {
                peer: addr,
                step: "the QUIC/TLS handshake",
            })?
            .map_err(|e| conn_err(addr, e))?;
        if let Err(e) = tls::check_peer_name(&conn, self.settings.allowed_peers.as_deref()) {
            conn.close(VarInt::from_u32(CLOSE_REFUSED), e.to_string().as_bytes());
            return Err(e.into());
        }
        Ok(conn)
    }

    /// Waits for the next peer to open a session, completes the handshake
    /// (answering its Hello, waiting for its bulk connections) and returns
    /// the session. A peer that fails (certificate, name, version...) is
    /// returned as an error; call accept again for the next one.
    pub async fn accept(&self) -> Result<Session, AcceptError> {
        let opened = self
            .opened
            .lock()
            .await
            .recv()
            .await
            .ok_or(AcceptError::Closed)??;
        let Opened {
            conn,
            mut send,
            recv,
            hello: theirs,
        } = opened;
        let peer = conn.remote_address();
        let count = theirs.bulk_connections;
        if count == 0 || count as usize > MAX_BULK_CONNECTIONS {
            let err = AcceptError::BulkConnections { peer, count };
            refuse(&conn, &mut send, &err.to_string()).await;
            return Err(err);
        }
        let (tx, mut rx) = mpsc::channel(MAX_BULK_CONNECTIONS);
        self.joins
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(theirs.session, tx);
        let result = async {
            let ours = hello(&self.settings, theirs.session, count as usize);
            frame::write_message(&mut send, peer, &Reply::Welcome(ours)).await?;
            let mut bulk: Vec<Option<Connection>> = vec![None; count as usize];
            let mut joined = 0;
            while joined < count {
                let (index, c) = timeout(rx.recv())
                    .await
                    .map_err(|_| AcceptError::Timeout {
                        peer,
                        step: "opening its bulk connections",
                    })?
                    .ok_or(AcceptError::Closed)?;
                match bulk.get_mut(index as usize) {
                    Some(slot @ None) => {
                        *slot = Some(c);
                        joined += 1;
                    }
                    _ => c.close(
                        VarInt::from_u32(CLOSE_REFUSED),
                        b"bad bulk connection index",
                    ),
                }
            }
            Ok::<Vec<Connection>, AcceptError>(bulk.into_iter().flatten().collect())
        }
        .await;
        self.joins
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&theirs.session);
        match result {
            Ok(bulk) => Ok(Session::new(peer, theirs.agent, conn, send, recv, bulk)),
            Err(e) => {
                conn.close(VarInt::from_u32(CLOSE_REFUSED), e.to_string().as_bytes());
                Err(e)
            }
        }
    }
}

/// A session id no other live session has: 64 random bits from the
/// kernel (std's hasher keys are seeded from getrandom).
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id().into());
    h.finish()
}

fn conn_err(peer: SocketAddr, e: impl std::fmt::Display) -> ConnectError {
    ConnectError::Connection {
        peer,
        reason: e.to_string(),
    }
}

/// A closed stream during the handshake usually means the peer closed the
/// connection with a reason: report that reason.
fn explain_recv(conn: &Connection, e: RecvError) -> ConnectError {
    match conn.close_reason() {
        Some(reason) => conn_err(conn.remote_address(), reason),
        None => e.into(),
    }
}

/// Sends Refused{reason}, ends the stream and closes the connection once
/// the peer has read it (or after the handshake timeout).
async fn refuse(conn: &Connection, send: &mut SendStream, reason: &str) {
    let peer = conn.remote_address();
    let refused = Reply::Refused {
        reason: reason.to_string(),
    };
    if frame::write_message(send, peer, &refused).await.is_ok() {
        let _ = send.finish();
        // The peer closes the connection after reading the refusal.
        let _ = timeout(conn.closed()).await;
    }
    conn.close(VarInt::from_u32(CLOSE_REFUSED), reason.as_bytes());
}

/// Accepts every incoming connection and sorts it: a control connection's
/// Hello goes to accept(), a bulk connection to its session's accept().
async fn accept_loop(
    endpoint: Endpoint,
    settings: Arc<Settings>,
    joins: Joins,
    opened: mpsc::Sender<Result<Opened, AcceptError>>,
) {
    while let Some(incoming) = endpoint.accept().await {
        let settings = settings.clone();
        let joins = joins.clone();
        let opened = opened.clone();
        tokio::spawn(async move {
            if let Some(result) = sort_incoming(incoming, &settings, &joins).await {
                let _ = opened.send(result).await;
            }
        });
    }
}

/// Completes one incoming connection's handshake. Returns None for a bulk
/// connection (handed to its session), else the opened control connection
/// or why it was refused.
async fn sort_incoming(
    incoming: quinn::Incoming,
    settings: &Settings,
    joins: &Joins,
) -> Option<Result<Opened, AcceptError>> {
    let peer = incoming.remote_address();
    let conn = match timeout(std::future::IntoFuture::into_future(incoming)).await {
        Err(_) => {
            return Some(Err(AcceptError::Timeout {
                peer,
                step: "the QUIC/TLS handshake",
            }))
        }
        Ok(Err(e)) => {
            return Some(Err(AcceptError::Connection {
                peer,
                reason: e.to_string(),
            }))
        }
        Ok(Ok(conn)) => conn,
    };
    if let Err(e) = tls::check_peer_name(&conn, settings.allowed_peers.as_deref()) {
        conn.close(VarInt::from_u32(CLOSE_REFUSED), e.to_string().as_bytes());
        return Some(Err(e.into()));
    }
    let result = async {
        // A control connection opens a bidirectional stream, a bulk one a
        // unidirectional stream with its Join.
        tokio::select! {
            bi = conn.accept_bi() => {
                let (mut send, mut recv) = bi.map_err(|e| AcceptError::Connection { peer, reason: e.to_string() })?;
                let opener: Opener = frame::read_message(&mut recv, peer).await?;
                let Opener::Hello(hello) = opener else {
                    let reason = "the control stream must start with Hello".to_string();
                    refuse(&conn, &mut send, &reason).await;
                    return Err(AcceptError::Connection { peer, reason });
                };
                if let Err(mismatch) = VersionMismatch::check(peer, &hello, settings.protocol_version) {
                    refuse(&conn, &mut send, &mismatch.to_string()).await;
                    return Err(mismatch.into());
                }
                Ok(Some(Opened { conn: conn.clone(), send, recv, hello }))
            }
            uni = conn.accept_uni() => {
                let mut recv = uni.map_err(|e| AcceptError::Connection { peer, reason: e.to_string() })?;
                let Opener::Join { session, index } = frame::read_message(&mut recv, peer).await? else {
                    conn.close(VarInt::from_u32(CLOSE_REFUSED), b"a bulk connection must start with Join");
                    return Ok(None);
                };
                let tx = joins.lock().unwrap_or_else(|e| e.into_inner()).get(&session).cloned();
                match tx {
                    Some(tx) => { let _ = tx.send((index, conn.clone())).await; }
                    None => conn.close(VarInt::from_u32(CLOSE_REFUSED), b"unknown session"),
                }
                Ok(None)
            }
        }
    };
    match timeout(result).await {
        Err(_) => {
            conn.close(VarInt::from_u32(CLOSE_REFUSED), b"handshake timeout");
            Some(Err(AcceptError::Timeout {
                peer,
                step: "its Hello or Join",
            }))
        }
        Ok(Ok(Some(opened))) => Some(Ok(opened)),
        Ok(Ok(None)) => None,
        Ok(Err(e)) => {
            conn.close(VarInt::from_u32(CLOSE_REFUSED), e.to_string().as_bytes());
            Some(Err(e))
        }
    }
}

/// The page streams a peer opens, taken out of its [`Session`].
pub struct IncomingPages {
    streams: Option<mpsc::Receiver<RecvStream>>,
    peer: SocketAddr,
}

impl IncomingPages {
    /// The next page stream, or None once every bulk connection is closed.
    pub async fn next(&mut self) -> Option<PageReceiver> {
        let stream = self.streams.as_mut()?.recv().await?;
        Some(PageReceiver::new(stream, self.peer))
    }
}

/// The sending direction of a session's control stream.
pub struct ControlSender<'a> {
    send: &'a mut SendStream,
    peer: SocketAddr,
}

impl ControlSender<'_> {
    /// Sends one control message, as [`Session::send`].
    pub async fn send<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SendError> {
        frame::write_message(self.send, self.peer, value).await
    }
}

/// The receiving direction of a session's control stream.
pub struct ControlReceiver<'a> {
    recv: &'a mut RecvStream,
    peer: SocketAddr,
}

impl ControlReceiver<'_> {
    /// Receives one control message, as [`Session::recv`].
    pub async fn recv<T: DeserializeOwned>(&mut self) -> Result<T, RecvError> {
        frame::read_message(self.recv, self.peer).await
    }
}

/// An open session with one peer agent: a control stream for messages and
/// bulk connections for page streams.
pub struct Session {
    peer: SocketAddr,
    peer_agent: String,
    control: Connection,
    send: SendStream,
    recv: RecvStream,
    bulk: Vec<Connection>,
    next_bulk: AtomicUsize,
    incoming_pages: Option<mpsc::Receiver<RecvStream>>,
    page_acceptors: Vec<JoinHandle<()>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        for task in &self.page_acceptors {
            task.abort();
        }
    }
}

impl Session {
    fn new(
        peer: SocketAddr,
        peer_agent: String,
        control: Connection,
        send: SendStream,
        recv: RecvStream,
        bulk: Vec<Connection>,
    ) -> Session {
        let (tx, rx) = mpsc::channel(64);
        let page_acceptors = bulk
            .iter()
            .map(|conn| {
                let conn = conn.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    while let Ok(stream) = conn.accept_uni().await {
                        if tx.send(stream).await.is_err() {
                            break;
                        }
                    }
                })
            })
            .collect();
        Session {
            peer,
            peer_agent,
            control,
            send,
            recv,
            bulk,
            next_bulk: AtomicUsize::new(0),
            incoming_pages: Some(rx),
            page_acceptors,
        }
    }

    /// The peer's UDP address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The agent name the peer announced in its Hello.
    pub fn peer_agent(&self) -> &str {
        &self.peer_agent
    }

    /// Number of bulk connections page streams are spread over.
    pub fn bulk_connections(&self) -> usize {
        self.bulk.len()
    }

    /// Sends one control message (postcard) on the control stream.
    pub async fn send<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SendError> {
        frame::write_message(&mut self.send, self.peer, value).await
    }

    /// Receives one control message; a malformed or oversized one is an
    /// error, never a panic or a large allocation.
    pub async fn recv<T: DeserializeOwned>(&mut self) -> Result<T, RecvError> {
        frame::read_message(&mut self.recv, self.peer).await
    }

    /// Both directions of the control stream at once, for a side that must
    /// send (page requests) while it waits for the peer's next message.
    pub fn split_control(&mut self) -> (ControlSender<'_>, ControlReceiver<'_>) {
        (
            ControlSender {
                send: &mut self.send,
                peer: self.peer,
            },
            ControlReceiver {
                recv: &mut self.recv,
                peer: self.peer,
            },
        )
    }

    /// Opens a page stream on the next bulk connection (round robin).
    pub async fn open_pages(&self) -> Result<PageSender, OpenPagesError> {
        let i = self.next_bulk.fetch_add(1, Ordering::Relaxed) % self.bulk.len();
        let stream = self.bulk[i]
            .open_uni()
            .await
            .map_err(|source| OpenPagesError {
                peer: self.peer,
                source,
            })?;
        Ok(PageSender::new(stream, self.peer))
    }

    /// The page streams the peer opens, on any bulk connection, as a
    /// receiver of its own: a destination reads them concurrently with
    /// the control stream. Every later call returns a receiver that ends
    /// at once.
    pub fn take_incoming_pages(&mut self) -> IncomingPages {
        IncomingPages {
            streams: self.incoming_pages.take(),
            peer: self.peer,
        }
    }

    /// quinn's statistics of each bulk connection (RTT, congestion window,
    /// lost packets, path MTU): what a migration policy measures bandwidth
    /// and loss with.
    pub fn bulk_stats(&self) -> Vec<quinn::ConnectionStats> {
        self.bulk.iter().map(Connection::stats).collect()
    }

    /// Closes every connection of the session with `reason`. Data still in
    /// flight is lost: close only after the peer confirmed, on the control
    /// stream, that it has everything.
    pub fn close(&self, reason: &str) {
        for conn in self.bulk.iter().chain([&self.control]) {
            conn.close(VarInt::from_u32(CLOSE_DONE), reason.as_bytes());
        }
    }
}
