//! PID namespaces: a tree in a PID namespace of its own (a container's,
//! or one `unshare --pid --fork` made) is traced by its host PIDs but named
//! in the image as its processes see each other (the last field of NSpid),
//! the PIDs a restore recreates.

use super::error::InspectError;
use crate::proc;
use std::collections::HashMap;

/// Translates host PIDs to the PIDs of the namespace of the tree's root.
pub struct PidNamespace {
    /// How deep the root's PID namespace is (the number of NSpid fields).
    depth: usize,
    /// host PID or TID -> namespace PID (0: outside the namespace).
    known: HashMap<i32, i32>,
}

/// The NSpid fields of task `tid` of process `pid`: its ID in each PID
/// namespace, outermost first.
fn nspids(pid: i32, tid: i32) -> Result<Vec<i32>, InspectError> {
    let path = format!("/proc/{pid}/task/{tid}/status");
    let text = std::fs::read_to_string(&path).map_err(|source| InspectError::Io {
        what: format!("read {path}"),
        source,
    })?;
    parse_nspid(&text).ok_or_else(|| InspectError::Io {
        what: format!("read NSpid of thread {tid} of process {pid}"),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "no NSpid line"),
    })
}

/// The NSpid line's IDs.
fn parse_nspid(status: &str) -> Option<Vec<i32>> {
    let line = status.lines().find_map(|l| l.strip_prefix("NSpid:"))?;
    let ids: Vec<i32> = line
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect();
    (!ids.is_empty()).then_some(ids)
}

impl PidNamespace {
    /// The PID namespace of process `root`.
    pub fn of(root: i32) -> Result<Self, InspectError> {
        let ids = nspids(root, root)?;
        let mut known = HashMap::new();
        known.insert(root, *ids.last().unwrap_or(&root));
        Ok(PidNamespace {
            depth: ids.len(),
            known,
        })
    }

    /// Learns the namespace IDs of every thread of process `pid` (which
    /// must be alive or a zombie, so it is done while the tree is frozen).
    pub fn learn(&mut self, pid: i32) -> Result<(), InspectError> {
        let tids = proc::task_ids(pid).unwrap_or_else(|_| vec![pid]);
        for tid in tids.into_iter().chain([pid]) {
            if self.known.contains_key(&tid) {
                continue;
            }
            let ids = nspids(pid, tid)?;
            let ns = if ids.len() >= self.depth {
                ids[self.depth - 1]
            } else {
                0
            };
            self.known.insert(tid, ns);
        }
        Ok(())
    }

    /// Whether the namespace ID of host ID `id` is known (learnt, or the
    /// root's).
    pub fn knows(&self, id: i32) -> bool {
        self.known.contains_key(&id)
    }

    /// The namespace ID of host ID `id` (0 for one outside the namespace
    /// or never learnt, such as the root's parent).
    pub fn ns(&self, id: i32) -> i32 {
        self.known.get(&id).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use crate::inspect::pidns::{nspids, parse_nspid, PidNamespace};

    #[test]
    fn nspid_lists_every_level() {
        let status = "Name:\tsh\nTgid:\t17687\nNSpid:\t17687\t1\nNSpgid:\t17687\t1\n";
        assert_eq!(parse_nspid(status), Some(vec![17687, 1]));
        assert_eq!(parse_nspid("Name:\tx\n"), None);
    }

    #[test]
    fn own_namespace_translates_to_itself() {
        let me = std::process::id() as i32;
        let mut ns = PidNamespace::of(me).unwrap();
        ns.learn(me).unwrap();
        let depth_here = nspids(me, me).unwrap();
        assert_eq!(ns.ns(me), *depth_here.last().unwrap());
        assert_eq!(ns.ns(-5), 0);
    }
}
