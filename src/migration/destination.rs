//! The destination side of a live migration: accept or refuse the offer,
//! store the pages of every round as they arrive, and on the frozen state
//! restore the workload, report it running and keep it only once the
//! source confirms. On any failure nothing is left here.

use super::protocol::{Offer, RemoteRuns, ToDestination, ToSource};
use crate::image::ImageSink;
use crate::image::{Checkpoint, ImageWriter};
use crate::transport::{IncomingPages, PageReceiver, Session};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// How a post-copy destination reconnects to the source agent when the
/// link breaks while the workload runs here with pages still there.
#[derive(Clone)]
pub struct Reconnect {
    /// This agent's endpoint, to connect from.
    pub transport: Arc<crate::transport::Transport>,
    /// How long to keep trying (the source waits a margin longer).
    pub within: Duration,
}

impl std::fmt::Debug for Reconnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconnect")
            .field("within", &self.within)
            .finish_non_exhaustive()
    }
}

/// Where the destination keeps incoming images, and how long it waits for
/// the source's last word.
#[derive(Debug, Clone)]
pub struct DestinationOptions {
    /// Directory for incoming images (one subdirectory per migration).
    pub work_dir: PathBuf,
    /// How long to wait for the source's confirmation after reporting the
    /// workload running; without it the restored copy is killed, since the
    /// source then resumes its own.
    pub confirm_timeout: Duration,
    /// Post-copy recovery (None: a broken link ends the migration and the
    /// copy here is killed).
    pub reconnect: Option<Reconnect>,
    /// The command that configures a migrated container's own network
    /// namespace before its restore (None: such containers are refused).
    pub network_hook: Option<PathBuf>,
}

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
}

/// The destination's states, for its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestinationState {
    /// Waiting for an offer.
    Accepting,
    /// Storing the pages of a pre-copy round.
    Receiving {
        /// The round.
        round: u32,
    },
    /// Restoring the workload.
    Restoring,
    /// Post-copy: the workload runs while its pages still come from the
    /// source.
    PostCopy,
    /// The workload runs; waiting for the source's confirmation.
    Running,
    /// The migration is complete.
    Done,
}

/// What a finished migration left here.
#[derive(Debug, Clone)]
pub struct Received {
    /// The migration's identifier.
    pub id: String,
    /// The restored root PID.
    pub pid: i32,
    /// Milliseconds the restore took.
    pub restore_ms: f64,
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
        why: String,
    },
}

/// How long a failed migration's session stays open for the source to
/// read why.
const LINGER: Duration = Duration::from_secs(2);

/// Receives one migration on `session` (the source has just connected),
/// or answers a probe, or recognises a post-copy resume.
pub async fn receive(
    session: &mut Session,
    opts: &DestinationOptions,
) -> Result<Outcome, ReceiveError> {
    let mut state = DestinationState::Accepting;
    let peer = session.peer_addr().to_string();
    let mut dir = None;
    let mut restored: Option<Vec<i32>> = None;
    let mut created = None;
    let result = run(
        session,
        opts,
        &mut state,
        &mut dir,
        &mut restored,
        &mut created,
    )
    .await;
    if let Err(why) = &result {
        tracing::warn!(%peer, ?state, %why, "migration failed; cleaning up");
        let reason = format!("the destination failed while {}: {why}", describe(state));
        let _ = session.send(&ToSource::Failed { reason }).await;
        if let Some(pids) = restored {
            kill_tree(&pids);
        }
        if let Some(c) = created {
            delete_container(&c);
        }
    }
    if let Some(dir) = dir {
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::warn!(dir = %dir.display(), %e, "cannot remove an incoming image");
        }
    }
    if result.is_err() {
        // Nothing is left here now. Closing at once would lose the
        // answers in flight (a refusal, the failure): let the source read
        // them and close first.
        let _ = tokio::time::timeout(LINGER, async {
            while session.recv::<ToDestination>().await.is_ok() {}
        })
        .await;
    }
    result.map_err(|why| ReceiveError::Failed { peer, state, why })
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

