//! `migrate-agent status`: what the agent is, whom it can reach and what
//! it is moving. The daemon keeps a [`StatusBoard`] that its migrations
//! report to; a status request on the control socket is answered with an
//! [`AgentStatus`], made from
//! the board, the configuration and a handshake with each configured peer
//! (`[peers]` in the agent's TOML file).

use crate::config::AgentConfig;
use crate::migration::stats::{MigrationStats, Progress};
use crate::transport::{certs, Transport};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Finished migrations the board remembers (the newest).
pub const FINISHED_KEPT: usize = 32;

/// How long a peer may take to complete a handshake before `status`
/// reports it unreachable.
const PEER_TIMEOUT: Duration = Duration::from_secs(3);

/// The agent's answer to `status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentStatus {
    /// The agent's version (ferry's crate version).
    pub version: String,
    /// The agent's name (its certificate's DNS name).
    pub name: String,
    /// The configuration file the agent was started with.
    pub config_file: PathBuf,
    /// The UDP address its QUIC endpoint listens on.
    pub listen: SocketAddr,
    /// Its own certificate: the file and when it expires.
    pub certificate: CertificateStatus,
    /// The configured peers, by name.
    pub peers: Vec<PeerStatus>,
    /// Migrations this agent is sending now, oldest first.
    pub running: Vec<RunningMigration>,
    /// The last finished migrations, newest first.
    pub finished: Vec<FinishedMigration>,
}

/// A certificate's expiry, as `status` and `check` report it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CertificateStatus {
    /// Seconds since the Unix epoch when it expires, when known.
    pub expires_unix: Option<u64>,
    /// Why the expiry is unknown (unreadable file, unparsable).
    pub error: Option<String>,
}

impl CertificateStatus {
    /// The status of an expiry date, or of why it is unknown.
    pub fn of(expiry: Result<SystemTime, String>) -> CertificateStatus {
        match expiry {
            Ok(at) => CertificateStatus {
                expires_unix: Some(unix_secs(at)),
                error: None,
            },
            Err(error) => CertificateStatus {
                expires_unix: None,
                error: Some(error),
            },
        }
    }

    /// "expires in 364 days", "expired 2 days ago", or why the expiry
    /// is unknown, as of `now`.
    pub fn describe(&self, now: SystemTime) -> String {
        let now = unix_secs(now);
        match (self.expires_unix, &self.error) {
            (Some(at), _) if at > now => format!("expires in {} days", (at - now) / 86_400),
            (Some(at), _) => format!("expired {} days ago", (now - at) / 86_400),
            (None, Some(error)) => format!("expiry unknown: {error}"),
            (None, None) => "expiry unknown".to_string(),
        }
    }

    /// [`describe`](Self::describe) when the certificate expires within
    /// [`certs::EXPIRY_WARNING`] of `now` or has expired.
    pub fn warning(&self, now: SystemTime) -> Option<String> {
        let expires = self.expires_unix?;
        let soon = unix_secs(now) + certs::EXPIRY_WARNING.as_secs();
        (expires <= soon).then(|| {
            format!(
                "{} (warning from {} days before: issue a new one with `migrate-agent certs issue`)",
                self.describe(now),
                certs::EXPIRY_WARNING.as_secs() / 86_400
            )
        })
    }
}

/// One configured peer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerStatus {
    /// Its name (the DNS name its certificate must carry).
    pub name: String,
    /// Its QUIC address.
    pub address: SocketAddr,
    /// Whether a handshake with it succeeded just now.
    pub reachable: bool,
    /// Why it is not reachable.
    pub error: Option<String>,
    /// Its certificate, from the handshake (no expiry when unreachable).
    pub certificate: CertificateStatus,
}

/// A migration this agent is sending.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunningMigration {
    /// The board's number for it.
    pub id: u64,
    /// What moves: "process PID" or "container ID".
    pub workload: String,
    /// The destination agent's address.
    pub to: SocketAddr,
    /// Seconds since it started.
    pub elapsed_secs: f64,
    /// The last progress report (none before the first round ends).
    pub progress: Option<Progress>,
    /// Seconds until the bytes still dirty are sent at the measured
    /// throughput, when there is one.
    pub eta_secs: Option<f64>,
}

/// A migration this agent sent, finished.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FinishedMigration {
    /// The board's number for it.
    pub id: u64,
    /// What moved: "process PID" or "container ID".
    pub workload: String,
    /// The destination agent's address.
    pub to: SocketAddr,
    /// Seconds since the Unix epoch when it finished.
    pub finished_unix: u64,
    /// Seconds it took.
    pub duration_secs: f64,
    /// "migrated" or "failed".
    pub outcome: String,
    /// The workload's downtime in milliseconds (migrated only).
    pub downtime_ms: Option<f64>,
    /// Bytes of pages sent (migrated only).
    pub bytes_sent: Option<u64>,
    /// Why it failed.
    pub error: Option<String>,
}

