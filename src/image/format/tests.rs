//! Round trips of the writer and the reader, and the reader's refusal of
//! every kind of damaged image.

use super::layout::{
    HEADER_LEN, INDEX_FILE, IO_CHUNK, MANIFEST_FILE, MANIFEST_TMP_FILE, MAX_MANIFEST_BODY,
    PAGES_FILE, RECORD_LEN,
};
use super::manifest::frame_manifest;
use super::*;
use crate::image::model::{Checkpoint, PAGE_SIZE};
use crate::image::testutil::{checkpoint_with_anon, rewrite_manifest, TempDir};
use std::fs::{self, File};
use std::path::Path;
use xxhash_rust::xxh3::xxh3_64;

const PAGE: usize = PAGE_SIZE as usize;
/// The PID of the sample checkpoint's process.
const P: i32 = 4242;

/// `npages` pages whose bytes depend on `seed` and the position.
fn pattern(seed: u8, npages: usize) -> Vec<u8> {
    (0..npages * PAGE)
        .map(|i| seed.wrapping_add((i % 251) as u8))
        .collect()
}

/// What read_pages delivered: (vaddr, bytes) or (vaddr, zero page count).
#[derive(Debug, PartialEq)]
enum Got {
    Bytes(u64, Vec<u8>),
    Zero(u64, u64),
}

fn read_all(reader: &ImageReader) -> Result<(u64, Vec<Got>), ImageError> {
    let mut got = Vec::new();
    let total = reader.read_pages(|_, vaddr, data| {
        got.push(match data {
            PageData::Bytes(b) => Got::Bytes(vaddr, b.to_vec()),
            PageData::Zero { npages } => Got::Zero(vaddr, npages),
        });
        Ok::<_, ImageError>(())
    })?;
    Ok((total, got))
}

/// The sample checkpoint with anonymous mappings over the addresses
/// the small images below write (0x10000-0x20000 and 0x40000-0x50000).
fn checkpoint() -> Checkpoint {
    checkpoint_with_anon(&[(0x10000, 0x20000), (0x40000, 0x50000)])
}

/// Writes a small image: two adjacent data runs (merged), a zero run,
/// a separate data run, and returns the directory. Its index holds, in
/// order: data 0x10000 (3 pages at offset 0), data 0x40000 (1 page at
/// offset 3 pages), zero 0x13000 (3 pages).
fn write_sample(tag: &str) -> TempDir {
    let dir = TempDir::new(tag);
    let mut w = ImageWriter::create(dir.path()).unwrap();
    w.write_pages(P, 0x10000, &pattern(1, 2)).unwrap();
    w.write_pages(P, 0x12000, &pattern(2, 1)).unwrap();
    w.write_zero_pages(P, 0x13000, 3).unwrap();
    w.write_pages(P, 0x40000, &pattern(3, 1)).unwrap();
    w.commit(&checkpoint()).unwrap();
    dir
}

/// Lets `edit` change the records of pages.idx (after its header), then
/// re-signs the index in the manifest so that only the record checks can
/// catch the change; returns what open says.
fn tamper_index(dir: &Path, edit: impl FnOnce(&mut [u8])) -> String {
    let idx_path = dir.join(INDEX_FILE);
    let mut idx = fs::read(&idx_path).unwrap();
    edit(&mut idx[HEADER_LEN..]);
    fs::write(&idx_path, &idx).unwrap();
    rewrite_manifest(dir, |m| m.index_xxh3 = xxh3_64(&idx));
    ImageReader::open(dir).unwrap_err().to_string()
}

/// Sets 64-bit word `word` (4 per record) of the index records.
fn set_word(records: &mut [u8], word: usize, value: u64) {
    records[word * 8..word * 8 + 8].copy_from_slice(&value.to_le_bytes());
}

fn flip_byte(path: &Path, at: u64) {
    let mut bytes = fs::read(path).unwrap();
    bytes[at as usize] ^= 0x40;
    fs::write(path, bytes).unwrap();
}

