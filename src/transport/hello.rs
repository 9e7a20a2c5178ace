//! The handshake that opens a session: the Hello each side sends, the
//! first message of every connection ([`Opener`]), the accepting side's
//! [`Reply`], and the bound on each step. The procedures that run it are
//! in `endpoint.rs`.

use super::frame;
use super::session::CLOSE_REFUSED;
use super::settings::Settings;
use quinn::{Connection, SendStream, VarInt};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::time::Duration;

/// First field of every Hello: "FERY".
pub const HELLO_MAGIC: u32 = u32::from_le_bytes(*b"FERY");
/// Each step of opening a session (TLS, Hello, each Join) must finish
/// within this time, so a silent peer cannot hang an agent.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest handshake message (Hello, Join, the answer to Hello): they
/// are small, so a peer cannot make each handshake cost 64 MiB.
pub(crate) const MAX_OPENER_LEN: u32 = 64 << 10;

/// A Hello: who the peer is and what it speaks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Hello {
    pub(super) magic: u32,
    pub(super) version: u32,
    pub(super) agent: String,
    pub(super) session: u64,
    pub(super) bulk_connections: u32,
}

/// The first message on a new connection's first stream. Wire
/// compatibility rule for every later version: `Hello` stays variant 0 and
/// Hello starts with magic and version, so an older or newer peer can
/// always read them and refuse with a reason.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Opener {
    /// A new session (on its control connection).
    Hello(Hello),
    /// A bulk connection of a session already opened.
    Join { session: u64, index: u32 },
}

/// The accepting side's answer to a Hello.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Reply {
    Welcome(Hello),
    Refused { reason: String },
}

/// `fut`, bounded by [`HANDSHAKE_TIMEOUT`].
pub(super) fn timeout<T>(
    fut: impl Future<Output = T>,
) -> impl Future<Output = Result<T, tokio::time::error::Elapsed>> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, fut)
}

/// This side's Hello for session `session` with `bulk` bulk connections.
pub(super) fn hello(settings: &Settings, session: u64, bulk: usize) -> Hello {
    Hello {
        magic: HELLO_MAGIC,
        version: settings.protocol_version,
        agent: settings.agent_name.clone(),
        session,
        bulk_connections: bulk as u32,
    }
}

/// Sends Refused{reason}, ends the stream and closes the connection once
/// the peer has read it (or after the handshake timeout).
pub(super) async fn refuse(conn: &Connection, send: &mut SendStream, reason: &str) {
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
