//! OCI runtime adapters (runc, crun): what ferry needs of a container to
//! migrate it. The source reads the container's state (its init PID and
//! bundle) and checks, with its cgroup frozen, that every process of the
//! container descends from the init; the destination creates the same
//! container from the same bundle, takes its waiting init process as the
//! root husk of the restore, and marks the container started by removing
//! the runtime's exec FIFO.

pub mod announce;
pub mod docker;
mod error;
pub mod freezer;
pub mod net;
pub mod oci_runtime;
mod pidfile;
pub mod rootfs;

pub use error::ContainerError;
pub use freezer::Freezer;
pub use pidfile::write_pid_file;

use crate::restore::{HeldTree, RestoreOptions, RestoreStats};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Which OCI runtime manages the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
pub enum Runtime {
    /// runc.
    Runc,
    /// crun.
    Crun,
}

impl Runtime {
    /// The runtime's binary (found on PATH).
    pub fn binary(self) -> &'static str {
        match self {
            Runtime::Runc => "runc",
            Runtime::Crun => "crun",
        }
    }

    /// The runtime's default state directory.
    pub fn default_root(self) -> PathBuf {
        match self {
            Runtime::Runc => PathBuf::from("/run/runc"),
            Runtime::Crun => PathBuf::from("/run/crun"),
        }
    }

    /// Parses a runtime name as the CLI takes it.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "runc" => Some(Runtime::Runc),
            "crun" => Some(Runtime::Crun),
            _ => None,
        }
    }
}

/// Where the init of a container ferry creates gets its stdio (the
/// runtime's, as `runc create` passes them on).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum InitStdio {
    /// /dev/null: a live migration's destination, where nobody reads it.
    #[default]
    Null,
    /// This process's own stdio: a restore from an image (`restore
    /// --container`, or an OCI runtime's restore called by containerd's
    /// shim or conmon with the pipes it reads), on which the container's
    /// external stdio is restored.
    Inherit,
}

/// A container as its runtime knows it: the runtime, its state directory
/// and the container's ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// The runtime.
    pub runtime: Runtime,
    /// The runtime's state directory (`--root`).
    pub root: PathBuf,
    /// The container ID.
    pub id: String,
    /// The runtime's other global flags, given before the command on every
    /// call (`--log FILE --log-format json --systemd-cgroup`, as a shim
    /// passes them to the OCI runtime ferry-runc stands for).
    flags: Vec<String>,
}

/// How [`Container::create_with`] creates a container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateOptions {
    /// Where the init gets its stdio: /dev/null, or this process's (the
    /// pipes or terminal socket a shim gave its runtime).
    pub stdio: InitStdio,
    /// More flags for `runtime create` (`--console-socket S`, `--no-pivot`).
    pub args: Vec<String>,
}

/// What `runtime state ID` says of a container.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct State {
    /// The container ID.
    pub id: String,
    /// The init process's PID (as this host sees it); 0 once stopped.
    pub pid: i32,
    /// created, running, paused or stopped.
    pub status: String,
    /// The bundle directory.
    pub bundle: String,
}

impl Container {
    /// The container `id` of `runtime`, whose state lives under `root` (the
    /// runtime's default when None).
    pub fn new(runtime: Runtime, root: Option<&Path>, id: &str) -> Self {
        Container {
            runtime,
            root: root.map_or_else(|| runtime.default_root(), Path::to_path_buf),
            id: id.to_string(),
            flags: Vec::new(),
        }
    }

    /// The same container, every runtime call also given the global
    /// `flags` (besides `--root`).
    pub fn with_flags(mut self, flags: Vec<String>) -> Self {
        self.flags = flags;
        self
    }

    fn run(&self, args: &[&str]) -> Result<Vec<u8>, ContainerError> {
        run_runtime(self.runtime, &self.root, &self.flags, args)
    }

