//! SysV shared memory segments at restore: created before the husks map
//! anything, in the restored tree's IPC namespace (the root husk's), each
//! with its saved shmid (through /proc/sys/kernel/shm_next_id, as CRIU
//! does), key, size, owner and mode; the husks then attach them at their
//! addresses (injected shmat) and the first attacher receives the
//! contents. A taken key or shmid is a clear error. Segments that were
//! marked for removal are marked again once the tree is attached; on a
//! failed restore every segment created here is removed.

use crate::image::SysvShmImage;
use crate::kernel::sysvshm as shm;
use crate::restore::error::RestoreError;
use nix::errno::Errno;

/// The segments created for a restore, in the IPC namespace of `ns_pid`.
pub struct Segments<'a> {
    ns_pid: i32,
    created: Vec<&'a SysvShmImage>,
}

impl<'a> Segments<'a> {
    /// Creates every segment of `images` in the IPC namespace of process
    /// `ns_pid`, or none (those created before a failure are removed).
    pub fn create(ns_pid: i32, images: &'a [SysvShmImage]) -> Result<Self, RestoreError> {
        let mut segments = Segments {
            ns_pid,
            created: Vec::with_capacity(images.len()),
        };
        if images.is_empty() {
            return Ok(segments);
        }
        let created = &mut segments.created;
        let made = shm::in_ipc_namespace(ns_pid, || -> Result<(), RestoreError> {
            for seg in images {
                create_one(seg)?;
                created.push(seg);
            }
            Ok(())
        })
        .map_err(|e| namespace_error(ns_pid, e))
        .and_then(|r| r);
        match made {
            Ok(()) => Ok(segments),
            Err(e) => {
                segments.remove_all();
                Err(e)
            }
        }
    }

    /// Every husk holds its attachments: the segments that were marked
    /// for removal at checkpoint are marked again.
    pub fn mark_removed(&self) -> Result<(), RestoreError> {
        let removed: Vec<i32> = self
            .created
            .iter()
            .filter(|s| s.removed)
            .map(|s| s.shmid)
            .collect();
        if removed.is_empty() {
            return Ok(());
        }
        shm::in_ipc_namespace(self.ns_pid, || {
            removed.iter().try_for_each(|&shmid| {
                shm::shm_remove(shmid).map_err(|errno| RestoreError::SysvShm {
                    shmid,
                    why: format!("IPC_RMID failed: {errno}"),
                })
            })
        })
        .map_err(|e| namespace_error(self.ns_pid, e))?
    }

    /// The restore failed: every segment created for it goes (attachments
    /// of killed husks go with them).
    pub fn remove_all(self) {
        let ids: Vec<i32> = self.created.iter().map(|s| s.shmid).collect();
        if ids.is_empty() {
            return;
        }
        let removed = shm::in_ipc_namespace(self.ns_pid, || {
            for &shmid in &ids {
                if let Err(errno) = shm::shm_remove(shmid) {
                    tracing::warn!(shmid, %errno, "cannot remove a SysV segment of a failed restore");
                }
            }
        });
        if let Err(e) = removed {
            tracing::warn!(ns_pid = self.ns_pid, %e, "cannot enter the IPC namespace to remove SysV segments");
        }
    }
}

fn namespace_error(ns_pid: i32, e: std::io::Error) -> RestoreError {
    RestoreError::SysvShm {
        shmid: -1,
        why: format!("cannot enter the IPC namespace of process {ns_pid}: {e}"),
    }
}

/// Creates `seg` with its shmid in this thread's IPC namespace.
fn create_one(seg: &SysvShmImage) -> Result<(), RestoreError> {
    let fail = |why: String| RestoreError::SysvShm {
        shmid: seg.shmid,
        why,
    };
    shm::set_shm_next_id(seg.shmid)
        .map_err(|e| fail(format!("cannot write /proc/sys/kernel/shm_next_id: {e}")))?;
    // A segment marked for removal has lost its key; a private one has none.
    let key = if seg.removed {
        libc::IPC_PRIVATE
    } else {
        seg.key
    };
    let flags = libc::IPC_CREAT | libc::IPC_EXCL | 0o600;
    let got = shm::shm_get(key, seg.size, flags).map_err(|errno| {
        // Whatever happened, the next segment must not get the saved ID.
        let _ = shm::set_shm_next_id(-1);
        match errno {
            Errno::EEXIST => fail(format!(
                "key {:#x} is taken by another segment on this host",
                seg.key
            )),
            errno => fail(format!("shmget of {} bytes failed: {errno}", seg.size)),
        }
    })?;
    if got != seg.shmid {
        let _ = shm::shm_remove(got);
        return Err(fail(format!(
            "the shmid is taken on this host (a new segment got {got})"
        )));
    }
    shm::shm_set_owner(seg.shmid, seg.uid, seg.gid, seg.mode).map_err(|errno| {
        let _ = shm::shm_remove(seg.shmid);
        fail(format!(
            "setting owner {}:{} and mode {:03o} failed: {errno}",
            seg.uid, seg.gid, seg.mode
        ))
    })
}
