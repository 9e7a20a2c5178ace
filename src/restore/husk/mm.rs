//! The address space: mappings (private, shared, file, SysV, memfd), the
//! special mappings (vDSO) and the mm fields (brk, auxv, exe).

use super::process::{Husk, AUXV_OFF, PARK_OFF, STRUCT_OFF};
use crate::image::{FileImage, ImageReader, Vma, VmaKind, PAGE_SIZE};
use crate::kernel::abi::{IntoBytes, PrctlMmMap};
use crate::memory::PageRuns;
use crate::proc;
use crate::ptrace::read_memory;
use crate::restore::error::RestoreError;

/// Where and how [`Husk::map_file`] maps a file: at the mapping's range,
/// with protection `prot`, mmap flags `flags`, from file offset `offset`.
pub(super) struct FileMapping<'v> {
    vma: &'v Vma,
    prot: i32,
    flags: i32,
    offset: u64,
}

impl<'a> Husk<'a> {
    /// Maps `path` (opened with `access`, named `name` in the errors of
    /// the open and close) as `mapping` says; `what` names the mmap.
    pub(super) fn map_file(
        &mut self,
        path: &str,
        name: &str,
        access: i32,
        mapping: FileMapping<'_>,
        what: impl FnOnce() -> String,
    ) -> Result<(), RestoreError> {
        let path_addr = self.put_str(path)?;
        let flags = access | libc::O_CLOEXEC;
        let fd = self.sys(
            0,
            |r| r.open(path_addr, flags),
            || format!("open of {name}"),
        )?;
        let FileMapping {
            vma,
            prot,
            flags,
            offset,
        } = mapping;
        let len = vma.end - vma.start;
        let mapped = self.sys(0, |r| r.mmap(vma.start, len, prot, flags, fd, offset), what);
        self.sys(0, |r| r.close(fd), || format!("close of {name}"))?;
        mapped.map(drop)
    }

    /// Moves [vvar], [vvar_vclock] and [vdso] to the image's addresses,
    /// after checking that this kernel's vDSO is the image's.
    pub(super) fn move_vdso(&mut self) -> Result<(), RestoreError> {
        let husk_maps = proc::read_maps(self.pid.as_raw())?;
        let kinds = [
            ("[vvar]", VmaKind::Vvar),
            ("[vvar_vclock]", VmaKind::VvarVclock),
            ("[vdso]", VmaKind::Vdso),
        ];
        // (current start, length, target start)
        let mut moves = Vec::new();
        for (name, kind) in kinds {
            let here = husk_maps.iter().find(|m| m.path == name);
            let there = self.image.vmas.iter().find(|v| v.kind == kind);
            match (here, there) {
                (Some(h), Some(t)) if h.end - h.start == t.end - t.start => moves.push((h.start, h.end - h.start, t.start)),
                (None, None) => {}
                _ => {
                    return Err(RestoreError::Unsupported {
                        pid: self.image.pid,
                        why: format!("this kernel's {name} mapping differs in size or presence from the checkpointing kernel's"),
                    })
                }
            }
        }
        let host = self.host;
        if let Some(&(start, len, _)) = moves.last() {
            let mut bytes = vec![0u8; len as usize];
            read_memory(self.pid, start, &mut bytes)?;
            let hash = xxhash_rust::xxh3::xxh3_64(&bytes);
            if hash != host.vdso_hash || len != host.vdso_len {
                return Err(RestoreError::VdsoMismatch {
                    kernel: host.kernel_release.clone(),
                    image_len: host.vdso_len,
                    image_hash: host.vdso_hash,
                    host_len: len,
                    host_hash: hash,
                });
            }
        }
        let overlaps = moves.iter().any(|&(_, len, target)| {
            moves.iter().any(|&(start, l2, _)| {
                target < start + l2 && start < target + len && target != start
            })
        });
        let mut current: Vec<u64> = moves.iter().map(|m| m.0).collect();
        if overlaps {
            let park = self.helper + PARK_OFF;
            let base = moves.iter().map(|m| m.0).min().unwrap_or(0);
            for (i, &(_, len, _)) in moves.iter().enumerate() {
                let dst = park + (current[i] - base);
                self.mremap(current[i], len, dst)?;
                current[i] = dst;
            }
        }
        for (i, &(_, len, target)) in moves.iter().enumerate() {
            if current[i] != target {
                self.mremap(current[i], len, target)?;
            }
        }
        Ok(())
    }

