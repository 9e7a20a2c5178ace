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

use super::error::InspectError;
use crate::image::{SysvShmImage, Vma, VmaKind, PAGE_SIZE};
use crate::kernel;
use crate::proc::sysvipc::{self, ShmSegment, SHM_DEST};

/// The segments the tree attaches, with every refusal among them (only
/// reading the segment table fails the call). `layouts` holds each
/// process's mappings; `root` names the tree's IPC namespace.
pub fn tree_segments(
    root: i32,
    layouts: &[(i32, &[Vma])],
) -> Result<(Vec<SysvShmImage>, Vec<InspectError>), InspectError> {
    let attachments: Vec<(i32, &Vma, i32)> = layouts
        .iter()
        .flat_map(|(pid, vmas)| {
            vmas.iter().filter_map(move |v| match v.kind {
                VmaKind::SysvShm { shmid } => Some((*pid, v, shmid)),
                _ => None,
            })
        })
        .collect();
    let own_namespace = !same_ipc_namespace(root)?;
    if attachments.is_empty() && !own_namespace {
        return Ok((Vec::new(), Vec::new()));
    }
    let table =
        kernel::sysvshm::in_ipc_namespace(root, sysvipc::read_shm).map_err(|source| {
            InspectError::Io {
                what: format!("enter the IPC namespace of process {root}"),
                source,
            }
        })??;
    let mut images: Vec<SysvShmImage> = Vec::new();
    let mut refused = Vec::new();
    for &(pid, vma, shmid) in &attachments {
        let refuse = |why: String| InspectError::UnsupportedMapping {
            pid,
            start: vma.start,
            end: vma.end,
            name: format!("SysV shm {shmid}"),
            why,
        };
        let Some(seg) = table.iter().find(|s| s.shmid == shmid) else {
            refused.push(refuse(format!(
                "segment {shmid} is not in the IPC namespace of process {root}"
            )));
            continue;
        };
        let whole = seg.size.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        if vma.end - vma.start != whole {
            refused.push(refuse(format!(
                "the attachment covers {} of the segment's {} bytes; only whole attachments are carried",
                vma.end - vma.start,
                seg.size
            )));
            continue;
        }
        if images.iter().any(|i| i.shmid == shmid) {
            continue;
        }
        let in_tree = attachments.iter().filter(|a| a.2 == shmid).count() as u64;
        if seg.nattch > in_tree {
            refused.push(refuse(format!(
                "a process outside the tree attaches it too ({} attachments, {in_tree} in the tree)",
                seg.nattch
            )));
            continue;
        }
        images.push(image_of(seg));
    }
    if own_namespace {
        for seg in table
            .iter()
            .filter(|s| !attachments.iter().any(|a| a.2 == s.shmid))
        {
            refused.push(InspectError::UnsupportedMapping {
                pid: root,
                start: 0,
                end: 0,
                name: format!("SysV shm {} (key {:#x})", seg.shmid, seg.key),
                why: format!(
                    "the tree's own IPC namespace holds this {}-byte segment and no process of the tree attaches it; unattached segments are not carried yet",
                    seg.size
                ),
            });
        }
    }
    Ok((images, refused))
}

/// Whether process `pid` shares migrate-agent's IPC namespace.
fn same_ipc_namespace(pid: i32) -> Result<bool, InspectError> {
    let link = |p: String| {
        std::fs::read_link(&p).map_err(|source| InspectError::Io {
            what: format!("read {p}"),
            source,
        })
    };
    Ok(link(format!("/proc/{pid}/ns/ipc"))? == link("/proc/self/ns/ipc".into())?)
}

fn image_of(seg: &ShmSegment) -> SysvShmImage {
    SysvShmImage {
        key: seg.key,
        shmid: seg.shmid,
        size: seg.size,
        mode: seg.perms & 0o777,
        uid: seg.uid,
        gid: seg.gid,
        removed: seg.perms & SHM_DEST != 0,
    }
}
