//! Why an image could not be written or read.

use super::layout::IMAGE_FORMAT_VERSION;
use std::io;
use std::path::{Path, PathBuf};

/// Why an image could not be written or read. Messages are sentences that
/// name the file and the values involved; an underlying OS or encoder error
/// is the `source()`, so print the chain (`{:#}` with anyhow).
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A system call on an image file failed.
    #[error("cannot {op} {path}")]
    Io {
        /// What was being done ("create", "read", "fsync" ...).
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// [`ImageWriter::create`] was given a directory that already has files.
    #[error("cannot write an image into {dir}: the directory is not empty")]
    DirNotEmpty {
        /// The directory.
        dir: PathBuf,
    },
    /// The manifest is missing: the checkpoint did not finish.
    #[error("image {dir} is incomplete: it has no manifest (was the checkpoint interrupted?)")]
    NoManifest {
        /// The image directory.
        dir: PathBuf,
    },
    /// A file does not start with the expected magic bytes.
    #[error("{path} is not a ferry {what} (bad magic)")]
    BadMagic {
        /// "image" or "page index".
        what: &'static str,
        /// The directory (for the manifest) or file.
        path: PathBuf,
    },
    /// A file was written by another version of the format.
    #[error(
        "{what} {path} was written by format version {found}; \
         this ferry reads version {IMAGE_FORMAT_VERSION}"
    )]
    UnsupportedVersion {
        /// "image" or "page index".
        what: &'static str,
        /// The directory (for the manifest) or file.
        path: PathBuf,
        /// The version in the file.
        found: u32,
    },
    /// A file is shorter than its header or the manifest says.
    #[error("{what} {path} is truncated: expected {expected} bytes, found {found}")]
    Truncated {
        /// "manifest", "page index" or "pages file".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The length it should have.
        expected: u64,
        /// The length it has.
        found: u64,
    },
    /// A file's contents do not match their recorded checksum.
    #[error("{what} {path} is corrupt: checksum {found:#018x} does not match {reference} {expected:#018x}")]
    ChecksumMismatch {
        /// "manifest", "page index" or "pages file".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The checksum computed from the contents.
        found: u64,
        /// The checksum recorded for them.
        expected: u64,
        /// Where `expected` was recorded ("the manifest's", "the stored").
        reference: &'static str,
    },
    /// A file is structurally invalid (bad length, out-of-bounds record ...).
    #[error("{what} {path} is corrupt: {detail}")]
    Corrupt {
        /// "manifest", "page index" or "pages file".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong, with the values involved.
        detail: String,
    },
    /// The dumper passed pages that cannot be recorded (a bug in the caller).
    #[error("cannot record pages at {vaddr:#x} of process {pid} in image {dir}: {detail}")]
    InvalidPages {
        /// The image directory.
        dir: PathBuf,
        /// The process the pages belong to.
        pid: i32,
        /// The address the caller passed.
        vaddr: u64,
        /// What is wrong with the request.
        detail: String,
    },
    /// The checkpoint could not be encoded (should not happen with the model).
    #[error("cannot encode the manifest of image {dir}")]
    Encode {
        /// The image directory.
        dir: PathBuf,
        /// The encoder's error.
        #[source]
        source: postcard::Error,
    },
}

/// Builds an [`ImageError::Io`] from a path and an operation name.
pub(super) fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> ImageError + 'a {
    move |source| ImageError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}
