//! The post-copy fault server of the destination: every restored process
//! (and every child it forks) has a userfaultfd over its private anonymous
//! memory. A thread reads their events first (fork, mremap, madvise,
//! munmap change what is still missing), then their faults: a page the
//! source still holds is requested on the urgent channel, any other
//! missing page is the zero page. Pages arriving from the source (urgent
//! answers and the background push) are installed with UFFDIO_COPY, which
//! never replaces a page that is already there. Every userfaultfd (and,
//! for a plain tree, a pidfd of every restored process) also goes to a
//! guard process ([`FaultGuard`]) that keeps the faults blocked and kills
//! the workload should this agent die before every page is local.

mod guard;

pub use guard::FaultGuard;

use crate::image::PAGE_SIZE;
use crate::kernel::uffd::{self, UffdEvent};
use crate::memory::PageRuns;
use crate::restore::LazyProcess;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::{mpsc, Notify};

/// Pages asked for after a fault: the faulting page and the still-missing
/// pages right after it (a workload that touches one page of a run
/// usually touches the next ones too).
pub const FAULT_CLUSTER_PAGES: u32 = 16;

/// A page request from the destination's fault server to the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRequest {
    /// The source process whose page is wanted.
    pub pid: i32,
    /// Its address on the source.
    pub vaddr: u64,
    /// Pages from there (at most [`FAULT_CLUSTER_PAGES`]).
    pub npages: u32,
}

/// What the fault server did, for the migration statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultStats {
    /// Faults read (a thread touching a missing page).
    pub faults: u64,
    /// Faults resolved with the zero page (never present on the source,
    /// or discarded here since).
    pub zero_faults: u64,
    /// Page requests sent to the source.
    pub requests: u64,
    /// Pages installed from answers to requests.
    pub pages_faulted: u64,
    /// Pages installed from the background push.
    pub pages_pushed: u64,
    /// Median microseconds from a fault to its page being installed.
    pub latency_p50_us: f64,
    /// 99th percentile of the same.
    pub latency_p99_us: f64,
}

/// Why a page could not be installed now.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// Events are queued on the userfaultfd (EAGAIN): the server thread
    /// must read them first; try again shortly.
    #[error("userfaultfd events are pending for process {pid}; retry")]
    Retry {
        /// The source process.
        pid: i32,
    },
}

/// The missing pages of one address space and what is known about them.
#[derive(Default)]
struct ViewState {
    /// Pages (by address here) the source still holds, at the same address.
    remote: BTreeSet<u64>,
    /// Pages moved by mremap: source address -> address here.
    moved: BTreeMap<u64, u64>,
    /// Pages asked for, by address here, with the time of the first fault.
    pending: HashMap<u64, Instant>,
    /// The process is gone: nothing more to install.
    dead: bool,
}

impl ViewState {
    /// Where the source page `src` goes here, if it is still wanted.
    fn target_of(&self, src: u64) -> Option<u64> {
        if self.remote.contains(&src) {
            Some(src)
        } else {
            self.moved.get(&src).copied()
        }
    }

    /// The source address of the page at `dst` here, if it is still remote.
    fn source_of(&self, dst: u64) -> Option<u64> {
        if self.remote.contains(&dst) {
            return Some(dst);
        }
        self.moved.iter().find(|(_, &d)| d == dst).map(|(&s, _)| s)
    }

    /// Forgets a page (installed, or no longer wanted).
    fn forget(&mut self, src: u64, dst: u64) {
        if src == dst {
            self.remote.remove(&src);
        } else {
            self.moved.remove(&src);
        }
    }

    fn remaining(&self) -> u64 {
        (self.remote.len() + self.moved.len()) as u64
    }
}

/// One address space served: a restored process or a child it forked.
struct View {
    /// The source process whose pages this address space wants.
    source_pid: i32,
    uffd: OwnedFd,
    state: Mutex<ViewState>,
}

/// Counters shared by the server thread and the page installers.
#[derive(Default)]
struct Counters {
    stats: FaultStats,
    latencies_us: Vec<f64>,
}

