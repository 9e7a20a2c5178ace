//! Threads: per-thread kernel state (alternate stack, robust list, rseq,
//! name), the threads themselves (clone3 with their TIDs), and the final
//! registers.

use super::process::{Husk, HELPER_LEN, STRUCT_OFF};
use crate::image::ThreadImage;
use crate::kernel;
use crate::kernel::abi::{IntoBytes, StackT};
use crate::ptrace::{resume_regs, Tracee};
use crate::restore::error::RestoreError;
use nix::errno::Errno;

/// The kernel's `sizeof(struct robust_list_head)`.
pub(super) const ROBUST_LIST_HEAD_LEN: u64 = 24;

impl<'a> Husk<'a> {
    /// Sets up the leader's per-thread state and creates every other thread
    /// with its TID (clone3 with set_tid) and set up its state.
    pub(super) fn restore_threads(&mut self) -> Result<(), RestoreError> {
        let image = self.image;
        let leader = &image.threads[0];
        self.sys(
            0,
            |r| r.syscall(libc::SYS_set_tid_address, &[leader.clear_child_tid]),
            || "set_tid_address".into(),
        )?;
        self.restore_thread_state(0, leader)?;
        for t in &image.threads[1..] {
            let mut flags = (libc::CLONE_VM
                | libc::CLONE_FS
                | libc::CLONE_FILES
                | libc::CLONE_SIGHAND
                | libc::CLONE_THREAD
                | libc::CLONE_SYSVSEM
                | libc::CLONE_SETTLS) as u64;
            if t.clear_child_tid != 0 {
                flags |= libc::CLONE_CHILD_CLEARTID as u64;
            }
            let tid_addr = self.put(STRUCT_OFF + 512, &t.tid.to_ne_bytes())?;
            let args =
                kernel::encode_clone_args(flags, t.clear_child_tid, t.regs.fs_base, tid_addr, 0);
            let args_addr = self.put(STRUCT_OFF, &args)?;
            let size = kernel::CLONE_ARGS_SIZE as u64;
            let r = self.sys(
                0,
                |r| r.clone3(args_addr, size),
                || format!("clone3 of thread {}", t.tid),
            );
            if let Err(RestoreError::Injected {
                errno: Errno::EEXIST,
                ..
            }) = r
            {
                return Err(RestoreError::PidTaken {
                    pid: t.tid,
                    holder: "another process".into(),
                });
            }
            let new_tid = r?.ok_or_else(|| RestoreError::Unsupported {
                pid: image.pid,
                why: format!("no clone event was reported for thread {}", t.tid),
            })?;
            let tracee = Tracee::adopt_new_thread(new_tid)?;
            let mut regs = tracee.regs()?;
            regs.rsp = self.helper + HELPER_LEN - 64;
            tracee.set_regs(&regs)?;
            self.threads.push(tracee);
            let idx = self.threads.len() - 1;
            self.restore_thread_state(idx, t)?;
        }
        Ok(())
    }

    /// Sets the per-thread state of thread `idx` as `t` had it: alternate
    /// signal stack, robust list, rseq registration and name.
    pub(super) fn restore_thread_state(
        &mut self,
        idx: usize,
        t: &ThreadImage,
    ) -> Result<(), RestoreError> {
        // Always set it: the husk's leader inherited migrate-agent's own
        // alternate stack (Rust installs one), which must not survive when
        // the image's thread had none (SS_DISABLE).
        let disabled = t.altstack.flags & libc::SS_DISABLE != 0;
        let (sp, size) = if disabled {
            (0, 0)
        } else {
            (t.altstack.sp, t.altstack.size)
        };
        let ss = StackT {
            sp,
            flags: t.altstack.flags,
            pad: 0,
            size,
        };
        let addr = self.put(STRUCT_OFF, ss.as_bytes())?;
        self.sys(
            idx,
            |r| r.sigaltstack(addr, 0),
            || format!("sigaltstack of thread {} at {sp:#x}", t.tid),
        )?;
        let robust_len = if t.robust_list_len == 0 {
            ROBUST_LIST_HEAD_LEN
        } else {
            t.robust_list_len
        };
        self.sys(
            idx,
            |r| r.syscall(libc::SYS_set_robust_list, &[t.robust_list_head, robust_len]),
            || format!("set_robust_list of thread {}", t.tid),
        )?;
        if let Some(rseq) = t.rseq {
            let args = [rseq.ptr, u64::from(rseq.len), 0, u64::from(rseq.sig)];
            self.sys(
                idx,
                |r| r.syscall(libc::SYS_rseq, &args),
                || format!("rseq registration of thread {} at {:#x}", t.tid, rseq.ptr),
            )?;
        }
        let name = self.put_str(&t.comm)?;
        self.sys(
            idx,
            |r| r.prctl(libc::PR_SET_NAME, &[name]),
            || format!("prctl(PR_SET_NAME, {:?}) of thread {}", t.comm, t.tid),
        )?;
        Ok(())
    }

    /// Removes the helper (the last injected call) and loads every thread's
    /// saved registers, extended state and signal mask.
    pub(super) fn load_final_state(&mut self) -> Result<(), RestoreError> {
        let helper = self.scratch();
        self.sys(
            0,
            |r| helper.unmap(r),
            || "munmap of the helper area".into(),
        )?;
        for (tracee, t) in self.threads.iter().zip(&self.image.threads) {
            tracee.set_xstate(&t.xstate)?;
            tracee.set_regs(&resume_regs(&t.regs, false))?;
            tracee.set_sigmask(t.sigmask)?;
        }
        Ok(())
    }
}
