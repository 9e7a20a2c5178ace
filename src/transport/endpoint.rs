//! The endpoint: [`Transport`] binds the UDP socket with ferry's TLS and
//! QUIC tuning, opens sessions ([`Transport::connect`]: control connection,
//! Hello, then the bulk connections each announcing its Join) and accepts
//! them ([`Transport::accept`]: a background loop sorts every incoming
//! connection into a new session's Hello or a Join of one being opened).

use super::error::{AcceptError, BindError, ConnectError, HandshakeError, Role, VersionMismatch};
use super::frame::{self, RecvError};
use super::hello::{hello, refuse, timeout, Hello, Opener, Reply, MAX_OPENER_LEN};
use super::limits::{
    Counters, Slot, MAX_HANDSHAKES, MAX_HANDSHAKES_PER_ADDRESS, MAX_SESSIONS_PER_PEER,
};
use super::session::{Session, CLOSE_DONE, CLOSE_REFUSED};
use super::settings::{Settings, MAX_BULK_CONNECTIONS};
use super::tls;
use quinn::{Connection, Endpoint, RecvStream, SendStream, VarInt};
use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

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
/// The congestion window every connection starts with, in bytes. QUIC's
/// default (14720 bytes, meant for the open Internet) let a container's
/// 13 KB process state wait a whole delayed ACK (25 ms) inside the
/// downtime: the control connection, idle through the rounds, had room
/// for one 6000-byte datagram. Agents talk over a data-centre link, where
/// a window this size is a fraction of the path's buffers.
const INITIAL_WINDOW: u64 = 512 << 10;
/// A peer silent this long is gone: short, because a workload may be
/// frozen waiting on it (keep-alives keep a slow but live peer).
const IDLE_TIMEOUT_MS: u32 = 5_000;
/// Keep-alive interval, well under [`IDLE_TIMEOUT_MS`].
const KEEP_ALIVE: Duration = Duration::from_secs(1);

/// A control connection whose Hello was read and checked, holding its
/// peer's session slot: its bulk connections are awaited next.
struct Opened {
    conn: Connection,
    send: SendStream,
    recv: RecvStream,
    hello: Hello,
    slot: Slot,
}

/// What the background accept loop shares with the task of each incoming
/// connection.
#[derive(Clone)]
struct Acceptor {
    settings: Arc<Settings>,
    joins: Joins,
    /// Connections in their handshake, by remote address.
    handshakes: Counters,
    /// Connections in their handshake, from all peers.
    all_handshakes: Arc<tokio::sync::Semaphore>,
    /// Sessions open or opening, by peer agent name.
    sessions: Counters,
    opened: mpsc::Sender<Result<Session, AcceptError>>,
}

type Joins = Arc<Mutex<HashMap<u64, mpsc::Sender<(u32, Connection)>>>>;

/// One QUIC endpoint (client and server) with ferry's TLS and tuning.
pub struct Transport {
    endpoint: Endpoint,
    settings: Arc<Settings>,
    client_config: quinn::ClientConfig,
    opened: tokio::sync::Mutex<mpsc::Receiver<Result<Session, AcceptError>>>,
    acceptor: JoinHandle<()>,
}

