//! The process tree: spawning, taking over and cloning husks, sessions
//! and process groups, zombies, and letting the restored tree run.

use super::process::{all_signals_blocked, trace_options, Husk, STRUCT_OFF};
use crate::image::{Checkpoint, ProcessImage, ZombieImage};
use crate::kernel;
use crate::kernel::abi::{IntoBytes, KernelSigaction};
use crate::memory::PageRuns;
use crate::proc;
use crate::ptrace::remote::{Remote, RemoteError};
use crate::ptrace::{read_memory, write_memory, Tracee};
use crate::restore::channel::FdChannel;
use crate::restore::error::RestoreError;
use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

impl<'a> Husk<'a> {
    /// Seizes the husk that migrate-agent spawned with the root's PID; its
    /// lifeline keeps it alive until the helper area is mapped.
    pub(super) fn seize(
        image: &'a ProcessImage,
        tree: &'a Checkpoint,
        spawned: kernel::SpawnedHusk,
    ) -> Result<Self, RestoreError> {
        let leader = Tracee::seize(spawned.pid, trace_options())?;
        leader.set_sigmask(all_signals_blocked())?;
        // The husk is a fork of this process, so our libc's syscall
        // instruction is at the same address in it, wherever it stopped.
        let syscall_insn =
            kernel::own_syscall_instruction().map_err(|e| RestoreError::Unsupported {
                pid: image.pid,
                why: format!("cannot find a syscall instruction to start the restore with: {e}"),
            })?;
        Ok(Husk {
            lifeline: Some(spawned.lifeline),
            ..Husk::new(image, tree, leader, syscall_insn)
        })
    }

    /// Takes the existing process `pid` as the husk: seizes it, ends every
    /// thread but the leader by an injected exit, and finds a `syscall`
    /// instruction in its vDSO to start injecting with.
    pub(super) fn take(
        image: &'a ProcessImage,
        tree: &'a Checkpoint,
        pid: Pid,
        channel: &'a FdChannel,
    ) -> Result<Self, RestoreError> {
        // A container's init may already be confined by the runtime's
        // seccomp filters (Docker's default profile answers clone3 with
        // ENOSYS and userfaultfd with EPERM): suspended for the tracer's
        // injected calls, in the husks cloned from it too (they inherit
        // the options), until the restored tree is let go.
        let mut options = trace_options();
        if proc::read_status(pid.as_raw())?.seccomp != 0 {
            options |= kernel::ptrace_suspend_seccomp();
        }
        let mut leader = Tracee::seize(pid, options)?;
        leader.set_sigmask(all_signals_blocked())?;
        let vdso = proc::read_maps(pid.as_raw())?
            .into_iter()
            .find(|m| m.path == "[vdso]")
            .ok_or_else(|| RestoreError::Unsupported {
                pid: image.pid,
                why: format!("process {pid} has no [vDSO] to find a syscall instruction in"),
            })?;
        let mut bytes = vec![0u8; (vdso.end - vdso.start) as usize];
        read_memory(pid, vdso.start, &mut bytes)?;
        let syscall_insn =
            crate::ptrace::find_syscall_insn(vdso.start, &bytes).ok_or_else(|| {
                RestoreError::Unsupported {
                    pid: image.pid,
                    why: format!("the vDSO of process {pid} holds no syscall instruction"),
                }
            })?;
        loop {
            let others: Vec<i32> = proc::task_ids(pid.as_raw())?
                .into_iter()
                .filter(|&t| t != pid.as_raw())
                .collect();
            if others.is_empty() {
                break;
            }
            for tid in others {
                end_thread(Pid::from_raw(tid), syscall_insn)?;
            }
        }
        // Signals the husk caught while seized are its own.
        leader.caught_signals.clear();
        Ok(Husk {
            channel: Some(channel),
            taken: true,
            ..Husk::new(image, tree, leader, syscall_insn)
        })
    }

    /// The husk of a child cloned from its parent's husk (a copy of it,
    /// already traced): its injected calls start on the parent's helper,
    /// at `parent_helper`, until it maps its own.
    pub(super) fn adopt(
        image: &'a ProcessImage,
        tree: &'a Checkpoint,
        leader: Tracee,
        parent_helper: u64,
        channel: Option<&'a FdChannel>,
    ) -> Self {
        Husk {
            channel,
            ..Husk::new(image, tree, leader, parent_helper)
        }
    }

