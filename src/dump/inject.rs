//! The injector: read-only queries run inside a stopped process through
//! system calls injected at its vDSO's `syscall` instruction, with a
//! scratch page mapped for their answers. Each resource file adds the
//! queries of its resource (`impl Injector` in threads.rs, signals.rs,
//! timers.rs, mm.rs).

use super::error::CheckpointError;
use crate::ptrace::{read_memory, Tracee};
use nix::unistd::Pid;

/// Runs read-only queries inside the stopped process through injected
/// system calls, using a scratch page mapped for the purpose and unmapped
/// afterwards.
pub(super) struct Injector {
    /// The process queried.
    pub(super) pid: i32,
    syscall_insn: u64,
    scratch: Option<u64>,
}

/// The size of the scratch page.
const SCRATCH_LEN: u64 = 4096;

impl Injector {
    /// Queries process `pid` with the `syscall` instruction at `syscall_insn`.
    pub(super) fn new(pid: i32, syscall_insn: u64) -> Self {
        Injector {
            pid,
            syscall_insn,
            scratch: None,
        }
    }

    /// Runs system call `nr` with `args` in thread `t`; a negative errno
    /// fails with the call named `what`.
    pub(super) fn call(
        &self,
        t: &mut Tracee,
        nr: i64,
        args: [u64; 6],
        what: &str,
    ) -> Result<i64, CheckpointError> {
        let r = t.inject(self.syscall_insn, nr, args)?;
        if (-4095..0).contains(&r) {
            return Err(CheckpointError::Injected {
                pid: self.pid,
                tid: t.tid.as_raw(),
                call: what.to_string(),
                errno: nix::errno::Errno::from_raw(-r as i32),
            });
        }
        Ok(r)
    }

    /// The scratch page, mapped in the process by `leader` on first use.
    pub(super) fn scratch(&mut self, leader: &mut Tracee) -> Result<u64, CheckpointError> {
        if let Some(s) = self.scratch {
            return Ok(s);
        }
        let addr = self.call(
            leader,
            libc::SYS_mmap,
            [
                0,
                SCRATCH_LEN,
                (libc::PROT_READ | libc::PROT_WRITE) as u64,
                (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64,
                u64::MAX,
                0,
            ],
            "mmap(scratch page)",
        )? as u64;
        self.scratch = Some(addr);
        Ok(addr)
    }

    /// Reads `len` bytes of the process at `addr`.
    pub(super) fn read(&self, addr: u64, len: usize) -> Result<Vec<u8>, CheckpointError> {
        let mut buf = vec![0u8; len];
        read_memory(Pid::from_raw(self.pid), addr, &mut buf)?;
        Ok(buf)
    }

    /// Unmaps the scratch page and puts the leader's registers back.
    pub(super) fn finish(&mut self, leader: &mut Tracee) -> Result<(), CheckpointError> {
        if let Some(s) = self.scratch.take() {
            self.call(
                leader,
                libc::SYS_munmap,
                [s, SCRATCH_LEN, 0, 0, 0, 0],
                "munmap(scratch page)",
            )?;
        }
        Ok(())
    }
}
