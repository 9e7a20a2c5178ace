//! Cgroup membership, twin of dump/cgroups.rs: every task of a plain tree
//! goes back into the cgroup it was in, in every hierarchy, before it
//! runs (CRIU's default "soft" mode): the cgroups are made again where
//! they are missing, the ones made here with the owner, mode, control
//! files' owners and controllers' settings the image recorded; the
//! cgroups that exist are used as they are.
//!
//! A path the image records below the checkpoint's root (the
//! checkpointing program's own cgroup, or the root its --cgroup-root
//! named) goes below the restore's root: the root the restore names for
//! that hierarchy (CRIU's --cgroup-root), else the restoring program's
//! own cgroup (on another host, or for another agent, that cgroup may
//! differ). The cgroups are made, with the recorded ones' modes, before
//! any file is opened (a process may hold a cgroup directory open); a
//! task that was in the
//! checkpointing program's cgroup stays in the restoring program's, and a
//! hierarchy where every task does needs nothing at all (no directory is
//! made, nothing is mounted). A hierarchy the tree used that is not
//! mounted here (a named hierarchy a test mounted and unmounted) is
//! mounted for the restore, in a temporary directory, and unmounted after.
//!
//! A container's tasks stay in the cgroups its runtime made: a restore
//! into an existing husk (a created container's init, or the init of a
//! new PID namespace) does not place them ([`Placement::default`]), and
//! `CgroupMode::Ignore` leaves every task in the restoring program's
//! cgroups (CRIU's --manage-cgroups=ignore).

use crate::image::{CgroupDir, CgroupPath, Checkpoint};
use crate::proc::cgroups::{cgroup_dir, own_cgroups, root_for, CgroupRoot};
use crate::restore::error::RestoreError;
use std::path::{Path, PathBuf};

/// Whether a restore puts the tree's tasks back into their cgroups.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum CgroupMode {
    /// Back into the cgroups they were in, made again where missing.
    #[default]
    Soft,
    /// Left in the restoring program's cgroups.
    Ignore,
}

/// Where the tasks of a tree go: the cgroup files each one's TID is
/// written to, and the hierarchies mounted for that (unmounted when the
/// placement is dropped). The default places nothing.
#[derive(Debug, Default)]
pub struct Placement {
    /// (process, task, the cgroup directories it joins, each with its
    /// hierarchy and path for messages).
    moves: Vec<(i32, i32, Vec<Target>)>,
    /// Directories this restore mounted a hierarchy on.
    mounts: Vec<PathBuf>,
}

/// One cgroup a task joins.
#[derive(Debug)]
struct Target {
    /// The hierarchy, for messages.
    hierarchy: String,
    /// The cgroup's path, for messages.
    path: String,
    /// Its directory here.
    dir: PathBuf,
    /// The hierarchy is cgroup v2 (threads join through cgroup.threads).
    v2: bool,
}

/// The name of hierarchy `controllers` in messages.
fn hierarchy_name(controllers: &str) -> String {
    if controllers.is_empty() {
        "v2".into()
    } else {
        format!("'{controllers}'")
    }
}

impl Placement {
    /// Prepares the placement of `ck`'s tasks as `mode` says, below the
    /// roots `roots` give (the restoring program's own cgroups for the
    /// hierarchies they do not name): finds or mounts each hierarchy that
    /// needs it and makes the missing cgroups. Refuses, naming the
    /// process, hierarchy and cgroup, what cannot be made here, before
    /// any process exists.
    pub fn prepare(
        ck: &Checkpoint,
        mode: CgroupMode,
        roots: &[CgroupRoot],
    ) -> Result<Self, RestoreError> {
        let mut placement = Placement::default();
        if mode == CgroupMode::Ignore || ck.cgroups.members.is_empty() {
            return Ok(placement);
        }
        let root_pid = ck.root().map_or(0, |p| p.pid);
        let own = own_cgroups()?;
        let mut targets: Vec<Vec<Target>> = ck.cgroups.members.iter().map(|_| Vec::new()).collect();
        for (i, h) in ck.cgroups.hierarchies.iter().enumerate() {
            let own_path = own
                .iter()
                .find(|l| l.controllers == h.controllers)
                .map(|l| l.path.as_str());
            let root = root_for(roots, &h.controllers).or(own_path);
            let resolve = |p: &CgroupPath| match (p.below_own, root) {
                (true, Some(root)) => format!("{}{}", root.trim_end_matches('/'), p.path),
                _ => p.path.clone(),
            };
            let paths: Vec<String> = ck
                .cgroups
                .members
                .iter()
                .map(|m| m.paths.get(i).map(resolve).unwrap_or_default())
                .map(|p| if p.is_empty() { "/".into() } else { p })
                .collect();
            if paths.iter().all(|p| Some(p.as_str()) == own_path) {
                continue;
            }
            let name = hierarchy_name(&h.controllers);
            let first = paths.iter().find(|p| Some(p.as_str()) != own_path);
            let refuse = |pid: i32, path: &str, why: String| RestoreError::Cgroup {
                pid,
                hierarchy: name.clone(),
                path: path.to_string(),
                why,
            };
            let base = match cgroup_dir(&h.controllers, "/")? {
                Some(dir) => dir,
                None => placement
                    .mount(&h.controllers)
                    .map_err(|why| refuse(root_pid, first.map_or("/", |p| p), why))?,
            };
            let at = |path: &str| base.join(path.trim_start_matches('/'));
            for d in &h.dirs {
                let path = resolve(&d.path);
                let path = if path.is_empty() { "/".into() } else { path };
                make_dirs(&base, &path, Some(d)).map_err(|why| refuse(root_pid, &path, why))?;
            }
            for ((m, path), t) in ck.cgroups.members.iter().zip(&paths).zip(&mut targets) {
                make_dirs(&base, path, None).map_err(|why| refuse(m.pid, path, why))?;
                t.push(Target {
                    hierarchy: name.clone(),
                    path: path.clone(),
                    dir: at(path),
                    v2: h.controllers.is_empty(),
                });
            }
        }
        placement.moves = ck
            .cgroups
            .members
            .iter()
            .zip(targets)
            .filter(|(_, t)| !t.is_empty())
            .map(|(m, t)| (m.pid, m.tid, t))
            .collect();
        Ok(placement)
    }