    /// Undoes what the husk inherited from migrate-agent: its rseq
    /// registration (before its TLS disappears), its fds and its mappings
    /// (but those it inherits from its parent: [`Husk::plan_inheritance`]).
    pub(super) fn drop_husk_state(&mut self) -> Result<(), RestoreError> {
        if let Some((ptr, len, sig)) = kernel::ptrace_get_rseq(self.pid).map_err(|errno| {
            crate::ptrace::PtraceError::Request {
                op: "PTRACE_GET_RSEQ_CONFIGURATION",
                tid: self.pid.as_raw(),
                errno,
            }
        })? {
            const RSEQ_FLAG_UNREGISTER: u64 = 1;
            self.sys(
                0,
                |r| {
                    r.syscall(
                        libc::SYS_rseq,
                        &[ptr, u64::from(len), RSEQ_FLAG_UNREGISTER, u64::from(sig)],
                    )
                },
                || "rseq unregistration of the husk".into(),
            )?;
        }
        self.sys(
            0,
            |r| r.close_range(0, u32::MAX),
            || "close_range of the husk's fds".into(),
        )?;
        if self.taken {
            // What was pending for the process the husk was (a container
            // init's runtime signals) is not the image's.
            self.drain_signals(all_signals_blocked())?;
        }
        // What stays: the helper, the vDSO group, the mappings inherited
        // from the parent's husk and a warm restore's staging. The rest
        // goes in one munmap per stretch between them: a husk forked from
        // migrate-agent has a few hundred mappings, and one injected call
        // each was milliseconds of the downtime.
        let maps = proc::read_maps(self.pid.as_raw())?;
        let mut keep: Vec<(u64, u64)> = maps
            .iter()
            .filter(|m| {
                m.start == self.helper
                    || matches!(
                        m.path.as_str(),
                        "[vdso]" | "[vvar]" | "[vvar_vclock]" | "[vsyscall]"
                    )
            })
            .map(|m| (m.start, m.end))
            .collect();
        keep.extend(self.inherited_ranges());
        keep.extend(self.staging.as_ref().map(|s| (s.base, s.base + s.len)));
        let (low, high) = maps
            .iter()
            .filter(|m| m.path != "[vsyscall]")
            .fold((u64::MAX, 0), |(l, h), m| (l.min(m.start), h.max(m.end)));
        for (start, end) in PageRuns::from_runs(keep).gaps(low, high) {
            self.sys(
                0,
                |r| r.munmap(start, end - start),
                || format!("munmap of the husk's mappings in {start:#x}-{end:#x}"),
            )?;
        }
        Ok(())
    }

    /// Makes the process a session leader or a process group leader, as it
    /// was, before its children are cloned so that they inherit it. Group
    /// members join their group once every process exists
    /// ([`Husk::join_group`]). A session or group outside the tree is not
    /// recreated: the process stays in the one it inherited (the root: the
    /// restorer's).
    pub(super) fn join_session(&mut self) -> Result<(), RestoreError> {
        let p = self.image;
        if p.sid == p.pid && self.taken {
            // A container's init leads its session already.
            let sid = self.sys(
                0,
                |r| r.syscall(libc::SYS_getsid, &[]),
                || "getsid(0)".into(),
            )?;
            let me = self.sys(
                0,
                |r| r.syscall(libc::SYS_getpid, &[]),
                || "getpid()".into(),
            )?;
            if sid == me {
                return Ok(());
            }
        }
        if p.sid == p.pid {
            self.sys(
                0,
                |r| r.syscall(libc::SYS_setsid, &[]),
                || format!("setsid (process {} led session {})", p.pid, p.sid),
            )?;
        } else if p.pgid == p.pid {
            self.sys(
                0,
                |r| r.syscall(libc::SYS_setpgid, &[]),
                || format!("setpgid(0, 0) (process {} led its process group)", p.pid),
            )?;
        }
        Ok(())
    }

    /// Joins the process group the process was in, when its leader is
    /// another process of the tree (a zombie too: it was made to lead its
    /// group before it ended).
    pub(super) fn join_group(&mut self) -> Result<(), RestoreError> {
        let p = self.image;
        if p.pgid == p.pid || !in_tree(self.tree, p.pgid) {
            return Ok(());
        }
        let pgid = p.pgid as u64;
        self.sys(
            0,
            |r| r.syscall(libc::SYS_setpgid, &[0, pgid]),
            || format!("setpgid(0, {}) (joining its process group)", p.pgid),
        )?;
        Ok(())
    }