    /// Moves the special mapping at `from` (`len` bytes) to `to`.
    pub(super) fn mremap(&mut self, from: u64, len: u64, to: u64) -> Result<(), RestoreError> {
        self.sys(
            0,
            |r| r.move_mapping(from, len, to),
            || format!("mremap of a special mapping {from:#x} -> {to:#x}"),
        )
    }

    /// Maps every mapping of the image but the premapped ones (in already,
    /// filled: [`Husk::premap`]); those that receive pages (from the
    /// image, or in a lazy restore from the source: `remote`) are mapped
    /// writable for now. Returns which mappings need their protection put
    /// back.
    pub(super) fn map_vmas(
        &mut self,
        reader: &ImageReader,
        remote: Option<&PageRuns>,
    ) -> Result<Vec<bool>, RestoreError> {
        let vmas = &self.image.vmas;
        let mut filled: Vec<bool> = vmas
            .iter()
            .zip(self.premapped.iter().chain(std::iter::repeat(&false)))
            .map(|(v, &premapped)| {
                premapped
                    || (v.is_private_anonymous()
                        && remote.is_some_and(|r| r.intersects(v.start, v.end)))
            })
            .collect();
        // A run may span adjacent mappings (the writer merges adjacent
        // pages); every page of it must lie in a restorable mapping.
        for run in reader.runs().iter().filter(|r| r.pid == self.image.pid) {
            let end = run.vaddr + run.npages * PAGE_SIZE;
            let mut addr = run.vaddr;
            let mut idx = vmas.partition_point(|v| v.end <= addr);
            while addr < end {
                match vmas.get(idx) {
                    Some(v) if v.start <= addr && !v.is_special() => {
                        filled[idx] = true;
                        addr = v.end;
                        idx += 1;
                    }
                    _ => {
                        return Err(RestoreError::Unsupported {
                            pid: self.image.pid,
                            why: format!(
                                "the image holds pages at {addr:#x} (in a run of {} pages at {:#x}) outside any restorable mapping",
                                run.npages, run.vaddr
                            ),
                        })
                    }
                }
            }
        }
        self.warm = vec![false; vmas.len()];
        for (i, vma) in self.image.vmas.iter().enumerate() {
            if vma.is_special()
                || vma.is_from_fd()
                || matches!(vma.kind, VmaKind::PrivateShmem { .. })
                || self.earlier_shared_mapping(vma).is_some()
                || self.premapped.get(i) == Some(&true)
            {
                continue;
            }
            if filled[i] && vma.is_private_anonymous() {
                self.warm[i] = self.place_staged(vma, remote)?;
                if self.warm[i] {
                    continue;
                }
            }
            self.map_vma(vma, filled[i])?;
        }
        self.drop_staging()?;
        Ok(filled)
    }

