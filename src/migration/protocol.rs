//! The migration conversation on the control stream, in postcard (framed by
//! the transport). Page data never travels here: it goes on the page
//! streams as fixed little-endian frames, each carrying its round.

use crate::image::Checkpoint;
use crate::lazy::{FaultStats, PageRequest};
use serde::{Deserialize, Serialize};

/// The round number page frames answering a post-copy page request carry.
pub const URGENT_ROUND: u32 = u32::MAX;
/// The round number page frames of the post-copy background push carry.
pub const PUSH_ROUND: u32 = u32::MAX - 1;

/// The pages of one process that stay on the source at a post-copy
/// switch-over: the destination fetches them on fault or receives them in
/// the background.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteRuns {
    /// The process.
    pub pid: i32,
    /// Page runs (start, end), page-aligned, sorted.
    pub runs: Vec<(u64, u64)>,
}

/// Runs a [`ResumeRequest`] may name in all: a bound on what a peer makes
/// the source check and keep.
pub const MAX_RESUME_RUNS: usize = 1 << 20;

/// The destination of a post-copy migration whose link broke reconnects
/// to the source agent and opens the new session with this (in
/// [`ToDestination::Resume`]): which pages it still misses, so that the
/// source, still frozen, pushes only those. Every other page the
/// migration left on the source is held here already.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeRequest {
    /// The migration's identifier (its offer's).
    pub id: String,
    /// Per process, the pages still missing here: runs within the remote
    /// runs of the post-copy switch-over.
    pub missing: Vec<RemoteRuns>,
}

/// What the source proposes before anything is frozen: enough for the
/// destination to refuse early (a CPU it cannot load the registers on, a
/// PID it already uses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    /// Migration identifier, for both agents' logs and work directories.
    pub id: String,
    /// The workload's root PID.
    pub pid: i32,
    /// Every PID and TID the restored workload will need.
    pub tids: Vec<i32>,
    /// XCR0 of the source CPU.
    pub xcr0: u64,
    /// Size of the source's XSAVE area.
    pub xstate_size: u32,
    /// Bytes of memory with data, for the destination's space check.
    pub memory_bytes: u64,
    /// Page streams the source will open.
    pub page_streams: u32,
    /// The container the workload is (its PIDs and TIDs are then those of
    /// its PID namespace); None for a process tree.
    pub container: Option<ContainerOffer>,
}

/// The container a migrated workload is: the destination creates the same
/// container from the same bundle and restores into its init.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerOffer {
    /// The container ID.
    pub id: String,
    /// Its OCI runtime.
    pub runtime: crate::container::Runtime,
    /// The runtime's state directory on the source when not the default
    /// (the destination uses the same).
    pub runtime_root: Option<String>,
    /// The bundle directory, which must exist on the destination.
    pub bundle: String,
    /// The addresses and routes of the container's own network namespace
    /// (None: it shares its host's, or has only loopback), for the
    /// destination's network hook.
    pub network: Option<crate::container::net::NetworkConfig>,
}

/// A dry run's question (`migrate-agent dry-run --to`): would this offer
/// be taken, and how fast do pages travel? The destination checks the
/// offer as a migration would, keeps nothing, then reads and discards
/// `transfer_bytes` of page frames (round 0, the offer's root PID), closed
/// by a [`ToDestination::RoundEnd`] it answers with
/// [`ToSource::RoundStored`]; the source ends with [`ToDestination::Done`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeOffer {
    /// The offer a migration of the workload would make now.
    pub offer: Offer,
    /// Bytes of page data the source will send to measure the bandwidth.
    pub transfer_bytes: u64,
}

