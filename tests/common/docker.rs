//! A Docker host of the test's own (scripts/docker-host.sh): dockerd and
//! its containerd in a network and mount namespace of their own, with
//! ferry-runc as the default runtime; stopped, and what it made removed,
//! when dropped, also after a failure. And a busybox image imported from
//! a rootfs built here (no registry is reachable).

use super::testbed::{Host, Testbed};
use super::{path_str, profile_dir};
use anyhow::{ensure, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Debian's docker client (another docker may come first on PATH).
const DOCKER: &str = "/usr/bin/docker";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/docker-host.sh")
}

/// Whether dockerd and Debian's client are installed (scripts/setup.sh
/// installs docker.io).
pub fn have_docker() -> bool {
    Path::new("/usr/sbin/dockerd").exists() && Path::new(DOCKER).exists()
}

/// ferry-runc as built next to the tests.
pub fn ferry_runc() -> Result<PathBuf> {
    let bin = profile_dir()?.join("ferry-runc");
    ensure!(
        bin.exists(),
        "{} does not exist: run `cargo build --workspace` first",
        bin.display()
    );
    Ok(bin)
}

/// One running dockerd of the test's.
pub struct DockerHost {
    dir: PathBuf,
}

/// A directory of its own for a dockerd: short, since containerd's socket
/// path under it must fit a sun_path.
fn host_dir() -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    std::env::temp_dir().join(format!(
        "fdk{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

impl DockerHost {
    /// Starts a dockerd whose default runtime is ferry-runc.
    pub fn up() -> Result<Self> {
        Self::start(host_dir(), &[])
    }

    /// Starts a dockerd whose default runtime is ferry-runc inside `host`
    /// of the testbed (its network, PID, mount and IPC namespaces, where
    /// its agent runs), its socket linked where the host's agent
    /// configuration names it (`[container] docker_socket`).
    pub fn in_testbed(bed: &Testbed, host: Host) -> Result<Self> {
        let agents = bed.agents_dir();
        let letter = match host {
            Host::A => "a",
            Host::B => "b",
            Host::C => anyhow::bail!("host C has no agent to run a dockerd beside"),
        };
        Self::start(host_dir(), &["--in-host", path_str(agents)?, letter])
    }

    fn start(dir: PathBuf, extra: &[&str]) -> Result<Self> {
        let host = DockerHost { dir };
        let out = Command::new(script())
            .arg("up")
            .arg(&host.dir)
            .arg(ferry_runc()?)
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .context("running scripts/docker-host.sh up")?;
        ensure!(
            out.status.success(),
            "scripts/docker-host.sh up failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(host)
    }

    /// dockerd's API socket, as `--docker-host` takes it.
    pub fn host_url(&self) -> Result<String> {
        Ok(format!("unix://{}/docker.sock", path_str(&self.dir)?))
    }

    /// Runs `docker ARGS` against this dockerd.
    pub fn run(&self, args: &[&str]) -> Result<Output> {
        let sock = self.host_url()?;
        Command::new(DOCKER)
            .arg("-H")
            .arg(sock)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running docker {args:?}"))
    }

    /// Runs `docker ARGS`, which must succeed, and returns its output.
    pub fn docker(&self, args: &[&str]) -> Result<String> {
        let out = self.run(args)?;
        ensure!(
            out.status.success(),
            "docker {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            self.runtime_log_tail()
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The last lines of dockerd's log, for an error message.
    pub fn runtime_log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(8).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!("\n  dockerd's log ends with:\n  {}", tail.join("\n  "))
    }

    /// Imports a busybox image named `name` from a rootfs of busybox-static
    /// built in `work`, as scripts/container-bundle.sh builds one.
    pub fn import_busybox(&self, work: &Path, name: &str) -> Result<()> {
        let tar = busybox_tarball(work)?;
        self.docker(&["import", path_str(&tar)?, name])?;
        Ok(())
    }

    /// Imports an image named `name` holding the Node.js request counter
    /// (tests/workloads/counter_server.js at /app/server.js), built in
    /// `work` as scripts/container-bundle.sh --node gives a bundle node:
    /// the host's node at /app/node and each of its libraries (as ldd
    /// finds them, the loader included) copied at the same path.
    pub fn import_node(&self, work: &Path, name: &str) -> Result<()> {
        let rootfs = work.join("node-rootfs");
        std::fs::create_dir_all(rootfs.join("app"))?;
        std::fs::create_dir_all(rootfs.join("tmp"))?;
        let node = which("node")?;
        std::fs::copy(&node, rootfs.join("app/node"))
            .with_context(|| format!("copying {}", node.display()))?;
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workloads/counter_server.js"),
            rootfs.join("app/server.js"),
        )?;
        let ldd = Command::new("ldd").arg(&node).output()?;
        ensure!(ldd.status.success(), "ldd {} failed", node.display());
        for lib in String::from_utf8_lossy(&ldd.stdout)
            .split_whitespace()
            .filter(|w| w.starts_with('/'))
        {
            let to = rootfs.join(lib.trim_start_matches('/'));
            std::fs::create_dir_all(to.parent().context("a library path without parent")?)?;
            // copy follows the host's symlinks: the file itself goes in.
            std::fs::copy(lib, &to).with_context(|| format!("copying {lib}"))?;
        }
        self.import_rootfs(&rootfs, &work.join("node.tar"), name)
    }

    /// Imports the directory `rootfs` as image `name` (through the tarball
    /// `tar`).
    fn import_rootfs(&self, rootfs: &Path, tar: &Path, name: &str) -> Result<()> {
        tar_dir(rootfs, tar)?;
        self.import_tar(tar, name)
    }

    /// Imports the rootfs tarball `tar` (made by an import_* call) as image
    /// `name`: another dockerd then has the very same files (their
    /// modification times included), as two hosts pulling one image.
    pub fn import_tar(&self, tar: &Path, name: &str) -> Result<()> {
        self.docker(&["import", path_str(tar)?, name])?;
        Ok(())
    }

    /// The network namespace dockerd runs in (its bridge and every
    /// container's address are reachable from there only).
    pub fn netns_path(&self) -> Result<String> {
        let name = self
            .dir
            .file_name()
            .context("the host's directory has no name")?;
        Ok(format!(
            "/var/run/netns/ferry-docker-{}",
            name.to_string_lossy()
        ))
    }

    /// One HTTP GET of `url` from inside dockerd's network namespace;
    /// returns the body.
    pub fn http_get(&self, url: &str) -> Result<String> {
        super::testbed::http_get_in(&self.netns_path()?, url)
    }

    /// Waits (30 s at most) until `docker logs CONTAINER` shows `text`.
    pub fn wait_logs(&self, container: &str, text: &str) -> Result<()> {
        let start = Instant::now();
        loop {
            let logs = self.docker(&["logs", container])?;
            if logs.contains(text) {
                return Ok(());
            }
            ensure!(
                start.elapsed() < Duration::from_secs(30),
                "docker logs {container} does not show {text:?}: {logs:?}"
            );
            sleep(Duration::from_millis(200));
        }
    }

    /// Runs the seed's Node.js request counter (image node-counter, see
    /// [`Self::import_node`]) as container `counter`, listening on
    /// 0.0.0.0:8080, and waits until it is ready.
    pub fn run_node_counter(&self) -> Result<()> {
        self.docker(&[
            "run",
            "-d",
            "--name",
            "counter",
            "node-counter",
            "/app/node",
            "/app/server.js",
            "0.0.0.0",
            "8080",
        ])?;
        self.wait_logs("counter", "READY")
    }

    /// The Node.js counter's URL at the container's address on this
    /// dockerd's bridge (reachable from dockerd's network namespace only).
    pub fn counter_url(&self) -> Result<String> {
        let ip = self.docker(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "counter"])?;
        let ip = ip.trim();
        ensure!(!ip.is_empty(), "the counter container has no address");
        Ok(format!("http://{ip}:8080/"))
    }
}

/// Runs test `name` as [`super::run_test`] does, or says it is skipped
/// when docker.io is not installed.
pub fn docker_test(name: &str, test: impl FnOnce(&super::TestDir) -> Result<()>) {
    if !have_docker() {
        eprintln!("SKIPPED: docker.io is not installed (scripts/setup.sh installs it)");
        return;
    }
    super::run_test(name, test);
}

/// A tarball of a busybox rootfs (busybox-static and its links, /tmp),
/// built in `work`, as scripts/container-bundle.sh builds one: what
/// `docker import` and `podman import` make an image of.
pub fn busybox_tarball(work: &Path) -> Result<PathBuf> {
    let rootfs = work.join("busybox-rootfs");
    std::fs::create_dir_all(rootfs.join("bin"))?;
    std::fs::create_dir_all(rootfs.join("tmp"))?;
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
        .context("copying /bin/busybox (busybox-static)")?;
    let installed = Command::new("chroot")
        .arg(&rootfs)
        .args(["/bin/busybox", "--install", "-s", "/bin"])
        .status()?;
    ensure!(installed.success(), "busybox --install failed");
    let tar = work.join("busybox.tar");
    tar_dir(&rootfs, &tar)?;
    Ok(tar)
}

/// Writes the directory `rootfs` as the tarball `tar`.
fn tar_dir(rootfs: &Path, tar: &Path) -> Result<()> {
    let tarred = Command::new("tar")
        .arg("-C")
        .arg(rootfs)
        .arg("-cf")
        .arg(tar)
        .arg(".")
        .status()?;
    ensure!(tarred.success(), "tar of {} failed", rootfs.display());
    Ok(())
}

/// The real path of `prog` on PATH.
fn which(prog: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
        .with_context(|| format!("{prog} is not on PATH"))?
        .canonicalize()
        .with_context(|| format!("resolving {prog}"))
}

impl Drop for DockerHost {
    fn drop(&mut self) {
        let down = Command::new(script())
            .arg("down")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .status();
        if !down.as_ref().is_ok_and(|s| s.success()) {
            eprintln!(
                "scripts/docker-host.sh down {} failed: {down:?}",
                self.dir.display()
            );
        }
    }
}
