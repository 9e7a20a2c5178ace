//! The image directory format: manifest (written last), pages file, index.
//!
//! An image is a directory of three files:
//!
//! - `pages.img`: raw page contents of every process of the tree, 4096-byte
//!   pages concatenated in the order the dumper wrote them.
//! - `pages.idx`: a little-endian header (`FERRYIDX`, u32 version, u32
//!   reserved, u64 record count) and 32-byte records (vaddr, npages, offset
//!   into pages.img, flags; flag bit 0 marks an all-zero run without
//!   payload, bits 32-63 hold the PID of the process the run belongs to).
//! - `manifest`: `FERRYIMG`, u32 version, u32 reserved, u64 body length, a
//!   postcard [`Manifest`] body and the xxh3-64 of that body. It is written
//!   last, through a rename, so its presence means the image is complete.
//!
//! Every integer is little-endian. The manifest records the length and the
//! xxh3-64 of the two other files, so any corruption is detected: the index
//! at [`ImageReader::open`], the pages while [`ImageReader::read_pages`]
//! streams them.

mod error;
mod header;
mod index;
mod layout;
mod manifest;
mod reader;
#[cfg(test)]
mod tests;
mod writer;

pub use error::ImageError;
pub use index::PageRun;
pub use layout::IMAGE_FORMAT_VERSION;
pub use manifest::Manifest;
pub use reader::{ImageReader, PageData};
pub use writer::{is_committed, sync_image, ImageSummary, ImageWriter};