    /// Maps one mapping of the image (writable for now when `writable`).
    pub(super) fn map_vma(&mut self, vma: &Vma, writable: bool) -> Result<(), RestoreError> {
        let mut prot = u64::from(vma.prot);
        if writable {
            prot |= libc::PROT_WRITE as u64;
        }
        if let VmaKind::SysvShm { shmid } = vma.kind {
            return self.attach_sysv(vma, shmid, prot, !writable && !vma.has_vm_flag("mw"));
        }
        let sharing = match vma.kind {
            VmaKind::SharedAnonymous { .. } | VmaKind::SharedFile { .. } => libc::MAP_SHARED,
            _ => libc::MAP_PRIVATE,
        };
        let mut flags = sharing | libc::MAP_FIXED_NOREPLACE;
        if vma.has_vm_flag("gd") {
            flags |= libc::MAP_GROWSDOWN;
        }
        if vma.has_vm_flag("nr") {
            flags |= libc::MAP_NORESERVE;
        }
        let prot = prot as i32;
        let len = vma.end - vma.start;
        match &vma.kind {
            VmaKind::File { path, offset, .. } | VmaKind::SharedFile { path, offset } => {
                // A shared mapping that is or may become writable ("mw",
                // VM_MAYWRITE: it was mapped from a description open for
                // writing, so mprotect may add PROT_WRITE) needs the file
                // open for writing.
                let access = if sharing == libc::MAP_SHARED
                    && (vma.prot & libc::PROT_WRITE as u32 != 0 || vma.has_vm_flag("mw"))
                {
                    libc::O_RDWR
                } else {
                    libc::O_RDONLY
                };
                let mapping = FileMapping {
                    vma,
                    prot,
                    flags,
                    offset: *offset,
                };
                self.map_file(
                    path,
                    &format!("mapped file {path}"),
                    access,
                    mapping,
                    || format!("mmap of {path} at {:#x}-{:#x}", vma.start, vma.end),
                )?;
            }
            VmaKind::SharedAnonymous { offset, .. }
                if *offset != 0 || self.shared_extent(vma) > len =>
            {
                self.map_shared_part(vma, prot, flags | libc::MAP_ANONYMOUS)?;
            }
            _ => {
                flags |= libc::MAP_ANONYMOUS;
                self.sys(
                    0,
                    |r| r.mmap(vma.start, len, prot, flags, -1, 0),
                    || {
                        format!(
                            "mmap of anonymous memory at {:#x}-{:#x}",
                            vma.start, vma.end
                        )
                    },
                )?;
            }
        }
        Ok(())
    }

    /// Attaches SysV segment `shmid` at the mapping's address (read-only
    /// when `rdonly`, as SHM_RDONLY made it: the mapping may never become
    /// writable), then gives it protection `prot` if shmat's differs.
    pub(super) fn attach_sysv(
        &mut self,
        vma: &Vma,
        shmid: i32,
        prot: u64,
        rdonly: bool,
    ) -> Result<(), RestoreError> {
        let exec = vma.has_vm_flag("me");
        let flags =
            (if rdonly { libc::SHM_RDONLY } else { 0 }) | (if exec { libc::SHM_EXEC } else { 0 });
        self.sys(
            0,
            |r| r.shmat(shmid, vma.start, flags),
            || format!("shmat of SysV segment {shmid} at {:#x}", vma.start),
        )?;
        let attached = (libc::PROT_READ
            | if rdonly { 0 } else { libc::PROT_WRITE }
            | if exec { libc::PROT_EXEC } else { 0 }) as u64;
        if prot != attached {
            self.sys(
                0,
                |r| r.mprotect(vma.start, vma.end - vma.start, prot),
                || format!("mprotect of SysV segment {shmid} at {:#x}", vma.start),
            )?;
        }
        Ok(())
    }

    /// For a mapping of a shared anonymous object that an earlier mapping
    /// of the image maps too (in a process before this one, or before it
    /// in this one), or a private mapping of such an object: the PID and
    /// mapping of the first shared one, which creates the object.
    /// [`Husk::map_shared_anonymous`] maps that object instead of a new one.
    pub(super) fn earlier_shared_mapping(&self, vma: &Vma) -> Option<(i32, &'a Vma)> {
        let (VmaKind::SharedAnonymous { inode, .. } | VmaKind::PrivateShmem { inode, .. }) =
            vma.kind
        else {
            return None;
        };
        let first = self.tree.processes.iter().find_map(|p| {
            p.vmas
                .iter()
                .find(|v| matches!(v.kind, VmaKind::SharedAnonymous { inode: i, .. } if i == inode))
                .map(|v| (p.pid, v))
        })?;
        (first.0 != self.image.pid || first.1.start != vma.start).then_some(first)
    }

