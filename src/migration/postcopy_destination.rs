//! The destination's half of post-copy: restore with lazy memory while the
//! fault server runs (the restore itself may touch missing pages), report
//! the workload running, forward its page requests to the source, install
//! the pages that arrive, and tell the source once every page is local.

use super::destination_shared::{
    keep, kill_tree, name, restore_locked, ContainerTarget, DestinationOptions, DestinationState,
    Received, Reconnect, Workload,
};
use super::error::MigrationError;
use super::protocol::{
    Offer, Opening, RemoteRuns, ResumeAnswer, ResumeRequest, ToDestination, ToSource, PUSH_ROUND,
    URGENT_ROUND,
};
use crate::image::ImageSink;
use crate::image::{Checkpoint, ImageWriter, PAGE_SIZE};
use crate::lazy::{FaultGuard, FaultServer, InstallError, PageRequest};
use crate::memory::PageRuns;
use crate::restore::{LazyPages, RestoreOptions, RestoreStats};
use crate::transport::{IncomingPages, PageReceiver, Session};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Pause between reconnection attempts to the source.
const RETRY_EVERY: Duration = Duration::from_millis(500);

/// How often the "every page local" check runs besides on progress.
const CHECK_EVERY: Duration = Duration::from_millis(20);

/// Checks the pages the source says it kept: each run page-aligned and
/// inside a private anonymous mapping of a process of the checkpoint.
fn check_remote(
    ck: &Checkpoint,
    remote: &[RemoteRuns],
) -> Result<HashMap<i32, PageRuns>, MigrationError> {
    let mut out = HashMap::new();
    for r in remote {
        let p = ck
            .processes
            .iter()
            .find(|p| p.pid == r.pid)
            .ok_or_else(|| {
                MigrationError::protocol(format!(
                    "the source kept pages of process {}, which the state does not describe",
                    r.pid
                ))
            })?;
        for &(start, end) in &r.runs {
            // A run may span adjacent mappings; every page of it must lie
            // in one that is private and anonymous.
            let mut at = start;
            while start % PAGE_SIZE == 0 && end % PAGE_SIZE == 0 && at < end {
                match p.vmas.iter().find(|v| v.start <= at && at < v.end) {
                    Some(v) if v.is_private_anonymous() && !v.is_special() => at = v.end,
                    _ => break,
                }
            }
            let inside = start < end && at >= end;
            if !inside {
                let what = p
                    .vmas
                    .iter()
                    .find(|v| v.start <= at && at < v.end)
                    .map_or("no mapping".to_string(), |v| {
                        format!("{:#x}-{:#x} {:?}", v.start, v.end, v.kind)
                    });
                return Err(MigrationError::protocol(format!(
                    "the source kept pages {start:#x}-{end:#x} of process {}, outside its private anonymous memory (at {at:#x}: {what})",
                    r.pid
                )));
            }
        }
        if out
            .insert(r.pid, PageRuns::from_runs(r.runs.clone()))
            .is_some()
        {
            return Err(MigrationError::protocol(format!(
                "the source named the pages of process {} twice",
                r.pid
            )));
        }
    }
    Ok(out)
}

/// What the destination holds at a post-copy switch-over: the offer, the
/// image of the pre-copy rounds (if any) with the frozen state, and the
/// pages still on the source.
pub(super) struct PostCopyArrival {
    /// The migration's image directory.
    pub dir: PathBuf,
    /// The source's offer.
    pub offer: Offer,
    /// The frozen workload's state.
    pub checkpoint: Checkpoint,
    /// The image the pre-copy rounds went to.
    pub writer: ImageWriter,
    /// The husk the root's pages of the rounds were staged in (hybrid),
    /// for a warm restore.
    pub warm: Option<crate::restore::warm::WarmHusk>,
    /// The page streams still to come (post-copy's answers and push).
    pub incoming: IncomingPages,
    /// Per process, the pages still on the source.
    pub remote: Vec<RemoteRuns>,
    /// The connections' lock, prepared at the offer (not yet effective).
    pub lock: Option<crate::netlock::NetLock>,
    /// The container, made ready at the offer.
    pub target: Option<ContainerTarget>,
}

/// Why the post-copy restore or phase failed: in which of its states, and
/// the workload it leaves for the caller to remove (the tree once it ran,
/// or the container once it was created).
pub(super) struct PostCopyFailure {
    /// Why.
    pub error: MigrationError,
    /// Where post-copy was.
    pub state: DestinationState,
    /// What to remove (after the image).
    pub workload: Option<Workload>,
}

