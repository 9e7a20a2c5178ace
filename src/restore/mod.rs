//! Restore: turns an image back into a live process tree with the same
//! PIDs and TIDs, detached from the caller. A "husk" process is created
//! with the root's PID, and each child is cloned from its parent's husk
//! with its own PID; ferry seizes them and rebuilds the image inside each
//! purely by injected system calls (no restorer blob): address space,
//! special mappings, pages, files, signals, threads, sessions and process
//! groups, registers. On any failure every husk is killed, so nothing is
//! left behind.
//!
//! Where things live: every kernel resource restored has one file in
//! husk/, named as its twin in src/dump/ (husk/signals.rs restores what
//! dump/signals.rs saves), including the resources built here in
//! migrate-agent and pulled into the husk (anon, sockets, sysvshm): one
//! place for all twins. A resource added later gets one file there.
//! husk/mod.rs only orders the steps; this file holds the checks made
//! before a husk exists (CPU, PIDs, files) and the entry points. The error
//! type and the lazy-restore hand-over have files of their own
//! (error.rs, lazy.rs), re-exported here, so that nothing below imports
//! this file.

mod channel;
mod error;
mod hold;
mod husk;
mod lazy;
pub mod warm;

pub use error::RestoreError;
pub use hold::HeldTree;
pub use husk::CgroupMode;
pub use lazy::{LazyPages, LazyProcess};

use crate::image::{Checkpoint, ImageReader, ProcessImage};
use crate::kernel;
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

/// Statistics of one restore (the figures of CRIU's --print-stats).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct RestoreStats {
    /// The restored PID (the root of the tree).
    pub pid: i32,
    /// Live processes restored (the root and its descendants).
    pub processes: u32,
    /// Zombie children recreated.
    pub zombies: u32,
    /// Milliseconds from opening the image to the process running.
    pub restore_ms: f64,
    /// Pages written into the restored address space.
    pub pages_restored: u64,
    /// Of the address space, pages a warm restore moved in from its
    /// staging instead of writing them.
    pub pages_moved: u64,
}

/// How a restore fills memory.
#[derive(Debug, Default)]
pub struct RestoreOptions {
    /// Post-copy: private anonymous memory is left to a fault server
    /// instead of being filled from the image (None: fill it all).
    pub lazy: Option<LazyPages>,
    /// Whether a plain tree's tasks go back into their cgroups (a
    /// container's stay in those its runtime made).
    pub cgroups: CgroupMode,
    /// The cgroup roots the tasks' cgroups are put below (CRIU's
    /// --cgroup-root); a hierarchy none names uses the restoring
    /// program's own cgroup.
    pub cgroup_roots: Vec<crate::proc::cgroups::CgroupRoot>,
    /// The network namespace to restore a plain tree into (CRIU's
    /// --join-ns net:PATH): needed for an image whose namespace the
    /// checkpoint left outside; None: a new one when the image carries
    /// one, else the restoring program's.
    pub join_netns: Option<std::path::PathBuf>,
    /// Hold the restored plain tree frozen in the transient freezer
    /// cgroup of this name instead of letting it run
    /// ([`restore_held`]); None: it runs.
    pub hold: Option<String>,
    /// A pre-copy migration's staging husk, spawned while the rounds ran
    /// (pre-copy or hybrid) with the root's pages staged in it: the
    /// root's husk is cloned from it, sharing its memory, and the pages
    /// are moved in, not installed (in a lazy restore, those the source
    /// kept are dropped again, to come on fault). A restore it cannot
    /// serve (a namespace of the tree's own, another root) drops it and
    /// spawns the root's husk as usual.
    pub warm: Option<warm::WarmHusk>,
}

/// Restores the image in `dir` and returns once the process runs.
pub fn restore(dir: &Path) -> Result<RestoreStats, RestoreError> {
    restore_with(dir, RestoreOptions::default())
}

/// Restores the image in `dir` as `opts` says (eagerly or lazily) and
/// returns once the process runs.
pub fn restore_with(dir: &Path, opts: RestoreOptions) -> Result<RestoreStats, RestoreError> {
    restore_tree(dir, opts).map(|(stats, _)| stats)
}