    /// Mounts hierarchy `controllers` on a new temporary directory.
    fn mount(&mut self, controllers: &str) -> Result<PathBuf, String> {
        let dir = std::env::temp_dir().join(format!(
            "ferry-cgroup-{}-{}",
            std::process::id(),
            self.mounts.len()
        ));
        std::fs::create_dir(&dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
        let (fstype, options) = if controllers.is_empty() {
            ("cgroup2", "rw".to_string())
        } else if controllers.starts_with("name=") {
            ("cgroup", format!("none,{controllers}"))
        } else {
            ("cgroup", controllers.to_string())
        };
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                fstype,
                "-o",
                &options,
                "ferry",
                &dir.to_string_lossy(),
            ])
            .output();
        match out {
            Ok(o) if o.status.success() => {
                self.mounts.push(dir.clone());
                Ok(dir)
            }
            failed => {
                let _ = std::fs::remove_dir(&dir);
                Err(match failed {
                    Ok(o) => format!(
                        "the hierarchy is not mounted here and mounting it failed: {}",
                        String::from_utf8_lossy(&o.stderr).trim()
                    ),
                    Err(e) => {
                        format!("the hierarchy is not mounted here and mount cannot run: {e}")
                    }
                })
            }
        }
    }

    /// Puts process `pid` (its only thread, its husk's) into its cgroups;
    /// the children cloned from it afterwards start in them.
    pub fn join_process(&self, pid: i32) -> Result<(), RestoreError> {
        self.join(|p, t| p == pid && t == pid, "cgroup.procs")
    }

    /// Puts each thread whose cgroups differ from its process's into its
    /// own, once every thread exists.
    pub fn join_threads(&self) -> Result<(), RestoreError> {
        self.join(|p, t| p != t, "")
    }

    /// Writes the TID of each task `which` selects into `file` of each of
    /// its cgroups (empty: the file a thread joins by).
    fn join(&self, which: impl Fn(i32, i32) -> bool, file: &str) -> Result<(), RestoreError> {
        for (pid, tid, targets) in self.moves.iter().filter(|(p, t, _)| which(*p, *t)) {
            for t in targets {
                let file = match (file, t.v2) {
                    ("", true) => "cgroup.threads",
                    ("", false) => "tasks",
                    (f, _) => f,
                };
                std::fs::write(t.dir.join(file), tid.to_string()).map_err(|e| {
                    RestoreError::Cgroup {
                        pid: *pid,
                        hierarchy: t.hierarchy.clone(),
                        path: t.path.clone(),
                        why: format!("writing task {tid} to {file} failed: {e}"),
                    }
                })?;
            }
        }
        Ok(())
    }
}

impl Drop for Placement {
    fn drop(&mut self) {
        for dir in &self.mounts {
            let unmounted = std::process::Command::new("umount")
                .arg("-l")
                .arg(dir)
                .status();
            if unmounted.is_ok_and(|s| s.success()) {
                let _ = std::fs::remove_dir(dir);
            } else {
                tracing::warn!(dir = %dir.display(), "cannot unmount the cgroup hierarchy this restore mounted");
            }
        }
    }
}

/// Makes cgroup `path` below hierarchy root `base` and its missing
/// parents (a v1 cpuset cgroup made gets its parent's CPUs and memory
/// nodes: without them no task can join it). When `path` itself is made
/// and `recorded` describes it, its settings, then its control files' and
/// its own owner and mode are set as recorded.
fn make_dirs(base: &Path, path: &str, recorded: Option<&CgroupDir>) -> Result<(), String> {
    let mut dir = base.to_path_buf();
    let mut made = false;
    for part in path.split('/').filter(|p| !p.is_empty()) {
        dir.push(part);
        made = match std::fs::create_dir(&dir) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(format!("cannot make {}: {e}", dir.display())),
        };
        if made {
            inherit_cpuset(&dir)?;
        }
    }
    match recorded {
        Some(d) if made => apply(&dir, d),
        _ => Ok(()),
    }
}

