//! Cgroup membership: the cgroup of every task of the tree in every
//! hierarchy (/proc/PID/task/TID/cgroup), and the directories of those
//! cgroups with what a restore needs to make them again (as CRIU's
//! cgroup.c records cgroup sets and directories): owner, mode, changed
//! control files, the controllers' settings, and the empty cgroups below.
//!
//! Paths are recorded relative to each hierarchy's root: the
//! checkpointing program's own cgroup, or the one the checkpoint names
//! (CRIU's --cgroup-root, which also records every cgroup below it).
//!
//! The membership is read by [`Membership::read`] and turned into the
//! image by [`dump_cgroups`]: a caller that moved the tree elsewhere for
//! the checkpoint (a transient freezer cgroup) reads the membership before
//! the move, or sets the original path in it, and hands it over.

use super::error::CheckpointError;
use crate::image::{
    CgroupDir, CgroupFile, CgroupHierarchy, CgroupMember, CgroupPath, CgroupsImage,
};
use crate::proc::cgroups::{
    cgroup_dir, own_cgroups, read_cgroups, root_for, CgroupLine, CgroupRoot,
};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The controllers' settings a restore writes back into a cgroup it made,
/// in this order (cpuset's first: a task cannot join a cpuset without
/// CPUs and memory nodes). devices.list is written back through
/// devices.deny and devices.allow, net_prio.ifpriomap one interface a
/// write.
pub const CGROUP_PROPERTIES: &[&str] = &[
    "cpuset.cpus",
    "cpuset.mems",
    "cpu.shares",
    "cpu.cfs_period_us",
    "cpu.cfs_quota_us",
    "memory.limit_in_bytes",
    "memory.soft_limit_in_bytes",
    "memory.swappiness",
    "pids.max",
    "blkio.weight",
    "devices.list",
    "net_prio.ifpriomap",
];

/// The cgroups of each task of a tree, as read at one moment.
#[derive(Debug, Clone, Default)]
pub struct Membership {
    /// (process, task, its cgroup in each hierarchy).
    pub tasks: Vec<(i32, i32, Vec<CgroupLine>)>,
}

impl Membership {
    /// Reads the cgroups of every task `(pid, tid)`.
    pub fn read(tasks: impl IntoIterator<Item = (i32, i32)>) -> Result<Self, CheckpointError> {
        let tasks = tasks
            .into_iter()
            .map(|(pid, tid)| Ok((pid, tid, read_cgroups(pid, tid)?)))
            .collect::<Result<_, CheckpointError>>()?;
        Ok(Membership { tasks })
    }
}

/// The image of `membership`: its hierarchies, each process's cgroups and
/// those of each thread whose cgroups differ from its leader's (the
/// leader's TID is its PID), and the directories of the cgroups that are
/// not the root's (nor its ancestors), with their ancestors below the
/// root. A hierarchy's root is the one `roots` give it (CRIU's
/// --cgroup-root: that cgroup and every directory below it, empty ones
/// included, are recorded), else the checkpointing program's own cgroup;
/// paths below it are recorded relative to it.
pub fn dump_cgroups(
    membership: &Membership,
    roots: &[CgroupRoot],
) -> Result<CgroupsImage, CheckpointError> {
    let own = own_cgroups()?;
    let base =
        |controllers: &str| root_for(roots, controllers).unwrap_or(own_path(&own, controllers));
    let mut image = CgroupsImage::default();
    for (_, _, lines) in &membership.tasks {
        for l in lines {
            if !image
                .hierarchies
                .iter()
                .any(|h| h.controllers == l.controllers)
            {
                image.hierarchies.push(CgroupHierarchy {
                    controllers: l.controllers.clone(),
                    dirs: Vec::new(),
                });
            }
        }
    }
    for (pid, tid, lines) in &membership.tasks {
        let paths: Vec<CgroupPath> = image
            .hierarchies
            .iter()
            .map(|h| {
                let path = lines
                    .iter()
                    .find(|l| l.controllers == h.controllers)
                    .map_or("/", |l| l.path.as_str());
                relative_to(base(&h.controllers), path)
            })
            .collect();
        let leader = image
            .members
            .iter()
            .find(|m| m.pid == *pid && m.tid == *pid);
        if tid == pid || leader.map_or(true, |l| l.paths != paths) {
            image.members.push(CgroupMember {
                pid: *pid,
                tid: *tid,
                paths,
            });
        }
    }
    for (i, h) in image.hierarchies.iter_mut().enumerate() {
        let base = base(&h.controllers);
        let mut tops: Vec<&str> = membership
            .tasks
            .iter()
            .filter_map(|(_, _, lines)| lines.iter().find(|l| l.controllers == h.controllers))
            .map(|l| l.path.as_str())
            .filter(|p| !is_within(base, p))
            .collect();
        if root_for(roots, &h.controllers).is_some() {
            tops.push(base);
        }
        tops.sort_unstable();
        tops.dedup();
        let mut dirs: Vec<String> = Vec::new();
        for top in &tops {
            if dirs.iter().any(|d| is_within(d, top)) {
                continue;
            }
            dirs.retain(|d| !is_within(top, d));
            dirs.push(top.to_string());
        }
        for top in dirs {
            record_tree(base, &h.controllers, &top, &mut h.dirs)?;
        }
        tracing::debug!(
            hierarchy = i,
            controllers = h.controllers,
            dirs = h.dirs.len(),
            "cgroups recorded"
        );
    }
    Ok(image)
}