    fn command_line(&self, args: &[&str]) -> String {
        command_line(self.runtime, &self.root, &self.flags, args)
    }

    /// Reads the container's state.
    pub fn state(&self) -> Result<State, ContainerError> {
        let args = ["state", self.id.as_str()];
        let out = self.run(&args)?;
        serde_json::from_slice(&out).map_err(|e| ContainerError::BadState {
            command: self.command_line(&args),
            why: e.to_string(),
        })
    }

    /// The running container's init PID and bundle; refuses a container
    /// that is not running.
    pub fn running(&self) -> Result<State, ContainerError> {
        let st = self.state()?;
        if st.status != "running" || st.pid <= 0 {
            return Err(ContainerError::Status {
                id: self.id.clone(),
                status: st.status,
                wanted: "running",
            });
        }
        Ok(st)
    }

    /// Creates the container from `bundle` (`runtime create`), its stdio as
    /// `stdio` says, and returns its init, which waits to be started.
    pub fn create(&self, bundle: &Path, stdio: InitStdio) -> Result<State, ContainerError> {
        let opts = CreateOptions {
            stdio,
            args: Vec::new(),
        };
        self.create_with(bundle, &opts)
    }

    /// Creates the container from `bundle` as `opts` says and returns its
    /// init, which waits to be started.
    pub fn create_with(
        &self,
        bundle: &Path,
        opts: &CreateOptions,
    ) -> Result<State, ContainerError> {
        check_bundle(&self.id, bundle)?;
        let bundle_s = bundle.to_string_lossy();
        let mut args = vec!["create", "--bundle", &bundle_s];
        args.extend(opts.args.iter().map(String::as_str));
        args.push(self.id.as_str());
        let bin = self.runtime.binary();
        // The container's init inherits the runtime's stdio: a pipe would
        // never reach EOF. The runtime's errors go to a file instead, or,
        // when the init takes our stdio, to our stderr.
        let err_path = std::env::temp_dir().join(format!(
            "ferry-{}-create-{}-{}.err",
            bin,
            self.id,
            std::process::id()
        ));
        let spawn = |source| ContainerError::Spawn {
            runtime: bin,
            source,
        };
        let mut cmd = Command::new(bin);
        cmd.arg("--root")
            .arg(&self.root)
            .args(&self.flags)
            .args(&args);
        if opts.stdio == InitStdio::Null {
            let err_file = std::fs::File::create(&err_path).map_err(spawn)?;
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(err_file);
        }
        let status = cmd.status().map_err(spawn);
        let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
        let _ = std::fs::remove_file(&err_path);
        if !status?.success() {
            return Err(ContainerError::Failed {
                command: self.command_line(&args),
                stderr: stderr.trim().to_string(),
            });
        }
        let st = self.state()?;
        if st.status != "created" || st.pid <= 0 {
            let _ = self.delete();
            return Err(ContainerError::Status {
                id: self.id.clone(),
                status: st.status,
                wanted: "created",
            });
        }
        Ok(st)
    }

    /// Marks a created container as started without letting its init exec
    /// the bundle's process: removes the exec FIFO the init waits on, after
    /// which the runtime reports it running (its init now being the
    /// restored process).
    pub fn mark_started(&self) -> Result<(), ContainerError> {
        let fifo = self.root.join(&self.id).join("exec.fifo");
        std::fs::remove_file(&fifo).map_err(|source| ContainerError::Cgroup {
            path: fifo.display().to_string(),
            source,
        })
    }

    /// Freezes the container (`runtime pause`).
    pub fn pause(&self) -> Result<(), ContainerError> {
        self.run(&["pause", self.id.as_str()]).map(drop)
    }

    /// Thaws a paused container (`runtime resume`).
    pub fn resume(&self) -> Result<(), ContainerError> {
        self.run(&["resume", self.id.as_str()]).map(drop)
    }

