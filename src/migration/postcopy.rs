//! The source's half of post-copy: with the tree still frozen (and so the
//! only copy of the pages it names remote), answer the destination's page
//! requests on the urgent stream at once and push every remaining page in
//! the background, restarting the push near the latest fault, until the
//! destination says every page is local.

use super::error::MigrationError;
use super::protocol::{
    RemoteRuns, ResumeAnswer, ResumeRequest, ToSource, MAX_RESUME_RUNS, PUSH_ROUND, URGENT_ROUND,
};
use crate::image::PAGE_SIZE;
use crate::lazy::{FaultStats, PageRequest};
use crate::memory::PageRuns;
use crate::transport::{PageSender, Session, MAX_FRAME_PAGES};
use nix::sys::uio::{process_vm_readv, RemoteIoVec};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::io::IoSliceMut;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
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
    /// Times the destination reconnected after the link broke.
    pub resumes: u32,
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
    /// Why the push could not read the frozen memory, if it could not:
    /// the serving loop gives up at once instead of waiting for a stall.
    failed: Option<String>,
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
            failed: None,
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

/// Reads `npages` pages of the frozen process `pid` at `vaddr`: with
/// process_vm_readv, or where that cannot read them (a PROT_NONE guard
/// page, which holds data all the same) through /proc/PID/mem, which may
/// (FOLL_FORCE), as the dump reads such pages.
fn read_frozen(pid: i32, vaddr: u64, npages: usize) -> Result<Vec<u8>, MigrationError> {
    use std::os::unix::fs::FileExt;
    let len = npages * PAGE_SIZE as usize;
    let mut buf = vec![0u8; len];
    let remote = [RemoteIoVec {
        base: vaddr as usize,
        len,
    }];
    let read = process_vm_readv(
        Pid::from_raw(pid),
        &mut [IoSliceMut::new(&mut buf)],
        &remote,
    );
    if read.is_ok_and(|n| n == len) {
        return Ok(buf);
    }
    std::fs::File::open(format!("/proc/{pid}/mem"))
        .and_then(|mem| mem.read_exact_at(&mut buf, vaddr))
        .map_err(|e| {
            MigrationError::local_in(
                format!("reading {npages} pages at {vaddr:#x} of frozen process {pid}"),
                e,
            )
        })?;
    Ok(buf)
}

/// How much longer than the destination's reconnection attempts (its
/// `postcopy_recovery_secs`) the source waits for them: more than the
/// transport's idle timeout, since each side notices the broken link up
/// to that much apart, so that the destination gives up (and kills its
/// copy) before the source resumes its own.
pub const RESUME_MARGIN: Duration = Duration::from_secs(10);

/// How the background push sends.
#[derive(Debug, Clone, Copy)]
pub struct Push {
    /// Page streams to spread it over.
    pub streams: u32,
    /// Bytes per second at most (None: as fast as the link goes); page
    /// requests are answered regardless.
    pub bandwidth_limit: Option<u64>,
}

/// Post-copy migrations whose link broke, by identifier: the agent hands
/// a destination's reconnection (its session and request) to the one
/// waiting here.
/// Each entry holds the destination agent's name (only it may resume).
type Waiting =
    std::collections::HashMap<String, (String, std::sync::mpsc::Sender<(Session, ResumeRequest)>)>;

static WAITING: Mutex<Option<Waiting>> = Mutex::new(None);

/// Hands a destination's [`super::protocol::Opening::Resume`] (the first message of
/// the session it opened to this agent) to the migration waiting for it;
/// when none waits (the source gave up and resumed its copy, or never
/// knew this identifier) the destination is told so and must kill its
/// copy. Only the agent the migration went to may resume it.
pub async fn hand_over(session: Session, req: ResumeRequest) {
    let id = req.id.clone();
    let waiting = {
        let mut w = lock(&WAITING);
        let w = w.get_or_insert_with(Default::default);
        match w.get(&id) {
            Some((agent, _)) if agent == session.peer_agent() => w.remove(&id).map(|e| e.1),
            _ => None,
        }
    };
    match waiting {
        Some(tx) => match tx.send((session, req)) {
            Ok(()) => tracing::info!(%id, "the destination reconnected; resuming post-copy"),
            Err(std::sync::mpsc::SendError((session, _))) => refuse(session, &id).await,
        },
        None => {
            tracing::warn!(%id, "a destination asked to resume a post-copy migration no longer waiting here");
            refuse(session, &id).await;
        }
    }
}

