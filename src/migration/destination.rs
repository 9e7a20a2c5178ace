//! The destination side of a live migration: accept or refuse the offer,
//! store the pages of every round as they arrive, and on the frozen state
//! restore the workload, report it running and keep it only once the
//! source confirms. On any failure nothing is left here.

use super::destination_shared::{
    name, prepare_container, prepare_lock, restore_locked, sanitize, ContainerTarget, Workload,
};
pub use super::destination_shared::{DestinationOptions, DestinationState, Received, Reconnect};
use super::error::MigrationError;
use super::page_store::{wait_round, PageQuota, PageStore, StoredFrames, NO_PROGRESS_TIMEOUT};
use super::postcopy_destination::PostCopyArrival;
use super::protocol::{
    Offer, Opening, ProbeOffer, ProbeToDestination, ProbeToSource, ToDestination, ToSource,
};
use crate::image::ImageSink;
use crate::image::{Checkpoint, ImageWriter};
use crate::netlock::NetLock;
use crate::restore::warm::WarmHusk;
use crate::restore::RestoreStats;
use crate::transport::Session;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What a session opened by a peer agent was for.
#[derive(Debug)]
pub enum Outcome {
    /// A migration: the workload runs here.
    Received(Received),
    /// A dry run's probe: nothing was kept.
    Probed,
    /// The destination of a post-copy migration from here reconnects after
    /// the link broke: hand the session to the waiting source
    /// ([`super::postcopy::hand_over`]).
    Resume(super::protocol::ResumeRequest),
    /// A destination asked how migration (the string) ended, and was
    /// told.
    Answered(String, super::protocol::Verdict),
}

/// Why receiving a migration failed. Nothing of it is left here.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    /// The peer broke the protocol or the link failed.
    #[error("migration from {peer} failed in state {state:?}: {why}")]
    Failed {
        /// The source agent.
        peer: String,
        /// Where the migration was.
        state: DestinationState,
        /// What went wrong.
        #[source]
        why: MigrationError,
    },
}

/// How long a failed migration's session stays open for the source to
/// read why.
const LINGER: Duration = Duration::from_secs(2);

/// A migration received here, state by state. Each state carries what it
/// holds here, and so what a failure in it leaves to undo ([`Undo`]): the
/// image directory from `Accepted` on, the restored workload from
/// `Running` on (post-copy decides its own, see
/// [`super::postcopy_destination`]).
enum Receipt {
    /// Waiting for the source's first message: an offer, a dry run's
    /// probe, or a post-copy resume.
    Accepting,
    /// A dry run's probe: answer it, keeping nothing.
    Probing(Box<ProbeOffer>),
    /// The offer is taken, its image created and its connections' lock
    /// prepared: tell the source.
    Accepted {
        offer: Offer,
        dir: PathBuf,
        writer: ImageWriter,
        lock: Option<NetLock>,
        target: Option<ContainerTarget>,
    },
    /// Storing the pages of the pre-copy rounds (one control message a
    /// step).
    Receiving(Box<Receiving>),
    /// The frozen state arrived: restore the workload from the image.
    Restoring {
        offer: Offer,
        dir: PathBuf,
        checkpoint: Box<Checkpoint>,
        writer: ImageWriter,
        /// The husk the root's pages were staged in, for a warm restore.
        warm: Option<WarmHusk>,
        lock: Option<NetLock>,
        target: Option<ContainerTarget>,
    },
    /// The post-copy switch-over arrived: restore with lazy memory and
    /// fetch the rest from the source.
    PostCopy(Box<PostCopyArrival>),
    /// The workload runs here: report it and wait for the source's
    /// confirmation.
    Running {
        offer: Offer,
        dir: PathBuf,
        workload: Workload,
        restore: RestoreStats,
    },
    /// Finished: what the session was for, and the image to remove.
    Done {
        dir: Option<PathBuf>,
        outcome: Outcome,
    },
}

/// The pre-copy rounds arriving: the page store and what it counted.
struct Receiving {
    offer: Offer,
    dir: PathBuf,
    store: PageStore,
    stored: StoredFrames,
    counts: BTreeMap<u32, u64>,
    round: u32,
    rootfs: super::rootfs_sync::DestinationRootfs,
    /// The connections' lock, prepared (not yet effective).
    lock: Option<NetLock>,
    /// The container, made ready at the offer.
    target: Option<ContainerTarget>,
}

