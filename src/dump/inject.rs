//! The injector: read-only queries run inside a stopped process through
//! system calls injected at its vDSO's `syscall` instruction, with a
//! scratch page mapped for their answers. The calls themselves go through
//! the one remote-syscall layer ([`crate::ptrace::remote`]); this file only
//! names them in checkpoint's errors and keeps the scratch page. Each
//! resource file adds the queries of its resource (`impl Injector` in
//! threads.rs, signals.rs, timers.rs, mm.rs).

use super::error::CheckpointError;
use crate::kernel::abi::{self, FromBytes};
use crate::ptrace::remote::{Remote, RemoteError, Scratch};
use crate::ptrace::Tracee;
use nix::unistd::Pid;

/// Runs read-only queries inside the stopped process through injected
/// system calls, using a scratch page mapped for the purpose and unmapped
/// afterwards.
pub(super) struct Injector {
    /// The process queried.
    pub(super) pid: i32,
    syscall_insn: u64,
    scratch: Option<Scratch>,
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

    /// Runs the remote call `op` in thread `t`; an error it returns fails
    /// with the call named `what`.
    pub(super) fn call<T>(
        &self,
        t: &mut Tracee,
        what: &str,
        op: impl FnOnce(&mut Remote<'_>) -> Result<T, RemoteError>,
    ) -> Result<T, CheckpointError> {
        let tid = t.tid.as_raw();
        op(&mut Remote::new(t, self.syscall_insn)).map_err(|e| match e {
            RemoteError::Trace(e) => e.into(),
            RemoteError::Failed(errno) => CheckpointError::Injected {
                pid: self.pid,
                tid,
                call: what.to_string(),
                errno,
            },
        })
    }

    /// The scratch page, mapped in the process by `leader` on first use.
    pub(super) fn scratch(&mut self, leader: &mut Tracee) -> Result<Scratch, CheckpointError> {
        if let Some(s) = self.scratch {
            return Ok(s);
        }
        let pid = Pid::from_raw(self.pid);
        let s = self.call(leader, "mmap(scratch page)", |r| {
            Scratch::map(r, pid, 0, SCRATCH_LEN, false)
        })?;
        self.scratch = Some(s);
        Ok(s)
    }

    /// Unmaps the scratch page and puts the leader's registers back.
    pub(super) fn finish(&mut self, leader: &mut Tracee) -> Result<(), CheckpointError> {
        if let Some(s) = self.scratch.take() {
            self.call(leader, "munmap(scratch page)", |r| s.unmap(r))?;
        }
        Ok(())
    }
}

/// The `T` (a kernel struct) the last query wrote at the start of the
/// scratch page `s`.
pub(super) fn answer<T: FromBytes>(s: &Scratch) -> Result<T, CheckpointError> {
    let bytes = s.read(0, std::mem::size_of::<T>())?;
    Ok(abi::decode(&bytes).expect("read as many bytes as T has"))
}