async fn refuse(mut session: Session, id: &str) {
    let reason = format!(
        "no post-copy migration {id} waits for its destination here: the source gave up waiting and resumed its own copy, or restarted"
    );
    let _ = session.send(&ResumeAnswer::Refused { reason }).await;
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(1),
        session.recv::<ToSource>(),
    )
    .await;
    session.close("no such migration");
}

/// A post-copy migration waiting for its destination to reconnect: it is
/// registered from [`ResumeWaiter::expect`] on, so that a reconnection
/// that comes before [`ResumeWaiter::wait`] is not refused.
pub struct ResumeWaiter {
    id: String,
    rx: std::sync::mpsc::Receiver<(Session, ResumeRequest)>,
}

impl ResumeWaiter {
    /// Registers migration `id` as waiting for its destination `agent`.
    pub fn expect(id: &str, agent: &str) -> Self {
        let (tx, rx) = std::sync::mpsc::channel();
        lock(&WAITING)
            .get_or_insert_with(Default::default)
            .insert(id.to_string(), (agent.to_string(), tx));
        ResumeWaiter {
            id: id.to_string(),
            rx,
        }
    }

    /// Waits at most `wait` for the destination to reconnect.
    fn wait(self, wait: Duration) -> Result<(Session, ResumeRequest), MigrationError> {
        let got = self.rx.recv_timeout(wait);
        if let Some(w) = lock(&WAITING).as_mut() {
            w.remove(&self.id);
        }
        // A hand-over that raced the removal is still in the channel.
        got.or_else(|_| self.rx.try_recv()).map_err(|_| {
            MigrationError::link(format!("the destination did not reconnect within {wait:?}"))
        })
    }
}

/// Checks the pages a reconnecting destination says it misses: a bounded
/// number of runs, each wholly within the pages this migration left here.
fn check_missing(
    runs: &[(i32, PageRuns)],
    missing: &[RemoteRuns],
) -> Result<Vec<RemoteRuns>, MigrationError> {
    let count: usize = missing.iter().map(|r| r.runs.len()).sum();
    if count > MAX_RESUME_RUNS {
        return Err(MigrationError::protocol(format!(
            "the destination named {count} missing page runs to resume, more than the {MAX_RESUME_RUNS} accepted"
        )));
    }
    for r in missing {
        let ours = runs.iter().find(|(pid, _)| *pid == r.pid).map(|r| &r.1);
        for &(start, end) in &r.runs {
            let fits = start < end
                && start % PAGE_SIZE == 0
                && end % PAGE_SIZE == 0
                && ours.is_some_and(|o| o.covers(start, end));
            if !fits {
                return Err(MigrationError::protocol(format!(
                    "the destination says it misses pages {start:#x}-{end:#x} of process {}, which this migration did not leave on the source",
                    r.pid
                )));
            }
        }
    }
    Ok(missing.to_vec())
}

/// Serves the post-copy phase of migration `id` on `session` until the
/// destination reports every page local; the frozen processes named in
/// `remote` are read (through `host_pids` where their PIDs here differ: a
/// container's). When the link breaks, waits at most `resume_wait`
/// for the destination to reconnect (it may run the workload already),
/// then goes on with the pages it still misses on the new session, which
/// replaces `session`. Returns an error when the
/// destination fails or does not come back: the caller then resumes the
/// source copy (the destination kills its own).
pub fn serve(
    rt: &Handle,
    session: &mut Session,
    id: &str,
    remote: &[RemoteRuns],
    host_pids: &HashMap<i32, i32>,
    push: Push,
    resume_wait: Duration,
) -> Result<Served, MigrationError> {
    let left = LeftHere::new(remote, host_pids);
    serve_on(rt, session, id, &left, push, resume_wait, Served::default())
}

