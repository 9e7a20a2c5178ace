//! Dumps the memory of a stopped process: which pages exist (pagemap), read
//! in large batches, all-zero pages left out.

use super::CheckpointError;
use crate::image::{ImageWriter, Vma, VmaKind, PAGE_SIZE};
use crate::proc::pagemap;
use crate::ptrace::{read_memory, PtraceError};
use nix::sys::uio::{process_vm_readv, RemoteIoVec};
use nix::unistd::Pid;
use std::fs::File;
use std::io::IoSliceMut;
use std::os::unix::fs::FileExt;
use std::sync::mpsc;

/// Bytes read from the process per batch.
const BATCH_BYTES: usize = 4 << 20;
/// Remote iovecs per process_vm_readv call (IOV_MAX).
const BATCH_IOVECS: usize = 1024;
/// Pagemap entries read per pread.
const PAGEMAP_CHUNK: u64 = 64 * 1024;

/// Page counts of one memory dump.
#[derive(Debug, Default, Clone, Copy)]
pub struct MemoryDumpStats {
    /// Pages examined in the dumped mappings.
    pub pages_scanned: u64,
    /// Pages whose contents were written to the image.
    pub pages_written: u64,
    /// Present pages found all-zero (recorded without payload or skipped).
    pub zero_pages: u64,
}

/// Whether a mapping's pages are dumped at all: special mappings are
/// recreated by the kernel.
fn is_dumped(vma: &Vma) -> bool {
    !vma.is_special()
}

/// Reads every present or swapped private page of `vmas` from the stopped
/// process `pid` into `writer`. Two threads share the work: this one reads
/// the process's memory in large batches while a second one scans the
/// previous batch for zero pages and writes it to the image.
pub fn dump_memory(
    pid: i32,
    vmas: &[Vma],
    writer: &mut ImageWriter,
) -> Result<MemoryDumpStats, CheckpointError> {
    let (filled_tx, filled_rx) = mpsc::sync_channel::<FilledBatch>(BATCH_BUFFERS);
    let (empty_tx, empty_rx) = mpsc::channel::<Vec<u8>>();
    for _ in 0..BATCH_BUFFERS {
        empty_tx
            .send(vec![0u8; BATCH_BYTES])
            .expect("receiver is alive");
    }
    std::thread::scope(|scope| {
        let store = scope.spawn(move || {
            let mut stats = MemoryDumpStats::default();
            for batch in filled_rx {
                store_pages(writer, &mut stats, &batch.pages, &batch.buf[..batch.len()])?;
                // The reader may already be done and gone.
                let _ = empty_tx.send(batch.buf);
            }
            Ok::<_, CheckpointError>(stats)
        });
        let read = read_pages(pid, vmas, filled_tx, &empty_rx);
        let stored = store.join().expect("the page-writing thread panicked");
        // A writer failure also stops the reader: report the writer's error.
        let mut stats = stored?;
        stats.pages_scanned = read?;
        Ok(stats)
    })
}

/// Batch buffers in flight between the reading and the writing thread.
const BATCH_BUFFERS: usize = 3;

/// Pages read from the process, on their way to the image.
struct FilledBatch {
    buf: Vec<u8>,
    /// (address, lies in a file mapping) of each page, in order.
    pages: Vec<(u64, bool)>,
}

impl FilledBatch {
    fn len(&self) -> usize {
        self.pages.len() * PAGE_SIZE as usize
    }
}

/// Walks pagemap and reads the wanted pages, sending filled batches to the
/// writer. Returns the number of pages scanned.
fn read_pages(
    pid: i32,
    vmas: &[Vma],
    filled: mpsc::SyncSender<FilledBatch>,
    empty: &mpsc::Receiver<Vec<u8>>,
) -> Result<u64, CheckpointError> {
    let io = |what: &str, e: std::io::Error| CheckpointError::Io {
        what: format!("{what} of process {pid}"),
        source: e,
    };
    let writer_gone = || CheckpointError::Io {
        what: format!("hand pages of process {pid} to the image writer"),
        source: std::io::Error::other("the image writer stopped"),
    };
    let pagemap_file =
        File::open(format!("/proc/{pid}/pagemap")).map_err(|e| io("open pagemap", e))?;
    let mem_file = File::open(format!("/proc/{pid}/mem")).map_err(|e| io("open mem", e))?;
    let mut scanned = 0;
    let mut batch = Batch::new(Pid::from_raw(pid), empty.recv().map_err(|_| writer_gone())?);
    let mut entries = vec![0u64; PAGEMAP_CHUNK as usize];
    let mut raw = vec![0u8; PAGEMAP_CHUNK as usize * 8];
    let send = |batch: &mut Batch| -> Result<(), CheckpointError> {
        if batch.pages.is_empty() {
            return Ok(());
        }
        batch.read()?;
        let next = empty.recv().map_err(|_| writer_gone())?;
        filled.send(batch.take(next)).map_err(|_| writer_gone())
    };
    for vma in vmas.iter().filter(|v| is_dumped(v)) {
        scanned += vma.pages();
        let file_backed = matches!(vma.kind, VmaKind::File { .. });
        // Unreadable (PROT_NONE) ranges are read through /proc/PID/mem,
        // which may read them (FOLL_FORCE); process_vm_readv may not.
        let readable = vma.prot & libc::PROT_READ as u32 != 0;
        let mut page = vma.start / PAGE_SIZE;
        let end_page = vma.end / PAGE_SIZE;
        while page < end_page {
            let n = (end_page - page).min(PAGEMAP_CHUNK) as usize;
            let bytes = &mut raw[..n * 8];
            pagemap_file
                .read_exact_at(bytes, page * 8)
                .map_err(|e| io("read pagemap", e))?;
            for (i, e) in entries[..n].iter_mut().enumerate() {
                *e = u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
            }
            for (i, &e) in entries[..n].iter().enumerate() {
                let present = e & pagemap::PRESENT != 0;
                let swapped = e & pagemap::SWAPPED != 0;
                // In a private file mapping only the copied-on-write pages
                // (private anonymous copies) differ from the file.
                let wanted = if file_backed {
                    (present && e & pagemap::FILE_OR_SHARED == 0) || swapped
                } else {
                    present || swapped
                };
                if !wanted {
                    continue;
                }
                let addr = (page + i as u64) * PAGE_SIZE;
                if readable {
                    if batch.is_full() {
                        send(&mut batch)?;
                    }
                    batch.push(addr, file_backed);
                } else {
                    // Flush, then send this page alone, read already (a
                    // batch without remote ranges is not read again).
                    send(&mut batch)?;
                    mem_file
                        .read_exact_at(&mut batch.buf[..PAGE_SIZE as usize], addr)
                        .map_err(|e| io("read mem", e))?;
                    batch.pages.push((addr, file_backed));
                    send(&mut batch)?;
                }
            }
            page += n as u64;
        }
    }
    send(&mut batch)?;
    Ok(scanned)
}

