//! The destination's page store: page streams read concurrently into one
//! image writer thread, each frame counted by round so that a round is
//! acknowledged only once every frame of it is written. What a peer may
//! make it store is bounded: by the offer, per round ([`PageQuota`]), and
//! by the disk, which it never fills past a reserve.

use super::error::MigrationError;
use crate::image::ImageWriter;
use crate::restore::warm::WarmHusk;
use crate::transport::{IncomingPages, PageReceiver, Session};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// How long the destination waits, before the frozen state arrives, for
/// any sign of progress (a control message, a stored frame) before it
/// gives the migration up and frees what it held.
pub(super) const NO_PROGRESS_TIMEOUT: Duration = Duration::from_secs(60);
/// What a round may bring beyond twice the offer's memory: a workload
/// grows while it is copied (and swapped pages are not in its RSS).
const GROWTH_ALLOWANCE: u64 = 1 << 30;
/// Bytes of data written between two looks at the free disk space.
const DISK_CHECK_INTERVAL: u64 = 64 << 20;
/// The free space a page store never takes from its filesystem: the
/// smaller of this and a twentieth of the filesystem.
const DISK_RESERVE: u64 = 1 << 30;

/// What one pre-copy round may bring, derived from the offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PageQuota {
    /// Bytes of page data (zero pages carry none).
    pub data_bytes: u64,
    /// Frames (data or zero).
    pub frames: u64,
}

impl PageQuota {
    /// The quota of a workload the offer says holds `memory_bytes`: every
    /// page of it twice over, plus a growth allowance, in data; twice as
    /// many frames as pages (a zero run between two data runs), plus what
    /// the allowance alone needs.
    pub fn for_memory(memory_bytes: u64) -> Self {
        let data_bytes = memory_bytes
            .saturating_mul(2)
            .saturating_add(GROWTH_ALLOWANCE);
        PageQuota {
            data_bytes,
            frames: (data_bytes / crate::image::PAGE_SIZE).saturating_mul(2),
        }
    }
}

/// What the current round has brought so far.
#[derive(Debug, Default)]
struct RoundUse {
    data_bytes: u64,
    frames: u64,
}

/// Waits until every frame of `round` is stored; a peer gone meanwhile,
/// or no frame stored for [`NO_PROGRESS_TIMEOUT`], ends the wait with an
/// error (the announced frames will never come).
pub(super) async fn wait_round(
    session: &Session,
    stored: &mut StoredFrames,
    counts: &mut BTreeMap<u32, u64>,
    round: u32,
    frames: u64,
) -> Result<(), MigrationError> {
    loop {
        let have = counts.get(&round).copied().unwrap_or(0);
        if have == frames {
            return Ok(());
        }
        if have > frames {
            return Err(MigrationError::protocol(format!(
                "round {round} brought {have} frames, but the source announced {frames}"
            )));
        }
        let next = tokio::select! {
            s = stored.recv() => s,
            e = session.closed() => return Err(MigrationError::link_in(
                format!("the source left with round {round} incomplete ({have} of the {frames} frames it announced stored)"),
                e,
            )),
            () = tokio::time::sleep(NO_PROGRESS_TIMEOUT) => return Err(MigrationError::protocol(format!(
                "no frame of round {round} arrived for {NO_PROGRESS_TIMEOUT:?} ({have} of the {frames} frames the source announced stored)"
            ))),
        };
        match next {
            Some(Ok(r)) => *counts.entry(r).or_default() += 1,
            Some(Err(e)) => return Err(e),
            None => return Err(MigrationError::local("the page store stopped")),
        }
    }
}

/// A frame on its way from a page stream to the image writer.
struct Frame {
    pid: i32,
    round: u32,
    vaddr: u64,
    npages: u64,
    data: Option<Vec<u8>>,
}

/// What the writer thread hands back: the image writer, and the warm
/// husk it staged the root's pages in, if it made one.
type Written = (ImageWriter, Option<WarmHusk>);

/// Page streams read concurrently into one image writer thread.
pub(super) struct PageStore {
    frames: Option<mpsc::Sender<Frame>>,
    writer: std::thread::JoinHandle<Result<Written, MigrationError>>,
    accept: tokio::task::JoinHandle<IncomingPages>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// Rounds the destination acknowledged: frames of an earlier round
    /// are refused from then on.
    acked: Arc<AtomicU32>,
    /// What the open round brought so far.
    used: Arc<Mutex<RoundUse>>,
}

/// Frames stored, by round, or the first storage error.
pub(super) type StoredFrames = mpsc::UnboundedReceiver<Result<u32, MigrationError>>;

