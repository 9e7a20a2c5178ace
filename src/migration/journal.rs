//! The durable records of the switch-over's two-phase commit, one small
//! file per migration and side in the agent's work directory
//! (`.twopc/`), written to a temporary file, fsynced and renamed (the
//! directory fsynced too), so that an agent that dies at any moment finds
//! on its next start what it had promised:
//!
//! - the destination writes `Prepared` (with the PIDs of its restored
//!   copy, held frozen, and the transient freezer cgroup holding them)
//!   before it tells the source, then `Committed` when it hears the
//!   source's decision, before it lets the copy run;
//! - the source, the one authority, writes `Committed` before it sends
//!   Commit and ends its copy, or `Aborted` before it resumes its copy.
//!   Asked for the outcome of a migration it has no decision for, it
//!   records `Aborted` first ([`Journal::decide`] is atomic within the
//!   agent), so that a late Prepared can no longer be committed.
//!
//! Records go once both sides know (the source on `Kept`, the destination
//! once its copy runs or is gone); decided source records left (an
//! unacknowledged Commit) are bounded to [`MAX_DECIDED`], oldest first.

use super::protocol::{RemoteRuns, Verdict};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The records' directory inside the agent's work directory (a name no
/// migration's incoming directory can have: it has a dot).
const DIR: &str = ".twopc";

/// Decided source records kept at most; the oldest go first.
const MAX_DECIDED: usize = 256;

/// `FERRY_FAULT`'s value that kills the source agent right after it
/// recorded Committed, before it sends Commit (tests of the recovery
/// only; read in [`Journal::decide`], nowhere else).
pub const FAULT_AFTER_COMMIT: &str = "after-commit";

/// `FERRY_FAULT`'s value that kills the destination agent right after it
/// recorded Prepared and told the source (tests of the recovery only;
/// read in [`fault`]).
pub const FAULT_AFTER_PREPARED: &str = "after-prepared";

/// `FERRY_FAULT`'s value that kills the destination agent right after its
/// restored copy is held frozen, before it records Prepared (tests of the
/// recovery only; read in [`fault`]).
pub const FAULT_AFTER_HOLD: &str = "after-hold";

/// `FERRY_FAULT`'s value that kills the source agent of a post-copy
/// migration as soon as the destination says its copy runs, the pages
/// still here (tests of the recovery only; read in `postcopy.rs`).
pub const FAULT_POSTCOPY_RUNNING: &str = "postcopy-running";

/// Serialises [`Journal::decide`] within this agent: a decision and an
/// outcome question on the same migration never interleave.
static DECIDING: Mutex<()> = Mutex::new(());

/// Why a record could not be written.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The file system refused.
    #[error("cannot write the two-phase commit record {path}: {source}")]
    Write {
        /// The record (or its directory).
        path: PathBuf,
        /// The system's reason.
        source: std::io::Error,
    },
}

/// Which side of a migration a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// This agent sent the workload.
    Source,
    /// This agent received it.
    Destination,
}

/// Where a side's switch-over stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Destination: restoring into the hold cgroup, the source not told
    /// yet. A dead run's copy in that state cannot have been committed
    /// (Prepared comes first): it is killed. Source: its copy held frozen
    /// in the hold cgroup, undecided: a dead run's copy in that state is
    /// resumed (Aborted first).
    Holding,
    /// Destination: restored and held frozen, waiting for the decision.
    Prepared,
    /// The source decided that the destination's copy runs.
    Committed,
    /// The source decided that its own copy runs.
    Aborted,
}

/// One migration's record on one side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The migration's identifier (its offer's).
    pub id: String,
    /// This agent's side.
    pub role: Role,
    /// Where it stands.
    pub phase: Phase,
    /// The other agent's QUIC address.
    pub peer: String,
    /// The other agent's name (its certificate's).
    pub agent: String,
    /// The transient freezer cgroup holding this side's copy (its name
    /// under ferry's), empty when none.
    pub hold: String,
    /// Each held process and the v1 freezer cgroup it goes back to when
    /// it is let run.
    pub members: Vec<(i32, String)>,
    /// Source of a post-copy migration: the pages its held copy still
    /// serves, so that a restarted agent serves them to a destination
    /// that reconnects.
    pub remote: Vec<RemoteRuns>,
}

/// A work directory's records.
#[derive(Debug, Clone)]
pub struct Journal {
    dir: PathBuf,
}

impl Journal {
    /// The records of the agent whose work directory is `work_dir`.
    pub fn of(work_dir: &Path) -> Self {
        Journal {
            dir: work_dir.join(DIR),
        }
    }

