//! System calls, ioctls and CPU instructions that nix lacks. This module is
//! the only home of `unsafe` in ferry: every wrapper here is safe to call and
//! returns a typed error.

// The workspace denies unsafe code; this module is where it is allowed.
#![allow(unsafe_code)]

pub mod abi;
pub mod anon;
pub mod child;
pub mod cpu;
pub mod fanotify;
pub mod fown;
pub mod inet_diag;
pub mod packet;
pub mod sched;
pub mod scratch;
pub mod sock_diag;
pub mod sockets;
pub mod sockopts;
pub mod sysvshm;
pub mod tty;
pub mod uffd;
pub mod uffd_guard;

use nix::errno::Errno;
use nix::unistd::Pid;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// NT_X86_XSTATE: the regset holding the whole XSAVE area.
const NT_X86_XSTATE: libc::c_int = 0x202;
/// PTRACE_GET_RSEQ_CONFIGURATION (Linux 5.13), absent from libc's headers.
const PTRACE_GET_RSEQ_CONFIGURATION: libc::c_uint = 0x420f;
/// The largest XSAVE area ferry accepts (AMX tiles make it ~11 KiB).
pub const MAX_XSTATE_SIZE: usize = 16384;
/// Size of the kernel's siginfo_t.
pub const SIGINFO_SIZE: usize = 128;

/// The kernel's rseq configuration of a thread.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct RseqConfiguration {
    rseq_abi_pointer: u64,
    rseq_abi_size: u32,
    signature: u32,
    flags: u32,
    pad: u32,
}

/// Reads the raw NT_X86_XSTATE regset of a ptrace-stopped thread.
pub fn ptrace_get_xstate(tid: Pid) -> Result<Vec<u8>, Errno> {
    let mut buf = vec![0u8; MAX_XSTATE_SIZE];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: iov points to a live buffer of iov_len bytes, which the kernel
    // fills and shrinks iov_len to the regset size.
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_GETREGSET,
            tid.as_raw(),
            NT_X86_XSTATE as usize as *mut libc::c_void,
            &mut iov as *mut libc::iovec,
        )
    };
    Errno::result(r)?;
    buf.truncate(iov.iov_len);
    Ok(buf)
}

/// Loads a raw NT_X86_XSTATE regset into a ptrace-stopped thread.
pub fn ptrace_set_xstate(tid: Pid, xstate: &[u8]) -> Result<(), Errno> {
    let mut copy = xstate.to_vec();
    let mut iov = libc::iovec {
        iov_base: copy.as_mut_ptr().cast(),
        iov_len: copy.len(),
    };
    // SAFETY: iov describes a live buffer; the kernel only reads it.
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_SETREGSET,
            tid.as_raw(),
            NT_X86_XSTATE as usize as *mut libc::c_void,
            &mut iov as *mut libc::iovec,
        )
    };
    Errno::result(r).map(drop)
}

/// Reads the blocked signal mask of a ptrace-stopped thread.
pub fn ptrace_get_sigmask(tid: Pid) -> Result<u64, Errno> {
    let mut mask: u64 = 0;
    // SAFETY: the kernel writes exactly 8 bytes (the size passed) into mask.
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_GETSIGMASK,
            tid.as_raw(),
            std::mem::size_of::<u64>(),
            &mut mask as *mut u64,
        )
    };
    Errno::result(r).map(|_| mask)
}

/// Sets the blocked signal mask of a ptrace-stopped thread.
pub fn ptrace_set_sigmask(tid: Pid, mask: u64) -> Result<(), Errno> {
    // SAFETY: the kernel reads exactly 8 bytes from mask.
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_SETSIGMASK,
            tid.as_raw(),
            std::mem::size_of::<u64>(),
            &mask as *const u64,
        )
    };
    Errno::result(r).map(drop)
}

/// Reads a thread's rseq registration: (address, length, signature), or
/// None when the thread has not registered one.
pub fn ptrace_get_rseq(tid: Pid) -> Result<Option<(u64, u32, u32)>, Errno> {
    let mut conf = RseqConfiguration::default();
    // SAFETY: the kernel writes at most size_of::<RseqConfiguration>() bytes.
    let r = unsafe {
        libc::ptrace(
            PTRACE_GET_RSEQ_CONFIGURATION,
            tid.as_raw(),
            std::mem::size_of::<RseqConfiguration>(),
            &mut conf as *mut RseqConfiguration,
        )
    };
    Errno::result(r)?;
    Ok((conf.rseq_abi_pointer != 0).then_some((
        conf.rseq_abi_pointer,
        conf.rseq_abi_size,
        conf.signature,
    )))
}