/// The registry of every served address space, shared by the server
/// thread and the tasks installing pages from the network.
pub struct FaultServer {
    views: Mutex<Vec<Arc<View>>>,
    counters: Mutex<Counters>,
    /// Notified whenever pages are installed or forgotten.
    progress: Notify,
    /// Written to wake the server thread (a view was added, or stop).
    wake: OwnedFd,
    stop: std::sync::atomic::AtomicBool,
    /// Restored processes handed over so far (forked children not counted).
    restored: std::sync::atomic::AtomicUsize,
    /// The guard holding every userfaultfd while post-copy lasts.
    guard: Arc<FaultGuard>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl FaultServer {
    /// Starts the server thread. Restored processes arrive on `ready`
    /// with the pages the source still holds for them in `remote`; page
    /// requests go out on `requests`. Each userfaultfd goes to `guard`
    /// too, and with `guard_processes` (a plain tree: its PIDs are this
    /// host's) each restored process is one the guard kills should this
    /// agent die.
    pub fn start(
        remote: HashMap<i32, PageRuns>,
        ready: std::sync::mpsc::Receiver<LazyProcess>,
        requests: mpsc::UnboundedSender<PageRequest>,
        guard: Arc<FaultGuard>,
        guard_processes: bool,
    ) -> Result<(Arc<FaultServer>, std::thread::JoinHandle<()>), Errno> {
        let (wake_rx, wake_tx) = nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK)?;
        let server = Arc::new(FaultServer {
            views: Mutex::new(Vec::new()),
            counters: Mutex::new(Counters::default()),
            progress: Notify::new(),
            wake: wake_tx,
            stop: std::sync::atomic::AtomicBool::new(false),
            restored: std::sync::atomic::AtomicUsize::new(0),
            guard,
        });
        // Restored processes are added by a helper thread as the restore
        // hands them over, so the server thread never blocks on `ready`.
        let adder = server.clone();
        std::thread::spawn(move || {
            while let Ok(p) = ready.recv() {
                let guarded = adder.guard.keep(p.uffd.as_fd()).and_then(|()| {
                    if guard_processes {
                        adder.guard.kill_on_loss(p.pid)
                    } else {
                        Ok(())
                    }
                });
                if let Err(e) = guarded {
                    tracing::error!(pid = p.pid, %e, "the post-copy guard did not take this process: it would run on zero pages should this agent die");
                }
                let pages = remote.get(&p.pid).map_or_else(BTreeSet::new, |runs| {
                    runs.runs()
                        .iter()
                        .flat_map(|&(s, e)| (s..e).step_by(PAGE_SIZE as usize))
                        .collect()
                });
                adder.add_view(View {
                    source_pid: p.pid,
                    uffd: p.uffd,
                    state: Mutex::new(ViewState {
                        remote: pages,
                        ..ViewState::default()
                    }),
                });
                adder
                    .restored
                    .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                adder.progress.notify_waiters();
            }
        });
        let thread_server = server.clone();
        let thread = std::thread::Builder::new()
            .name("ferry-faults".into())
            .spawn(move || thread_server.run(wake_rx, requests))
            .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EAGAIN)))?;
        Ok((server, thread))
    }

    fn add_view(&self, view: View) {
        lock(&self.views).push(Arc::new(view));
        let _ = nix::unistd::write(&self.wake, &[1]);
        self.progress.notify_waiters();
    }

    /// Releases the guard, stops the server thread and closes every
    /// userfaultfd (which ends every registration: from then on missing
    /// pages are plain zero pages). Call once every page is local, or once
    /// the workload was killed.
    pub fn stop(&self) {
        self.guard.release();
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        let _ = nix::unistd::write(&self.wake, &[1]);
    }

    /// Pages the source still holds that some address space here wants.
    pub fn remaining(&self) -> u64 {
        // The list is copied first: a view's state is never locked while
        // the list is (the server thread locks them the other way round).
        let views: Vec<Arc<View>> = lock(&self.views).clone();
        views.iter().map(|v| lock(&v.state).remaining()).sum()
    }

    /// Per source process, the pages some address space here still wants
    /// from the source: what a destination names when it resumes a
    /// post-copy migration after the link broke.
    pub fn missing(&self) -> HashMap<i32, PageRuns> {
        let views: Vec<Arc<View>> = lock(&self.views).clone();
        let mut out: HashMap<i32, Vec<(u64, u64)>> = HashMap::new();
        for view in views {
            let st = lock(&view.state);
            if st.dead {
                continue;
            }
            out.entry(view.source_pid).or_default().extend(
                st.remote
                    .iter()
                    .chain(st.moved.keys())
                    .map(|&p| (p, p + PAGE_SIZE)),
            );
        }
        out.into_iter()
            .map(|(pid, pages)| (pid, PageRuns::from_runs(pages)))
            .collect()
    }

    /// One request per page a thread here waits on: what a destination
    /// asks for again on a new session after the link broke (the answers
    /// to the first requests may have been lost with it).
    pub fn pending_requests(&self) -> Vec<PageRequest> {
        let views: Vec<Arc<View>> = lock(&self.views).clone();
        let mut out = Vec::new();
        for view in views {
            let st = lock(&view.state);
            if st.dead {
                continue;
            }
            out.extend(st.pending.keys().filter_map(|&page| {
                st.source_of(page).map(|src| PageRequest {
                    pid: view.source_pid,
                    vaddr: src,
                    npages: 1,
                })
            }));
        }
        out.sort_unstable_by_key(|r| (r.pid, r.vaddr));
        out.dedup();
        out
    }

    /// Restored processes handed over by the restore so far.
    pub fn restored(&self) -> usize {
        self.restored.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Waits until something changed (pages installed, a process added).
    pub async fn changed(&self) {
        self.progress.notified().await;
    }

    /// The statistics so far.
    pub fn stats(&self) -> FaultStats {
        let c = lock(&self.counters);
        let mut sorted = c.latencies_us.clone();
        sorted.sort_by(f64::total_cmp);
        let pick = |q: f64| {
            if sorted.is_empty() {
                0.0
            } else {
                sorted[((sorted.len() - 1) as f64 * q).round() as usize]
            }
        };
        FaultStats {
            latency_p50_us: pick(0.5),
            latency_p99_us: pick(0.99),
            ..c.stats
        }
    }

    /// Installs pages of source process `pid` at `vaddr` (its address
    /// there): `data` holds them, or None for all-zero pages. Pages no
    /// address space wants any more are dropped; `urgent` says the pages
    /// answer a request (for the statistics).
    pub fn install(
        &self,
        pid: i32,
        vaddr: u64,
        npages: u64,
        data: Option<&[u8]>,
        urgent: bool,
    ) -> Result<(), InstallError> {
        let mut installed = 0u64;
        let mut latencies = Vec::new();
        let mut result = Ok(());
        // A child forked meanwhile (its view added after the list was
        // taken) may still miss these pages: take the list again until no
        // new address space of this source process appears.
        let mut done: Vec<Arc<View>> = Vec::new();
        loop {
            let fresh: Vec<Arc<View>> = lock(&self.views)
                .iter()
                .filter(|v| v.source_pid == pid && !done.iter().any(|d| Arc::ptr_eq(d, v)))
                .cloned()
                .collect();
            if fresh.is_empty() || result.is_err() {
                break;
            }
            for view in fresh {
                self.install_into(
                    &view,
                    vaddr,
                    npages,
                    data,
                    &mut installed,
                    &mut latencies,
                    &mut result,
                );
                done.push(view);
            }
        }
        {
            let mut c = lock(&self.counters);
            if urgent {
                c.stats.pages_faulted += installed;
            } else {
                c.stats.pages_pushed += installed;
            }
            c.latencies_us.extend(latencies);
        }
        self.progress.notify_waiters();
        result
    }

    /// Installs pages into one address space (see [`FaultServer::install`]).
    #[allow(clippy::too_many_arguments)]
    fn install_into(
        &self,
        view: &View,
        vaddr: u64,
        npages: u64,
        data: Option<&[u8]>,
        installed: &mut u64,
        latencies: &mut Vec<f64>,
        result: &mut Result<(), InstallError>,
    ) {
        let pid = view.source_pid;
        {
            let mut st = lock(&view.state);
            if st.dead {
                return;
            }
            let mut i = 0;
            while i < npages {
                let src = vaddr + i * PAGE_SIZE;
                let Some(dst) = st.target_of(src) else {
                    i += 1;
                    continue;
                };
                // A run of pages wanted at the same offset, in one call.
                let mut n = 1;
                while i + n < npages
                    && st.target_of(src + n * PAGE_SIZE) == Some(dst + n * PAGE_SIZE)
                {
                    n += 1;
                }
                let done = loop {
                    let done = match data {
                        Some(bytes) => {
                            let off = (i * PAGE_SIZE) as usize;
                            let len = (n * PAGE_SIZE) as usize;
                            uffd::uffd_copy(&view.uffd, dst, &bytes[off..off + len])
                                .map(|b| b as u64)
                        }
                        None => uffd::uffd_zeropage(&view.uffd, dst, n * PAGE_SIZE),
                    };
                    match done {
                        // One call stays within one mapping: the run
                        // crosses into the next; take less.
                        Err(Errno::ENOENT) if n > 1 => n /= 2,
                        other => break other,
                    }
                };
                let pages = match done {
                    Ok(bytes) => (bytes / PAGE_SIZE).max(1).min(n),
                    // Faulted in (or discarded and faulted) meanwhile: ours
                    // is not needed for this page.
                    Err(Errno::EEXIST) => 1,
                    Err(Errno::EAGAIN) => {
                        *result = Err(InstallError::Retry { pid });
                        break;
                    }
                    Err(Errno::ESRCH) => {
                        st.dead = true;
                        st.remote.clear();
                        st.moved.clear();
                        break;
                    }
                    Err(e) => {
                        // Unmapped or no longer registered: nobody waits.
                        tracing::debug!(pid, dst, %e, "a page arrived for memory that is gone");
                        1
                    }
                };
                if done.is_ok() {
                    *installed += pages;
                }
                for k in 0..pages {
                    let (s, d) = (src + k * PAGE_SIZE, dst + k * PAGE_SIZE);
                    st.forget(s, d);
                    if let Some(at) = st.pending.remove(&d) {
                        latencies.push(at.elapsed().as_secs_f64() * 1e6);
                    }
                }
                i += pages;
            }
        }
    }

    /// The server thread: polls every userfaultfd, reads events before
    /// faults, resolves what it can itself and asks the source for the rest.
    fn run(self: Arc<Self>, wake: OwnedFd, requests: mpsc::UnboundedSender<PageRequest>) {
        let mut events = Vec::new();
        let mut deferred: Vec<(Arc<View>, u64)> = Vec::new();
        while !self.stop.load(std::sync::atomic::Ordering::Acquire) {
            let views: Vec<Arc<View>> = lock(&self.views).clone();
            let ready: Vec<bool> = {
                let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(views.len() + 1);
                fds.push(PollFd::new(wake.as_fd(), PollFlags::POLLIN));
                for v in &views {
                    fds.push(PollFd::new(v.uffd.as_fd(), PollFlags::POLLIN));
                }
                let timeout = if deferred.is_empty() { 1000u16 } else { 1 };
                if let Err(e) = nix::poll::poll(&mut fds, PollTimeout::from(timeout)) {
                    if e != Errno::EINTR {
                        tracing::error!(%e, "polling the userfaultfds failed");
                        return;
                    }
                }
                fds.iter()
                    .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                    .collect()
            };
            if ready[0] {
                let mut buf = [0u8; 64];
                while matches!(nix::unistd::read(wake.as_fd(), &mut buf), Ok(n) if n > 0) {}
            }
            for (view, _) in views.iter().zip(&ready[1..]).filter(|(_, &r)| r) {
                events.clear();
                // The state stays locked from the read of the events until
                // they are applied: reading a remove event lets madvise go
                // on and discard the pages, and a page installed in between
                // by a late push would bring old contents back.
                let mut st = lock(&view.state);
                if let Err(e) = uffd::uffd_read_events(&view.uffd, &mut events) {
                    tracing::debug!(pid = view.source_pid, %e, "userfaultfd read failed");
                    st.dead = true;
                    st.remote.clear();
                    st.moved.clear();
                    drop(st);
                    self.progress.notify_waiters();
                    continue;
                }
                // Events first: they change what is missing; faults after.
                for ev in events
                    .iter()
                    .filter(|e| !matches!(e, UffdEvent::PageFault { .. }))
                {
                    self.handle_event(view, &mut st, *ev);
                }
                drop(st);
                self.progress.notify_waiters();
                for ev in &events {
                    if let UffdEvent::PageFault { address } = *ev {
                        lock(&self.counters).stats.faults += 1;
                        deferred.push((view.clone(), address & !(PAGE_SIZE - 1)));
                    }
                }
            }
            deferred.retain(|(view, page)| !self.resolve_fault(view, *page, &requests));
        }
        lock(&self.views).clear();
    }

    /// Applies one event to `st`, the locked state of `view`.
    fn handle_event(&self, view: &View, st: &mut ViewState, ev: UffdEvent) {
        match ev {
            UffdEvent::Fork { uffd: fd } => match uffd::uffd_from_event(fd) {
                Ok(child) => {
                    if let Err(e) = self.guard.keep(child.as_fd()) {
                        tracing::error!(pid = view.source_pid, %e, "the post-copy guard did not take a forked child's userfaultfd");
                    }
                    let state = ViewState {
                        remote: st.remote.clone(),
                        moved: st.moved.clone(),
                        dead: st.dead,
                        ..ViewState::default()
                    };
                    tracing::debug!(pid = view.source_pid, "a restored process forked");
                    self.add_view(View {
                        source_pid: view.source_pid,
                        uffd: child,
                        state: Mutex::new(state),
                    });
                }
                Err(e) => tracing::warn!(pid = view.source_pid, %e, "bad fork event"),
            },
            UffdEvent::Remove { start, end } => {
                let gone: Vec<u64> = st.remote.range(start..end).copied().collect();
                for p in gone {
                    st.remote.remove(&p);
                }
                st.moved.retain(|_, d| !(start..end).contains(d));
                let waiting: Vec<u64> = st
                    .pending
                    .keys()
                    .copied()
                    .filter(|p| (start..end).contains(p))
                    .collect();
                for p in waiting {
                    st.pending.remove(&p);
                    // The waiter faults again and gets the zero page.
                    let _ = uffd::uffd_wake(&view.uffd, p, PAGE_SIZE);
                }
            }
            UffdEvent::Remap { from, to, len } => {
                let range = from..from + len;
                let moving: Vec<u64> = st.remote.range(range.clone()).copied().collect();
                for p in moving {
                    st.remote.remove(&p);
                    st.moved.insert(p, p - from + to);
                }
                for d in st.moved.values_mut().filter(|d| range.contains(*d)) {
                    *d = *d - from + to;
                }
                let waiting: Vec<(u64, Instant)> = st
                    .pending
                    .iter()
                    .filter(|(p, _)| range.contains(*p))
                    .map(|(&p, &t)| (p, t))
                    .collect();
                for (p, t) in waiting {
                    st.pending.remove(&p);
                    st.pending.insert(p - from + to, t);
                    let _ = uffd::uffd_wake(&view.uffd, p, PAGE_SIZE);
                }
            }
            UffdEvent::PageFault { .. } | UffdEvent::Other(_) => {}
        }
    }

    /// Resolves a fault at `page`, or asks the source for it. Returns
    /// false when it must be tried again (events are pending).
    fn resolve_fault(
        &self,
        view: &View,
        page: u64,
        requests: &mpsc::UnboundedSender<PageRequest>,
    ) -> bool {
        let mut st = lock(&view.state);
        if st.dead {
            return true;
        }
        if let Some(src) = st.source_of(page) {
            if st.pending.contains_key(&page) {
                return true;
            }
            st.pending.insert(page, Instant::now());
            let mut npages = 1;
            while npages < FAULT_CLUSTER_PAGES
                && st.target_of(src + u64::from(npages) * PAGE_SIZE)
                    == Some(page + u64::from(npages) * PAGE_SIZE)
            {
                npages += 1;
            }
            drop(st);
            lock(&self.counters).stats.requests += 1;
            let _ = requests.send(PageRequest {
                pid: view.source_pid,
                vaddr: src,
                npages,
            });
            return true;
        }
        match uffd::uffd_zeropage(&view.uffd, page, PAGE_SIZE) {
            Ok(_) => {
                lock(&self.counters).stats.zero_faults += 1;
                true
            }
            Err(Errno::EAGAIN) => false,
            Err(Errno::EEXIST) => {
                let _ = uffd::uffd_wake(&view.uffd, page, PAGE_SIZE);
                true
            }
            Err(e) => {
                tracing::debug!(pid = view.source_pid, page, %e, "zero page not placed");
                true
            }
        }
    }
}
