//! The destination's page store: page streams read concurrently into one
//! image writer thread, each frame counted by round so that a round is
//! acknowledged only once every frame of it is written.

use super::error::MigrationError;
use crate::image::ImageWriter;
use crate::transport::{IncomingPages, PageReceiver};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Waits until every frame of `round` is stored.
pub(super) async fn wait_round(
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
        match stored.recv().await {
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

/// Page streams read concurrently into one image writer thread.
pub(super) struct PageStore {
    frames: Option<mpsc::Sender<Frame>>,
    writer: std::thread::JoinHandle<Result<ImageWriter, MigrationError>>,
    accept: tokio::task::JoinHandle<IncomingPages>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// Rounds the destination acknowledged: frames of an earlier round
    /// are refused from then on.
    pub acked: Arc<AtomicU32>,
}

/// Frames stored, by round, or the first storage error.
pub(super) type StoredFrames = mpsc::UnboundedReceiver<Result<u32, MigrationError>>;

impl PageStore {
    /// Starts storing the page streams of `incoming` into `writer`.
    pub fn start(writer: ImageWriter, incoming: IncomingPages) -> (Self, StoredFrames) {
        let (frames_tx, mut frames_rx) = mpsc::channel::<Frame>(64);
        let (stored_tx, stored_rx) = mpsc::unbounded_channel();
        let acked = Arc::new(AtomicU32::new(0));
        let writer_stored = stored_tx.clone();
        let writer = std::thread::spawn(move || {
            let mut writer = writer;
            while let Some(frame) = frames_rx.blocking_recv() {
                let result = match &frame.data {
                    Some(data) => writer.write_pages(frame.pid, frame.vaddr, data),
                    None => writer.write_zero_pages(frame.pid, frame.vaddr, frame.npages),
                };
                if let Err(e) = result {
                    let _ = writer_stored.send(Err(MigrationError::local(e.to_string())));
                    return Err(MigrationError::local(e));
                }
                let _ = writer_stored.send(Ok(frame.round));
            }
            Ok(writer)
        });
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let accept = tokio::spawn(accept_streams(
            incoming,
            frames_tx.clone(),
            stored_tx,
            acked.clone(),
            stopped,
        ));
        let store = PageStore {
            frames: Some(frames_tx),
            writer,
            accept,
            stop: Some(stop),
            acked,
        };
        (store, stored_rx)
    }

    /// Stops accepting page streams and hands back the writer once every
    /// frame is written, with the page streams still to come (post-copy's).
    pub async fn finish(mut self) -> Result<(ImageWriter, IncomingPages), MigrationError> {
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

async fn accept_streams(
    mut incoming: IncomingPages,
    frames: mpsc::Sender<Frame>,
    stored: mpsc::UnboundedSender<Result<u32, MigrationError>>,
    acked: Arc<AtomicU32>,
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
        let acked = acked.clone();
        readers.spawn(async move {
            if let Err(e) = read_stream(stream, &frames, &acked).await {
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

/// Reads one page stream into the writer, never frames of a round the
/// source already closed. Frames may name processes the offer did not
/// list (a shell forks while it is copied); pages of a process that is
/// not in the final state are dropped when the image is committed.
async fn read_stream(
    mut stream: PageReceiver,
    frames: &mpsc::Sender<Frame>,
    acked: &AtomicU32,
) -> Result<(), MigrationError> {
    while let Some(frame) = stream.next().await? {
        let h = frame.header;
        if h.pid <= 0 {
            return Err(MigrationError::protocol(format!(
                "a page frame for process {} arrived",
                h.pid
            )));
        }
        let closed = acked.load(Ordering::Acquire);
        if h.round < closed {
            return Err(MigrationError::protocol(format!(
                "a page frame of round {} arrived after the round was closed (now {closed}); an older copy must not replace a newer one",
                h.round
            )));
        }
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
