//! The image reader: manifest, page index and pages file. With an even
//! first byte the three files are written as given; with an odd one the
//! input holds a checkpoint body, index records and pages, and the target
//! frames them with correct headers, lengths and checksums, so that the
//! decoders behind the checksums are reached too.
#![no_main]

use ferry::image::format::{Manifest, IMAGE_FORMAT_VERSION};
use ferry::image::{Checkpoint, ImageError, ImageReader};
use std::path::Path;
use xxhash_rust::xxh3::xxh3_64;

/// One part of the input: a u16 little-endian length, then that many bytes
/// (fewer if the input ends).
fn part(input: &[u8]) -> (&[u8], &[u8]) {
    let Some((len, rest)) = input.split_first_chunk::<2>() else {
        return (&[], &[]);
    };
    rest.split_at(usize::from(u16::from_le_bytes(*len)).min(rest.len()))
}

/// The 24-byte header of the manifest and the index.
fn header(magic: &[u8; 8], length: u64) -> Vec<u8> {
    let mut out = magic.to_vec();
    out.extend_from_slice(&IMAGE_FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&length.to_le_bytes());
    out
}

/// The three files, checksummed, or None when the body is no checkpoint.
fn framed(body: &[u8], records: &[u8], pages: &[u8]) -> Option<[Vec<u8>; 3]> {
    let checkpoint: Checkpoint = postcard::from_bytes(body).ok()?;
    let mut index = header(b"FERRYIDX", (records.len() / 32) as u64);
    index.extend_from_slice(records);
    let manifest = Manifest {
        checkpoint,
        pages_len: pages.len() as u64,
        pages_xxh3: xxh3_64(pages),
        index_len: index.len() as u64,
        index_xxh3: xxh3_64(&index),
        created_unix_secs: 0,
        ferry_version: String::new(),
    };
    let body = postcard::to_allocvec(&manifest).ok()?;
    let mut file = header(b"FERRYIMG", body.len() as u64);
    file.extend_from_slice(&body);
    file.extend_from_slice(&xxh3_64(&body).to_le_bytes());
    Some([file, index, pages.to_vec()])
}

fn read(dir: &Path) {
    if let Ok(reader) = ImageReader::open(dir) {
        let _ = reader.read_pages::<ImageError>(|_, _, _| Ok(()));
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (first, rest) = part(rest);
    let (second, third) = part(rest);
    let files = if mode & 1 == 0 {
        [first.to_vec(), second.to_vec(), third.to_vec()]
    } else {
        match framed(first, second, third) {
            Some(files) => files,
            None => return,
        }
    };
    let dir = tempfile::tempdir_in("/dev/shm").expect("a directory in /dev/shm");
    for (name, bytes) in ["manifest", "pages.idx", "pages.img"].iter().zip(&files) {
        std::fs::write(dir.path().join(name), bytes).expect("writing to /dev/shm");
    }
    read(dir.path());
});
