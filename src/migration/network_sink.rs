//! The source's network sink: the checkpoint engine drives it (pages,
//! round ends, the switch-over decision, the commit of the frozen state),
//! and it streams to the destination, pages round-robin over page streams
//! and the conversation on the control stream. Its [`CopyPhase`] says
//! whether the workload still runs.

use super::error::MigrationError;
use super::journal::{self, Journal, Record, Role};
use super::options::{MigrateOptions, MigrationMode};
use super::policy::{self, Decision, Limits, SwitchReason};
use super::postcopy::KEPT_WAIT;
use super::protocol::{RemoteRuns, ToDestination, ToSource};
use super::source_hold::SourceHold;
use super::stats::{Downtime, MigrationStats, Phase, PostcopyStats, Progress, RoundStats};
use crate::dump::sink::{CheckpointSink, MemoryMode};
use crate::dump::CheckpointError;
use crate::image::{ms, Checkpoint, ImageSummary, NextStep, RoundReport, PAGE_SIZE};
use crate::transport::{PageSender, Session};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio::sync::mpsc;

/// Every TID of the tree rooted at `pid`: (as this host names it, as its
/// PID namespace names it).
pub(super) fn namespace_tid_pairs(pid: i32) -> Result<Vec<(i32, i32)>, CheckpointError> {
    let mut ns = crate::inspect::pidns::PidNamespace::of(pid)?;
    let mut tids = Vec::new();
    for process in crate::inspect::collect_tree(pid)? {
        ns.learn(process)?;
        for tid in crate::proc::task_ids(process)? {
            tids.push((tid, ns.ns(tid)));
        }
    }
    Ok(tids)
}

/// Work for a page-stream lane.
enum LaneWork {
    /// Pages with contents.
    Pages {
        pid: i32,
        round: u32,
        vaddr: u64,
        data: Vec<u8>,
    },
    /// All-zero pages.
    Zero {
        pid: i32,
        round: u32,
        vaddr: u64,
        npages: u64,
    },
}

/// A lane: one task writing frames to the page stream of its round.
struct Lane {
    work: mpsc::Sender<LaneWork>,
    task: tokio::task::JoinHandle<Result<(), MigrationError>>,
}

async fn run_lane(
    mut stream: PageSender,
    mut work: mpsc::Receiver<LaneWork>,
) -> Result<(), MigrationError> {
    while let Some(item) = work.recv().await {
        match item {
            LaneWork::Pages {
                pid,
                round,
                vaddr,
                data,
            } => stream.send_pages(pid, round, vaddr, &data).await,
            LaneWork::Zero {
                pid,
                round,
                vaddr,
                npages,
            } => stream.send_zero(pid, round, vaddr, npages).await,
        }?;
    }
    Ok(stream.finish().await?)
}

/// Where the engine's copy is, as its callbacks move it on: pre-copy
/// rounds while the workload runs, then frozen (from the switch-over
/// decision on, or from the start in post-copy).
pub(super) enum CopyPhase {
    /// Pre-copy rounds: the workload runs.
    Precopy,
    /// The workload is frozen.
    Frozen {
        /// When the tree started to stop ([`CheckpointSink::stopping`];
        /// before that, when the freeze was decided).
        at: Instant,
        /// Bytes sent by then.
        bytes_at_freeze: u64,
        /// When the first page sent while frozen left.
        first_write: Option<Instant>,
    },
}

impl CopyPhase {
    /// Frozen from now, `bytes_at_freeze` sent before.
    pub(super) fn frozen(bytes_at_freeze: u64) -> Self {
        CopyPhase::Frozen {
            at: Instant::now(),
            bytes_at_freeze,
            first_write: None,
        }
    }

    /// When the workload froze (now, when no freeze was decided: no
    /// pre-copy was possible).
    fn frozen_at(&self) -> Instant {
        match self {
            CopyPhase::Frozen { at, .. } => *at,
            CopyPhase::Precopy => Instant::now(),
        }
    }

