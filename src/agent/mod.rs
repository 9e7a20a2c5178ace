//! The per-host daemon (`migrate-agent serve`): a QUIC endpoint that
//! receives migrations from peer agents, and a root-only unix control
//! socket on which the local CLI asks it to migrate a workload away and
//! follows the progress.

mod dry_run;
pub mod fault;
mod status;

pub use status::{
    AgentStatus, CertificateStatus, FinishedMigration, PeerStatus, RunningMigration, StatusBoard,
    FINISHED_KEPT,
};

use crate::config::AgentConfig;
use crate::migration::calibrate;
use crate::migration::destination::{self, DestinationOptions, Outcome, Reconnect};
use crate::migration::dryrun::DryRunReport;
use crate::migration::dryrun_job::DryRunRequest;
use crate::migration::history::{self, PastMigration};
use crate::migration::policy::Limits;
use crate::migration::postcopy;
use crate::migration::source::{self, MigrateOptions};
use crate::migration::stats::{MigrationStats, Progress};
use crate::transport::{self, Settings, Transport};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

mod workdir;
pub use workdir::ClaimError;

/// How long the destination waits for the source's last confirmation.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

/// A request from the CLI to the local agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControlRequest {
    /// Migrate process `pid` (as this agent sees it) to another agent.
    Migrate(MigrateRequest),
    /// Dry-run process `pid` (as this agent sees it): measure its writes
    /// and, if asked, probe the destination; answered with
    /// [`ControlEvent::DryRun`] or [`ControlEvent::Failed`]. The CLI ends
    /// the measurement early by shutting down its writing half.
    DryRun(DryRunRequest),
    /// Report the agent's status (`migrate-agent status`) with its `last`
    /// finished migrations: answered with [`ControlEvent::Status`].
    Status {
        /// How many finished migrations to include (newest first).
        last: u32,
    },
}

/// The parameters of `migrate-agent migrate`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MigrateRequest {
    /// Root PID of the workload.
    pub pid: i32,
    /// The destination agent's QUIC address.
    pub to: SocketAddr,
    /// The name the destination's certificate must carry (by default the
    /// address itself, for certificates issued with an IP name).
    pub server_name: String,
    /// The longest acceptable freeze, in milliseconds.
    pub max_downtime_ms: f64,
    /// How memory moves (pre-copy, post-copy, hybrid).
    #[serde(default)]
    pub mode: crate::migration::source::MigrationMode,
    /// Pre-copy rounds at most.
    pub max_rounds: u32,
    /// Page bytes per second at most.
    pub bandwidth_limit: Option<u64>,
    /// Migrate this container instead of `pid`: (runtime, its state
    /// directory or None for the default, container ID).
    pub container: Option<(
        crate::container::Runtime,
        Option<std::path::PathBuf>,
        String,
    )>,
    /// Copy the differences of the container's rootfs (`--sync-rootfs`).
    pub sync_rootfs: bool,
    /// Migrate this Docker container instead of `pid` or `container`.
    pub docker: Option<DockerRequest>,
}

/// A Docker container to migrate (`migrate --docker`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DockerRequest {
    /// Its name or ID.
    pub name: String,
    /// The socket of the dockerd it runs on (None: the agent's
    /// `[container] docker_socket`).
    pub socket: Option<PathBuf>,
    /// Leave it stopped here once it runs on the destination, instead of
    /// removing it.
    pub keep_stopped: bool,
}

/// What the agent reports back on the control socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControlEvent {
    /// A progress report.
    Progress(Progress),
    /// The workload runs on the destination.
    Migrated(MigrationStats),
    /// The migration failed; the message says where the workload runs.
    Failed {
        /// The error, as a sentence.
        error: String,
    },
    /// The report of a [`ControlRequest::DryRun`].
    DryRun(Box<DryRunReport>),
    /// The answer to [`ControlRequest::Status`].
    Status(Box<AgentStatus>),
}

