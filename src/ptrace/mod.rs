//! A ptrace tracer for checkpoint and restore: seize and stop threads, read
//! and write their registers and memory, and run system calls inside them
//! (syscall injection), with signals that arrive meanwhile kept, not lost.

use crate::image::GeneralRegs;
use crate::kernel;
use nix::errno::Errno;
use nix::sys::ptrace;
use nix::sys::signal::Signal;
use nix::sys::uio::{process_vm_readv, process_vm_writev, RemoteIoVec};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::io::{IoSlice, IoSliceMut};

pub mod park;
pub mod remote;
pub mod sigframe;

/// -ERESTARTSYS: restart if no handler ran or the handler has SA_RESTART.
pub const ERESTARTSYS: i64 = -512;
/// -ERESTARTNOINTR: always restart.
pub const ERESTARTNOINTR: i64 = -513;
/// -ERESTARTNOHAND: restart if no handler ran.
pub const ERESTARTNOHAND: i64 = -514;
/// -ERESTART_RESTARTBLOCK: restart through restart_syscall with the
/// kernel's saved restart block (nanosleep, poll, futex with timeout).
pub const ERESTART_RESTARTBLOCK: i64 = -516;
/// __NR_restart_syscall on x86_64.
pub const NR_RESTART_SYSCALL: u64 = 219;

/// What went wrong while tracing a thread.
#[derive(Debug, thiserror::Error)]
pub enum PtraceError {
    /// A ptrace request failed.
    #[error("{op} on thread {tid} failed: {errno}")]
    Request {
        /// The request.
        op: &'static str,
        /// The thread.
        tid: i32,
        /// The error.
        errno: Errno,
    },
    /// The thread exited or was killed while being traced.
    #[error("thread {tid} died while {during} ({status})")]
    Died {
        /// The thread.
        tid: i32,
        /// What ferry was doing.
        during: String,
        /// The wait status.
        status: String,
    },
    /// A system call injected into the thread failed.
    #[error("{call} injected into thread {tid} failed: {errno}")]
    Injected {
        /// The thread.
        tid: i32,
        /// The call.
        call: &'static str,
        /// The error it returned.
        errno: Errno,
    },
    /// Reading or writing the thread's memory failed.
    #[error("{op} of {len} bytes at {addr:#x} in process {pid} failed: {errno}")]
    Memory {
        /// "read" or "write".
        op: &'static str,
        /// The process.
        pid: i32,
        /// Address.
        addr: u64,
        /// Length.
        len: usize,
        /// The error.
        errno: Errno,
    },
}

fn req(op: &'static str, tid: Pid) -> impl FnOnce(Errno) -> PtraceError {
    move |errno| PtraceError::Request {
        op,
        tid: tid.as_raw(),
        errno,
    }
}

/// Copies every field of one x86_64 register struct into another: the
/// model's `GeneralRegs` and libc's `user_regs_struct` have the same fields.
macro_rules! copy_regs {
    ($from:expr, $to:ident) => {
        $to {
            r15: $from.r15,
            r14: $from.r14,
            r13: $from.r13,
            r12: $from.r12,
            rbp: $from.rbp,
            rbx: $from.rbx,
            r11: $from.r11,
            r10: $from.r10,
            r9: $from.r9,
            r8: $from.r8,
            rax: $from.rax,
            rcx: $from.rcx,
            rdx: $from.rdx,
            rsi: $from.rsi,
            rdi: $from.rdi,
            orig_rax: $from.orig_rax,
            rip: $from.rip,
            cs: $from.cs,
            eflags: $from.eflags,
            rsp: $from.rsp,
            ss: $from.ss,
            fs_base: $from.fs_base,
            gs_base: $from.gs_base,
            ds: $from.ds,
            es: $from.es,
            fs: $from.fs,
            gs: $from.gs,
        }
    };
}

/// Converts nix's register struct to the model's.
pub fn regs_from_libc(r: &libc::user_regs_struct) -> GeneralRegs {
    copy_regs!(r, GeneralRegs)
}

/// Converts the model's registers to nix's register struct.
pub fn regs_to_libc(r: &GeneralRegs) -> libc::user_regs_struct {
    use libc::user_regs_struct;
    copy_regs!(r, user_regs_struct)
}