    /// When the first page sent while frozen left (now, when none did).
    fn first_write(&self) -> Instant {
        match self {
            CopyPhase::Frozen {
                first_write: Some(t),
                ..
            } => *t,
            _ => Instant::now(),
        }
    }
}

/// The destination agent as a checkpoint sink: pages go round-robin over
/// page streams (new ones each round), each round ends with a barrier on
/// the control stream, and the switch-over follows [`policy::decide`].
pub(super) struct NetworkSink<'a> {
    rt: Handle,
    session: &'a mut Session,
    pid: i32,
    limits: Limits,
    bandwidth_limit: Option<u64>,
    page_streams: u32,
    lanes: Vec<Lane>,
    next_lane: usize,
    round: u32,
    frames: u64,
    round_started: Instant,
    started: Instant,
    reports: Vec<RoundReport>,
    stats: MigrationStats,
    /// Pre-copy, or frozen (and since when).
    pub(super) phase: CopyPhase,
    progress: &'a mut (dyn FnMut(&Progress) + Send),
    mode: MigrationMode,
    /// Post-copy: the pages each frozen process keeps for now.
    remote: Vec<RemoteRuns>,
    /// The migration's identifier (its offer's).
    pub(super) id: String,
    /// How long to wait for the destination to reconnect.
    resume_wait: Duration,
    /// The tree is a container's: PIDs on the wire are its namespace's.
    in_container: bool,
    /// `--sync-rootfs`: the rootfs as of the first pass.
    pub(super) rootfs: Option<super::rootfs_sync::SourceRootfs>,
    /// Where the switch-over's decision is recorded.
    journal: Journal,
    /// The tree held frozen by the kernel from the state's sending until
    /// the engine ends or resumes it (not a container's post-copy).
    hold: Option<SourceHold>,
}

impl<'a> NetworkSink<'a> {
    /// A sink streaming to the destination on `session`.
    pub(super) fn new(
        rt: Handle,
        session: &'a mut Session,
        pid: i32,
        opts: &MigrateOptions,
        memory_bytes: u64,
        progress: &'a mut (dyn FnMut(&Progress) + Send),
    ) -> Self {
        Self {
            rt,
            session,
            pid,
            limits: opts.limits,
            bandwidth_limit: opts.bandwidth_limit,
            page_streams: opts.page_streams.max(1),
            lanes: Vec::new(),
            next_lane: 0,
            round: 0,
            frames: 0,
            round_started: Instant::now(),
            started: Instant::now(),
            reports: Vec::new(),
            stats: MigrationStats {
                memory_bytes,
                ..MigrationStats::default()
            },
            phase: CopyPhase::Precopy,
            progress,
            mode: opts.mode,
            remote: Vec::new(),
            id: String::new(),
            resume_wait: opts.postcopy_recovery + super::postcopy::RESUME_MARGIN,
            in_container: opts.container.is_some(),
            rootfs: None,
            journal: opts.journal.clone(),
            hold: None,
        }
    }

    /// Stops the page streams of a failed copy.
    pub(super) fn abort_lanes(&mut self) {
        for lane in self.lanes.drain(..) {
            lane.task.abort();
        }
    }

    /// The statistics, and the progress callback back.
    pub(super) fn finish(self) -> (MigrationStats, &'a mut (dyn FnMut(&Progress) + Send)) {
        (self.stats, self.progress)
    }

    fn link_error(&self, what: &str, why: impl std::fmt::Display) -> CheckpointError {
        CheckpointError::Sink {
            what: format!("{what} to the destination {}", self.session.peer_addr()),
            why: why.to_string(),
        }
    }

