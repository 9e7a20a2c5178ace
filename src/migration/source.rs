//! The source side of a live migration: offer the workload, pre-copy its
//! memory in rounds while it runs, freeze it, send the rest and its state,
//! and kill it only once the destination reports it running. On any
//! failure before that the workload is resumed where it was.

pub use super::docker::resolve as resolve_docker;
use super::error::MigrationError;
use super::network_sink::{namespace_tid_pairs, CopyPhase, NetworkSink};
pub use super::options::{DockerSource, MigrateOptions, MigrationMode};
use super::protocol::{Offer, Opening, ToDestination, ToSource};
use super::stats::{MigrationStats, Phase, Progress};
use crate::dump::{self, CheckpointError, CheckpointOptions};
use crate::image::ms;
use crate::transport::Session;
use std::time::Instant;
use tokio::runtime::Handle;

/// Why a migration failed. In every case the workload runs on the source.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The destination refused the offer before anything was frozen.
    #[error("the destination {peer} refused the migration of process {pid}: {reason}; the workload keeps running here")]
    Refused {
        /// The destination.
        peer: String,
        /// The workload.
        pid: i32,
        /// The destination's reason.
        reason: String,
    },
    /// The checkpoint side failed (refusal, or the destination failed while
    /// the workload was frozen: it was resumed).
    #[error("migrating process {pid} to {peer} failed: {source}; the workload keeps running here")]
    Checkpoint {
        /// The destination.
        peer: String,
        /// The workload.
        pid: i32,
        /// What failed.
        source: CheckpointError,
    },
    /// The conversation with the destination failed before freezing.
    #[error("migrating process {pid} to {peer} failed: {why}; the workload keeps running here")]
    Link {
        /// The destination.
        peer: String,
        /// The workload.
        pid: i32,
        /// What failed.
        #[source]
        why: MigrationError,
    },
    /// The container cannot move (refused before anything was frozen).
    #[error("migrating container {id} to {peer} failed: {why}; it keeps running here")]
    Container {
        /// The destination.
        peer: String,
        /// The container.
        id: String,
        /// Why.
        #[source]
        why: MigrationError,
    },
}

/// A migration from here, state by state. Until `Copying` ends, the
/// workload runs here (or is resumed here): what a failure undoes is
/// decided by the state it failed in ([`Outgoing::abort_on_failure`]).
enum Outgoing {
    /// The offer is ready: send it and read the destination's answer.
    Offering {
        offer: Box<Offer>,
        bundle: Option<std::path::PathBuf>,
    },
    /// `--sync-rootfs`: the first rootfs pass, while the container runs.
    SyncingRootfs { bundle: std::path::PathBuf },
    /// The checkpoint engine copies the workload through the
    /// [`NetworkSink`]: pre-copy rounds, the freeze, the switch-over
    /// ([`CopyPhase`]). It resumes the workload here on any failure, and
    /// ends it once the destination keeps its copy.
    Copying {
        rootfs: Option<super::rootfs_sync::SourceRootfs>,
    },
    /// The destination keeps the workload; ours is gone.
    Done { stats: MigrationStats },
}

impl Outgoing {
    /// Whether the destination holds anything of the migration a failure
    /// in this state must tell it to drop: from the accepted offer on.
    fn abort_on_failure(&self) -> bool {
        !matches!(self, Outgoing::Offering { .. } | Outgoing::Done { .. })
    }
}

/// What one migration from here works with, across its states.
struct SourceRun<'a> {
    rt: &'a Handle,
    session: &'a mut Session,
    pid: i32,
    peer: String,
    opts: &'a MigrateOptions,
    progress: &'a mut (dyn FnMut(&Progress) + Send),
    started: Instant,
    id: String,
    memory_bytes: u64,
}

impl MigrateError {
    /// What failed, without the words around it: the reason an abort
    /// tells the destination.
    fn cause(&self) -> String {
        match self {
            MigrateError::Refused { reason, .. } => reason.clone(),
            MigrateError::Checkpoint { source, .. } => source.to_string(),
            MigrateError::Link { why, .. } | MigrateError::Container { why, .. } => why.to_string(),
        }
    }
}

