//! The cgroup freezer (v1 or v2) that stops a container's processes
//! while ferry checks its tree and checkpoints it.

use super::error::ContainerError;
use crate::proc::cgroups::{read_cgroups, CgroupLine};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a freezer is waited for.
const FREEZE_WAIT: Duration = Duration::from_secs(10);

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
    pub fn of(pid: i32) -> Result<Self, ContainerError> {
        let lines = read_cgroups(pid, pid)?;
        let (v1, v2) = freezer_paths(&lines);
        if let Some(p) = v1 {
            let dir = Path::new("/sys/fs/cgroup/freezer").join(p.trim_start_matches('/'));
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
        Err(ContainerError::NoFreezer { pid })
    }

    /// The cgroup directory.
    pub fn dir(&self) -> &Path {
        match self {
            Freezer::V1(d) | Freezer::V2(d) => d,
        }
    }

    /// Freezes every process of the cgroup and waits until they are.
    pub fn freeze(&self) -> Result<(), ContainerError> {
        self.set(true)
    }

    /// Lets the cgroup's processes run again.
    pub fn thaw(&self) -> Result<(), ContainerError> {
        self.set(false)
    }

    /// The PIDs in the cgroup (as this host sees them).
    pub fn pids(&self) -> Result<Vec<i32>, ContainerError> {
        let path = self.dir().join("cgroup.procs");
        let text = std::fs::read_to_string(&path).map_err(|source| ContainerError::Cgroup {
            path: path.display().to_string(),
            source,
        })?;
        Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }

    fn set(&self, frozen: bool) -> Result<(), ContainerError> {
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
        let io = |source| ContainerError::Cgroup {
            path: path.display().to_string(),
            source,
        };
        std::fs::write(&path, value).map_err(io)?;
        let state_file = match self {
            Freezer::V1(d) => d.join("freezer.state"),
            Freezer::V2(d) => d.join("cgroup.events"),
        };
        let started = Instant::now();
        loop {
            let now =
                std::fs::read_to_string(&state_file).map_err(|source| ContainerError::Cgroup {
                    path: state_file.display().to_string(),
                    source,
                })?;
            if check(&now) {
                return Ok(());
            }
            if started.elapsed() > FREEZE_WAIT {
                return Err(ContainerError::FreezeTimeout {
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
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// The v1 freezer path and the cgroup v2 path among a process's cgroups.
fn freezer_paths(lines: &[CgroupLine]) -> (Option<&str>, Option<&str>) {
    let v1 = lines
        .iter()
        .find(|l| l.controllers.split(',').any(|c| c == "freezer"))
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
    fn v2_only_has_no_freezer_line() {
        let lines = parse_cgroups(Path::new("cgroup"), "0::/system.slice/c2\n").unwrap();
        assert_eq!(freezer_paths(&lines), (None, Some("/system.slice/c2")));
    }
}
