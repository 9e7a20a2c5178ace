//! Live migration: the source and destination state machines, the
//! switch-over policy and the statistics of a migration. The source drives
//! the checkpoint engine with a sink that streams to the destination; the
//! destination stores the rounds as an image and restores it.
//!
//! The source's states are [`source`]'s `Outgoing` (offering, syncing the
//! rootfs, copying, done) with the engine's `CopyPhase` (pre-copy, frozen)
//! inside copying; the destination's are [`destination`]'s `Receipt`
//! (accepting, accepted, receiving, restoring or post-copy, running, done).
//! Each failure undoes what its state holds: the source resumes its
//! workload (and aborts the destination once it accepted), the destination
//! kills what it restored and removes its image. The switch-over is a
//! two-phase commit with the source as the one authority ([`journal`],
//! [`settle`]): the destination restores a process tree held frozen (a
//! freezer cgroup, so that it stays stopped if its agent dies), records
//! Prepared and says so; the source records Committed (or Aborted)
//! durably before it ends (or resumes) its copy; the destination lets
//! its copy run only on Commit, and when the link is lost first it asks
//! the source (`Opening::Outcome`) until it answers, the copy held
//! meanwhile. The source's copy, too, is held in a freezer cgroup from the
//! state's sending on ([`source_hold`]), so that a source agent that dies
//! leaves it frozen for its next run to settle. Exactly one copy runs,
//! whichever agent dies or stalls.
//!
//! The conversation on the control stream (page frames travel on page
//! streams, `====`):
//!
//! ```text
//!  source (Outgoing / CopyPhase)               destination (Receipt)
//!  -----------------------------               ---------------------
//!  Offering      Opening::Migrate(Offer) ----> Accepting
//!                <------------ Accepted        Accepted (image created)
//!                      (or Refused: nothing here, the source keeps running)
//!  SyncingRootfs Rootfs(Query) --------------> Receiving
//!   (--sync-     <------ Rootfs(Manifest)...
//!    rootfs)     Rootfs(Changes)... ---------> (applied below the bundle)
//!                <------------ Rootfs(Synced)
//!  Copying:
//!   Precopy      ==== pages of round n =====>  Receiving { round: n }
//!   (each round) RoundEnd { n, frames } ---->
//!                <------ RoundStored { n }
//!   Frozen       ==== last pages ===========>
//!                [Rootfs(Changes)... / Rootfs(Synced), while frozen]
//!                RoundEnd -------------------->
//!                <------ RoundStored
//!    pre-copy:   State ---------------------->  Restoring (held frozen,
//!                <------ Prepared                recorded Prepared)
//!   (records     Commit --------------------->  (records Committed,
//!    Committed)  <------ Kept                    lets it run)  Done
//!    post-copy:  PostCopyState -------------->  PostCopy (lazy restore)
//!                <------ Running
//!                <------ PageRequest...         (a thread faulted)
//!                ==== urgent / pushed pages ==>
//!                <------ AllPages
//!                Done ----------------------->
//!                <------ Kept                   (the workload stays here)
//!  Done          (the source's copy ends)       Done (the image goes)
//!
//!  Any failure:  Abort { reason } ----------->  (kill, remove; session
//!                <------ Failed { reason }       lingers for the source)
//!
//!  Prepared, link lost before the decision (or the destination agent
//!  restarted), on a new session, again until answered:
//!                <------ Opening::Outcome(id)
//!                Verdict --------------------->  Committed: run it;
//!                (Aborted recorded first when     Aborted: kill it
//!                 nothing was decided)
//! ```
//!
//! Every session opens with an [`protocol::Opening`] that chooses the
//! conversation, each with message enums of its own. Post-copy, link
//! lost: the destination reconnects and opens the new session with
//! `Opening::Resume { id, missing }`; the source (still frozen) answers
//! `ResumeAnswer::Resumed` and serves the missing pages there, or
//! `ResumeAnswer::Refused` when no migration waits. A dry run opens with
//! `Opening::Probe` (answered by `ProbeToSource::Checked`, then discarded
//! pages closed by `PagesSent` / `PagesStored`, and `Done`).

pub mod advice;
pub mod calibrate;
pub mod costmodel;
pub mod destination;
mod destination_shared;
mod docker;
pub mod dryrun;
pub mod dryrun_job;
pub mod error;
pub mod history;
pub mod journal;
mod network_sink;
mod options;
mod page_store;
pub mod policy;
pub mod postcopy;
mod postcopy_destination;
mod probe;
pub mod protocol;
mod rootfs_sync;
pub mod settle;
pub mod source;
pub mod source_hold;
pub mod stats;

#[cfg(fuzzing)]
pub(crate) use destination_shared::check_offer_claims;
