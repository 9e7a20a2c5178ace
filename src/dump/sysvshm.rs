//! SysV shared memory (shmget/shmat): which segments a tree carries. A
//! segment the tree attaches is carried once (its contents are dumped as
//! pages of the first process that attaches it, through that process's
//! mapping; they are copied while the tree is frozen, not pre-copied) and
//! recreated at restore with the same shmid. What is refused, by name:
//! a segment that a process outside the tree attaches too (the two copies
//! would drift apart), an attachment that does not cover its whole
//! segment, and, when the tree has an IPC namespace of its own (a
//! container), a segment of that namespace that no process of the tree
//! attaches (its contents have no attachment to be read through; it
//! would be lost). Segments of migrate-agent's own IPC namespace that the
//! tree does not attach are not the tree's and are left alone. A segment
//! marked for removal (IPC_RMID) while attached is carried and marked
//! again once restored, so it still goes away with its last detach. A
//! checkpoint that kills the tree (and a migration, once the destination
//! runs it) marks the carried segments for removal: they moved with it.

use crate::image::SysvShmImage;
use crate::kernel;

/// Marks the carried segments that were not marked yet for removal, in
/// the IPC namespace of the tree's `root` (still alive, about to be
/// killed): once checkpointed and killed, the tree's segments live in its
/// image or on the destination, and a copy left here would be stale and
/// would hold the key and shmid that a restore on this host needs.
/// Failures are logged: the checkpoint itself is done.
pub fn remove_carried(root: i32, segments: &[SysvShmImage]) {
    let ids: Vec<i32> = segments
        .iter()
        .filter(|s| !s.removed)
        .map(|s| s.shmid)
        .collect();
    if ids.is_empty() {
        return;
    }
    let done = kernel::sysvshm::in_ipc_namespace(root, || {
        for &shmid in &ids {
            if let Err(errno) = kernel::sysvshm::shm_remove(shmid) {
                tracing::warn!(shmid, %errno, "cannot remove a checkpointed SysV segment");
            }
        }
    });
    if let Err(e) = done {
        tracing::warn!(root, %e, "cannot enter the tree's IPC namespace to remove its SysV segments");
    }
}
