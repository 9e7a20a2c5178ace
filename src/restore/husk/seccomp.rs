//! Seccomp filters.

use super::process::{trace_options, Husk, FILTER_OFF, FILTER_ROOM, STRUCT_OFF};
use crate::image::SeccompFilter;
use crate::kernel;
use crate::kernel::abi::{IntoBytes, SockFilter, SockFprog};
use crate::proc;
use crate::restore::error::RestoreError;

impl<'a> Husk<'a> {
    /// Installs the seccomp filters, oldest first, from the leader for
    /// every thread (SECCOMP_FILTER_FLAG_TSYNC: they share them). The
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
        if image.seccomp.is_empty() && present.is_empty() {
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
        let missing = &image.seccomp[present.len()..];
        if missing.is_empty() {
            return Ok(());
        }
        for t in &self.threads {
            nix::sys::ptrace::setoptions(t.tid, trace_options() | kernel::ptrace_suspend_seccomp())
                .map_err(|errno| crate::ptrace::PtraceError::Request {
                    op: "PTRACE_SETOPTIONS(PTRACE_O_SUSPEND_SECCOMP)",
                    tid: t.tid.as_raw(),
                    errno,
                })?;
        }
        for (i, f) in missing.iter().enumerate() {
            let i = i + present.len();
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
                    pid: image.pid,
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
            let flags = libc::SECCOMP_FILTER_FLAG_TSYNC | f.flags;
            let args = [u64::from(libc::SECCOMP_SET_MODE_FILTER), flags, fprog_addr];
            let r = self.sys(
                0,
                |r| r.syscall(libc::SYS_seccomp, &args),
                || format!("seccomp(SECCOMP_SET_MODE_FILTER, {flags:#x}) of filter {i}"),
            )?;
            if r != 0 {
                return Err(RestoreError::Unsupported {
                    pid: image.pid,
                    why: format!("seccomp filter {i} could not be shared with thread {r}"),
                });
            }
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