    /// How much of the shared anonymous object mapped by `vma` the image's
    /// mappings cover, from its start: the size it is created with, so
    /// that every mapping of it finds its part at its own offset.
    fn shared_extent(&self, vma: &Vma) -> u64 {
        let VmaKind::SharedAnonymous { inode, .. } = vma.kind else {
            return 0;
        };
        self.tree
            .processes
            .iter()
            .flat_map(|p| &p.vmas)
            .filter_map(|v| match v.kind {
                VmaKind::SharedAnonymous { inode: i, offset }
                | VmaKind::PrivateShmem { inode: i, offset }
                    if i == inode =>
                {
                    Some(offset + (v.end - v.start))
                }
                _ => None,
            })
            .max()
            .unwrap_or(0)
    }

    /// Creates the shared anonymous object `vma` is the first mapping of,
    /// as large as every mapping of it needs, and moves the part `vma` maps
    /// (from its offset on) to its address; the rest is unmapped here: the
    /// object lives on in the mapping, and other mappings of it open it
    /// through /proc/PID/map_files.
    fn map_shared_part(&mut self, vma: &Vma, prot: i32, flags: i32) -> Result<(), RestoreError> {
        let VmaKind::SharedAnonymous { offset, .. } = vma.kind else {
            return Ok(());
        };
        let extent = self.shared_extent(vma);
        let len = vma.end - vma.start;
        let what = || {
            format!(
                "creating the shared memory of {:#x}-{:#x} ({extent:#x} bytes, offset {offset:#x})",
                vma.start, vma.end
            )
        };
        // The mapping's range is held first, so that the object is not
        // created over it.
        let hold = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE;
        self.sys(
            0,
            |r| r.mmap(vma.start, len, libc::PROT_NONE, hold, -1, 0),
            what,
        )?;
        let flags = flags & !libc::MAP_FIXED_NOREPLACE;
        let whole = self.sys(0, |r| r.mmap(0, extent, prot, flags, -1, 0), what)?;
        let moved = self.sys(0, |r| r.move_mapping(whole + offset, len, vma.start), what);
        self.sys(0, |r| r.munmap(whole, extent), what)?;
        moved
    }

    /// Maps the MAP_SHARED anonymous mappings whose object an earlier
    /// process of the tree already mapped (its address space is built
    /// first), and the MAP_PRIVATE ones of such an object: the same
    /// object, opened through that process's /proc/PID/map_files, so that
    /// the processes share it again.
    ///
    /// `proc_pids` maps each image PID to the PID the husk's /proc shows
    /// that process's husk under.
    pub(super) fn map_shared_anonymous(
        &mut self,
        proc_pids: &[(i32, i32)],
        filled: &[bool],
    ) -> Result<(), RestoreError> {
        let image = self.image;
        for (vma, &was_filled) in image.vmas.iter().zip(filled) {
            let (offset, sharing) = match vma.kind {
                VmaKind::SharedAnonymous { offset, .. } => (offset, libc::MAP_SHARED),
                VmaKind::PrivateShmem { offset, .. } => (offset, libc::MAP_PRIVATE),
                _ => continue,
            };
            let Some((owner, first)) = self.earlier_shared_mapping(vma) else {
                if sharing == libc::MAP_PRIVATE {
                    return Err(RestoreError::Unsupported {
                        pid: image.pid,
                        why: format!(
                            "its private mapping {:#x}-{:#x} of a shared anonymous object has no shared mapping of that object in the tree to be made from",
                            vma.start, vma.end
                        ),
                    });
                }
                continue;
            };
            // The first mapping created the object with the offsets it had
            // (Husk::map_shared_part), as large as every mapping needs.
            let shown = proc_pids
                .iter()
                .find(|(image_pid, _)| *image_pid == owner)
                .map_or(owner, |&(_, shown)| shown);
            let path = format!("/proc/{shown}/map_files/{:x}-{:x}", first.start, first.end);
            // Writable for now when it receives pages (finish_vmas puts
            // the protection back).
            let mut prot = vma.prot as i32;
            if was_filled {
                prot |= libc::PROT_WRITE;
            }
            let access = if prot & libc::PROT_WRITE != 0 || vma.has_vm_flag("mw") {
                libc::O_RDWR
            } else {
                libc::O_RDONLY
            };
            let mapping = FileMapping {
                vma,
                prot,
                flags: sharing | libc::MAP_FIXED_NOREPLACE,
                offset,
            };
            self.map_file(&path, &path, access, mapping, || {
                format!(
                    "mmap of the shared memory of process {owner} at {:#x}-{:#x}",
                    vma.start, vma.end
                )
            })?;
        }
        Ok(())
    }