async fn run(
    session: &mut Session,
    opts: &DestinationOptions,
    state: &mut DestinationState,
    dir_out: &mut Option<PathBuf>,
    restored: &mut Option<Vec<i32>>,
    created: &mut Option<crate::container::Container>,
) -> Result<Outcome, String> {
    let offer = match session.recv::<ToDestination>().await {
        Ok(ToDestination::Offer(offer)) => offer,
        Ok(ToDestination::Probe(probe)) => {
            super::dryrun::answer_probe(session, probe).await?;
            return Ok(Outcome::Probed);
        }
        Ok(ToDestination::Resume(req)) => return Ok(Outcome::Resume(req)),
        Ok(other) => return Err(format!("expected an offer, got {}", name(&other))),
        Err(e) => return Err(e.to_string()),
    };
    let dir = opts.work_dir.join(sanitize(&offer.id));
    if let Err(reason) = check_offer(&offer, &dir, opts) {
        let _ = session
            .send(&ToSource::Refused {
                reason: reason.clone(),
            })
            .await;
        return Err(reason);
    }
    let writer = ImageWriter::create(&dir).map_err(|e| e.to_string())?;
    *dir_out = Some(dir.clone());
    tracing::info!(id = %offer.id, pid = offer.pid, bytes = offer.memory_bytes, "offer accepted");
    session
        .send(&ToSource::Accepted)
        .await
        .map_err(|e| e.to_string())?;

    let (store, mut stored) = PageStore::start(writer, session.take_incoming_pages());
    let mut counts: BTreeMap<u32, u64> = BTreeMap::new();
    let mut round = 0u32;
    let mut rootfs = super::rootfs_sync::DestinationRootfs::default();
    let bundle = offer.container.as_ref().map(|c| c.bundle.clone());
    let (checkpoint, remote): (Checkpoint, Option<Vec<RemoteRuns>>) = loop {
        *state = DestinationState::Receiving { round };
        // The control read is not cancel-safe: keep one future and count
        // stored frames while it waits.
        let message = {
            let recv = session.recv::<ToDestination>();
            tokio::pin!(recv);
            loop {
                tokio::select! {
                    m = &mut recv => break m.map_err(|e| e.to_string())?,
                    s = stored.recv() => match s {
                        Some(Ok(r)) => *counts.entry(r).or_default() += 1,
                        Some(Err(e)) => return Err(e),
                        None => return Err("the page store stopped".into()),
                    },
                }
            }
        };
        match message {
            ToDestination::RoundEnd { round: r, frames } if r == round => {
                wait_round(&mut stored, &mut counts, round, frames).await?;
                store.acked.store(round + 1, Ordering::Release);
                session
                    .send(&ToSource::RoundStored { round })
                    .await
                    .map_err(|e| e.to_string())?;
                round += 1;
            }
            ToDestination::State(checkpoint) => break (*checkpoint, None),
            ToDestination::PostCopyState { checkpoint, remote } => {
                break (*checkpoint, Some(remote))
            }
            ToDestination::Abort { reason } => return Err(format!("the source aborted: {reason}")),
            ToDestination::RootfsQuery => rootfs.answer_query(session, bundle.as_deref()).await?,
            ToDestination::RootfsChanges { changes, last } => {
                rootfs
                    .apply(session, bundle.as_deref(), changes, last)
                    .await?
            }
            other => return Err(format!("unexpected {} in round {round}", name(&other))),
        }
    };
    drop(stored);
    let (writer, incoming) = store.finish().await?;
    if let Some(remote) = remote {
        return super::postcopy_destination::run(
            session, opts, state, restored, created, &dir, offer, checkpoint, writer, incoming,
            remote,
        )
        .await
        .map(Outcome::Received);
    }

    *state = DestinationState::Restoring;
    let tids: Vec<i32> = checkpoint
        .processes
        .iter()
        .flat_map(|p| p.threads.iter().map(|t| t.tid))
        .collect();
    let restore_dir = dir.clone();
    let container = container_of(&offer, opts);
    let target = container.clone();
    let restore = tokio::task::spawn_blocking(move || {
        let mut sink = ImageSink::new(writer);
        sink.commit(&checkpoint).map_err(|e| e.to_string())?;
        match target {
            Some(t) => {
                let husk = t.prepare()?;
                crate::container::restore_created(
                    &t.container,
                    husk,
                    &restore_dir,
                    crate::restore::RestoreOptions::default(),
                )
                .map_err(|e| e.to_string())
            }
            None => crate::restore::restore(&restore_dir).map_err(|e| e.to_string()),
        }
    })
    .await
    .map_err(|e| format!("the restore task failed: {e}"))??;
    match container {
        // Its PIDs are the container's: the container is what to remove
        // on a later failure.
        Some(t) => *created = Some(t.container),
        None => *restored = Some(tids),
    }

    *state = DestinationState::Running;
    session
        .send(&ToSource::Running {
            restore_ms: restore.restore_ms,
            pid: restore.pid,
        })
        .await
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(opts.confirm_timeout, session.recv::<ToDestination>()).await {
        Ok(Ok(ToDestination::Done)) => keep(session, opts).await,
        Ok(Ok(other)) => {
            return Err(format!(
                "expected the source's confirmation, got {}",
                name(&other)
            ))
        }
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => {
            return Err(format!(
                "no confirmation from the source within {:?}",
                opts.confirm_timeout
            ))
        }
    }
    *restored = None;
    *created = None;
    *state = DestinationState::Done;
    Ok(Outcome::Received(Received {
        id: offer.id,
        pid: restore.pid,
        restore_ms: restore.restore_ms,
    }))
}