    /// Makes the process a child subreaper or not, as it was (a taken
    /// husk may have been one).
    pub(super) fn restore_child_subreaper(&mut self) -> Result<(), RestoreError> {
        let flag = u64::from(self.image.child_subreaper);
        self.sys(
            0,
            |r| r.prctl(libc::PR_SET_CHILD_SUBREAPER, &[flag]),
            || format!("prctl(PR_SET_CHILD_SUBREAPER, {flag})"),
        )?;
        Ok(())
    }

    /// Sets every thread's parent-death signal (PR_SET_PDEATHSIG, per
    /// thread). The kernel clears it when the thread's user or group IDs
    /// change, so this comes after [`Self::restore_credentials`]; lowering
    /// capabilities afterwards keeps it.
    pub(super) fn restore_pdeath_signals(&mut self) -> Result<(), RestoreError> {
        for idx in 0..self.threads.len() {
            let (tid, signal) = {
                let t = &self.image.threads[idx];
                (t.tid, t.pdeath_signal)
            };
            let signo = signal as u64;
            self.sys(
                idx,
                |r| r.prctl(libc::PR_SET_PDEATHSIG, &[signo]),
                || format!("prctl(PR_SET_PDEATHSIG, {signal}) of thread {tid}"),
            )?;
        }
        Ok(())
    }

    /// Clones a child with PID `pid` from this husk (clone3 with set_tid,
    /// exit signal SIGCHLD, and CLONE_FILES or CLONE_FS among `flags` when
    /// the child shared its fd table or fs information with this process):
    /// the kernel attaches it to ferry (PTRACE_O_TRACEFORK) and it waits in
    /// its first stop.
    pub(super) fn clone_child(&mut self, pid: i32, flags: u64) -> Result<Tracee, RestoreError> {
        let tid_addr = self.put(STRUCT_OFF + 512, &pid.to_ne_bytes())?;
        let args = kernel::encode_clone_args(flags, 0, 0, tid_addr, libc::SIGCHLD as u64);
        let args_addr = self.put(STRUCT_OFF, &args)?;
        let size = kernel::CLONE_ARGS_SIZE as u64;
        let r = self.sys(
            0,
            |r| r.clone3(args_addr, size),
            || format!("clone3 of child process {pid}"),
        );
        if let Err(RestoreError::Injected {
            errno: Errno::EEXIST,
            ..
        }) = r
        {
            return Err(RestoreError::PidTaken {
                pid,
                holder: "another process".into(),
            });
        }
        let new = r?.ok_or_else(|| RestoreError::Unsupported {
            pid: self.image.pid,
            why: format!("no fork event was reported for child process {pid}"),
        })?;
        Ok(Tracee::adopt_new_thread(new)?)
    }

    /// Creates the zombie child `z`: a clone of this husk that ends at once
    /// with the saved exit code or signal, and stays unreaped for the
    /// restored parent to wait for. Before it ends it leads its own session
    /// or process group, or joins the group of another process of the
    /// tree, as it did. A group whose leader is gone (no process has its
    /// ID here: the group lived on through its members) is made again by a
    /// placeholder with the leader's PID, ended and reaped once the zombie
    /// joined it; a group led by a process outside the tree, or still
    /// alive outside it without its leader, is not recreated: the zombie stays in the one it inherited, as a live
    /// process does.
    pub(super) fn create_zombie(&mut self, z: &ZombieImage) -> Result<(), RestoreError> {
        let leader_gone = z.sid != z.pid
            && z.pgid != z.pid
            && !in_tree(self.tree, z.pgid)
            && kill(Pid::from_raw(z.pgid), None) == Err(Errno::ESRCH);
        let placeholder = if leader_gone {
            match self.group_placeholder(z.pgid) {
                Ok(p) => Some(p),
                // The group lives on outside the tree (its ID is still a
                // process group of this host, though no process has it
                // as PID): the zombie stays in the group it inherited.
                Err(RestoreError::PidTaken { .. }) => None,
                Err(e) => return Err(e),
            }
        } else {
            None
        };
        let made = self.make_zombie(z, placeholder.is_some());
        match placeholder {
            Some(p) if made.is_ok() => self.end_placeholder(p, z.pgid),
            Some(p) => {
                let _ = kill(p.tid, Signal::SIGKILL);
                made
            }
            None => made,
        }
    }

    /// A child of this husk with PID `pgid` leading a process group of
    /// that ID, for a zombie to join.
    fn group_placeholder(&mut self, pgid: i32) -> Result<Tracee, RestoreError> {
        let mut child = self.clone_child(pgid, 0)?;
        match Remote::new(&mut child, self.helper).syscall(libc::SYS_setpgid, &[0, 0]) {
            Ok(_) => Ok(child),
            Err(e) => {
                let _ = kill(child.tid, Signal::SIGKILL);
                Err(match e {
                    RemoteError::Trace(e) => e.into(),
                    RemoteError::Failed(errno) => RestoreError::Injected {
                        pid: pgid,
                        call: "setpgid(0, 0) of the placeholder leading a zombie's group".into(),
                        errno,
                    },
                })
            }
        }
    }

