//! A restored tree held frozen instead of let run: before ptrace lets its
//! processes go, each is moved into a transient v1 freezer cgroup of
//! ferry's (`container::freezer::Freezer::transient`) and the cgroup is
//! frozen, so the tree stays stopped whatever happens to the restoring
//! agent, until a migration's switch-over is decided: [`HeldTree::thaw`]
//! (each process back in the freezer cgroup it was restored in) or
//! [`HeldTree::kill`]. A container's processes are moved the same way
//! (in the v1 freezer hierarchy alone: their other cgroups stay their
//! runtime's), so that freezing never touches a cgroup ferry did not make.

use crate::container::freezer::{self, Freezer, FreezerError};
use std::path::Path;
use std::sync::Once;
use std::time::{Duration, Instant};

/// How long the processes of a killed held tree are waited for.
const EXIT_WAIT: Duration = Duration::from_secs(5);

/// A tree restored and held frozen.
#[derive(Debug, Clone)]
pub struct HeldTree {
    /// The transient cgroup's name (under ferry's).
    pub name: String,
    /// Each held process and the v1 freezer cgroup it was in.
    pub members: Vec<(i32, String)>,
}

impl HeldTree {
    /// Moves `pids` (restored, still traced) into the transient cgroup
    /// `name` and freezes it: they stay stopped once ptrace lets them go.
    pub fn freeze(name: &str, pids: &[i32]) -> Result<Self, FreezerError> {
        let held = Self::plan(name, pids)?;
        held.hold()?;
        Ok(held)
    }

    /// The hold of `pids` in the transient cgroup `name`, each with the v1
    /// freezer cgroup it is in now, nothing moved yet: what a record names
    /// before [`HeldTree::hold`] can leave the tree frozen.
    pub fn plan(name: &str, pids: &[i32]) -> Result<Self, FreezerError> {
        mount_freezer_if_bare();
        let members = pids
            .iter()
            .map(|&pid| {
                Ok((
                    pid,
                    freezer::v1_path_of(pid)?.unwrap_or_else(|| "/".to_string()),
                ))
            })
            .collect::<Result<_, FreezerError>>()?;
        Ok(HeldTree {
            name: name.to_string(),
            members,
        })
    }

    /// The transient cgroup holding the tree, if it is still there.
    fn freezer(&self) -> Option<Freezer> {
        mount_freezer_if_bare();
        Freezer::existing_transient(&self.name)
    }

    /// Moves the members (stopped by ptrace) into the transient cgroup and
    /// freezes it; on failure every member is put back and the cgroup
    /// removed.
    pub fn hold(&self) -> Result<(), FreezerError> {
        let Some(freezer) = Freezer::transient(&self.name)? else {
            return Err(FreezerError::NoFreezer {
                pid: self.members.first().map_or(0, |m| m.0),
            });
        };
        let moved = self
            .members
            .iter()
            .try_for_each(|(pid, _)| freezer.adopt(*pid));
        match moved.and_then(|()| freezer.freeze()) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.put_back();
                let _ = freezer.thaw().and_then(|()| freezer.remove());
                Err(e)
            }
        }
    }

    /// Lets the tree run: each process back in its freezer cgroup, the
    /// transient one removed. Done already (the cgroup gone) is success.
    pub fn thaw(&self) -> Result<(), FreezerError> {
        let Some(freezer) = self.freezer() else {
            return Ok(());
        };
        self.put_back();
        // Whatever could not move (nothing, normally) runs too.
        freezer.thaw()?;
        if let Err(e) = freezer.remove() {
            tracing::warn!(%e, "cannot remove the freezer cgroup of a held tree");
        }
        Ok(())
    }

    /// Kills every process of the held tree (a frozen process dies once
    /// thawed) and removes the transient cgroup.
    pub fn kill(&self) {
        let Some(freezer) = self.freezer() else {
            return;
        };
        let started = Instant::now();
        loop {
            let pids = freezer.pids().unwrap_or_default();
            for &pid in &pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            if let Err(e) = freezer.thaw() {
                tracing::warn!(%e, "cannot thaw a held tree to kill it");
            }
            if pids.is_empty() || started.elapsed() > EXIT_WAIT {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Err(e) = freezer.remove() {
            tracing::warn!(%e, "cannot remove the freezer cgroup of a killed held tree");
        }
    }

    /// Ends a held tree that its agent still traces: SIGKILL first (the
    /// frozen processes die as soon as anything thaws them, also if this
    /// agent dies now), then each back in its freezer cgroup, where it
    /// dies; the tracer reaps them.
    pub fn kill_traced(&self) {
        for (pid, _) in &self.members {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if let Err(e) = self.thaw() {
            tracing::warn!(%e, "cannot let a killed held tree die");
        }
    }

    /// Moves every member back where it was (a process moved into a
    /// thawed cgroup runs).
    fn put_back(&self) {
        for (pid, path) in &self.members {
            // A process that ended meanwhile is not there any more.
            if let Err(e) = freezer::move_to_v1(*pid, path) {
                tracing::debug!(pid, %e, "cannot move a held process back");
            }
        }
    }
}

/// Makes the v1 freezer hierarchy visible at its usual place in this
/// mount namespace when nothing is mounted on /sys/fs/cgroup: an agent
/// started under `ip netns exec` (a testbed host) sees a fresh sysfs,
/// whose /sys/fs/cgroup is bare, so a tmpfs goes there (nothing is
/// hidden) with the freezer hierarchy below it. Anywhere else (a cgroup
/// file system or a tmpfs already there) nothing is done. Once per
/// process; a failure is logged (the hold then fails with its reason).
fn mount_freezer_if_bare() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let cgroup = Path::new("/sys/fs/cgroup");
        if cgroup.join("freezer/cgroup.procs").exists() {
            return;
        }
        let bare = nix::sys::statfs::statfs(cgroup)
            .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::SYSFS_MAGIC);
        if !bare {
            return;
        }
        let mounted = run_mount(&["-t", "tmpfs", "ferry-cgroup", "/sys/fs/cgroup"])
            .and_then(|()| {
                std::fs::create_dir_all(cgroup.join("freezer")).map_err(|e| e.to_string())
            })
            .and_then(|()| {
                run_mount(&["-t", "cgroup", "-o", "freezer", "freezer", "/sys/fs/cgroup/freezer"])
            });
        match mounted {
            Ok(()) => tracing::info!("mounted the v1 freezer hierarchy on /sys/fs/cgroup/freezer (this mount namespace's sysfs had none)"),
            Err(why) => tracing::warn!(%why, "cannot mount the v1 freezer hierarchy"),
        }
    });
}

/// Runs mount(8) with `args`.
fn run_mount(args: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new("mount")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run mount {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "mount {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
