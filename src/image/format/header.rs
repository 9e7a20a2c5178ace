//! The 24-byte header the manifest and the index share, and the length
//! checks both files get.

use super::error::ImageError;
use super::layout::{HEADER_LEN, IMAGE_FORMAT_VERSION};
use std::path::Path;

/// Appends the 24-byte header the manifest and the index share: magic,
/// format version, a zero reserved field and `length`.
pub(super) fn push_header(out: &mut Vec<u8>, magic: &[u8; 8], length: u64) {
    out.extend_from_slice(magic);
    out.extend_from_slice(&IMAGE_FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&length.to_le_bytes());
}

/// Refuses a file whose length differs from the one recorded for it.
pub(super) fn check_len(
    what: &'static str,
    path: &Path,
    expected: u64,
    found: u64,
) -> Result<(), ImageError> {
    if found < expected {
        return Err(ImageError::Truncated {
            what,
            path: path.to_path_buf(),
            expected,
            found,
        });
    }
    if found > expected {
        return Err(ImageError::Corrupt {
            what,
            path: path.to_path_buf(),
            detail: format!(
                "it has {found} bytes, {} more than the expected {expected}",
                found - expected
            ),
        });
    }
    Ok(())
}

/// The little-endian u64 at byte `at` of `bytes`; callers pass fixed-size
/// headers and records, so the range is always inside.
pub(super) fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// The fields of the 24-byte header shared by the manifest and the index.
pub(super) struct Header {
    magic: [u8; 8],
    version: u32,
    reserved: u32,
    /// The u64 after them: the manifest body's length, or the index's
    /// record count.
    pub(super) length: u64,
}

impl Header {
    /// Splits a header into its fields (checked by `check`).
    pub(super) fn parse(bytes: &[u8; HEADER_LEN]) -> Self {
        let mut magic = [0u8; 8];
        magic.copy_from_slice(&bytes[..8]);
        Self {
            magic,
            version: u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]),
            reserved: u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]),
            length: u64_at(bytes, 16),
        }
    }

    /// Checks magic, version and reserved field, in that order so that a
    /// file of another kind or version gets the most telling message.
    pub(super) fn check(
        &self,
        magic: &[u8; 8],
        what: &'static str,
        name_path: &Path,
        file: &'static str,
        path: &Path,
    ) -> Result<(), ImageError> {
        if &self.magic != magic {
            return Err(ImageError::BadMagic {
                what,
                path: name_path.to_path_buf(),
            });
        }
        if self.version != IMAGE_FORMAT_VERSION {
            return Err(ImageError::UnsupportedVersion {
                what,
                path: name_path.to_path_buf(),
                found: self.version,
            });
        }
        if self.reserved != 0 {
            return Err(ImageError::Corrupt {
                what: file,
                path: path.to_path_buf(),
                detail: format!("its reserved header field is {:#x}, not 0", self.reserved),
            });
        }
        Ok(())
    }
}