/// Restores the plain tree of the image in `dir` and returns it held
/// frozen in the transient freezer cgroup `name` (it stays frozen if
/// this process dies): a migration's destination lets it run only once
/// the source commits. `warm` as [`RestoreOptions::warm`].
pub fn restore_held(
    dir: &Path,
    name: &str,
    warm: Option<warm::WarmHusk>,
) -> Result<(RestoreStats, HeldTree), RestoreError> {
    let opts = RestoreOptions {
        hold: Some(name.to_string()),
        warm,
        ..Default::default()
    };
    match restore_tree(dir, opts)? {
        (stats, Some(held)) => Ok((stats, held)),
        (_, None) => Err(RestoreError::Unsupported {
            pid: 1,
            why: "a tree with a PID namespace of its own cannot be held frozen after its restore"
                .into(),
        }),
    }
}

/// [`restore_with`], with the tree it holds when `opts.hold` says so.
fn restore_tree(
    dir: &Path,
    opts: RestoreOptions,
) -> Result<(RestoreStats, Option<HeldTree>), RestoreError> {
    let started = Instant::now();
    let reader = ImageReader::open(dir)?;
    let ck = reader.checkpoint();
    check_cpu(&ck.host)?;
    let netns = husk::NetnsTarget::choose(ck, opts.join_netns.as_deref())?;
    let warm = match opts.warm {
        Some(w)
            if !ck.pid_namespace
                && matches!(netns, husk::NetnsTarget::Ours)
                && ck.root().is_some_and(|p| p.pid == w.root()) =>
        {
            Some(w)
        }
        // Dropped: the husk exits.
        _ => None,
    };
    if ck.pid_namespace {
        if opts.lazy.is_some() {
            return Err(RestoreError::Unsupported {
                pid: 1,
                why: "a tree with a PID namespace of its own is restored eagerly only".into(),
            });
        }
        return restore_in_new_pid_namespace(dir, &netns).map(|stats| (stats, None));
    }
    if ck.root().is_some_and(|p| p.pid == 1) {
        return Err(RestoreError::Unsupported {
            pid: 1,
            why: "the image is of a container (its root is PID 1 of its PID namespace); restore it into a created container (restore --container)".into(),
        });
    }
    check_pids_free(ck)?;
    // Before any process exists (a cgroup that cannot be made refuses the
    // restore) and before the files are checked (an fd may name a cgroup
    // directory made here).
    let placement = husk::Placement::prepare(ck, opts.cgroups, &opts.cgroup_roots)?;
    for p in &ck.processes {
        check_files(ck, p, "")?;
    }
    let (pages, held) = husk::rebuild(
        &reader,
        opts.lazy.as_ref(),
        &placement,
        &netns,
        (opts.hold.as_deref(), warm),
    )?;
    let stats = RestoreStats {
        pid: ck.root().map_or(0, |p| p.pid),
        processes: ck.processes.len() as u32,
        zombies: ck.zombies.len() as u32,
        restore_ms: started.elapsed().as_secs_f64() * 1000.0,
        pages_restored: pages.restored,
        pages_moved: pages.moved,
    };
    Ok((stats, held))
}

/// Restores the image in `dir` into the existing process `husk` (the init
/// of a container created for it, waiting in the container's namespaces
/// and cgroup): the image's root becomes that process, with its PIDs as
/// the image names them inside the container's PID namespace; its children
/// are cloned from it. Files are resolved inside the husk's root. Returns
/// once the tree runs; on failure the husk is killed.
pub fn restore_into(dir: &Path, husk: i32) -> Result<RestoreStats, RestoreError> {
    restore_into_with(dir, husk, RestoreOptions::default()).map(|(stats, _)| stats)
}