    /// Ends the placeholder `p` (PID `pgid`) and reaps it inside this husk.
    fn end_placeholder(&mut self, p: Tracee, pgid: i32) -> Result<(), RestoreError> {
        let mut regs = p.regs()?;
        regs.rip = self.helper;
        regs.orig_rax = u64::MAX;
        regs.rax = libc::SYS_exit_group as u64;
        regs.rdi = 0;
        p.set_regs(&regs)?;
        run_to_end(&p, pgid)?;
        let options = libc::__WALL as u64;
        self.sys(
            0,
            |r| r.syscall(libc::SYS_wait4, &[pgid as u64, 0, options, 0]),
            || format!("wait4 of the placeholder {pgid} that led a zombie's group"),
        )?;
        Ok(())
    }

    /// Clones the zombie `z` and ends it, in its session or group
    /// (`placeholder`: its group's leader was made again by one).
    fn make_zombie(&mut self, z: &ZombieImage, placeholder: bool) -> Result<(), RestoreError> {
        let mut child = self.clone_child(z.pid, 0)?;
        let (code, signal) = (z.wait_status >> 8 & 0xff, z.wait_status & 0x7f);
        let pgid = z.pgid as u64;
        let group_call = if z.sid == z.pid {
            Some((libc::SYS_setsid, [0, 0], "setsid".to_string()))
        } else if z.pgid == z.pid {
            Some((libc::SYS_setpgid, [0, 0], "setpgid(0, 0)".to_string()))
        } else if placeholder || in_tree(self.tree, z.pgid) {
            let what = format!("setpgid(0, {}) (joining its process group)", z.pgid);
            Some((libc::SYS_setpgid, [0, pgid], what))
        } else {
            None
        };
        let ended = (|| -> Result<(), RestoreError> {
            if let Some((nr, args, what)) = group_call {
                match Remote::new(&mut child, self.helper).syscall(nr, &args) {
                    Ok(_) => {}
                    Err(RemoteError::Trace(e)) => return Err(e.into()),
                    Err(RemoteError::Failed(errno)) => {
                        return Err(RestoreError::Injected {
                            pid: z.pid,
                            call: format!("{what} of the zombie"),
                            errno,
                        })
                    }
                }
            }
            if signal != 0 {
                // The default action, whatever the husk inherited.
                let act_addr = self.helper + STRUCT_OFF + 1024;
                write_memory(child.tid, act_addr, KernelSigaction::default().as_bytes())?;
                let set = Remote::new(&mut child, self.helper).rt_sigaction(signal, act_addr, 0);
                // Only tracing errors count: the call's own result never did.
                if let Err(RemoteError::Trace(e)) = set {
                    return Err(e.into());
                }
                child.set_sigmask(0)?;
            }
            let mut regs = child.regs()?;
            regs.rip = self.helper;
            regs.orig_rax = u64::MAX;
            if signal != 0 {
                regs.rax = libc::SYS_tgkill as u64;
                regs.rdi = z.pid as u64;
                regs.rsi = z.pid as u64;
                regs.rdx = signal as u64;
            } else {
                regs.rax = libc::SYS_exit_group as u64;
                regs.rdi = code as u64;
            }
            child.set_regs(&regs)?;
            run_to_end(&child, z.pid)
        })();
        if ended.is_err() {
            let _ = kill(child.tid, Signal::SIGKILL);
        }
        ended
    }

    /// Lets the restored process run: threads first, the leader last. A
    /// process that was stopped by job control gets SIGSTOP first, as
    /// CRIU does: its traced threads cannot take it, so it waits queued,
    /// and the first thread let go stops the group before it runs one
    /// instruction of its own; its parent is told (CLD_STOPPED) and
    /// SIGCONT resumes it. SIGSTOP, not the signal that stopped it: no
    /// handler, mask or orphaned process group can turn SIGSTOP away.
    pub(super) fn release(self) -> Result<(), RestoreError> {
        let pid = self.pid;
        if self.image.stopped {
            kill(pid, Signal::SIGSTOP).map_err(|errno| RestoreError::Injected {
                pid: self.image.pid,
                call: "kill(SIGSTOP) to restore its job-control stop".into(),
                errno,
            })?;
        }
        let caught: Vec<(Pid, i32)> = self
            .threads
            .iter()
            .flat_map(|t| t.caught_signals.iter().map(move |s| (t.tid, s.signo)))
            .collect();
        for t in self.threads.into_iter().rev() {
            t.detach()?;
        }
        // Signals sent to the husk while it was being built.
        for (tid, signo) in caught {
            let _ = kernel::tgkill(pid, tid, signo);
        }
        Ok(())
    }