struct Running {
    workload: String,
    to: SocketAddr,
    started: Instant,
    progress: Option<Progress>,
}

#[derive(Default)]
struct Board {
    next_id: u64,
    running: BTreeMap<u64, Running>,
    finished: VecDeque<FinishedMigration>,
}

/// The daemon's record of the migrations it sends (each one reports its
/// start, progress and end here), with the configuration `status` reports.
pub struct StatusBoard {
    config: AgentConfig,
    board: Mutex<Board>,
}

impl StatusBoard {
    /// An empty board for the agent configured by `config`.
    pub fn new(config: AgentConfig) -> StatusBoard {
        StatusBoard {
            config,
            board: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Board> {
        // A panic elsewhere leaves figures, never a broken invariant.
        self.board.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a migration starting; returns its number.
    pub fn begin(&self, workload: String, to: SocketAddr) -> u64 {
        let mut board = self.lock();
        board.next_id += 1;
        let id = board.next_id;
        board.running.insert(
            id,
            Running {
                workload,
                to,
                started: Instant::now(),
                progress: None,
            },
        );
        id
    }

    /// Records migration `id`'s latest progress.
    pub fn progress(&self, id: u64, progress: &Progress) {
        if let Some(running) = self.lock().running.get_mut(&id) {
            running.progress = Some(*progress);
        }
    }

    /// Records migration `id`'s end: its statistics, or why it failed.
    pub fn end(&self, id: u64, result: Result<&MigrationStats, &str>) {
        let mut board = self.lock();
        let Some(running) = board.running.remove(&id) else {
            return;
        };
        let (outcome, downtime_ms, bytes_sent, error) = match result {
            Ok(stats) => (
                "migrated",
                Some(stats.downtime.total_ms),
                Some(stats.bytes_sent),
                None,
            ),
            Err(e) => ("failed", None, None, Some(e.to_string())),
        };
        board.finished.push_front(FinishedMigration {
            id,
            workload: running.workload,
            to: running.to,
            finished_unix: unix_secs(SystemTime::now()),
            duration_secs: running.started.elapsed().as_secs_f64(),
            outcome: outcome.to_string(),
            downtime_ms,
            bytes_sent,
            error,
        });
        board.finished.truncate(FINISHED_KEPT);
    }

    /// The running migrations and the `last` finished ones.
    fn migrations(&self, last: usize) -> (Vec<RunningMigration>, Vec<FinishedMigration>) {
        let board = self.lock();
        let running = board
            .running
            .iter()
            .map(|(&id, r)| RunningMigration {
                id,
                workload: r.workload.clone(),
                to: r.to,
                elapsed_secs: r.started.elapsed().as_secs_f64(),
                progress: r.progress,
                eta_secs: r.progress.and_then(|p| {
                    (p.throughput_bytes_per_sec > 0.0)
                        .then(|| p.remaining_bytes as f64 / p.throughput_bytes_per_sec)
                }),
            })
            .collect();
        let finished = board.finished.iter().take(last).cloned().collect();
        (running, finished)
    }
}

/// The agent's status: the board's migrations (the `last` finished ones),
/// its own certificate, and each configured peer tried with a handshake
/// (one after the other, each within [`PEER_TIMEOUT`]).
pub async fn status(board: &StatusBoard, transport: &Transport, last: usize) -> AgentStatus {
    let config = &board.config;
    let peers = peer_statuses(config, transport).await;
    let (running, finished) = board.migrations(last);
    AgentStatus {
        version: env!("CARGO_PKG_VERSION").to_string(),
        name: config.name.clone(),
        config_file: config.file.clone(),
        listen: config.listen,
        certificate: CertificateStatus::of(
            certs::pem_file_expiry(&config.cert).map_err(|e| e.to_string()),
        ),
        peers,
        running,
        finished,
    }
}

/// Tries a QUIC/TLS handshake with each configured peer, one after the
/// other.
async fn peer_statuses(config: &AgentConfig, transport: &Transport) -> Vec<PeerStatus> {
    let mut peers = Vec::with_capacity(config.peers.len());
    for (name, &address) in &config.peers {
        let unreachable = |error: String| PeerStatus {
            name: name.clone(),
            address,
            reachable: false,
            error: Some(error),
            certificate: CertificateStatus::of(Err("unknown: the peer is unreachable".into())),
        };
        let tried = tokio::time::timeout(PEER_TIMEOUT, transport.reach(address, name)).await;
        peers.push(match tried {
            Ok(Ok(expiry)) => PeerStatus {
                name: name.clone(),
                address,
                reachable: true,
                error: None,
                certificate: CertificateStatus::of(expiry),
            },
            Ok(Err(e)) => unreachable(e.to_string()),
            Err(_) => unreachable(format!("no handshake within {} s", PEER_TIMEOUT.as_secs())),
        });
    }
    peers
}

fn unix_secs(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
