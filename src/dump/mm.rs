//! The address space: the mappings (VMAs), the fields of mm_struct that
//! /proc reports (code, data, brk, stack, arguments, environment, auxv),
//! the program break and membarrier registrations (asked from inside the
//! process) and the vDSO, whose
//! `syscall` instruction runs the injected queries.

use super::error::CheckpointError;
use super::inject::Injector;
use crate::image::{MmFields, Vma, VmaKind};
use crate::proc;
use crate::ptrace::remote::{Remote, RemoteError};
use crate::ptrace::{read_memory, Tracee};
use nix::errno::Errno;
use nix::unistd::Pid;

impl Injector {
    /// Reads the program break (brk(0)).
    pub(super) fn query_brk(&mut self, leader: &mut Tracee) -> Result<u64, CheckpointError> {
        Ok(self.call(leader, "brk(0)", |r| r.syscall(libc::SYS_brk, &[0]))? as u64)
    }

    /// Reads the membarrier() registrations of the address space
    /// (MEMBARRIER_CMD_GET_REGISTRATIONS, Linux 6.3); 0 on a kernel that
    /// lacks the command.
    pub(super) fn query_membarrier(&mut self, leader: &mut Tracee) -> Result<u32, CheckpointError> {
        let query = |r: &mut Remote<'_>| match r
            .syscall(libc::SYS_membarrier, &[MEMBARRIER_CMD_GET_REGISTRATIONS])
        {
            Err(RemoteError::Failed(Errno::EINVAL)) => Ok(0),
            other => other,
        };
        Ok(self.call(
            leader,
            "membarrier(MEMBARRIER_CMD_GET_REGISTRATIONS)",
            query,
        )? as u32)
    }
}

/// membarrier(2)'s command that returns the registrations made.
const MEMBARRIER_CMD_GET_REGISTRATIONS: u64 = 1 << 9;

/// The mm_struct fields of process `pid`, with its program break `brk`
/// and its membarrier registrations `membarrier`.
pub(super) fn mm_fields(pid: i32, brk: u64, membarrier: u32) -> Result<MmFields, CheckpointError> {
    let stat = proc::read_stat_mm(pid)?;
    Ok(MmFields {
        start_code: stat.start_code,
        end_code: stat.end_code,
        start_data: stat.start_data,
        end_data: stat.end_data,
        start_brk: stat.start_brk,
        brk,
        start_stack: stat.start_stack,
        arg_start: stat.arg_start,
        arg_end: stat.arg_end,
        env_start: stat.env_start,
        env_end: stat.env_end,
        auxv: proc::read_auxv(pid)?,
        membarrier,
    })
}

/// Reads the [vdso] of `pid` and finds a `syscall` instruction in it, the
/// one ferry runs its injected calls with: returns its address and the
/// vDSO's contents.
pub(super) fn vdso_syscall(pid: i32, vmas: &[Vma]) -> Result<(u64, Vec<u8>), CheckpointError> {
    let vdso = vmas
        .iter()
        .find(|v| v.kind == VmaKind::Vdso)
        .ok_or(CheckpointError::NoVdso { pid })?;
    let mut bytes = vec![0u8; (vdso.end - vdso.start) as usize];
    read_memory(Pid::from_raw(pid), vdso.start, &mut bytes)?;
    let insn = crate::ptrace::find_syscall_insn(vdso.start, &bytes)
        .ok_or(CheckpointError::NoVdso { pid })?;
    Ok((insn, bytes))
}

/// A memory object that several processes of the tree may map and whose
/// contents are dumped once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SharedObject {
    /// A shared anonymous object, by inode.
    Anonymous(u64),
    /// A SysV segment, by shmid.
    Sysv(i32),
}

/// The shared object `vma` maps, if any, with the part of it the mapping
/// covers (start and end offsets; a SysV segment counts as mapped whole).
pub(super) fn shared_object(vma: &Vma) -> Option<(SharedObject, u64, u64)> {
    match vma.kind {
        VmaKind::SharedAnonymous { inode, offset } => Some((
            SharedObject::Anonymous(inode),
            offset,
            offset + (vma.end - vma.start),
        )),
        VmaKind::SysvShm { shmid } => Some((SharedObject::Sysv(shmid), 0, u64::MAX)),
        _ => None,
    }
}
