//! SysV shared memory calls (shmget, shmctl) that nix lacks, and running
//! work inside the IPC namespace of another process: segments, their IDs
//! and /proc/sys/kernel/shm_next_id belong to an IPC namespace, and the
//! calling thread's namespace is the one they act on.

use nix::errno::Errno;
use nix::sched::CloneFlags;
use std::fs::File;

/// Runs `f` in the IPC namespace of process `pid`: here when it is ours,
/// else on a thread of its own that enters it first (an IPC namespace is
/// per thread; the thread ends with `f`, so nothing else runs in it).
pub fn in_ipc_namespace<T: Send>(pid: i32, f: impl FnOnce() -> T + Send) -> std::io::Result<T> {
    let path = format!("/proc/{pid}/ns/ipc");
    if std::fs::read_link(&path)? == std::fs::read_link("/proc/self/ns/ipc")? {
        return Ok(f());
    }
    let ns = File::open(&path)?;
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                nix::sched::setns(ns, CloneFlags::CLONE_NEWIPC)?;
                Ok(f())
            })
            .join()
            .map_err(|_| std::io::Error::other("the thread in the IPC namespace panicked"))?
    })
}

/// shmget(key, size, flags): the segment's ID.
pub fn shm_get(key: i32, size: u64, flags: i32) -> Result<i32, Errno> {
    // SAFETY: shmget takes only integers.
    Errno::result(unsafe { libc::shmget(key, size as usize, flags) })
}

/// Gives segment `shmid` its owner and permission bits (IPC_STAT, then
/// IPC_SET with them changed).
pub fn shm_set_owner(shmid: i32, uid: u32, gid: u32, mode: u32) -> Result<(), Errno> {
    // SAFETY: shmid_ds is plain data; all-zero is a valid value.
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: ds is a live shmid_ds the kernel fills.
    Errno::result(unsafe { libc::shmctl(shmid, libc::IPC_STAT, &mut ds) })?;
    ds.shm_perm.uid = uid;
    ds.shm_perm.gid = gid;
    ds.shm_perm.mode = (mode & 0o777) as _;
    // SAFETY: ds is a live shmid_ds the kernel reads.
    Errno::result(unsafe { libc::shmctl(shmid, libc::IPC_SET, &mut ds) })?;
    Ok(())
}

/// Marks segment `shmid` for removal (IPC_RMID): it goes away with its
/// last detach, at once if nothing attaches it.
pub fn shm_remove(shmid: i32) -> Result<(), Errno> {
    // SAFETY: IPC_RMID does not touch the buffer argument.
    Errno::result(unsafe { libc::shmctl(shmid, libc::IPC_RMID, std::ptr::null_mut()) })?;
    Ok(())
}

/// Makes the next segment created in this thread's IPC namespace get ID
/// `shmid` (/proc/sys/kernel/shm_next_id; used once, then reset by the
/// kernel).
pub fn set_shm_next_id(shmid: i32) -> std::io::Result<()> {
    std::fs::write("/proc/sys/kernel/shm_next_id", shmid.to_string())
}