impl PageStore {
    /// Starts storing the page streams of `incoming` into `writer`, whose
    /// image is the directory `dir`, each round within `quota`. With
    /// `warm_root` (a plain tree's root PID), the root's pages are also
    /// staged in a husk spawned (with any PID) at the root's first frame,
    /// for a warm restore ([`crate::restore::warm`]); a husk that cannot
    /// be spawned only means a cold restore.
    pub fn start(
        writer: ImageWriter,
        dir: PathBuf,
        incoming: IncomingPages,
        (quota, warm_root): (PageQuota, Option<i32>),
    ) -> (Self, StoredFrames) {
        let (frames_tx, mut frames_rx) = mpsc::channel::<Frame>(64);
        let (stored_tx, stored_rx) = mpsc::unbounded_channel();
        let acked = Arc::new(AtomicU32::new(0));
        let used = Arc::new(Mutex::new(RoundUse::default()));
        let writer_stored = stored_tx.clone();
        let writer = std::thread::spawn(move || {
            let mut writer = writer;
            let mut unchecked = 0u64;
            let mut warm: Option<WarmHusk> = None;
            let mut warm_root = warm_root;
            while let Some(frame) = frames_rx.blocking_recv() {
                if warm_root == Some(frame.pid) && warm.is_none() {
                    warm_root = None;
                    warm = WarmHusk::spawn(frame.pid)
                        .inspect_err(|errno| tracing::warn!(pid = frame.pid, %errno, "no husk to stage the root's pages in; the restore installs them from the image"))
                        .ok();
                }
                let result = match &frame.data {
                    Some(data) => {
                        unchecked += data.len() as u64;
                        if unchecked >= DISK_CHECK_INTERVAL {
                            unchecked = 0;
                            if let Err(e) = check_disk(&dir, 0) {
                                let _ = writer_stored.send(Err(MigrationError::local(e.clone())));
                                return Err(MigrationError::local(e));
                            }
                        }
                        writer
                            .write_pages(frame.pid, frame.vaddr, data)
                            .map_err(|e| e.to_string())
                    }
                    None => writer
                        .write_zero_pages(frame.pid, frame.vaddr, frame.npages)
                        .map_err(|e| e.to_string()),
                };
                if let Err(e) = result {
                    let _ = writer_stored.send(Err(MigrationError::local(e.clone())));
                    return Err(MigrationError::local(e));
                }
                if let Some(warm) = &mut warm {
                    warm.stage(frame.pid, frame.vaddr, frame.npages, frame.data.as_deref());
                }
                let _ = writer_stored.send(Ok(frame.round));
            }
            Ok((writer, warm))
        });
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let limits = StreamLimits {
            acked: acked.clone(),
            used: used.clone(),
            quota,
        };
        let accept = tokio::spawn(accept_streams(
            incoming,
            frames_tx.clone(),
            stored_tx,
            limits,
            stopped,
        ));
        let store = PageStore {
            frames: Some(frames_tx),
            writer,
            accept,
            stop: Some(stop),
            acked,
            used,
        };
        (store, stored_rx)
    }

    /// Closes `round` (every frame of it is stored): from now on its
    /// frames are refused and the next round's are counted afresh.
    pub fn close_round(&self, round: u32) {
        *self.used.lock().unwrap_or_else(|e| e.into_inner()) = RoundUse::default();
        self.acked.store(round + 1, Ordering::Release);
    }

    /// Stops accepting page streams and hands back the writer (and the
    /// warm husk) once every frame is written, with the page streams still
    /// to come (post-copy's).
    pub async fn finish(mut self) -> Result<(Written, IncomingPages), MigrationError> {
        let _ = self.stop.take().map(|stop| stop.send(()));
        let incoming = (&mut self.accept)
            .await
            .map_err(|e| MigrationError::local_in("the page stream acceptor failed", e))?;
        drop(self.frames.take());
        tokio::task::spawn_blocking(move || self.writer.join())
            .await
            .map_err(MigrationError::local)?
            .map_err(|_| MigrationError::local("the page writer panicked"))?
            .map(|writer| (writer, incoming))
    }
}

/// Refuses `need` more bytes of pages in `dir` when they would leave its
/// filesystem less than its reserve: a peer must not fill this host's
/// disk (checked at the offer with its memory, and as pages arrive).
pub(super) fn check_disk(dir: &Path, need: u64) -> Result<(), String> {
    // The directory may not exist yet (an offer's image is made later).
    let existing = dir.ancestors().find(|d| d.exists()).unwrap_or(dir);
    let fs = nix::sys::statvfs::statvfs(existing)
        .map_err(|e| format!("cannot read the free space of {}: {e}", dir.display()))?;
    let fragment = fs.fragment_size();
    let available = fs.blocks_available().saturating_mul(fragment);
    let reserve = DISK_RESERVE.min(fs.blocks().saturating_mul(fragment) / 20);
    if available < reserve.saturating_add(need) {
        return Err(format!(
            "the filesystem of {} has {available} bytes free: {need} bytes more of pages would leave less than the {reserve} bytes this agent keeps free; refused",
            dir.display()
        ));
    }
    Ok(())
}

