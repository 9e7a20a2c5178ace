//! Remote system calls: running a system call inside a stopped tracee, as
//! CRIU's compel does. [`Remote`] runs call NR with its arguments at a
//! known `syscall` instruction and decodes the kernel's -4095..0 errno
//! range in one place ([`decode`]); its typed wrappers name the calls that
//! checkpoint and restore make; a [`Scratch`] area mapped in the tracee
//! carries the bytes (paths, structs) the calls point to and read back.
//!
//! Errors come back as [`RemoteError`]: the caller names the call in its
//! own error type (restore's and checkpoint's messages differ), which
//! keeps this layer free of either side's wording.

use super::{read_memory, write_memory, PtraceError, Tracee};
use crate::kernel;
use nix::errno::Errno;
use nix::unistd::Pid;
use std::os::fd::OwnedFd;

/// Why a remote system call did not return a value.
#[derive(Debug)]
pub enum RemoteError {
    /// Tracing the thread failed (a ptrace request failed, it died).
    Trace(PtraceError),
    /// The call ran and returned this error.
    Failed(Errno),
}

impl From<PtraceError> for RemoteError {
    fn from(e: PtraceError) -> Self {
        RemoteError::Trace(e)
    }
}

/// Splits a raw system call return value into its result or its error:
/// the kernel returns -4095..-1 for -errno, anything else is a value (an
/// address may look negative).
pub fn decode(raw: i64) -> Result<i64, Errno> {
    if (-4095..0).contains(&raw) {
        Err(Errno::from_raw(-raw as i32))
    } else {
        Ok(raw)
    }
}

/// A stopped thread that system calls are run in, each through the
/// `syscall` instruction at a known address of its process.
pub struct Remote<'t> {
    tracee: &'t mut Tracee,
    syscall_insn: u64,
}

impl<'t> Remote<'t> {
    /// Runs calls in `tracee` through the `syscall` instruction at
    /// `syscall_insn` (in its vDSO, or a helper area put there).
    pub fn new(tracee: &'t mut Tracee, syscall_insn: u64) -> Self {
        Remote {
            tracee,
            syscall_insn,
        }
    }

    /// Runs system call `nr` with `args` (the missing ones are 0) and
    /// returns its value, or the error it returned.
    pub fn syscall(&mut self, nr: i64, args: &[u64]) -> Result<i64, RemoteError> {
        let mut all = [0u64; 6];
        all[..args.len()].copy_from_slice(args);
        let raw = self.tracee.inject(self.syscall_insn, nr, all)?;
        decode(raw).map_err(RemoteError::Failed)
    }

    /// openat(AT_FDCWD, path, flags): `path` is the address of a
    /// NUL-terminated path in the tracee. Returns the new fd.
    pub fn open(&mut self, path: u64, flags: i32) -> Result<i32, RemoteError> {
        let at = libc::AT_FDCWD as u64;
        self.syscall(libc::SYS_openat, &[at, path, flags as u64])
            .map(|fd| fd as i32)
    }

    /// close(fd).
    pub fn close(&mut self, fd: i32) -> Result<(), RemoteError> {
        self.syscall(libc::SYS_close, &[fd as u64]).map(drop)
    }

    /// close_range(first, last, 0).
    pub fn close_range(&mut self, first: u32, last: u32) -> Result<(), RemoteError> {
        self.syscall(libc::SYS_close_range, &[first.into(), last.into()])
            .map(drop)
    }

    /// fcntl(fd, F_DUPFD_CLOEXEC, min): a copy of `fd` at the lowest free
    /// number from `min` on.
    pub fn dup_above(&mut self, fd: i32, min: i32) -> Result<i32, RemoteError> {
        let cmd = libc::F_DUPFD_CLOEXEC as u64;
        self.syscall(libc::SYS_fcntl, &[fd as u64, cmd, min as u64])
            .map(|fd| fd as i32)
    }

    /// fcntl(fd, F_SETFL, flags): the description's status flags.
    pub fn set_status_flags(&mut self, fd: i32, flags: i32) -> Result<(), RemoteError> {
        let cmd = libc::F_SETFL as u64;
        self.syscall(libc::SYS_fcntl, &[fd as u64, cmd, flags as u64])
            .map(drop)
    }