    fn path(&self, role: Role, id: &str) -> PathBuf {
        let side = match role {
            Role::Source => "source",
            Role::Destination => "destination",
        };
        let hex: String = id.bytes().map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("{side}-{hex}"))
    }

    /// Writes `record` durably (replacing the one before).
    pub fn write(&self, record: &Record) -> Result<(), JournalError> {
        self.put(record, true)
    }

    /// Writes `record` (replacing the one before) without waiting for the
    /// disk: for what only this agent's death, not its host's, can leave
    /// to a later run (a held copy dies with its host), kept out of the
    /// downtime.
    pub fn note(&self, record: &Record) -> Result<(), JournalError> {
        self.put(record, false)
    }

    /// Writes `record` whole (a temporary file renamed over the one
    /// before), waiting for the disk when `durable`.
    fn put(&self, record: &Record, durable: bool) -> Result<(), JournalError> {
        let path = self.path(record.role, &record.id);
        let err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| JournalError::Write { path, source }
        };
        std::fs::create_dir_all(&self.dir).map_err(err(&self.dir))?;
        let tmp = path.with_extension("tmp");
        let mut file = std::fs::File::create(&tmp).map_err(err(&tmp))?;
        file.write_all(encode(record).as_bytes())
            .and_then(|()| if durable { file.sync_all() } else { Ok(()) })
            .map_err(err(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(err(&path))?;
        if durable {
            std::fs::File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(err(&self.dir))?;
        }
        if record.role == Role::Source {
            self.bound();
        }
        Ok(())
    }

    /// The record of migration `id` on side `role`, if any.
    pub fn read(&self, role: Role, id: &str) -> Option<Record> {
        let text = std::fs::read_to_string(self.path(role, id)).ok()?;
        decode(&text)
    }

    /// Every readable record (an unreadable one is logged).
    pub fn all(&self) -> Vec<Record> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut records = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some() {
                // A temporary file of a write that did not finish.
                let _ = std::fs::remove_file(&path);
                continue;
            }
            match std::fs::read_to_string(&path).ok().and_then(|t| decode(&t)) {
                Some(r) => records.push(r),
                None => {
                    tracing::warn!(path = %path.display(), "an unreadable two-phase commit record")
                }
            }
        }
        records
    }

    /// Removes the record of migration `id` on side `role`: both sides
    /// know the outcome.
    pub fn remove(&self, role: Role, id: &str) {
        let path = self.path(role, id);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(path = %path.display(), %e, "cannot remove a two-phase commit record")
            }
            _ => {}
        }
    }

    /// The source's decision on migration `id`: `wanted` is recorded
    /// (durably, before this returns) unless a decision is recorded
    /// already, which is then returned instead. `peer` and `agent` name
    /// the destination; a hold recorded before stays in the record.
    pub fn decide(
        &self,
        id: &str,
        wanted: Phase,
        peer: &str,
        agent: &str,
    ) -> Result<Phase, JournalError> {
        let _one = DECIDING.lock().unwrap_or_else(|e| e.into_inner());
        let before = self.read(Role::Source, id);
        if let Some(r) = &before {
            if !matches!(r.phase, Phase::Prepared | Phase::Holding) {
                return Ok(r.phase);
            }
        }
        let (hold, members, remote) = before
            .map(|r| (r.hold, r.members, r.remote))
            .unwrap_or_default();
        self.write(&Record {
            id: id.to_string(),
            role: Role::Source,
            phase: wanted,
            peer: peer.to_string(),
            agent: agent.to_string(),
            hold,
            members,
            remote,
        })?;
        if wanted == Phase::Committed {
            fault(FAULT_AFTER_COMMIT);
        }
        Ok(wanted)
    }

    /// Answers a destination that asks how migration `id` ended: the
    /// recorded decision, or (no decision yet, from `agent` at `peer`)
    /// Aborted, recorded first so that it holds.
    pub fn answer(&self, id: &str, peer: &str, agent: &str) -> Verdict {
        match self.decide(id, Phase::Aborted, peer, agent) {
            Ok(Phase::Committed) => Verdict::Committed,
            Ok(_) => Verdict::Aborted,
            Err(e) => {
                tracing::error!(%e, id, "cannot record the abort a destination asked about");
                Verdict::Unknown
            }
        }
    }

    /// Keeps at most [`MAX_DECIDED`] decided source records, removing the
    /// oldest.
    fn bound(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut decided: Vec<(std::time::SystemTime, PathBuf)> = entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("source-"))
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        if decided.len() <= MAX_DECIDED {
            return;
        }
        decided.sort();
        for (_, path) in &decided[..decided.len() - MAX_DECIDED] {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Kills this agent at once (SIGKILL, as a crash) when `FERRY_FAULT`
/// names `moment`: the test-only fault hook of the two-phase commit
/// ([`FAULT_AFTER_COMMIT`], [`FAULT_AFTER_PREPARED`], [`FAULT_AFTER_HOLD`],
/// [`FAULT_POSTCOPY_RUNNING`]).
pub fn fault(moment: &str) {
    if std::env::var("FERRY_FAULT").is_ok_and(|v| v == moment) {
        tracing::warn!(moment, "FERRY_FAULT: killing this agent");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

/// The record as text: one `key value` line each.
fn encode(r: &Record) -> String {
    let role = match r.role {
        Role::Source => "source",
        Role::Destination => "destination",
    };
    let phase = match r.phase {
        Phase::Holding => "holding",
        Phase::Prepared => "prepared",
        Phase::Committed => "committed",
        Phase::Aborted => "aborted",
    };
    let members: String = r
        .members
        .iter()
        .map(|(pid, path)| format!("member {pid} {path}\n"))
        .collect();
    let remote: String = r
        .remote
        .iter()
        .map(|rr| {
            let runs: Vec<String> = rr
                .runs
                .iter()
                .map(|(s, e)| format!("{s:x}-{e:x}"))
                .collect();
            format!("remote {} {}\n", rr.pid, runs.join(" "))
        })
        .collect();
    format!(
        "id {}\nrole {role}\nphase {phase}\npeer {}\nagent {}\nhold {}\n{members}{remote}",
        r.id, r.peer, r.agent, r.hold,
    )
}

/// The record [`encode`] wrote, or None when it is not one.
fn decode(text: &str) -> Option<Record> {
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
            .map(str::to_string)
    };
    let role = match field("role")?.as_str() {
        "source" => Role::Source,
        "destination" => Role::Destination,
        _ => return None,
    };
    let phase = match field("phase")?.as_str() {
        "holding" => Phase::Holding,
        "prepared" => Phase::Prepared,
        "committed" => Phase::Committed,
        "aborted" => Phase::Aborted,
        _ => return None,
    };
    let members = text
        .lines()
        .filter_map(|l| l.strip_prefix("member "))
        .map(|m| {
            let (pid, path) = m.split_once(' ')?;
            Some((pid.parse().ok()?, path.to_string()))
        })
        .collect::<Option<Vec<_>>>()?;
    let remote = text
        .lines()
        .filter_map(|l| l.strip_prefix("remote "))
        .map(|line| {
            let mut words = line.split(' ');
            let pid = words.next()?.parse().ok()?;
            let runs = words
                .map(|run| {
                    let (s, e) = run.split_once('-')?;
                    Some((
                        u64::from_str_radix(s, 16).ok()?,
                        u64::from_str_radix(e, 16).ok()?,
                    ))
                })
                .collect::<Option<Vec<_>>>()?;
            Some(RemoteRuns { pid, runs })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Record {
        id: field("id")?,
        role,
        phase,
        peer: field("peer")?,
        agent: field("agent")?,
        hold: field("hold")?,
        members,
        remote,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(phase: Phase) -> Record {
        Record {
            id: "h-1-2".into(),
            role: Role::Destination,
            phase,
            peer: "127.0.0.1:4433".into(),
            agent: "a".into(),
            hold: "incoming-h-1-2".into(),
            members: vec![(7, "/".into()), (8, "/x y".into())],
            remote: vec![RemoteRuns {
                pid: 7,
                runs: vec![(0x1000, 0x3000), (0x7f00_0000_0000, 0x7f00_0000_1000)],
            }],
        }
    }

    #[test]
    fn a_record_reads_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::of(dir.path());
        j.write(&record(Phase::Prepared)).unwrap();
        assert_eq!(
            j.read(Role::Destination, "h-1-2"),
            Some(record(Phase::Prepared))
        );
        assert_eq!(j.all(), vec![record(Phase::Prepared)]);
        j.remove(Role::Destination, "h-1-2");
        assert!(j.all().is_empty());
    }

    #[test]
    fn the_first_decision_holds() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::of(dir.path());
        assert_eq!(j.read(Role::Source, "m"), None);
        // Asked first: Aborted is recorded, and a later commit gets it.
        assert_eq!(j.answer("m", "p", "a"), Verdict::Aborted);
        assert_eq!(
            j.decide("m", Phase::Committed, "p", "a").unwrap(),
            Phase::Aborted
        );
        assert_eq!(j.read(Role::Source, "m").unwrap().phase, Phase::Aborted);
        assert_eq!(
            j.decide("n", Phase::Committed, "p", "a").unwrap(),
            Phase::Committed
        );
        assert_eq!(j.answer("n", "p", "a"), Verdict::Committed);
        assert_eq!(j.read(Role::Source, "n").unwrap().phase, Phase::Committed);
    }

    #[test]
    fn a_decision_keeps_the_hold_recorded_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::of(dir.path());
        let holding = Record {
            role: Role::Source,
            phase: Phase::Holding,
            ..record(Phase::Holding)
        };
        j.note(&holding).unwrap();
        assert_eq!(
            j.decide("h-1-2", Phase::Committed, "p", "a").unwrap(),
            Phase::Committed
        );
        let decided = j.read(Role::Source, "h-1-2").unwrap();
        assert_eq!(
            (decided.hold, decided.members, decided.remote),
            (holding.hold, holding.members, holding.remote)
        );
        assert_eq!(j.answer("h-1-2", "p", "a"), Verdict::Committed);
    }
}
