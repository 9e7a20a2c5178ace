//! Probes of the process mechanisms every checkpoint and restore uses:
//! ptrace, reading another process's memory and fds, choosing PIDs, setting
//! the mm's bounds, reading registers.

use super::child::{stopped_child, ProbeChild};
use super::finding::{errno_outcome, failed, io_failed, Finding};
use crate::kernel::child::{clone_reporting_own_pid, ChildTask};
use crate::kernel::{
    cpu, pidfd_getfd, pidfd_open, prctl_mm_map_size, ptrace_get_rseq, ptrace_get_xstate,
};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::ptrace;
use nix::sys::uio::{process_vm_readv, RemoteIoVec};
use nix::unistd::pipe2;
use std::fs::File;
use std::io::IoSliceMut;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;

/// Size of struct prctl_mm_map on x86_64, the size ferry's restore passes to
/// PR_SET_MM_MAP (the kernel refuses any other size).
const PRCTL_MM_MAP_SIZE: u32 = 104;
/// A value the process_vm_readv probe reads out of a forked child, where it
/// sits at the same address as in this process.
static PROCESS_VM_READV_MARKER: u64 = 0x6665_7272_7970_726f;

/// Seizes, stops and detaches a child.
pub(super) fn probe_ptrace_seize() -> Finding {
    let child = stopped_child()?;
    let pid = child.pid;
    ptrace::detach(pid, None)
        .map_err(|e| failed(format!("PTRACE_DETACH of child {pid} failed with {e}")))?;
    Ok(format!(
        "seized child {pid}, stopped it with PTRACE_INTERRUPT and detached"
    ))
}

/// Reads a known value out of a child's memory.
pub(super) fn probe_process_vm_readv() -> Finding {
    let child = ProbeChild::fork(ChildTask::IdleUntilKilled)?;
    let mut buf = [0u8; 8];
    let remote = RemoteIoVec {
        base: std::ptr::addr_of!(PROCESS_VM_READV_MARKER) as usize,
        len: buf.len(),
    };
    let read =
        process_vm_readv(child.pid, &mut [IoSliceMut::new(&mut buf)], &[remote]).map_err(|e| {
            errno_outcome(
                &format!("process_vm_readv of child {}", child.pid),
                e,
                &[Errno::ENOSYS],
            )
        })?;
    let value = u64::from_ne_bytes(buf);
    if read != buf.len() || value != PROCESS_VM_READV_MARKER {
        return Err(failed(format!(
            "process_vm_readv of child {} read {read} bytes, value {value:#x}, \
             instead of 8 bytes, value {PROCESS_VM_READV_MARKER:#x}",
            child.pid
        )));
    }
    Ok(format!(
        "read {value:#x} from child {} as expected",
        child.pid
    ))
}

/// Takes a pipe fd out of a child with pidfd_getfd and checks it is the same
/// pipe.
pub(super) fn probe_pidfd_getfd() -> Finding {
    let (pipe_read, _pipe_write) =
        pipe2(OFlag::O_CLOEXEC).map_err(|e| failed(format!("pipe2 failed with {e}")))?;
    let child = ProbeChild::fork(ChildTask::IdleUntilKilled)?;
    let pid = child.pid;
    let pidfd = pidfd_open(pid)
        .map_err(|e| errno_outcome(&format!("pidfd_open of child {pid}"), e, &[Errno::ENOSYS]))?;
    let fd = pipe_read.as_raw_fd();
    let taken = pidfd_getfd(&pidfd, fd).map_err(|e| {
        errno_outcome(
            &format!("pidfd_getfd of fd {fd} of child {pid}"),
            e,
            &[Errno::ENOSYS],
        )
    })?;
    let taken_fd = taken.as_raw_fd();
    let inode_of = |file: File| file.metadata().map(|m| m.ino());
    let ours = pipe_read
        .try_clone()
        .and_then(|f| inode_of(File::from(f)))
        .map_err(|e| io_failed(format!("fstat of our pipe fd {fd}"), e))?;
    let theirs = inode_of(File::from(taken))
        .map_err(|e| io_failed(format!("fstat of the taken fd {taken_fd}"), e))?;
    if ours != theirs {
        return Err(failed(format!(
            "pidfd_getfd of fd {fd} of child {pid} gave inode {theirs} instead of pipe inode {ours}"
        )));
    }
    Ok(format!("took fd {fd} (a pipe) out of child {pid}"))
}

/// Creates a child as PID 1 of a new PID namespace with clone3(set_tid).
pub(super) fn probe_clone3_set_tid() -> Finding {
    let pid = clone_reporting_own_pid(libc::CLONE_NEWPID as u64, 1).map_err(|e| {
        errno_outcome(
            "clone3 with CLONE_NEWPID and set_tid [1]",
            e,
            &[Errno::ENOSYS, Errno::E2BIG, Errno::EINVAL],
        )
    })?;
    let mut child = ProbeChild::adopt(pid);
    let seen = child.exit_code()?;
    if seen != 1 {
        return Err(failed(format!(
            "clone3 with set_tid [1] made child {pid}, which saw itself as PID {seen} instead of 1"
        )));
    }
    Ok(format!(
        "clone3 created child {pid} as PID 1 of a new PID namespace"
    ))
}

/// Asks the kernel for the size of struct prctl_mm_map (PR_SET_MM_MAP_SIZE),
/// which only kernels with CONFIG_CHECKPOINT_RESTORE answer.
pub(super) fn probe_prctl_mm_map() -> Finding {
    let size = prctl_mm_map_size().map_err(|e| {
        errno_outcome(
            "prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE) (kernels without \
             CONFIG_CHECKPOINT_RESTORE refuse it)",
            e,
            &[Errno::EINVAL],
        )
    })?;
    if size != PRCTL_MM_MAP_SIZE {
        return Err(failed(format!(
            "the kernel's struct prctl_mm_map is {size} bytes, ferry passes {PRCTL_MM_MAP_SIZE}"
        )));
    }
    Ok(format!("struct prctl_mm_map is {size} bytes"))
}

/// Reads the NT_X86_XSTATE regset of a stopped child.
pub(super) fn probe_xstate_regset() -> Finding {
    let child = stopped_child()?;
    let xstate = ptrace_get_xstate(child.pid).map_err(|e| {
        errno_outcome(
            &format!("PTRACE_GETREGSET NT_X86_XSTATE of child {}", child.pid),
            e,
            &[Errno::EINVAL, Errno::ENODEV, Errno::EIO],
        )
    })?;
    Ok(format!(
        "read {} bytes of XSAVE state (CPUID XSAVE area: {} bytes)",
        xstate.len(),
        cpu::xsave_size()
    ))
}

/// Reads the rseq registration of a stopped child.
pub(super) fn probe_rseq_configuration() -> Finding {
    let child = stopped_child()?;
    let conf = ptrace_get_rseq(child.pid).map_err(|e| {
        errno_outcome(
            &format!("PTRACE_GET_RSEQ_CONFIGURATION of child {}", child.pid),
            e,
            &[Errno::EIO, Errno::EINVAL],
        )
    })?;
    Ok(match conf {
        Some((addr, len, signature)) => {
            format!("child's rseq area: {len} bytes at {addr:#x}, signature {signature:#x}")
        }
        None => "readable; the child has no rseq registered".to_string(),
    })
}