impl Drop for Transport {
    fn drop(&mut self) {
        self.acceptor.abort();
        self.endpoint
            .close(VarInt::from_u32(CLOSE_DONE), b"endpoint closed");
    }
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
    let mut congestion = quinn::congestion::CubicConfig::default();
    congestion.initial_window(INITIAL_WINDOW);
    tc.congestion_controller_factory(Arc::new(congestion));
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
        let (tx, rx) = mpsc::channel(16);
        let acceptor = tokio::spawn(accept_loop(
            endpoint.clone(),
            Acceptor {
                settings: settings.clone(),
                joins: Joins::default(),
                handshakes: Counters::default(),
                all_handshakes: Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES)),
                sessions: Counters::default(),
                opened: tx,
            },
        ));
        Ok(Transport {
            endpoint,
            settings,
            client_config: client,
            opened: tokio::sync::Mutex::new(rx),
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
            .map_err(|_| {
                HandshakeError::timeout(Role::Connecting, addr, "opening the control stream")
            })?
            .map_err(|e| HandshakeError::connection(Role::Connecting, addr, e))?;
        let session: u64 = rand_u64();
        let bulk = self.settings.bulk_connections;
        let ours = hello(&self.settings, session, bulk);
        frame::write_message(&mut send, addr, &Opener::Hello(ours)).await?;
        let reply: Reply = timeout(frame::read_bounded(&mut recv, addr, MAX_OPENER_LEN))
            .await
            .map_err(|_| {
                HandshakeError::timeout(Role::Connecting, addr, "waiting for the answer to Hello")
            })?
            .map_err(|e| explain_recv(&control, e))?;
        let theirs = match reply {
            Reply::Refused { reason } => {
                return Err(HandshakeError::Refused { peer: addr, reason })
            }
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
        // Its name is what a later post-copy resume must come from.
        if let Err(e) = tls::check_agent_name(&control, &theirs.agent) {
            control.close(VarInt::from_u32(CLOSE_REFUSED), e.to_string().as_bytes());
            return Err(e.into());
        }
        let mut conns = Vec::with_capacity(bulk);
        for index in 0..bulk {
            let conn = self.connect_one(addr, server_name).await?;
            let mut join = timeout(conn.open_uni())
                .await
                .map_err(|_| {
                    HandshakeError::timeout(Role::Connecting, addr, "opening a bulk connection")
                })?
                .map_err(|e| HandshakeError::connection(Role::Connecting, addr, e))?;
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
        Ok(Session::new(
            addr,
            theirs.agent,
            control,
            send,
            recv,
            conns,
            None,
        ))
    }

    /// Completes a QUIC/TLS handshake with the agent at `addr` (its
    /// certificate signed by the CA, valid for `server_name` and allowed)
    /// and closes the connection at once, opening no session the peer would
    /// wait on: whether it is reachable, for `migrate-agent status`. Returns
    /// when the peer's certificate expires (or why that is unknown).
    pub async fn reach(
        &self,
        addr: SocketAddr,
        server_name: &str,
    ) -> Result<Result<std::time::SystemTime, String>, ConnectError> {
        let conn = self.connect_one(addr, server_name).await?;
        let expiry = tls::peer_certificate_expiry(&conn);
        conn.close(VarInt::from_u32(CLOSE_DONE), b"status check");
        Ok(expiry)
    }

    async fn connect_one(
        &self,
        addr: SocketAddr,
        server_name: &str,
    ) -> Result<Connection, ConnectError> {
        let connecting = self
            .endpoint
            .connect_with(self.client_config.clone(), addr, server_name)
            .map_err(|e| HandshakeError::connection(Role::Connecting, addr, e))?;
        let conn = timeout(connecting)
            .await
            .map_err(|_| HandshakeError::timeout(Role::Connecting, addr, "the QUIC/TLS handshake"))?
            .map_err(|e| HandshakeError::connection(Role::Connecting, addr, e))?;
        if let Err(e) = tls::check_peer_name(&conn, self.settings.allowed_peers.as_deref()) {
            conn.close(VarInt::from_u32(CLOSE_REFUSED), e.to_string().as_bytes());
            return Err(e.into());
        }
        Ok(conn)
    }

    /// Waits for the next session a peer opened, its handshake complete
    /// (Hello answered, bulk connections joined). Handshakes run in
    /// parallel in the background, each bounded in time, in size and in
    /// number per peer. A peer that fails (certificate, name, version,
    /// limits...) is returned as an error; call accept again for the next
    /// one.
    pub async fn accept(&self) -> Result<Session, AcceptError> {
        self.opened
            .lock()
            .await
            .recv()
            .await
            .ok_or(HandshakeError::Closed)?
    }
}

impl Acceptor {
    /// Answers the Hello of `opened` and waits for its bulk connections.
    async fn complete(&self, opened: Opened) -> Result<Session, AcceptError> {
        let Opened {
            conn,
            mut send,
            recv,
            hello: theirs,
            slot,
        } = opened;
        let peer = conn.remote_address();
        let count = theirs.bulk_connections;
        if count == 0 || count as usize > MAX_BULK_CONNECTIONS {
            let err = HandshakeError::BulkConnections { peer, count };
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
                // A peer that gives up (closes) frees its slot at once.
                let next = tokio::select! {
                    next = timeout(rx.recv()) => next,
                    e = conn.closed() => return Err(HandshakeError::connection(Role::Accepting, peer, e)),
                };
                let (index, c) = next
                    .map_err(|_| {
                        HandshakeError::timeout(
                            Role::Accepting,
                            peer,
                            "opening its bulk connections",
                        )
                    })?
                    .ok_or(HandshakeError::Closed)?;
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
            Ok(bulk) => Ok(Session::new(
                peer,
                theirs.agent,
                conn,
                send,
                recv,
                bulk,
                Some(slot),
            )),
            Err(e) => {
                conn.close(VarInt::from_u32(CLOSE_REFUSED), e.to_string().as_bytes());
                Err(e)
            }
        }
    }

    /// The slots an incoming connection's handshake holds (one of all,
    /// one of its address), or why it is refused at once.
    fn admit(
        &self,
        peer: SocketAddr,
    ) -> Result<(tokio::sync::OwnedSemaphorePermit, Slot), AcceptError> {
        let too_many = |handshakes, scope| HandshakeError::TooManyHandshakes {
            peer,
            handshakes,
            scope,
        };
        let all = self
            .all_handshakes
            .clone()
            .try_acquire_owned()
            .map_err(|_| too_many(MAX_HANDSHAKES, "from all peers"))?;
        let address = self
            .handshakes
            .take(&peer.ip().to_string(), MAX_HANDSHAKES_PER_ADDRESS)
            .map_err(|held| too_many(held, "from that address"))?;
        Ok((all, address))
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

/// A closed stream during the handshake usually means the peer closed the
/// connection with a reason: report that reason.
fn explain_recv(conn: &Connection, e: RecvError) -> ConnectError {
    match conn.close_reason() {
        Some(reason) => HandshakeError::connection(Role::Connecting, conn.remote_address(), reason),
        None => e.into(),
    }
}

/// Accepts every incoming connection and serves each handshake in a task
/// of its own: a control connection's session goes to accept() once its
/// bulk connections joined, a bulk connection to its session's task.
async fn accept_loop(endpoint: Endpoint, acceptor: Acceptor) {
    while let Some(incoming) = endpoint.accept().await {
        let peer = incoming.remote_address();
        let admitted = match acceptor.admit(peer) {
            Ok(admitted) => admitted,
            Err(e) => {
                incoming.refuse();
                let _ = acceptor.opened.try_send(Err(e));
                continue;
            }
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let sorted = sort_incoming(incoming, &acceptor, admitted).await;
            let result = match sorted {
                None => return,
                Some(Ok(opened)) => acceptor.complete(opened).await,
                Some(Err(e)) => Err(e),
            };
            let _ = acceptor.opened.send(result).await;
        });
    }
}

/// Completes one incoming connection's handshake up to its first message,
/// holding `admitted` until then. Returns None for a bulk connection
/// (handed to its session), else the opened control connection (its Hello
/// checked, its peer's session slot taken) or why it was refused.
async fn sort_incoming(
    incoming: quinn::Incoming,
    acceptor: &Acceptor,
    admitted: (tokio::sync::OwnedSemaphorePermit, Slot),
) -> Option<Result<Opened, AcceptError>> {
    let (settings, joins) = (&acceptor.settings, &acceptor.joins);
    let peer = incoming.remote_address();
    let conn = match timeout(std::future::IntoFuture::into_future(incoming)).await {
        Err(_) => {
            return Some(Err(HandshakeError::timeout(
                Role::Accepting,
                peer,
                "the QUIC/TLS handshake",
            )))
        }
        Ok(Err(e)) => return Some(Err(HandshakeError::connection(Role::Accepting, peer, e))),
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
                let (mut send, mut recv) = bi.map_err(|e| HandshakeError::connection(Role::Accepting, peer, e))?;
                let opener = frame::read_bounded(&mut recv, peer, MAX_OPENER_LEN).await;
                drop(admitted);
                let opener: Opener = opener?;
                let Opener::Hello(hello) = opener else {
                    let reason = "the control stream must start with Hello".to_string();
                    refuse(&conn, &mut send, &reason).await;
                    return Err(HandshakeError::connection(Role::Accepting, peer, reason));
                };
                if let Err(mismatch) = VersionMismatch::check(peer, &hello, settings.protocol_version) {
                    refuse(&conn, &mut send, &mismatch.to_string()).await;
                    return Err(mismatch.into());
                }
                if let Err(e) = tls::check_agent_name(&conn, &hello.agent) {
                    refuse(&conn, &mut send, &e.to_string()).await;
                    return Err(e.into());
                }
                let slot = match acceptor.sessions.take(&hello.agent, MAX_SESSIONS_PER_PEER) {
                    Ok(slot) => slot,
                    Err(sessions) => {
                        let e = HandshakeError::TooManySessions { peer, agent: hello.agent, sessions };
                        refuse(&conn, &mut send, &e.to_string()).await;
                        return Err(e);
                    }
                };
                Ok(Some(Opened { conn: conn.clone(), send, recv, hello, slot }))
            }
            uni = conn.accept_uni() => {
                let mut recv = uni.map_err(|e| HandshakeError::connection(Role::Accepting, peer, e))?;
                let opener = frame::read_bounded(&mut recv, peer, MAX_OPENER_LEN).await;
                drop(admitted);
                let Opener::Join { session, index } = opener? else {
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
            Some(Err(HandshakeError::timeout(
                Role::Accepting,
                peer,
                "its Hello or Join",
            )))
        }
        Ok(Ok(Some(opened))) => Some(Ok(opened)),
        Ok(Ok(None)) => None,
        Ok(Err(e)) => {
            conn.close(VarInt::from_u32(CLOSE_REFUSED), e.to_string().as_bytes());
            Some(Err(e))
        }
    }
}