    /// Hands work to the next lane, opening this round's streams first.
    fn push(&mut self, work: LaneWork, npages: u64) -> Result<(), CheckpointError> {
        if let CopyPhase::Frozen { first_write, .. } = &mut self.phase {
            first_write.get_or_insert_with(Instant::now);
        }
        if self.lanes.is_empty() {
            for _ in 0..self.page_streams {
                let stream = self
                    .rt
                    .block_on(self.session.open_pages())
                    .map_err(|e| self.link_error("open a page stream", e))?;
                let (tx, rx) = mpsc::channel(8);
                let task = self.rt.spawn(run_lane(stream, rx));
                self.lanes.push(Lane { work: tx, task });
            }
        }
        self.frames += npages.div_ceil(u64::from(crate::transport::MAX_FRAME_PAGES));
        let lane = &self.lanes[self.next_lane % self.lanes.len()];
        self.next_lane += 1;
        if lane.work.blocking_send(work).is_err() {
            let err = self.close_lanes().map(|e| e.to_string());
            return Err(self.link_error("send pages", err.unwrap_or_default()));
        }
        self.throttle();
        Ok(())
    }

    /// Sleeps as long as the bytes sent so far run ahead of the limit.
    fn throttle(&self) {
        if let Some(limit) = self.bandwidth_limit.filter(|&l| l > 0) {
            let due = Duration::from_secs_f64(self.stats.bytes_sent as f64 / limit as f64);
            if let Some(ahead) = due.checked_sub(self.started.elapsed()) {
                std::thread::sleep(ahead);
            }
        }
    }

    /// Ends this round's page streams and waits for their last bytes to
    /// leave; returns the first lane error.
    fn close_lanes(&mut self) -> Option<MigrationError> {
        let mut first_error = None;
        for lane in self.lanes.drain(..) {
            drop(lane.work);
            let result = self
                .rt
                .block_on(lane.task)
                .map_err(MigrationError::local)
                .and_then(|r| r);
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        first_error
    }

    /// Ends the current round: closes its streams, tells the destination
    /// how many frames it holds and waits until it stored them.
    fn end_round(&mut self) -> Result<(), CheckpointError> {
        if let Some(err) = self.close_lanes() {
            return Err(self.link_error("send pages", err));
        }
        let end = ToDestination::RoundEnd {
            round: self.round,
            frames: self.frames,
        };
        self.rt
            .block_on(self.session.send(&end))
            .map_err(|e| self.link_error("end a round", e))?;
        match self.rt.block_on(self.session.recv::<ToSource>()) {
            Ok(ToSource::RoundStored { round }) if round == self.round => Ok(()),
            Ok(ToSource::Failed { reason }) => Err(self.link_error("store pages", reason)),
            Ok(other) => {
                Err(self.link_error("end a round", format!("the destination answered {other:?}")))
            }
            Err(e) => Err(self.link_error("end a round", e)),
        }
    }
}

impl NetworkSink<'_> {
    /// The two-phase commit of a pre-copy switch-over, once the state is
    /// sent: waits for Prepared (the copy there restored, held frozen,
    /// recorded), records Committed durably and only then sends Commit
    /// and waits for Kept (the copy there runs). Without Prepared,
    /// Aborted is recorded before the error returns (and the engine
    /// resumes the copy here). After Committed the copy here is ended
    /// whatever the link does: without Kept, the destination asks for the
    /// decision (its copy held until then) and the statistics say
    /// unacknowledged. Returns the restore's milliseconds.
    fn decide_switch_over(&mut self) -> Result<f64, CheckpointError> {
        let answer = self.recv_while_holding();
        let restore_ms = match answer {
            Ok(ToSource::Prepared { restore_ms, .. }) => restore_ms,
            other => {
                self.record(journal::Phase::Aborted);
                return Err(match other {
                    Ok(ToSource::Failed { reason }) => self.link_error("restore", reason),
                    Ok(other) => {
                        self.link_error("restore", format!("the destination answered {other:?}"))
                    }
                    Err(e) => self.link_error("restore", e),
                });
            }
        };
        match self.record(journal::Phase::Committed) {
            Some(journal::Phase::Committed) => {}
            decided => {
                return Err(self.link_error(
                    "commit the switch-over",
                    match decided {
                        Some(_) => {
                            "the destination asked for the decision first, and was told Aborted"
                        }
                        None => "the decision could not be recorded (see the log); aborted",
                    },
                ))
            }
        }
        tracing::debug!(id = %self.id, "recorded Committed");
        let sent = self.rt.block_on(self.session.send(&ToDestination::Commit));
        // Its answer, or why none came.
        let kept: Result<ToSource, String> = match sent {
            Ok(()) => match self.rt.block_on(async {
                tokio::time::timeout(KEPT_WAIT, self.session.recv::<ToSource>()).await
            }) {
                Ok(answer) => answer.map_err(|e| e.to_string()),
                Err(_) => Err(format!("no answer within {KEPT_WAIT:?}")),
            },
            Err(e) => Err(e.to_string()),
        };
        match kept {
            // The record goes once the copy here is ended (`end_hold`).
            Ok(ToSource::Kept) => tracing::debug!(id = %self.id, "the destination keeps its copy"),
            // Its copy is gone there (a Docker container whose start
            // failed after its restore): ours is the only one, and resumes.
            Ok(ToSource::Failed { reason }) => {
                self.overrule();
                return Err(self.link_error("keep the workload", reason));
            }
            other => {
                tracing::warn!(
                    pid = self.pid,
                    ?other,
                    "the destination did not acknowledge the commit; it runs its copy once it asks for the decision"
                );
                self.stats.unacknowledged = true;
            }
        }
        Ok(restore_ms)
    }