/// The container an offer moves, as this host creates it.
#[derive(Debug, Clone)]
pub(super) struct ContainerTarget {
    /// The container, as this host's runtime names it.
    pub container: crate::container::Container,
    bundle: PathBuf,
    /// Its own network namespace: the hook and the source's addresses.
    network: Option<(PathBuf, crate::container::net::NetworkConfig)>,
}

impl ContainerTarget {
    /// Creates the container (running the network hook on its network
    /// namespace of its own) and returns its waiting init (blocking).
    pub fn prepare(&self) -> Result<i32, String> {
        let network = self
            .network
            .as_ref()
            .map(|(hook, config)| crate::container::NetworkSetup { hook, config });
        crate::container::prepare(&self.container, &self.bundle, network)
            .map(|st| st.pid)
            .map_err(|e| e.to_string())
    }
}

/// The container an offer moves (None for a process tree).
pub(super) fn container_of(offer: &Offer, opts: &DestinationOptions) -> Option<ContainerTarget> {
    offer.container.as_ref().map(|c| {
        let root = c.runtime_root.as_deref().map(Path::new);
        ContainerTarget {
            container: crate::container::Container::new(c.runtime, root, &c.id),
            bundle: PathBuf::from(&c.bundle),
            network: c
                .network
                .clone()
                .and_then(|n| opts.network_hook.clone().map(|hook| (hook, n))),
        }
    })
}

/// Answers the source's Done: the workload stays whatever happens to
/// this answer (the source kills its copy once it reads it, or times out);
/// the source closes the session once it has read it.
pub(super) async fn keep(session: &mut Session, opts: &DestinationOptions) {
    let _ = session.send(&ToSource::Kept).await;
    let _ = tokio::time::timeout(opts.confirm_timeout, session.recv::<ToDestination>()).await;
}

/// Refuses an offer this host cannot take, with the reason as a sentence.
fn check_offer(offer: &Offer, dir: &Path, opts: &DestinationOptions) -> Result<(), String> {
    // A container's PIDs are those of the PID namespace it gets here.
    let host_tids: &[i32] = if offer.container.is_some() {
        &[]
    } else {
        &offer.tids
    };
    crate::restore::check_target(offer.xcr0, offer.xstate_size, host_tids)
        .map_err(|e| e.to_string())?;
    if let Some(c) = &offer.container {
        crate::container::check_capabilities().map_err(|e| e.to_string())?;
        crate::container::check_runtime(c.runtime).map_err(|e| e.to_string())?;
        crate::container::check_bundle(&c.id, Path::new(&c.bundle)).map_err(|e| e.to_string())?;
        if c.network.is_some() && opts.network_hook.is_none() {
            return Err(format!(
                "container {} has a network namespace of its own, and this agent has no network hook to configure it ([container] network_hook in its configuration)",
                c.id
            ));
        }
        let root = c.runtime_root.as_deref().map(Path::new);
        let here = crate::container::Container::new(c.runtime, root, &c.id);
        if here.state().is_ok() {
            return Err(format!(
                "a container {} exists here already ({} --root {})",
                c.id,
                c.runtime.binary(),
                here.root.display()
            ));
        }
    }
    if dir.exists() {
        return Err(format!(
            "a migration with identifier {} is already in progress here ({})",
            offer.id,
            dir.display()
        ));
    }
    Ok(())
}

