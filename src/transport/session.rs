//! An open session: its control stream (postcard messages, see
//! [`frame`](super::frame)) and its bulk connections carrying page streams
//! (see [`pages`](super::pages)).

use super::frame::{self, RecvError, SendError};
use super::pages::{PageReceiver, PageSender};
use quinn::{Connection, RecvStream, SendStream, VarInt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// QUIC application close code for a refusal (reason in the close frame).
pub(super) const CLOSE_REFUSED: u32 = 1;
/// QUIC application close code for a normal end of session.
pub(super) const CLOSE_DONE: u32 = 0;

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
    /// A session whose handshake is complete: starts taking the page
    /// streams the peer opens on each bulk connection.
    pub(super) fn new(
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
