//! Memory mappings: which ones ferry can carry, turned into the model,
//! and the refusals for the rest (deleted or replaced files, device
//! memory, partial SysV attachments, shared mappings of kinds ferry does
//! not rebuild).

use super::error::InspectError;
use super::fd_class::{ClassifiedFd, FdClass};
use crate::image::{Vma, VmaKind};
use crate::proc::MapsEntry;
use std::os::unix::fs::MetadataExt;

/// Refuses a MAP_SHARED mapping of a memfd, or a packet socket's rings
/// mapped, that no fd of the process holds: the mapping is made again from
/// the fd (the memfd's contents travel with it).
pub fn check_memfd_mappings(
    pid: i32,
    vmas: &[Vma],
    fds: &[ClassifiedFd],
) -> Result<(), InspectError> {
    for v in vmas {
        let (object, inode, held) = match v.kind {
            VmaKind::SharedMemfd { inode, .. } => ("memfd", inode, FdClass::Memfd { inode }),
            VmaKind::PacketRing { inode, .. } => {
                ("packet socket", inode, FdClass::PacketSocket { inode })
            }
            _ => continue,
        };
        if !fds.iter().any(|c| c.class == held) {
            return Err(InspectError::UnsupportedMapping {
                pid,
                start: v.start,
                end: v.end,
                name: format!("{object} inode {inode}"),
                why: format!("a mapping of a {object} is carried only when the process also holds the {object} as an fd"),
            });
        }
    }
    Ok(())
}

/// Path `path` of a mapping of process `pid`, reachable from here. /proc
/// names a file from the reader's root when it can reach it: for a
/// process of our mount namespace (chrooted or not) the path is ours as
/// it stands; a container's process, in a mount namespace of its own, is
/// shown paths from its own root, reached through /proc/PID/root.
pub fn in_root(pid: i32, path: &str) -> String {
    let ns = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/mnt")).ok();
    match (ns("self"), ns(&pid.to_string())) {
        (Some(ours), Some(theirs)) if ours == theirs => path.to_string(),
        _ => format!("/proc/{pid}/root{path}"),
    }
}

/// Turns the mappings of `pid` into the model, or refuses the first one that
/// ferry cannot carry.
pub fn classify_mappings(pid: i32, maps: &[MapsEntry]) -> Result<Vec<Vma>, InspectError> {
    maps.iter().map(|m| classify_mapping(pid, m)).collect()
}

/// Classifies every mapping of `pid`: the mappings ferry can carry, and a
/// refusal for each other one (for the dry run, which lists them all).
pub fn classify_each_mapping(pid: i32, maps: &[MapsEntry]) -> (Vec<Vma>, Vec<InspectError>) {
    let mut vmas = Vec::with_capacity(maps.len());
    let mut refused = Vec::new();
    for m in maps {
        match classify_mapping(pid, m) {
            Ok(v) => vmas.push(v),
            Err(e) => refused.push(e),
        }
    }
    (vmas, refused)
}

