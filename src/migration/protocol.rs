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
/// [`Opening::Resume`]): which pages it still misses, so that the
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
    /// A process tree's established TCP connections when the offer is
    /// made (empty for a container, whose namespace carries its
    /// addresses): the destination refuses, before anything is frozen,
    /// one whose local address it does not have, and prepares their
    /// network lock.
    pub tcp_flows: Vec<crate::image::TcpFlow>,
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
    /// A Docker container: what the destination's dockerd creates and
    /// starts through ferry-runc's handoff (the runtime, root and bundle
    /// above are then the source's, for its log only).
    pub docker: Option<crate::container::docker::DockerSpec>,
}

/// A dry run's question (`migrate-agent dry-run --to`): would this offer
/// be taken, and how fast do pages travel? The destination checks the
/// offer as a migration would, keeps nothing, then reads and discards
/// `transfer_bytes` of page frames (round 0, the offer's root PID), closed
/// by a [`ProbeToDestination::PagesSent`] it answers with
/// [`ProbeToSource::PagesStored`]; the source ends with
/// [`ProbeToDestination::Done`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeOffer {
    /// The offer a migration of the workload would make now.
    pub offer: Offer,
    /// Bytes of page data the source will send to measure the bandwidth.
    pub transfer_bytes: u64,
}

/// The first message of every session, from the agent that opened it: it
/// says which conversation follows, each with message enums of its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Opening {
    /// A migration: [`ToDestination`] and [`ToSource`] follow.
    Migrate(Offer),
    /// A dry run's probe (see [`ProbeOffer`]): [`ProbeToDestination`] and
    /// [`ProbeToSource`] follow.
    Probe(ProbeOffer),
    /// Post-copy recovery, sent by the destination agent on a new session
    /// to the source agent after the link broke: the source answers with a
    /// [`ResumeAnswer`], then the migration's conversation goes on.
    Resume(ResumeRequest),
    /// Two-phase commit recovery: the destination of migration `id` (the
    /// string), holding its restored copy frozen and prepared, lost the
    /// source before hearing its decision (or restarted): the source
    /// answers with a [`Verdict`] from its durable records, and the
    /// session ends.
    Outcome(String),
}

/// Source to destination, in a migration (after [`Opening::Migrate`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToDestination {
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
    /// `--sync-rootfs`: the rootfs conversation, answered by
    /// [`ToSource::Rootfs`].
    Rootfs(RootfsRequest),
    /// The source recorded its decision Committed (durably) after
    /// [`ToSource::Prepared`]: the destination lets its copy run, and
    /// answers [`ToSource::Kept`]. The source's copy ends.
    Commit,
}

/// Destination to source, in a migration.
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
    /// An answer of the rootfs conversation.
    Rootfs(RootfsReply),
    /// The workload is restored here and held frozen (it stays so if this
    /// agent dies), with a durable record of it: the source may decide.
    /// Answered by [`ToDestination::Commit`] or
    /// [`ToDestination::Abort`]; without either, the destination asks
    /// the source for the [`Verdict`] on a new session
    /// ([`Opening::Outcome`]).
    Prepared {
        /// Milliseconds the restore took.
        restore_ms: f64,
        /// The restored root PID.
        pid: i32,
    },
}

/// `--sync-rootfs`, source to destination: its own conversation inside a
/// migration, before the freeze and again while frozen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RootfsRequest {
    /// List what the container's rootfs holds here; answered by
    /// [`RootfsReply::Manifest`] messages.
    Query,
    /// Changes to apply to the container's rootfs, in order; after the
    /// `last` one the destination answers [`RootfsReply::Synced`].
    Changes {
        /// The changes (bounded in number and bytes by the source).
        changes: Vec<crate::container::rootfs::Change>,
        /// The pass is complete.
        last: bool,
    },
}

/// `--sync-rootfs`, destination to source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RootfsReply {
    /// Part of the destination's rootfs manifest (answer to
    /// [`RootfsRequest::Query`]).
    Manifest {
        /// Entries ([`crate::container::rootfs::MAX_MANIFEST_CHUNK`] at
        /// most).
        entries: Vec<crate::container::rootfs::Entry>,
        /// The manifest is complete.
        last: bool,
    },
    /// Every change of the pass is applied to the rootfs here.
    Synced {
        /// Changes applied in this pass.
        changes: u64,
    },
}

/// Source to destination, in a dry run's probe (after
/// [`Opening::Probe`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ProbeToDestination {
    /// Every probe frame is sent: `frames` in all, over all page streams.
    PagesSent {
        /// Frames sent.
        frames: u64,
    },
    /// The source has read every answer: the probe is over.
    Done,
}