/// ptrace option PTRACE_O_SUSPEND_SECCOMP, which nix lacks: the tracee's
/// seccomp filters let every system call through while it is traced, so
/// that calls injected into it are not refused (or fatal).
pub fn ptrace_suspend_seccomp() -> nix::sys::ptrace::Options {
    nix::sys::ptrace::Options::from_bits_retain(libc::PTRACE_O_SUSPEND_SECCOMP)
}

/// Reads seccomp filter `index` (0 = the most recently installed) of a
/// ptrace-stopped thread as classic BPF instructions.
pub fn ptrace_seccomp_filter(tid: Pid, index: u64) -> Result<Vec<libc::sock_filter>, Errno> {
    const PTRACE_SECCOMP_GET_FILTER: libc::c_uint = 0x420c;
    // SAFETY: with a null buffer the kernel only returns the count.
    let n = unsafe {
        libc::ptrace(
            PTRACE_SECCOMP_GET_FILTER,
            tid.as_raw(),
            index as usize as *mut libc::c_void,
            std::ptr::null_mut::<libc::c_void>(),
        )
    };
    let n = Errno::result(n)? as usize;
    let mut prog = vec![
        libc::sock_filter {
            code: 0,
            jt: 0,
            jf: 0,
            k: 0,
        };
        n
    ];
    // SAFETY: prog has room for the n instructions the kernel reported;
    // filters never change once installed.
    let r = unsafe {
        libc::ptrace(
            PTRACE_SECCOMP_GET_FILTER,
            tid.as_raw(),
            index as usize as *mut libc::c_void,
            prog.as_mut_ptr(),
        )
    };
    Errno::result(r)?;
    Ok(prog)
}

/// The flags seccomp filter `index` (0 = the most recent) of a
/// ptrace-stopped thread was installed with (SECCOMP_FILTER_FLAG_LOG ...).
pub fn ptrace_seccomp_flags(tid: Pid, index: u64) -> Result<u64, Errno> {
    const PTRACE_SECCOMP_GET_METADATA: libc::c_uint = 0x420d;
    #[repr(C)]
    struct Metadata {
        filter_off: u64,
        flags: u64,
    }
    let mut md = Metadata {
        filter_off: index,
        flags: 0,
    };
    // SAFETY: the kernel reads filter_off and writes flags of the struct of
    // the size passed.
    let r = unsafe {
        libc::ptrace(
            PTRACE_SECCOMP_GET_METADATA,
            tid.as_raw(),
            std::mem::size_of::<Metadata>(),
            &mut md as *mut Metadata,
        )
    };
    Errno::result(r).map(|_| md.flags)
}

/// Reads the queued signals of a ptrace-stopped thread without dequeuing
/// them: the per-thread queue, or the process-wide one when `shared`.
pub fn ptrace_peek_siginfo(tid: Pid, shared: bool) -> Result<Vec<[u8; SIGINFO_SIZE]>, Errno> {
    #[repr(C)]
    struct PeekSiginfoArgs {
        off: u64,
        flags: u32,
        nr: i32,
    }
    const PTRACE_PEEKSIGINFO_SHARED: u32 = 1;
    let mut out = Vec::new();
    loop {
        let mut buf = [[0u8; SIGINFO_SIZE]; 32];
        let mut args = PeekSiginfoArgs {
            off: out.len() as u64,
            flags: if shared { PTRACE_PEEKSIGINFO_SHARED } else { 0 },
            nr: buf.len() as i32,
        };
        // SAFETY: args is a valid ptrace_peeksiginfo_args and buf has room
        // for `nr` siginfo_t records.
        let r = unsafe {
            libc::ptrace(
                libc::PTRACE_PEEKSIGINFO,
                tid.as_raw(),
                &mut args as *mut PeekSiginfoArgs,
                buf.as_mut_ptr(),
            )
        };
        let n = Errno::result(r)? as usize;
        out.extend_from_slice(&buf[..n.min(buf.len())]);
        if n < buf.len() {
            return Ok(out);
        }
    }
}