/// [`serve`] of the pages `left` here, from `served` on.
fn serve_on(
    rt: &Handle,
    session: &mut Session,
    id: &str,
    left: &LeftHere,
    push: Push,
    resume_wait: Duration,
    mut served: Served,
) -> Result<Served, MigrationError> {
    loop {
        let why = match serve_link(rt, session, &left.runs, &left.state, push, &mut served) {
            Ok(()) => return Ok(served),
            Err(why) if why.is_link_lost() => why,
            Err(why) => return Err(why),
        };
        session.close("link lost");
        tracing::warn!(id, wait = ?resume_wait, "the link to the destination broke during post-copy; waiting for it to reconnect (the workload stays frozen here)");
        let waiter = ResumeWaiter::expect(id, session.peer_agent());
        *session = left
            .resume(rt, id, waiter, resume_wait)
            .map_err(|e| why.then(e))?;
        served.resumes += 1;
    }
}

/// Serves the post-copy pages `remote` of migration `id`, which a dead
/// run of this agent left frozen here (a plain tree's, held by
/// `source_hold`), to its destination, registered as `waiter`: waits at
/// most `resume_wait` for it to reconnect, serves as [`serve`] does, and
/// confirms the switch-over once every page is there. An error means the
/// destination did not come back or failed: the copy here resumes.
pub fn serve_after_restart(
    rt: &Handle,
    waiter: ResumeWaiter,
    remote: &[RemoteRuns],
    resume_wait: Duration,
) -> Result<Served, MigrationError> {
    let id = waiter.id.clone();
    let id = id.as_str();
    let left = LeftHere::new(remote, &HashMap::new());
    let mut session = left.resume(rt, id, waiter, resume_wait)?;
    let push = Push {
        streams: session.bulk_connections() as u32,
        bandwidth_limit: None,
    };
    let resumed = Served {
        resumes: 1,
        ..Served::default()
    };
    let served = serve_on(rt, &mut session, id, &left, push, resume_wait, resumed)?;
    confirm(rt, &mut session).map_err(|reason| {
        MigrationError::refused("the destination failed after every page arrived: ", reason)
    })?;
    session.close("post-copy finished");
    Ok(served)
}

/// How long the source waits for the destination's Kept after Done (or
/// Commit).
pub(super) const KEPT_WAIT: Duration = Duration::from_secs(10);

/// Tells the destination, which has every page, to keep the workload
/// (it kills its copy unless it hears this) and waits for its Kept,
/// passing over what it sent before it heard Done (a late page request),
/// so that closing the session cannot drop the Done in flight. Without an
/// answer the Done most likely arrived (the destination runs the
/// workload): logged, and Ok. Err: the destination removed its copy (a
/// Docker container whose start failed), with its reason: ours resumes.
pub(super) fn confirm(rt: &Handle, session: &mut Session) -> Result<(), String> {
    let answer = rt.block_on(async {
        session
            .send(&super::protocol::ToDestination::Done)
            .await
            .map_err(|e| e.to_string())?;
        tokio::time::timeout(KEPT_WAIT, async {
            loop {
                match session.recv::<ToSource>().await {
                    Ok(
                        ToSource::PageRequest(_)
                        | ToSource::Running { .. }
                        | ToSource::AllPages { .. },
                    ) => {}
                    other => return other.map_err(|e| e.to_string()),
                }
            }
        })
        .await
        .map_err(|_| format!("no answer within {KEPT_WAIT:?}"))?
    });
    match answer {
        Ok(ToSource::Kept) => Ok(()),
        Ok(ToSource::Failed { reason }) => Err(reason),
        other => {
            tracing::warn!(
                ?other,
                "the destination did not acknowledge the switch-over; it should be running there"
            );
            Ok(())
        }
    }
}

/// The pages a post-copy migration left here, and the push's state over
/// them.
struct LeftHere {
    /// Per process (as the destination names it), its pages left here.
    runs: Vec<(i32, PageRuns)>,
    /// The push's state.
    state: Arc<Mutex<PushState>>,
    /// PID on the wire -> PID here, where they differ.
    host_pids: HashMap<i32, i32>,
}

impl LeftHere {
    fn new(remote: &[RemoteRuns], host_pids: &HashMap<i32, i32>) -> Self {
        LeftHere {
            runs: remote
                .iter()
                .map(|r| (r.pid, PageRuns::from_runs(r.runs.clone())))
                .collect(),
            state: Arc::new(Mutex::new(PushState::new(remote, host_pids.clone()))),
            host_pids: host_pids.clone(),
        }
    }

