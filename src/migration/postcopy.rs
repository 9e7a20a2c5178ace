//! The source's half of post-copy: with the tree still frozen (and so the
//! only copy of the pages it names remote), answer the destination's page
//! requests on the urgent stream at once and push every remaining page in
//! the background, restarting the push near the latest fault, until the
//! destination says every page is local.

use super::protocol::{RemoteRuns, ToSource, PUSH_ROUND, URGENT_ROUND};
use crate::image::PAGE_SIZE;
use crate::lazy::{FaultStats, PageRequest};
use crate::transport::{PageSender, Session, MAX_FRAME_PAGES};
use nix::sys::uio::{process_vm_readv, RemoteIoVec};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::io::IoSliceMut;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::runtime::Handle;
use tokio::sync::mpsc;

/// Pages per frame of the background push.
const PUSH_CHUNK_PAGES: usize = 64;

/// How the post-copy phase went, as the source saw it.
#[derive(Debug, Clone, Default)]
pub struct Served {
    /// The destination's restore time.
    pub restore_ms: f64,
    /// When the destination said the workload runs.
    pub running_at: Option<Instant>,
    /// Page requests answered.
    pub requests: u64,
    /// Pages sent by the background push.
    pub pages_pushed: u64,
    /// The destination's fault figures.
    pub faults: FaultStats,
    /// The destination's time from running to every page local.
    pub all_local_ms: f64,
}

/// Which remote pages still have to be pushed, shared by the push thread
/// and the request loop (a page answered urgently is not pushed again).
struct PushState {
    /// Per process: its pages in address order, and whether each was sent.
    procs: Vec<(i32, Vec<u64>, Vec<bool>)>,
    /// (process index, page index) where the push goes on.
    cursor: (usize, usize),
    /// Pages not sent yet.
    left: usize,
    /// Set by a request: continue the push there.
    hint: Option<(i32, u64)>,
    /// PID on the wire -> PID here, where they differ (a container's).
    host_pids: HashMap<i32, i32>,
}

impl PushState {
    fn new(remote: &[RemoteRuns], host_pids: HashMap<i32, i32>) -> Self {
        let procs: Vec<(i32, Vec<u64>, Vec<bool>)> = remote
            .iter()
            .map(|r| {
                let pages: Vec<u64> = r
                    .runs
                    .iter()
                    .flat_map(|&(s, e)| (s..e).step_by(PAGE_SIZE as usize))
                    .collect();
                let sent = vec![false; pages.len()];
                (r.pid, pages, sent)
            })
            .collect();
        let left = procs.iter().map(|p| p.1.len()).sum();
        PushState {
            procs,
            cursor: (0, 0),
            left,
            hint: None,
            host_pids,
        }
    }

    /// The PID to read process `pid` (as the wire names it) through.
    fn host_pid(&self, pid: i32) -> i32 {
        self.host_pids.get(&pid).copied().unwrap_or(pid)
    }

    fn mark_sent(&mut self, pid: i32, vaddr: u64, npages: u64) {
        if let Some((_, pages, sent)) = self.procs.iter_mut().find(|p| p.0 == pid) {
            let from = pages.partition_point(|&p| p < vaddr);
            for i in from..pages.len() {
                if pages[i] >= vaddr + npages * PAGE_SIZE {
                    break;
                }
                if !sent[i] {
                    sent[i] = true;
                    self.left -= 1;
                }
            }
        }
    }

    /// The next run of unsent, adjacent pages to push: (pid, vaddr, npages).
    fn next(&mut self) -> Option<(i32, u64, usize)> {
        if self.left == 0 {
            return None;
        }
        if let Some((pid, addr)) = self.hint.take() {
            if let Some(i) = self.procs.iter().position(|p| p.0 == pid) {
                self.cursor = (i, self.procs[i].1.partition_point(|&p| p < addr));
            }
        }
        loop {
            let (pi, mut idx) = self.cursor;
            let (pid, pages, sent) = &mut self.procs[pi];
            while idx < pages.len() && sent[idx] {
                idx += 1;
            }
            if idx >= pages.len() {
                self.cursor = ((pi + 1) % self.procs.len(), 0);
                continue;
            }
            let start = idx;
            while idx < pages.len()
                && idx - start < PUSH_CHUNK_PAGES
                && !sent[idx]
                && pages[idx] == pages[start] + (idx - start) as u64 * PAGE_SIZE
            {
                sent[idx] = true;
                idx += 1;
            }
            let run = (*pid, pages[start], idx - start);
            self.left -= idx - start;
            self.cursor = (pi, idx);
            return Some(run);
        }
    }
}