    /// Kills the half-built process and waits until it is gone.
    pub(super) fn abort(self) {
        let _ = kill(self.pid, Signal::SIGKILL);
        for t in self.threads.iter().rev() {
            loop {
                match nix::sys::wait::waitpid(t.tid, Some(nix::sys::wait::WaitPidFlag::__WALL)) {
                    Ok(
                        nix::sys::wait::WaitStatus::Exited(..)
                        | nix::sys::wait::WaitStatus::Signaled(..),
                    ) => break,
                    Ok(_) | Err(Errno::EINTR) => continue,
                    Err(_) => break,
                }
            }
        }
    }
}

/// Ends thread `tid` of a taken husk (seizing it) by an injected exit,
/// and waits until it is gone.
pub(super) fn end_thread(tid: Pid, syscall_insn: u64) -> Result<(), RestoreError> {
    let t = match Tracee::seize(tid, trace_options()) {
        Ok(t) => t,
        // It ended on its own meanwhile.
        Err(_) if !std::path::Path::new(&format!("/proc/{tid}")).exists() => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let mut regs = t.regs()?;
    regs.rax = libc::SYS_exit as u64;
    regs.orig_rax = u64::MAX;
    regs.rdi = 0;
    regs.rip = syscall_insn;
    t.set_regs(&regs)?;
    let fail = |errno| crate::ptrace::PtraceError::Request {
        op: "PTRACE_CONT",
        tid: tid.as_raw(),
        errno,
    };
    nix::sys::ptrace::cont(tid, None).map_err(fail)?;
    loop {
        match nix::sys::wait::waitpid(tid, Some(nix::sys::wait::WaitPidFlag::__WALL)) {
            Ok(
                nix::sys::wait::WaitStatus::Exited(..) | nix::sys::wait::WaitStatus::Signaled(..),
            )
            | Err(Errno::ECHILD) => return Ok(()),
            Ok(_) => nix::sys::ptrace::cont(tid, None).map_err(fail)?,
            Err(Errno::EINTR) => {}
            Err(errno) => {
                return Err(RestoreError::Injected {
                    pid: tid.as_raw(),
                    call: "waiting for an ended thread of the husk".into(),
                    errno,
                })
            }
        }
    }
}

/// Whether `pid` is a process or a zombie of the image's tree.
/// Runs traced child `child` (process `pid` of the image) until it has
/// ended, letting its own signals through.
fn run_to_end(child: &Tracee, pid: i32) -> Result<(), RestoreError> {
    let mut deliver = None;
    loop {
        nix::sys::ptrace::cont(child.tid, deliver).map_err(|errno| {
            crate::ptrace::PtraceError::Request {
                op: "PTRACE_CONT",
                tid: pid,
                errno,
            }
        })?;
        match nix::sys::wait::waitpid(child.tid, Some(nix::sys::wait::WaitPidFlag::__WALL)) {
            Ok(nix::sys::wait::WaitStatus::Exited(..))
            | Ok(nix::sys::wait::WaitStatus::Signaled(..)) => return Ok(()),
            Ok(nix::sys::wait::WaitStatus::Stopped(_, sig)) => deliver = Some(sig),
            Ok(_) | Err(Errno::EINTR) => deliver = None,
            Err(errno) => {
                return Err(RestoreError::Injected {
                    pid,
                    call: "waiting for the process to end".into(),
                    errno,
                })
            }
        }
    }
}

fn in_tree(tree: &Checkpoint, pid: i32) -> bool {
    tree.processes.iter().any(|q| q.pid == pid) || tree.zombies.iter().any(|z| z.pid == pid)
}

/// Whether process `pid` shares our mount namespace (and so our /proc).
pub(super) fn same_mount_namespace(pid: Pid) -> Result<bool, RestoreError> {
    let link = |p: String| {
        std::fs::read_link(&p).map_err(|source| {
            RestoreError::Proc(proc::ProcError::Read {
                path: p.into(),
                source,
            })
        })
    };
    Ok(link(format!("/proc/{pid}/ns/mnt"))? == link("/proc/self/ns/mnt".into())?)
}