    /// fcntl(fd, F_GETFL): the description's access mode and status flags.
    pub fn status_flags(&mut self, fd: i32) -> Result<i32, RemoteError> {
        let cmd = libc::F_GETFL as u64;
        self.syscall(libc::SYS_fcntl, &[fd as u64, cmd])
            .map(|flags| flags as i32)
    }

    /// fcntl(fd, F_SETOWN_EX, owner) then fcntl(fd, F_SETSIG, signal): who
    /// gets the description's SIGIO and SIGURG signals, and which signal;
    /// `owner` is the address of a kernel
    /// [`struct f_owner_ex`](crate::kernel::abi::FOwnerEx) in the tracee.
    pub fn set_file_owner(&mut self, fd: i32, owner: u64, signal: i32) -> Result<(), RemoteError> {
        let cmd = crate::kernel::abi::F_SETOWN_EX as u64;
        self.syscall(libc::SYS_fcntl, &[fd as u64, cmd, owner])?;
        let cmd = crate::kernel::abi::F_SETSIG as u64;
        self.syscall(libc::SYS_fcntl, &[fd as u64, cmd, signal as u64])
            .map(drop)
    }

    /// fcntl(fd, cmd, lock): takes or queries a record lock (F_SETLK,
    /// F_OFD_SETLK ...); `lock` is the address of a kernel
    /// [`struct flock`](crate::kernel::abi::Flock) in the tracee.
    pub fn fcntl_lock(&mut self, fd: i32, cmd: i32, lock: u64) -> Result<(), RemoteError> {
        self.syscall(libc::SYS_fcntl, &[fd as u64, cmd as u64, lock])
            .map(drop)
    }

    /// flock(fd, operation): LOCK_SH or LOCK_EX, with LOCK_NB.
    pub fn flock(&mut self, fd: i32, operation: i32) -> Result<(), RemoteError> {
        self.syscall(libc::SYS_flock, &[fd as u64, operation as u64])
            .map(drop)
    }

    /// dup3(old, new, flags).
    pub fn dup3(&mut self, old: i32, new: i32, flags: i32) -> Result<(), RemoteError> {
        self.syscall(libc::SYS_dup3, &[old as u64, new as u64, flags as u64])
            .map(drop)
    }

    /// lseek(fd, pos, SEEK_SET).
    pub fn seek_to(&mut self, fd: i32, pos: i64) -> Result<(), RemoteError> {
        let whence = libc::SEEK_SET as u64;
        self.syscall(libc::SYS_lseek, &[fd as u64, pos as u64, whence])
            .map(drop)
    }

    /// read(fd, buf, len) into tracee memory at `buf`; returns the bytes
    /// read.
    pub fn read(&mut self, fd: i32, buf: u64, len: u64) -> Result<u64, RemoteError> {
        self.syscall(libc::SYS_read, &[fd as u64, buf, len])
            .map(|n| n as u64)
    }

    /// mmap(addr, len, prot, flags, fd, offset); `fd` -1 for anonymous
    /// memory. Returns the address mapped.
    pub fn mmap(
        &mut self,
        addr: u64,
        len: u64,
        prot: i32,
        flags: i32,
        fd: i32,
        offset: u64,
    ) -> Result<u64, RemoteError> {
        let args = [addr, len, prot as u64, flags as u64, fd as u64, offset];
        self.syscall(libc::SYS_mmap, &args).map(|a| a as u64)
    }

    /// munmap(addr, len).
    pub fn munmap(&mut self, addr: u64, len: u64) -> Result<(), RemoteError> {
        self.syscall(libc::SYS_munmap, &[addr, len]).map(drop)
    }

    /// mremap(from, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, to): moves a
    /// mapping whole.
    pub fn move_mapping(&mut self, from: u64, len: u64, to: u64) -> Result<(), RemoteError> {
        let flags = (libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED) as u64;
        self.syscall(libc::SYS_mremap, &[from, len, len, flags, to])
            .map(drop)
    }

    /// mprotect(addr, len, prot).
    pub fn mprotect(&mut self, addr: u64, len: u64, prot: u64) -> Result<(), RemoteError> {
        self.syscall(libc::SYS_mprotect, &[addr, len, prot])
            .map(drop)
    }

