//! A Podman "host" of the test's own: Podman with a private storage
//! (its --root, --runroot, --tmpdir, network config dir and runc state)
//! and ferry-runc as its runtime, run in a mount namespace of its own
//! held by a `sleep` the test starts. There the host's storage directory
//! is bind-mounted on a path every host of the test shares (as
//! /var/lib/containers is the same path on two machines: Podman's
//! exported checkpoint names its storage paths, which an import on
//! another host reuses), and tmpfs cover /dev/shm (Podman's lock
//! segment) and /var/lib (its blob cache, /var/lib/containers/cache
//! whatever --root says). Overlay mounts, those files and the bind mount
//! go with the namespace. Podman's version check finds ferry-criu as `criu` on its
//! PATH (src/container/oci_runtime/criu_version.rs). Dropping the host
//! kills what it started, by PID: the containers (in the cgroup parent
//! given to them, [`PodmanHost::cgroup_parent`]), conmon and Podman's
//! cleanup processes (in the namespace), then the holder; it removes the
//! cgroups and the storage.

use super::docker::{busybox_tarball, ferry_runc};
use super::{path_str, profile_dir};
use anyhow::{ensure, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Whether Podman and conmon are installed (scripts/setup.sh installs
/// podman).
pub fn have_podman() -> bool {
    Path::new("/usr/bin/podman").exists() && Path::new("/usr/bin/conmon").exists()
}

/// The path every Podman host of a test mounts its storage on: short
/// (Podman refuses a --runroot of 50 characters or more), under /tmp,
/// removed when dropped (after the hosts that use it, declared after it).
pub struct StorePath(PathBuf);

impl StorePath {
    /// A new empty mount point.
    pub fn new() -> Result<Self> {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path = PathBuf::from(format!("/tmp/fpm{}-{n}", std::process::id()));
        std::fs::create_dir_all(&path)?;
        Ok(StorePath(path))
    }
}

impl Drop for StorePath {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// One Podman host: its files, the shared storage path, its namespace.
pub struct PodmanHost {
    name: String,
    dir: PathBuf,
    store: PathBuf,
    holder: Child,
}

impl PodmanHost {
    /// Starts host `name` (a word: it is part of its cgroup parent's), its
    /// files in `dir`, its storage mounted at `store` in its namespace
    /// (the same `store` for every host of a test, as the same path on
    /// two machines).
    pub fn up(name: &str, dir: &Path, store: &StorePath) -> Result<Self> {
        let store = &store.0;
        std::fs::create_dir_all(dir.join("storage"))?;
        std::fs::create_dir_all(dir.join("bin"))?;
        std::os::unix::fs::symlink(profile_dir()?.join("ferry-criu"), dir.join("bin/criu"))
            .context("linking ferry-criu as criu")?;
        let holder = Command::new("unshare")
            .args(["--mount", "--propagation", "slave", "sleep", "infinity"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("starting the mount namespace's holder")?;
        let store_name = store.file_name().map(|n| n.to_string_lossy().into_owned());
        let host = PodmanHost {
            name: format!("ferry-podman-{}-{name}", store_name.unwrap_or_default()),
            dir: dir.to_path_buf(),
            store: store.to_path_buf(),
            holder,
        };
        host.wait_own_namespace()?;
        host.in_namespace(&[
            "mount",
            "--bind",
            path_str(&dir.join("storage"))?,
            path_str(store)?,
        ])?;
        host.in_namespace(&[
            "mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", "/dev/shm",
        ])?;
        // Podman keeps a blob cache in /var/lib/containers/cache whatever
        // --root says: a tmpfs in the namespace takes it.
        host.in_namespace(&[
            "mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", "/var/lib",
        ])?;
        Ok(host)
    }

    /// The holder's mount namespace.
    fn ns(&self) -> String {
        format!("/proc/{}/ns/mnt", self.holder.id())
    }

    /// Waits until the holder has left the test's mount namespace.
    fn wait_own_namespace(&self) -> Result<()> {
        let ours = std::fs::read_link("/proc/self/ns/mnt")?;
        let start = Instant::now();
        while std::fs::read_link(self.ns()).ok().as_ref() == Some(&ours) {
            ensure!(
                start.elapsed() < Duration::from_secs(5),
                "unshare did not make a mount namespace"
            );
            sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// Runs `args` in the host's mount namespace; it must succeed.
    fn in_namespace(&self, args: &[&str]) -> Result<()> {
        let out = Command::new("nsenter")
            .arg(format!("--mount={}", self.ns()))
            .args(args)
            .stdin(Stdio::null())
            .output()?;
        ensure!(
            out.status.success(),
            "{args:?} in the podman host's namespace failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// The cgroup parent containers of this host are given (`podman run
    /// --cgroup-parent`), removed with the host.
    pub fn cgroup_parent(&self) -> String {
        format!("/{}", self.name)
    }

    /// Runs `podman ARGS` on this host.
    pub fn run(&self, args: &[&str]) -> Result<Output> {
        let store = &self.store;
        let path = format!(
            "{}:{}",
            path_str(&self.dir.join("bin"))?,
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--mount={}", self.ns()))
            .arg("/usr/bin/podman")
            .arg("--root")
            .arg(store.join("root"))
            .arg("--runroot")
            .arg(store.join("run"))
            .arg("--tmpdir")
            .arg(store.join("tmp"))
            .arg("--network-config-dir")
            .arg(store.join("net"))
            .args(["--cgroup-manager", "cgroupfs", "--events-backend", "file"])
            .args(["--storage-driver", "overlay"])
            .arg("--runtime")
            .arg(ferry_runc()?)
            .arg("--runtime-flag")
            .arg(format!("root={}", path_str(&store.join("runc"))?))
            .args(args)
            .env("PATH", path)
            .stdin(Stdio::null());
        cmd.output()
            .with_context(|| format!("running podman {args:?}"))
    }

    /// Runs `podman ARGS`, which must succeed, and returns its output.
    pub fn podman(&self, args: &[&str]) -> Result<String> {
        let out = self.run(args)?;
        ensure!(
            out.status.success(),
            "podman {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Imports a busybox image named `name` from a rootfs built in `work`.
    pub fn import_busybox(&self, work: &Path, name: &str) -> Result<()> {
        let tar = busybox_tarball(work)?;
        self.podman(&["import", path_str(&tar)?, name])?;
        Ok(())
    }

    /// Copies image `name` to host `to` (`podman save` here, `podman load`
    /// there, through the archive `via`): the same image, with the same ID
    /// the checkpoint names, as a registry would give both hosts.
    pub fn copy_image(&self, name: &str, via: &Path, to: &PodmanHost) -> Result<()> {
        self.podman(&["save", "--output", path_str(via)?, name])?;
        to.podman(&["load", "--input", path_str(via)?])?;
        Ok(())
    }

    /// Kills every process of this host's containers (in its cgroup
    /// parent) and every process in its mount namespace but the holder
    /// (conmon, Podman's cleanup), and reaps none: they are not the
    /// test's children.
    fn kill_processes(&self) {
        let pids_cgroup = Path::new("/sys/fs/cgroup/pids").join(&self.name);
        let ns = std::fs::read_link(self.ns()).ok();
        for _ in 0..3 {
            let mut pids = cgroup_processes(&pids_cgroup);
            pids.extend(
                std::fs::read_dir("/proc")
                    .into_iter()
                    .flatten()
                    .filter_map(|e| {
                        let pid: i32 = e.ok()?.file_name().to_str()?.parse().ok()?;
                        let theirs = std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok();
                        (pid != self.holder.id() as i32 && ns.is_some() && theirs == ns)
                            .then_some(pid)
                    }),
            );
            if pids.is_empty() {
                return;
            }
            for pid in pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            sleep(Duration::from_millis(200));
        }
    }

    /// Removes this host's cgroups (the containers' under its parent),
    /// deepest first, in every hierarchy.
    fn remove_cgroups(&self) {
        for hierarchy in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten() {
            let Ok(h) = hierarchy else { continue };
            let top = h.path().join(&self.name);
            if top.is_dir() {
                let _ = Command::new("find")
                    .arg(&top)
                    .args(["-depth", "-type", "d", "-exec", "rmdir", "{}", ";"])
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

/// The processes of every cgroup under `top`.
fn cgroup_processes(top: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    let mut dirs = vec![top.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
        pids.extend(procs.lines().filter_map(|l| l.parse::<i32>().ok()));
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(e.path());
            }
        }
    }
    pids
}

impl Drop for PodmanHost {
    fn drop(&mut self) {
        // Podman stops and removes its containers itself when it can.
        let _ = self.run(&["rm", "--all", "--force", "--time", "0"]);
        self.kill_processes();
        let _ = self.holder.kill();
        let _ = self.holder.wait();
        self.remove_cgroups();
        // The namespace is gone, and its mounts with it.
        // The shared mount point stays: another host may still use it.
        let _ = std::fs::remove_dir_all(self.dir.join("storage"));
    }
}
