//! Signals: dispositions, pending signals (with their siginfo), and the
//! signals the restore itself queued that are taken away again.

use super::process::{Husk, STRUCT_OFF};
use crate::kernel::abi::{IntoBytes, KernelSigaction, Siginfo};
use crate::restore::error::RestoreError;
use nix::errno::Errno;

impl<'a> Husk<'a> {
    /// Takes away the SIGCHLD that the zombies just created queued for this
    /// process (it saw its own at the time); SIGCHLDs it had pending at
    /// checkpoint are queued again later with the other pending signals.
    pub(super) fn drain_sigchld(&mut self) -> Result<(), RestoreError> {
        self.drain_signals(1u64 << (libc::SIGCHLD - 1))
    }

    /// Takes away every pending signal of `set` (until none is left).
    pub(super) fn drain_signals(&mut self, set: u64) -> Result<(), RestoreError> {
        let set_addr = self.put(STRUCT_OFF, &set.to_ne_bytes())?;
        let timeout = self.put(STRUCT_OFF + 64, &[0u8; 16])?;
        loop {
            let taken = self.sys(
                0,
                |r| r.syscall(libc::SYS_rt_sigtimedwait, &[set_addr, 0, timeout, 8]),
                || format!("rt_sigtimedwait({set:#x})"),
            );
            match taken {
                Err(RestoreError::Injected {
                    errno: Errno::EAGAIN,
                    ..
                }) => return Ok(()),
                taken => taken?,
            };
        }
    }

    /// Installs every signal disposition of the image.
    pub(super) fn restore_sigactions(&mut self) -> Result<(), RestoreError> {
        let image = self.image;
        for a in &image.sigactions {
            let act = KernelSigaction {
                handler: a.handler,
                flags: a.flags,
                restorer: a.restorer,
                mask: a.mask,
            };
            let addr = self.put(STRUCT_OFF, act.as_bytes())?;
            self.sys(
                0,
                |r| r.rt_sigaction(a.signo, addr, 0),
                || format!("rt_sigaction of signal {}", a.signo),
            )?;
        }
        Ok(())
    }

    /// Queues the signals that were pending at checkpoint, with their
    /// siginfo, from inside the process (where the kernel allows any
    /// si_code). All signals are still blocked, so none is delivered yet.
    pub(super) fn queue_pending_signals(&mut self) -> Result<(), RestoreError> {
        let image = self.image;
        let pid = image.pid as u64;
        for s in &image.shared_pending {
            let addr = self.put(STRUCT_OFF, Siginfo::from_saved(&s.siginfo).as_bytes())?;
            let args = [pid, s.signo as u64, addr];
            self.sys(
                0,
                |r| r.syscall(libc::SYS_rt_sigqueueinfo, &args),
                || format!("queueing pending signal {}", s.signo),
            )?;
        }
        for t in &image.threads {
            for s in &t.pending {
                let addr = self.put(STRUCT_OFF, Siginfo::from_saved(&s.siginfo).as_bytes())?;
                let args = [pid, t.tid as u64, s.signo as u64, addr];
                self.sys(
                    0,
                    |r| r.syscall(libc::SYS_rt_tgsigqueueinfo, &args),
                    || format!("queueing pending signal {} of thread {}", s.signo, t.tid),
                )?;
            }
        }
        Ok(())
    }
}
