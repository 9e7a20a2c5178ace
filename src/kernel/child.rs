//! Short-lived children forked to try a mechanism on (ptrace, pidfd,
//! namespaces): the fork and everything the child runs are here, so the
//! code that runs after fork in a multi-threaded process is kept to raw,
//! async-signal-safe system calls.

use nix::errno::Errno;
use nix::unistd::{ForkResult, Pid};

/// What a child forked by `fork_child` does until it exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildTask {
    /// Sleeps in pause() until a signal kills it: a process to be traced,
    /// read or have its fds taken.
    IdleUntilKilled,
    /// Calls unshare(CLONE_NEWTIME) and exits with 0 when it works, else
    /// with its errno.
    UnshareTimeNamespace,
}

/// Forks a child that runs `task`. The child gets SIGKILL if the calling
/// thread dies, so it cannot outlive its parent; it exits with 127 when the
/// parent is already gone. Returns the child's PID.
pub fn fork_child(task: ChildTask) -> Result<Pid, Errno> {
    let parent = std::process::id();
    // SAFETY: the child only makes async-signal-safe calls (prctl, getppid,
    // pause or unshare, and _exit); it takes no lock and does not allocate.
    match unsafe { nix::unistd::fork() }? {
        ForkResult::Child => {
            // SAFETY: raw system calls in the freshly forked child.
            unsafe {
                libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0,
                    0,
                    0,
                );
                if libc::getppid() as u32 != parent {
                    libc::_exit(127);
                }
                libc::_exit(run(task))
            }
        }
        ForkResult::Parent { child } => Ok(child),
    }
}

/// Runs `task` in a forked child and returns its exit code.
fn run(task: ChildTask) -> i32 {
    match task {
        ChildTask::IdleUntilKilled => loop {
            // SAFETY: pause is async-signal-safe and touches no memory.
            unsafe { libc::pause() };
        },
        ChildTask::UnshareTimeNamespace => {
            // SAFETY: unshare is a plain system call; errno is read right
            // after.
            let ret = unsafe { libc::unshare(libc::CLONE_NEWTIME) };
            if ret == 0 {
                0
            } else {
                Errno::last_raw()
            }
        }
    }
}

/// clone3 with set_tid and extra `flags` (CLONE_NEWPID with `pid` 1 makes
/// the child PID 1 of a new PID namespace): the child exits at once with the
/// PID it sees itself as (getpid), which tells whether set_tid was obeyed.
/// Returns the child's PID as the caller sees it.
pub fn clone_reporting_own_pid(flags: u64, pid: i32) -> Result<Pid, Errno> {
    // SAFETY: the child only calls raw getpid and _exit.
    let ret = unsafe { super::fork_with_pid(flags, pid) };
    if ret == 0 {
        // SAFETY: in the child: raw getpid and _exit, both async-signal-safe.
        unsafe { libc::_exit(libc::syscall(libc::SYS_getpid) as i32) }
    }
    Errno::result(ret).map(|pid| Pid::from_raw(pid as i32))
}