    /// madvise(addr, len, advice).
    pub fn madvise(&mut self, addr: u64, len: u64, advice: i32) -> Result<(), RemoteError> {
        self.syscall(libc::SYS_madvise, &[addr, len, advice as u64])
            .map(drop)
    }

    /// mlock2(addr, len, flags): locks the range in memory, now or (with
    /// MLOCK_ONFAULT) as its pages fault in.
    pub fn mlock2(&mut self, addr: u64, len: u64, flags: u32) -> Result<(), RemoteError> {
        self.syscall(libc::SYS_mlock2, &[addr, len, u64::from(flags)])
            .map(drop)
    }

    /// shmat(shmid, addr, flags).
    pub fn shmat(&mut self, shmid: i32, addr: u64, flags: i32) -> Result<(), RemoteError> {
        self.syscall(libc::SYS_shmat, &[shmid as u64, addr, flags as u64])
            .map(drop)
    }

    /// shmdt(addr).
    pub fn shmdt(&mut self, addr: u64) -> Result<(), RemoteError> {
        self.syscall(libc::SYS_shmdt, &[addr]).map(drop)
    }

    /// prctl(option, args...); returns its value.
    pub fn prctl(&mut self, option: i32, args: &[u64]) -> Result<i64, RemoteError> {
        let mut all = [option as u64, 0, 0, 0, 0];
        all[1..=args.len()].copy_from_slice(args);
        self.syscall(libc::SYS_prctl, &all)
    }

    /// rt_sigaction(signo, act, oldact, 8): `act` and `oldact` are
    /// addresses of a kernel `struct sigaction` in the tracee (or 0).
    pub fn rt_sigaction(&mut self, signo: i32, act: u64, oldact: u64) -> Result<(), RemoteError> {
        self.syscall(libc::SYS_rt_sigaction, &[signo as u64, act, oldact, 8])
            .map(drop)
    }

    /// sigaltstack(ss, old_ss), both addresses in the tracee (or 0).
    pub fn sigaltstack(&mut self, ss: u64, old: u64) -> Result<(), RemoteError> {
        self.syscall(libc::SYS_sigaltstack, &[ss, old]).map(drop)
    }

    /// clone3(args, size) with ferry tracing the new task: returns its
    /// ID as the tracer sees it, from the clone or fork event (None if no
    /// event was reported).
    pub fn clone3(&mut self, args: u64, size: u64) -> Result<Option<Pid>, RemoteError> {
        self.tracee.last_clone_tid = None;
        self.syscall(libc::SYS_clone3, &[args, size])?;
        Ok(self.tracee.last_clone_tid)
    }

    /// sched_setattr(0, attr, 0): the calling thread takes the
    /// `struct sched_attr` at address `attr` in the tracee.
    pub fn sched_setattr(&mut self, attr: u64) -> Result<(), RemoteError> {
        self.syscall(libc::SYS_sched_setattr, &[0, attr, 0])
            .map(drop)
    }

    /// setpriority(PRIO_PROCESS, 0, nice): the calling thread's nice
    /// value (PRIO_PROCESS names one thread in Linux).
    pub fn set_own_nice(&mut self, nice: i32) -> Result<(), RemoteError> {
        let which = u64::from(libc::PRIO_PROCESS);
        self.syscall(libc::SYS_setpriority, &[which, 0, i64::from(nice) as u64])
            .map(drop)
    }

    /// socket(domain, type, 0); returns the new fd.
    pub fn socket(&mut self, domain: i32, kind: i32) -> Result<i32, RemoteError> {
        self.syscall(libc::SYS_socket, &[domain as u64, kind as u64])
            .map(|fd| fd as i32)
    }

    /// pidfd_open(pid, 0); returns the new fd.
    pub fn pidfd_open(&mut self, pid: u32) -> Result<i32, RemoteError> {
        self.syscall(libc::SYS_pidfd_open, &[pid.into()])
            .map(|fd| fd as i32)
    }

    /// pidfd_getfd(pidfd, fd, 0): a copy of the other process's `fd`.
    pub fn pidfd_getfd(&mut self, pidfd: i32, fd: i32) -> Result<i32, RemoteError> {
        self.syscall(libc::SYS_pidfd_getfd, &[pidfd as u64, fd as u64])
            .map(|fd| fd as i32)
    }