/// A step that failed: why, in which state, and what that state held.
struct Failure {
    error: MigrationError,
    state: DestinationState,
    undo: Undo,
    /// The session is a probe's, whose messages are its own.
    probing: bool,
}

/// Receives one migration on `session` (the source has just connected),
/// or answers a probe, or recognises a post-copy resume.
pub async fn receive(
    session: &mut Session,
    opts: &DestinationOptions,
) -> Result<Outcome, ReceiveError> {
    let peer = session.peer_addr().to_string();
    let mut receipt = Receipt::Accepting;
    let failure = loop {
        receipt = match receipt {
            Receipt::Done { dir, outcome } => {
                if let Some(dir) = dir {
                    remove_image(&dir);
                }
                return Ok(outcome);
            }
            receipt => match receipt.step(session, opts).await {
                Ok(next) => next,
                Err(failure) => break failure,
            },
        };
    };
    let Failure {
        error,
        state,
        undo,
        probing,
    } = failure;
    tracing::warn!(%peer, ?state, why = %error, "migration failed; cleaning up");
    let reason = format!("the destination failed while {}: {error}", describe(state));
    let _ = if probing {
        session.send(&ProbeToSource::Failed { reason }).await
    } else {
        session.send(&ToSource::Failed { reason }).await
    };
    undo.run();
    // Nothing is left here now. Closing at once would lose the answers in
    // flight (a refusal, the failure): let the source read them and close
    // first.
    let _ = tokio::time::timeout(LINGER, async {
        if probing {
            while session.recv::<ProbeToDestination>().await.is_ok() {}
        } else {
            while session.recv::<ToDestination>().await.is_ok() {}
        }
    })
    .await;
    Err(ReceiveError::Failed {
        peer,
        state,
        why: error,
    })
}

fn describe(state: DestinationState) -> String {
    match state {
        DestinationState::Accepting => "checking the offer".into(),
        DestinationState::Receiving { round } => format!("storing round {round}"),
        DestinationState::Restoring => "restoring".into(),
        DestinationState::PostCopy => "fetching pages from the source (post-copy)".into(),
        DestinationState::Running => "waiting for the source's confirmation".into(),
        DestinationState::Done => "finishing".into(),
    }
}

impl Receipt {
    /// The state's name, for the log and the error.
    fn name(&self) -> DestinationState {
        match self {
            Receipt::Accepting | Receipt::Probing(_) | Receipt::Accepted { .. } => {
                DestinationState::Accepting
            }
            Receipt::Receiving(r) => DestinationState::Receiving { round: r.round },
            Receipt::Restoring { .. } | Receipt::PostCopy(_) => DestinationState::Restoring,
            Receipt::Running { .. } => DestinationState::Running,
            Receipt::Done { .. } => DestinationState::Done,
        }
    }

    /// What a failure in this state leaves to undo: the one place that
    /// says which state holds the image and which the workload.
    fn undo(&self) -> Undo {
        match self {
            Receipt::Accepting | Receipt::Probing(_) | Receipt::Done { .. } => Undo::Nothing,
            Receipt::Accepted { dir, .. } | Receipt::Restoring { dir, .. } => {
                Undo::Image(dir.clone())
            }
            Receipt::Receiving(r) => Undo::Image(r.dir.clone()),
            Receipt::PostCopy(a) => Undo::Image(a.dir.clone()),
            Receipt::Running { dir, workload, .. } => Undo::Workload(workload.clone(), dir.clone()),
        }
    }