/// Destination to source, in a dry run's probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ProbeToSource {
    /// Whether the offer would be taken, and the memory free here.
    Checked {
        /// Why the offer would be refused (None: it would be taken).
        refusal: Option<String>,
        /// MemAvailable of the destination, in bytes.
        memory_available_bytes: u64,
    },
    /// Every probe frame arrived (and was discarded).
    PagesStored,
    /// The probe failed here.
    Failed {
        /// Why, as a sentence.
        reason: String,
    },
}

/// The source agent's answer to an [`Opening::Resume`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ResumeAnswer {
    /// The source serves the missing pages on this session from now on.
    Resumed,
    /// No migration can resume: the destination must kill its copy.
    Refused {
        /// Why, as a sentence.
        reason: String,
    },
}

/// The source's answer to an [`Opening::Outcome`]: its durable decision
/// on a migration's switch-over (one authority: the source).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// The source recorded Committed: the destination's copy runs, the
    /// source's is ended.
    Committed,
    /// The source recorded Aborted (or, asked with no decision taken,
    /// records it now): the destination kills its held copy; the source's
    /// runs.
    Aborted,
    /// The source knows nothing of the migration (a record removed after
    /// both sides knew, or never made): nothing may run on its word.
    Unknown,
}

#[cfg(test)]
mod tests {
    //! The wire, pinned: the postcard bytes of every message variant of
    //! every conversation. A failing case here is a wire change: raise
    //! [`crate::transport::PROTOCOL_VERSION`] (it goes up with every wire
    //! change), then pin the new bytes. Never reorder variants to make it
    //! pass.

    use super::*;
    use crate::container::net::{Interface, NetworkConfig, Route};
    use crate::container::rootfs::{Change, Entry, Kind, Meta};
    use crate::image::HostInfo;

    fn offer() -> Offer {
        Offer {
            id: "h-1-2".into(),
            pid: 7,
            tids: vec![7, 8],
            xcr0: 0x207,
            xstate_size: 2696,
            memory_bytes: 4096,
            page_streams: 2,
            container: Some(ContainerOffer {
                id: "c".into(),
                runtime: crate::container::Runtime::Crun,
                runtime_root: None,
                bundle: "/b".into(),
                network: Some(NetworkConfig {
                    interfaces: vec![Interface {
                        name: "eth0".into(),
                        addresses: vec!["10.0.0.2/24".into()],
                    }],
                    routes: vec![Route {
                        dst: "default".into(),
                        gateway: Some("10.0.0.1".into()),
                        dev: None,
                    }],
                }),
                docker: None,
            }),
            tcp_flows: vec![],
        }
    }

    fn checkpoint() -> Box<Checkpoint> {
        Box::new(Checkpoint {
            host: HostInfo {
                kernel_release: "6.1".into(),
                xcr0: 7,
                xstate_size: 832,
                vdso_len: 8192,
                vdso_hash: 1,
            },
            processes: vec![],
            zombies: vec![],
            files: vec![],
            pipes: vec![],
            sysv_shm: vec![],
            pid_namespace: false,
            ghost_files: Vec::new(),
            tcp_flows: Vec::new(),
            network_lock: None,
            cgroups: Default::default(),
            ptys: Vec::new(),
            network_namespace: crate::image::NetworkNamespace::Shared,
        })
    }

    fn runs() -> Vec<RemoteRuns> {
        vec![RemoteRuns {
            pid: 7,
            runs: vec![(0x1000, 0x3000)],
        }]
    }

    fn meta() -> Meta {
        Meta {
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: (1, 2),
        }
    }