    /// userfaultfd(flags); returns the new fd.
    pub fn userfaultfd(&mut self, flags: i32) -> Result<i32, RemoteError> {
        self.syscall(libc::SYS_userfaultfd, &[flags as u64])
            .map(|fd| fd as i32)
    }
}

/// A range of the tracee's memory that ferry writes call arguments into
/// and reads results back from.
#[derive(Debug, Clone, Copy)]
pub struct Scratch {
    /// The traced process.
    pub pid: Pid,
    /// Start of the area in the tracee.
    pub addr: u64,
    /// Its length.
    pub len: u64,
}

impl Scratch {
    /// Maps a private anonymous scratch area of `len` bytes in the
    /// tracee, readable and writable (and executable with `exec`), at
    /// `at` exactly (MAP_FIXED_NOREPLACE) or anywhere (`at` 0).
    pub fn map(
        remote: &mut Remote<'_>,
        pid: Pid,
        at: u64,
        len: u64,
        exec: bool,
    ) -> Result<Self, RemoteError> {
        let mut prot = libc::PROT_READ | libc::PROT_WRITE;
        if exec {
            prot |= libc::PROT_EXEC;
        }
        let mut flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
        if at != 0 {
            flags |= libc::MAP_FIXED_NOREPLACE;
        }
        let addr = remote.mmap(at, len, prot, flags, -1, 0)?;
        Ok(Scratch { pid, addr, len })
    }

    /// Unmaps the area.
    pub fn unmap(self, remote: &mut Remote<'_>) -> Result<(), RemoteError> {
        remote.munmap(self.addr, self.len)
    }

    /// Writes `bytes` at offset `off` of the area; returns their address
    /// in the tracee.
    pub fn put(&self, off: u64, bytes: &[u8]) -> Result<u64, PtraceError> {
        write_memory(self.pid, self.addr + off, bytes)?;
        Ok(self.addr + off)
    }

    /// Reads `len` bytes at offset `off` of the area.
    pub fn read(&self, off: u64, len: usize) -> Result<Vec<u8>, PtraceError> {
        let mut buf = vec![0u8; len];
        read_memory(self.pid, self.addr + off, &mut buf)?;
        Ok(buf)
    }
}

impl Tracee {
    /// Creates a userfaultfd inside this thread's process (an injected
    /// call) and takes it out with pidfd_getfd, closing the process's own
    /// copy: ferry then holds the only reference, and its ioctls act on the
    /// process's address space. Closing it removes every registration.
    /// `kernel_faults` also catches faults taken inside system calls (a
    /// read() into a missing buffer), which lazy restore needs.
    pub fn take_userfaultfd(
        &mut self,
        syscall_insn: u64,
        pid: Pid,
        kernel_faults: bool,
    ) -> Result<OwnedFd, PtraceError> {
        use crate::kernel::uffd::UFFD_USER_MODE_ONLY;
        let tid = self.tid.as_raw();
        let injected = |call| {
            move |e| match e {
                RemoteError::Trace(e) => e,
                RemoteError::Failed(errno) => PtraceError::Injected { tid, call, errno },
            }
        };
        let mode = if kernel_faults {
            0
        } else {
            UFFD_USER_MODE_ONLY
        };
        let mut remote = Remote::new(self, syscall_insn);
        let fd = remote
            .userfaultfd(libc::O_CLOEXEC | libc::O_NONBLOCK | mode)
            .map_err(injected("userfaultfd()"))?;
        let taken = kernel::pidfd_open(pid).and_then(|pidfd| kernel::pidfd_getfd(&pidfd, fd));
        let closed = match remote.close(fd) {
            Err(RemoteError::Trace(e)) => return Err(e),
            closed => closed,
        };
        let taken = taken.map_err(|errno| PtraceError::Injected {
            tid,
            call: "pidfd_getfd of the userfaultfd",
            errno,
        })?;
        closed.map_err(injected("close of the userfaultfd"))?;
        Ok(taken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_range_is_decoded_once() {
        assert_eq!(decode(-i64::from(libc::ENOENT)), Err(Errno::ENOENT));
        assert_eq!(decode(-4095), Err(Errno::from_raw(4095)));
        assert_eq!(decode(0), Ok(0));
        assert_eq!(decode(7), Ok(7));
        // An address in the upper half is a value, not an error.
        assert_eq!(decode(-4096), Ok(-4096));
    }
}