/// Turns the registers of a thread stopped inside an interrupted system
/// call into the registers it must resume with, so that it never sees a raw
/// -ERESTART* value: the call is re-executed with its original arguments
/// (rip back over `syscall`). That also holds for -ERESTART_RESTARTBLOCK
/// (nanosleep, poll, futex with a timeout: a relative timeout starts over,
/// which a program cannot tell from a late wake-up), so that the call keeps
/// its identity if the thread is stopped again. Only a thread already
/// inside restart_syscall needs the kernel's restart block:
/// `restart_block_alive` says whether it still exists (same task, not
/// restored); if not, the call returns -EINTR, as CRIU does.
pub fn resume_regs(regs: &GeneralRegs, restart_block_alive: bool) -> GeneralRegs {
    let mut r = *regs;
    let in_syscall = (r.orig_rax as i64) >= 0;
    if in_syscall {
        match r.rax as i64 {
            ERESTART_RESTARTBLOCK if r.orig_rax == NR_RESTART_SYSCALL && !restart_block_alive => {
                r.rax = (-i64::from(libc::EINTR)) as u64;
            }
            ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND | ERESTART_RESTARTBLOCK => {
                r.rax = r.orig_rax;
                r.rip -= 2;
            }
            _ => {}
        }
    }
    r.orig_rax = u64::MAX;
    r
}

/// A signal that reached a thread while ferry held it stopped.
#[derive(Debug, Clone)]
pub struct CaughtSignal {
    /// Signal number.
    pub signo: i32,
    /// The raw siginfo.
    pub siginfo: [u8; kernel::SIGINFO_SIZE],
}

/// One thread under ptrace, in a ptrace-stop between operations.
#[derive(Debug)]
pub struct Tracee {
    /// Thread ID as the tracer sees it.
    pub tid: Pid,
    /// Signals whose delivery-stop was seen (and suppressed) while tracing;
    /// the owner must queue them again or record them.
    pub caught_signals: Vec<CaughtSignal>,
    /// The message of the last PTRACE_EVENT_CLONE seen during an injected
    /// call: the new thread's ID as the tracer sees it.
    pub last_clone_tid: Option<Pid>,
    /// Its frame while it is parked (see park.rs): injected calls return
    /// through it should ferry die.
    pub parking: Option<sigframe::Parking>,
    /// The thread was in a job-control group-stop (SIGSTOP, SIGTSTP, ...)
    /// when it was seized: a seized thread reports it as a
    /// PTRACE_EVENT_STOP carrying the stop signal instead of SIGTRAP. The
    /// stop outlives the tracing: detaching puts the thread back in it.
    pub group_stopped: bool,
}

impl Tracee {
    /// Seizes a running thread and stops it (PTRACE_SEIZE + INTERRUPT),
    /// returning once it is in a ptrace-stop.
    pub fn seize(tid: Pid, options: ptrace::Options) -> Result<Self, PtraceError> {
        ptrace::seize(tid, options).map_err(req("PTRACE_SEIZE", tid))?;
        let mut t = Tracee {
            tid,
            caught_signals: Vec::new(),
            last_clone_tid: None,
            parking: None,
            group_stopped: false,
        };
        ptrace::interrupt(tid).map_err(req("PTRACE_INTERRUPT", tid))?;
        let first = t.wait_stop("stopping it")?;
        t.group_stopped = matches!(
            first,
            WaitStatus::PtraceEvent(_, sig, libc::PTRACE_EVENT_STOP) if sig != Signal::SIGTRAP
        );
        Ok(t)
    }

    /// Takes over a thread that the kernel auto-attached (PTRACE_O_TRACECLONE)
    /// and waits for its first stop.
    pub fn adopt_new_thread(tid: Pid) -> Result<Self, PtraceError> {
        let mut t = Tracee {
            tid,
            caught_signals: Vec::new(),
            last_clone_tid: None,
            parking: None,
            group_stopped: false,
        };
        t.wait_stop("starting it")?;
        Ok(t)
    }

    /// Waits for the thread's next ptrace-stop. A signal-delivery-stop is
    /// recorded in `caught_signals` (the thread stays stopped there).
    fn wait_stop(&mut self, during: &str) -> Result<WaitStatus, PtraceError> {
        let status = self.wait(during)?;
        if let WaitStatus::Stopped(_, sig) = status {
            self.catch_signal(sig as i32);
        }
        Ok(status)
    }