    /// Runs this state to the next one.
    async fn step(self, session: &mut Session, opts: &DestinationOptions) -> Result<Self, Failure> {
        let (state, undo) = (self.name(), self.undo());
        let probing = matches!(self, Receipt::Probing(_));
        let fail = |error| Failure {
            error,
            state,
            undo: undo.clone(),
            probing,
        };
        match self {
            Receipt::Accepting => accept(session, opts).await.map_err(fail),
            Receipt::Probing(probe) => {
                super::probe::answer_probe(session, *probe)
                    .await
                    .map_err(fail)?;
                Ok(Receipt::Done {
                    dir: None,
                    outcome: Outcome::Probed,
                })
            }
            Receipt::Accepted {
                offer,
                dir,
                writer,
                lock,
                target,
            } => {
                session
                    .send(&ToSource::Accepted)
                    .await
                    .map_err(|e| fail(e.into()))?;
                let quota = PageQuota::for_memory(offer.memory_bytes);
                let incoming = session.take_incoming_pages();
                // A plain tree's root is restored in a husk spawned here
                // (a container's in its runtime's init): its pages can
                // wait in that husk from the first round on.
                let warm_root = offer.container.is_none().then_some(offer.pid);
                let (store, stored) =
                    PageStore::start(writer, dir.clone(), incoming, (quota, warm_root));
                Ok(Receipt::Receiving(Box::new(Receiving {
                    offer,
                    dir,
                    store,
                    stored,
                    counts: BTreeMap::new(),
                    round: 0,
                    rootfs: Default::default(),
                    lock,
                    target,
                })))
            }
            Receipt::Receiving(r) => r.step(session).await.map_err(fail),
            Receipt::Restoring {
                offer,
                dir,
                checkpoint,
                writer,
                warm,
                lock,
                target,
            } => restore(
                opts,
                offer,
                dir,
                (*checkpoint, writer, warm),
                (lock, target),
            )
            .await
            .map_err(fail),
            Receipt::PostCopy(arrival) => {
                let dir = arrival.dir.clone();
                match super::postcopy_destination::run(session, opts, *arrival).await {
                    Ok(received) => Ok(Receipt::Done {
                        dir: Some(dir),
                        outcome: Outcome::Received(received),
                    }),
                    Err(f) => Err(Failure {
                        error: f.error,
                        state: f.state,
                        undo: match f.workload {
                            Some(w) => Undo::Workload(w, dir),
                            None => Undo::Image(dir),
                        },
                        probing: false,
                    }),
                }
            }
            Receipt::Running {
                offer,
                dir,
                restore,
                workload,
            } => {
                super::settle::prepare_and_settle(session, opts, &offer.id, &restore, &workload)
                    .await
                    .map_err(fail)?;
                Ok(Receipt::Done {
                    dir: Some(dir),
                    outcome: Outcome::Received(Received {
                        id: offer.id,
                        pid: restore.pid,
                        restore_ms: restore.restore_ms,
                        pages_moved: restore.pages_moved,
                    }),
                })
            }
            Receipt::Done { .. } => unreachable!("a finished receipt takes no step"),
        }
    }
}

/// What a failed state leaves here, undone in this order: the workload
/// killed (or its container deleted), then the image removed.
#[derive(Clone)]
enum Undo {
    /// Nothing was created here yet.
    Nothing,
    /// The image directory.
    Image(PathBuf),
    /// The restored workload and its image directory.
    Workload(Workload, PathBuf),
}

impl Undo {
    fn run(self) {
        match self {
            Undo::Nothing => {}
            Undo::Image(dir) => remove_image(&dir),
            Undo::Workload(workload, dir) => {
                workload.remove();
                remove_image(&dir);
            }
        }
    }
}

/// Removes a migration's image directory.
fn remove_image(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir) {
        tracing::warn!(dir = %dir.display(), %e, "cannot remove an incoming image");
    }
}

