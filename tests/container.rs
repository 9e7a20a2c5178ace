//! Live migration of a runc container between the two testbed hosts: a
//! busybox counter (scripts/container-bundle.sh: `echo $i` every second
//! into /out/counter.txt, /out being a directory of the test bind-mounted
//! into the container) moves from host A to host B and keeps counting with
//! no gap, repeat or reset; B's runc then manages it.
//!
//! Each host gets what separate machines would have: its own runc state
//! (a tmpfs on /run/runc in the host's mount namespace) and its own cgroups
//! (the bundle's cgroupsPath is relative, and each host's agent and runc
//! run in a cgroup of the host's), removed at the end.

mod common;

use anyhow::{bail, ensure, Context, Result};
use common::testbed::{Host, Testbed, HOST_B};
use common::{agent, path_str, run_test, TestDir};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);

fn have_runc() -> bool {
    Command::new("runc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A cgroup of each hierarchy for one testbed host, under the test's own
/// cgroups; removed (with what runc left under it) when dropped.
struct HostCgroups {
    dirs: Vec<PathBuf>,
}

impl HostCgroups {
    fn create(name: &str) -> Result<Self> {
        let mut dirs = Vec::new();
        for line in fs::read_to_string("/proc/self/cgroup")?.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(_), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let mount = match ctrls {
                "" => "unified".to_string(),
                c => c
                    .trim_start_matches("name=")
                    .split(',')
                    .next()
                    .unwrap_or(c)
                    .to_string(),
            };
            let parent = Path::new("/sys/fs/cgroup")
                .join(mount)
                .join(path.trim_start_matches('/'));
            if !parent.join("cgroup.procs").exists() {
                continue;
            }
            let dir = parent.join(name);
            fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            for f in ["cpuset.cpus", "cpuset.mems"] {
                if let Ok(v) = fs::read_to_string(parent.join(f)) {
                    let _ = fs::write(dir.join(f), v.trim());
                }
            }
            dirs.push(dir);
        }
        ensure!(
            dirs.iter().any(|d| d.starts_with("/sys/fs/cgroup/freezer")
                || d.starts_with("/sys/fs/cgroup/unified")),
            "no freezer hierarchy found"
        );
        Ok(HostCgroups { dirs })
    }

    /// Moves process `pid` into every one of these cgroups.
    fn enter(&self, pid: i32) -> Result<()> {
        for d in &self.dirs {
            fs::write(d.join("cgroup.procs"), pid.to_string())
                .with_context(|| format!("moving {pid} into {}", d.display()))?;
        }
        Ok(())
    }

    /// A shell command that mounts the cgroup hierarchies at
    /// /sys/fs/cgroup inside a host (`ip netns exec` gave it a sysfs of
    /// its own, without them).
    fn mount_script(&self) -> String {
        let mut script = String::from("mount -t tmpfs ferry-cgroups /sys/fs/cgroup;");
        for d in &self.dirs {
            let Ok(rel) = d.strip_prefix("/sys/fs/cgroup") else {
                continue;
            };
            let Some(name) = rel.iter().next().and_then(|n| n.to_str()) else {
                continue;
            };
            let mount = match name {
                "unified" => "mount -t cgroup2 cgroup2".to_string(),
                "systemd" => "mount -t cgroup -o none,name=systemd cgroup".to_string(),
                c => format!("mount -t cgroup -o {c} cgroup"),
            };
            script += &format!(" mkdir -p /sys/fs/cgroup/{name} && {mount} /sys/fs/cgroup/{name};");
        }
        script
    }

    /// A shell command that moves the shell into these cgroups.
    fn enter_script(&self) -> String {
        self.dirs
            .iter()
            .map(|d| format!("echo $$ > {}/cgroup.procs;", d.display()))
            .collect()
    }
}

impl Drop for HostCgroups {
    fn drop(&mut self) {
        // The host's processes (ended with the testbed) may take a moment
        // to leave.
        let start = Instant::now();
        for d in &self.dirs {
            loop {
                // Leaves first: what runc created below.
                if let Ok(entries) = fs::read_dir(d) {
                    for e in entries.flatten() {
                        if e.path().is_dir() {
                            let _ = fs::remove_dir(e.path());
                        }
                    }
                }
                if fs::remove_dir(d).is_ok() || !d.exists() || start.elapsed() > WAIT {
                    break;
                }
                sleep(Duration::from_millis(50));
            }
        }
    }
}

/// The counter's lines once it has printed at least `n`.
fn wait_lines(path: &Path, n: usize) -> Result<Vec<u64>> {
    let start = Instant::now();
    loop {
        let text = fs::read_to_string(path).unwrap_or_default();
        let complete = text.rsplit_once('\n').map_or("", |(done, _)| done);
        let lines: Vec<u64> = complete
            .lines()
            .map(|l| {
                l.trim()
                    .parse::<u64>()
                    .with_context(|| format!("line {l:?}"))
            })
            .collect::<Result<_>>()?;
        if lines.len() >= n {
            return Ok(lines);
        }
        ensure!(
            start.elapsed() < WAIT,
            "the counter printed {} lines, not {n}, in {WAIT:?}",
            lines.len()
        );
        sleep(Duration::from_millis(100));
    }
}

fn runc_list(bed: &Testbed, host: Host) -> Result<String> {
    let (ok, out) = bed.host_exec(host, &["runc", "list"])?;
    ensure!(ok, "runc list on {host:?} failed: {out}");
    Ok(out)
}

/// Two hosts, each with its runc state and cgroups, and the counter
/// container running on A. Dropping it deletes the container on both
/// hosts (by ID), brings the testbed down, then removes the cgroups.
struct Env {
    bed: Testbed,
    cgroups_a: HostCgroups,
    _cgroups_b: HostCgroups,
    id: String,
    counter: PathBuf,
}

impl Drop for Env {
    fn drop(&mut self) {
        for host in [Host::A, Host::B] {
            let _ = self
                .bed
                .host_exec(host, &["runc", "delete", "-f", &self.id]);
        }
    }
}

impl Env {
    fn start(dir: &TestDir, name: &str) -> Result<Self> {
        let id = format!("ferry-{name}-{}", std::process::id());
        let cgroups_a = HostCgroups::create(&format!("{id}-host-a"))?;
        let cgroups_b = HostCgroups::create(&format!("{id}-host-b"))?;
        let bed = Testbed::up(dir)?;
        cgroups_a.enter(bed.agent_pid(Host::A)?)?;
        cgroups_b.enter(bed.agent_pid(Host::B)?)?;
        let bundle = dir.path().join("bundle");
        let out_dir = dir.path().join("out");
        let env = Env {
            bed,
            cgroups_a,
            _cgroups_b: cgroups_b,
            id,
            counter: out_dir.join("counter.txt"),
        };
        for host in [Host::A, Host::B] {
            let setup = format!(
                "set -e; mkdir -p /run/runc; mount -t tmpfs ferry-runc /run/runc; {}",
                env.cgroups_a.mount_script()
            );
            let (ok, out) = env.bed.host_exec(host, &["sh", "-c", &setup])?;
            ensure!(
                ok,
                "giving host {host:?} its own /run/runc and cgroups failed: {out}"
            );
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/container-bundle.sh");
        let made = Command::new("bash")
            .arg(&script)
            .args([path_str(&bundle)?, path_str(&out_dir)?, "ferry-counter"])
            .output()?;
        ensure!(
            made.status.success(),
            "container-bundle.sh failed: {}",
            String::from_utf8_lossy(&made.stderr)
        );
        let run = format!(
            "{} exec runc run -d --bundle {} {}",
            env.cgroups_a.enter_script(),
            bundle.display(),
            env.id
        );
        let (ok, out) = env.bed.host_exec(Host::A, &["sh", "-c", &run])?;
        ensure!(ok, "runc run on host A failed: {out}");
        Ok(env)
    }

    /// Migrates the container from A to B in `mode` (precopy, postcopy or
    /// hybrid).
    fn migrate(&self, dir: &TestDir, mode: &str) -> Result<common::AgentRun> {
        let sock = self.bed.control_socket(Host::A);
        agent(
            dir,
            &[
                "migrate",
                "--container",
                &self.id,
                "--mode",
                mode,
                "--to",
                HOST_B,
                "--control-socket",
                path_str(&sock)?,
            ],
        )
    }
}

fn container_migrates(dir: &TestDir, mode: &str) -> Result<()> {
    let env = Env::start(dir, mode)?;
    let (bed, id, counter) = (&env.bed, &env.id, &env.counter);
    let before = wait_lines(counter, 3)?;

    let migrated = env.migrate(dir, mode)?;
    if let Err(e) = migrated.check() {
        bail!(
            "{e}\nagent A:\n{}\nagent B:\n{}",
            bed.agent_log(Host::A),
            bed.agent_log(Host::B)
        );
    }
    let list_b = runc_list(bed, Host::B)?;
    ensure!(
        list_b
            .lines()
            .any(|l| l.starts_with(id.as_str()) && l.contains("running")),
        "runc list on B does not show {id} running:\n{list_b}"
    );
    let list_a = runc_list(bed, Host::A)?;
    ensure!(
        !list_a.contains(id.as_str()),
        "the container is still known on A:\n{list_a}"
    );
    // Counting continues on B: no gap, no repeat, no reset.
    let after = wait_lines(counter, before.len() + 4)?;
    for (i, v) in after.iter().enumerate() {
        ensure!(
            *v == i as u64,
            "line {i} of the counter is {v}: the count broke across the migration ({after:?})"
        );
    }
    let (ok, out) = bed.host_exec(Host::B, &["runc", "delete", "-f", id])?;
    ensure!(ok, "runc delete -f on B failed: {out}");
    let list_b = runc_list(bed, Host::B)?;
    ensure!(
        !list_b.contains(id.as_str()),
        "runc delete left {id}:\n{list_b}"
    );
    Ok(())
}

#[test]
fn busybox_counter_container_migrates_between_hosts() {
    if !have_runc() {
        eprintln!("SKIPPED: runc is not installed (scripts/setup.sh installs it)");
        return;
    }
    run_test("container_migrates", |dir| {
        container_migrates(dir, "precopy")
    });
}

/// The same in post-copy mode: the container runs on B at once, its
/// memory following from A (the same checks).
#[test]
fn busybox_counter_container_migrates_in_postcopy_mode() {
    if !have_runc() {
        eprintln!("SKIPPED: runc is not installed (scripts/setup.sh installs it)");
        return;
    }
    run_test("container_postcopy", |dir| {
        container_migrates(dir, "postcopy")
    });
}

/// And in hybrid mode: pre-copy rounds, then post-copy.
#[test]
fn busybox_counter_container_migrates_in_hybrid_mode() {
    if !have_runc() {
        eprintln!("SKIPPED: runc is not installed (scripts/setup.sh installs it)");
        return;
    }
    run_test("container_hybrid", |dir| container_migrates(dir, "hybrid"));
}

/// B cannot create the container (its runc state directory is read-only):
/// the migration fails after the freeze, and the container keeps running
/// on A, thawed, counting on, and nothing is left on B.
fn failed_restore_leaves_it_running(dir: &TestDir) -> Result<()> {
    let env = Env::start(dir, "kept")?;
    let (bed, id, counter) = (&env.bed, &env.id, &env.counter);
    wait_lines(counter, 2)?;
    let (ok, out) = bed.host_exec(Host::B, &["mount", "-o", "remount,ro", "/run/runc"])?;
    ensure!(ok, "making B's /run/runc read-only failed: {out}");
    let migrated = env.migrate(dir, "precopy")?;
    ensure!(
        migrated.check().is_err(),
        "the migration succeeded although B cannot create containers"
    );
    let list_a = runc_list(bed, Host::A)?;
    ensure!(
        list_a
            .lines()
            .any(|l| l.starts_with(id.as_str()) && l.contains("running")),
        "the container is not running on A after the failed migration:\n{list_a}"
    );
    let list_b = runc_list(bed, Host::B)?;
    ensure!(
        !list_b.contains(id.as_str()),
        "B kept the container:\n{list_b}"
    );
    let now = wait_lines(counter, 0)?.len();
    let after = wait_lines(counter, now + 2)?;
    for (i, v) in after.iter().enumerate() {
        ensure!(*v == i as u64, "line {i} of the counter is {v} ({after:?})");
    }
    let (ok, out) = bed.host_exec(Host::A, &["runc", "delete", "-f", id])?;
    ensure!(ok, "runc delete -f on A failed: {out}");
    Ok(())
}

#[test]
fn failed_container_restore_leaves_it_running_on_the_source() {
    if !have_runc() {
        eprintln!("SKIPPED: runc is not installed (scripts/setup.sh installs it)");
        return;
    }
    run_test("container_restore_fails", failed_restore_leaves_it_running);
}