/// Source to destination.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToDestination {
    /// Start of a migration.
    Offer(Offer),
    /// Every frame of `round` has been sent: `frames` in all, over all page
    /// streams. The destination answers [`ToSource::RoundStored`] once it
    /// holds them, so a later round never races an earlier one.
    RoundEnd {
        /// The round.
        round: u32,
        /// Frames of that round.
        frames: u64,
    },
    /// The frozen workload's state, after the last round's `RoundEnd`:
    /// restore it.
    State(Box<Checkpoint>),
    /// Post-copy switch-over: the frozen workload's state, after the last
    /// round's `RoundEnd` (if any), with the pages that stay on the source
    /// for now. Restore it with lazy memory.
    PostCopyState {
        /// The state.
        checkpoint: Box<Checkpoint>,
        /// Per process, the pages still on the source.
        remote: Vec<RemoteRuns>,
    },
    /// The source saw [`ToSource::Running`] (and in post-copy
    /// [`ToSource::AllPages`]) and will now kill its copy.
    Done,
    /// The source gives up (its workload keeps running there).
    Abort {
        /// Why, for the destination's log.
        reason: String,
    },
    /// A dry run's probe instead of an offer (see [`ProbeOffer`]); last,
    /// so that the earlier variants keep their postcard tags.
    Probe(ProbeOffer),
    /// `--sync-rootfs`: list what the container's rootfs holds here;
    /// answered by [`ToSource::RootfsManifest`] messages.
    RootfsQuery,
    /// `--sync-rootfs`: changes to apply to the container's rootfs, in
    /// order; after the `last` one the destination answers
    /// [`ToSource::RootfsSynced`].
    RootfsChanges {
        /// The changes (bounded in number and bytes by the source).
        changes: Vec<crate::container::rootfs::Change>,
        /// The pass is complete.
        last: bool,
    },
    /// Post-copy recovery, sent by the destination (the connecting side
    /// always speaks this enum first) on a new session to the source
    /// agent after the link broke: resume the migration.
    Resume(ResumeRequest),
    /// The source's answer to a [`ToDestination::Resume`]: it serves the
    /// missing pages on this session from now on.
    Resumed,
}

/// Destination to source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToSource {
    /// The offer is acceptable: send pages.
    Accepted,
    /// The offer cannot be taken; nothing was done.
    Refused {
        /// Why, as a sentence.
        reason: String,
    },
    /// Every frame of the round is stored.
    RoundStored {
        /// The round.
        round: u32,
    },
    /// The workload runs on the destination.
    Running {
        /// Milliseconds the restore took.
        restore_ms: f64,
        /// The restored root PID.
        pid: i32,
    },
    /// Post-copy: a restored thread waits for these pages; answer them on
    /// the urgent stream before anything else.
    PageRequest(PageRequest),
    /// Post-copy: every page is on the destination; the source copy may go.
    AllPages {
        /// The fault server's figures.
        stats: FaultStats,
        /// Milliseconds from the workload running here to every page local.
        all_local_ms: f64,
    },
    /// The destination heard [`ToDestination::Done`] and keeps the
    /// workload: the source may kill its copy and close the session.
    Kept,
    /// The restore failed; nothing is left on the destination.
    Failed {
        /// Why, as a sentence.
        reason: String,
    },
    /// The answer to a [`ToDestination::Probe`]: whether the offer would
    /// be taken, and the memory free here.
    /// Last, so that the earlier variants keep their postcard tags.
    ProbeChecked {
        /// Why the offer would be refused (None: it would be taken).
        refusal: Option<String>,
        /// MemAvailable of the destination, in bytes.
        memory_available_bytes: u64,
    },
    /// Part of the destination's rootfs manifest (answer to
    /// [`ToDestination::RootfsQuery`]).
    RootfsManifest {
        /// Entries ([`crate::container::rootfs::MAX_MANIFEST_CHUNK`] at
        /// most).
        entries: Vec<crate::container::rootfs::Entry>,
        /// The manifest is complete.
        last: bool,
    },
    /// Every change of the pass is applied to the rootfs here.
    RootfsSynced {
        /// Changes applied in this pass.
        changes: u64,
    },
}
