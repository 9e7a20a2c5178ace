//! A container's tree lives in a PID namespace of its own: ferry traces and
//! reads its processes by their PIDs on this host, but the image names
//! them as they see each other (the last field of NSpid), because those are
//! the PIDs the restore recreates inside the destination container. This
//! sink sits between the dump and the real sink and translates every PID
//! and TID that passes: page frames, round reports, the pages a post-copy
//! leaves on the source and the final state.

use super::error::CheckpointError;
use super::sink::{CheckpointSink, MemoryMode};
use crate::image::{Checkpoint, ImageSummary, NextStep, RoundReport};
use crate::inspect::pidns::PidNamespace;

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
        if !self.ns.knows(pid) {
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

    fn stopping(&mut self) {
        self.inner.stopping();
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
        let translated = translate(&self.ns, checkpoint);
        self.inner.commit(&translated)
    }
}

/// `ck` with the namespace PIDs of its processes, threads, timers, file
/// owners and zombies, learnt by [`PidNamespace::learn`] before the state is
/// translated.
fn translate(ns: &PidNamespace, ck: &Checkpoint) -> Checkpoint {
    let mut out = ck.clone();
    for p in &mut out.processes {
        p.pid = ns.ns(p.pid);
        p.ppid = ns.ns(p.ppid);
        p.pgid = ns.ns(p.pgid);
        p.sid = ns.ns(p.sid);
        for t in &mut p.threads {
            t.tid = ns.ns(t.tid);
        }
        for timer in &mut p.timers {
            timer.notify_tid = ns.ns(timer.notify_tid);
        }
        for owner in &mut p.file_owners {
            owner.pid = ns.ns(owner.pid);
        }
    }
    for z in &mut out.zombies {
        z.pid = ns.ns(z.pid);
        z.ppid = ns.ns(z.ppid);
        z.pgid = ns.ns(z.pgid);
        z.sid = ns.ns(z.sid);
    }
    out
}
