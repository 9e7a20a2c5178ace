//! Timers: POSIX timers (timer_create) with their time left, and the
//! armed interval timers (setitimer).

use super::error::CheckpointError;
use super::inject::Injector;
use crate::image::{IntervalTimer, PosixTimer};
use crate::proc;
use crate::ptrace::Tracee;

impl Injector {
    /// Reads every POSIX timer (/proc/PID/timers, and timer_gettime for the
    /// time left) and the armed interval timers (getitimer).
    pub(super) fn query_timers(
        &mut self,
        leader: &mut Tracee,
    ) -> Result<(Vec<PosixTimer>, Vec<IntervalTimer>), CheckpointError> {
        let scratch = self.scratch(leader)?;
        let words = |raw: Vec<u8>| -> [u64; 4] {
            std::array::from_fn(|i| {
                u64::from_ne_bytes(raw[i * 8..i * 8 + 8].try_into().expect("8 bytes"))
            })
        };
        let mut timers = Vec::new();
        for t in proc::read_timers(self.pid)? {
            self.call(
                leader,
                libc::SYS_timer_gettime,
                [t.id as u64, scratch, 0, 0, 0, 0],
                &format!("timer_gettime(timer {})", t.id),
            )?;
            // struct itimerspec: it_interval, then it_value.
            let [i_sec, i_nsec, v_sec, v_nsec] = words(self.read(scratch, 32)?);
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
                value_ns: v_sec * 1_000_000_000 + v_nsec,
                interval_ns: i_sec * 1_000_000_000 + i_nsec,
            });
        }
        let mut itimers = Vec::new();
        for which in [libc::ITIMER_REAL, libc::ITIMER_VIRTUAL, libc::ITIMER_PROF] {
            self.call(
                leader,
                libc::SYS_getitimer,
                [which as u64, scratch, 0, 0, 0, 0],
                &format!("getitimer({which})"),
            )?;
            // struct itimerval: it_interval, then it_value.
            let [i_sec, i_usec, v_sec, v_usec] = words(self.read(scratch, 32)?);
            let (value_us, interval_us) = (v_sec * 1_000_000 + v_usec, i_sec * 1_000_000 + i_usec);
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