/// Migrates the process tree rooted at `pid` over `session`. Runs the
/// engine on this (blocking) thread and the network on `rt`; `progress`
/// is called after every round and phase change.
pub fn migrate(
    rt: &Handle,
    session: &mut Session,
    pid: i32,
    opts: &MigrateOptions,
    progress: &mut (dyn FnMut(&Progress) + Send),
) -> Result<MigrationStats, MigrateError> {
    let started = Instant::now();
    let peer = session.peer_addr().to_string();
    let (pid, container) = match &opts.container {
        None if opts.sync_rootfs => {
            return Err(MigrateError::Link {
                peer: peer.clone(),
                pid,
                why: MigrationError::local(
                    "--sync-rootfs carries a container's rootfs: name the --container",
                ),
            })
        }
        Some(c) => {
            let (pid, offer) = container_offer(c, opts).map_err(|why| MigrateError::Container {
                peer: peer.clone(),
                id: c.id.clone(),
                why,
            })?;
            (pid, Some(offer))
        }
        None => (pid, None),
    };
    if container.is_none() && crate::inspect::is_pid_namespace_init(pid) {
        return Err(MigrateError::Checkpoint {
            peer: peer.clone(),
            pid,
            source: CheckpointError::PidNamespaceNotMigrated { pid },
        });
    }
    let mut offer = make_offer(pid, opts.page_streams).map_err(|e| MigrateError::Checkpoint {
        peer: peer.clone(),
        pid,
        source: e,
    })?;
    // A container with a network namespace of its own takes its addresses
    // along (the destination's network hook gives them back).
    if container.as_ref().is_some_and(|c| c.network.is_some()) {
        offer.tcp_flows.clear();
    }
    if container.is_some() {
        offer.tids = namespace_tids(pid).map_err(|e| MigrateError::Checkpoint {
            peer: peer.clone(),
            pid,
            source: e,
        })?;
    }
    let bundle = container
        .as_ref()
        .map(|c| std::path::PathBuf::from(&c.bundle));
    offer.container = container;
    let mut run = SourceRun {
        rt,
        session,
        pid,
        peer,
        opts,
        progress,
        started,
        id: offer.id.clone(),
        memory_bytes: offer.memory_bytes,
    };
    let mut state = Outgoing::Offering {
        offer: Box::new(offer),
        bundle,
    };
    loop {
        state = match state {
            Outgoing::Done { stats } => return Ok(stats),
            state => {
                let abort = state.abort_on_failure();
                match run.step(state) {
                    Ok(next) => next,
                    Err(error) => {
                        if abort {
                            // Best effort: the destination cleans up on
                            // its own when the session ends without a
                            // State. Its answer comes once what it made
                            // for the migration (a container created at
                            // the offer) is gone: the error returns then,
                            // with nothing left there, or after
                            // ABORT_ANSWER_WAIT.
                            let reason = error.cause();
                            rt.block_on(send_abort(run.session, reason));
                        }
                        return Err(error);
                    }
                }
            }
        };
    }
}