/// What every page stream's reader checks its frames against.
#[derive(Clone)]
struct StreamLimits {
    acked: Arc<AtomicU32>,
    used: Arc<Mutex<RoundUse>>,
    quota: PageQuota,
}

impl StreamLimits {
    /// Counts a frame of `round` with `data_bytes` of data against the
    /// open round and its quota.
    fn admit(&self, round: u32, npages: u32, data_bytes: u64) -> Result<(), MigrationError> {
        let open = self.acked.load(Ordering::Acquire);
        if round < open {
            return Err(MigrationError::protocol(format!(
                "a page frame of round {round} arrived after the round was closed (now {open}); an older copy must not replace a newer one"
            )));
        }
        if round > open {
            return Err(MigrationError::protocol(format!(
                "a page frame of round {round} arrived while round {open} is open: a round starts only once the one before is stored"
            )));
        }
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        used.frames += 1;
        used.data_bytes += data_bytes;
        if used.frames > self.quota.frames || used.data_bytes > self.quota.data_bytes {
            return Err(MigrationError::protocol(format!(
                "round {round} brought {} frames and {} bytes of pages (the last frame {npages} pages), over what the offer allows a round ({} frames, {} bytes)",
                used.frames, used.data_bytes, self.quota.frames, self.quota.data_bytes
            )));
        }
        Ok(())
    }
}

async fn accept_streams(
    mut incoming: IncomingPages,
    frames: mpsc::Sender<Frame>,
    stored: mpsc::UnboundedSender<Result<u32, MigrationError>>,
    limits: StreamLimits,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> IncomingPages {
    let mut readers = tokio::task::JoinSet::new();
    loop {
        let stream = tokio::select! {
            s = incoming.next() => match s {
                Some(s) => s,
                None => {
                    // The connections are gone: read what arrived, then
                    // wait to be stopped.
                    while readers.join_next().await.is_some() {}
                    let _ = stop.await;
                    return incoming;
                }
            },
            _ = &mut stop => break,
        };
        let frames = frames.clone();
        let stored = stored.clone();
        let limits = limits.clone();
        readers.spawn(async move {
            if let Err(e) = read_stream(stream, &frames, &limits).await {
                let _ = stored.send(Err(e));
            }
        });
    }
    // Every stream of the rounds has ended (each round was counted
    // complete); readers still running wait on streams that bring nothing.
    readers.abort_all();
    while readers.join_next().await.is_some() {}
    incoming
}

/// Reads one page stream into the writer, only frames of the open round
/// and within its quota. Frames may name processes the offer did not
/// list (a shell forks while it is copied); pages of a process that is
/// not in the final state are dropped when the image is committed.
async fn read_stream(
    mut stream: PageReceiver,
    frames: &mpsc::Sender<Frame>,
    limits: &StreamLimits,
) -> Result<(), MigrationError> {
    while let Some(frame) = stream.next().await? {
        let h = frame.header;
        if h.pid <= 0 {
            return Err(MigrationError::protocol(format!(
                "a page frame for process {} arrived",
                h.pid
            )));
        }
        limits.admit(h.round, h.npages, h.payload_len() as u64)?;
        let data = (!h.is_zero()).then(|| frame.data.to_vec());
        let frame = Frame {
            pid: h.pid,
            round: h.round,
            vaddr: h.vaddr,
            npages: u64::from(h.npages),
            data,
        };
        if frames.send(frame).await.is_err() {
            return Err(MigrationError::local("the page writer stopped"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::migration::page_store::*;

    fn limits(memory_bytes: u64) -> StreamLimits {
        StreamLimits {
            acked: Arc::new(AtomicU32::new(0)),
            used: Arc::default(),
            quota: PageQuota::for_memory(memory_bytes),
        }
    }

    #[test]
    fn only_frames_of_the_open_round_are_taken() {
        let l = limits(4096);
        l.admit(0, 1, 4096).unwrap();
        let future = l.admit(1, 1, 4096).unwrap_err().to_string();
        assert!(
            future.contains("round 1 arrived while round 0 is open"),
            "{future}"
        );
        l.acked.store(1, Ordering::Release);
        let closed = l.admit(0, 1, 4096).unwrap_err().to_string();
        assert!(closed.contains("after the round was closed"), "{closed}");
    }

    #[test]
    fn a_round_brings_at_most_what_the_offer_allows() {
        let l = limits(4096);
        let quota = l.quota;
        assert_eq!(quota.data_bytes, 2 * 4096 + GROWTH_ALLOWANCE);
        let frame = 256 * 4096;
        let frames_allowed = quota.data_bytes / frame;
        for _ in 0..frames_allowed {
            l.admit(0, 256, frame).unwrap();
        }
        let over = l.admit(0, 256, frame).unwrap_err().to_string();
        assert!(
            over.contains(&format!(
                "over what the offer allows a round ({} frames, {} bytes)",
                quota.frames, quota.data_bytes
            )),
            "{over}"
        );
    }
}