/// Copies the CPUs and memory nodes of v1 cpuset cgroup `dir`'s parent
/// into it while it has none (nothing to do in other hierarchies, and in
/// cgroup v2, where an empty cpuset means the parent's).
fn inherit_cpuset(dir: &Path) -> Result<(), String> {
    let Some(parent) = dir.parent().filter(|_| dir.join("tasks").exists()) else {
        return Ok(());
    };
    for name in ["cpuset.cpus", "cpuset.mems"] {
        let Ok(now) = std::fs::read_to_string(dir.join(name)) else {
            return Ok(());
        };
        if !now.trim().is_empty() {
            continue;
        }
        let value = std::fs::read_to_string(parent.join(name)).unwrap_or_default();
        std::fs::write(dir.join(name), value.trim()).map_err(|e| {
            format!(
                "cannot copy {name} {:?} of its parent into {}: {e}",
                value.trim(),
                dir.display()
            )
        })?;
    }
    Ok(())
}

/// Writes `d`'s settings into cgroup directory `dir` (made by this
/// restore), then its owners and modes.
fn apply(dir: &Path, d: &CgroupDir) -> Result<(), String> {
    let write = |name: &str, value: &str| {
        std::fs::write(dir.join(name), value)
            .map_err(|e| format!("cannot write {value:?} to {name}: {e}"))
    };
    for (name, value) in &d.properties {
        let now = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        if now == *value {
            continue;
        }
        if name == "devices.list" {
            write("devices.deny", "a")?;
            for rule in value.lines() {
                write("devices.allow", rule)?;
            }
        } else if name == "net_prio.ifpriomap" {
            // One interface a write, only those whose priority differs;
            // an interface this host lacks has none to restore.
            for line in value.lines().filter(|l| !now.lines().any(|n| n == *l)) {
                let present = line
                    .split(' ')
                    .next()
                    .is_some_and(|dev| Path::new("/sys/class/net").join(dev).exists());
                if present {
                    write(name, line)?;
                }
            }
        } else {
            write(name, value.trim_end())?;
        }
    }
    let own = |path: &Path, mode: u32, uid: u32, gid: u32| {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .and_then(|()| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            })
            .map_err(|e| {
                format!(
                    "cannot set the owner {uid}:{gid} and mode {mode:o} of {}: {e}",
                    path.display()
                )
            })
    };
    for f in &d.files {
        own(&dir.join(&f.name), f.mode, f.uid, f.gid)?;
    }
    own(dir, d.mode, d.uid, d.gid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn made_dirs_get_their_settings_and_mode() {
        let base = std::env::temp_dir().join(format!("ferry-cgroups-test-{}", std::process::id()));
        std::fs::create_dir(&base).unwrap();
        std::fs::create_dir(base.join("a")).unwrap();
        let recorded = CgroupDir {
            path: CgroupPath {
                below_own: false,
                path: "/a/b".into(),
            },
            mode: 0o750,
            uid: 0,
            gid: 0,
            files: Vec::new(),
            properties: vec![("pids.max".into(), "7\n".into())],
        };
        make_dirs(&base, "/a/b", Some(&recorded)).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&base.join("a/b")), 0o750);
        assert_eq!(
            std::fs::read_to_string(base.join("a/b/pids.max")).unwrap(),
            "7"
        );
        // An existing cgroup is used as it is.
        let existing = CgroupDir {
            mode: 0o700,
            ..recorded
        };
        make_dirs(&base, "/a/b", Some(&existing)).unwrap();
        assert_eq!(mode(&base.join("a/b")), 0o750);
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_v1_cpuset_made_gets_its_parents_cpus_and_nodes() {
        let base = std::env::temp_dir().join(format!("ferry-cpuset-test-{}", std::process::id()));
        let child = base.join("child");
        std::fs::create_dir_all(&child).unwrap();
        let write = |p: &Path, v: &str| std::fs::write(p, v).unwrap();
        write(&base.join("cpuset.cpus"), "0-1\n");
        write(&base.join("cpuset.mems"), "0\n");
        write(&child.join("cpuset.cpus"), "\n");
        write(&child.join("cpuset.mems"), "1\n");
        // Not a v1 cgroup (no tasks file): left alone.
        inherit_cpuset(&child).unwrap();
        assert_eq!(
            std::fs::read_to_string(child.join("cpuset.cpus")).unwrap(),
            "\n"
        );
        write(&child.join("tasks"), "");
        inherit_cpuset(&child).unwrap();
        assert_eq!(
            std::fs::read_to_string(child.join("cpuset.cpus")).unwrap(),
            "0-1"
        );
        assert_eq!(
            std::fs::read_to_string(child.join("cpuset.mems")).unwrap(),
            "1\n"
        );
        std::fs::remove_dir_all(&base).unwrap();
    }
}
