//! Why a rootfs sync step failed, on either side.

/// Why walking, reading or applying a rootfs failed.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// The bundle's config.json could not be read or has no root.path.
    #[error("cannot find the rootfs of bundle {bundle}: {why}")]
    Config {
        /// The bundle.
        bundle: String,
        /// Why.
        why: String,
    },
    /// A file of the rootfs could not be read or written.
    #[error("rootfs {root}: {path}: {why}")]
    Io {
        /// The rootfs.
        root: String,
        /// The path below it.
        path: String,
        /// The system's reason.
        why: String,
    },
    /// The peer sent something ferry refuses to apply.
    #[error("refused a rootfs change for {path:?}: {why}")]
    Refused {
        /// The path as received (lossy).
        path: String,
        /// Why.
        why: &'static str,
    },
}
