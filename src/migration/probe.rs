//! The dry run's probe of the destination (`migrate-agent dry-run --to`):
//! its own conversation on the session ([`super::protocol::Opening::Probe`]).
//! The source offers the workload as a migration would and sends pages
//! the destination discards, to measure the bandwidth; the destination
//! checks the offer and the memory it has. Nothing is kept on either side.

use super::error::MigrationError;
use super::protocol::{Opening, ProbeOffer, ProbeToDestination, ProbeToSource};
use crate::image::PAGE_SIZE;
use crate::proc;
use crate::transport::{Session, MAX_FRAME_PAGES};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes of page frames a probe sends to measure the bandwidth.
pub const PROBE_TRANSFER_BYTES: u64 = 256 << 20;

/// The most a destination accepts to receive for a probe.
const PROBE_MAX_BYTES: u64 = 1 << 30;

/// How long a destination waits for a probe's pages.
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

/// What the destination said to a probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeReport {
    /// The destination's address.
    pub address: String,
    /// The destination agent's name (from its certificate).
    pub agent: String,
    /// Why it would refuse the migration (None: it would take it).
    pub refusal: Option<String>,
    /// Memory available on the destination.
    pub memory_available_bytes: u64,
    /// Memory the workload would bring.
    pub memory_bytes: u64,
    /// Bytes of page frames sent to measure the bandwidth.
    pub transfer_bytes: u64,
    /// Milliseconds they took, until the destination had them all.
    pub transfer_ms: f64,
    /// The measured bandwidth.
    pub bandwidth_bytes_per_sec: f64,
}

/// Asks the destination on `session` whether it would take the tree rooted
/// at `pid` (the offer a migration would make now) and measures the
/// bandwidth with `transfer_bytes` of page frames it discards. Nothing is
/// kept on either side.
pub async fn probe(
    session: &mut Session,
    pid: i32,
    transfer_bytes: u64,
) -> Result<ProbeReport, MigrationError> {
    let streams = session.bulk_connections().max(1);
    let offer = super::source::make_offer(pid, streams as u32).map_err(MigrationError::local)?;
    let memory_bytes = offer.memory_bytes;
    let root = offer.pid;
    session
        .send(&Opening::Probe(ProbeOffer {
            offer,
            transfer_bytes,
        }))
        .await?;
    let (refusal, memory_available_bytes) = match session.recv::<ProbeToSource>().await {
        Ok(ProbeToSource::Checked {
            refusal,
            memory_available_bytes,
        }) => (refusal, memory_available_bytes),
        Ok(ProbeToSource::Failed { reason }) => return Err(MigrationError::refused("", reason)),
        Ok(other) => {
            return Err(MigrationError::protocol(format!(
                "the destination answered {other:?} to the probe"
            )))
        }
        Err(e) => return Err(e.into()),
    };

    let started = Instant::now();
    let chunk = u64::from(MAX_FRAME_PAGES) * PAGE_SIZE;
    let total_frames = transfer_bytes.div_ceil(chunk);
    let mut lanes = Vec::with_capacity(streams);
    for lane in 0..streams as u64 {
        let mut stream = session.open_pages().await.map_err(MigrationError::link)?;
        let frames: Vec<u64> = (lane..total_frames).step_by(streams).collect();
        lanes.push(tokio::spawn(async move {
            let data = vec![0xa5u8; chunk as usize];
            for frame in frames {
                let len = chunk.min(transfer_bytes - frame * chunk) as usize;
                let len = len - len % PAGE_SIZE as usize;
                stream
                    .send_pages(root, 0, frame * chunk, &data[..len.max(PAGE_SIZE as usize)])
                    .await?;
            }
            stream.finish().await.map_err(MigrationError::from)
        }));
    }
    for lane in lanes {
        lane.await.map_err(MigrationError::local)??;
    }
    session
        .send(&ProbeToDestination::PagesSent {
            frames: total_frames,
        })
        .await?;
    match session.recv::<ProbeToSource>().await {
        Ok(ProbeToSource::PagesStored) => {}
        Ok(ProbeToSource::Failed { reason }) => return Err(MigrationError::refused("", reason)),
        Ok(other) => {
            return Err(MigrationError::protocol(format!(
                "the destination answered {other:?} to the pages"
            )))
        }
        Err(e) => return Err(e.into()),
    }
    let secs = started.elapsed().as_secs_f64().max(1e-6);
    // The destination closes the session when it hears this; closing
    // earlier could cut off its last answer.
    session.send(&ProbeToDestination::Done).await?;
    Ok(ProbeReport {
        address: session.peer_addr().to_string(),
        agent: session.peer_agent().to_string(),
        refusal,
        memory_available_bytes,
        memory_bytes,
        transfer_bytes,
        transfer_ms: secs * 1000.0,
        bandwidth_bytes_per_sec: transfer_bytes as f64 / secs,
    })
}

