//! Seccomp filters.

use super::process::{trace_options, Husk, FILTER_OFF, FILTER_ROOM, STRUCT_OFF};
use crate::kernel;
use crate::kernel::abi::{IntoBytes, SockFilter, SockFprog};
use crate::restore::error::RestoreError;

impl<'a> Husk<'a> {
    /// Installs the seccomp filters, oldest first, from the leader for
    /// every thread (SECCOMP_FILTER_FLAG_TSYNC: they share them). The
    /// threads' filters are suspended while ferry traces them, so the calls
    /// still injected afterwards are not subject to them; CAP_SYS_ADMIN is
    /// still effective here, as a process without no_new_privs needs.
    pub(super) fn restore_seccomp(&mut self) -> Result<(), RestoreError> {
        let image = self.image;
        if image.seccomp.is_empty() {
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
        for (i, f) in image.seccomp.iter().enumerate() {
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
}
