//! The destination's end of the switch-over's two-phase commit: its
//! restored copy held frozen and recorded Prepared ([`super::journal`]),
//! it tells the source and lets the copy run only on the source's Commit,
//! kills it on Abort, and, when the link is lost before either, asks the
//! source agent for its decision on new sessions ([`Opening::Outcome`])
//! until it answers, the copy held meanwhile: a stall or a cut as long
//! as the QUIC idle timeout never makes both sides give up. An agent
//! that starts does the same for every Prepared record a dead run of it
//! left ([`recover`]).

use super::destination_shared::{keep, DestinationOptions, Reconnect, Workload};
use super::error::MigrationError;
use super::journal::{self, Journal, Phase, Record, Role};
use super::protocol::{Opening, ToDestination, ToSource, Verdict};
use crate::restore::{HeldTree, RestoreStats};
use crate::transport::Session;
use std::net::SocketAddr;
use std::time::Duration;

/// Pause between two questions to a source agent that does not answer.
const ASK_EVERY: Duration = Duration::from_secs(1);

/// Records the restored `workload` of migration `id` Prepared, tells the
/// source, and waits for its decision: on Commit, records it, lets the
/// copy run and answers Kept; otherwise kills the copy and returns why.
pub(super) async fn prepare_and_settle(
    session: &mut Session,
    opts: &DestinationOptions,
    id: &str,
    restore: &RestoreStats,
    workload: &Workload,
) -> Result<(), MigrationError> {
    let journal = Journal::of(&opts.work_dir);
    let held = workload.held();
    let record = Record {
        id: id.to_string(),
        role: Role::Destination,
        phase: Phase::Prepared,
        peer: session.peer_addr().to_string(),
        agent: session.peer_agent().to_string(),
        hold: held.map(|h| h.name.clone()).unwrap_or_default(),
        members: held.map(|h| h.members.clone()).unwrap_or_default(),
        remote: Vec::new(),
    };
    blocking({
        let (journal, record) = (journal.clone(), record.clone());
        move || journal.write(&record).map_err(MigrationError::local)
    })
    .await?;
    let sent = session
        .send(&ToSource::Prepared {
            restore_ms: restore.restore_ms,
            pid: restore.pid,
        })
        .await;
    tracing::info!(
        id,
        pid = restore.pid,
        "the restored copy is held; told the source Prepared"
    );
    journal::fault(journal::FAULT_AFTER_PREPARED);
    let heard = match sent {
        Ok(()) => {
            match session.recv::<ToDestination>().await {
                Ok(ToDestination::Commit) => {
                    tracing::debug!(id, "the source committed");
                    Some(Verdict::Committed)
                }
                Ok(ToDestination::Abort { .. }) => Some(Verdict::Aborted),
                Ok(other) => {
                    tracing::warn!(id, message = super::destination_shared::name(&other), "the source answered Prepared with something else; asking it for the decision");
                    None
                }
                Err(e) => {
                    tracing::warn!(id, %e, "the link to the source broke before its decision; asking it");
                    None
                }
            }
        }
        Err(_) => None,
    };
    let verdict = match (heard, &opts.reconnect) {
        (Some(v), _) => v,
        (None, Some(rc)) => ask(rc, session.peer_addr(), session.peer_agent(), id).await,
        (None, None) => Verdict::Aborted,
    };
    if verdict == Verdict::Committed {
        blocking(move || apply(&journal, &record, Verdict::Committed)).await?;
        keep(session, opts, Some(workload)).await?;
        return Ok(());
    }
    blocking({
        let workload = workload.clone();
        move || {
            workload.remove();
            journal.remove(Role::Destination, &record.id);
            Ok(())
        }
    })
    .await?;
    Err(MigrationError::refused(
        "the source decided: ",
        format!("{verdict:?}; the copy here is killed"),
    ))
}

/// Runs `f` off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, MigrationError> + Send + 'static,
) -> Result<T, MigrationError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| MigrationError::local_in("a two-phase commit task failed", e))?
}