    /// Deletes the container, killing what still runs in it
    /// (`runtime delete -f`).
    pub fn delete(&self) -> Result<(), ContainerError> {
        self.run(&["delete", "-f", self.id.as_str()]).map(drop)
    }
}

/// Runs `runtime --root ROOT ARGS` and returns what it printed.
fn run_runtime(
    runtime: Runtime,
    root: &Path,
    flags: &[String],
    args: &[&str],
) -> Result<Vec<u8>, ContainerError> {
    let bin = runtime.binary();
    let out = Command::new(bin)
        .arg("--root")
        .arg(root)
        .args(flags)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| ContainerError::Spawn {
            runtime: bin,
            source,
        })?;
    if !out.status.success() {
        return Err(ContainerError::Failed {
            command: command_line(runtime, root, flags, args),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out.stdout)
}

fn command_line(runtime: Runtime, root: &Path, flags: &[String], args: &[&str]) -> String {
    let mut words = vec![runtime.binary().to_string(), "--root".into()];
    words.push(root.display().to_string());
    words.extend(flags.iter().cloned());
    words.extend(args.iter().map(|a| a.to_string()));
    words.join(" ")
}

/// Every container `runtime` knows in its state directory `root` (the
/// runtime's default when None), whatever its status: what
/// `migrate-agent drain` moves away.
pub fn list(runtime: Runtime, root: Option<&Path>) -> Result<Vec<State>, ContainerError> {
    let root = root.map_or_else(|| runtime.default_root(), Path::to_path_buf);
    let args = ["list", "--format", "json"];
    let out = run_runtime(runtime, &root, &[], &args)?;
    // runc prints `null` when it knows no container.
    let listed: Option<Vec<State>> =
        serde_json::from_slice(&out).map_err(|e| ContainerError::BadState {
            command: command_line(runtime, &root, &[], &args),
            why: e.to_string(),
        })?;
    Ok(listed.unwrap_or_default())
}

/// Checks, with the container's cgroup frozen so that the listing holds
/// still, that every process in it descends from its init `init`: a
/// process started beside it (`runtime exec`) would be left behind.
pub fn check_tree(id: &str, init: i32) -> Result<(), ContainerError> {
    let freezer = Freezer::of(init)?;
    freezer.freeze()?;
    let listed = freezer.pids().map(|pids| {
        let tree = crate::inspect::collect_tree(init).unwrap_or_default();
        pids.into_iter().find(|p| !tree.contains(p))
    });
    let thawed = freezer.thaw();
    if let Some(pid) = listed? {
        return Err(ContainerError::Escaped {
            id: id.to_string(),
            init,
            pid,
        });
    }
    Ok(thawed?)
}

/// Checkpoints the running container into `dir`: its init's tree, PIDs as
/// the container sees them. Then deletes the container (its processes were
/// killed by the checkpoint), or with `leave_running` lets it continue.
pub fn checkpoint(
    c: &Container,
    dir: &Path,
    leave_running: bool,
) -> Result<crate::dump::CheckpointStats, ContainerError> {
    check_capabilities()?;
    let st = c.running()?;
    check_tree(&c.id, st.pid)?;
    let opts = crate::dump::CheckpointOptions {
        leave_running,
        in_container: true,
        lock_owner: None,
        // Its restore gives the new init the restorer's stdio.
        external_stdio: crate::inspect::StdioPolicy::Record,
        // Its tasks go back into the cgroups its new runtime makes.
        cgroup_roots: Vec::new(),
        external_netns: false,
    };
    let stats = crate::dump::checkpoint(st.pid, dir, opts).map_err(|source| {
        ContainerError::Checkpoint {
            id: c.id.clone(),
            source,
        }
    })?;
    if !leave_running {
        c.delete()?;
    }
    Ok(stats)
}

/// Creates the container from `bundle` and restores the image in `dir`
/// into its init; the container then runs as its runtime sees it. Its
/// init gets our stdio, on which its external stdio (the stdio pipes its
/// runtime's shim held at checkpoint) is restored. On failure the created
/// container is deleted.
pub fn restore(c: &Container, bundle: &Path, dir: &Path) -> Result<RestoreStats, ContainerError> {
    check_capabilities()?;
    check_runtime(c.runtime)?;
    let st = c.create(bundle, InitStdio::Inherit)?;
    restore_created(c, st.pid, dir, RestoreOptions::default()).map(|(stats, _)| stats)
}

/// How a destination configures a created container's own network
/// namespace: the hook to run and what the source recorded.
#[derive(Debug, Clone, Copy)]
pub struct NetworkSetup<'a> {
    /// The network hook (`[container] network_hook`).
    pub hook: &'a Path,
    /// The source container's addresses and routes.
    pub config: &'a net::NetworkConfig,
}