#[test]
fn round_trip_delivers_exact_pages_and_merges_adjacent_runs() {
    let dir = TempDir::new("roundtrip");
    let mut w = ImageWriter::create(dir.path()).unwrap();
    w.write_pages(P, 0x10000, &pattern(1, 2)).unwrap();
    w.write_pages(P, 0x12000, &pattern(2, 1)).unwrap();
    w.write_zero_pages(P, 0x13000, 3).unwrap();
    w.write_zero_pages(P, 0x16000, 1).unwrap();
    w.write_pages(P, 0x40000, &pattern(3, 1)).unwrap();
    w.write_pages(P, 0x41000, &[]).unwrap();
    let summary = w.commit(&checkpoint()).unwrap();
    assert_eq!(summary.pages_written, 4);
    assert_eq!(summary.zero_pages, 4);
    let on_disk: u64 = [PAGES_FILE, INDEX_FILE, MANIFEST_FILE]
        .iter()
        .map(|f| fs::metadata(dir.path().join(f)).unwrap().len())
        .sum();
    assert_eq!(summary.image_bytes, on_disk);
    assert!(!dir.path().join(MANIFEST_TMP_FILE).exists());

    let r = ImageReader::open(dir.path()).unwrap();
    assert_eq!(r.checkpoint(), &checkpoint());
    assert_eq!(r.dir(), dir.path());
    assert_eq!(r.manifest().ferry_version, env!("CARGO_PKG_VERSION"));
    // Data runs in file order, then the zero runs.
    assert_eq!(
        r.runs(),
        &[
            PageRun {
                pid: P,
                vaddr: 0x10000,
                npages: 3,
                offset: 0,
                zero: false
            },
            PageRun {
                pid: P,
                vaddr: 0x40000,
                npages: 1,
                offset: 3 * PAGE_SIZE,
                zero: false
            },
            PageRun {
                pid: P,
                vaddr: 0x13000,
                npages: 4,
                offset: 0,
                zero: true
            },
        ]
    );
    let mut first = pattern(1, 2);
    first.extend(pattern(2, 1));
    let (total, got) = read_all(&r).unwrap();
    assert_eq!(total, 8);
    assert_eq!(
        got,
        vec![
            Got::Bytes(0x10000, first),
            Got::Bytes(0x40000, pattern(3, 1)),
            Got::Zero(0x13000, 4),
        ]
    );
}

#[test]
fn big_runs_are_split_into_chunks_with_increasing_addresses() {
    let dir = TempDir::new("chunks");
    let npages = IO_CHUNK / PAGE * 2 + 3;
    let data = pattern(7, npages);
    let base = 0x7e00_0000_0000;
    let mut w = ImageWriter::create(dir.path()).unwrap();
    w.write_pages(P, base, &data).unwrap();
    w.commit(&checkpoint_with_anon(&[(base, base + data.len() as u64)]))
        .unwrap();

    let r = ImageReader::open(dir.path()).unwrap();
    let (total, got) = read_all(&r).unwrap();
    assert_eq!(total, npages as u64);
    assert_eq!(got.len(), 3);
    let mut expect_vaddr = base;
    let mut joined = Vec::new();
    for g in got {
        let Got::Bytes(vaddr, bytes) = g else {
            panic!("zero run")
        };
        assert_eq!(vaddr, expect_vaddr);
        assert!(bytes.len() <= IO_CHUNK);
        expect_vaddr += bytes.len() as u64;
        joined.extend(bytes);
    }
    assert!(joined == data);
}

#[test]
fn writer_refuses_bad_input_and_non_empty_dirs() {
    let dir = TempDir::new("writer");
    let mut w = ImageWriter::create(dir.path()).unwrap();
    let err = w.write_pages(P, 0x10001, &pattern(0, 1)).unwrap_err();
    assert!(err.to_string().contains("not page-aligned"), "{err}");
    let err = w.write_pages(P, 0x10000, &[0; 100]).unwrap_err();
    assert!(err.to_string().contains("100 bytes"), "{err}");
    let err = w.write_zero_pages(P, u64::MAX - 0xfff, 2).unwrap_err();
    assert!(
        err.to_string().contains("end of the address space"),
        "{err}"
    );
    drop(w);
    let err = ImageWriter::create(dir.path()).err().unwrap();
    assert!(matches!(err, ImageError::DirNotEmpty { .. }), "{err}");
}

#[test]
fn image_without_manifest_is_refused() {
    let dir = write_sample("nomanifest");
    fs::remove_file(dir.path().join(MANIFEST_FILE)).unwrap();
    let err = ImageReader::open(dir.path()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "image {} is incomplete: it has no manifest (was the checkpoint interrupted?)",
            dir.path().display()
        )
    );
}

#[test]
fn truncated_pages_file_is_refused() {
    let dir = write_sample("truncated");
    let pages = dir.path().join(PAGES_FILE);
    let len = fs::metadata(&pages).unwrap().len();
    File::options()
        .write(true)
        .open(&pages)
        .unwrap()
        .set_len(len - 1)
        .unwrap();
    let err = ImageReader::open(dir.path()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "pages file {} is truncated: expected {len} bytes, found {}",
            pages.display(),
            len - 1
        )
    );
}

