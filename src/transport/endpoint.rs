//! The endpoint: [`Transport`] binds the UDP socket with ferry's TLS and
//! QUIC tuning, opens sessions ([`Transport::connect`]: control connection,
//! Hello, then the bulk connections each announcing its Join) and accepts
//! them ([`Transport::accept`]: a background loop sorts every incoming
//! connection into a new session's Hello or a Join of one being opened).

use super::error::{AcceptError, BindError, ConnectError, HandshakeError, Role, VersionMismatch};
use super::frame::{self, RecvError};
use super::hello::{hello, refuse, timeout, Hello, Opener, Reply};
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
/// A peer silent this long is gone: short, because a workload may be
/// frozen waiting on it (keep-alives keep a slow but live peer).
const IDLE_TIMEOUT_MS: u32 = 5_000;
/// Keep-alive interval, well under [`IDLE_TIMEOUT_MS`].
const KEEP_ALIVE: Duration = Duration::from_secs(1);

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
            .map_err(|_| {
                HandshakeError::timeout(Role::Connecting, addr, "opening the control stream")
            })?
            .map_err(|e| HandshakeError::connection(Role::Connecting, addr, e))?;
        let session: u64 = rand_u64();
        let bulk = self.settings.bulk_connections;
        let ours = hello(&self.settings, session, bulk);
        frame::write_message(&mut send, addr, &Opener::Hello(ours)).await?;
        let reply: Reply = timeout(frame::read_message(&mut recv, addr))
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
        Ok(Session::new(addr, theirs.agent, control, send, recv, conns))
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
            .ok_or(HandshakeError::Closed)??;
        let Opened {
            conn,
            mut send,
            recv,
            hello: theirs,
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
                let (index, c) = timeout(rx.recv())
                    .await
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

/// A closed stream during the handshake usually means the peer closed the
/// connection with a reason: report that reason.
fn explain_recv(conn: &Connection, e: RecvError) -> ConnectError {
    match conn.close_reason() {
        Some(reason) => HandshakeError::connection(Role::Connecting, conn.remote_address(), reason),
        None => e.into(),
    }
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
                let opener: Opener = frame::read_message(&mut recv, peer).await?;
                let Opener::Hello(hello) = opener else {
                    let reason = "the control stream must start with Hello".to_string();
                    refuse(&conn, &mut send, &reason).await;
                    return Err(HandshakeError::connection(Role::Accepting, peer, reason));
                };
                if let Err(mismatch) = VersionMismatch::check(peer, &hello, settings.protocol_version) {
                    refuse(&conn, &mut send, &mismatch.to_string()).await;
                    return Err(mismatch.into());
                }
                Ok(Some(Opened { conn: conn.clone(), send, recv, hello }))
            }
            uni = conn.accept_uni() => {
                let mut recv = uni.map_err(|e| HandshakeError::connection(Role::Accepting, peer, e))?;
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
