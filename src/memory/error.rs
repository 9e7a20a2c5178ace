//! Why dirty tracking could not be set up or read.

use nix::errno::Errno;

/// Why dirty tracking could not be set up or read.
#[derive(Debug, thiserror::Error)]
pub enum DirtyTrackingError {
    /// A userfaultfd or PAGEMAP_SCAN ioctl failed.
    #[error("{op} for process {pid} failed: {errno}")]
    Kernel {
        /// The operation, with the range it covered.
        op: String,
        /// The tracked process.
        pid: i32,
        /// The error.
        errno: Errno,
    },
    /// The kernel lacks a feature the backend needs.
    #[error("dirty tracking of process {pid} needs {feature}, which this kernel does not offer")]
    Unsupported {
        /// The tracked process.
        pid: i32,
        /// The missing feature.
        feature: &'static str,
    },
    /// /proc/PID/pagemap could not be opened.
    #[error("cannot open /proc/{pid}/pagemap: {source}")]
    Pagemap {
        /// The tracked process.
        pid: i32,
        /// The error.
        source: std::io::Error,
    },
    /// /proc/PID/pagemap could not be read over a tracked range.
    #[error("cannot read /proc/{pid}/pagemap over {start:#x}-{end:#x}: {source}")]
    PagemapRead {
        /// The tracked process.
        pid: i32,
        /// Start of the range.
        start: u64,
        /// End of the range.
        end: u64,
        /// The error.
        source: std::io::Error,
    },
    /// Writing "4" to /proc/PID/clear_refs (clear the soft-dirty bits) failed.
    #[error(
        "cannot clear the soft-dirty bits of process {pid} (/proc/{pid}/clear_refs): {source}"
    )]
    ClearRefs {
        /// The tracked process.
        pid: i32,
        /// The error.
        source: std::io::Error,
    },
    /// No dirty-page tracker works on this kernel.
    #[error("no dirty-page tracker works on this kernel (neither userfaultfd write-protect with WP_ASYNC and PAGEMAP_SCAN nor soft-dirty): process {pid} is copied while frozen")]
    NoBackend {
        /// The process that was to be tracked.
        pid: i32,
    },
}