    /// Waits at most `wait` for the destination of migration `id`
    /// (registered as `waiter`) to reconnect, checks the pages it says it misses, makes them the
    /// push's and answers Resumed: the new session.
    fn resume(
        &self,
        rt: &Handle,
        id: &str,
        waiter: ResumeWaiter,
        wait: Duration,
    ) -> Result<Session, MigrationError> {
        let (mut session, req) = waiter.wait(wait)?;
        let missing = match check_missing(&self.runs, &req.missing) {
            Ok(m) => m,
            Err(reason) => {
                let _ = rt.block_on(session.send(&ResumeAnswer::Refused {
                    reason: reason.to_string(),
                }));
                return Err(reason);
            }
        };
        *lock(&self.state) = PushState::new(&missing, self.host_pids.clone());
        rt.block_on(session.send(&ResumeAnswer::Resumed))
            .map_err(|e| MigrationError::link_in("answering the destination's resume failed", e))?;
        tracing::info!(
            id,
            pages = lock(&self.state).left,
            "post-copy resumed on a new session"
        );
        Ok(session)
    }
}

/// How long the source stays frozen without hearing from the destination
/// while its background push makes no progress either (everything handed
/// out, or blocked) before it gives up: the destination should have said
/// every page is local long before.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Returns why the post-copy phase cannot go on without the destination:
/// the push's count of pages left has not moved for `limit`, or the push
/// could not read the frozen memory.
async fn stalled(state: &Mutex<PushState>, limit: Duration) -> MigrationError {
    let mut left = lock(state).left;
    let mut since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (now, failed) = {
            let st = lock(state);
            (st.left, st.failed.clone())
        };
        if let Some(why) = failed {
            return MigrationError::local(format!("the background push stopped: {why}"));
        }
        if now != left {
            left = now;
            since = Instant::now();
        } else if since.elapsed() > limit {
            return MigrationError::protocol(format!(
                "the destination made no progress for {limit:?} (no message, no page pushed) while the workload stayed frozen here"
            ));
        }
    }
}

