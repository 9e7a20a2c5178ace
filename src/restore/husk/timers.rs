//! Timers: POSIX timers (with their IDs) and interval timers.

use super::process::{Husk, STRUCT_OFF};
use crate::kernel::abi::{IntoBytes, Sigevent, TimerValue, NSEC_PER_SEC, USEC_PER_SEC};
use crate::ptrace::read_memory;
use crate::restore::error::RestoreError;

impl<'a> Husk<'a> {
    /// Recreates the POSIX timers with their IDs and arms them and the
    /// interval timers with the time they had left. Signals are still
    /// blocked: an expiry from now on stays pending until the process runs.
    pub(super) fn restore_timers(&mut self) -> Result<(), RestoreError> {
        let image = self.image;
        const PR_TIMER_CREATE_RESTORE_IDS: i32 = 77;
        // Linux 6.17+: timer_create takes the ID from the timer_t it is
        // given. Without it, IDs are handed out in order from 0.
        let restore_ids = !image.timers.is_empty()
            && self
                .sys(
                    0,
                    |r| r.prctl(PR_TIMER_CREATE_RESTORE_IDS, &[1]),
                    || "prctl(PR_TIMER_CREATE_RESTORE_IDS, ON)".into(),
                )
                .is_ok();
        for t in &image.timers {
            let ev = Sigevent {
                value: t.sigval,
                signo: t.signo,
                notify: t.notify,
                notify_tid: t.notify_tid,
                rest: [0; 44],
            };
            let ev_addr = self.put(STRUCT_OFF, ev.as_bytes())?;
            let id_addr = self.put(STRUCT_OFF + 64, &t.id.to_ne_bytes())?;
            let args = [t.clock as u64, ev_addr, id_addr];
            self.sys(
                0,
                |r| r.syscall(libc::SYS_timer_create, &args),
                || format!("timer_create of timer {} (clock {})", t.id, t.clock),
            )?;
            let mut got = [0u8; 4];
            read_memory(self.pid, id_addr, &mut got)?;
            let got = i32::from_ne_bytes(got);
            if got != t.id {
                return Err(RestoreError::Unsupported {
                    pid: image.pid,
                    why: format!("timer {} was recreated as timer {got}: this kernel cannot choose timer IDs (PR_TIMER_CREATE_RESTORE_IDS needs Linux 6.17)", t.id),
                });
            }
            if t.value_ns != 0 {
                let spec = TimerValue::new(t.interval_ns, t.value_ns, NSEC_PER_SEC);
                let spec_addr = self.put(STRUCT_OFF + 128, spec.as_bytes())?;
                let args = [t.id as u64, 0, spec_addr];
                self.sys(
                    0,
                    |r| r.syscall(libc::SYS_timer_settime, &args),
                    || format!("timer_settime of timer {}", t.id),
                )?;
            }
        }
        if restore_ids {
            self.sys(
                0,
                |r| r.prctl(PR_TIMER_CREATE_RESTORE_IDS, &[0]),
                || "prctl(PR_TIMER_CREATE_RESTORE_IDS, OFF)".into(),
            )?;
        }
        for it in &image.itimers {
            let val = TimerValue::new(it.interval_us, it.value_us, USEC_PER_SEC);
            let addr = self.put(STRUCT_OFF, val.as_bytes())?;
            let which = it.which as u64;
            self.sys(
                0,
                |r| r.syscall(libc::SYS_setitimer, &[which, addr]),
                || format!("setitimer({}) to {} us", it.which, it.value_us),
            )?;
        }
        Ok(())
    }
}