/// [`restore_into`] as `opts` says: with lazy pages, a post-copy
/// migration's destination restores a container whose memory still comes
/// from the source (its processes named by their container PIDs); with
/// `hold`, a pre-copy's holds it frozen, returned, until the source
/// decides.
pub fn restore_into_with(
    dir: &Path,
    husk: i32,
    opts: RestoreOptions,
) -> Result<(RestoreStats, Option<HeldTree>), RestoreError> {
    let started = Instant::now();
    let reader = ImageReader::open(dir)?;
    let ck = reader.checkpoint();
    check_cpu(&ck.host)?;
    let root = format!("/proc/{husk}/root");
    let checked = ck
        .processes
        .iter()
        .try_for_each(|p| check_files(ck, p, &root));
    let pages_restored = checked
        .and_then(|()| {
            // Its abstract name must be seen from the husk's network
            // namespace (a container's own, when it has one).
            kernel::in_net_namespace(husk, || channel::FdChannel::listen(husk)).map_err(
                |errno| RestoreError::Injected {
                    pid: husk,
                    call: format!("joining the network namespace of process {husk}"),
                    errno,
                },
            )?
        })
        .and_then(|ch| {
            let husk = nix::unistd::Pid::from_raw(husk);
            husk::rebuild_into(&reader, husk, &ch, opts.lazy.as_ref(), opts.hold.as_deref())
        });
    let (pages, held) = match pages_restored {
        Ok(p) => p,
        Err(e) => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(husk),
                nix::sys::signal::Signal::SIGKILL,
            );
            return Err(e);
        }
    };
    let stats = RestoreStats {
        pid: husk,
        processes: ck.processes.len() as u32,
        zombies: ck.zombies.len() as u32,
        restore_ms: started.elapsed().as_secs_f64() * 1000.0,
        pages_restored: pages.restored,
        pages_moved: pages.moved,
    };
    Ok((stats, held))
}

/// Restores the image in `dir` of a tree whose root was the init of a PID
/// namespace of its own: a husk is made PID 1 of a new PID namespace and
/// the tree is restored into it as into a container's init, with the same
/// PIDs inside, in the network namespace `netns` says. The statistics
/// give the root's PID here.
fn restore_in_new_pid_namespace(
    dir: &Path,
    netns: &husk::NetnsTarget<'_>,
) -> Result<RestoreStats, RestoreError> {
    let spawned = netns
        .spawn(kernel::spawn_husk_in_new_pid_namespace)
        .map_err(|errno| RestoreError::Spawn { pid: 1, errno })?;
    if let Err(e) = netns.configure(1, spawned.pid) {
        let _ = nix::sys::signal::kill(spawned.pid, nix::sys::signal::Signal::SIGKILL);
        return Err(e);
    }
    // The lifeline stays open until the husk is taken over.
    let restored = restore_into(dir, spawned.pid.as_raw());
    drop(spawned.lifeline);
    restored
}

fn check_cpu(host: &crate::image::HostInfo) -> Result<(), RestoreError> {
    check_xsave(host.xcr0, host.xstate_size)
}

/// Checks, before any page travels, that a workload from a CPU with XSAVE
/// features `xcr0` (an area of `xstate_size` bytes) can be restored here
/// and that its PIDs and TIDs `tids` are free: a migration's destination
/// refuses the offer early instead of failing after the freeze.
pub fn check_target(xcr0: u64, xstate_size: u32, tids: &[i32]) -> Result<(), RestoreError> {
    check_xsave(xcr0, xstate_size)?;
    tids.iter().try_for_each(|&tid| pid_free(tid))
}

fn check_xsave(xcr0: u64, xstate_size: u32) -> Result<(), RestoreError> {
    let host_xcr0 = kernel::cpu::xcr0();
    let host_size = kernel::cpu::xsave_size();
    if xcr0 != host_xcr0 || xstate_size != host_size {
        return Err(RestoreError::CpuMismatch {
            image: kernel::cpu::xsave_component_names(xcr0).join(","),
            image_xcr0: xcr0,
            image_size: xstate_size,
            host: kernel::cpu::xsave_component_names(host_xcr0).join(","),
            host_xcr0,
            host_size,
        });
    }
    Ok(())
}