/// Why the daemon could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The QUIC endpoint could not be set up.
    #[error(transparent)]
    Bind(#[from] transport::BindError),
    /// The control socket could not be created.
    #[error("cannot create the control socket {path}: {source}")]
    ControlSocket {
        /// The socket path.
        path: PathBuf,
        /// The system's reason.
        source: std::io::Error,
    },
    /// The work directory belongs to another live agent, or could not be
    /// locked.
    #[error(transparent)]
    Claim(#[from] ClaimError),
    /// The work directory could not be created.
    #[error("cannot create the work directory {path}: {source}")]
    WorkDir {
        /// The directory.
        path: PathBuf,
        /// The system's reason.
        source: std::io::Error,
    },
}

/// Runs the daemon until the process is killed.
pub async fn serve(config: AgentConfig) -> Result<(), ServeError> {
    std::fs::create_dir_all(&config.work_dir).map_err(|source| ServeError::WorkDir {
        path: config.work_dir.clone(),
        source,
    })?;
    let lock_owner = crate::netlock::Owner::of_dir(&config.work_dir);
    sweep_network_locks(lock_owner);
    // Held until the agent ends: what is in the work directory is this
    // agent's from here on.
    let _work_dir = workdir::claim(&config.work_dir)?;
    let transport = Arc::new(Transport::bind(Settings::from_config(&config)).await?);
    let recovery = Duration::from_secs(config.postcopy_recovery_secs);
    let listener = bind_control(&config.control_socket)?;
    let board = Arc::new(StatusBoard::new(config.clone()));
    let dockerd = crate::container::docker::Docker::new(&config.container.docker_socket());
    tracing::info!(
        name = %config.name,
        listen = %config.listen,
        control = %config.control_socket.display(),
        "agent ready"
    );
    let dest = DestinationOptions {
        work_dir: config.work_dir.clone(),
        confirm_timeout: CONFIRM_TIMEOUT,
        reconnect: Some(Reconnect {
            transport: transport.clone(),
            within: recovery,
        }),
        network_hook: config.container.network_hook.clone(),
        docker: dockerd.clone(),
    };
    crate::migration::settle::recover(&dest);
    crate::migration::source_hold::recover(
        &config.work_dir,
        recovery + crate::migration::postcopy::RESUME_MARGIN,
    );
    let incoming = {
        let transport = transport.clone();
        tokio::spawn(async move {
            loop {
                match transport.accept().await {
                    Ok(mut session) => {
                        let dest = dest.clone();
                        tokio::spawn(async move {
                            let peer = session.peer_agent().to_string();
                            match destination::receive(&mut session, &dest).await {
                                Ok(Outcome::Received(r)) => {
                                    tracing::info!(%peer, id = %r.id, pid = r.pid, restore_ms = r.restore_ms, pages_moved = r.pages_moved, "migration received; the workload runs here")
                                }
                                Ok(Outcome::Probed) => {
                                    tracing::info!(%peer, "answered a dry-run probe")
                                }
                                Ok(Outcome::Answered(id, verdict)) => {
                                    tracing::info!(%peer, %id, ?verdict, "told a destination the outcome of a migration")
                                }
                                Ok(Outcome::Resume(req)) => {
                                    // The session now belongs to the waiting source.
                                    return postcopy::hand_over(session, req).await;
                                }
                                Err(e) => tracing::warn!(%peer, "{e}"),
                            }
                            session.close("migration finished");
                        });
                    }
                    Err(e) => tracing::warn!("refused a peer: {e}"),
                }
            }
        })
    };
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let transport = transport.clone();
                let board = board.clone();
                let dockerd = dockerd.clone();
                let work_dir = config.work_dir.clone();
                tokio::spawn(async move {
                    let local = LocalSetup {
                        recovery,
                        lock_owner,
                        dockerd,
                        journal: crate::migration::journal::Journal::of(&work_dir),
                        work_dir,
                    };
                    if let Err(e) = handle_control(stream, transport, local, board).await {
                        tracing::warn!("control connection: {e}");
                    }
                });
            }
            Err(e) => {
                tracing::error!("control socket: {e}");
                incoming.abort();
                return Err(ServeError::ControlSocket {
                    path: config.control_socket.clone(),
                    source: e,
                });
            }
        }
    }
}