    /// Receives the destination's answer to the state while the tree is
    /// moved into its hold ([`SourceHold::begin`]) on a
    /// thread of its own: the hold costs no downtime as long as the
    /// destination's restore takes longer.
    fn recv_while_holding(&mut self) -> Result<ToSource, crate::transport::RecvError> {
        let names = self.hold_names();
        let (root, journal) = (self.pid, self.journal.clone());
        let (rt, session) = (&self.rt, &mut *self.session);
        let (answer, hold) = std::thread::scope(|scope| {
            let holding = names.map(|(id, peer, agent)| {
                scope.spawn(move || SourceHold::begin(&journal, (&id, &peer, &agent), root, &[]))
            });
            let answer = rt.block_on(session.recv::<ToSource>());
            (answer, holding.and_then(|h| h.join().ok().flatten()))
        });
        self.hold = hold;
        answer
    }

    /// The migration's identifier and the destination's address and name,
    /// for a hold's record; None for a container's post-copy (not held).
    fn hold_names(&self) -> Option<(String, String, String)> {
        (!self.in_container || self.mode == MigrationMode::Precopy).then(|| {
            (
                self.id.clone(),
                self.session.peer_addr().to_string(),
                self.session.peer_agent().to_string(),
            )
        })
    }

    /// Hands the tree back to the engine once the switch-over is decided
    /// (`done`: the engine kills it, and when `kill_first` it is killed
    /// before it leaves its hold; otherwise the engine resumes it), then
    /// settles the record, never before, so that an agent dying in
    /// between still finds the hold: a post-copy's and an acknowledged
    /// commit's go (nothing asks for them), any other stays for the
    /// destination's question, without its hold.
    fn end_hold(&mut self, done: bool, kill_first: bool) {
        if let Some(hold) = self.hold.take() {
            if done && kill_first {
                hold.end_killed();
            } else {
                hold.end_released();
            }
        }
        let acknowledged = |r: &Record| {
            self.mode != MigrationMode::Precopy
                || (done && r.phase == journal::Phase::Committed && !self.stats.unacknowledged)
        };
        match self.journal.read(Role::Source, &self.id) {
            Some(r) if acknowledged(&r) => self.journal.remove(Role::Source, &self.id),
            Some(r) => super::source_hold::forget_hold(&self.journal, r),
            None => {}
        }
    }

