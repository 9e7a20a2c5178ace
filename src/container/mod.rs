//! OCI runtime adapters (runc, crun): what ferry needs of a container to
//! migrate it. The source reads the container's state (its init PID and
//! bundle) and checks, with its cgroup frozen, that every process of the
//! container descends from the init; the destination creates the same
//! container from the same bundle, takes its waiting init process as the
//! root husk of the restore, and marks the container started by removing
//! the runtime's exec FIFO.

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Why a runtime or cgroup operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// The runtime binary could not be run.
    #[error("cannot run {runtime}: {source}")]
    Spawn {
        /// The runtime binary.
        runtime: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The runtime refused or failed.
    #[error("`{command}` failed: {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// What the runtime said.
        stderr: String,
    },
    /// The runtime's answer could not be understood.
    #[error("`{command}` printed a state ferry cannot read: {why}")]
    BadState {
        /// The command line.
        command: String,
        /// Why.
        why: String,
    },
    /// The container is not in a state ferry can work with.
    #[error("container {id} is {status}, not {wanted}")]
    Status {
        /// The container.
        id: String,
        /// Its status.
        status: String,
        /// The status needed.
        wanted: &'static str,
    },
    /// The bundle is missing or has no config.json.
    #[error("bundle {bundle} of container {id} has no config.json on this host")]
    NoBundle {
        /// The container.
        id: String,
        /// The bundle directory.
        bundle: String,
    },
    /// A cgroup file could not be read or written.
    #[error("cgroup {path}: {source}")]
    Cgroup {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The container's cgroup offers no freezer.
    #[error("process {pid} is in no freezable cgroup (no v1 freezer line and no cgroup v2 path in /proc/{pid}/cgroup)")]
    NoFreezer {
        /// The container's init.
        pid: i32,
    },
    /// A process of the container is outside its init's tree.
    #[error("process {pid} runs in container {id}'s cgroup but does not descend from its init {init} (started by `exec`?); ferry carries the init's tree only")]
    Escaped {
        /// The container.
        id: String,
        /// Its init.
        init: i32,
        /// The process.
        pid: i32,
    },
    /// The checkpoint of the container's tree failed (it keeps running).
    #[error("checkpoint of container {id} failed: {source}")]
    Checkpoint {
        /// The container.
        id: String,
        /// What failed.
        source: crate::dump::CheckpointError,
    },
    /// The restore into the created container failed (it was deleted).
    #[error("restore of container {id} failed: {source}")]
    Restore {
        /// The container.
        id: String,
        /// What failed.
        source: crate::restore::RestoreError,
    },
    /// The freezer did not reach the wanted state in time.
    #[error("cgroup {path} did not become {wanted} within {secs} s")]
    FreezeTimeout {
        /// The cgroup.
        path: String,
        /// The state wanted.
        wanted: &'static str,
        /// How long ferry waited.
        secs: u64,
    },
}

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
        }
    }

    fn run(&self, args: &[&str]) -> Result<Vec<u8>, ContainerError> {
        let bin = self.runtime.binary();
        let out = Command::new(bin)
            .arg("--root")
            .arg(&self.root)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| ContainerError::Spawn {
                runtime: bin,
                source,
            })?;
        if !out.status.success() {
            return Err(ContainerError::Failed {
                command: self.command_line(args),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(out.stdout)
    }

    fn command_line(&self, args: &[&str]) -> String {
        format!(
            "{} --root {} {}",
            self.runtime.binary(),
            self.root.display(),
            args.join(" ")
        )
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

    /// Creates the container from `bundle` (`runtime create`), its stdio on
    /// /dev/null, and returns its init, which waits to be started.
    pub fn create(&self, bundle: &Path) -> Result<State, ContainerError> {
        check_bundle(&self.id, bundle)?;
        let bundle_s = bundle.to_string_lossy();
        let args = ["create", "--bundle", &bundle_s, self.id.as_str()];
        let bin = self.runtime.binary();
        // The container's init inherits the runtime's stdio: a pipe would
        // never reach EOF. The runtime's errors go to a file instead.
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
        let err_file = std::fs::File::create(&err_path).map_err(spawn)?;
        let status = Command::new(bin)
            .arg("--root")
            .arg(&self.root)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err_file)
            .status()
            .map_err(spawn);
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

    /// Deletes the container, killing what still runs in it
    /// (`runtime delete -f`).
    pub fn delete(&self) -> Result<(), ContainerError> {
        self.run(&["delete", "-f", self.id.as_str()]).map(drop)
    }
}

/// Checks, with the container's cgroup frozen so that the listing holds
/// still, that every process in it descends from its init `init`: a
/// process started beside it (`runtime exec`) would be left behind.
pub fn check_tree(id: &str, init: i32) -> Result<(), ContainerError> {
    let freezer = Freezer::of(init)?;
    freezer.freeze()?;
    let listed = freezer.pids().map(|pids| {
        let tree = crate::dump::collect_tree(init).unwrap_or_default();
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
    thawed
}

/// Checkpoints the running container into `dir`: its init's tree, PIDs as
/// the container sees them. Then deletes the container (its processes were
/// killed by the checkpoint), or with `leave_running` lets it continue.
pub fn checkpoint(
    c: &Container,
    dir: &Path,
    leave_running: bool,
) -> Result<crate::dump::CheckpointStats, ContainerError> {
    let st = c.running()?;
    check_tree(&c.id, st.pid)?;
    let opts = crate::dump::CheckpointOptions {
        leave_running,
        in_container: true,
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
/// into its init; the container then runs as its runtime sees it. On
/// failure the created container is deleted.
pub fn restore(
    c: &Container,
    bundle: &Path,
    dir: &Path,
) -> Result<crate::restore::RestoreStats, ContainerError> {
    let st = c.create(bundle)?;
    restore_created(c, st.pid, dir, crate::restore::RestoreOptions::default())
}

/// Restores the image in `dir`, as `opts` says (a post-copy destination
/// restores lazily), into `husk`, the waiting init of the container just
/// created with [`Container::create`]; the container then runs as its
/// runtime sees it. On failure the container is deleted.
pub fn restore_created(
    c: &Container,
    husk: i32,
    dir: &Path,
    opts: crate::restore::RestoreOptions,
) -> Result<crate::restore::RestoreStats, ContainerError> {
    let restored = crate::restore::restore_into_with(dir, husk, opts)
        .map_err(|source| ContainerError::Restore {
            id: c.id.clone(),
            source,
        })
        .and_then(|stats| c.mark_started().map(|()| stats));
    if restored.is_err() {
        if let Err(e) = c.delete() {
            tracing::error!(id = %c.id, %e, "deleting the container after a failed restore failed");
        }
    }
    restored
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

/// How long a freezer is waited for.
const FREEZE_WAIT: Duration = Duration::from_secs(10);

/// The freezer of a container's cgroup: the v1 freezer controller when the
/// process has one, else cgroup v2's cgroup.freeze.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Freezer {
    /// /sys/fs/cgroup/freezer/PATH/freezer.state.
    V1(PathBuf),
    /// PATH/cgroup.freeze in the cgroup2 mount.
    V2(PathBuf),
}

impl Freezer {
    /// The freezer of process `pid`'s cgroup.
    pub fn of(pid: i32) -> Result<Self, ContainerError> {
        let path = format!("/proc/{pid}/cgroup");
        let text = std::fs::read_to_string(&path)
            .map_err(|source| ContainerError::Cgroup { path, source })?;
        let (v1, v2) = parse_cgroups(&text);
        if let Some(p) = v1 {
            let dir = Path::new("/sys/fs/cgroup/freezer").join(p.trim_start_matches('/'));
            if dir.join("freezer.state").exists() {
                return Ok(Freezer::V1(dir));
            }
        }
        if let Some(p) = v2 {
            for mount in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"] {
                let dir = Path::new(mount).join(p.trim_start_matches('/'));
                if p != "/" && dir.join("cgroup.freeze").exists() {
                    return Ok(Freezer::V2(dir));
                }
            }
        }
        Err(ContainerError::NoFreezer { pid })
    }

    /// The cgroup directory.
    pub fn dir(&self) -> &Path {
        match self {
            Freezer::V1(d) | Freezer::V2(d) => d,
        }
    }

    /// Freezes every process of the cgroup and waits until they are.
    pub fn freeze(&self) -> Result<(), ContainerError> {
        self.set(true)
    }

    /// Lets the cgroup's processes run again.
    pub fn thaw(&self) -> Result<(), ContainerError> {
        self.set(false)
    }

    /// The PIDs in the cgroup (as this host sees them).
    pub fn pids(&self) -> Result<Vec<i32>, ContainerError> {
        let path = self.dir().join("cgroup.procs");
        let text = std::fs::read_to_string(&path).map_err(|source| ContainerError::Cgroup {
            path: path.display().to_string(),
            source,
        })?;
        Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }

    fn set(&self, frozen: bool) -> Result<(), ContainerError> {
        let (file, value, check, wanted): (&str, &str, fn(&str) -> bool, _) = match self {
            Freezer::V1(_) if frozen => (
                "freezer.state",
                "FROZEN",
                |s| s.trim() == "FROZEN",
                "FROZEN",
            ),
            Freezer::V1(_) => (
                "freezer.state",
                "THAWED",
                |s| s.trim() == "THAWED",
                "THAWED",
            ),
            Freezer::V2(_) if frozen => {
                ("cgroup.freeze", "1", |s| s.contains("frozen 1"), "frozen")
            }
            Freezer::V2(_) => ("cgroup.freeze", "0", |s| s.contains("frozen 0"), "thawed"),
        };
        let path = self.dir().join(file);
        let io = |source| ContainerError::Cgroup {
            path: path.display().to_string(),
            source,
        };
        std::fs::write(&path, value).map_err(io)?;
        let state_file = match self {
            Freezer::V1(d) => d.join("freezer.state"),
            Freezer::V2(d) => d.join("cgroup.events"),
        };
        let started = Instant::now();
        loop {
            let now =
                std::fs::read_to_string(&state_file).map_err(|source| ContainerError::Cgroup {
                    path: state_file.display().to_string(),
                    source,
                })?;
            if check(&now) {
                return Ok(());
            }
            if started.elapsed() > FREEZE_WAIT {
                return Err(ContainerError::FreezeTimeout {
                    path: self.dir().display().to_string(),
                    wanted,
                    secs: FREEZE_WAIT.as_secs(),
                });
            }
            // v1 freezes asynchronously: writing FROZEN again retries the
            // tasks that were busy.
            if matches!(self, Freezer::V1(_)) && frozen {
                std::fs::write(&path, value).map_err(io)?;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// The v1 freezer path and the cgroup v2 path in a /proc/PID/cgroup text.
fn parse_cgroups(text: &str) -> (Option<String>, Option<String>) {
    let (mut v1, mut v2) = (None, None);
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if id == "0" && ctrls.is_empty() {
            v2 = Some(path.to_string());
        } else if ctrls.split(',').any(|c| c == "freezer") {
            v1 = Some(path.to_string());
        }
    }
    (v1, v2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hybrid_cgroups_give_both_paths() {
        let text = "9:name=systemd:/a/c1\n6:freezer:/a/c1\n4:memory:/x/a/c1\n0::/c1\n";
        assert_eq!(
            parse_cgroups(text),
            (Some("/a/c1".to_string()), Some("/c1".to_string()))
        );
    }

    #[test]
    fn v2_only_has_no_freezer_line() {
        assert_eq!(
            parse_cgroups("0::/system.slice/c2\n"),
            (None, Some("/system.slice/c2".to_string()))
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
