//! The source's copy held by the kernel, not only by ptrace, from the
//! moment the destination may run its own: the tree's processes (parked
//! by the engine, `ptrace/park.rs`) are moved into a transient v1
//! freezer cgroup of ferry's and frozen, after a record names them
//! (`journal::Phase::Holding`). If the agent dies from then on, the tree
//! stays frozen instead of running next to the destination's copy; the
//! next run of the agent settles it by the recorded decision
//! ([`recover`]): resumed unless Committed, killed once Committed, and
//! for post-copy served to the destination that reconnects first, so
//! that its copy gets every page it misses.
//!
//! A container's processes move the same way, in the v1 freezer hierarchy
//! alone (their other cgroups stay their runtime's), so that freezing
//! never touches a cgroup ferry did not make. A container's post-copy is
//! not held (its pages are named by its namespace's PIDs, which a
//! restarted agent would have to map again): there ptrace alone holds it,
//! as before.

use super::journal::{Journal, Phase, Record, Role};
use super::protocol::RemoteRuns;
use crate::restore::HeldTree;
use std::time::Duration;

/// The source's tree held frozen in a transient freezer cgroup.
pub(super) struct SourceHold {
    held: HeldTree,
}

impl SourceHold {
    /// Records migration `id`'s hold of the tree rooted at `root` (its
    /// PID here; Holding: undecided, with `remote`, the pages a post-copy
    /// leaves here) and moves its processes, stopped by ptrace, into a
    /// frozen transient cgroup. None (logged) where no hold can be made:
    /// the tree is then held by ptrace alone.
    pub(super) fn begin(
        journal: &Journal,
        (id, peer, agent): (&str, &str, &str),
        root: i32,
        remote: &[RemoteRuns],
    ) -> Option<SourceHold> {
        let started = std::time::Instant::now();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = format!(
            "outgoing-{}-{}-{nanos:x}",
            super::destination_shared::sanitize(id),
            std::process::id()
        );
        let planned = crate::inspect::collect_tree(root)
            .map_err(|e| e.to_string())
            .and_then(|pids| HeldTree::plan(&name, &pids).map_err(|e| e.to_string()));
        let held = match planned {
            Ok(held) => held,
            Err(why) => {
                tracing::warn!(id, %why, "the tree is held by ptrace alone");
                return None;
            }
        };
        let record = Record {
            id: id.to_string(),
            role: Role::Source,
            phase: Phase::Holding,
            peer: peer.to_string(),
            agent: agent.to_string(),
            hold: name,
            members: held.members.clone(),
            remote: remote.to_vec(),
        };
        // Not fsynced: the held tree dies with its host, so only this
        // agent's death can leave it to a later run.
        if let Err(e) = journal.note(&record) {
            tracing::warn!(id, %e, "the tree is held by ptrace alone");
            return None;
        }
        match held.hold() {
            Ok(()) => {
                tracing::debug!(
                    id,
                    ms = started.elapsed().as_secs_f64() * 1e3,
                    "the tree is held frozen"
                );
                Some(SourceHold { held })
            }
            Err(e) => {
                tracing::warn!(id, %e, "the tree is held by ptrace alone");
                journal.remove(Role::Source, id);
                None
            }
        }
    }

    /// The engine ends the copy: it dies, back under ptrace alone.
    pub(super) fn end_killed(self) {
        self.held.kill_traced();
    }

    /// The engine resumes (or itself kills) the copy: back under ptrace
    /// alone.
    pub(super) fn end_released(self) {
        if let Err(e) = self.held.thaw() {
            tracing::error!(%e, "cannot let the held tree go back to its tracer");
        }
    }
}

/// At the agent's start: settles every source copy a dead run of it left
/// held. Undecided (Holding) is recorded Aborted, then like Aborted the
/// copy resumes; a Committed pre-copy's copy is killed; a Committed
/// post-copy's copy serves the pages it still holds to its destination,
/// which reconnects within `resume_wait` (in a thread of its own), then
/// is killed, or resumed when the destination does not come back.
pub fn recover(work_dir: &std::path::Path, resume_wait: Duration) {
    let journal = Journal::of(work_dir);
    for record in journal.all() {
        if record.role != Role::Source || record.hold.is_empty() {
            continue;
        }
        tracing::info!(id = %record.id, phase = ?record.phase, hold = %record.hold, "found the copy a dead run of this agent held for a migration it sent");
        let held = HeldTree {
            name: record.hold.clone(),
            members: record.members.clone(),
        };
        let phase = match record.phase {
            Phase::Holding | Phase::Prepared => journal
                .decide(&record.id, Phase::Aborted, &record.peer, &record.agent)
                .unwrap_or(Phase::Aborted),
            phase => phase,
        };
        match phase {
            Phase::Committed if !record.remote.is_empty() => {
                let rt = tokio::runtime::Handle::current();
                let journal = journal.clone();
                // Registered now, before the agent takes sessions.
                let waiter = super::postcopy::ResumeWaiter::expect(&record.id, &record.agent);
                tracing::info!(id = %record.id, wait = ?resume_wait, "the held copy serves the pages it still holds to its destination once it reconnects");
                std::thread::spawn(move || {
                    serve_left_pages(&rt, &journal, &record, (waiter, resume_wait), held)
                });
            }
            Phase::Committed => {
                tracing::info!(id = %record.id, "the destination runs the workload: the held copy here is killed");
                held.kill();
                forget_hold(&journal, record);
            }
            _ => {
                tracing::info!(id = %record.id, "the migration was not committed: the held copy here resumes");
                if let Err(e) = held.thaw() {
                    tracing::error!(id = %record.id, %e, "cannot resume a held copy");
                }
                forget_hold(&journal, record);
            }
        }
    }
}

/// Serves the post-copy pages of `record`'s held copy to its destination,
/// then kills the copy; resumes it when the destination does not
/// reconnect or fails.
fn serve_left_pages(
    rt: &tokio::runtime::Handle,
    journal: &Journal,
    record: &Record,
    (waiter, resume_wait): (super::postcopy::ResumeWaiter, Duration),
    held: HeldTree,
) {
    let served = super::postcopy::serve_after_restart(rt, waiter, &record.remote, resume_wait);
    match served {
        Ok(s) => {
            tracing::info!(id = %record.id, requests = s.requests, pages_pushed = s.pages_pushed, "every page is on the destination: the held copy here is killed");
            held.kill();
        }
        Err(e) => {
            tracing::warn!(id = %record.id, %e, "post-copy could not be finished: the held copy here resumes");
            if let Err(e) = held.thaw() {
                tracing::error!(id = %record.id, %e, "cannot resume a held copy");
            }
        }
    }
    journal.remove(Role::Source, &record.id);
}

/// Rewrites `record` without its hold: settled, it is kept only for the
/// destination's question about the outcome.
pub(super) fn forget_hold(journal: &Journal, record: Record) {
    let settled = Record {
        hold: String::new(),
        members: Vec::new(),
        remote: Vec::new(),
        ..record
    };
    if let Err(e) = journal.write(&settled) {
        tracing::warn!(id = %settled.id, %e, "cannot rewrite a settled two-phase commit record");
    }
}