/// The destination's side of a probe: checks the offer as a migration
/// would (CPU state format, PIDs free, memory available), answers, then
/// reads and discards the announced page frames, acknowledges them and
/// waits for the source's [`ProbeToDestination::Done`]. Nothing is kept.
pub async fn answer_probe(session: &mut Session, probe: ProbeOffer) -> Result<(), MigrationError> {
    if probe.transfer_bytes > PROBE_MAX_BYTES {
        return Err(MigrationError::protocol(format!(
            "a probe announced {} bytes of pages, over the {PROBE_MAX_BYTES} accepted",
            probe.transfer_bytes
        )));
    }
    let offer = &probe.offer;
    super::destination_shared::check_offer_claims(offer)?;
    let available = proc::mem_available_bytes().map_err(MigrationError::local)?;
    // One /proc look-up per TID: off the async workers.
    let (xcr0, xstate_size, tids) = (offer.xcr0, offer.xstate_size, offer.tids.clone());
    let checked =
        tokio::task::spawn_blocking(move || crate::restore::check_target(xcr0, xstate_size, &tids))
            .await
            .map_err(|e| MigrationError::local_in("the probe's offer check failed", e))?;
    let refusal = checked.err().map(|e| e.to_string()).or_else(|| {
        (offer.memory_bytes > available).then(|| {
            format!(
                "the workload has {} MiB of memory and only {} MiB are available here",
                offer.memory_bytes >> 20,
                available >> 20
            )
        })
    });
    session
        .send(&ProbeToSource::Checked {
            refusal,
            memory_available_bytes: available,
        })
        .await?;

    let frames = Arc::new(AtomicU64::new(0));
    let failed: Arc<std::sync::Mutex<Option<MigrationError>>> = Arc::default();
    let mut incoming = session.take_incoming_pages();
    let (root, budget) = (offer.pid, probe.transfer_bytes);
    let bytes = Arc::new(AtomicU64::new(0));
    let reader = {
        let (frames, failed, bytes) = (frames.clone(), failed.clone(), bytes.clone());
        tokio::spawn(async move {
            let mut readers = tokio::task::JoinSet::new();
            while let Some(mut stream) = incoming.next().await {
                let (frames, failed, bytes) = (frames.clone(), failed.clone(), bytes.clone());
                readers.spawn(async move {
                    let result = async {
                        while let Some(frame) = stream.next().await? {
                            if frame.header.pid != root {
                                return Err(MigrationError::protocol(format!(
                                    "a probe frame for process {} arrived; the probe is for {root}",
                                    frame.header.pid
                                )));
                            }
                            let len = frame.data.len() as u64;
                            if bytes.fetch_add(len, Ordering::SeqCst) + len > budget {
                                return Err(MigrationError::protocol(format!(
                                    "the probe sent more than the {budget} bytes it announced"
                                )));
                            }
                            frames.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(())
                    }
                    .await;
                    if let Err(e) = result {
                        failed
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get_or_insert(e);
                    }
                });
            }
            while readers.join_next().await.is_some() {}
        })
    };
    let result = async {
        let announced =
            match tokio::time::timeout(PROBE_TIMEOUT, session.recv::<ProbeToDestination>()).await {
                Ok(Ok(ProbeToDestination::PagesSent { frames })) => frames,
                Ok(Ok(_)) => {
                    return Err(MigrationError::protocol(
                        "expected the end of the probe's pages",
                    ))
                }
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => {
                    return Err(MigrationError::protocol(format!(
                        "the probe's pages took over {PROBE_TIMEOUT:?}"
                    )))
                }
            };
        let started = Instant::now();
        loop {
            if let Some(e) = failed.lock().unwrap_or_else(|p| p.into_inner()).take() {
                return Err(e);
            }
            let have = frames.load(Ordering::SeqCst);
            if have >= announced {
                break;
            }
            if started.elapsed() > PROBE_TIMEOUT {
                return Err(MigrationError::protocol(format!(
                    "the probe announced {announced} frames; {have} arrived"
                )));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        session.send(&ProbeToSource::PagesStored).await?;
        // Closing before the source has read the answer would lose it: wait
        // for its last word (a lost link ends the wait as well).
        let _ = tokio::time::timeout(PROBE_TIMEOUT, session.recv::<ProbeToDestination>()).await;
        Ok(())
    }
    .await;
    reader.abort();
    result
}