/// Reads the source's first message: checks and takes an offer (creating
/// its image), answers a probe, or recognises a post-copy resume.
async fn accept(
    session: &mut Session,
    opts: &DestinationOptions,
) -> Result<Receipt, MigrationError> {
    let opening = tokio::time::timeout(NO_PROGRESS_TIMEOUT, session.recv::<Opening>())
        .await
        .map_err(|_| {
            MigrationError::protocol(format!(
                "the peer opened a session and said nothing for {NO_PROGRESS_TIMEOUT:?}"
            ))
        })??;
    let offer = match opening {
        Opening::Migrate(offer) => offer,
        Opening::Probe(probe) => return Ok(Receipt::Probing(Box::new(probe))),
        Opening::Resume(req) => {
            return Ok(Receipt::Done {
                dir: None,
                outcome: Outcome::Resume(req),
            })
        }
        Opening::Outcome(id) => {
            let journal = super::journal::Journal::of(&opts.work_dir);
            let (peer, agent) = (
                session.peer_addr().to_string(),
                session.peer_agent().to_string(),
            );
            let asked = id.clone();
            let verdict =
                tokio::task::spawn_blocking(move || journal.answer(&asked, &peer, &agent))
                    .await
                    .map_err(|e| MigrationError::local_in("the outcome task failed", e))?;
            session.send(&verdict).await?;
            return Ok(Receipt::Done {
                dir: None,
                outcome: Outcome::Answered(id, verdict),
            });
        }
    };
    let dir = opts.work_dir.join(sanitize(&offer.id));
    // The checks read /proc for every TID the offer names: off the async
    // workers. The lock is made now, while the source's workload still
    // runs, so that inside the downtime it only takes effect.
    let checked = {
        let (offer, dir, opts) = (offer.clone(), dir.clone(), opts.clone());
        tokio::task::spawn_blocking(move || {
            check_offer(&offer, &dir, &opts).and_then(|()| prepare_lock(&opts.work_dir, &offer))
        })
        .await
        .map_err(|e| MigrationError::local_in("the offer check failed", e))
        .and_then(|checked| checked)
    };
    let lock = match checked {
        Ok(lock) => lock,
        Err(reason) => return Err(refuse(session, reason).await),
    };
    // The container is made ready now, outside the downtime: a Docker
    // one created and started (up to its init, which waits for the
    // state), a runc or crun one created.
    let target = {
        let (offer, opts) = (offer.clone(), opts.clone());
        tokio::task::spawn_blocking(move || {
            super::docker::prepare(&offer, &opts.docker, &opts.work_dir)
                .and_then(|docker| prepare_container(&offer, &opts, docker))
        })
        .await
        .map_err(|e| MigrationError::local_in("the container preparation task failed", e))
        .and_then(|r| r)
    };
    let target = match target {
        Ok(t) => t,
        Err(reason) => return Err(refuse(session, reason).await),
    };
    let writer = ImageWriter::create(&dir).map_err(MigrationError::local)?;
    tracing::info!(id = %offer.id, pid = offer.pid, bytes = offer.memory_bytes, "offer accepted");
    Ok(Receipt::Accepted {
        offer,
        dir,
        writer,
        lock,
        target,
    })
}

/// Tells the source its offer is refused (nothing was made here, its
/// workload runs on) and returns why.
async fn refuse(session: &mut Session, reason: MigrationError) -> MigrationError {
    let _ = session
        .send(&ToSource::Refused {
            reason: reason.to_string(),
        })
        .await;
    reason
}

impl Receiving {
    /// Handles the next control message of the rounds, counting the frames
    /// stored while it waits.
    async fn step(mut self: Box<Self>, session: &mut Session) -> Result<Receipt, MigrationError> {
        let round = self.round;
        // The control read is not cancel-safe: keep one future and count
        // stored frames while it waits.
        // A stored frame or a message is progress; nothing for
        // NO_PROGRESS_TIMEOUT ends the migration.
        let message = {
            let recv = session.recv::<ToDestination>();
            tokio::pin!(recv);
            loop {
                tokio::select! {
                    m = &mut recv => break m?,
                    s = self.stored.recv() => match s {
                        Some(Ok(r)) => *self.counts.entry(r).or_default() += 1,
                        Some(Err(e)) => return Err(e),
                        None => return Err(MigrationError::local("the page store stopped")),
                    },
                    () = tokio::time::sleep(NO_PROGRESS_TIMEOUT) => {
                        return Err(MigrationError::protocol(format!(
                            "the source sent nothing in round {round} for {NO_PROGRESS_TIMEOUT:?}"
                        )))
                    }
                }
            }
        };
        let bundle = self.offer.container.as_ref().map(|c| c.bundle.clone());
        let (checkpoint, remote) = match message {
            ToDestination::RoundEnd { round: r, frames } if r == round => {
                wait_round(session, &mut self.stored, &mut self.counts, round, frames).await?;
                self.store.close_round(round);
                session.send(&ToSource::RoundStored { round }).await?;
                self.round += 1;
                return Ok(Receipt::Receiving(self));
            }
            ToDestination::State(checkpoint) => (checkpoint, None),
            ToDestination::PostCopyState { checkpoint, remote } => (checkpoint, Some(remote)),
            ToDestination::Abort { reason } => {
                return Err(MigrationError::refused("the source aborted: ", reason))
            }
            ToDestination::Rootfs(request) => {
                let rootfs = &mut self.rootfs;
                rootfs.answer(session, bundle.as_deref(), request).await?;
                return Ok(Receipt::Receiving(self));
            }
            other => {
                return Err(MigrationError::protocol(format!(
                    "unexpected {} in round {round}",
                    name(&other)
                )))
            }
        };
        let Receiving {
            offer,
            dir,
            store,
            stored,
            lock,
            target,
            ..
        } = *self;
        drop(stored);
        tracing::debug!(id = %offer.id, "the state arrived");
        let ((writer, warm), incoming) = store.finish().await?;
        tracing::debug!(id = %offer.id, "the page store finished");
        Ok(match remote {
            Some(remote) => Receipt::PostCopy(Box::new(PostCopyArrival {
                dir,
                offer,
                checkpoint: *checkpoint,
                writer,
                warm,
                incoming,
                remote,
                lock,
                target,
            })),
            None => Receipt::Restoring {
                offer,
                dir,
                checkpoint,
                writer,
                warm,
                lock,
                target,
            },
        })
    }
}

