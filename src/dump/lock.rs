//! The network lock of a checkpoint: the tree's TCP connections are
//! listed before anything is frozen (to refuse when nft cannot run),
//! listed again and locked right after the freeze (before any TCP state
//! is read), and the lock ends after the tree is resumed or killed (killed
//! first: its sockets close while their packets are still dropped, so no
//! reset reaches a peer), or stays engaged for the local restore.

use super::error::CheckpointError;
use crate::image::TcpFlow;
use crate::netlock::{self, NetLock, NetNs, Owner};

/// Who owns a checkpoint's lock and what happens to it after the kill.
#[derive(Debug, Clone, Copy)]
pub(super) struct LockPlan {
    /// The lock's owner.
    pub owner: Owner,
    /// After the tree is killed, leave the lock engaged and name it in
    /// the image, for the restore to release (a local checkpoint).
    pub keep_for_restore: bool,
}

/// Refuses, before anything is frozen, a tree with connections when nft
/// cannot run.
pub(super) fn check_before_freezing(members: &[i32]) -> Result<(), CheckpointError> {
    let flows = netlock::tree_flows(members)?;
    if !flows.is_empty() {
        netlock::check_nft(&flows)?;
    }
    Ok(())
}

/// The lock of a frozen tree and the connections it covers.
#[derive(Debug, Default)]
pub(super) struct TreeLock {
    /// The connections, as the image records them.
    pub flows: Vec<TcpFlow>,
    lock: Option<NetLock>,
}

impl TreeLock {
    /// Locks the connections of the frozen processes `members` in the
    /// network namespace of their root `root` (inspection made sure they
    /// share it); no connection, no lock.
    pub fn engage(plan: LockPlan, root: i32, members: &[i32]) -> Result<TreeLock, CheckpointError> {
        let flows = netlock::tree_flows(members)?;
        if flows.is_empty() {
            return Ok(TreeLock::default());
        }
        let lock = netlock::engage(
            plan.owner,
            &root.to_string(),
            NetNs::of_process(root)?,
            &flows,
        )?;
        Ok(TreeLock {
            flows,
            lock: Some(lock),
        })
    }

    /// The name the image records for its restore to release: the lock's
    /// when the plan keeps it and the tree is killed.
    pub fn name_for_image(&self, plan: LockPlan, leave_running: bool) -> Option<String> {
        let kept = plan.keep_for_restore && !leave_running;
        self.lock
            .as_ref()
            .filter(|_| kept)
            .map(|l| l.name().to_string())
    }

    /// Ends the lock once the tree is resumed or killed: released, or
    /// kept for the restore when `kept`. A failure is logged: the
    /// checkpoint itself is done.
    pub fn finish(self, kept: bool) {
        let Some(lock) = self.lock else { return };
        if kept {
            let table = lock.keep();
            tracing::info!(table, "network lock left engaged for the restore");
        } else if let Err(err) = lock.release() {
            tracing::error!(%err, "releasing the network lock failed: the connections stay silent");
        }
    }
}
