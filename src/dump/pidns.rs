//! A container's tree lives in a PID namespace of its own: ferry traces and
//! reads its processes by their PIDs on this host, but the image names
//! them as they see each other (the last field of NSpid), because those are
//! the PIDs the restore recreates inside the destination container. This
//! sink sits between the dump and the real sink and translates every PID
//! and TID that passes: page frames, round reports, the pages a post-copy
//! leaves on the source and the final state.

use super::error::CheckpointError;
use super::sink::{CheckpointSink, MemoryMode, NextStep, RoundReport};
use crate::image::{Checkpoint, ImageSummary};
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
fn nspids(pid: i32, tid: i32) -> Result<Vec<i32>, CheckpointError> {
    let path = format!("/proc/{pid}/task/{tid}/status");
    let text = std::fs::read_to_string(&path).map_err(|source| CheckpointError::Io {
        what: format!("read {path}"),
        source,
    })?;
    parse_nspid(&text).ok_or_else(|| CheckpointError::Io {
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
    pub fn of(root: i32) -> Result<Self, CheckpointError> {
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
    pub fn learn(&mut self, pid: i32) -> Result<(), CheckpointError> {
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

    /// The namespace ID of host ID `id` (0 for one outside the namespace
    /// or never learnt, such as the root's parent).
    pub fn ns(&self, id: i32) -> i32 {
        self.known.get(&id).copied().unwrap_or(0)
    }

    /// The host PIDs of a tree's processes and zombies: learnt by
    /// [`PidNamespace::learn`] before the state is translated.
    fn translate(&self, ck: &Checkpoint) -> Checkpoint {
        let mut out = ck.clone();
        for p in &mut out.processes {
            p.pid = self.ns(p.pid);
            p.ppid = self.ns(p.ppid);
            p.pgid = self.ns(p.pgid);
            p.sid = self.ns(p.sid);
            for t in &mut p.threads {
                t.tid = self.ns(t.tid);
            }
            for timer in &mut p.timers {
                timer.notify_tid = self.ns(timer.notify_tid);
            }
        }
        for z in &mut out.zombies {
            z.pid = self.ns(z.pid);
            z.ppid = self.ns(z.ppid);
            z.pgid = self.ns(z.pgid);
            z.sid = self.ns(z.sid);
        }
        out
    }
}

/// A sink that hands everything on with namespace PIDs.
pub struct Translating<'a> {
    inner: &'a mut dyn CheckpointSink,
    ns: PidNamespace,
}

impl<'a> Translating<'a> {
    /// Translates for the namespace of `root` on the way to `inner`.
    pub fn new(root: i32, inner: &'a mut dyn CheckpointSink) -> Result<Self, CheckpointError> {
        Ok(Translating {
            inner,
            ns: PidNamespace::of(root)?,
        })
    }

    fn ns_of(&mut self, pid: i32) -> Result<i32, CheckpointError> {
        if !self.ns.known.contains_key(&pid) {
            self.ns.learn(pid)?;
        }
        Ok(self.ns.ns(pid))
    }
}

impl CheckpointSink for Translating<'_> {
    fn write_pages(&mut self, pid: i32, vaddr: u64, data: &[u8]) -> Result<(), CheckpointError> {
        let pid = self.ns_of(pid)?;
        self.inner.write_pages(pid, vaddr, data)
    }

    fn write_zero_pages(
        &mut self,
        pid: i32,
        vaddr: u64,
        npages: u64,
    ) -> Result<(), CheckpointError> {
        let pid = self.ns_of(pid)?;
        self.inner.write_zero_pages(pid, vaddr, npages)
    }

    fn round_done(&mut self, report: &RoundReport) -> Result<NextStep, CheckpointError> {
        let mut report = *report;
        report.pid = self.ns_of(report.pid)?;
        self.inner.round_done(&report)
    }

    fn memory_mode(&self) -> MemoryMode {
        self.inner.memory_mode()
    }

    fn lazy_pages(&mut self, pid: i32, runs: Vec<(u64, u64)>) -> Result<(), CheckpointError> {
        let pid = self.ns_of(pid)?;
        self.inner.lazy_pages(pid, runs)
    }

    fn commit(&mut self, checkpoint: &Checkpoint) -> Result<ImageSummary, CheckpointError> {
        // The tree is frozen (or its zombies unreaped): every ID is there.
        for p in &checkpoint.processes {
            self.ns.learn(p.pid)?;
        }
        for z in &checkpoint.zombies {
            self.ns.learn(z.pid)?;
        }
        let translated = self.ns.translate(checkpoint);
        self.inner.commit(&translated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