/// How long an aborting source waits for the destination's answer.
const ABORT_ANSWER_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Tells the destination the migration is aborted, then waits (at most
/// [`ABORT_ANSWER_WAIT`]) for its answer, Failed, which it sends once it
/// has undone what the migration made there (or for the session's end).
async fn send_abort(session: &mut Session, reason: String) {
    if session
        .send(&ToDestination::Abort { reason })
        .await
        .is_err()
    {
        return;
    }
    let answered = async {
        loop {
            match session.recv::<ToSource>().await {
                Ok(ToSource::Failed { .. }) | Err(_) => return,
                Ok(_) => {} // answers to what came before
            }
        }
    };
    let _ = tokio::time::timeout(ABORT_ANSWER_WAIT, answered).await;
}

impl SourceRun<'_> {
    /// The error of a failed conversation with the destination.
    fn link(&self, why: MigrationError) -> MigrateError {
        MigrateError::Link {
            peer: self.peer.clone(),
            pid: self.pid,
            why,
        }
    }

    /// Runs `state` to the next one.
    fn step(&mut self, state: Outgoing) -> Result<Outgoing, MigrateError> {
        let rt = self.rt;
        match state {
            Outgoing::Offering { offer, bundle } => {
                rt.block_on(self.session.send(&Opening::Migrate(*offer)))
                    .map_err(|e| self.link(e.into()))?;
                match rt.block_on(self.session.recv::<ToSource>()) {
                    Ok(ToSource::Accepted) => {}
                    Ok(ToSource::Refused { reason }) => {
                        return Err(MigrateError::Refused {
                            peer: self.peer.clone(),
                            pid: self.pid,
                            reason,
                        })
                    }
                    Ok(other) => {
                        return Err(self.link(MigrationError::protocol(format!(
                            "the destination answered {other:?} to the offer"
                        ))))
                    }
                    Err(e) => return Err(self.link(e.into())),
                }
                Ok(match bundle.filter(|_| self.opts.sync_rootfs) {
                    Some(bundle) => Outgoing::SyncingRootfs { bundle },
                    None => Outgoing::Copying { rootfs: None },
                })
            }
            Outgoing::SyncingRootfs { bundle } => {
                match super::rootfs_sync::first_pass(rt, self.session, &bundle) {
                    Ok(r) => Ok(Outgoing::Copying { rootfs: Some(r) }),
                    Err(why) => {
                        let why = why
                            .within(format!("syncing the rootfs of {} failed", bundle.display()));
                        Err(self.link(why))
                    }
                }
            }
            Outgoing::Copying { rootfs } => self.copy(rootfs),
            Outgoing::Done { stats } => Ok(Outgoing::Done { stats }),
        }
    }

    /// Runs the checkpoint engine into the destination.
    fn copy(
        &mut self,
        rootfs: Option<super::rootfs_sync::SourceRootfs>,
    ) -> Result<Outgoing, MigrateError> {
        let (pid, opts) = (self.pid, self.opts);
        let mut sink = NetworkSink::new(
            self.rt.clone(),
            self.session,
            pid,
            opts,
            self.memory_bytes,
            self.progress,
        );
        sink.id = std::mem::take(&mut self.id);
        sink.rootfs = rootfs;
        if opts.mode == MigrationMode::Postcopy {
            // No rounds: the tree is frozen right away.
            sink.phase = CopyPhase::frozen(0);
        }
        let ck_opts = CheckpointOptions {
            in_container: opts.container.is_some(),
            lock_owner: Some(opts.lock_owner),
            external_stdio: crate::inspect::StdioPolicy::migrating(
                opts.container.is_some(),
                opts.docker.is_some(),
            ),
            ..Default::default()
        };
        let result = dump::checkpoint_into(pid, &mut sink, ck_opts);
        match result {
            Ok(checkpoint) => {
                if let Some(d) = &opts.docker {
                    super::docker::leave(d);
                } else if let Some(c) = &opts.container {
                    // Its processes are gone: the runtime's record goes too.
                    if let Err(e) = c.delete() {
                        tracing::warn!(id = %c.id, %e, "deleting the migrated container's record failed");
                    }
                }
                let (mut stats, progress) = sink.finish();
                stats.total_ms = ms(self.started.elapsed());
                stats.downtime.frozen_ms = checkpoint.frozen_ms;
                stats.zero_pages = checkpoint.zero_pages;
                progress(&Progress {
                    phase: Phase::Done,
                    round: stats.rounds.len() as u32,
                    bytes_sent: stats.bytes_sent,
                    memory_bytes: stats.memory_bytes,
                    remaining_bytes: 0,
                    dirty_bytes_per_sec: 0.0,
                    throughput_bytes_per_sec: stats.throughput_bytes_per_sec,
                });
                Ok(Outgoing::Done { stats })
            }
            Err(source) => {
                sink.abort_lanes();
                Err(MigrateError::Checkpoint {
                    peer: self.peer.clone(),
                    pid,
                    source,
                })
            }
        }
    }
}