/// Carries out `verdict` on the held copy of `record`: Committed is
/// recorded, then the copy runs; otherwise the copy is killed. The record
/// goes then: this side knows.
fn apply(journal: &Journal, record: &Record, verdict: Verdict) -> Result<(), MigrationError> {
    let held = HeldTree {
        name: record.hold.clone(),
        members: record.members.clone(),
    };
    if verdict == Verdict::Committed {
        let committed = Record {
            phase: Phase::Committed,
            ..record.clone()
        };
        journal.write(&committed).map_err(MigrationError::local)?;
        if !record.hold.is_empty() {
            held.thaw().map_err(|e| {
                MigrationError::local(format!(
                    "the source committed migration {}, but its copy here cannot be let run: {e}",
                    record.id
                ))
            })?;
            tracing::debug!(id = %record.id, "the committed copy runs");
        }
    } else if !record.hold.is_empty() {
        held.kill();
    }
    journal.remove(Role::Destination, &record.id);
    Ok(())
}

/// Asks the source agent at `addr` (`agent`) for its decision on
/// migration `id`, on a new session, until it answers.
async fn ask(rc: &Reconnect, addr: SocketAddr, agent: &str, id: &str) -> Verdict {
    loop {
        let attempt = async {
            let mut session = rc
                .transport
                .connect(addr, agent)
                .await
                .map_err(|e| e.to_string())?;
            session
                .send(&Opening::Outcome(id.to_string()))
                .await
                .map_err(|e| e.to_string())?;
            let verdict = session.recv::<Verdict>().await.map_err(|e| e.to_string());
            session.close("outcome heard");
            verdict
        };
        match tokio::time::timeout(Duration::from_secs(10), attempt).await {
            Ok(Ok(verdict)) => {
                tracing::info!(id, ?verdict, "the source told the outcome of the migration");
                return verdict;
            }
            Ok(Err(why)) => {
                tracing::info!(id, %addr, %why, "the source agent cannot tell the outcome yet; the copy here stays held")
            }
            Err(_) => {
                tracing::info!(id, %addr, "the source agent did not answer; the copy here stays held")
            }
        }
        tokio::time::sleep(ASK_EVERY).await;
    }
}

/// At the agent's start: settles what a dead run of it left. A copy held
/// Prepared waits for the source's decision (asked in a task of its own,
/// again and again while the source is out of reach); a Committed one
/// runs; a Holding (never offered) or Aborted one is killed. Each is
/// logged. A container created at an offer and never restored into is
/// deleted.
pub fn recover(opts: &DestinationOptions) {
    super::destination_shared::remove_stale_created(&opts.work_dir);
    let journal = Journal::of(&opts.work_dir);
    for record in journal.all() {
        if record.role != Role::Destination {
            continue;
        }
        tracing::info!(id = %record.id, phase = ?record.phase, source = %record.peer, "found the switch-over of a migration a dead run of this agent received");
        match record.phase {
            Phase::Prepared => {
                let (Some(rc), Ok(addr)) = (opts.reconnect.clone(), record.peer.parse()) else {
                    tracing::error!(id = %record.id, "cannot ask the source of a held copy; it stays held");
                    continue;
                };
                let journal = journal.clone();
                tokio::spawn(async move {
                    let verdict = ask(&rc, addr, &record.agent, &record.id).await;
                    let settled = blocking(move || apply(&journal, &record, verdict)).await;
                    if let Err(e) = settled {
                        tracing::error!(%e, "settling a held copy failed");
                    }
                });
            }
            phase => {
                // Holding (a copy never offered to its source) and
                // Aborted: killed.
                let verdict = match phase {
                    Phase::Committed => Verdict::Committed,
                    _ => Verdict::Aborted,
                };
                if let Err(e) = apply(&journal, &record, verdict) {
                    tracing::error!(%e, "settling a decided copy failed");
                }
            }
        }
    }
}