    /// Records the source's decision `phase` on this migration; returns
    /// the decision that holds (another one recorded first wins), or None
    /// when none could be recorded.
    fn record(&self, phase: journal::Phase) -> Option<journal::Phase> {
        let peer = self.session.peer_addr().to_string();
        let agent = self.session.peer_agent().to_string();
        match self.journal.decide(&self.id, phase, &peer, &agent) {
            Ok(held) => Some(held),
            Err(e) => {
                tracing::error!(id = %self.id, %e, "cannot record the switch-over's decision");
                None
            }
        }
    }

    /// The destination removed its copy after the commit: the decision
    /// becomes Aborted (the copy here resumes), so that nothing asks
    /// later for a copy that is gone.
    fn overrule(&self) {
        let Some(decided) = self.journal.read(Role::Source, &self.id) else {
            return;
        };
        let record = Record {
            phase: journal::Phase::Aborted,
            ..decided
        };
        if let Err(e) = self.journal.write(&record) {
            tracing::error!(id = %self.id, %e, "cannot record the abort after the destination's failure");
        }
    }

    /// The post-copy switch-over: the last non-lazy pages, the state and
    /// the list of pages left here; then serve pages, frozen, until the
    /// destination holds every one.
    fn commit_postcopy(
        &mut self,
        checkpoint: &Checkpoint,
    ) -> Result<ImageSummary, CheckpointError> {
        let frozen_at = self.phase.frozen_at();
        let final_pages_at = self.phase.first_write();
        self.end_round()?;
        let stored_at = Instant::now();
        tracing::debug!(id = %self.id, "the final pages are stored; sending the state");
        let remote_pages: u64 = self
            .remote
            .iter()
            .flat_map(|r| &r.runs)
            .map(|(s, e)| (e - s) / PAGE_SIZE)
            .sum();
        // The destination runs its copy once it has the state: from here
        // on the copy here must stay frozen whatever happens to this
        // agent, and its next run must know to serve the pages left here.
        if let Some((id, peer, agent)) = self.hold_names() {
            self.hold =
                SourceHold::begin(&self.journal, (&id, &peer, &agent), self.pid, &self.remote);
            if self.hold.is_some()
                && self.record(journal::Phase::Committed) != Some(journal::Phase::Committed)
            {
                return Err(self.link_error(
                    "commit the switch-over",
                    "the decision could not be recorded (see the log); aborted",
                ));
            }
        }
        let state = ToDestination::PostCopyState {
            checkpoint: Box::new(checkpoint.clone()),
            remote: self.remote.clone(),
        };
        self.rt
            .block_on(self.session.send(&state))
            .map_err(|e| self.link_error("send the process state", e))?;
        // A container's pages are named by its PIDs, but read through ours.
        let host_pids = if self.in_container {
            namespace_tid_pairs(self.pid)?
                .into_iter()
                .map(|(host, ns)| (ns, host))
                .collect()
        } else {
            HashMap::new()
        };
        let served = super::postcopy::serve(
            &self.rt,
            self.session,
            &self.id,
            &self.remote,
            &host_pids,
            super::postcopy::Push {
                streams: self.page_streams,
                bandwidth_limit: self.bandwidth_limit,
            },
            self.resume_wait,
        )
        .map_err(|e| self.link_error("serve post-copy pages", e))?;
        super::postcopy::confirm(&self.rt, self.session)
            .map_err(|reason| self.link_error("keep the workload", reason))?;
        let running_at = served.running_at.unwrap_or_else(Instant::now);
        self.stats.downtime = Downtime::partition(
            frozen_at,
            final_pages_at,
            stored_at,
            running_at,
            served.restore_ms,
        );
        let f = served.faults;
        self.stats.postcopy = Some(Box::new(PostcopyStats {
            freeze_to_running_ms: self.stats.downtime.total_ms,
            remote_pages,
            faults: f.faults,
            zero_faults: f.zero_faults,
            requests_served: served.requests,
            pages_faulted: f.pages_faulted,
            pages_pushed: f.pages_pushed,
            fault_latency_p50_us: f.latency_p50_us,
            fault_latency_p99_us: f.latency_p99_us,
            all_local_ms: served.all_local_ms,
            resumes: served.resumes,
        }));
        self.stats.bytes_sent += (f.pages_faulted + served.pages_pushed) * PAGE_SIZE;
        Ok(ImageSummary {
            pages_written: self.stats.bytes_sent / PAGE_SIZE,
            zero_pages: 0,
            image_bytes: self.stats.bytes_sent,
        })
    }
}