/// The running container's init PID and what the destination needs to
/// create it again; refuses (before anything is frozen) a container that
/// is not running or has a process outside its init's tree, and one that
/// cannot be restored with lazy memory when `mode` asks for that.
fn container_offer(
    c: &crate::container::Container,
    opts: &MigrateOptions,
) -> Result<(i32, super::protocol::ContainerOffer), MigrationError> {
    crate::container::check_capabilities().map_err(MigrationError::local)?;
    let st = c.running().map_err(MigrationError::local)?;
    crate::container::check_tree(&c.id, st.pid).map_err(MigrationError::local)?;
    // ferry-runc creates a Docker container's init on the destination
    // with CAP_SYS_PTRACE for the restore (and drops it at its end).
    if opts.mode != MigrationMode::Precopy && opts.docker.is_none() {
        check_lazy_container(&c.id, st.pid)?;
    }
    // dockerd's network hook gives a Docker container its address again.
    let network = match opts.docker {
        Some(_) => None,
        None => crate::container::net::record(&c.id, st.pid).map_err(MigrationError::local)?,
    };
    let default_root = c.runtime.default_root();
    Ok((
        st.pid,
        super::protocol::ContainerOffer {
            id: c.id.clone(),
            runtime: c.runtime,
            runtime_root: (c.root != default_root).then(|| c.root.display().to_string()),
            bundle: st.bundle,
            network,
            docker: opts.docker.as_ref().map(|d| d.spec.clone()),
        },
    ))
}

/// CAP_SYS_PTRACE's bit in a capability set.
const CAP_SYS_PTRACE: u64 = 1 << 19;

/// Refuses a post-copy or hybrid migration of container `id` whose init
/// `init` lacks CAP_SYS_PTRACE: the destination creates each process's
/// userfaultfd inside the container, by an injected call made with the
/// container's capabilities, and one that also catches faults taken in
/// system calls (a read() into a page still on the source) needs it.
pub(super) fn check_lazy_container(id: &str, init: i32) -> Result<(), MigrationError> {
    let status = crate::proc::read_status(init).map_err(MigrationError::local)?;
    if status.caps.effective & CAP_SYS_PTRACE == 0 {
        return Err(MigrationError::local(format!(
            "container {id} (init {init}) lacks CAP_SYS_PTRACE, which a post-copy restore needs inside it (a userfaultfd that catches faults in system calls); add it to process.capabilities of its config.json, or use --mode precopy"
        )));
    }
    Ok(())
}

/// Every TID of the tree rooted at `pid` as its PID namespace names them
/// (the names its page frames carry).
fn namespace_tids(pid: i32) -> Result<Vec<i32>, CheckpointError> {
    Ok(namespace_tid_pairs(pid)?
        .into_iter()
        .map(|(_, ns)| ns)
        .collect())
}

/// The offer for the tree rooted at `pid`: every TID of every process,
/// the CPU state format and the memory size.
pub(crate) fn make_offer(pid: i32, page_streams: u32) -> Result<Offer, CheckpointError> {
    let mut tids = Vec::new();
    let mut memory_bytes = 0;
    let members = crate::inspect::collect_tree(pid)?;
    for &process in &members {
        let read = crate::proc::task_ids(process)
            .and_then(|t| crate::proc::rss_bytes(process).map(|rss| (t, rss)));
        match read {
            Ok((t, rss)) => {
                tids.extend(t);
                memory_bytes += rss;
            }
            // A child that ended since the tree was listed (a server's
            // short-lived worker) is not offered; the freeze decides.
            Err(_) if process != pid && crate::inspect::gone(process) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let tcp_flows = crate::inspect::tree_flows(&members)?;
    Ok(Offer {
        id: format!("{}-{pid}-{}", crate::proc::hostname(), std::process::id()),
        pid,
        tids,
        xcr0: crate::kernel::cpu::xcr0(),
        xstate_size: crate::kernel::cpu::xsave_size(),
        memory_bytes,
        page_streams,
        container: None,
        tcp_flows,
    })
}