/// Removes the network locks a previous run of this agent (same work
/// directory) left when it was killed mid-migration, in its own network
/// namespace and in those its journal names (a container's): their
/// connections would stay silent for ever. Only this agent's tables are
/// touched. Without nft no lock was ever made.
fn sweep_network_locks(owner: crate::netlock::Owner) {
    use crate::netlock::{NetLockError, NetNs};
    let swept = NetNs::current()
        .and_then(|netns| crate::netlock::sweep(owner, &netns))
        .and_then(|_| crate::netlock::sweep_journaled(owner));
    match swept {
        Ok(_) => {}
        Err(NetLockError::Spawn { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => tracing::warn!(%err, "removing stale network locks failed"),
    }
}

/// Creates the control socket in a root-only directory, replacing a stale
/// socket left by a previous agent.
fn bind_control(path: &Path) -> Result<UnixListener, ServeError> {
    let err = |source| ServeError::ControlSocket {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(err(e)),
        _ => {}
    }
    let listener = UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    Ok(listener)
}

/// The local peer's name in control-socket error messages.
const LOCAL_PEER: &str = "the local CLI";

/// What a migration from here takes from the agent's configuration.
#[derive(Debug, Clone)]
struct LocalSetup {
    /// Post-copy recovery time.
    recovery: Duration,
    /// The owner of the network locks this agent makes.
    lock_owner: crate::netlock::Owner,
    /// The dockerd here (`[container] docker_socket`).
    dockerd: crate::container::docker::Docker,
    /// The work directory: the cost model's history of past migrations
    /// lives there.
    work_dir: std::path::PathBuf,
    /// This agent's two-phase commit records.
    journal: crate::migration::journal::Journal,
}

async fn handle_control(
    mut stream: UnixStream,
    transport: Arc<Transport>,
    local: LocalSetup,
    board: Arc<StatusBoard>,
) -> Result<(), String> {
    let creds = stream.peer_cred().map_err(|e| e.to_string())?;
    if creds.uid() != 0 {
        return Err(format!(
            "refused a control connection from uid {}",
            creds.uid()
        ));
    }
    let request: ControlRequest = transport::read_message(&mut stream, LOCAL_PEER)
        .await
        .map_err(|e| e.to_string())?;
    let req = match request {
        ControlRequest::Migrate(req) => req,
        ControlRequest::DryRun(req) => {
            let ran = dry_run::run(
                req,
                &transport,
                &mut stream,
                &local.work_dir,
                &local.dockerd,
            );
            let event = match ran.await {
                Ok(report) => ControlEvent::DryRun(Box::new(report)),
                Err(error) => ControlEvent::Failed { error },
            };
            return transport::write_message(&mut stream, LOCAL_PEER, &event)
                .await
                .map_err(|e| e.to_string());
        }
        ControlRequest::Status { last } => {
            let report = status::status(&board, &transport, last as usize).await;
            let event = ControlEvent::Status(Box::new(report));
            return transport::write_message(&mut stream, LOCAL_PEER, &event)
                .await
                .map_err(|e| e.to_string());
        }
    };
    let (events_tx, mut events_rx) = mpsc::unbounded_channel::<ControlEvent>();
    let job = tokio::spawn(run_migration(req, transport, local, events_tx, board));
    while let Some(event) = events_rx.recv().await {
        // The CLI may be gone (Ctrl-C): the migration goes on regardless.
        if transport::write_message(&mut stream, LOCAL_PEER, &event)
            .await
            .is_err()
        {
            tracing::info!("the CLI left; the migration continues");
        }
    }
    job.await.map_err(|e| e.to_string())
}

/// The kind, processes, threads and staged bytes (what a warm restore
/// moves instead of installing) of the workload a migration is about to
/// move (the tree of `pid`, or of the running `container`'s init), for
/// its entry in the cost model's history; None when it cannot be read.
fn history_subject(
    pid: i32,
    container: Option<&crate::container::Container>,
    docker: bool,
) -> Option<(crate::migration::costmodel::WorkloadKind, u64, u64, u64)> {
    let (root, kind) = match container {
        None => (pid, crate::migration::costmodel::WorkloadKind::Tree),
        Some(c) => {
            let init = c.running().ok()?.pid;
            (init, calibrate::container_kind(&c.id, init, docker).ok()?)
        }
    };
    let members = crate::inspect::collect_tree(root).ok()?;
    // What a warm restore stages: a plain tree's root's anonymous memory.
    let staged = match kind {
        crate::migration::costmodel::WorkloadKind::Tree => {
            crate::proc::anonymous_bytes(root).unwrap_or(0)
        }
        _ => 0,
    };
    Some((
        kind,
        members.len() as u64,
        calibrate::tree_threads(&members),
        staged,
    ))
}

async fn run_migration(
    req: MigrateRequest,
    transport: Arc<Transport>,
    local: LocalSetup,
    events: mpsc::UnboundedSender<ControlEvent>,
    board: Arc<StatusBoard>,
) {
    let pid = req.pid;
    let workload = match (&req.docker, &req.container) {
        (Some(d), _) => format!("Docker container {}", d.name),
        (None, Some((_, _, id))) => format!("container {id}"),
        (None, None) => format!("process {pid}"),
    };
    let id = board.begin(workload, req.to);
    let mut container = req
        .container
        .as_ref()
        .map(|(runtime, root, id)| crate::container::Container::new(*runtime, root.as_deref(), id));
    let mut docker = None;
    if let Some(d) = req.docker.clone() {
        let dockerd = d.socket.as_deref().map_or_else(
            || local.dockerd.clone(),
            crate::container::docker::Docker::new,
        );
        let resolved = tokio::task::spawn_blocking(move || {
            source::resolve_docker(&dockerd, &d.name, d.keep_stopped)
        })
        .await;
        match resolved {
            Ok(Ok((c, s))) => {
                container = Some(c);
                docker = Some(s);
            }
            failed => {
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    Err(e) => e.to_string(),
                    Ok(Ok(_)) => unreachable!("handled above"),
                };
                let error = format!(
                    "the Docker container cannot move: {why}; it keeps running here, untouched"
                );
                board.end(id, Err(&error));
                let _ = events.send(ControlEvent::Failed { error });
                return;
            }
        }
    }
    let mut session = match transport.connect(req.to, &req.server_name).await {
        Ok(s) => s,
        Err(e) => {
            let error = format!("{e}; process {pid} keeps running here, untouched");
            board.end(id, Err(&error));
            let _ = events.send(ControlEvent::Failed { error });
            return;
        }
    };
    let opts = MigrateOptions {
        mode: req.mode,
        limits: Limits {
            max_downtime_ms: req.max_downtime_ms,
            max_rounds: req.max_rounds.max(1),
        },
        bandwidth_limit: req.bandwidth_limit,
        page_streams: session.bulk_connections() as u32,
        container,
        postcopy_recovery: local.recovery,
        sync_rootfs: req.sync_rootfs,
        lock_owner: local.lock_owner,
        docker,
        journal: local.journal,
    };
    // The migration's measured parts go to the cost model's history, a
    // lazy one's marked (the tree's size and kind are read before it
    // moves).
    let lazy = req.mode != crate::migration::source::MigrationMode::Precopy;
    let work_dir = local.work_dir.clone();
    let rt = tokio::runtime::Handle::current();
    let progress_events = events.clone();
    let progress_board = board.clone();
    let result = tokio::task::spawn_blocking(move || {
        let mut progress = |p: &Progress| {
            progress_board.progress(id, p);
            let _ = progress_events.send(ControlEvent::Progress(*p));
        };
        let size = history_subject(pid, opts.container.as_ref(), opts.docker.is_some());
        let result = source::migrate(&rt, &mut session, pid, &opts, &mut progress);
        session.close("migration finished");
        if let (Ok(stats), Some(subject)) = (&result, size) {
            let to = req.to.to_string();
            let past = PastMigration::from_stats((&to, lazy), subject, stats);
            if let Err(e) = history::record(&work_dir, past) {
                tracing::warn!(
                    "cannot keep the migration's costs in {}: {e}",
                    work_dir.display()
                );
            }
        }
        result
    })
    .await;
    let event = match result {
        Ok(Ok(stats)) => {
            tracing::info!(pid, downtime_ms = stats.downtime.total_ms, "migrated");
            ControlEvent::Migrated(stats)
        }
        Ok(Err(e)) => ControlEvent::Failed {
            error: e.to_string(),
        },
        Err(e) => ControlEvent::Failed {
            error: format!("the migration task of process {pid} failed: {e}"),
        },
    };
    match &event {
        ControlEvent::Migrated(stats) => board.end(id, Ok(stats)),
        ControlEvent::Failed { error } => board.end(id, Err(error)),
        _ => {}
    }
    let _ = events.send(event);
}

/// Sends `request` to the agent listening on `socket` and calls `on_event`
/// for every event until the final one, which is returned.
pub async fn request(
    socket: &Path,
    request: &ControlRequest,
    on_event: impl FnMut(&ControlEvent),
) -> Result<ControlEvent, String> {
    request_until(socket, request, on_event, std::future::pending()).await
}

/// [`request`], and once `stop` completes, shuts down the writing half of
/// the connection (the agent ends a dry run's measurement early) and still
/// waits for the final event.
pub async fn request_until(
    socket: &Path,
    request: &ControlRequest,
    mut on_event: impl FnMut(&ControlEvent),
    stop: impl std::future::Future<Output = ()>,
) -> Result<ControlEvent, String> {
    let mut stream = UnixStream::connect(socket).await.map_err(|e| {
        format!(
            "cannot reach the local agent at {}: {e} (is `migrate-agent serve` running?)",
            socket.display()
        )
    })?;
    let agent = format!("the agent at {}", socket.display());
    transport::write_message(&mut stream, &agent, request)
        .await
        .map_err(|e| e.to_string())?;
    let (mut reader, mut writer) = stream.split();
    tokio::pin!(stop);
    let mut stopped = false;
    // Cancelling a read in the middle of a message would lose its start:
    // the agent sends nothing while a dry run measures, which is the only
    // time `stop` is not pending.
    loop {
        let event: ControlEvent = tokio::select! {
            event = transport::read_message(&mut reader, &agent) => event.map_err(|e| e.to_string())?,
            () = &mut stop, if !stopped => {
                stopped = true;
                tokio::io::AsyncWriteExt::shutdown(&mut writer)
                    .await
                    .map_err(|e| format!("cannot stop the request to {agent}: {e}"))?;
                continue;
            }
        };
        match event {
            ControlEvent::Progress(_) => on_event(&event),
            final_event => return Ok(final_event),
        }
    }
}
