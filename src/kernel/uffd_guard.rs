//! The post-copy guard process: forked (twice, so it is nobody's child
//! here) by the destination agent before a post-copy restore, it holds a
//! duplicate of every userfaultfd of the restored workload and a pidfd of
//! each restored process, handed over on a socket whose other end only the
//! agent holds. While it holds them, the kernel keeps every userfaultfd
//! context alive, so a fault on a page not delivered yet stays blocked even
//! when the agent dies (without the guard, the agent's death would release
//! the contexts and the faults would be served as zero pages). When its
//! socket reports the agent's end closed without a release, it SIGKILLs the
//! restored processes and the children they forked, writes one line on its
//! stderr (the agent's log) and exits; on a release (every page is local,
//! or the agent ended post-copy itself) it exits at once. Everything it
//! runs after fork is raw, async-signal-safe system calls on stack buffers.

use nix::errno::Errno;
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// Message kind: keep the attached userfaultfd open.
pub const GUARD_KEEP: u8 = b'U';
/// Message kind: the attached pidfd is of a restored process (its PID,
/// native endian, in the next 4 bytes) to kill if the agent dies.
pub const GUARD_KILL: u8 = b'P';
/// Message kind: post-copy ended while the agent lives; exit.
pub const GUARD_RELEASE: u8 = b'R';

/// Restored processes a guard watches at most (pidfds it keeps).
const MAX_WATCHED: usize = 1024;
/// Processes (restored ones and their descendants) a guard kills at most.
const MAX_KILLED: usize = 4096;

/// The line the guard writes on its stderr when the agent died, around
/// the number of processes it killed.
const RECORD: [&[u8]; 2] = [
    b"ferry post-copy guard: the destination agent ended before every page of the restored workload was local: ",
    b" restored processes and children were killed (their memory here is incomplete; none of them ran on a page that was not delivered)\n",
];

/// Starts a guard; returns the agent's end of its socket (a SOCK_SEQPACKET
/// unix socket, close-on-exec). Closing it without a [`GUARD_RELEASE`]
/// message kills what the guard watches.
pub fn spawn_uffd_guard() -> Result<OwnedFd, Errno> {
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    let (ours_raw, theirs_raw) = (ours.as_raw_fd(), theirs.as_raw_fd());
    // SAFETY: fork in a process that may have other threads: both children
    // only make raw, async-signal-safe system calls on stack buffers and
    // touch no allocator or lock.
    let intermediate = unsafe { libc::fork() };
    if intermediate < 0 {
        return Err(Errno::last());
    }
    if intermediate == 0 {
        // SAFETY: raw system calls in the freshly forked child; the guard
        // (its child) runs `guard_loop`, which makes raw calls only.
        unsafe {
            let guard = libc::fork();
            if guard == 0 {
                libc::close(ours_raw);
                if theirs_raw > 3 {
                    libc::syscall(libc::SYS_close_range, 3, theirs_raw - 1, 0);
                }
                libc::syscall(libc::SYS_close_range, theirs_raw + 1, u32::MAX, 0);
                // Out of the agent's process group: a ^C for the agent's
                // group is for the agent.
                libc::setsid();
                libc::prctl(libc::PR_SET_NAME, c"ferry-pc-guard".as_ptr(), 0, 0, 0);
                libc::_exit(guard_loop(theirs_raw));
            }
            libc::_exit(if guard < 0 { 1 } else { 0 });
        }
    }
    drop(theirs);
    match nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(intermediate), None)? {
        nix::sys::wait::WaitStatus::Exited(_, 0) => Ok(ours),
        _ => Err(Errno::EAGAIN),
    }
}