/// Runs phase `phase` of the network hook on the network namespace of
/// the container just created with [`Container::create`], whose init is
/// `pid` ([`net::HookPhase`]: prepared at the offer, activated under the
/// network lock inside the downtime, so that a peer's packet arriving
/// once the address is reachable meets the lock, not a namespace without
/// the socket, which would answer with a reset). On failure the container
/// is deleted.
pub fn configure_network(
    c: &Container,
    pid: i32,
    network: NetworkSetup<'_>,
    phase: net::HookPhase,
) -> Result<(), ContainerError> {
    let configured = net::run_hook(network.hook, (&c.id, pid), network.config, phase);
    if configured.is_err() {
        if let Err(d) = c.delete() {
            tracing::error!(id = %c.id, %d, "deleting the container after a failed network hook failed");
        }
    }
    configured
}

/// Restores the image in `dir`, as `opts` says (a post-copy destination
/// restores lazily), into `husk`, the waiting init of the container just
/// created with [`Container::create`]; the container then runs as its
/// runtime sees it (or is held frozen, returned, with `opts.hold`). On
/// failure the container is deleted.
pub fn restore_created(
    c: &Container,
    husk: i32,
    dir: &Path,
    opts: RestoreOptions,
) -> Result<(RestoreStats, Option<HeldTree>), ContainerError> {
    let restored = crate::restore::restore_into_with(dir, husk, opts)
        .map_err(|source| ContainerError::Restore {
            id: c.id.clone(),
            source,
        })
        .and_then(|restored| c.mark_started().map(|()| restored));
    if restored.is_err() {
        if let Err(e) = c.delete() {
            tracing::error!(id = %c.id, %e, "deleting the container after a failed restore failed");
        }
    }
    restored
}