/// Reads the siginfo of the signal a thread is stopped for
/// (PTRACE_GETSIGINFO) as raw bytes, to be queued again later unchanged.
pub fn ptrace_get_siginfo(tid: Pid) -> Result<[u8; SIGINFO_SIZE], Errno> {
    let mut buf = [0u8; SIGINFO_SIZE];
    // SAFETY: the kernel writes one siginfo_t (128 bytes) into buf.
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_GETSIGINFO,
            tid.as_raw(),
            std::ptr::null_mut::<libc::c_void>(),
            buf.as_mut_ptr(),
        )
    };
    Errno::result(r).map(|_| buf)
}

/// kcmp(KCMP_FILE): whether fd `fd1` of process `pid1` and fd `fd2` of
/// process `pid2` refer to the same open file description.
pub fn same_file_description(pid1: Pid, fd1: i32, pid2: Pid, fd2: i32) -> Result<bool, Errno> {
    const KCMP_FILE: i32 = 0;
    // SAFETY: kcmp takes five integers and touches no memory of ours.
    let r = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            pid1.as_raw(),
            pid2.as_raw(),
            KCMP_FILE,
            fd1,
            fd2,
        )
    };
    Errno::result(r).map(|r| r == 0)
}

/// What two processes may share, as kcmp compares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shared {
    /// The fd table (KCMP_FILES: CLONE_FILES).
    Files,
    /// The working directory, root and umask (KCMP_FS: CLONE_FS).
    Fs,
}

/// kcmp(KCMP_FILES or KCMP_FS): whether processes `pid1` and `pid2` share
/// `what`.
pub fn shares_with(pid1: i32, pid2: i32, what: Shared) -> Result<bool, Errno> {
    let kind: i32 = match what {
        Shared::Files => 2,
        Shared::Fs => 3,
    };
    // SAFETY: kcmp takes five integers and touches no memory of ours.
    let r = unsafe { libc::syscall(libc::SYS_kcmp, pid1, pid2, kind, 0, 0) };
    Errno::result(r).map(|r| r == 0)
}

/// kcmp(KCMP_EPOLL_TFD): whether fd `fd` of process `pid` refers to the
/// file of the `toff`-th registration of fd number `tfd` (counted in the
/// order fdinfo lists them) in epoll fd `efd` of the same process. ENOENT
/// when that registration does not exist.
pub fn epoll_target_is(pid: Pid, fd: i32, efd: i32, tfd: i32, toff: u32) -> Result<bool, Errno> {
    const KCMP_EPOLL_TFD: i32 = 7;
    // struct kcmp_epoll_slot { __u32 efd, tfd, toff; }
    let slot: [u32; 3] = [efd as u32, tfd as u32, toff];
    // SAFETY: kcmp only reads the 12-byte slot, which lives across the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            pid.as_raw(),
            pid.as_raw(),
            KCMP_EPOLL_TFD,
            fd,
            slot.as_ptr(),
        )
    };
    Errno::result(r).map(|r| r == 0)
}

/// open_by_handle_at: opens the file a file handle (as fdinfo shows it:
/// type and bytes) names, on the filesystem of `mount_fd`. Needs
/// CAP_DAC_READ_SEARCH.
pub fn open_by_handle_at(
    mount_fd: &impl std::os::fd::AsRawFd,
    handle_type: i32,
    handle: &[u8],
    flags: i32,
) -> Result<OwnedFd, Errno> {
    // struct file_handle { u32 handle_bytes; int handle_type; u8 f_handle[]; },
    // built in u64 words so that it is aligned.
    let mut words = vec![0u64; 1 + handle.len().div_ceil(8)];
    words[0] = handle.len() as u64 | u64::from(handle_type as u32) << 32;
    for (i, b) in handle.iter().enumerate() {
        words[1 + i / 8] |= u64::from(*b) << (8 * (i % 8));
    }
    // SAFETY: the kernel reads the header and handle_bytes bytes after it,
    // all inside `words`; on success it returns a new fd that we own.
    let r = unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            mount_fd.as_raw_fd(),
            words.as_ptr(),
            flags,
        )
    };
    // SAFETY: a non-negative result is a new fd nobody else owns.
    Errno::result(r).map(|fd| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// FIONREAD: the number of bytes waiting to be read from a pipe or socket.
pub fn bytes_readable(fd: &impl std::os::fd::AsRawFd) -> Result<usize, Errno> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int into n.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n as *mut libc::c_int) };
    Errno::result(r).map(|_| n.max(0) as usize)
}