impl CheckpointSink for NetworkSink<'_> {
    fn write_pages(&mut self, pid: i32, vaddr: u64, data: &[u8]) -> Result<(), CheckpointError> {
        self.stats.bytes_sent += data.len() as u64;
        let npages = data.len() as u64 / PAGE_SIZE;
        let work = LaneWork::Pages {
            pid,
            round: self.round,
            vaddr,
            data: data.to_vec(),
        };
        self.push(work, npages)
    }

    fn write_zero_pages(
        &mut self,
        pid: i32,
        vaddr: u64,
        npages: u64,
    ) -> Result<(), CheckpointError> {
        let work = LaneWork::Zero {
            pid,
            round: self.round,
            vaddr,
            npages,
        };
        self.push(work, npages)
    }

    fn round_done(&mut self, report: &RoundReport) -> Result<NextStep, CheckpointError> {
        self.end_round()?;
        let measured = RoundReport {
            duration_ms: ms(self.round_started.elapsed()),
            ..*report
        };
        self.reports.push(measured);
        let decision = policy::decide(&self.reports, &self.limits);
        let bandwidth = policy::bandwidth(&self.reports).unwrap_or(0.0);
        let dirty_rate = measured.dirty_pages as f64 * PAGE_SIZE as f64
            / (self
                .reports
                .iter()
                .rev()
                .nth(1)
                .map_or(1.0, |r| r.duration_ms)
                / 1000.0)
                .max(1e-3);
        self.stats.rounds.push(RoundStats {
            round: self.round,
            pages: measured.pages_written,
            zero_pages: measured.zero_pages,
            bytes: measured.pages_written * PAGE_SIZE,
            duration_ms: measured.duration_ms,
            dirty_pages: measured.dirty_pages,
        });
        self.stats.throughput_bytes_per_sec = bandwidth;
        let remaining = policy::expected_downtime_ms(&self.reports)
            .map_or(self.stats.memory_bytes, |ms| {
                (ms / 1000.0 * bandwidth) as u64
            });
        (self.progress)(&Progress {
            phase: Phase::Precopy,
            round: self.round,
            bytes_sent: self.stats.bytes_sent,
            memory_bytes: self.stats.memory_bytes,
            remaining_bytes: remaining,
            dirty_bytes_per_sec: if measured.round == 0 { 0.0 } else { dirty_rate },
            throughput_bytes_per_sec: bandwidth,
        });
        self.round += 1;
        self.frames = 0;
        self.round_started = Instant::now();
        match decision {
            Decision::AnotherRound => Ok(NextStep::AnotherRound),
            Decision::SwitchOver(reason) => {
                tracing::info!(
                    pid = self.pid,
                    ?reason,
                    rounds = self.reports.len(),
                    "switching over"
                );
                self.stats.switch_reason = Some(reason);
                self.phase = CopyPhase::frozen(self.stats.bytes_sent);
                (self.progress)(&Progress {
                    phase: Phase::Frozen,
                    round: self.round,
                    bytes_sent: self.stats.bytes_sent,
                    memory_bytes: self.stats.memory_bytes,
                    remaining_bytes: remaining,
                    dirty_bytes_per_sec: 0.0,
                    throughput_bytes_per_sec: bandwidth,
                });
                Ok(NextStep::Freeze)
            }
        }
    }

    fn stopping(&mut self) {
        // The downtime starts now; pages sent before (another process's
        // pre-copy after the switch-over was decided) are not part of it.
        self.phase = CopyPhase::frozen(self.stats.bytes_sent);
    }

    fn memory_mode(&self) -> MemoryMode {
        match self.mode {
            MigrationMode::Precopy => MemoryMode::Eager,
            MigrationMode::Postcopy => MemoryMode::Lazy { precopy: false },
            MigrationMode::Hybrid => MemoryMode::Lazy { precopy: true },
        }
    }

    fn lazy_pages(&mut self, pid: i32, runs: Vec<(u64, u64)>) -> Result<(), CheckpointError> {
        if !runs.is_empty() {
            self.remote.push(RemoteRuns { pid, runs });
        }
        Ok(())
    }

    fn commit(&mut self, checkpoint: &Checkpoint) -> Result<ImageSummary, CheckpointError> {
        if let Some(r) = self.rootfs.as_mut() {
            // Frozen: nothing writes the rootfs now.
            let synced = super::rootfs_sync::frozen_pass(&self.rt, self.session, r);
            synced.map_err(|e| self.link_error("sync the rootfs", e))?;
            self.stats.rootfs = self.rootfs.as_ref().map(|r| r.stats());
        }
        let committed = if self.mode == MigrationMode::Precopy {
            self.commit_precopy(checkpoint)
        } else {
            self.commit_postcopy(checkpoint)
        };
        // A tree with SysV segments to mark removed goes back to ptrace
        // alive: the engine marks them from inside its root before it
        // kills it.
        self.end_hold(committed.is_ok(), checkpoint.sysv_shm.is_empty());
        committed
    }
}

