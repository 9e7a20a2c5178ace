//! The cgroup freezer (v1 or v2) that stops a container's processes
//! while ferry checks its tree and checkpoints it, and the transient v1
//! freezer cgroups a plain tree is moved into while it is checkpointed
//! (`dump/hold.rs`), so that a ferry that dies leaves it frozen.

use crate::proc::cgroups::{read_cgroups, CgroupLine};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a freezer is waited for.
const FREEZE_WAIT: Duration = Duration::from_secs(10);

/// The mount point of the v1 freezer hierarchy.
const V1_MOUNT: &str = "/sys/fs/cgroup/freezer";

/// The v1 freezer cgroup (under [`V1_MOUNT`]) that holds ferry's transient
/// freezer cgroups, one per checkpointed plain tree, so that what ferry
/// made is never confused with anything else's.
const TRANSIENT_PARENT: &str = "ferry";

/// Why a cgroup freezer operation failed.
#[derive(Debug, thiserror::Error)]
pub enum FreezerError {
    /// A cgroup file could not be read or written.
    #[error("cgroup {path}: {source}")]
    Cgroup {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A process's cgroups could not be read from /proc.
    #[error(transparent)]
    Proc(#[from] crate::proc::ProcError),
    /// The process's cgroup offers no freezer.
    #[error("process {pid} is in no freezable cgroup (no v1 freezer line and no cgroup v2 path in /proc/{pid}/cgroup)")]
    NoFreezer {
        /// The process (a container's init).
        pid: i32,
    },
    /// The freezer did not reach the wanted state in time.
    #[error("cgroup {path} did not become {wanted} within {secs} s")]
    FreezeTimeout {
        /// The cgroup.
        path: String,
        /// The state wanted.
        wanted: &'static str,
        /// How long ferry waited.
        secs: u64,
    },
}

/// The freezer of a container's cgroup: the v1 freezer controller when the
/// process has one, else cgroup v2's cgroup.freeze.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Freezer {
    /// /sys/fs/cgroup/freezer/PATH/freezer.state.
    V1(PathBuf),
    /// PATH/cgroup.freeze in the cgroup2 mount.
    V2(PathBuf),
}

impl Freezer {
    /// The freezer of process `pid`'s cgroup.
    pub fn of(pid: i32) -> Result<Self, FreezerError> {
        let lines = read_cgroups(pid, pid)?;
        let (v1, v2) = freezer_paths(&lines);
        if let Some(p) = v1 {
            let dir = Path::new(V1_MOUNT).join(p.trim_start_matches('/'));
            if dir.join("freezer.state").exists() {
                return Ok(Freezer::V1(dir));
            }
        }
        if let Some(p) = v2 {
            for mount in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"] {
                let dir = Path::new(mount).join(p.trim_start_matches('/'));
                if p != "/" && dir.join("cgroup.freeze").exists() {
                    return Ok(Freezer::V2(dir));
                }
            }
        }
        Err(FreezerError::NoFreezer { pid })
    }

    /// A transient v1 freezer cgroup `ferry/NAME` of ferry's own, made
    /// (or found, left by a dead run) so that a plain tree can be frozen
    /// by the kernel while ferry traces it: its processes are moved in
    /// with [`Freezer::adopt`] (in v1 a process moves in the freezer
    /// hierarchy alone, its other cgroups unchanged). `None` on a host
    /// without a v1 freezer hierarchy.
    pub fn transient(name: &str) -> Result<Option<Self>, FreezerError> {
        if !Path::new(V1_MOUNT).join("cgroup.procs").exists() {
            return Ok(None);
        }
        let dir = Self::transient_dir(name);
        std::fs::create_dir_all(&dir).map_err(|source| FreezerError::Cgroup {
            path: dir.display().to_string(),
            source,
        })?;
        Ok(Some(Freezer::V1(dir)))
    }

    /// The transient cgroup `ferry/NAME` if it exists (a dead run's).
    pub fn existing_transient(name: &str) -> Option<Self> {
        let dir = Self::transient_dir(name);
        dir.join("freezer.state")
            .exists()
            .then_some(Freezer::V1(dir))
    }

    fn transient_dir(name: &str) -> PathBuf {
        Path::new(V1_MOUNT).join(TRANSIENT_PARENT).join(name)
    }

    /// Moves process `pid`, all its threads, into this cgroup.
    pub fn adopt(&self, pid: i32) -> Result<(), FreezerError> {
        write_procs(self.dir(), pid)
    }

    /// Removes the cgroup, which must hold no process any more.
    pub fn remove(&self) -> Result<(), FreezerError> {
        std::fs::remove_dir(self.dir()).map_err(|source| FreezerError::Cgroup {
            path: self.dir().display().to_string(),
            source,
        })
    }

    /// The cgroup directory.
    pub fn dir(&self) -> &Path {
        match self {
            Freezer::V1(d) | Freezer::V2(d) => d,
        }
    }

    /// Freezes every process of the cgroup and waits until they are.
    pub fn freeze(&self) -> Result<(), FreezerError> {
        self.set(true)
    }

    /// Lets the cgroup's processes run again.
    pub fn thaw(&self) -> Result<(), FreezerError> {
        self.set(false)
    }

    /// The PIDs in the cgroup (as this host sees them).
    pub fn pids(&self) -> Result<Vec<i32>, FreezerError> {
        let path = self.dir().join("cgroup.procs");
        let text = std::fs::read_to_string(&path).map_err(|source| FreezerError::Cgroup {
            path: path.display().to_string(),
            source,
        })?;
        Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }

