//! Freezing: the threads of a process, and the processes of a tree, held
//! in ptrace-stops with all signals blocked, and let go exactly as they
//! were (or killed once the checkpoint is committed).

use super::error::CheckpointError;
use super::tree;
use crate::image::ZombieImage;
use crate::inspect::seccomp::check_seccomp;
use crate::inspect::{preflight, Namespaces};
use crate::kernel;
use crate::proc;
use crate::ptrace::{park, resume_regs, PtraceError, Tracee};
use nix::sys::ptrace::Options;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The threads of a process held in ptrace-stops, with what is needed to
/// let them go exactly as they were.
pub(super) struct Frozen {
    /// The process.
    pub(super) pid: i32,
    /// Whether the threads' seccomp filters are suspended while traced
    /// (PTRACE_O_SUSPEND_SECCOMP), so that injected queries pass them.
    pub(super) seccomp_suspended: bool,
    /// Leader first.
    pub(super) threads: Vec<FrozenThread>,
}

/// One stopped thread, with the registers and signal mask it had.
pub(super) struct FrozenThread {
    /// The stopped thread.
    pub(super) tracee: Tracee,
    /// Its registers when it was stopped.
    pub(super) regs: crate::image::GeneralRegs,
    /// Its signal mask before ferry blocked every signal.
    pub(super) sigmask: u64,
}

/// Every signal but SIGKILL and SIGSTOP (which cannot be blocked anyway).
const ALL_SIGNALS: u64 = !0;

impl Frozen {
    /// Seizes and stops every thread, re-reading the thread list until no
    /// new thread appears, and blocks all signals so that none is delivered
    /// while ferry works (they stay pending and are dumped as pending).
    pub(super) fn freeze(pid: i32, suspend_seccomp: bool) -> Result<Self, CheckpointError> {
        let mut frozen = Frozen {
            pid,
            seccomp_suspended: suspend_seccomp,
            threads: Vec::new(),
        };
        if let Err(e) = frozen.seize_all().and_then(|()| frozen.park_all()) {
            let _ = frozen.thaw();
            return Err(e);
        }
        Ok(frozen)
    }

    /// Parks every thread ([`crate::ptrace::park`]), then blocks all its
    /// signals: should ferry die from here on, each returns to where it
    /// was, with its own signal mask. A process without a signal restorer
    /// in its code, or a thread whose stack takes no frame or that runs
    /// with a shadow stack (whose sigreturn wants a token ferry does not
    /// write), is held unparked, as before.
    fn park_all(&mut self) -> Result<(), CheckpointError> {
        let restorer = proc::read_maps(self.pid)
            .ok()
            .and_then(|maps| park::find_restorer(Pid::from_raw(self.pid), &maps));
        if restorer.is_none() {
            tracing::debug!(
                pid = self.pid,
                "no signal restorer found: threads held unparked"
            );
        }
        let shadow_stacks = kernel::cpu::has_shadow_stacks();
        for ft in &mut self.threads {
            let tid = ft.tracee.tid.as_raw();
            let parkable = !shadow_stacks
                || proc::read_thread_status(self.pid, tid).is_ok_and(|st| !st.shadow_stack);
            if let Some(restorer) = restorer.filter(|_| parkable) {
                if let Err(e) = ft.tracee.park(&ft.regs, ft.sigmask, restorer) {
                    tracing::debug!(tid, %e, "thread held unparked");
                }
            }
            ft.tracee.set_sigmask(ALL_SIGNALS)?;
        }
        Ok(())
    }

    fn seize_all(&mut self) -> Result<(), CheckpointError> {
        loop {
            let mut added = false;
            for tid in proc::task_ids(self.pid)? {
                if self.threads.iter().any(|t| t.tracee.tid.as_raw() == tid) {
                    continue;
                }
                let mut options = Options::PTRACE_O_TRACESYSGOOD;
                if self.seccomp_suspended {
                    options |= kernel::ptrace_suspend_seccomp();
                }
                let tracee = match Tracee::seize(Pid::from_raw(tid), options) {
                    Ok(t) => t,
                    // The thread exited between listing and seizing.
                    Err(PtraceError::Request {
                        errno: nix::errno::Errno::ESRCH,
                        ..
                    }) if tid != self.pid => continue,
                    Err(e) => return Err(e.into()),
                };
                let regs = tracee.regs()?;
                let sigmask = tracee.sigmask()?;
                let ft = FrozenThread {
                    tracee,
                    regs,
                    sigmask,
                };
                if tid == self.pid {
                    self.threads.insert(0, ft);
                } else {
                    self.threads.push(ft);
                }
                added = true;
            }
            if !added {
                return Ok(());
            }
        }
    }

    /// Whether the process is stopped by job control: its threads were in
    /// a group-stop when seized (and return to it when let go).
    pub(super) fn stopped(&self) -> bool {
        self.threads.iter().any(|t| t.tracee.group_stopped)
    }