/// Runs the post-copy restore and phase. On failure the workload (or its
/// restore) is killed already; the caller removes what the failure names.
pub(super) async fn run(
    session: &mut Session,
    opts: &DestinationOptions,
    arrival: PostCopyArrival,
) -> Result<Received, PostCopyFailure> {
    // Before the restore starts, nothing of the workload exists here.
    let early = |error| PostCopyFailure {
        error,
        state: DestinationState::Restoring,
        workload: None,
    };
    let PostCopyArrival {
        dir,
        offer,
        checkpoint,
        writer,
        warm,
        incoming,
        remote,
        lock,
        target,
    } = arrival;
    let remote = check_remote(&checkpoint, &remote).map_err(early)?;
    let tids: Vec<i32> = checkpoint
        .processes
        .iter()
        .flat_map(|p| p.threads.iter().map(|t| t.tid))
        .collect();
    let processes = checkpoint.processes.len();
    let pids: Arc<HashSet<i32>> = Arc::new(checkpoint.processes.iter().map(|p| p.pid).collect());
    let (requests_tx, mut requests) = mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    // Before anything of the workload exists here: should this agent die
    // in post-copy, the guard keeps its faults blocked and kills it.
    let guard = Arc::new(FaultGuard::start().map_err(|e| {
        early(MigrationError::local_in(
            "cannot start the post-copy guard process",
            e,
        ))
    })?);
    let in_container = offer.container.is_some();
    let (server, server_thread) = FaultServer::start(
        remote.clone(),
        ready_rx,
        requests_tx,
        guard.clone(),
        !in_container,
    )
    .map_err(|e| early(MigrationError::local_in("cannot start the fault server", e)))?;
    let (errors_tx, mut errors) = mpsc::unbounded_channel::<MigrationError>();
    let mut receiver = tokio::spawn(receive_pages(
        incoming,
        server.clone(),
        pids.clone(),
        errors_tx.clone(),
    ));

    // The container made at the offer: its init is the root husk, and
    // what to kill (the whole PID namespace with it) should the post-copy
    // fail.
    let target = match target {
        Some(mut t) => {
            let (husk, t) = tokio::task::spawn_blocking(move || t.husk().map(|h| (h, t)))
                .await
                .map_err(|e| MigrationError::local_in("the container handover task failed", e))
                .and_then(|r| r)
                .map_err(|e| {
                    // Nothing runs yet: the guard and the server go.
                    server.stop();
                    receiver.abort();
                    early(e)
                })?;
            // The container's init: its PID namespace goes with it.
            if let Err(e) = guard.kill_on_loss(husk) {
                tracing::error!(%e, "the post-copy guard did not take the container's init");
            }
            Some((t, husk))
        }
        None => None,
    };
    let victims = target.as_ref().map_or_else(|| tids.clone(), |t| vec![t.1]);
    let restore_dir = dir;
    let work_dir = opts.work_dir.clone();
    let lazy = LazyPages {
        remote,
        ready: ready_tx,
    };
    let in_container = target.is_some();
    let created = target.as_ref().map(|(t, _)| t.workload(None));
    let restore = tokio::task::spawn_blocking(move || {
        let mut sink = ImageSink::new(writer);
        sink.commit(&checkpoint).map_err(MigrationError::local)?;
        let opts = RestoreOptions {
            lazy: Some(lazy),
            warm,
            ..Default::default()
        };
        let flows = &checkpoint.tcp_flows;
        match target {
            Some((mut t, husk)) => {
                let stats = restore_locked(&work_dir, flows, Some(husk), lock, || {
                    t.restore(husk, &restore_dir, opts).map(|(stats, _)| stats)
                })?;
                t.announce(husk);
                Ok(stats)
            }
            None => restore_locked(&work_dir, flows, None, lock, || {
                crate::restore::restore_with(&restore_dir, opts).map_err(MigrationError::local)
            }),
        }
    });

    let mut phase = Phase {
        restore,
        restoring: true,
        in_container,
        running: None,
        all_local: None,
        state: DestinationState::Restoring,
        workload: created,
    };
    let mut result = loop {
        let why = match serve_link(
            session,
            opts,
            &server,
            processes,
            &tids,
            &mut phase,
            &mut requests,
            &mut errors,
        )
        .await
        {
            Ok(stats) => break Ok(stats),
            Err(why) => why,
        };
        let why = match &opts.reconnect {
            // The source, frozen, waits for this whether or not it heard
            // that the workload runs here.
            Some(rc) if why.is_link_lost() => {
                tracing::warn!(id = %offer.id, %why, "the link to the source broke during post-copy; the workload waits on its faults while this agent reconnects");
                receiver.abort();
                while errors.try_recv().is_ok() {}
                match reconnect(session, rc, &offer.id, &server).await {
                    Ok(()) => {
                        receiver = tokio::spawn(receive_pages(
                            session.take_incoming_pages(),
                            server.clone(),
                            pids.clone(),
                            errors_tx.clone(),
                        ));
                        continue;
                    }
                    Err(e) => why.then(e),
                }
            }
            _ => why,
        };
        break Err(why);
    };
    if phase.running.is_some() && phase.all_local.is_none() {
        result = result.map_err(|why| {
            why.then("the workload's memory here is incomplete, so its copy here was killed")
        });
    }
    let restore = phase.restore;
    if result.is_err() {
        // The workload (or the restore) may wait on pages that will never
        // come: kill it before its userfaultfds close (it would run on
        // zero pages from then on), then the restore ends.
        kill_tree(&victims);
    }
    server.stop();
    receiver.abort();
    if result.is_err() && !restore.is_finished() {
        let _ = restore.await;
    }
    let _ = tokio::task::spawn_blocking(move || server_thread.join()).await;
    let result = match result {
        Ok((_, stats)) => keep(session, opts, phase.workload.as_ref())
            .await
            .map(|()| stats),
        Err(error) => Err(error),
    };
    let stats = result.map_err(|error| PostCopyFailure {
        error,
        state: phase.state,
        workload: phase.workload,
    })?;
    Ok(Received {
        id: offer.id,
        pid: stats.pid,
        restore_ms: stats.restore_ms,
        pages_moved: stats.pages_moved,
    })
}