/// Reads `npages` pages of the frozen process `pid` at `vaddr`.
fn read_frozen(pid: i32, vaddr: u64, npages: usize) -> Result<Vec<u8>, String> {
    let len = npages * PAGE_SIZE as usize;
    let mut buf = vec![0u8; len];
    let remote = [RemoteIoVec {
        base: vaddr as usize,
        len,
    }];
    let n = process_vm_readv(
        Pid::from_raw(pid),
        &mut [IoSliceMut::new(&mut buf)],
        &remote,
    )
    .map_err(|e| format!("reading {npages} pages at {vaddr:#x} of frozen process {pid}: {e}"))?;
    if n != len {
        return Err(format!(
            "reading {npages} pages at {vaddr:#x} of frozen process {pid}: only {n} bytes"
        ));
    }
    Ok(buf)
}

/// Serves the post-copy phase on `session` until the destination reports
/// every page local; the frozen processes named in `remote` are read
/// (through `host_pids` where their PIDs here differ: a container's).
/// Returns an error, as a sentence, when the destination fails or the
/// link breaks: the caller then resumes the source copy.
pub fn serve(
    rt: &Handle,
    session: &mut Session,
    remote: &[RemoteRuns],
    host_pids: &HashMap<i32, i32>,
    push_streams: u32,
) -> Result<Served, String> {
    let runs: Vec<(i32, crate::memory::PageRuns)> = remote
        .iter()
        .map(|r| (r.pid, crate::memory::PageRuns::from_runs(r.runs.clone())))
        .collect();
    let state = Arc::new(Mutex::new(PushState::new(remote, host_pids.clone())));
    let mut urgent: PageSender = rt
        .block_on(session.open_pages())
        .map_err(|e| format!("opening the urgent page stream failed: {e}"))?;
    urgent.set_priority(1);
    let mut served = Served::default();
    let mut pusher: Option<std::thread::JoinHandle<Result<u64, String>>> = None;
    let result = loop {
        let message = match rt.block_on(session.recv::<ToSource>()) {
            Ok(m) => m,
            Err(e) => break Err(format!("the link to the destination failed: {e}")),
        };
        match message {
            ToSource::PageRequest(req) => {
                if let Err(e) = answer(rt, &mut urgent, &runs, &state, req) {
                    break Err(e);
                }
                served.requests += 1;
            }
            ToSource::Running { restore_ms, .. } if served.running_at.is_none() => {
                served.restore_ms = restore_ms;
                served.running_at = Some(Instant::now());
                pusher = Some(start_push(rt, session, state.clone(), push_streams)?);
            }
            ToSource::AllPages {
                stats,
                all_local_ms,
            } if served.running_at.is_some() => {
                served.faults = stats;
                served.all_local_ms = all_local_ms;
                break Ok(());
            }
            ToSource::Failed { reason } => break Err(format!("the destination failed: {reason}")),
            other => {
                break Err(format!(
                    "the destination answered {other:?} during post-copy"
                ))
            }
        }
    };
    let _ = rt.block_on(urgent.finish());
    if let Some(pusher) = pusher {
        if result.is_err() {
            // Stop the push: nothing is left to send to.
            lock(&state).left = 0;
        }
        match pusher.join() {
            Ok(Ok(pages)) => served.pages_pushed = pages,
            Ok(Err(e)) if result.is_ok() => tracing::warn!(%e, "the background push failed"),
            _ => {}
        }
    }
    result.map(|()| served)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Answers one page request on the urgent stream, after checking that it
/// names pages this migration left on the source.
fn answer(
    rt: &Handle,
    urgent: &mut PageSender,
    runs: &[(i32, crate::memory::PageRuns)],
    state: &Mutex<PushState>,
    req: PageRequest,
) -> Result<(), String> {
    let wanted = runs.iter().find(|(pid, _)| *pid == req.pid).map(|r| &r.1);
    let end = req.vaddr.saturating_add(u64::from(req.npages) * PAGE_SIZE);
    let valid = req.npages > 0
        && req.npages <= MAX_FRAME_PAGES
        && req.vaddr % PAGE_SIZE == 0
        && wanted.is_some_and(|w| {
            (req.vaddr..end)
                .step_by(PAGE_SIZE as usize)
                .all(|a| w.contains(a))
        });
    if !valid {
        return Err(format!(
            "the destination asked for {} pages at {:#x} of process {}, which this migration did not leave on the source",
            req.npages, req.vaddr, req.pid
        ));
    }
    let host = lock(state).host_pid(req.pid);
    let data = read_frozen(host, req.vaddr, req.npages as usize)?;
    {
        let mut st = lock(state);
        st.mark_sent(req.pid, req.vaddr, u64::from(req.npages));
        st.hint = Some((req.pid, end));
    }
    rt.block_on(async {
        urgent
            .send_pages(req.pid, URGENT_ROUND, req.vaddr, &data)
            .await?;
        urgent.flush().await
    })
    .map_err(|e| format!("answering a page request failed: {e}"))
}

/// Starts the background push: a thread reading the frozen memory in
/// chunks (from the latest fault on), page streams carrying them.
fn start_push(
    rt: &Handle,
    session: &Session,
    state: Arc<Mutex<PushState>>,
    streams: u32,
) -> Result<std::thread::JoinHandle<Result<u64, String>>, String> {
    let mut lanes = Vec::new();
    for _ in 0..streams.max(1) {
        let mut stream = rt
            .block_on(session.open_pages())
            .map_err(|e| format!("opening a push stream failed: {e}"))?;
        let (tx, mut rx) = mpsc::channel::<(i32, u64, Vec<u8>)>(4);
        let task = rt.spawn(async move {
            while let Some((pid, vaddr, data)) = rx.recv().await {
                stream
                    .send_pages(pid, PUSH_ROUND, vaddr, &data)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            stream.finish().await.map_err(|e| e.to_string())
        });
        lanes.push((tx, task));
    }
    let rt = rt.clone();
    Ok(std::thread::spawn(move || {
        let mut pushed = 0u64;
        let mut next_lane = 0;
        loop {
            let (next, host) = {
                let mut st = lock(&state);
                let next = st.next();
                (next, next.map(|(pid, ..)| st.host_pid(pid)))
            };
            let (Some((pid, vaddr, npages)), Some(host)) = (next, host) else {
                break;
            };
            let data = read_frozen(host, vaddr, npages)?;
            let lane = &lanes[next_lane % lanes.len()];
            next_lane += 1;
            if lane.0.blocking_send((pid, vaddr, data)).is_err() {
                return Err("a push stream stopped".to_string());
            }
            pushed += npages as u64;
        }
        for (tx, task) in lanes {
            drop(tx);
            rt.block_on(task)
                .map_err(|e| e.to_string())
                .and_then(|r| r)?;
        }
        Ok(pushed)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_restarts_at_the_hint_and_skips_answered_pages() {
        let remote = [RemoteRuns {
            pid: 7,
            runs: vec![(0x10000, 0x10000 + 200 * PAGE_SIZE)],
        }];
        let mut st = PushState::new(&remote, HashMap::new());
        assert_eq!(st.next(), Some((7, 0x10000, PUSH_CHUNK_PAGES)));
        st.mark_sent(7, 0x10000 + 150 * PAGE_SIZE, 2);
        st.hint = Some((7, 0x10000 + 148 * PAGE_SIZE));
        assert_eq!(st.next(), Some((7, 0x10000 + 148 * PAGE_SIZE, 2)));
        assert_eq!(st.next(), Some((7, 0x10000 + 152 * PAGE_SIZE, 48)));
        // Wraps around to what was skipped.
        assert_eq!(
            st.next(),
            Some((7, 0x10000 + 64 * PAGE_SIZE, PUSH_CHUNK_PAGES))
        );
        assert_eq!(st.next(), Some((7, 0x10000 + 128 * PAGE_SIZE, 20)));
        assert_eq!(st.next(), None);
    }
}