impl NetworkSink<'_> {
    /// The pre-copy switch-over: the last dirty pages, the state, then the
    /// two-phase commit.
    fn commit_precopy(&mut self, checkpoint: &Checkpoint) -> Result<ImageSummary, CheckpointError> {
        let frozen_at = self.phase.frozen_at();
        if self.stats.switch_reason.is_none() {
            // No pre-copy was possible: everything went while frozen.
            self.stats.switch_reason = Some(SwitchReason::MaxRounds);
        }
        let final_pages_at = self.phase.first_write();
        let bytes_at_freeze = match self.phase {
            CopyPhase::Frozen {
                bytes_at_freeze, ..
            } => bytes_at_freeze,
            CopyPhase::Precopy => 0,
        };
        self.end_round()?;
        let stored_at = Instant::now();
        tracing::debug!(id = %self.id, "the final pages are stored; sending the state");
        self.rt
            .block_on(
                self.session
                    .send(&ToDestination::State(Box::new(checkpoint.clone()))),
            )
            .map_err(|e| self.link_error("send the process state", e))?;
        let restore_ms = self.decide_switch_over()?;
        let running_at = Instant::now();
        self.stats.downtime =
            Downtime::partition(frozen_at, final_pages_at, stored_at, running_at, restore_ms);
        let transfer_ms = self.stats.downtime.final_transfer_ms;
        let final_bytes = self.stats.bytes_sent - bytes_at_freeze;
        self.stats.final_round = RoundStats {
            round: self.round,
            pages: final_bytes / PAGE_SIZE,
            zero_pages: 0,
            bytes: final_bytes,
            duration_ms: transfer_ms,
            dirty_pages: final_bytes / PAGE_SIZE,
        };
        Ok(ImageSummary {
            pages_written: self.stats.bytes_sent / PAGE_SIZE,
            zero_pages: 0,
            image_bytes: self.stats.bytes_sent,
        })
    }
}
