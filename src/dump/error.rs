//! Why a checkpoint failed: the one error type of every dump file, kept
//! apart from the orchestration in mod.rs so that each resource file
//! imports it without importing mod.rs. The refusals of inspection pass
//! through unchanged as [`CheckpointError::Inspect`].

use crate::image::ImageError;
use crate::inspect::InspectError;
use crate::proc::ProcError;
use crate::ptrace::PtraceError;

/// Why a checkpoint failed. In every case every process of the tree is
/// left running, untouched and detached.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Inspection refused a resource of the tree, or could not read it.
    #[error(transparent)]
    Inspect(#[from] InspectError),
    /// The network lock of the tree's TCP connections failed (or cannot
    /// be made: nft is missing).
    #[error(transparent)]
    NetLock(#[from] crate::netlock::NetLockError),
    /// Live migration of a tree with a PID namespace of its own.
    #[error("process {pid} is the init of a PID namespace of its own: its tree can be checkpointed and restored (a new PID namespace is made), but not migrated yet")]
    PidNamespaceNotMigrated {
        /// The namespace's init.
        pid: i32,
    },
    /// A system call injected into the process failed.
    #[error("{call} injected into thread {tid} of process {pid} failed: {errno}")]
    Injected {
        /// The process.
        pid: i32,
        /// The thread.
        tid: i32,
        /// The call, with its arguments.
        call: String,
        /// The error it returned.
        errno: nix::errno::Errno,
    },
    /// The process has no [vdso], so ferry has no system call instruction
    /// to run its queries with.
    #[error("process {pid} has no [vdso] mapping with a syscall instruction")]
    NoVdso {
        /// The process.
        pid: i32,
    },
    /// Reading /proc failed.
    #[error(transparent)]
    Proc(#[from] ProcError),
    /// ptrace failed.
    #[error(transparent)]
    Ptrace(#[from] PtraceError),
    /// Writing the image failed.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// Dirty-page tracking failed.
    #[error(transparent)]
    Tracking(#[from] crate::memory::DirtyTrackingError),
    /// The sink (the destination agent, in a migration) failed.
    #[error("cannot {what}: {why}")]
    Sink {
        /// What was being done, with the peer.
        what: String,
        /// Why it failed.
        why: String,
    },
    /// Some other I/O failed.
    #[error("cannot {what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}