    fn hex<T: Serialize>(message: &T) -> String {
        postcard::to_allocvec(message)
            .unwrap()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Every variant of every message enum, with its encoding.
    fn pinned() -> Vec<(String, &'static str)> {
        let probe = ProbeOffer {
            offer: offer(),
            transfer_bytes: 1 << 20,
        };
        let resume = ResumeRequest {
            id: "h-1-2".into(),
            missing: runs(),
        };
        let changes = vec![
            Change::Remove {
                path: b"a".to_vec(),
            },
            Change::Dir {
                path: b"d".to_vec(),
                meta: meta(),
            },
            Change::Symlink {
                path: b"l".to_vec(),
                target: b"t".to_vec(),
                meta: meta(),
            },
            Change::File {
                path: b"f".to_vec(),
                meta: meta(),
                offset: 0,
                data: b"xy".to_vec(),
                last: true,
            },
            Change::Meta {
                path: b"m".to_vec(),
                kind: Kind::Symlink,
                meta: meta(),
            },
        ];
        let entry = Entry {
            path: b"f".to_vec(),
            kind: Kind::File,
            size: 2,
            meta: meta(),
            ctime: (3, 4),
            target: vec![],
        };
        let stats = FaultStats {
            faults: 1,
            zero_faults: 2,
            requests: 3,
            pages_faulted: 4,
            pages_pushed: 5,
            latency_p50_us: 0.5,
            latency_p99_us: 2.0,
        };
        vec![
            (hex(&Opening::Migrate(offer())), "0005682d312d320e020e10870488158020020101630100022f6201010465746830010b31302e302e302e322f3234010764656661756c74010831302e302e302e31000000"),
            (hex(&Opening::Probe(probe)), "0105682d312d320e020e10870488158020020101630100022f6201010465746830010b31302e302e302e322f3234010764656661756c74010831302e302e302e31000000808040"),
            (hex(&Opening::Resume(resume)), "0205682d312d32010e0180208060"),
            (hex(&ToDestination::RoundEnd { round: 3, frames: 300 }), "0003ac02"),
            (hex(&ToDestination::State(checkpoint())), "0103362e3107c00680400100000000000000000000000000"),
            (
                hex(&ToDestination::PostCopyState {
                    checkpoint: checkpoint(),
                    remote: runs(),
                }),
                "0203362e3107c00680400100000000000000000000000000010e0180208060",
            ),
            (hex(&ToDestination::Done), "03"),
            (hex(&ToDestination::Abort { reason: "r".into() }), "040172"),
            (hex(&ToDestination::Rootfs(RootfsRequest::Query)), "0500"),
            (
                hex(&ToDestination::Rootfs(RootfsRequest::Changes {
                    changes,
                    last: true,
                })),
                "050105000161010164a4030000020202016c0174a40300000202030166a40300000202000278790104016d02a4030000020201",
            ),
            (hex(&ToSource::Accepted), "00"),
            (hex(&ToSource::Refused { reason: "r".into() }), "010172"),
            (hex(&ToSource::RoundStored { round: 3 }), "0203"),
            (
                hex(&ToSource::Running {
                    restore_ms: 1.5,
                    pid: 7,
                }),
                "03000000000000f83f0e",
            ),
            (
                hex(&ToSource::PageRequest(PageRequest {
                    pid: 7,
                    vaddr: 0x1000,
                    npages: 2,
                })),
                "040e802002",
            ),
            (
                hex(&ToSource::AllPages {
                    stats,
                    all_local_ms: 3.0,
                }),
                "050102030405000000000000e03f00000000000000400000000000000840",
            ),
            (hex(&ToSource::Kept), "06"),
            (hex(&ToSource::Failed { reason: "r".into() }), "070172"),
            (
                hex(&ToSource::Rootfs(RootfsReply::Manifest {
                    entries: vec![entry],
                    last: false,
                })),
                "08000101660102a4030000020206040000",
            ),
            (
                hex(&ToSource::Rootfs(RootfsReply::Synced { changes: 5 })),
                "080105",
            ),
            (hex(&ProbeToDestination::PagesSent { frames: 9 }), "0009"),
            (hex(&ProbeToDestination::Done), "01"),
            (
                hex(&ProbeToSource::Checked {
                    refusal: Some("r".into()),
                    memory_available_bytes: 1 << 30,
                }),
                "000101728080808004",
            ),
            (hex(&ProbeToSource::PagesStored), "01"),
            (hex(&ProbeToSource::Failed { reason: "r".into() }), "020172"),
            (hex(&ResumeAnswer::Resumed), "00"),
            (hex(&ResumeAnswer::Refused { reason: "r".into() }), "010172"),
            (hex(&Opening::Outcome("h-1-2".into())), "0305682d312d32"),
            (hex(&ToDestination::Commit), "06"),
            (
                hex(&ToSource::Prepared {
                    restore_ms: 1.5,
                    pid: 7,
                }),
                "09000000000000f83f0e",
            ),
            (hex(&Verdict::Committed), "00"),
            (hex(&Verdict::Aborted), "01"),
            (hex(&Verdict::Unknown), "02"),
        ]
    }

    /// The encoding of every message variant is pinned: a change to the
    /// wire (a variant added in the middle, reordered, or with other
    /// fields) fails here. PROTOCOL_VERSION goes up with every wire change
    /// from version 2 on: raise it, then pin the new bytes.
    #[test]
    fn every_message_variant_encodes_to_its_pinned_bytes() {
        for (i, (actual, expected)) in pinned().iter().enumerate() {
            assert_eq!(actual, expected, "message {i}");
        }
    }
}
