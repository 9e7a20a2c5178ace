//! The network lock of a checkpoint: the tree's TCP connections are
//! listed before anything is frozen (to refuse when nft cannot run) and
//! the lock's table is prepared with them; right before the freeze the
//! lock takes effect, and right after it (before any TCP state is read)
//! the connections are listed again and those that appeared meanwhile
//! added, so that the freeze holds no nft run unless the tree opened a
//! connection in those moments. The lock ends after the tree is resumed or killed (killed
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

/// The lock of a tree and the connections it covers.
#[derive(Debug, Default)]
pub(super) struct TreeLock {
    /// The connections, as the image records them (once armed in the
    /// freeze).
    pub flows: Vec<TcpFlow>,
    lock: Option<NetLock>,
}

impl TreeLock {
    /// Before anything is frozen: refuses a tree with connections when
    /// nft cannot run, and prepares the lock of the connections the
    /// processes `members` hold now in the network namespace of their
    /// root `root` (inspection made sure they share it): its table and
    /// sets, which drop nothing yet. No connection, no table.
    pub fn prepare(
        plan: LockPlan,
        root: i32,
        members: &[i32],
    ) -> Result<TreeLock, CheckpointError> {
        let flows = netlock::tree_flows(members)?;
        if flows.is_empty() {
            return Ok(TreeLock::default());
        }
        netlock::check_nft(&flows)?;
        let lock = netlock::prepare(
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

    /// Makes the lock cover the connections `members` hold now, and take
    /// effect. Called right before the freeze (the nft run adding the
    /// rules, and the flows that appeared since [`TreeLock::prepare`],
    /// happens while the tree still runs) and again right after it,
    /// before any TCP state is read: the tree's flows are final then,
    /// and nft runs only for those that appeared in between, usually
    /// none. A tree without a lock yet that gained connections gets one.
    pub fn arm(
        &mut self,
        plan: LockPlan,
        root: i32,
        members: &[i32],
    ) -> Result<(), CheckpointError> {
        let flows = netlock::tree_flows(members)?;
        match &mut self.lock {
            Some(lock) => lock.arm(&flows)?,
            None if flows.is_empty() => {}
            None => {
                let netns = NetNs::of_process(root)?;
                self.lock = Some(netlock::engage(
                    plan.owner,
                    &root.to_string(),
                    netns,
                    &flows,
                )?);
            }
        }
        self.flows = flows;
        Ok(())
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
