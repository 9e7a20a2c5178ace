//! Why a restore fails: one error type for the whole restore side, in its
//! own file so that every part of the restore imports it without
//! importing restore/mod.rs (which re-exports it).

use crate::image::ImageError;
use crate::ptrace::PtraceError;
use nix::errno::Errno;

/// Why a restore failed. In every case nothing of the restored tree is
/// left running.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The image is unreadable, truncated, corrupt or foreign.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// A PID or TID of the image is in use on this host.
    #[error("cannot restore: PID {pid} is taken by {holder} on this host")]
    PidTaken {
        /// The PID.
        pid: i32,
        /// Who holds it (comm and PID).
        holder: String,
    },
    /// This CPU cannot load the saved register state.
    #[error("cannot restore on this CPU: the image was taken with XSAVE features {image} (XCR0 {image_xcr0:#x}, {image_size} bytes) and this host has {host} (XCR0 {host_xcr0:#x}, {host_size} bytes)")]
    CpuMismatch {
        /// Features of the image's host.
        image: String,
        /// Its XCR0.
        image_xcr0: u64,
        /// Its xstate size.
        image_size: u32,
        /// Features of this host.
        host: String,
        /// This host's XCR0.
        host_xcr0: u64,
        /// This host's xstate size.
        host_size: u32,
    },
    /// The vDSO differs: the restored code would call into other code.
    #[error("cannot restore: this kernel's vDSO ({host_len} bytes, hash {host_hash:#x}) differs from the checkpointing kernel's {kernel} ({image_len} bytes, hash {image_hash:#x}); restore on the same kernel build")]
    VdsoMismatch {
        /// The checkpointing kernel release.
        kernel: String,
        /// Image vDSO length.
        image_len: u64,
        /// Image vDSO hash.
        image_hash: u64,
        /// Host vDSO length.
        host_len: u64,
        /// Host vDSO hash.
        host_hash: u64,
    },
    /// A file the image maps or holds open is missing or changed.
    #[error("cannot restore: {path} {why}")]
    FileChanged {
        /// The file.
        path: String,
        /// What is wrong with it.
        why: String,
    },
    /// Creating the husk process failed.
    #[error("cannot create a process with PID {pid}: {errno}")]
    Spawn {
        /// The PID wanted.
        pid: i32,
        /// The error.
        errno: Errno,
    },
    /// A system call injected into the husk failed.
    #[error("restoring process {pid}: {call} failed: {errno}")]
    Injected {
        /// The process being restored.
        pid: i32,
        /// The call, with the values that matter.
        call: String,
        /// The error it returned.
        errno: Errno,
    },
    /// The image describes something this host cannot rebuild.
    #[error("cannot restore process {pid}: {why}")]
    Unsupported {
        /// The process.
        pid: i32,
        /// Why.
        why: String,
    },
    /// ptrace failed.
    #[error(transparent)]
    Ptrace(#[from] PtraceError),
    /// The tree's network namespace could not be made again or joined.
    #[error("cannot restore the network namespace of process {pid}: {why}")]
    Netns {
        /// The tree's root.
        pid: i32,
        /// What failed.
        why: String,
    },
    /// /proc could not be read.
    #[error(transparent)]
    Proc(#[from] crate::proc::ProcError),
    /// A SysV shared memory segment could not be recreated as it was.
    #[error("cannot restore SysV shared memory segment {shmid}: {why}")]
    SysvShm {
        /// The segment's saved shmid (-1 when the namespace was the
        /// problem).
        shmid: i32,
        /// What went wrong.
        why: String,
    },
    /// A task of the tree cannot be put back into its cgroup (the
    /// hierarchy cannot be found or mounted here, a directory cannot be
    /// made, a setting or the move is refused).
    #[error("cannot put process {pid} back into cgroup {path} of the cgroup hierarchy {hierarchy}: {why}")]
    Cgroup {
        /// The process (of the task: itself or one of its threads).
        pid: i32,
        /// The hierarchy, by its controllers or name ("name=zdtmtst",
        /// "cpu,cpuacct", "v2" for the unified one).
        hierarchy: String,
        /// The cgroup, from the hierarchy's root.
        path: String,
        /// What went wrong.
        why: String,
    },
    /// The restored tree could not be held frozen (a migration's
    /// destination holds it until the source decides).
    #[error("cannot hold the restored tree frozen in the freezer cgroup ferry/{name}: {source}")]
    Hold {
        /// The transient freezer cgroup's name.
        name: String,
        /// Why.
        source: crate::container::freezer::FreezerError,
    },
}