/// Serves on one session (see [`serve`]).
fn serve_link(
    rt: &Handle,
    session: &mut Session,
    runs: &[(i32, PageRuns)],
    state: &Arc<Mutex<PushState>>,
    push: Push,
    served: &mut Served,
) -> Result<(), MigrationError> {
    let mut urgent: PageSender = rt
        .block_on(session.open_pages())
        .map_err(|e| MigrationError::link_in("opening the urgent page stream failed", e))?;
    urgent.set_priority(1);
    let mut pusher: Option<std::thread::JoinHandle<Result<u64, MigrationError>>> = None;
    if served.running_at.is_some() {
        pusher = Some(start_push(rt, session, state.clone(), push)?);
    }
    let result = loop {
        // Dropping the read half-way (on a stall) spoils the control
        // stream, but the session is given up then.
        let message = match rt.block_on(async {
            tokio::select! {
                m = session.recv::<ToSource>() => Ok(m),
                why = stalled(state, STALL_TIMEOUT) => Err(why),
            }
        }) {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => {
                break Err(MigrationError::link_in(
                    "the link to the destination failed",
                    e,
                ))
            }
            Err(why) => break Err(why),
        };
        match message {
            ToSource::PageRequest(req) => {
                if let Err(e) = answer(rt, &mut urgent, runs, state, req) {
                    break Err(e);
                }
                served.requests += 1;
            }
            ToSource::Running { restore_ms, .. } if served.running_at.is_none() => {
                super::journal::fault(super::journal::FAULT_POSTCOPY_RUNNING);
                served.restore_ms = restore_ms;
                served.running_at = Some(Instant::now());
                match start_push(rt, session, state.clone(), push) {
                    Ok(p) => pusher = Some(p),
                    Err(e) => break Err(e),
                }
            }
            // Sent again after a resume.
            ToSource::Running { .. } => {}
            ToSource::AllPages {
                stats,
                all_local_ms,
            } if served.running_at.is_some() => {
                served.faults = stats;
                served.all_local_ms = all_local_ms;
                break Ok(());
            }
            ToSource::Failed { reason } => {
                break Err(MigrationError::refused("the destination failed: ", reason))
            }
            other => {
                break Err(MigrationError::protocol(format!(
                    "the destination answered {other:?} during post-copy"
                )))
            }
        }
    };
    if result.is_err() {
        // Stop the push (nothing is left to send to) and its streams.
        lock(state).left = 0;
        session.close("post-copy stopped");
    }
    let _ = rt.block_on(urgent.finish());
    if let Some(pusher) = pusher {
        match pusher.join() {
            Ok(Ok(pages)) => served.pages_pushed += pages,
            Ok(Err(e)) if result.is_ok() => tracing::warn!(%e, "the background push failed"),
            _ => {}
        }
    }
    result
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Answers one page request on the urgent stream, after checking that it
/// names pages this migration left on the source.
fn answer(
    rt: &Handle,
    urgent: &mut PageSender,
    runs: &[(i32, PageRuns)],
    state: &Mutex<PushState>,
    req: PageRequest,
) -> Result<(), MigrationError> {
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
        return Err(MigrationError::protocol(format!(
            "the destination asked for {} pages at {:#x} of process {}, which this migration did not leave on the source",
            req.npages, req.vaddr, req.pid
        )));
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
    .map_err(|e| MigrationError::link_in("answering a page request failed", e))
}

/// Starts the background push: a thread reading the frozen memory in
/// chunks (from the latest fault on), page streams carrying them.
fn start_push(
    rt: &Handle,
    session: &Session,
    state: Arc<Mutex<PushState>>,
    push: Push,
) -> Result<std::thread::JoinHandle<Result<u64, MigrationError>>, MigrationError> {
    let mut lanes = Vec::new();
    for _ in 0..push.streams.max(1) {
        let mut stream = rt
            .block_on(session.open_pages())
            .map_err(|e| MigrationError::link_in("opening a push stream failed", e))?;
        let (tx, mut rx) = mpsc::channel::<(i32, u64, Vec<u8>)>(4);
        let task = rt.spawn(async move {
            while let Some((pid, vaddr, data)) = rx.recv().await {
                stream.send_pages(pid, PUSH_ROUND, vaddr, &data).await?;
            }
            stream.finish().await.map_err(MigrationError::from)
        });
        lanes.push((tx, task));
    }
    let rt = rt.clone();
    Ok(std::thread::spawn(move || {
        let mut pushed = 0u64;
        let started = Instant::now();
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
            let data = match read_frozen(host, vaddr, npages) {
                Ok(data) => data,
                Err(e) => {
                    lock(&state).failed = Some(e.to_string());
                    return Err(e);
                }
            };
            let lane = &lanes[next_lane % lanes.len()];
            next_lane += 1;
            if lane.0.blocking_send((pid, vaddr, data)).is_err() {
                return Err(MigrationError::link("a push stream stopped"));
            }
            pushed += npages as u64;
            if let Some(limit) = push.bandwidth_limit.filter(|&l| l > 0) {
                let due = Duration::from_secs_f64((pushed * PAGE_SIZE) as f64 / limit as f64);
                if let Some(ahead) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(ahead);
                }
            }
        }
        for (tx, task) in lanes {
            drop(tx);
            rt.block_on(task)
                .map_err(MigrationError::local)
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

    #[test]
    fn a_resume_names_only_pages_left_here() {
        let base = 0x10000;
        let runs = [(7, PageRuns::from_runs(vec![(base, base + 8 * PAGE_SIZE)]))];
        let ok = [RemoteRuns {
            pid: 7,
            runs: vec![(base + PAGE_SIZE, base + 3 * PAGE_SIZE)],
        }];
        assert_eq!(check_missing(&runs, &ok).unwrap(), ok.to_vec());
        for bad in [
            (7, base, base + 9 * PAGE_SIZE),
            (7, base + 1, base + PAGE_SIZE),
            (7, base + PAGE_SIZE, base + PAGE_SIZE),
            (8, base, base + PAGE_SIZE),
        ] {
            let missing = [RemoteRuns {
                pid: bad.0,
                runs: vec![(bad.1, bad.2)],
            }];
            assert!(check_missing(&runs, &missing).is_err(), "{bad:?}");
        }
        let flood = [RemoteRuns {
            pid: 7,
            runs: vec![(base, base + PAGE_SIZE); MAX_RESUME_RUNS + 1],
        }];
        let err = check_missing(&runs, &flood).unwrap_err().to_string();
        assert!(err.contains("more than"), "{err}");
    }
}
