//! The destination's half of post-copy: restore with lazy memory while the
//! fault server runs (the restore itself may touch missing pages), report
//! the workload running, forward its page requests to the source, install
//! the pages that arrive, and tell the source once every page is local.

use super::destination::{
    container_of, keep, kill_tree, name, DestinationOptions, DestinationState, Received,
};
use super::protocol::{Offer, RemoteRuns, ToDestination, ToSource, PUSH_ROUND, URGENT_ROUND};
use crate::dump::sink::{CheckpointSink, ImageSink};
use crate::image::{Checkpoint, ImageWriter, PAGE_SIZE};
use crate::lazy::{FaultServer, InstallError};
use crate::memory::PageRuns;
use crate::restore::{LazyPages, RestoreOptions};
use crate::transport::{IncomingPages, PageReceiver, Session};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How often the "every page local" check runs besides on progress.
const CHECK_EVERY: Duration = Duration::from_millis(20);

/// Checks the pages the source says it kept: each run page-aligned and
/// inside a private anonymous mapping of a process of the checkpoint.
fn check_remote(ck: &Checkpoint, remote: &[RemoteRuns]) -> Result<HashMap<i32, PageRuns>, String> {
    let mut out = HashMap::new();
    for r in remote {
        let p = ck
            .processes
            .iter()
            .find(|p| p.pid == r.pid)
            .ok_or_else(|| {
                format!(
                    "the source kept pages of process {}, which the state does not describe",
                    r.pid
                )
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
                return Err(format!(
                    "the source kept pages {start:#x}-{end:#x} of process {}, outside its private anonymous memory (at {at:#x}: {what})",
                    r.pid
                ));
            }
        }
        if out
            .insert(r.pid, PageRuns::from_runs(r.runs.clone()))
            .is_some()
        {
            return Err(format!(
                "the source named the pages of process {} twice",
                r.pid
            ));
        }
    }
    Ok(out)
}

