//! Probes of the host around the process: time namespaces, the cgroup
//! freezers that stop a container at once, TCP repair mode, the kernel
//! release.

use super::child::ProbeChild;
use super::finding::{absent, errno_outcome, failed, io_failed, Finding, NotWorking};
use crate::kernel::{self, child::ChildTask};
use nix::errno::Errno;
use nix::sys::socket::{setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long a cgroup probe waits for an empty cgroup to report a new state.
const CGROUP_TIMEOUT: Duration = Duration::from_millis(200);
/// Numbers the temporary cgroups of concurrent probe runs apart.
static CGROUP_SEQUENCE: AtomicU32 = AtomicU32::new(0);

/// Enters a new time namespace in a forked child.
pub(super) fn probe_time_namespace() -> Finding {
    let mut child = ProbeChild::fork(ChildTask::UnshareTimeNamespace)?;
    match child.exit_code()? {
        0 => Ok(format!("child {} entered a new time namespace", child.pid)),
        errno => Err(errno_outcome(
            "unshare(CLONE_NEWTIME)",
            Errno::from_raw(errno),
            &[Errno::EINVAL],
        )),
    }
}

/// Mount point of the first mount of filesystem type `fstype` whose super
/// options include `option` (when given), from /proc/self/mountinfo.
fn find_mount(fstype: &str, option: Option<&str>) -> Result<Option<PathBuf>, NotWorking> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| io_failed("reading /proc/self/mountinfo", e))?;
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut fs_fields = right.split(' ');
        let (Some(ty), Some(_source), Some(options)) =
            (fs_fields.next(), fs_fields.next(), fs_fields.next())
        else {
            continue;
        };
        let wanted_option = option.map_or(true, |o| options.split(',').any(|x| x == o));
        if ty == fstype && wanted_option {
            if let Some(mount_point) = left.split(' ').nth(4) {
                return Ok(Some(PathBuf::from(crate::proc::notify::unescape_octal(
                    mount_point,
                ))));
            }
        }
    }
    Ok(None)
}

/// A cgroup made by a probe. `remove` (or, on early return, drop) writes the
/// thaw value back and removes it, so no probe leaves a cgroup behind.
struct TempCgroup {
    /// Directory of the cgroup.
    path: PathBuf,
    /// The control file and the value that thaws the cgroup.
    thaw: (&'static str, &'static str),
    /// Whether `remove` already ran.
    removed: bool,
}

impl TempCgroup {
    /// Creates ferry-probe-<pid>-<n> under `parent`.
    fn create(parent: &Path, thaw: (&'static str, &'static str)) -> Result<TempCgroup, NotWorking> {
        let name = format!(
            "ferry-probe-{}-{}",
            std::process::id(),
            CGROUP_SEQUENCE.fetch_add(1, Ordering::Relaxed)
        );
        let path = parent.join(name);
        fs::create_dir(&path)
            .map_err(|e| io_failed(format!("creating cgroup {}", path.display()), e))?;
        Ok(TempCgroup {
            path,
            thaw,
            removed: false,
        })
    }

    /// Writes `value` to the control file `file`.
    fn write(&self, file: &str, value: &str) -> Result<(), NotWorking> {
        let path = self.path.join(file);
        fs::write(&path, value)
            .map_err(|e| io_failed(format!("writing {value} to {}", path.display()), e))
    }

    /// Waits until the control file `file` has a line equal to `want`.
    fn wait_for(&self, file: &str, want: &str) -> Result<(), NotWorking> {
        let path = self.path.join(file);
        let deadline = Instant::now() + CGROUP_TIMEOUT;
        loop {
            let content = fs::read_to_string(&path)
                .map_err(|e| io_failed(format!("reading {}", path.display()), e))?;
            if content.lines().any(|l| l.trim() == want) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(failed(format!(
                    "{} still reads {:?} after {} ms, not {want:?}",
                    path.display(),
                    content.trim(),
                    CGROUP_TIMEOUT.as_millis()
                )));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Thaws and removes the cgroup.
    fn remove(mut self) -> Result<(), NotWorking> {
        self.removed = true;
        let _ = fs::write(self.path.join(self.thaw.0), self.thaw.1);
        fs::remove_dir(&self.path)
            .map_err(|e| io_failed(format!("removing cgroup {}", self.path.display()), e))
    }
}

impl Drop for TempCgroup {
    fn drop(&mut self) {
        if !self.removed {
            let _ = fs::write(self.path.join(self.thaw.0), self.thaw.1);
            let _ = fs::remove_dir(&self.path);
        }
    }
}

/// Freezes and thaws an empty cgroup of the v1 freezer hierarchy.
pub(super) fn probe_cgroup_v1_freezer() -> Finding {
    let mount = find_mount("cgroup", Some("freezer"))?
        .ok_or_else(|| absent("no cgroup v1 freezer hierarchy is mounted"))?;
    let cgroup = TempCgroup::create(&mount, ("freezer.state", "THAWED"))?;
    cgroup.write("freezer.state", "FROZEN")?;
    cgroup.wait_for("freezer.state", "FROZEN")?;
    cgroup.write("freezer.state", "THAWED")?;
    cgroup.wait_for("freezer.state", "THAWED")?;
    cgroup.remove()?;
    Ok(format!(
        "froze and thawed an empty cgroup under {}",
        mount.display()
    ))
}

/// Freezes and thaws an empty cgroup v2 cgroup with cgroup.freeze.
pub(super) fn probe_cgroup_v2_freeze() -> Finding {
    let mount =
        find_mount("cgroup2", None)?.ok_or_else(|| absent("no cgroup2 hierarchy is mounted"))?;
    let cgroup = TempCgroup::create(&mount, ("cgroup.freeze", "0"))?;
    if !cgroup.path.join("cgroup.freeze").exists() {
        cgroup.remove()?;
        return Err(absent(format!(
            "cgroups under {} have no cgroup.freeze (kernel before 5.2)",
            mount.display()
        )));
    }
    cgroup.write("cgroup.freeze", "1")?;
    cgroup.wait_for("cgroup.events", "frozen 1")?;
    cgroup.write("cgroup.freeze", "0")?;
    cgroup.wait_for("cgroup.events", "frozen 0")?;
    cgroup.remove()?;
    Ok(format!(
        "froze and thawed an empty cgroup under {}",
        mount.display()
    ))
}

/// Puts a fresh TCP socket into repair mode.
pub(super) fn probe_tcp_repair() -> Finding {
    let sock = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| failed(format!("socket(AF_INET, SOCK_STREAM) failed with {e}")))?;
    setsockopt(&sock, sockopt::TcpRepair, &1).map_err(|e| {
        errno_outcome(
            "setsockopt(SOL_TCP, TCP_REPAIR, 1)",
            e,
            &[Errno::ENOPROTOOPT],
        )
    })?;
    Ok("a TCP socket entered repair mode".to_string())
}

/// The kernel release, as uname -r prints it.
pub(super) fn kernel_release() -> String {
    kernel::kernel_release().unwrap_or_else(|err| format!("unknown (uname failed with {err})"))
}