    /// Maps the mappings made from an fd ([`Vma::is_from_fd`]) from the
    /// fds restore_fds installed, at their fd numbers: a MAP_SHARED memfd
    /// mapping (its contents came with the memfd) through a read-write
    /// description when the mapping may be written (the process may hold
    /// only a read-only one for a read-only mapping); a packet socket's
    /// rings from the socket, shared or private as they were.
    pub(super) fn map_fd_vmas(&mut self) -> Result<(), RestoreError> {
        let image = self.image;
        for vma in &image.vmas {
            let writable = vma.has_vm_flag("mw");
            let (object, inode, offset, sharing) = match vma.kind {
                VmaKind::SharedMemfd { inode, offset } => {
                    ("memfd", inode, offset, libc::MAP_SHARED)
                }
                VmaKind::PacketRing { inode, offset } if vma.has_vm_flag("sh") => {
                    ("packet socket", inode, offset, libc::MAP_SHARED)
                }
                VmaKind::PacketRing { inode, offset } => {
                    ("packet socket", inode, offset, libc::MAP_PRIVATE)
                }
                _ => continue,
            };
            let fd = image
                .fds
                .iter()
                .find(|f| match (&vma.kind, self.files.get(f.file as usize)) {
                    (VmaKind::SharedMemfd { .. }, Some(FileImage::Memfd(m))) => {
                        m.inode == inode && (!writable || m.access == libc::O_RDWR)
                    }
                    (VmaKind::PacketRing { .. }, Some(FileImage::PacketSocket(p))) => {
                        p.inode == inode
                    }
                    _ => false,
                })
                .ok_or_else(|| RestoreError::Unsupported {
                    pid: image.pid,
                    why: format!(
                        "no fd holds {object} inode {inode} mapped at {:#x}",
                        vma.start
                    ),
                })?;
            let flags = sharing | libc::MAP_FIXED_NOREPLACE;
            let (len, prot) = (vma.end - vma.start, vma.prot as i32);
            self.sys(
                0,
                |r| r.mmap(vma.start, len, prot, flags, fd.fd, offset),
                || {
                    format!(
                        "mmap of {object} fd {} at {:#x}-{:#x}",
                        fd.fd, vma.start, vma.end
                    )
                },
            )?;
        }
        Ok(())
    }

    /// Puts back the protection of mappings that were mapped writable to
    /// receive pages, and the madvise flags that /proc shows.
    pub(super) fn finish_vmas(&mut self, filled: &[bool]) -> Result<(), RestoreError> {
        let image = self.image;
        for (vma, &was_filled) in image.vmas.iter().zip(filled) {
            if vma.is_special() || vma.is_from_fd() {
                continue;
            }
            match vma.kind {
                VmaKind::SysvShm { shmid } if was_filled && !vma.has_vm_flag("mw") => {
                    // Attached writable to receive its contents: attached
                    // again read-only, as SHM_RDONLY had it.
                    self.sys(
                        0,
                        |r| r.shmdt(vma.start),
                        || format!("shmdt of SysV segment {shmid} at {:#x}", vma.start),
                    )?;
                    self.attach_sysv(vma, shmid, u64::from(vma.prot), true)?;
                }
                _ if was_filled && vma.prot & libc::PROT_WRITE as u32 == 0 => {
                    self.sys(
                        0,
                        |r| r.mprotect(vma.start, vma.end - vma.start, u64::from(vma.prot)),
                        || format!("mprotect of {:#x}-{:#x}", vma.start, vma.end),
                    )?;
                }
                _ => {}
            }
            for (flag, advice) in [
                ("dd", libc::MADV_DONTDUMP),
                ("dc", libc::MADV_DONTFORK),
                ("wf", libc::MADV_WIPEONFORK),
                ("hg", libc::MADV_HUGEPAGE),
                ("nh", libc::MADV_NOHUGEPAGE),
                ("sr", libc::MADV_SEQUENTIAL),
                ("rr", libc::MADV_RANDOM),
                ("mg", libc::MADV_MERGEABLE),
            ] {
                if vma.has_vm_flag(flag) {
                    self.sys(
                        0,
                        |r| r.madvise(vma.start, vma.end - vma.start, advice),
                        || format!("madvise({flag}) of {:#x}-{:#x}", vma.start, vma.end),
                    )?;
                }
            }
        }
        Ok(())
    }