/// Runs the post-copy restore and phase; `restored` is set once the
/// workload runs, or `created` once its container exists (the caller kills
/// the one or deletes the other on any error).
#[allow(clippy::too_many_arguments)]
pub(super) async fn run(
    session: &mut Session,
    opts: &DestinationOptions,
    state: &mut DestinationState,
    restored: &mut Option<Vec<i32>>,
    created: &mut Option<crate::container::Container>,
    dir: &Path,
    offer: Offer,
    checkpoint: Checkpoint,
    writer: ImageWriter,
    incoming: IncomingPages,
    remote: Vec<RemoteRuns>,
) -> Result<Received, String> {
    *state = DestinationState::Restoring;
    let remote = check_remote(&checkpoint, &remote)?;
    let tids: Vec<i32> = checkpoint
        .processes
        .iter()
        .flat_map(|p| p.threads.iter().map(|t| t.tid))
        .collect();
    let processes = checkpoint.processes.len();
    let pids: Arc<HashSet<i32>> = Arc::new(checkpoint.processes.iter().map(|p| p.pid).collect());
    let (requests_tx, mut requests) = mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (server, server_thread) = FaultServer::start(remote.clone(), ready_rx, requests_tx)
        .map_err(|e| format!("cannot start the fault server: {e}"))?;
    let (errors_tx, mut errors) = mpsc::unbounded_channel::<String>();
    let receiver = tokio::spawn(receive_pages(incoming, server.clone(), pids, errors_tx));

    // A container is created first: its init is the root husk, and what
    // to kill (the whole PID namespace with it) should the post-copy fail.
    let target = match container_of(&offer, opts) {
        Some(t) => {
            let c = t.container.clone();
            let husk = tokio::task::spawn_blocking(move || t.prepare())
                .await
                .map_err(|e| format!("the container creation task failed: {e}"))??;
            *created = Some(c.clone());
            Some((c, husk))
        }
        None => None,
    };
    let victims = target.as_ref().map_or_else(|| tids.clone(), |t| vec![t.1]);
    let restore_dir = dir.to_path_buf();
    let lazy = LazyPages {
        remote,
        ready: ready_tx,
    };
    let in_container = target.is_some();
    let mut restore = tokio::task::spawn_blocking(move || {
        let mut sink = ImageSink::new(writer);
        sink.commit(&checkpoint).map_err(|e| e.to_string())?;
        let opts = RestoreOptions { lazy: Some(lazy) };
        match target {
            Some((c, husk)) => crate::container::restore_created(&c, husk, &restore_dir, opts)
                .map_err(|e| e.to_string()),
            None => crate::restore::restore_with(&restore_dir, opts).map_err(|e| e.to_string()),
        }
    });

    let result = async {
        let (mut tx, mut rx) = session.split_control();
        let control = rx.recv::<ToDestination>();
        tokio::pin!(control);
        let mut running: Option<(Instant, crate::restore::RestoreStats)> = None;
        let mut restoring = true;
        let mut all_local: Option<Instant> = None;
        loop {
            if let (Some((since, _)), None) = (&running, all_local) {
                if server.restored() == processes && server.remaining() == 0 {
                    let now = Instant::now();
                    all_local = Some(now);
                    let all_local_ms = (now - *since).as_secs_f64() * 1000.0;
                    tracing::info!(all_local_ms, "every page is local");
                    tx.send(&ToSource::AllPages {
                        stats: server.stats(),
                        all_local_ms,
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                    *state = DestinationState::Running;
                    server.stop();
                }
            }
            tokio::select! {
                r = &mut restore, if restoring => {
                    restoring = false;
                    let stats = r.map_err(|e| format!("the restore task failed: {e}"))??;
                    if !in_container {
                        *restored = Some(tids.clone());
                    }
                    tx.send(&ToSource::Running { restore_ms: stats.restore_ms, pid: stats.pid })
                        .await
                        .map_err(|e| e.to_string())?;
                    *state = DestinationState::PostCopy;
                    running = Some((Instant::now(), stats));
                }
                Some(req) = requests.recv() => {
                    tx.send(&ToSource::PageRequest(req)).await.map_err(|e| e.to_string())?;
                }
                Some(e) = errors.recv() => return Err(e),
                m = &mut control => {
                    return match m.map_err(|e| e.to_string())? {
                        ToDestination::Done if all_local.is_some() => {
                            let (_, stats) = running.take().ok_or("no restore")?;
                            Ok(stats)
                        }
                        ToDestination::Abort { reason } => Err(format!("the source aborted: {reason}")),
                        other => Err(format!("unexpected {} during post-copy", name(&other))),
                    };
                }
                _ = server.changed() => {}
                _ = tokio::time::sleep(CHECK_EVERY) => {
                    if let Some(t) = all_local {
                        if t.elapsed() > opts.confirm_timeout {
                            return Err(format!("no confirmation from the source within {:?}", opts.confirm_timeout));
                        }
                    }
                }
            }
        }
    }
    .await;
    server.stop();
    receiver.abort();
    if result.is_err() {
        // The workload (or the restore) may wait on pages that will never
        // come: kill it, then the restore ends.
        kill_tree(&victims);
        if !restore.is_finished() {
            let _ = restore.await;
        }
    }
    let _ = tokio::task::spawn_blocking(move || server_thread.join()).await;
    let stats = result?;
    keep(session, opts).await;
    *restored = None;
    *created = None;
    *state = DestinationState::Done;
    Ok(Received {
        id: offer.id,
        pid: stats.pid,
        restore_ms: stats.restore_ms,
    })
}

/// Installs the pages of the post-copy streams (answers and push) as they
/// arrive; the first error goes to `errors`.
async fn receive_pages(
    mut incoming: IncomingPages,
    server: Arc<FaultServer>,
    pids: Arc<HashSet<i32>>,
    errors: mpsc::UnboundedSender<String>,
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
) -> Result<(), String> {
    while let Some(frame) = stream.next().await.map_err(|e| e.to_string())? {
        let h = frame.header;
        if !pids.contains(&h.pid) {
            return Err(format!(
                "a post-copy page frame for process {}, which is not part of the migrated tree, arrived",
                h.pid
            ));
        }
        if h.round != URGENT_ROUND && h.round != PUSH_ROUND {
            return Err(format!(
                "a page frame of round {} arrived during post-copy",
                h.round
            ));
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
