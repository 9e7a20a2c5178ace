//! Seccomp: filters (shared and per thread) and strict mode.

use super::process::{trace_options, Husk, FILTER_OFF, FILTER_ROOM, STRUCT_OFF};
use crate::image::SeccompFilter;
use crate::kernel;
use crate::kernel::abi::{IntoBytes, SockFilter, SockFprog};
use crate::proc;
use crate::restore::error::RestoreError;

impl<'a> Husk<'a> {
    /// Installs the seccomp filters, oldest first: the shared ones from the
    /// leader for every thread (SECCOMP_FILTER_FLAG_TSYNC), then each
    /// thread's own further filters in that thread. The
    /// threads' filters are suspended while ferry traces them, so the calls
    /// still injected afterwards are not subject to them; CAP_SYS_ADMIN is
    /// still effective here, as a process without no_new_privs needs.
    ///
    /// A husk that already has filters (a container's init, which its
    /// runtime confined with the same profile, and the husks cloned from
    /// it) gets only the image's filters beyond those: the restored
    /// process ends with exactly the chain it had, each filter once.
    pub(super) fn restore_seccomp(&mut self) -> Result<(), RestoreError> {
        let image = self.image;
        let present = self.present_seccomp()?;
        let own = image
            .threads
            .iter()
            .any(|t| !t.seccomp_filters.is_empty() || t.seccomp_strict);
        if image.seccomp.is_empty() && present.is_empty() && !own {
            return Ok(());
        }
        // In a container, the husk's filters are the runtime's, compiled
        // from the same profile as the checkpointed ones but maybe with
        // their rules in another order (dockerd writes the profile from a
        // map): the same flags and length stand for the same filter.
        let in_container = self.channel.is_some();
        let same = |had: &SeccompFilter, want: &SeccompFilter| {
            had == want
                || (in_container
                    && had.flags == want.flags
                    && had.program.len() == want.program.len())
        };
        let lengths = |f: &[SeccompFilter]| f.iter().map(|f| f.program.len()).collect::<Vec<_>>();
        if present.len() > image.seccomp.len()
            || !present.iter().zip(&image.seccomp).all(|(h, w)| same(h, w))
        {
            return Err(RestoreError::Unsupported {
                pid: image.pid,
                why: format!(
                    "its husk already has seccomp filters of {:?} instructions that are not the first of the ones it had, of {:?} (a runtime's profile other than the checkpointed one?): filters cannot be removed",
                    lengths(&present),
                    lengths(&image.seccomp)
                ),
            });
        }
        for t in &self.threads {
            nix::sys::ptrace::setoptions(t.tid, trace_options() | kernel::ptrace_suspend_seccomp())
                .map_err(|errno| crate::ptrace::PtraceError::Request {
                    op: "PTRACE_SETOPTIONS(PTRACE_O_SUSPEND_SECCOMP)",
                    tid: t.tid.as_raw(),
                    errno,
                })?;
        }
        // The shared filters from the leader for every thread, then each
        // thread's own in that thread alone.
        for (i, f) in image.seccomp.iter().enumerate().skip(present.len()) {
            self.install_filter(0, f, libc::SECCOMP_FILTER_FLAG_TSYNC, i)?;
        }
        for idx in 0..image.threads.len() {
            let shared = image.seccomp.len();
            for (i, f) in image.threads[idx].seccomp_filters.iter().enumerate() {
                self.install_filter(idx, f, 0, shared + i)?;
            }
        }
        Ok(())
    }

    /// Installs filter `f` (number `i` of its thread's chain, for messages)
    /// from thread `idx`, with `extra_flags` beside its own.
    fn install_filter(
        &mut self,
        idx: usize,
        f: &SeccompFilter,
        extra_flags: u64,
        i: usize,
    ) -> Result<(), RestoreError> {
        let pid = self.image.pid;
        let prog: Vec<SockFilter> = f
            .program
            .iter()
            .map(|insn| SockFilter {
                code: insn.code,
                jt: insn.jt,
                jf: insn.jf,
                k: insn.k,
            })
            .collect();
        if prog.as_bytes().len() as u64 > FILTER_ROOM {
            return Err(RestoreError::Unsupported {
                pid,
                why: format!(
                    "seccomp filter {i} has {} instructions, more than the kernel accepts",
                    f.program.len()
                ),
            });
        }
        let prog_addr = self.put(FILTER_OFF, prog.as_bytes())?;
        let fprog = SockFprog {
            len: f.program.len() as u16,
            pad: [0; 6],
            filter: prog_addr,
        };
        let fprog_addr = self.put(STRUCT_OFF, fprog.as_bytes())?;
        let flags = extra_flags | f.flags;
        let args = [u64::from(libc::SECCOMP_SET_MODE_FILTER), flags, fprog_addr];
        let tid = self.image.threads[idx].tid;
        let r = self.sys(
            idx,
            |r| r.syscall(libc::SYS_seccomp, &args),
            || {
                format!(
                    "seccomp(SECCOMP_SET_MODE_FILTER, {flags:#x}) of filter {i} in thread {tid}"
                )
            },
        )?;
        if r != 0 {
            return Err(RestoreError::Unsupported {
                pid,
                why: format!("seccomp filter {i} could not be shared with thread {r}"),
            });
        }
        Ok(())
    }

    /// Puts the threads that were in strict seccomp mode back in it: the
    /// last change made to them, as it forbids all but read, write, exit
    /// and sigreturn (ferry's tracer is exempt until it detaches).
    pub(super) fn restore_seccomp_strict(&mut self) -> Result<(), RestoreError> {
        for idx in 0..self.image.threads.len() {
            if !self.image.threads[idx].seccomp_strict {
                continue;
            }
            let tid = self.image.threads[idx].tid;
            let strict = u64::from(libc::SECCOMP_MODE_STRICT);
            self.sys(
                idx,
                |r| r.prctl(libc::PR_SET_SECCOMP, &[strict]),
                || format!("prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT) of thread {tid}"),
            )?;
        }
        Ok(())
    }

    /// The seccomp filters the husk's leader has now, oldest first.
    fn present_seccomp(&self) -> Result<Vec<SeccompFilter>, RestoreError> {
        let tid = self.pid;
        let count = proc::read_thread_status(tid.as_raw(), tid.as_raw())?.seccomp_filters;
        Ok(crate::dump::seccomp::read_filters(tid, count)?)
    }
}
