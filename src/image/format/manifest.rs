//! The manifest: the checkpoint model and the lengths and checksums of the
//! other two files, written last so that its presence means the image is
//! complete.

use super::error::{io_err, ImageError};
use super::header::{check_len, push_header, Header};
use super::layout::{CHECKSUM_LEN, HEADER_LEN, MANIFEST_FILE, MANIFEST_MAGIC, MAX_MANIFEST_BODY};
use crate::image::model::Checkpoint;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use xxhash_rust::xxh3::xxh3_64;

/// The manifest body: the checkpoint plus what is needed to verify the two
/// other files. Public so `image show` can print its header fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The checkpointed process and host.
    pub checkpoint: Checkpoint,
    /// Length of pages.img in bytes.
    pub pages_len: u64,
    /// xxh3-64 of pages.img.
    pub pages_xxh3: u64,
    /// Length of pages.idx in bytes.
    pub index_len: u64,
    /// xxh3-64 of pages.idx.
    pub index_xxh3: u64,
    /// When the image was committed, in seconds since the Unix epoch.
    pub created_unix_secs: u64,
    /// Version of the ferry that wrote the image, for messages.
    pub ferry_version: String,
}

/// Wraps an encoded manifest body in its header and checksum.
pub(super) fn frame_manifest(body: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(HEADER_LEN + body.len() + CHECKSUM_LEN);
    push_header(&mut bytes, MANIFEST_MAGIC, body.len() as u64);
    bytes.extend_from_slice(body);
    bytes.extend_from_slice(&xxh3_64(body).to_le_bytes());
    bytes
}

/// Reads, checks and decodes the manifest of the image in `dir`.
pub(super) fn read_manifest(dir: &Path) -> Result<Manifest, ImageError> {
    const WHAT: &str = "manifest";
    let path = dir.join(MANIFEST_FILE);
    let mut file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(ImageError::NoManifest {
                dir: dir.to_path_buf(),
            })
        }
        Err(e) => return Err(io_err("open", &path)(e)),
    };
    let file_len = file.metadata().map_err(io_err("stat", &path))?.len();
    let mut header = [0u8; HEADER_LEN];
    if file_len < HEADER_LEN as u64 {
        return Err(ImageError::Truncated {
            what: WHAT,
            path,
            expected: HEADER_LEN as u64,
            found: file_len,
        });
    }
    file.read_exact(&mut header)
        .map_err(io_err("read", &path))?;
    let header = Header::parse(&header);
    header.check(MANIFEST_MAGIC, "image", dir, WHAT, &path)?;
    if header.length > MAX_MANIFEST_BODY {
        return Err(ImageError::Corrupt {
            what: WHAT,
            path,
            detail: format!(
                "it declares a body of {} bytes, more than the {MAX_MANIFEST_BODY} a manifest may hold",
                header.length
            ),
        });
    }
    let expected = (HEADER_LEN + CHECKSUM_LEN) as u64 + header.length;
    check_len(WHAT, &path, expected, file_len)?;

    let mut body = vec![0u8; header.length as usize];
    file.read_exact(&mut body).map_err(io_err("read", &path))?;
    let mut stored = [0u8; CHECKSUM_LEN];
    file.read_exact(&mut stored)
        .map_err(io_err("read", &path))?;
    let stored = u64::from_le_bytes(stored);
    let found = xxh3_64(&body);
    if found != stored {
        return Err(ImageError::ChecksumMismatch {
            what: WHAT,
            path,
            found,
            expected: stored,
            reference: "the stored",
        });
    }
    match postcard::take_from_bytes::<Manifest>(&body) {
        Ok((manifest, [])) if manifest.checkpoint.processes.is_empty() => {
            Err(ImageError::Corrupt {
                what: WHAT,
                path,
                detail: "it holds no process".into(),
            })
        }
        Ok((manifest, [])) => Ok(manifest),
        Ok((_, rest)) => Err(ImageError::Corrupt {
            what: WHAT,
            path,
            detail: format!("{} bytes follow the manifest body", rest.len()),
        }),
        Err(e) => Err(ImageError::Corrupt {
            what: WHAT,
            path,
            detail: format!("its body does not decode: {e}"),
        }),
    }
}
