//! Names and sizes of the image files and of their headers and records:
//! the constants both the writer and the reader follow.

/// Version of the image directory format that this ferry writes and reads;
/// bumped on any incompatible change so an old ferry refuses a new image.
pub const IMAGE_FORMAT_VERSION: u32 = 9;

pub(super) const PAGES_FILE: &str = "pages.img";
pub(super) const INDEX_FILE: &str = "pages.idx";
pub(super) const MANIFEST_FILE: &str = "manifest";
pub(super) const MANIFEST_TMP_FILE: &str = "manifest.tmp";

pub(super) const MANIFEST_MAGIC: &[u8; 8] = b"FERRYIMG";
pub(super) const INDEX_MAGIC: &[u8; 8] = b"FERRYIDX";
/// Both files start with magic, u32 version, u32 reserved and a u64.
pub(super) const HEADER_LEN: usize = 24;
pub(super) const RECORD_LEN: usize = 32;
pub(super) const CHECKSUM_LEN: usize = 8;
/// Index record flag: the run is all-zero pages with no payload.
pub(super) const FLAG_ZERO: u64 = 1;
/// The flags word holds the run's PID from this bit on.
pub(super) const FLAG_PID_SHIFT: u32 = 32;

/// The largest manifest body accepted, so a corrupt length cannot make the
/// reader allocate without bound.
pub(super) const MAX_MANIFEST_BODY: u64 = 256 << 20;
/// The largest index accepted (32 Mi records), for the same reason.
pub(super) const MAX_INDEX_LEN: u64 = 1 << 30;
/// Size of the pages.img write buffer and of each read chunk: big enough
/// that system call overhead vanishes, small enough to stay cache-friendly.
pub(super) const IO_CHUNK: usize = 8 << 20;
/// Buffer for small page writes; larger ones (the dumper's batches) go
/// straight to the file instead of being copied through it.
pub(super) const WRITE_BUFFER: usize = 256 << 10;