/// Sends signal `sig` to thread `tid` of process `tgid`.
pub fn tgkill(tgid: Pid, tid: Pid, sig: i32) -> Result<(), Errno> {
    // SAFETY: tgkill takes three integers and touches no memory.
    let r = unsafe { libc::syscall(libc::SYS_tgkill, tgid.as_raw(), tid.as_raw(), sig) };
    Errno::result(r).map(drop)
}

/// Reads a thread's robust futex list: (head, length).
pub fn get_robust_list(tid: Pid) -> Result<(u64, u64), Errno> {
    let mut head: u64 = 0;
    let mut len: u64 = 0;
    // SAFETY: the kernel writes one pointer into head and one size_t into len.
    let r = unsafe {
        libc::syscall(
            libc::SYS_get_robust_list,
            tid.as_raw(),
            &mut head as *mut u64,
            &mut len as *mut u64,
        )
    };
    Errno::result(r).map(|_| (head, len))
}

/// prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE): the size of the kernel's struct
/// prctl_mm_map, which only kernels with CONFIG_CHECKPOINT_RESTORE answer.
pub fn prctl_mm_map_size() -> Result<u32, Errno> {
    let mut size: libc::c_uint = 0;
    // SAFETY: PR_SET_MM_MAP_SIZE writes one unsigned int to the address
    // passed, which is a live local.
    let ret = unsafe {
        libc::prctl(
            libc::PR_SET_MM,
            libc::PR_SET_MM_MAP_SIZE as libc::c_ulong,
            &mut size as *mut libc::c_uint as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    Errno::result(ret).map(|_| size)
}

/// The kernel release, as uname -r prints it.
pub fn kernel_release() -> Result<String, Errno> {
    // SAFETY: utsname is a struct of char arrays, for which all zeroes is a
    // valid value.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uname fills the struct it is given, which is a live local.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return Err(Errno::last());
    }
    let bytes: Vec<u8> = uts
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Opens a pidfd for a process.
pub fn pidfd_open(pid: Pid) -> Result<OwnedFd, Errno> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    let fd = Errno::result(r)? as RawFd;
    // SAFETY: the kernel just returned this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Duplicates another process's fd `target_fd` into this process.
pub fn pidfd_getfd(pidfd: &OwnedFd, target_fd: i32) -> Result<OwnedFd, Errno> {
    use std::os::fd::AsRawFd;
    // SAFETY: pidfd is a live pidfd; the kernel returns a new fd or an error.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target_fd, 0) };
    let fd = Errno::result(r)? as RawFd;
    // SAFETY: the kernel just returned this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A whole file mapped read-only, so that its pages can be checksummed and
/// handed to the kernel (UFFDIO_COPY, process_vm_writev) straight from the
/// page cache, without a copy into a buffer first.
#[derive(Debug)]
pub struct MappedFile {
    addr: *mut libc::c_void,
    len: usize,
}

impl MappedFile {
    /// Maps all of `file` (read-only, private) with sequential read-ahead.
    pub fn map(file: &std::fs::File) -> Result<Self, Errno> {
        use std::os::fd::AsRawFd;
        let len = file
            .metadata()
            .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?
            .len() as usize;
        if len == 0 {
            return Ok(MappedFile {
                addr: std::ptr::null_mut(),
                len: 0,
            });
        }
        // SAFETY: a new private read-only mapping chosen by the kernel; it
        // aliases no Rust object.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        // SAFETY: advice on the mapping just created, of its exact length.
        unsafe { libc::madvise(addr, len, libc::MADV_SEQUENTIAL) };
        Ok(MappedFile { addr, len })
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: the mapping is readable for `len` bytes and lives as long
        // as self. Only a truncation of the file by someone else while it is
        // mapped could break this (the kernel would send SIGBUS on access);
        // image files are ferry's own and are not truncated while read.
        unsafe { std::slice::from_raw_parts(self.addr as *const u8, self.len) }
    }
}

impl Drop for MappedFile {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: unmapping exactly the mapping this value owns; no slice
            // from bytes() outlives self.
            unsafe { libc::munmap(self.addr, self.len) };
        }
    }
}

/// How a freshly spawned husk process reports back.
#[derive(Debug)]
pub struct SpawnedHusk {
    /// PID of the husk, in this process's PID namespace.
    pub pid: Pid,
    /// Write end of the husk's lifeline pipe: the husk exits as soon as this
    /// end is closed without it having been taken over by a tracer.
    pub lifeline: OwnedFd,
    /// A staging husk's answers to [`protect_staging`]; None for another.
    pub replies: Option<OwnedFd>,
}

/// Spawns a "husk": a process with PID `want_pid` that is NOT a child of the
/// caller (an intermediate child creates it with clone3(set_tid) and exits,
/// so the husk is reparented to the nearest subreaper or init). The husk
/// closes every fd but its lifeline pipe and blocks in read() on it: a
/// tracer then seizes it and rebuilds a process inside it by injected system
/// calls. If the caller dies before that, the read returns EOF and the husk
/// exits, so no stray process is left behind.
///
/// Fails with EEXIST when `want_pid` is taken. `flags` are clone flags
/// added to its clone3 (CLONE_NEWNET: a network namespace of its own).
pub fn spawn_detached_husk(want_pid: i32, flags: u64) -> Result<SpawnedHusk, Errno> {
    spawn_husk(flags, want_pid, None)
}

/// Where a staging husk's reservation is asked to go: far below where
/// executables (0x55..., 0x56...), the mmap area (0x7f...) and stacks
/// live, so that it seldom lies where the restored process has mappings
/// (the restore moves it out of their way when it does).
const STAGING_HINT: u64 = 0x1000_0000_0000;

/// Spawns a husk as [`spawn_detached_husk`] does (in this network
/// namespace, with any free PID) that also holds a reservation of `len`
/// bytes of address space, returned with it: private anonymous memory
/// with no access (PROT_NONE: neither committed nor accounted until
/// [`protect_staging`] makes parts of it writable) and not inherited by
/// a fork (MADV_DONTFORK), which a migration's destination fills with
/// pre-copied pages through /proc/PID/mem while the rounds run. The
/// restore clones the root's husk from it with CLONE_VM (the PID it
/// needs is taken only then) and ends it.
pub fn spawn_staging_husk(len: u64) -> Result<(SpawnedHusk, u64), Errno> {
    // SAFETY: a new PROT_NONE mapping placed by the kernel (the address
    // is only a hint); it aliases no Rust object and nothing here reads
    // or writes it.
    let base = unsafe {
        libc::mmap(
            STAGING_HINT as *mut libc::c_void,
            len as usize,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(Errno::last());
    }
    // The husk inherits the reservation with the fork; this process
    // drops its own copy whatever happened.
    let spawned = spawn_husk(0, 0, Some((base as u64, len)));
    // SAFETY: unmapping exactly the reservation made above, which nothing
    // in this process uses.
    unsafe { libc::munmap(base, len as usize) };
    spawned.map(|husk| (husk, base as u64))
}

/// Spawns a husk as [`spawn_detached_husk`] does, as PID 1 of a new PID
/// namespace (the init of a tree that had one of its own); its PID here is
/// returned. `flags` as for [`spawn_detached_husk`].
pub fn spawn_husk_in_new_pid_namespace(flags: u64) -> Result<SpawnedHusk, Errno> {
    spawn_husk(libc::CLONE_NEWPID as u64 | flags, 1, None)
}

/// Spawns the husk, with PID `want_pid` (0: any); `staging` (address,
/// length) is a reservation the husk marks MADV_DONTFORK before it waits,
/// and serves [`protect_staging`] requests for while it waits.
fn spawn_husk(
    flags: u64,
    want_pid: i32,
    staging: Option<(u64, u64)>,
) -> Result<SpawnedHusk, Errno> {
    let (life_rd, life_wr) = nix::unistd::pipe()?;
    let (rep_rd, rep_wr) = nix::unistd::pipe()?;
    use std::os::fd::AsRawFd;
    let life_rd_raw = life_rd.as_raw_fd();
    let rep_wr_raw = rep_wr.as_raw_fd();
    // SAFETY: fork in a process that may have other threads: the child only
    // calls async-signal-safe functions (raw syscalls, write, _exit) and
    // touches no allocator or lock.
    let intermediate = unsafe { libc::fork() };
    if intermediate < 0 {
        return Err(Errno::last());
    }
    if intermediate == 0 {
        // Intermediate child.
        // SAFETY: the child (the husk) only makes raw system calls below.
        let r = unsafe { fork_with_pid(flags, want_pid) };
        if r == 0 {
            // The husk: it keeps its lifeline, and a staging husk the
            // reply pipe too.
            let mut keep = [
                life_rd_raw,
                if staging.is_some() {
                    rep_wr_raw
                } else {
                    life_rd_raw
                },
            ];
            keep.sort_unstable();
            // SAFETY: raw syscalls on fds, a mapping and a local buffer
            // this process owns; no allocation.
            unsafe {
                if let Some((base, len)) = staging {
                    libc::syscall(libc::SYS_madvise, base, len, libc::MADV_DONTFORK);
                }
                let mut first = 0;
                for fd in keep {
                    if fd > first {
                        libc::syscall(libc::SYS_close_range, first, fd - 1, 0);
                    }
                    first = fd + 1;
                }
                libc::syscall(libc::SYS_close_range, first, u32::MAX, 0);
                let mut request = [0u64; 2];
                loop {
                    let n = libc::read(life_rd_raw, request.as_mut_ptr().cast(), 16);
                    if n == 0 || (n < 0 && *libc::__errno_location() != libc::EINTR) {
                        libc::_exit(0);
                    }
                    let Some((base, len)) = staging else {
                        continue;
                    };
                    let [at, size] = request;
                    let inside = n == 16 && at >= base && size <= len && at - base <= len - size;
                    let done: i64 = if inside {
                        let r = libc::syscall(
                            libc::SYS_mprotect,
                            at,
                            size,
                            libc::PROT_READ | libc::PROT_WRITE,
                        );
                        if r < 0 {
                            -i64::from(*libc::__errno_location())
                        } else {
                            0
                        }
                    } else {
                        -i64::from(libc::EINVAL)
                    };
                    libc::write(rep_wr_raw, (&done as *const i64).cast(), 8);
                }
            }
        }
        let report: i64 = if r < 0 {
            // SAFETY: reading errno of this thread.
            -i64::from(unsafe { *libc::__errno_location() })
        } else {
            r
        };
        // SAFETY: write of 8 bytes from a live local, then _exit.
        unsafe {
            libc::write(rep_wr_raw, (&report as *const i64).cast(), 8);
            libc::_exit(0);
        }
    }
    drop(rep_wr);
    drop(life_rd);
    nix::sys::wait::waitpid(Pid::from_raw(intermediate), None)?;
    let mut buf = [0u8; 8];
    let n = nix::unistd::read(&rep_rd, &mut buf)?;
    if n != 8 {
        return Err(Errno::EIO);
    }
    let report = i64::from_ne_bytes(buf);
    if report < 0 {
        return Err(Errno::from_raw(-report as i32));
    }
    Ok(SpawnedHusk {
        pid: Pid::from_raw(report as i32),
        lifeline: life_wr,
        replies: staging.map(|_| rep_rd),
    })
}

/// Asks the staging husk `husk` ([`spawn_staging_husk`]) to make `len`
/// bytes of its reservation at `addr` readable and writable (committed,
/// as the mappings they will become are), before pages are written
/// there: a restore then moves them into place without changing the
/// protection of every page while the workload is frozen.
pub fn protect_staging(husk: &SpawnedHusk, addr: u64, len: u64) -> Result<(), Errno> {
    let replies = husk.replies.as_ref().ok_or(Errno::EINVAL)?;
    let mut request = [0u8; 16];
    request[..8].copy_from_slice(&addr.to_ne_bytes());
    request[8..].copy_from_slice(&len.to_ne_bytes());
    // One write of 16 bytes on a pipe is atomic: the husk reads it whole.
    if nix::unistd::write(&husk.lifeline, &request)? != request.len() {
        return Err(Errno::EIO);
    }
    let mut reply = [0u8; 8];
    if nix::unistd::read(replies, &mut reply)? != reply.len() {
        // The husk is gone.
        return Err(Errno::ESRCH);
    }
    match i64::from_ne_bytes(reply) {
        0 => Ok(()),
        errno => Err(Errno::from_raw(-errno as i32)),
    }
}

/// Finds a `syscall` instruction (0f 05) in this process's libc, inside the
/// `syscall()` function. A process forked from this one has the same code at
/// the same address, so a tracer can inject its first system call there
/// whatever the child is doing at that moment.
pub fn own_syscall_instruction() -> std::io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let func = libc::syscall as *const () as u64;
    let mut code = [0u8; 128];
    std::fs::File::open("/proc/self/mem")?.read_exact_at(&mut code, func)?;
    code.windows(2)
        .position(|w| w == [0x0f, 0x05])
        .map(|off| func + off as u64)
        .ok_or_else(|| std::io::Error::other("no syscall instruction in libc's syscall()"))
}

/// clone3 without CLONE_VM, like fork, but with the child's PID chosen
/// (set_tid; `pid` is the PID in the innermost of the child's PID
/// namespaces, so 1 with CLONE_NEWPID; 0: any) and extra `flags`. Returns the raw
/// result: the child's PID in the parent, 0 in the child, -errno.
///
/// # Safety
/// The child is a copy of a possibly multi-threaded process: it may only
/// make async-signal-safe calls (raw system calls, _exit) and must not
/// allocate or take locks.
unsafe fn fork_with_pid(flags: u64, pid: i32) -> i64 {
    let tids = [pid];
    let args = CloneArgs {
        flags,
        exit_signal: libc::SIGCHLD as u64,
        set_tid: if pid != 0 { tids.as_ptr() as u64 } else { 0 },
        set_tid_size: u64::from(pid != 0),
        ..CloneArgs::default()
    };
    // SAFETY: args is a valid clone_args of the size passed and tids
    // outlives the call; the caller keeps the child to async-signal-safe
    // calls.
    unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    }
}