/// Restores the workload from the image (into the init of its container
/// made at the offer, for a container's), its connections locked
/// meanwhile (`lock`, when prepared at the offer).
async fn restore(
    opts: &DestinationOptions,
    offer: Offer,
    dir: PathBuf,
    (checkpoint, writer, warm): (Checkpoint, ImageWriter, Option<WarmHusk>),
    (lock, target): (Option<NetLock>, Option<ContainerTarget>),
) -> Result<Receipt, MigrationError> {
    let restore_dir = dir.clone();
    let work_dir = opts.work_dir.clone();
    // Unique on this host even when two sources pick the same migration
    // identifier (the freezer hierarchy is the host's, shared by every
    // agent on it): the record keeps the name for a recovery.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let hold = format!(
        "incoming-{}-{}-{nanos:x}",
        sanitize(&offer.id),
        std::process::id()
    );
    // Before the copy outlives this agent (held frozen, out of ptrace's
    // reach): a run that dies from here on leaves a record, and the next
    // one kills the copy.
    let journal = super::journal::Journal::of(&opts.work_dir);
    let holding = holding_record(&offer.id, hold.clone());
    journal.note(&holding).map_err(MigrationError::local)?;
    let offer_id = offer.id.clone();
    let restored = tokio::task::spawn_blocking(move || {
        let mut sink = ImageSink::new(writer);
        sink.commit(&checkpoint).map_err(MigrationError::local)?;
        tracing::debug!(id = %offer_id, "stored the state");
        let flows = &checkpoint.tcp_flows;
        let opts = crate::restore::RestoreOptions {
            hold: Some(hold.clone()),
            ..Default::default()
        };
        match target {
            Some(mut t) => {
                let husk = t.husk()?;
                let (stats, held) = restore_locked(&work_dir, flows, Some(husk), lock, || {
                    t.restore(husk, &restore_dir, opts)
                })?;
                t.announce(husk);
                Ok((stats, t.workload(held)))
            }
            None => restore_locked(&work_dir, flows, None, lock, || {
                crate::restore::restore_held(&restore_dir, &hold, warm)
                    .map_err(MigrationError::local)
            })
            .map(|(stats, held)| (stats, Workload::Held(held))),
        }
    })
    .await
    .map_err(|e| MigrationError::local_in("the restore task failed", e))
    .and_then(|restored| restored);
    if restored.is_err() {
        // Nothing is held: the failed restore killed what it made.
        journal.remove(super::journal::Role::Destination, &offer.id);
    }
    let (restore, workload) = restored?;
    super::journal::fault(super::journal::FAULT_AFTER_HOLD);
    Ok(Receipt::Running {
        offer,
        dir,
        workload,
        restore,
    })
}

/// The record of migration `id`'s copy about to be restored into the
/// transient cgroup `hold`: a run that dies from then on leaves it, and
/// the next one kills the copy.
fn holding_record(id: &str, hold: String) -> super::journal::Record {
    super::journal::Record {
        id: id.to_string(),
        role: super::journal::Role::Destination,
        phase: super::journal::Phase::Holding,
        peer: String::new(),
        agent: String::new(),
        hold,
        members: Vec::new(),
        remote: Vec::new(),
    }
}