    fn wait(&self, during: &str) -> Result<WaitStatus, PtraceError> {
        loop {
            match waitpid(self.tid, Some(WaitPidFlag::__WALL)) {
                Err(Errno::EINTR) => continue,
                Err(errno) => return Err(req("waitpid", self.tid)(errno)),
                Ok(st @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => {
                    return Err(PtraceError::Died {
                        tid: self.tid.as_raw(),
                        during: during.to_string(),
                        status: format!("{st:?}"),
                    })
                }
                Ok(WaitStatus::PtraceEvent(_, _, ev)) if ev == libc::PTRACE_EVENT_EXIT => {
                    return Err(PtraceError::Died {
                        tid: self.tid.as_raw(),
                        during: during.to_string(),
                        status: "exiting".into(),
                    })
                }
                Ok(st) => return Ok(st),
            }
        }
    }

    fn catch_signal(&mut self, signo: i32) {
        let siginfo = kernel::ptrace_get_siginfo(self.tid).unwrap_or([0u8; kernel::SIGINFO_SIZE]);
        self.caught_signals.push(CaughtSignal { signo, siginfo });
    }

    /// Reads the general registers.
    pub fn regs(&self) -> Result<GeneralRegs, PtraceError> {
        ptrace::getregs(self.tid)
            .map(|r| regs_from_libc(&r))
            .map_err(req("PTRACE_GETREGS", self.tid))
    }

    /// Writes the general registers.
    pub fn set_regs(&self, regs: &GeneralRegs) -> Result<(), PtraceError> {
        ptrace::setregs(self.tid, regs_to_libc(regs)).map_err(req("PTRACE_SETREGS", self.tid))
    }

    /// Reads the XSAVE area.
    pub fn xstate(&self) -> Result<Vec<u8>, PtraceError> {
        kernel::ptrace_get_xstate(self.tid)
            .map_err(req("PTRACE_GETREGSET(NT_X86_XSTATE)", self.tid))
    }

    /// Writes the XSAVE area.
    pub fn set_xstate(&self, xstate: &[u8]) -> Result<(), PtraceError> {
        kernel::ptrace_set_xstate(self.tid, xstate)
            .map_err(req("PTRACE_SETREGSET(NT_X86_XSTATE)", self.tid))
    }

    /// Reads the blocked-signal mask.
    pub fn sigmask(&self) -> Result<u64, PtraceError> {
        kernel::ptrace_get_sigmask(self.tid).map_err(req("PTRACE_GETSIGMASK", self.tid))
    }

    /// Sets the blocked-signal mask.
    pub fn set_sigmask(&self, mask: u64) -> Result<(), PtraceError> {
        kernel::ptrace_set_sigmask(self.tid, mask).map_err(req("PTRACE_SETSIGMASK", self.tid))
    }

    /// Runs system call `nr` with `args` inside the thread, executing the
    /// `syscall` instruction found at `syscall_insn`, and returns its raw
    /// result (negative errno on failure). The thread's registers are left
    /// as the call left them; the caller restores what it needs.
    pub fn inject(
        &mut self,
        syscall_insn: u64,
        nr: i64,
        args: [u64; 6],
    ) -> Result<i64, PtraceError> {
        let mut r = self.regs()?;
        r.rax = nr as u64;
        r.orig_rax = u64::MAX;
        r.rip = syscall_insn;
        r.rdi = args[0];
        r.rsi = args[1];
        r.rdx = args[2];
        r.r10 = args[3];
        r.r8 = args[4];
        r.r9 = args[5];
        if let Some(p) = &self.parking {
            // `leave; ...; ret` after the call pops the frame's first word.
            r.rbp = p.frame - 8;
        }
        self.set_regs(&r)?;
        let during = format!("running injected system call {nr}");
        let mut syscall_stops = 0;
        while syscall_stops < 2 {
            ptrace::syscall(self.tid, None).map_err(req("PTRACE_SYSCALL", self.tid))?;
            match self.wait(&during)? {
                WaitStatus::PtraceSyscall(_) => syscall_stops += 1,
                WaitStatus::PtraceEvent(_, _, ev)
                    if ev == libc::PTRACE_EVENT_CLONE || ev == libc::PTRACE_EVENT_FORK =>
                {
                    let msg =
                        ptrace::getevent(self.tid).map_err(req("PTRACE_GETEVENTMSG", self.tid))?;
                    self.last_clone_tid = Some(Pid::from_raw(msg as i32));
                }
                WaitStatus::PtraceEvent(..) => {}
                WaitStatus::Stopped(_, sig) => {
                    // A signal arrived: keep it for the owner, do not deliver it now.
                    self.catch_signal(sig as i32);
                    tracing::debug!(
                        tid = self.tid.as_raw(),
                        ?sig,
                        "signal held during injection"
                    );
                }
                other => tracing::debug!(
                    tid = self.tid.as_raw(),
                    ?other,
                    "unexpected stop during injection"
                ),
            }
        }
        Ok(self.regs()?.rax as i64)
    }

    /// Detaches, letting the thread run (or stay in group-stop).
    pub fn detach(self) -> Result<(), PtraceError> {
        ptrace::detach(self.tid, None::<Signal>).map_err(req("PTRACE_DETACH", self.tid))
    }
}

/// Reads `buf.len()` bytes at `addr` of process `pid` (process_vm_readv).
pub fn read_memory(pid: Pid, addr: u64, buf: &mut [u8]) -> Result<(), PtraceError> {
    let len = buf.len();
    remote_io(pid, addr, len, "read", |remote| {
        process_vm_readv(pid, &mut [IoSliceMut::new(buf)], remote)
    })
}

/// Writes `data` at `addr` of process `pid` (process_vm_writev). The
/// mapping must be writable.
pub fn write_memory(pid: Pid, addr: u64, data: &[u8]) -> Result<(), PtraceError> {
    remote_io(pid, addr, data.len(), "write", |remote| {
        process_vm_writev(pid, &[IoSlice::new(data)], remote)
    })
}

/// Runs one process_vm_readv/writev of `len` bytes at `addr`; a short
/// transfer is an error (EFAULT) naming the range.
fn remote_io(
    pid: Pid,
    addr: u64,
    len: usize,
    op: &'static str,
    io: impl FnOnce(&[RemoteIoVec]) -> nix::Result<usize>,
) -> Result<(), PtraceError> {
    let fail = |errno| PtraceError::Memory {
        op,
        pid: pid.as_raw(),
        addr,
        len,
        errno,
    };
    let remote = [RemoteIoVec {
        base: addr as usize,
        len,
    }];
    match io(&remote) {
        Ok(n) if n == len => Ok(()),
        Ok(_) => Err(fail(Errno::EFAULT)),
        Err(errno) => Err(fail(errno)),
    }
}

/// The address of a `syscall` instruction (0f 05) in `bytes`, code read
/// from address `start` (a vDSO has one): where injected calls run. One
/// whose code goes on by returning through the frame pointer is preferred
/// (a parked thread left there returns through its frame), else the first.
pub fn find_syscall_insn(start: u64, bytes: &[u8]) -> Option<u64> {
    let mut at = bytes
        .windows(2)
        .enumerate()
        .filter(|(_, w)| *w == [0x0f, 0x05])
        .map(|(off, _)| off);
    let first = at.clone().next()?;
    let chosen = at
        .find(|&off| sigframe::returns_through_frame_pointer(&bytes[off + 2..]))
        .unwrap_or(first);
    Some(start + chosen as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stopped_in(nr: u64, rax: i64) -> GeneralRegs {
        GeneralRegs {
            orig_rax: nr,
            rax: rax as u64,
            rip: 0x1002,
            ..GeneralRegs::default()
        }
    }

    #[test]
    fn restartable_calls_are_reexecuted() {
        for code in [ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND] {
            let r = resume_regs(&stopped_in(202, code), false);
            assert_eq!((r.rax, r.rip, r.orig_rax), (202, 0x1000, u64::MAX));
        }
    }

    #[test]
    fn restart_block_calls_are_reexecuted_keeping_their_identity() {
        for alive in [true, false] {
            let r = resume_regs(&stopped_in(35, ERESTART_RESTARTBLOCK), alive);
            assert_eq!((r.rax, r.rip), (35, 0x1000));
        }
        let live = resume_regs(&stopped_in(NR_RESTART_SYSCALL, ERESTART_RESTARTBLOCK), true);
        assert_eq!((live.rax, live.rip), (NR_RESTART_SYSCALL, 0x1000));
        let lost = resume_regs(
            &stopped_in(NR_RESTART_SYSCALL, ERESTART_RESTARTBLOCK),
            false,
        );
        assert_eq!(
            (lost.rax as i64, lost.rip),
            (-i64::from(libc::EINTR), 0x1002)
        );
    }

    #[test]
    fn user_mode_stop_is_untouched() {
        let r = GeneralRegs {
            orig_rax: u64::MAX,
            rax: 5,
            rip: 0x1234,
            ..GeneralRegs::default()
        };
        let out = resume_regs(&r, false);
        assert_eq!((out.rax, out.rip), (5, 0x1234));
    }
}
