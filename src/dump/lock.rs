//! The network lock of a checkpoint: the lock's table is prepared, before
//! anything is frozen, with the connections the inspection found (after
//! refusing the tree when nft cannot run); right before the freeze the
//! lock takes effect, with those the tree opened since added; and inside
//! the freeze, once the frozen tree's fds are classified and before any
//! TCP state is read, the connections that classification found are
//! added when the lock lacks any, so that the freeze holds no nft run and
//! no second listing of the connections unless the tree opened one in
//! those moments. The lock ends once the dump is done: for a tree resumed,
//! before its connections leave repair mode (as CRIU does: their window
//! probes, and the resets answering them, are not dropped); for a tree
//! killed, after the kill (its sockets close while their packets are
//! still dropped, so no reset reaches a peer), or it stays engaged for the
//! local restore.

use super::error::CheckpointError;
use crate::image::{ms, TcpFlow};
use crate::netlock::{self, NetLock, NetNs, Owner};
use std::time::Instant;

/// Who owns a checkpoint's lock and what happens to it after the kill.
#[derive(Debug, Clone, Copy)]
pub(super) struct LockPlan {
    /// The lock's owner.
    pub owner: Owner,
    /// After the tree is killed, leave the lock engaged and name it in
    /// the image, for the restore to release (a local checkpoint; not
    /// when the tree's own network namespace is carried: it goes with
    /// the killed tree, and the restore makes a new one).
    pub keep_for_restore: bool,
    /// Lock the tree's whole network namespace, whatever its connections
    /// (one it leaves outside for the restore to join, `--external-netns`):
    /// every packet but the marked ones dropped from right before the
    /// freeze.
    pub whole_namespace: bool,
}

/// The lock of a tree and the connections it covers.
#[derive(Debug, Default)]
pub(super) struct TreeLock {
    /// The connections, as the image records them (once armed in the
    /// freeze).
    pub flows: Vec<TcpFlow>,
    /// Milliseconds the arming inside the freeze took (the statistics'
    /// lock_ms).
    pub frozen_ms: f64,
    lock: Option<NetLock>,
}

impl TreeLock {
    /// Before anything is frozen: refuses a tree with connections `flows`
    /// (the inspection's) when nft cannot run, and prepares their lock in
    /// the network namespace of the tree's root `root` (inspection made
    /// sure the tree shares it): its table and sets, which drop nothing
    /// yet. No connection, no table.
    pub fn prepare(
        plan: LockPlan,
        root: i32,
        flows: &[TcpFlow],
    ) -> Result<TreeLock, CheckpointError> {
        if flows.is_empty() && !plan.whole_namespace {
            return Ok(TreeLock::default());
        }
        netlock::check_nft(flows)?;
        if plan.whole_namespace {
            // Engaged whole right before the freeze (`arm_running`).
            return Ok(TreeLock::default());
        }
        let lock = netlock::prepare(
            plan.owner,
            &root.to_string(),
            NetNs::of_process(root)?,
            flows,
        )?;
        Ok(TreeLock {
            flows: flows.to_vec(),
            frozen_ms: 0.0,
            lock: Some(lock),
        })
    }

    /// Right before the freeze: makes the lock cover the connections the
    /// running processes `members` hold now, and take effect (the nft run
    /// adding the rules, and the flows that appeared since
    /// [`TreeLock::prepare`], happens while the tree still runs).
    pub fn arm_running(
        &mut self,
        plan: LockPlan,
        root: i32,
        members: &[i32],
    ) -> Result<(), CheckpointError> {
        let flows = crate::inspect::tree_flows(members)?;
        self.arm(plan, root, flows)
    }

    /// Inside the freeze, before any TCP state is read: makes the lock
    /// cover `flows`, the connections the classification of the frozen
    /// tree's fds found (final now). nft runs only for those that
    /// appeared since [`TreeLock::arm_running`], usually none. The time
    /// it takes is [`TreeLock::frozen_ms`].
    pub fn arm_frozen(
        &mut self,
        plan: LockPlan,
        root: i32,
        flows: Vec<TcpFlow>,
    ) -> Result<(), CheckpointError> {
        let started = Instant::now();
        let armed = self.arm(plan, root, flows);
        self.frozen_ms = ms(started.elapsed());
        armed
    }

    /// Makes the lock cover `flows` and take effect; a tree without a
    /// lock yet that gained connections gets one.
    fn arm(
        &mut self,
        plan: LockPlan,
        root: i32,
        flows: Vec<TcpFlow>,
    ) -> Result<(), CheckpointError> {
        match &mut self.lock {
            Some(lock) => lock.arm(&flows)?,
            None if plan.whole_namespace => {
                self.lock = Some(netlock::engage_namespace(
                    plan.owner,
                    &root.to_string(),
                    NetNs::of_process(root)?,
                )?);
            }
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
