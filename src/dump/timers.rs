//! Timers: POSIX timers (timer_create) with their time left, and the
//! armed interval timers (setitimer).

use super::error::CheckpointError;
use super::inject::{answer, Injector};
use crate::image::{IntervalTimer, PosixTimer};
use crate::kernel::abi::{TimerValue, NSEC_PER_SEC, USEC_PER_SEC};
use crate::proc;
use crate::ptrace::Tracee;

impl Injector {
    /// Reads every POSIX timer (/proc/PID/timers, and timer_gettime for the
    /// time left) and the armed interval timers (getitimer).
    pub(super) fn query_timers(
        &mut self,
        leader: &mut Tracee,
    ) -> Result<(Vec<PosixTimer>, Vec<IntervalTimer>), CheckpointError> {
        let s = self.scratch(leader)?;
        let mut timers = Vec::new();
        for t in proc::read_timers(self.pid)? {
            self.call(leader, &format!("timer_gettime(timer {})", t.id), |r| {
                r.syscall(libc::SYS_timer_gettime, &[t.id as u64, s.addr])
            })?;
            let left: TimerValue = answer(&s)?;
            timers.push(PosixTimer {
                id: t.id,
                clock: t.clock,
                notify: t.notify,
                notify_tid: if t.notify & libc::SIGEV_THREAD_ID != 0 {
                    t.target
                } else {
                    0
                },
                signo: t.signo,
                sigval: t.sigval,
                value_ns: left.value.total(NSEC_PER_SEC),
                interval_ns: left.interval.total(NSEC_PER_SEC),
            });
        }
        let mut itimers = Vec::new();
        for which in [libc::ITIMER_REAL, libc::ITIMER_VIRTUAL, libc::ITIMER_PROF] {
            self.call(leader, &format!("getitimer({which})"), |r| {
                r.syscall(libc::SYS_getitimer, &[which as u64, s.addr])
            })?;
            let left: TimerValue = answer(&s)?;
            let (value_us, interval_us) = (
                left.value.total(USEC_PER_SEC),
                left.interval.total(USEC_PER_SEC),
            );
            // A periodic ITIMER_REAL that just fired reads as disarmed until
            // its SIGALRM is dequeued (the kernel re-arms it then), which
            // cannot happen while ferry holds signals blocked: it is still
            // armed, and comes back one interval out.
            if value_us != 0 || interval_us != 0 {
                itimers.push(IntervalTimer {
                    which,
                    value_us: if value_us == 0 { interval_us } else { value_us },
                    interval_us,
                });
            }
        }
        Ok((timers, itimers))
    }
}