    /// Lets every thread go as it was: registers (an interrupted system call
    /// restarts as the kernel would have restarted it), signal mask, and the
    /// signals that arrived meanwhile queued again.
    pub(super) fn thaw(self) -> Result<(), CheckpointError> {
        let mut first_err = None;
        for mut ft in self.threads.into_iter().rev() {
            let tid = ft.tracee.tid;
            let res = (|| -> Result<(), CheckpointError> {
                // The mask first: a parked thread let go in between
                // returns through its frame, which holds the mask too.
                ft.tracee.set_sigmask(ft.sigmask)?;
                ft.tracee.set_regs(&resume_regs(&ft.regs, true))?;
                ft.tracee.unpark()?;
                for sig in &ft.tracee.caught_signals {
                    // Queue it again; it is delivered once the thread runs.
                    let _ = kernel::tgkill(Pid::from_raw(self.pid), tid, sig.signo);
                }
                ft.tracee.detach()?;
                Ok(())
            })();
            if let Err(e) = res {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Kills the process and waits until its threads are gone, leaving the
    /// leader's zombie to its parent. Threads are reaped in whatever order
    /// they finish (non-leaders first, as the leader is reported last): no
    /// fixed order works for every tree, since the last thread of a PID
    /// namespace's init (a container's) waits in the kernel until every
    /// other task of the namespace, its traced sibling threads included,
    /// is reaped.
    fn kill(self) {
        use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
        let _ = kill(Pid::from_raw(self.pid), Signal::SIGKILL);
        let mut left: Vec<Pid> = self.threads.iter().rev().map(|ft| ft.tracee.tid).collect();
        while !left.is_empty() {
            let before = left.len();
            left.retain(|&tid| loop {
                match waitpid(tid, Some(WaitPidFlag::__WALL | WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => break false,
                    Ok(WaitStatus::StillAlive) => break true,
                    Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                    Err(_) => break false,
                }
            });
            if left.len() == before {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
    }
}

/// The processes of a tree held in ptrace-stops (parents before
/// children) and its zombies.
pub(super) struct FrozenTree {
    /// The tree's root.
    pub(super) root: i32,
    /// The namespaces each process must be in.
    pub(super) expected: Namespaces,
    /// The frozen processes, parents before children.
    pub(super) procs: Vec<Frozen>,
    /// The zombies of the tree.
    pub(super) zombies: Vec<ZombieImage>,
}

impl FrozenTree {
    /// Freezes the tree rooted at `root` top-down: a process is frozen
    /// before its children are listed, so that no child created meanwhile
    /// is missed. A child that exits before it is frozen is taken as the
    /// zombie it became (or skipped if it is already gone). On failure
    /// every process frozen so far is resumed.
    pub(super) fn freeze(root: i32, expected: Namespaces) -> Result<Self, CheckpointError> {
        let mut tree = FrozenTree {
            root,
            expected,
            procs: Vec::new(),
            zombies: Vec::new(),
        };
        let mut stack = vec![root];
        while let Some(pid) = stack.pop() {
            match tree.freeze_one(pid) {
                Ok(true) => {
                    let children = proc::children(pid);
                    match children {
                        Ok(c) => stack.extend(c.into_iter().rev()),
                        Err(e) => {
                            let _ = tree.thaw();
                            return Err(e.into());
                        }
                    }
                }
                Ok(false) => {}
                Err(e) => {
                    let _ = tree.thaw();
                    return Err(e);
                }
            }
        }
        Ok(tree)
    }

    /// Freezes `pid`, or records it as a zombie; returns whether it was
    /// frozen (and its children are to be visited).
    fn freeze_one(&mut self, pid: i32) -> Result<bool, CheckpointError> {
        let frozen = (|| {
            if pid != self.root {
                preflight(pid, &self.expected)?;
            }
            Frozen::freeze(pid, check_seccomp(pid)?)
        })();
        match frozen {
            Ok(f) => {
                self.procs.push(f);
                Ok(true)
            }
            Err(e) if pid != self.root => match proc::read_status(pid) {
                Err(_) => Ok(false),
                Ok(st) if st.state == 'Z' || st.state == 'X' => self.add_zombie(pid),
                Ok(_) => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    fn add_zombie(&mut self, pid: i32) -> Result<bool, CheckpointError> {
        self.zombies.extend(tree::zombie(pid));
        Ok(false)
    }

    /// Resumes every process, children first.
    pub(super) fn thaw(&mut self) -> Result<(), CheckpointError> {
        let mut first_err = None;
        while let Some(f) = self.procs.pop() {
            let pid = f.pid;
            if let Err(e) = f.thaw() {
                tracing::error!(pid, %e, "resuming a process of the tree failed");
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Kills every process of the tree and waits until their threads are
    /// gone; the root's zombie is left to its parent, the others are
    /// reparented (to the nearest subreaper or init) and reaped there.
    pub(super) fn kill(&mut self) {
        for f in &self.procs {
            let _ = kill(Pid::from_raw(f.pid), Signal::SIGKILL);
        }
        while let Some(f) = self.procs.pop() {
            f.kill();
        }
    }
}