/// Where the post-copy phase is, kept across sessions when the link breaks.
struct Phase {
    restore: JoinHandle<Result<RestoreStats, MigrationError>>,
    restoring: bool,
    /// The workload is a container created here (deleted on failure, so
    /// its PIDs are not what to kill).
    in_container: bool,
    /// Since when the workload runs, and its restore's figures.
    running: Option<(Instant, RestoreStats)>,
    /// When every page was local (and the source told so).
    all_local: Option<Instant>,
    /// The state's name, should post-copy fail now.
    state: DestinationState,
    /// What a failure now leaves to remove: the container from its
    /// creation on, the tree once its restore returned.
    workload: Option<Workload>,
}

/// Serves the post-copy phase on one session: forwards page requests,
/// reports the workload running and every page local, and waits for the
/// source's confirmation.
#[allow(clippy::too_many_arguments)]
async fn serve_link(
    session: &mut Session,
    opts: &DestinationOptions,
    server: &FaultServer,
    processes: usize,
    tids: &[i32],
    phase: &mut Phase,
    requests: &mut mpsc::UnboundedReceiver<PageRequest>,
    errors: &mut mpsc::UnboundedReceiver<MigrationError>,
) -> Result<(Instant, RestoreStats), MigrationError> {
    fn lost(e: impl std::error::Error + Send + Sync + 'static) -> MigrationError {
        MigrationError::link_in("the link to the source failed", e)
    }
    let (mut tx, mut rx) = session.split_control();
    if let Some((_, stats)) = &phase.running {
        // A new session after a resume: the source may not have heard it.
        tx.send(&ToSource::Running {
            restore_ms: stats.restore_ms,
            pid: stats.pid,
        })
        .await
        .map_err(lost)?;
    }
    // After a resume: the answers to earlier requests may be lost.
    for req in server.pending_requests() {
        tx.send(&ToSource::PageRequest(req)).await.map_err(lost)?;
    }
    let control = rx.recv::<ToDestination>();
    tokio::pin!(control);
    loop {
        if let (Some((since, _)), None) = (&phase.running, phase.all_local) {
            if server.restored() == processes && server.remaining() == 0 {
                let now = Instant::now();
                let all_local_ms = (now - *since).as_secs_f64() * 1000.0;
                tracing::info!(all_local_ms, "every page is local");
                tx.send(&ToSource::AllPages {
                    stats: server.stats(),
                    all_local_ms,
                })
                .await
                .map_err(lost)?;
                phase.all_local = Some(now);
                phase.state = DestinationState::Running;
                server.stop();
            }
        }
        tokio::select! {
            r = &mut phase.restore, if phase.restoring => {
                phase.restoring = false;
                let stats = r
                    .map_err(|e| MigrationError::local_in("the restore task failed", e))??;
                if !phase.in_container {
                    phase.workload = Some(Workload::Tree(tids.to_vec()));
                }
                phase.state = DestinationState::PostCopy;
                tracing::info!(pid = stats.pid, restore_ms = stats.restore_ms, "the workload runs here; its pages follow from the source");
                phase.running = Some((Instant::now(), stats));
                tx.send(&ToSource::Running { restore_ms: stats.restore_ms, pid: stats.pid })
                    .await
                    .map_err(lost)?;
            }
            Some(req) = requests.recv() => {
                tx.send(&ToSource::PageRequest(req)).await.map_err(lost)?;
            }
            Some(e) = errors.recv() => return Err(e),
            m = &mut control => {
                return match m.map_err(lost)? {
                    ToDestination::Done if phase.all_local.is_some() => {
                        phase.running.take().ok_or(MigrationError::local("no restore"))
                    }
                    ToDestination::Abort { reason } => Err(MigrationError::refused("the source aborted: ", reason)),
                    other => Err(MigrationError::protocol(format!("unexpected {} during post-copy", name(&other)))),
                };
            }
            _ = server.changed() => {}
            _ = tokio::time::sleep(CHECK_EVERY) => {
                if let Some(t) = phase.all_local {
                    if t.elapsed() > opts.confirm_timeout {
                        return Err(MigrationError::protocol(format!("no confirmation from the source within {:?}", opts.confirm_timeout)));
                    }
                }
            }
        }
    }
}