/// The guard: receives fds until a release (exit 0) or the end of the
/// agent's socket (kill, record, exit 1).
///
/// # Safety
///
/// Call only in a freshly forked child that owns `sock`.
unsafe fn guard_loop(sock: RawFd) -> i32 {
    let mut pidfds = [-1i32; MAX_WATCHED];
    let mut pids = [0i32; MAX_WATCHED];
    let mut watched = 0usize;
    loop {
        let mut data = [0u8; 8];
        // Room for one cmsghdr with one fd (24 bytes), 8-byte aligned.
        let mut control = [0u64; 8];
        let mut iov = libc::iovec {
            iov_base: data.as_mut_ptr().cast(),
            iov_len: data.len(),
        };
        // SAFETY: all-zero is a valid msghdr (null pointers, zero lengths).
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control);
        // SAFETY: msg points at live stack buffers of the lengths given.
        let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        // SAFETY: reading this thread's errno.
        if n < 0 && unsafe { *libc::__errno_location() } == libc::EINTR {
            continue;
        }
        if n <= 0 {
            break;
        }
        // SAFETY: msg was filled by recvmsg; CMSG_FIRSTHDR and CMSG_DATA
        // stay within `control`.
        let fd = unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            if !c.is_null()
                && (*c).cmsg_level == libc::SOL_SOCKET
                && (*c).cmsg_type == libc::SCM_RIGHTS
            {
                std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<i32>())
            } else {
                -1
            }
        };
        match data[0] {
            GUARD_RELEASE => return 0,
            GUARD_KILL if fd >= 0 && watched < MAX_WATCHED => {
                pidfds[watched] = fd;
                pids[watched] = i32::from_ne_bytes([data[1], data[2], data[3], data[4]]);
                watched += 1;
            }
            // A userfaultfd (or a pidfd beyond the bound): kept open until
            // the guard exits.
            _ => {}
        }
    }
    // The agent is gone. Every descendant is found before anything is
    // killed (a killed parent's children are reparented, out of reach).
    let mut victims = [0i32; MAX_KILLED];
    let mut found = 0usize;
    for &pid in &pids[..watched] {
        found = add_once(&mut victims, found, pid);
    }
    let mut next = 0usize;
    while next < found {
        // SAFETY: stack buffers only.
        found = unsafe { add_children(victims[next], &mut victims, found) };
        next += 1;
    }
    for &fd in &pidfds[..watched] {
        // SAFETY: fd is a pidfd this process received; no siginfo.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                fd,
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
    }
    for &pid in victims[..found]
        .iter()
        .filter(|p| !pids[..watched].contains(p))
    {
        // SAFETY: a plain kill of a process found a moment ago as a
        // descendant of a restored process.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    if found == 0 {
        // Nothing was handed over yet: nothing ran, nothing to say.
        return 1;
    }
    let mut line = [0u8; 512];
    let mut at = 0;
    for (i, part) in RECORD.iter().enumerate() {
        if i > 0 {
            at = put_decimal(&mut line, at, found as i32);
        }
        line[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    // SAFETY: write of a live stack buffer on stderr.
    unsafe { libc::write(2, line.as_ptr().cast(), at) };
    1
}

/// Appends the children of `pid`'s main thread (from
/// /proc/PID/task/PID/children) to `out[..len]`; returns the new length.
///
/// # Safety
///
/// Raw system calls on stack buffers: safe after fork.
unsafe fn add_children(pid: i32, out: &mut [i32], mut len: usize) -> usize {
    let mut path = [0u8; 64];
    let mut at = 0;
    for part in [&b"/proc/"[..], &[], b"/task/", &[], b"/children"] {
        if part.is_empty() {
            at = put_decimal(&mut path, at, pid);
        } else {
            path[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
    }
    // SAFETY: path is NUL-terminated (zero-filled past `at`).
    let fd = unsafe { libc::open(path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return len;
    }
    let mut buf = [0u8; 8192];
    // SAFETY: read into a live stack buffer of that length, then close.
    let n = unsafe {
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        n
    };
    let mut value: i32 = 0;
    let mut digits = false;
    for &b in &buf[..n.max(0) as usize] {
        if b.is_ascii_digit() {
            value = value.saturating_mul(10).saturating_add(i32::from(b - b'0'));
            digits = true;
        } else if digits {
            len = add_once(out, len, value);
            value = 0;
            digits = false;
        }
    }
    if digits {
        len = add_once(out, len, value);
    }
    len
}

/// Appends `pid` to `out[..len]` unless it is there or `out` is full;
/// returns the new length.
fn add_once(out: &mut [i32], len: usize, pid: i32) -> usize {
    if len < out.len() && !out[..len].contains(&pid) {
        out[len] = pid;
        len + 1
    } else {
        len
    }
}

/// Writes `value` (non-negative) in decimal into `buf` at `at`; returns
/// the position after it.
fn put_decimal(buf: &mut [u8], mut at: usize, value: i32) -> usize {
    let mut digits = [0u8; 12];
    let mut n = 0;
    let mut v = value.max(0) as u32;
    loop {
        digits[n] = b'0' + (v % 10) as u8;
        n += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    while n > 0 {
        n -= 1;
        buf[at] = digits[n];
        at += 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_victim_once() {
        let mut out = [0i32; 3];
        let mut len = add_once(&mut out, 0, 7);
        len = add_once(&mut out, len, 7);
        len = add_once(&mut out, len, 9);
        len = add_once(&mut out, len, 11);
        len = add_once(&mut out, len, 12);
        assert_eq!(&out[..len], &[7, 9, 11]);
    }

    #[test]
    fn decimal_pids_in_proc_paths() {
        let mut buf = [0u8; 16];
        let at = put_decimal(&mut buf, 0, 40213);
        assert_eq!(&buf[..at], b"40213");
        let at = put_decimal(&mut buf, 0, 0);
        assert_eq!(&buf[..at], b"0");
    }
}