#[test]
fn flipped_byte_in_pages_is_refused_by_read_pages() {
    let dir = write_sample("flippages");
    flip_byte(&dir.path().join(PAGES_FILE), 5000);
    let r = ImageReader::open(dir.path()).unwrap();
    let err = read_all(&r).unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::ChecksumMismatch {
                what: "pages file",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("does not match the manifest's 0x"),
        "{err}"
    );
}

#[test]
fn flipped_byte_in_index_is_refused_at_open() {
    let dir = write_sample("flipindex");
    flip_byte(&dir.path().join(INDEX_FILE), HEADER_LEN as u64 + 1);
    let err = ImageReader::open(dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::ChecksumMismatch {
                what: "page index",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn flipped_byte_in_manifest_body_is_refused() {
    let dir = write_sample("flipmanifest");
    flip_byte(&dir.path().join(MANIFEST_FILE), HEADER_LEN as u64 + 3);
    let err = ImageReader::open(dir.path()).unwrap_err();
    assert!(
        err.to_string().contains("does not match the stored"),
        "{err}"
    );
}

/// Rewrites the manifest header field at `at` with `bytes`.
fn patch_manifest(dir: &Path, at: usize, bytes: &[u8]) {
    let path = dir.join(MANIFEST_FILE);
    let mut m = fs::read(&path).unwrap();
    m[at..at + bytes.len()].copy_from_slice(bytes);
    fs::write(path, m).unwrap();
}

#[test]
fn manifest_with_bad_magic_is_refused() {
    let dir = write_sample("magic");
    patch_manifest(dir.path(), 0, b"NOTFERRY");
    let err = ImageReader::open(dir.path()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{} is not a ferry image (bad magic)", dir.path().display())
    );
}

#[test]
fn manifest_from_future_version_is_refused() {
    let dir = write_sample("version");
    let future = IMAGE_FORMAT_VERSION + 1;
    patch_manifest(dir.path(), 8, &future.to_le_bytes());
    let err = ImageReader::open(dir.path()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "image {} was written by format version {future}; this ferry reads version {}",
            dir.path().display(),
            IMAGE_FORMAT_VERSION
        )
    );
}

#[test]
fn manifest_with_huge_body_length_is_refused_without_allocating() {
    let dir = write_sample("huge");
    for len in [u64::MAX, MAX_MANIFEST_BODY + 1] {
        patch_manifest(dir.path(), 16, &len.to_le_bytes());
        let err = ImageReader::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("more than the"), "{err}");
    }
    // A plausible length that does not match the file is a truncation.
    patch_manifest(dir.path(), 16, &(1u64 << 20).to_le_bytes());
    let err = ImageReader::open(dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::Truncated {
                what: "manifest",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn index_records_out_of_bounds_are_refused() {
    // Record 0 is data at 0x10000, 3 pages at offset 0; record 1 data
    // at 0x40000, 1 page at offset 3 pages (the end of pages.img).
    fn tamper(tag: &str, record_word: usize, value: u64) -> String {
        let dir = write_sample(tag);
        tamper_index(dir.path(), |r| set_word(r, record_word, value))
    }
    assert!(tamper("unaligned", 0, 0x10010).contains("unaligned address 0x10010"));
    assert!(tamper("overflow", 1, u64::MAX / 2).contains("impossible page count"));
    assert!(tamper("zerocount", 1, 0).contains("impossible page count 0"));
    // A gap before record 0 is allowed, but its data then overlaps
    // record 1's in pages.img.
    let err = tamper("offset", 2, 4096);
    assert!(
        err.contains("record 1 at 0x40000 has data at offset 12288, before the end 16384"),
        "{err}"
    );
    assert!(tamper("flags", 3, 6).contains("unknown flags 0x6"));
    assert!(tamper("beyond", 1, 5).contains("beyond the 16384 bytes"));
    // A gap that pushes the last record past the end of pages.img.
    let err = tamper("lastbeyond", 6, 4 * PAGE_SIZE);
    assert!(
        err.contains("record 1 at 0x40000 has 1 pages at offset 16384, beyond the"),
        "{err}"
    );
}

#[test]
fn records_overlapping_in_address_are_refused() {
    // Record 1 (data, 1 page) moved into record 0's 0x10000-0x13000.
    let dir = write_sample("overlapdata");
    let err = tamper_index(dir.path(), |r| set_word(r, 4, 0x12000));
    assert!(
        err.contains("records at 0x10000 and 0x12000 of process 4242 overlap"),
        "{err}"
    );
    // The zero run (record 2, 0x13000) stretched over record 1 at 0x40000,
    // which is not its neighbour in the index.
    let dir = write_sample("overlapzero");
    let err = tamper_index(dir.path(), |r| set_word(r, 9, 0x2e));
    assert!(err.contains("overlap"), "{err}");
    assert!(err.contains("0x13000 and 0x40000"), "{err}");
    // Touching is not overlapping: a zero run right after record 1.
    let dir = write_sample("touching");
    let idx_path = dir.path().join(INDEX_FILE);
    let mut idx = fs::read(&idx_path).unwrap();
    set_word(&mut idx[HEADER_LEN..], 8, 0x41000);
    fs::write(&idx_path, &idx).unwrap();
    rewrite_manifest(dir.path(), |m| m.index_xxh3 = xxh3_64(&idx));
    let r = ImageReader::open(dir.path()).unwrap();
    assert_eq!(read_all(&r).unwrap().0, 7);
}

#[test]
fn data_records_out_of_file_order_are_refused() {
    // Swap records 0 and 1: record 1 then starts before record 0 ends.
    let dir = write_sample("order");
    let err = tamper_index(dir.path(), |r| {
        let (first, rest) = r.split_at_mut(RECORD_LEN);
        first.swap_with_slice(&mut rest[..RECORD_LEN]);
    });
    assert!(
        err.contains("record 1 at 0x10000 has data at offset 0, before the end 16384"),
        "{err}"
    );
    // Two records sharing bytes of pages.img are refused the same way.
    let dir = write_sample("shared");
    let err = tamper_index(dir.path(), |r| set_word(r, 6, 2 * PAGE_SIZE));
    assert!(err.contains("offset 8192, before the end 12288"), "{err}");
}

/// Every page that read_pages delivers, by address (a zero page as 4096
/// zero bytes), checking that no address comes twice.
fn pages_by_addr(got: &[Got]) -> std::collections::BTreeMap<u64, Vec<u8>> {
    let mut pages = std::collections::BTreeMap::new();
    for g in got {
        let (vaddr, bytes) = match g {
            Got::Bytes(vaddr, bytes) => (*vaddr, bytes.clone()),
            Got::Zero(vaddr, npages) => (*vaddr, vec![0; *npages as usize * PAGE]),
        };
        for (i, page) in bytes.chunks(PAGE).enumerate() {
            let at = vaddr + (i * PAGE) as u64;
            assert!(pages.insert(at, page.to_vec()).is_none(), "{at:#x} twice");
        }
    }
    pages
}

#[test]
fn a_page_written_twice_reads_back_as_its_last_copy() {
    let dir = TempDir::new("twice");
    let first = pattern(1, 3);
    let mut w = ImageWriter::create(dir.path()).unwrap();
    // Data then data: the middle page of a 3-page run is copied again.
    w.write_pages(P, 0x10000, &first).unwrap();
    w.write_pages(P, 0x11000, &pattern(9, 1)).unwrap();
    // Data then zero.
    w.write_pages(P, 0x14000, &pattern(2, 2)).unwrap();
    w.write_zero_pages(P, 0x15000, 1).unwrap();
    // Zero then data.
    w.write_zero_pages(P, 0x18000, 2).unwrap();
    w.write_pages(P, 0x18000, &pattern(3, 1)).unwrap();
    w.commit(&checkpoint()).unwrap();

    let r = ImageReader::open(dir.path()).unwrap();
    assert_eq!(r.manifest().pages_len, 7 * PAGE_SIZE);
    let data = |vaddr, page: u64| PageRun {
        pid: P,
        vaddr,
        npages: 1,
        offset: page * PAGE_SIZE,
        zero: false,
    };
    let zero = |vaddr| PageRun {
        pid: P,
        vaddr,
        npages: 1,
        offset: 0,
        zero: true,
    };
    // pages.img: 0x10000-0x12fff, 0x11000 again, 0x14000-0x15fff,
    // 0x18000; pages 1 and 5 are superseded and read by nobody.
    assert_eq!(
        r.runs(),
        &[
            data(0x10000, 0),
            data(0x12000, 2),
            data(0x11000, 3),
            data(0x14000, 4),
            data(0x18000, 6),
            zero(0x15000),
            zero(0x19000),
        ]
    );
    let (total, got) = read_all(&r).unwrap();
    assert_eq!(total, 7);
    let pages = pages_by_addr(&got);
    let expect: [(u64, Vec<u8>); 7] = [
        (0x10000, first[..PAGE].to_vec()),
        (0x11000, pattern(9, 1)),
        (0x12000, first[2 * PAGE..].to_vec()),
        (0x14000, pattern(2, 2)[..PAGE].to_vec()),
        (0x15000, vec![0; PAGE]),
        (0x18000, pattern(3, 1)),
        (0x19000, vec![0; PAGE]),
    ];
    assert!(pages.into_iter().eq(expect), "{got:?}");

    // The superseded bytes still count in the checksum.
    for page in [1, 5] {
        flip_byte(&dir.path().join(PAGES_FILE), page * PAGE_SIZE + 100);
        let r = ImageReader::open(dir.path()).unwrap();
        let err = read_all(&r).unwrap_err();
        assert!(
            matches!(
                err,
                ImageError::ChecksumMismatch {
                    what: "pages file",
                    ..
                }
            ),
            "{err}"
        );
        flip_byte(&dir.path().join(PAGES_FILE), page * PAGE_SIZE + 100);
        assert!(read_all(&r).is_ok());
    }
}

#[test]
fn superseded_bytes_at_the_end_of_pages_img_are_checksummed() {
    let dir = TempDir::new("tail");
    let mut w = ImageWriter::create(dir.path()).unwrap();
    w.write_pages(P, 0x10000, &pattern(4, 1)).unwrap();
    w.write_pages(P, 0x11000, &pattern(5, 2)).unwrap();
    w.write_zero_pages(P, 0x11000, 2).unwrap();
    w.commit(&checkpoint()).unwrap();
    let r = ImageReader::open(dir.path()).unwrap();
    assert_eq!(r.manifest().pages_len, 3 * PAGE_SIZE);
    let (total, got) = read_all(&r).unwrap();
    assert_eq!(total, 3);
    assert_eq!(
        got,
        vec![Got::Bytes(0x10000, pattern(4, 1)), Got::Zero(0x11000, 2)]
    );
    flip_byte(&dir.path().join(PAGES_FILE), 3 * PAGE_SIZE - 1);
    let err = read_all(&r).unwrap_err();
    assert!(
        err.to_string().contains("does not match the manifest's"),
        "{err}"
    );

    // Nothing but superseded bytes: every data page rewritten as zero.
    let dir = TempDir::new("allzero");
    let mut w = ImageWriter::create(dir.path()).unwrap();
    w.write_pages(P, 0x10000, &pattern(6, 2)).unwrap();
    w.write_zero_pages(P, 0x10000, 2).unwrap();
    w.commit(&checkpoint()).unwrap();
    let r = ImageReader::open(dir.path()).unwrap();
    assert_eq!(read_all(&r).unwrap().1, vec![Got::Zero(0x10000, 2)]);
    flip_byte(&dir.path().join(PAGES_FILE), 10);
    assert!(read_all(&r).is_err());
}

#[test]
fn pages_outside_the_restorable_mappings_are_dropped_at_commit() {
    let dir = TempDir::new("clip");
    // Two touching mappings at 0x20000-0x22000 and 0x22000-0x23000, and
    // the sample's [vdso] at 0x7ffd_1235_0000-0x7ffd_1235_2000.
    let checkpoint = checkpoint_with_anon(&[(0x20000, 0x22000), (0x22000, 0x23000)]);
    let vdso = 0x7ffd_1235_0000;
    let mut w = ImageWriter::create(dir.path()).unwrap();
    // 0x1f000-0x24000: one page before, one after the mappings.
    let across = pattern(1, 5);
    w.write_pages(P, 0x1f000, &across).unwrap();
    // Entirely unmapped, data and zero.
    w.write_pages(P, 0x30000, &pattern(2, 2)).unwrap();
    w.write_zero_pages(P, 0x34000, 4).unwrap();
    // The vdso is not restored from the image: data and zero dropped.
    w.write_pages(P, vdso, &pattern(3, 2)).unwrap();
    w.write_zero_pages(P, vdso + PAGE_SIZE, 1).unwrap();
    // A zero run straddling the end of the sample's stack mapping.
    w.write_zero_pages(P, 0x7ffd_1234_6000, 3).unwrap();
    let summary = w.commit(&checkpoint).unwrap();
    assert_eq!(summary.pages_written, 9);

    let r = ImageReader::open(dir.path()).unwrap();
    assert_eq!(r.manifest().pages_len, 9 * PAGE_SIZE);
    assert_eq!(
        r.runs(),
        &[
            // Clipped to the mappings and merged across their boundary.
            PageRun {
                pid: P,
                vaddr: 0x20000,
                npages: 3,
                offset: PAGE_SIZE,
                zero: false
            },
            PageRun {
                pid: P,
                vaddr: 0x7ffd_1234_6000,
                npages: 1,
                offset: 0,
                zero: true
            },
        ]
    );
    let (total, got) = read_all(&r).unwrap();
    assert_eq!(total, 4);
    assert_eq!(
        got,
        vec![
            Got::Bytes(0x20000, across[PAGE..4 * PAGE].to_vec()),
            Got::Zero(0x7ffd_1234_6000, 1),
        ]
    );
    // The dropped pages' bytes are still checksummed.
    flip_byte(&dir.path().join(PAGES_FILE), 10);
    assert!(read_all(&r).is_err());
}

/// Two processes of a tree map the same address: their pages are
/// told apart by PID, never superseding each other, and a process the
/// checkpoint does not describe keeps none.
#[test]
fn pages_of_two_processes_at_one_address_stay_apart() {
    let dir = TempDir::new("twopids");
    let mut ck = checkpoint();
    let mut child = ck.processes[0].clone();
    child.pid = P + 1;
    child.ppid = P;
    ck.processes.push(child);
    let mut w = ImageWriter::create(dir.path()).unwrap();
    w.write_pages(P, 0x10000, &pattern(1, 2)).unwrap();
    w.write_pages(P + 1, 0x10000, &pattern(2, 2)).unwrap();
    w.write_zero_pages(P + 1, 0x12000, 1).unwrap();
    w.write_pages(P + 7, 0x10000, &pattern(3, 1)).unwrap();
    w.commit(&ck).unwrap();

    let r = ImageReader::open(dir.path()).unwrap();
    let mut got = Vec::new();
    r.read_pages(|pid, vaddr, data| {
        got.push((
            pid,
            vaddr,
            data == PageData::Zero { npages: 1 },
            match data {
                PageData::Bytes(b) => b.to_vec(),
                PageData::Zero { .. } => Vec::new(),
            },
        ));
        Ok::<_, ImageError>(())
    })
    .unwrap();
    assert_eq!(
        got,
        vec![
            (P, 0x10000, false, pattern(1, 2)),
            (P + 1, 0x10000, false, pattern(2, 2)),
            (P + 1, 0x12000, true, Vec::new()),
        ]
    );
}

#[test]
fn garbage_never_panics() {
    let dir = write_sample("garbage");
    let good_manifest = fs::read(dir.path().join(MANIFEST_FILE)).unwrap();
    let good_index = fs::read(dir.path().join(INDEX_FILE)).unwrap();
    // A small deterministic generator: no extra crate needed.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let sizes = [0usize, 1, 7, 8, 23, 24, 31, 32, 33, 100, 4096, 70_000];
    for round in 0..200 {
        let size = sizes[round % sizes.len()];
        let mut junk: Vec<u8> = (0..size).map(|_| next() as u8).collect();
        // Half the time keep a valid-looking header so the deeper checks run.
        let (template, file) = if round % 2 == 0 {
            (&good_manifest, MANIFEST_FILE)
        } else {
            (&good_index, INDEX_FILE)
        };
        if round % 4 < 2 {
            let keep = template.len().min(junk.len()).min(16 + (round % 3) * 4);
            junk[..keep].copy_from_slice(&template[..keep]);
        }
        // Also mutate a copy of the real file in a few places.
        let mut mutated = template.clone();
        for _ in 0..1 + round % 4 {
            let at = next() as usize % mutated.len();
            mutated[at] = next() as u8;
        }
        // A correctly framed but random body reaches the decoder.
        let framed = frame_manifest(&junk);
        fs::write(dir.path().join(INDEX_FILE), &good_index).unwrap();
        fs::write(dir.path().join(MANIFEST_FILE), &framed).unwrap();
        assert!(ImageReader::open(dir.path()).is_err());
        for bytes in [&junk, &mutated] {
            fs::write(dir.path().join(MANIFEST_FILE), &good_manifest).unwrap();
            fs::write(dir.path().join(INDEX_FILE), &good_index).unwrap();
            fs::write(dir.path().join(file), bytes).unwrap();
            if let Ok(r) = ImageReader::open(dir.path()) {
                let _ = read_all(&r);
            }
        }
    }
}