/// Refuses an offer this host cannot take, with the reason as a sentence.
fn check_offer(offer: &Offer, dir: &Path, opts: &DestinationOptions) -> Result<(), MigrationError> {
    // Its claims first: what is checked next (each TID's /proc entry) is
    // thus bounded.
    super::destination_shared::check_offer_claims(offer)?;
    super::page_store::check_disk(&opts.work_dir, offer.memory_bytes)
        .map_err(MigrationError::local)?;
    // A container's PIDs are those of the PID namespace it gets here.
    let host_tids: &[i32] = if offer.container.is_some() {
        &[]
    } else {
        &offer.tids
    };
    crate::restore::check_target(offer.xcr0, offer.xstate_size, host_tids)
        .map_err(MigrationError::local)?;
    super::destination_shared::check_local_addresses(&offer.tcp_flows)?;
    // A Docker container is checked by the dockerd here (at its
    // preparation).
    if let Some(c) = offer.container.as_ref().filter(|c| c.docker.is_none()) {
        crate::container::check_capabilities().map_err(MigrationError::local)?;
        crate::container::check_runtime(c.runtime).map_err(MigrationError::local)?;
        crate::container::check_bundle(&c.id, Path::new(&c.bundle))
            .map_err(MigrationError::local)?;
        if c.network.is_some() && opts.network_hook.is_none() {
            return Err(MigrationError::local(format!(
                "container {} has a network namespace of its own, and this agent has no network hook to configure it ([container] network_hook in its configuration)",
                c.id
            )));
        }
        let root = c.runtime_root.as_deref().map(Path::new);
        let here = crate::container::Container::new(c.runtime, root, &c.id);
        if here.state().is_ok() {
            return Err(MigrationError::local(format!(
                "a container {} exists here already ({} --root {})",
                c.id,
                c.runtime.binary(),
                here.root.display()
            )));
        }
    }
    if dir.exists() {
        return Err(MigrationError::local(format!(
            "a migration with identifier {} is already in progress here ({})",
            offer.id,
            dir.display()
        )));
    }
    Ok(())
}

/// Whether `name` is one a migration's incoming image directory may have
/// (what [`sanitize`] makes of an identifier): what a restarted agent may
/// remove from its work directory.
pub fn is_incoming_dir_name(name: &str) -> bool {
    !name.is_empty() && sanitize(name) == name
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::net::{Interface, NetworkConfig};
    use crate::migration::protocol::ContainerOffer;

    fn offer(bundle: &Path) -> Offer {
        Offer {
            id: "t".into(),
            pid: 1,
            tids: vec![1],
            xcr0: crate::kernel::cpu::xcr0(),
            xstate_size: crate::kernel::cpu::xsave_size(),
            memory_bytes: 0,
            page_streams: 1,
            container: Some(ContainerOffer {
                id: format!("ferry-check-offer-{}", std::process::id()),
                runtime: crate::container::Runtime::Runc,
                runtime_root: Some(bundle.join("runc-root").display().to_string()),
                bundle: bundle.display().to_string(),
                network: Some(NetworkConfig {
                    interfaces: vec![Interface {
                        name: "eth0".into(),
                        addresses: vec!["10.232.0.2/24".into()],
                    }],
                    routes: vec![],
                }),
                docker: None,
            }),
            tcp_flows: vec![],
        }
    }

    #[test]
    fn a_container_with_its_own_network_needs_a_hook() {
        let bundle = tempfile::tempdir().unwrap();
        std::fs::write(bundle.path().join("config.json"), "{}").unwrap();
        let offer = offer(bundle.path());
        let mut opts = DestinationOptions {
            work_dir: bundle.path().join("work"),
            confirm_timeout: Duration::from_secs(1),
            reconnect: None,
            network_hook: None,
            docker: crate::container::docker::Docker::new(Path::new("/nonexistent")),
        };
        let dir = opts.work_dir.join("t");
        let refused = check_offer(&offer, &dir, &opts).unwrap_err().to_string();
        assert!(refused.contains("no network hook"), "{refused}");
        opts.network_hook = Some(PathBuf::from("/bin/true"));
        check_offer(&offer, &dir, &opts).unwrap();
    }
}