/// The kernel's struct clone_args (clone3).
#[repr(C)]
#[derive(Debug, Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Size of the kernel's struct clone_args (version 2, with set_tid and
/// cgroup), as an injected clone3 must pass it.
pub const CLONE_ARGS_SIZE: usize = std::mem::size_of::<CloneArgs>();

/// Encodes a struct clone_args for an injected clone3 call, as bytes to be
/// written into the tracee (`exit_signal` 0 for a thread, SIGCHLD for a
/// child process).
pub fn encode_clone_args(
    flags: u64,
    child_tid: u64,
    tls: u64,
    set_tid_ptr: u64,
    exit_signal: u64,
) -> Vec<u8> {
    let fields = [
        flags,
        0,
        child_tid,
        0,
        exit_signal,
        0,
        0,
        tls,
        set_tid_ptr,
        u64::from(set_tid_ptr != 0),
        0,
    ];
    fields.iter().flat_map(|f| f.to_le_bytes()).collect()
}

/// Set by the handler [`catch_termination_signals`] installs.
static TERMINATION_REQUESTED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

extern "C" fn note_termination(_signo: libc::c_int) {
    TERMINATION_REQUESTED.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Makes SIGINT and SIGTERM set a flag instead of ending the process, and
/// returns the flag: a command that has changed a workload (the dry run's
/// write tracking) polls it to stop and undo its changes before exiting.
pub fn catch_termination_signals() -> Result<&'static std::sync::atomic::AtomicBool, Errno> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(
        SigHandler::Handler(note_termination),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe, and it stays valid for the whole process.
        unsafe { sigaction(signal, &action) }?;
    }
    Ok(&TERMINATION_REQUESTED)
}