/// Pages waiting to be read with one process_vm_readv call.
struct Batch {
    pid: Pid,
    buf: Vec<u8>,
    /// (address, lies in a file mapping) of each page, in order.
    pages: Vec<(u64, bool)>,
    /// Remote ranges: runs of adjacent pages.
    iovecs: Vec<RemoteIoVec>,
}

impl Batch {
    fn new(pid: Pid, buf: Vec<u8>) -> Self {
        Batch {
            pid,
            buf,
            pages: Vec::new(),
            iovecs: Vec::new(),
        }
    }

    fn is_full(&self) -> bool {
        self.pages.len() * PAGE_SIZE as usize >= BATCH_BYTES || self.iovecs.len() >= BATCH_IOVECS
    }

    fn push(&mut self, addr: u64, file_backed: bool) {
        match self.iovecs.last_mut() {
            Some(last) if (last.base + last.len) as u64 == addr => last.len += PAGE_SIZE as usize,
            _ => self.iovecs.push(RemoteIoVec {
                base: addr as usize,
                len: PAGE_SIZE as usize,
            }),
        }
        self.pages.push((addr, file_backed));
    }

    /// Reads the batch's pages into its buffer.
    fn read(&mut self) -> Result<(), CheckpointError> {
        if self.iovecs.is_empty() {
            return Ok(());
        }
        let len = self.pages.len() * PAGE_SIZE as usize;
        let buf = &mut self.buf[..len];
        let n = process_vm_readv(self.pid, &mut [IoSliceMut::new(buf)], &self.iovecs).map_err(
            |errno| PtraceError::Memory {
                op: "read",
                pid: self.pid.as_raw(),
                addr: self.iovecs[0].base as u64,
                len,
                errno,
            },
        )?;
        if n != len {
            // A short read means a page vanished under us; read page by page
            // to name it.
            for (i, &(addr, _)) in self.pages.iter().enumerate() {
                let off = i * PAGE_SIZE as usize;
                read_memory(self.pid, addr, &mut self.buf[off..off + PAGE_SIZE as usize])?;
            }
        }
        Ok(())
    }

    /// Hands over the filled pages and starts over with buffer `next`.
    fn take(&mut self, next: Vec<u8>) -> FilledBatch {
        self.iovecs.clear();
        FilledBatch {
            buf: std::mem::replace(&mut self.buf, next),
            pages: std::mem::take(&mut self.pages),
        }
    }
}

static ZERO_PAGE: [u8; PAGE_SIZE as usize] = [0; PAGE_SIZE as usize];

/// Writes the pages of `data` (one per entry of `pages`) to the image,
/// coalescing adjacent non-zero pages. All-zero anonymous pages are left out
/// (a fresh anonymous mapping reads as zeros); all-zero pages of a file
/// mapping are recorded as zero pages, since the file would show through.
fn store_pages(
    writer: &mut ImageWriter,
    stats: &mut MemoryDumpStats,
    pages: &[(u64, bool)],
    data: &[u8],
) -> Result<(), CheckpointError> {
    let ps = PAGE_SIZE as usize;
    let mut run: Option<(u64, usize, usize)> = None; // (vaddr, first index, count)
    let flush = |run: &mut Option<(u64, usize, usize)>, writer: &mut ImageWriter| {
        if let Some((vaddr, first, count)) = run.take() {
            writer.write_pages(vaddr, &data[first * ps..(first + count) * ps])?;
        }
        Ok::<(), CheckpointError>(())
    };
    for (i, &(addr, file_backed)) in pages.iter().enumerate() {
        let page = &data[i * ps..(i + 1) * ps];
        if page == ZERO_PAGE {
            flush(&mut run, writer)?;
            stats.zero_pages += 1;
            if file_backed {
                writer.write_zero_pages(addr, 1)?;
            }
            continue;
        }
        stats.pages_written += 1;
        match &mut run {
            Some((vaddr, _, count)) if *vaddr + (*count * ps) as u64 == addr => *count += 1,
            _ => {
                flush(&mut run, writer)?;
                run = Some((addr, i, 1));
            }
        }
    }
    flush(&mut run, writer)
}