/// Refuses, before anything is touched, a runtime whose binary does not
/// run here (`runtime --version`).
pub fn check_runtime(runtime: Runtime) -> Result<(), ContainerError> {
    let bin = runtime.binary();
    let missing = |why: String| ContainerError::RuntimeMissing { runtime: bin, why };
    let out = Command::new(bin)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| missing(e.to_string()))?;
    if !out.status.success() {
        return Err(missing(format!(
            "`{bin} --version` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    if runtime == Runtime::Crun {
        if let Some(controllers) = hybrid_v2_controllers(Path::new("/sys/fs/cgroup")) {
            return Err(missing(format!(
                "crun (1.8) refuses hybrid cgroups whose cgroup2 hierarchy has controllers, and this host's /sys/fs/cgroup/unified has {controllers:?} (runc works here; or bind every controller to v1 or v2 only)"
            )));
        }
    }
    Ok(())
}

/// The controllers of the cgroup2 hierarchy when `mount` is a hybrid
/// layout (v1 hierarchies, cgroup2 at `unified`) whose cgroup2 has any:
/// the layout crun refuses.
fn hybrid_v2_controllers(mount: &Path) -> Option<String> {
    if mount.join("cgroup.controllers").exists() {
        return None; // cgroup v2 only
    }
    let controllers = std::fs::read_to_string(mount.join("unified/cgroup.controllers")).ok()?;
    let controllers = controllers.trim();
    (!controllers.is_empty()).then(|| controllers.to_string())
}

const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_CHECKPOINT_RESTORE: u32 = 40;

/// Refuses early when this process lacks the capabilities a container's
/// checkpoint or restore needs: CAP_SYS_PTRACE, and CAP_CHECKPOINT_RESTORE
/// or CAP_SYS_ADMIN (set_tid, PR_SET_MM_MAP).
pub fn check_capabilities() -> Result<(), ContainerError> {
    let status = crate::proc::read_status(std::process::id() as i32).map_err(|e| {
        ContainerError::Capabilities {
            missing: format!("a readable /proc/self/status ({e})"),
            effective: 0,
        }
    })?;
    missing_capabilities(status.caps.effective)
}

fn missing_capabilities(effective: u64) -> Result<(), ContainerError> {
    let has = |cap: u32| effective & (1u64 << cap) != 0;
    let mut missing = Vec::new();
    if !has(CAP_SYS_PTRACE) {
        missing.push("CAP_SYS_PTRACE");
    }
    if !has(CAP_CHECKPOINT_RESTORE) && !has(CAP_SYS_ADMIN) {
        missing.push("CAP_CHECKPOINT_RESTORE (or CAP_SYS_ADMIN)");
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(ContainerError::Capabilities {
            missing: missing.join(" and "),
            effective,
        })
    }
}

/// Refuses a bundle without config.json.
pub fn check_bundle(id: &str, bundle: &Path) -> Result<(), ContainerError> {
    if bundle.join("config.json").is_file() {
        Ok(())
    } else {
        Err(ContainerError::NoBundle {
            id: id.to_string(),
            bundle: bundle.display().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crun_refused_layouts_are_recognised() {
        let tmp = tempfile::tempdir().unwrap();
        let m = tmp.path();
        assert_eq!(hybrid_v2_controllers(m), None, "legacy: no unified");
        std::fs::create_dir_all(m.join("unified")).unwrap();
        std::fs::write(m.join("unified/cgroup.controllers"), "\n").unwrap();
        assert_eq!(hybrid_v2_controllers(m), None, "hybrid, empty cgroup2");
        std::fs::write(m.join("unified/cgroup.controllers"), "hugetlb\n").unwrap();
        assert_eq!(hybrid_v2_controllers(m).as_deref(), Some("hugetlb"));
        std::fs::write(m.join("cgroup.controllers"), "cpu memory\n").unwrap();
        assert_eq!(hybrid_v2_controllers(m), None, "v2 only");
    }

    #[test]
    fn missing_capabilities_are_named() {
        assert!(missing_capabilities(u64::MAX).is_ok());
        let only_admin = (1 << CAP_SYS_PTRACE) | (1 << CAP_SYS_ADMIN);
        assert!(missing_capabilities(only_admin).is_ok());
        let e = missing_capabilities(1 << CAP_SYS_PTRACE).unwrap_err();
        assert!(e.to_string().contains("CAP_CHECKPOINT_RESTORE"), "{e}");
        let e = missing_capabilities(0).unwrap_err().to_string();
        assert!(
            e.contains("CAP_SYS_PTRACE") && e.contains("CAP_SYS_ADMIN"),
            "{e}"
        );
    }

    #[test]
    fn runtime_state_json_is_read() {
        let json = r#"{"ociVersion":"1.0.2-dev","id":"t1","pid":13991,"status":"created","bundle":"/tmp/b","rootfs":"/tmp/b/rootfs","created":"2026-11-28T18:19:17Z","owner":""}"#;
        let st: State = serde_json::from_str(json).unwrap();
        assert_eq!(
            (st.pid, st.status.as_str(), st.bundle.as_str()),
            (13991, "created", "/tmp/b")
        );
    }
}