/// A migration identifier as a directory name.
fn sanitize(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(128)
        .collect()
}

pub(super) fn name(message: &ToDestination) -> &'static str {
    match message {
        ToDestination::Offer(_) => "an offer",
        ToDestination::RoundEnd { .. } => "a round end",
        ToDestination::State(_) => "the process state",
        ToDestination::PostCopyState { .. } => "the process state for post-copy",
        ToDestination::Done => "a confirmation",
        ToDestination::Abort { .. } => "an abort",
        ToDestination::Probe(_) => "a probe",
        ToDestination::RootfsQuery => "a rootfs query",
        ToDestination::RootfsChanges { .. } => "rootfs changes",
        ToDestination::Resume(_) => "a post-copy resume",
        ToDestination::Resumed => "a post-copy resume's answer",
    }
}

/// Deletes a container restored here whose migration then failed.
fn delete_container(c: &crate::container::Container) {
    if let Err(e) = c.delete() {
        tracing::error!(id = %c.id, %e, "deleting the container of a failed migration failed");
    }
}

/// Kills a restored workload: the listed PIDs and TIDs and every process
/// descended from them.
pub(super) fn kill_tree(pids: &[i32]) {
    // Children the restored workload forked since (a post-copy workload
    // runs before the source confirms) go too: listed first, since a
    // killed parent's children are reparented.
    let mut all: Vec<i32> = pids.to_vec();
    let mut i = 0;
    while i < all.len() {
        for child in crate::proc::children(all[i]).unwrap_or_default() {
            if !all.contains(&child) {
                all.push(child);
            }
        }
        i += 1;
    }
    for pid in all {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Waits until every frame of `round` is stored.
async fn wait_round(
    stored: &mut StoredFrames,
    counts: &mut BTreeMap<u32, u64>,
    round: u32,
    frames: u64,
) -> Result<(), String> {
    loop {
        let have = counts.get(&round).copied().unwrap_or(0);
        if have == frames {
            return Ok(());
        }
        if have > frames {
            return Err(format!(
                "round {round} brought {have} frames, but the source announced {frames}"
            ));
        }
        match stored.recv().await {
            Some(Ok(r)) => *counts.entry(r).or_default() += 1,
            Some(Err(e)) => return Err(e),
            None => return Err("the page store stopped".into()),
        }
    }
}

/// A frame on its way from a page stream to the image writer.
struct Frame {
    pid: i32,
    round: u32,
    vaddr: u64,
    npages: u64,
    data: Option<Vec<u8>>,
}

/// Page streams read concurrently into one image writer thread.
struct PageStore {
    frames: Option<mpsc::Sender<Frame>>,
    writer: std::thread::JoinHandle<Result<ImageWriter, String>>,
    accept: tokio::task::JoinHandle<IncomingPages>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    acked: Arc<AtomicU32>,
}

/// Frames stored, by round, or the first storage error.
type StoredFrames = mpsc::UnboundedReceiver<Result<u32, String>>;

impl PageStore {
    fn start(writer: ImageWriter, incoming: IncomingPages) -> (Self, StoredFrames) {
        let (frames_tx, mut frames_rx) = mpsc::channel::<Frame>(64);
        let (stored_tx, stored_rx) = mpsc::unbounded_channel();
        let acked = Arc::new(AtomicU32::new(0));
        let writer_stored = stored_tx.clone();
        let writer = std::thread::spawn(move || {
            let mut writer = writer;
            while let Some(frame) = frames_rx.blocking_recv() {
                let result = match &frame.data {
                    Some(data) => writer.write_pages(frame.pid, frame.vaddr, data),
                    None => writer.write_zero_pages(frame.pid, frame.vaddr, frame.npages),
                };
                if let Err(e) = result {
                    let _ = writer_stored.send(Err(e.to_string()));
                    return Err(e.to_string());
                }
                let _ = writer_stored.send(Ok(frame.round));
            }
            Ok(writer)
        });
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let accept = tokio::spawn(accept_streams(
            incoming,
            frames_tx.clone(),
            stored_tx,
            acked.clone(),
            stopped,
        ));
        let store = PageStore {
            frames: Some(frames_tx),
            writer,
            accept,
            stop: Some(stop),
            acked,
        };
        (store, stored_rx)
    }

    /// Stops accepting page streams and hands back the writer once every
    /// frame is written, with the page streams still to come (post-copy's).
    async fn finish(mut self) -> Result<(ImageWriter, IncomingPages), String> {
        let _ = self.stop.take().map(|stop| stop.send(()));
        let incoming = (&mut self.accept)
            .await
            .map_err(|e| format!("the page stream acceptor failed: {e}"))?;
        drop(self.frames.take());
        tokio::task::spawn_blocking(move || self.writer.join())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|_| "the page writer panicked".to_string())?
            .map(|writer| (writer, incoming))
    }
}

async fn accept_streams(
    mut incoming: IncomingPages,
    frames: mpsc::Sender<Frame>,
    stored: mpsc::UnboundedSender<Result<u32, String>>,
    acked: Arc<AtomicU32>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> IncomingPages {
    let mut readers = tokio::task::JoinSet::new();
    loop {
        let stream = tokio::select! {
            s = incoming.next() => match s {
                Some(s) => s,
                None => {
                    // The connections are gone: read what arrived, then
                    // wait to be stopped.
                    while readers.join_next().await.is_some() {}
                    let _ = stop.await;
                    return incoming;
                }
            },
            _ = &mut stop => break,
        };
        let frames = frames.clone();
        let stored = stored.clone();
        let acked = acked.clone();
        readers.spawn(async move {
            if let Err(e) = read_stream(stream, &frames, &acked).await {
                let _ = stored.send(Err(e));
            }
        });
    }
    // Every stream of the rounds has ended (each round was counted
    // complete); readers still running wait on streams that bring nothing.
    readers.abort_all();
    while readers.join_next().await.is_some() {}
    incoming
}

/// Reads one page stream into the writer, never frames of a round the
/// source already closed. Frames may name processes the offer did not
/// list (a shell forks while it is copied); pages of a process that is
/// not in the final state are dropped when the image is committed.
async fn read_stream(
    mut stream: PageReceiver,
    frames: &mpsc::Sender<Frame>,
    acked: &AtomicU32,
) -> Result<(), String> {
    while let Some(frame) = stream.next().await.map_err(|e| e.to_string())? {
        let h = frame.header;
        if h.pid <= 0 {
            return Err(format!("a page frame for process {} arrived", h.pid));
        }
        let closed = acked.load(Ordering::Acquire);
        if h.round < closed {
            return Err(format!(
                "a page frame of round {} arrived after the round was closed (now {closed}); an older copy must not replace a newer one",
                h.round
            ));
        }
        let data = (!h.is_zero()).then(|| frame.data.to_vec());
        let frame = Frame {
            pid: h.pid,
            round: h.round,
            vaddr: h.vaddr,
            npages: u64::from(h.npages),
            data,
        };
        if frames.send(frame).await.is_err() {
            return Err("the page writer stopped".into());
        }
    }
    Ok(())
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
            }),
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
        };
        let dir = opts.work_dir.join("t");
        let refused = check_offer(&offer, &dir, &opts).unwrap_err();
        assert!(refused.contains("no network hook"), "{refused}");
        opts.network_hook = Some(PathBuf::from("/bin/true"));
        check_offer(&offer, &dir, &opts).unwrap();
    }
}