    /// Locks the mappings that mlock had locked ("lo"; "lf": as pages
    /// fault in, mlock2 MLOCK_ONFAULT), memfd ones included. Run once the
    /// pages are in (locking faults the image's pages in, not zeros) and
    /// the image's RLIMIT_MEMLOCK is set (the limit that let the process
    /// lock them, for a husk without CAP_IPC_LOCK).
    pub(super) fn lock_vmas(&mut self) -> Result<(), RestoreError> {
        let image = self.image;
        for vma in image
            .vmas
            .iter()
            .filter(|v| !v.is_special() && v.has_vm_flag("lo"))
        {
            let flags = if vma.has_vm_flag("lf") {
                libc::MLOCK_ONFAULT
            } else {
                0
            };
            self.sys(
                0,
                |r| r.mlock2(vma.start, vma.end - vma.start, flags),
                || format!("mlock2 of {:#x}-{:#x}", vma.start, vma.end),
            )?;
        }
        Ok(())
    }

    /// Sets the mm fields, auxiliary vector and exe link (PR_SET_MM_MAP).
    pub(super) fn restore_mm(&mut self) -> Result<(), RestoreError> {
        let mm = &self.image.mm;
        if mm.auxv.len() * 8 > PAGE_SIZE as usize {
            return Err(RestoreError::Unsupported {
                pid: self.image.pid,
                why: format!("the auxiliary vector has {} words", mm.auxv.len()),
            });
        }
        let auxv: Vec<u8> = mm.auxv.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let auxv_addr = self.put(AUXV_OFF, &auxv)?;
        let exe = self.image.exe.clone();
        let exe_addr = self.put_str(&exe)?;
        let exe_fd = self.sys(
            0,
            |r| r.open(exe_addr, libc::O_RDONLY | libc::O_CLOEXEC),
            || format!("open of the executable {exe}"),
        )?;
        let map = PrctlMmMap {
            fields: [
                mm.start_code,
                mm.end_code,
                mm.start_data,
                mm.end_data,
                mm.start_brk,
                mm.brk,
                mm.start_stack,
                mm.arg_start,
                mm.arg_end,
                mm.env_start,
                mm.env_end,
            ],
            auxv: auxv_addr,
            auxv_size: auxv.len() as u32,
            exe_fd: exe_fd as u32,
        };
        let map_addr = self.put(STRUCT_OFF, map.as_bytes())?;
        let r = self.sys(
            0,
            |r| {
                let len = std::mem::size_of::<PrctlMmMap>() as u64;
                let args = [libc::PR_SET_MM_MAP as u64, map_addr, len];
                r.prctl(libc::PR_SET_MM, &args)
            },
            || format!("prctl(PR_SET_MM_MAP) with brk {:#x} and exe {exe}", mm.brk),
        );
        self.sys(0, |r| r.close(exe_fd), || "close of the executable".into())?;
        r.map(drop)
    }

    /// Registers the address space for the membarrier() commands it was
    /// registered for (each MEMBARRIER_CMD_REGISTER_* bit of the image).
    pub(super) fn restore_membarrier(&mut self) -> Result<(), RestoreError> {
        let registered = self.image.mm.membarrier;
        for bit in 0..u32::BITS {
            let cmd = 1u64 << bit;
            if registered & (1 << bit) != 0 {
                self.sys(
                    0,
                    |r| r.syscall(libc::SYS_membarrier, &[cmd, 0, 0]),
                    || format!("membarrier registration {cmd:#x}"),
                )?;
            }
        }
        Ok(())
    }
}