/// Runs `f` in the network namespace of process `pid`: right here when it
/// is this thread's, else on a thread of ours that joined it (setns), so
/// that the sockets `f` creates (a listening socket of a container, a
/// netlink socket asking about the container's sockets) and the programs
/// it spawns belong to that namespace. The rest of migrate-agent stays in
/// its own.
pub fn in_net_namespace<T: Send>(pid: i32, f: impl FnOnce() -> T + Send) -> Result<T, Errno> {
    let errno = |e: std::io::Error| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).map_err(errno)?;
    in_net_namespace_of(&ns, f)
}

/// [`in_net_namespace`] for the network namespace `ns` is a handle on
/// (an open /proc/PID/ns/net, which keeps the namespace alive after the
/// processes in it are gone: the network lock is released there after
/// the tree was killed).
pub fn in_net_namespace_of<T: Send>(
    ns: &std::fs::File,
    f: impl FnOnce() -> T + Send,
) -> Result<T, Errno> {
    let errno = |e: std::io::Error| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
    let theirs = std::fs::read_link(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(ns)
    ))
    .map_err(errno)?;
    let ours = std::fs::read_link("/proc/thread-self/ns/net").map_err(errno)?;
    if theirs == ours {
        return Ok(f());
    }
    std::thread::scope(|s| {
        let joined = s.spawn(move || {
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)?;
            Ok(f())
        });
        joined
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