    fn set(&self, frozen: bool) -> Result<(), FreezerError> {
        let (file, value, check, wanted): (&str, &str, fn(&str) -> bool, _) = match self {
            Freezer::V1(_) if frozen => (
                "freezer.state",
                "FROZEN",
                |s| s.trim() == "FROZEN",
                "FROZEN",
            ),
            Freezer::V1(_) => (
                "freezer.state",
                "THAWED",
                |s| s.trim() == "THAWED",
                "THAWED",
            ),
            Freezer::V2(_) if frozen => {
                ("cgroup.freeze", "1", |s| s.contains("frozen 1"), "frozen")
            }
            Freezer::V2(_) => ("cgroup.freeze", "0", |s| s.contains("frozen 0"), "thawed"),
        };
        let path = self.dir().join(file);
        let io = |source| FreezerError::Cgroup {
            path: path.display().to_string(),
            source,
        };
        std::fs::write(&path, value).map_err(io)?;
        let state_file = match self {
            Freezer::V1(d) => d.join("freezer.state"),
            Freezer::V2(d) => d.join("cgroup.events"),
        };
        let started = Instant::now();
        // A tree held in ptrace-stops freezes at once (a plain tree's
        // cgroup is frozen again after each injected call): poll soon,
        // then less often.
        let mut pause = Duration::from_micros(50);
        loop {
            let now =
                std::fs::read_to_string(&state_file).map_err(|source| FreezerError::Cgroup {
                    path: state_file.display().to_string(),
                    source,
                })?;
            if check(&now) {
                return Ok(());
            }
            if started.elapsed() > FREEZE_WAIT {
                return Err(FreezerError::FreezeTimeout {
                    path: self.dir().display().to_string(),
                    wanted,
                    secs: FREEZE_WAIT.as_secs(),
                });
            }
            // v1 freezes asynchronously: writing FROZEN again retries the
            // tasks that were busy.
            if matches!(self, Freezer::V1(_)) && frozen {
                std::fs::write(&path, value).map_err(io)?;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(5));
        }
    }
}

/// The v1 freezer cgroup of process `pid` as /proc/PID/cgroup names it
/// ("/" for the hierarchy's root), or `None` when it has no v1 freezer.
pub fn v1_path_of(pid: i32) -> Result<Option<String>, FreezerError> {
    let lines = read_cgroups(pid, pid)?;
    Ok(freezer_paths(&lines).0.map(str::to_string))
}

/// Moves process `pid` back into the v1 freezer cgroup `path` (as
/// [`v1_path_of`] named it); a thawed cgroup thaws it.
pub fn move_to_v1(pid: i32, path: &str) -> Result<(), FreezerError> {
    write_procs(&Path::new(V1_MOUNT).join(path.trim_start_matches('/')), pid)
}

/// Writes `pid` into `dir`'s cgroup.procs: the whole process moves there.
fn write_procs(dir: &Path, pid: i32) -> Result<(), FreezerError> {
    write_ids(&dir.join("cgroup.procs"), pid)
}

/// Writes `id` into the cgroup file `path` (cgroup.procs).
fn write_ids(path: &Path, id: i32) -> Result<(), FreezerError> {
    std::fs::write(path, id.to_string()).map_err(|source| FreezerError::Cgroup {
        path: path.display().to_string(),
        source,
    })
}

/// Whether `line` is a task's cgroup in the v1 freezer hierarchy.
pub fn is_v1_freezer(line: &CgroupLine) -> bool {
    line.controllers.split(',').any(|c| c == "freezer")
}

/// Whether cgroup `path` (as /proc/PID/cgroup names it) is ferry's
/// transient freezer cgroup `name` ([`Freezer::transient`]).
pub fn is_transient(path: &str, name: &str) -> bool {
    path.strip_suffix(name)
        .and_then(|p| p.strip_suffix('/'))
        .is_some_and(|p| p.ends_with(&format!("/{TRANSIENT_PARENT}")))
}

/// The v1 freezer path and the cgroup v2 path among a process's cgroups.
fn freezer_paths(lines: &[CgroupLine]) -> (Option<&str>, Option<&str>) {
    let v1 = lines
        .iter()
        .find(|l| is_v1_freezer(l))
        .map(|l| l.path.as_str());
    let v2 = lines
        .iter()
        .find(|l| l.controllers.is_empty())
        .map(|l| l.path.as_str());
    (v1, v2)
}

#[cfg(test)]
mod tests {
    use crate::container::freezer::*;
    use crate::proc::cgroups::parse_cgroups;

    #[test]
    fn hybrid_cgroups_give_both_paths() {
        let text = "9:name=systemd:/a/c1\n6:freezer:/a/c1\n4:memory:/x/a/c1\n0::/c1\n";
        let lines = parse_cgroups(Path::new("cgroup"), text).unwrap();
        assert_eq!(freezer_paths(&lines), (Some("/a/c1"), Some("/c1")));
    }

    #[test]
    fn transient_paths_are_told_apart() {
        assert!(is_transient("/ferry/1-2-3", "1-2-3"));
        assert!(is_transient("/ns/ferry/1-2-3", "1-2-3"));
        assert!(!is_transient("/ferry/1-2-3", "1-2-4"));
        assert!(!is_transient("/notferry/1-2-3", "1-2-3"));
        assert!(!is_transient("/ferry/x1-2-3", "1-2-3"));
        assert!(!is_transient("/", "1-2-3"));
    }

    #[test]
    fn v2_only_has_no_freezer_line() {
        let lines = parse_cgroups(Path::new("cgroup"), "0::/system.slice/c2\n").unwrap();
        assert_eq!(freezer_paths(&lines), (None, Some("/system.slice/c2")));
    }
}