/// Reconnects to the source agent of migration `id` within `rc.within`,
/// names the pages still missing here and, once the source answers,
/// replaces `session` with the new one. An error says why the source is
/// out of reach for good.
async fn reconnect(
    session: &mut Session,
    rc: &Reconnect,
    id: &str,
    server: &FaultServer,
) -> Result<(), MigrationError> {
    let addr = session.peer_addr();
    let agent = session.peer_agent().to_string();
    session.close("link lost");
    let deadline = Instant::now() + rc.within;
    let mut last = String::from("no attempt");
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(MigrationError::link(format!(
                "the source agent {agent} at {addr} could not be reached again within {:?} (last attempt: {last}): the pages it still holds for this workload are lost with it",
                rc.within
            )));
        }
        // Err(Ok(why)): try again; Err(Err(reason)): the source refused.
        let attempt = async {
            let mut new = rc
                .transport
                .connect(addr, &agent)
                .await
                .map_err(|e| Ok(e.to_string()))?;
            let missing: Vec<RemoteRuns> = server
                .missing()
                .into_iter()
                .map(|(pid, runs)| RemoteRuns {
                    pid,
                    runs: runs.runs().to_vec(),
                })
                .collect();
            let req = ResumeRequest {
                id: id.to_string(),
                missing,
            };
            new.send(&Opening::Resume(req))
                .await
                .map_err(|e| Ok(e.to_string()))?;
            match new.recv::<ResumeAnswer>().await {
                Ok(ResumeAnswer::Resumed) => Ok(new),
                Ok(ResumeAnswer::Refused { reason }) => Err(Err(reason)),
                Err(e) => Err(Ok(e.to_string())),
            }
        };
        match tokio::time::timeout(left, attempt).await {
            Ok(Ok(new)) => {
                *session = new;
                tracing::info!(id, %addr, "reconnected to the source; post-copy goes on");
                return Ok(());
            }
            Ok(Err(Err(reason))) => {
                return Err(MigrationError::refused(
                    format!("the source agent {agent} at {addr} refused to resume: "),
                    reason,
                ))
            }
            Ok(Err(Ok(e))) => last = e,
            Err(_) => last = format!("no answer within {:?}", rc.within),
        }
        tokio::time::sleep(RETRY_EVERY.min(left)).await;
    }
}

/// Installs the pages of the post-copy streams (answers and push) as they
/// arrive; the first error goes to `errors`.
async fn receive_pages(
    mut incoming: IncomingPages,
    server: Arc<FaultServer>,
    pids: Arc<HashSet<i32>>,
    errors: mpsc::UnboundedSender<MigrationError>,
) {
    let mut readers = tokio::task::JoinSet::new();
    while let Some(stream) = incoming.next().await {
        let (server, pids, errors) = (server.clone(), pids.clone(), errors.clone());
        readers.spawn(async move {
            if let Err(e) = read_stream(stream, &server, &pids).await {
                let _ = errors.send(e);
            }
        });
    }
    while readers.join_next().await.is_some() {}
}

async fn read_stream(
    mut stream: PageReceiver,
    server: &FaultServer,
    pids: &HashSet<i32>,
) -> Result<(), MigrationError> {
    while let Some(frame) = stream
        .next()
        .await
        .map_err(|e| MigrationError::link_in("a post-copy page stream failed", e))?
    {
        let h = frame.header;
        if !pids.contains(&h.pid) {
            return Err(MigrationError::protocol(format!(
                "a post-copy page frame for process {}, which is not part of the migrated tree, arrived",
                h.pid
            )));
        }
        if h.round != URGENT_ROUND && h.round != PUSH_ROUND {
            return Err(MigrationError::protocol(format!(
                "a page frame of round {} arrived during post-copy",
                h.round
            )));
        }
        let data = (!h.is_zero()).then_some(frame.data);
        loop {
            match server.install(
                h.pid,
                h.vaddr,
                u64::from(h.npages),
                data,
                h.round == URGENT_ROUND,
            ) {
                Ok(()) => break,
                Err(InstallError::Retry { .. }) => {
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
            }
        }
    }
    Ok(())
}