/// The checkpointing program's own cgroup in hierarchy `controllers`.
fn own_path<'a>(own: &'a [CgroupLine], controllers: &str) -> &'a str {
    own.iter()
        .find(|l| l.controllers == controllers)
        .map_or("/", |l| l.path.as_str())
}

/// Whether cgroup `inner` is `outer` or below it.
fn is_within(inner: &str, outer: &str) -> bool {
    Path::new(inner).starts_with(outer)
}

/// `path` as the image records it: relative to its hierarchy's root
/// `base` when it is below it.
fn relative_to(base: &str, path: &str) -> CgroupPath {
    match Path::new(path).strip_prefix(base) {
        Ok(rest) => CgroupPath {
            below_own: true,
            path: if rest.as_os_str().is_empty() {
                String::new()
            } else {
                format!("/{}", rest.display())
            },
        },
        Err(_) => CgroupPath {
            below_own: false,
            path: path.to_string(),
        },
    }
}

/// Records the ancestors of cgroup `top` below the root `base` (below
/// the hierarchy's root when `top` is not below `base`) that are not
/// recorded yet, then `top` and every directory below it, parents first.
/// A hierarchy not mounted here gives `top` alone, as root's with mode
/// 0755.
fn record_tree(
    base: &str,
    controllers: &str,
    top: &str,
    dirs: &mut Vec<CgroupDir>,
) -> Result<(), CheckpointError> {
    let Some(dir) = cgroup_dir(controllers, top)? else {
        dirs.push(CgroupDir {
            path: relative_to(base, top),
            mode: 0o755,
            uid: 0,
            gid: 0,
            files: Vec::new(),
            properties: Vec::new(),
        });
        return Ok(());
    };
    let anchor = if is_within(top, base) { base } else { "/" };
    let mut ancestor = PathBuf::from(anchor);
    let below: Vec<_> = Path::new(top)
        .strip_prefix(anchor)
        .map(|rest| rest.components().collect())
        .unwrap_or_default();
    for part in below.iter().take(below.len().saturating_sub(1)) {
        ancestor.push(part);
        let path = ancestor.to_string_lossy().into_owned();
        let recorded = relative_to(base, &path);
        if dirs.iter().any(|d| d.path == recorded) {
            continue;
        }
        if let Some(dir) = cgroup_dir(controllers, &path)? {
            dirs.push(record_dir(base, controllers, &path, &dir)?.0);
        }
    }
    let mut pending = vec![(top.to_string(), dir)];
    while let Some((path, dir)) = pending.pop() {
        let (recorded, mut subdirs) = record_dir(base, controllers, &path, &dir)?;
        dirs.push(recorded);
        subdirs.sort();
        // Popped in name order, each parent before its children.
        pending.extend(subdirs.into_iter().rev());
    }
    Ok(())
}

/// The record of cgroup `path` (directory `dir`), and its subdirectories
/// (their cgroup paths and directories).
fn record_dir(
    base: &str,
    controllers: &str,
    path: &str,
    dir: &Path,
) -> Result<(CgroupDir, Vec<(String, PathBuf)>), CheckpointError> {
    let io = |what: &str, source| CheckpointError::Io {
        what: format!(
            "{what} cgroup {path} of hierarchy '{controllers}' ({})",
            dir.display()
        ),
        source,
    };
    let meta = std::fs::metadata(dir).map_err(|e| io("read", e))?;
    let mut files = Vec::new();
    let mut subdirs = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io("list", e))? {
        let entry = entry.map_err(|e| io("list", e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let m = entry.metadata().map_err(|e| io("read", e))?;
        if m.is_dir() {
            subdirs.push((
                format!("{}/{name}", path.trim_end_matches('/')),
                entry.path(),
            ));
        } else if m.uid() != 0
            || m.gid() != 0
            || ![0o644, 0o444, 0o200].contains(&(m.mode() & 0o7777))
        {
            files.push(CgroupFile {
                name,
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
            });
        }
    }
    let properties = CGROUP_PROPERTIES
        .iter()
        .filter_map(|name| {
            let value = std::fs::read_to_string(dir.join(name)).ok()?;
            Some((name.to_string(), value))
        })
        .collect();
    let recorded = CgroupDir {
        path: relative_to(base, path),
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        files,
        properties,
    };
    Ok((recorded, subdirs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(controllers: &str, path: &str) -> CgroupLine {
        CgroupLine {
            controllers: controllers.into(),
            path: path.into(),
        }
    }

    #[test]
    fn paths_below_own_are_relative() {
        let own = vec![line("memory", "/sandbox/a"), line("name=x", "/")];
        let r = |c, p| relative_to(own_path(&own, c), p);
        assert_eq!(r("memory", "/sandbox/a").path, "");
        assert!(r("memory", "/sandbox/a").below_own);
        assert_eq!(r("memory", "/sandbox/a/b").path, "/b");
        assert_eq!(r("memory", "/sandbox/ab").path, "/sandbox/ab");
        assert!(!r("memory", "/sandbox/ab").below_own);
        assert_eq!(r("name=x", "/sub").path, "/sub");
        assert!(r("name=x", "/sub").below_own);
        assert!(is_within("/a/b", "/a"));
        assert!(is_within("/a", "/"));
        assert!(!is_within("/ab", "/a"));
    }
}