/// Refuses early, with the holder named, when any PID or TID of the tree
/// is in use.
fn check_pids_free(ck: &Checkpoint) -> Result<(), RestoreError> {
    for p in &ck.processes {
        for t in &p.threads {
            pid_free(t.tid)?;
        }
    }
    for z in &ck.zombies {
        pid_free(z.pid)?;
    }
    Ok(())
}

/// How long a PID held by a zombie is waited for: the processes of a tree
/// that checkpoint just killed are reaped by whoever they were reparented
/// to, a moment later.
const ZOMBIE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

fn pid_free(pid: i32) -> Result<(), RestoreError> {
    let started = Instant::now();
    while started.elapsed() < ZOMBIE_GRACE && is_zombie(pid) {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let holder = std::fs::read_to_string(format!("/proc/{pid}/comm"));
    match holder {
        Ok(comm) => Err(RestoreError::PidTaken {
            pid,
            holder: format!("'{}' (PID {pid})", comm.trim_end()),
        }),
        Err(_) if Path::new(&format!("/proc/{pid}")).exists() => Err(RestoreError::PidTaken {
            pid,
            holder: format!("a process (PID {pid})"),
        }),
        Err(_) => Ok(()),
    }
}

/// Whether `pid` is a zombie waiting to be reaped.
fn is_zombie(pid: i32) -> bool {
    crate::proc::read_status(pid).is_ok_and(|s| s.state == 'Z')
}

/// Refuses when a mapped file changed since the checkpoint (its pages would
/// differ from what the process saw) or an open file is gone. The image's
/// paths are looked up under `root` (empty: ours).
fn check_files(ck: &Checkpoint, p: &ProcessImage, root: &str) -> Result<(), RestoreError> {
    let at = |path: &str| format!("{root}{path}");
    for vma in &p.vmas {
        if let crate::image::VmaKind::File { path, identity, .. } = &vma.kind {
            let meta = std::fs::metadata(at(path)).map_err(|e| RestoreError::FileChanged {
                path: path.clone(),
                why: format!("(mapped at {:#x}) cannot be opened: {e}", vma.start),
            })?;
            let now = crate::proc::file_identity(&meta);
            if now != *identity {
                return Err(RestoreError::FileChanged {
                    path: path.clone(),
                    why: format!(
                        "(mapped at {:#x}) changed since the checkpoint: size {} -> {}, mtime {} -> {} ns",
                        vma.start, identity.size, now.size, identity.mtime_ns, now.mtime_ns
                    ),
                });
            }
        }
    }
    for vma in &p.vmas {
        if let crate::image::VmaKind::SharedFile { path, .. } = &vma.kind {
            if !Path::new(&at(path)).exists() {
                return Err(RestoreError::FileChanged {
                    path: path.clone(),
                    why: format!("(mapped shared at {:#x}) no longer exists", vma.start),
                });
            }
        }
    }
    for fd in &p.fds {
        if let Some(crate::image::FileImage::Path(f)) = ck.files.get(fd.file as usize) {
            // A deleted file (a ghost) is recreated from the image; a
            // file of a restored process's /proc directory is there once
            // that process is.
            if f.ghost.is_none()
                && !of_restored_process(ck, &f.path)
                && !Path::new(&at(&f.path)).exists()
            {
                return Err(RestoreError::FileChanged {
                    path: f.path.clone(),
                    why: format!("(fd {}) no longer exists", fd.fd),
                });
            }
        }
    }
    if !Path::new(&at(&p.exe)).exists() {
        return Err(RestoreError::FileChanged {
            path: p.exe.clone(),
            why: "(the executable) no longer exists".into(),
        });
    }
    Ok(())
}

/// Whether `path` is in the /proc directory of a process or thread of
/// the image (/proc/PID/cgroup, which a process opened by its own PID):
/// it exists again once the restore made that process.
fn of_restored_process(ck: &Checkpoint, path: &str) -> bool {
    let id = path
        .strip_prefix("/proc/")
        .and_then(|rest| rest.split('/').next())
        .and_then(|id| id.parse::<i32>().ok());
    id.is_some_and(|id| {
        ck.processes
            .iter()
            .any(|p| p.threads.iter().any(|t| t.tid == id))
    })
}