fn classify_mapping(pid: i32, m: &MapsEntry) -> Result<Vma, InspectError> {
    let refuse = |why: String| InspectError::UnsupportedMapping {
        pid,
        start: m.start,
        end: m.end,
        name: if m.path.is_empty() {
            "anonymous".into()
        } else {
            m.path.clone()
        },
        why,
    };
    let prot = (if m.read { libc::PROT_READ } else { 0 })
        | (if m.write { libc::PROT_WRITE } else { 0 })
        | (if m.exec { libc::PROT_EXEC } else { 0 });
    let kind = match m.path.as_str() {
        "[vdso]" => VmaKind::Vdso,
        "[vvar]" => VmaKind::Vvar,
        "[vvar_vclock]" => VmaKind::VvarVclock,
        "[vsyscall]" => VmaKind::Vsyscall,
        // MAP_SHARED|MAP_ANONYMOUS shows as a deleted /dev/zero.
        "/dev/zero (deleted)" if m.shared => VmaKind::SharedAnonymous {
            inode: m.inode,
            offset: m.offset,
        },
        // MAP_PRIVATE of such an object (opened through map_files).
        "/dev/zero (deleted)" => VmaKind::PrivateShmem {
            inode: m.inode,
            offset: m.offset,
        },
        // A shmat attachment shows as "/SYSV<key> (deleted)" with the
        // shmid as its inode number.
        p if m.shared && p.starts_with("/SYSV") => {
            if m.vm_flags.split_whitespace().any(|f| f == "ht") {
                return Err(refuse(
                    "SysV shared memory in huge pages (SHM_HUGETLB) is not supported".into(),
                ));
            }
            if m.offset != 0 {
                return Err(refuse(format!(
                    "only part of SysV segment {} is attached here (from offset {:#x}: split by mprotect or partly unmapped); only whole attachments are carried",
                    m.inode, m.offset
                )));
            }
            let shmid = i32::try_from(m.inode).map_err(|_| {
                refuse(format!(
                    "SysV shared memory inode {} is not a shmid",
                    m.inode
                ))
            })?;
            VmaKind::SysvShm { shmid }
        }
        // Only a packet socket's rings can be mapped from a socket; one
        // of another socket is refused with the fd.
        p if p.starts_with("socket:[") => VmaKind::PacketRing {
            inode: m.inode,
            offset: m.offset,
        },
        p if m.shared && p.starts_with("/memfd:") => VmaKind::SharedMemfd {
            inode: m.inode,
            offset: m.offset,
        },
        p if m.shared && p.ends_with(" (deleted)") => {
            return Err(refuse("the shared file it maps has been deleted".into()))
        }
        p if m.shared && p.starts_with('/') => {
            let meta = std::fs::metadata(in_root(pid, p))
                .map_err(|e| refuse(format!("the mapped file cannot be examined: {e}")))?;
            if meta.ino() != m.inode || !meta.is_file() {
                return Err(refuse(format!(
                    "the path now names another file (inode {} instead of {})",
                    meta.ino(),
                    m.inode
                )));
            }
            VmaKind::SharedFile {
                path: p.to_string(),
                offset: m.offset,
            }
        }
        _ if m.shared => {
            return Err(refuse(
                "this kind of shared mapping is not supported yet".into(),
            ))
        }
        "[heap]" => VmaKind::Heap,
        "[stack]" => VmaKind::Stack,
        "" => VmaKind::Anonymous,
        p if p.starts_with("[anon:") => VmaKind::Anonymous,
        p if p.ends_with(" (deleted)") => {
            return Err(refuse("the mapped file has been deleted".into()))
        }
        p if p.starts_with('/') => {
            let meta = std::fs::metadata(in_root(pid, p))
                .map_err(|e| refuse(format!("the mapped file cannot be examined: {e}")))?;
            if meta.ino() != m.inode {
                return Err(refuse(format!(
                    "the path now names another file (inode {} instead of {})",
                    meta.ino(),
                    m.inode
                )));
            }
            VmaKind::File {
                path: p.to_string(),
                offset: m.offset,
                identity: crate::proc::file_identity(&meta),
            }
        }
        other => {
            return Err(refuse(format!(
                "the special mapping {other} is not supported"
            )))
        }
    };
    let vma = Vma {
        start: m.start,
        end: m.end,
        prot: prot as u32,
        kind,
        vm_flags: m.vm_flags.clone(),
    };
    // [vvar] is VM_PFNMAP by nature; only other mappings of device memory
    // are refused.
    let device_memory = ["io", "pf"].iter().any(|flag| vma.has_vm_flag(flag));
    if device_memory && !vma.is_special() {
        return Err(refuse("it maps device memory (VM_IO/VM_PFNMAP)".into()));
    }
    Ok(vma)
}

#[cfg(test)]
mod tests {
    use crate::image::VmaKind;
    use crate::inspect::mappings::classify_mappings;
    use crate::proc::MapsEntry;

    #[test]
    fn shared_mapping_is_refused_with_reason() {
        let m = MapsEntry {
            start: 0x1000,
            end: 0x2000,
            read: true,
            write: true,
            exec: false,
            shared: true,
            offset: 0,
            inode: 32769,
            path: "/SYSV00000000 (deleted)".into(),
            vm_flags: String::new(),
        };
        assert_eq!(
            classify_mappings(7, std::slice::from_ref(&m)).unwrap()[0].kind,
            VmaKind::SysvShm { shmid: 32769 }
        );
        let huge = MapsEntry {
            vm_flags: "rd wr sh mr mw me ms ht".into(),
            ..m.clone()
        };
        let err = classify_mappings(7, &[huge]).unwrap_err().to_string();
        assert!(err.contains("process 7"), "{err}");
        assert!(err.contains("SHM_HUGETLB"), "{err}");
        let part = MapsEntry {
            offset: 0x3000,
            ..m.clone()
        };
        let err = classify_mappings(7, &[part]).unwrap_err().to_string();
        assert!(err.contains("only part of SysV segment 32769"), "{err}");
        let anon = MapsEntry {
            path: "/dev/zero (deleted)".into(),
            ..m
        };
        assert!(matches!(
            classify_mappings(7, &[anon]).unwrap()[0].kind,
            VmaKind::SharedAnonymous { .. }
        ));
    }
}
