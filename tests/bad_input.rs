//! What the engine must refuse: damaged images, a PID that is taken, and
//! processes holding fds it cannot checkpoint. A refusal
//! leaves no process behind and leaves a running process unaffected.

mod common;

use anyhow::{bail, ensure, Context, Result};
use common::{Mode, Spec, TestDir, Workload};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;
use std::fs::{self, OpenOptions};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::{SocketAddr, UnixListener};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::thread::sleep;
use std::time::{Duration, Instant};

const COUNTERS: Spec = Spec::new("counters");
/// The fd number at which tree_outside.c's child keeps its pipe,
/// unsupported_fd.c a multipath TCP socket (IPPROTO_MPTCP), and
/// stale_epoll.c its epoll instance.
const UNSUPPORTED_FD: u32 = 10;

/// Whether `msg` contains `n` as a whole number.
fn mentions_number(msg: &str, n: impl ToString) -> bool {
    let n = n.to_string();
    msg.split(|c: char| !c.is_ascii_digit()).any(|t| t == n)
}

/// Checkpoints the counters workload (which kills it) and returns it reaped,
/// with the path of the image's pages.img.
fn checkpointed(dir: &TestDir) -> Result<(Workload, PathBuf)> {
    let mut w = Workload::start(dir, &COUNTERS)?;
    common::checkpoint(dir, &w, &COUNTERS, Mode::Kill)?;
    w.reap_checkpointed()?;
    let pages = dir.image().join("pages.img");
    if !pages.exists() {
        let files: Vec<_> = fs::read_dir(dir.image())?
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        bail!("the image has no pages.img; it holds {files:?}");
    }
    Ok((w, pages))
}

/// No process with `pid` may exist (a zombie we reap is fine); one that does
/// is killed and reported.
fn ensure_gone(pid: Pid) -> Result<()> {
    let start = Instant::now();
    loop {
        let state = match common::proc_state(pid) {
            Err(_) => return Ok(()),
            Ok((state, _)) => state,
        };
        if state == 'Z' {
            let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
        } else if start.elapsed() > Duration::from_secs(2) {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
            bail!("a failed restore left pid {pid} behind (state {state})");
        }
        sleep(Duration::from_millis(10));
    }
}

/// Restoring the damaged image must fail, name the image, and leave nothing.
fn restore_refused(dir: &TestDir, w: &Workload) -> Result<()> {
    let (run, _) = common::restore(dir)?;
    let msg = run.refusal().context("restoring a damaged image")?;
    ensure!(
        msg.contains("pages.img") || msg.to_lowercase().contains("image"),
        "the refusal does not mention the image: {msg}"
    );
    ensure_gone(w.pid())
}

#[test]
fn truncated_pages_img() {
    common::run_test("truncated_pages_img", |dir| {
        let (w, pages) = checkpointed(dir)?;
        let file = OpenOptions::new().write(true).open(&pages)?;
        let len = file.metadata()?.len();
        ensure!(len > 1, "pages.img is {len} bytes");
        file.set_len(len / 2)?;
        restore_refused(dir, &w)
    });
}

#[test]
fn corrupted_pages_img() {
    common::run_test("corrupted_pages_img", |dir| {
        let (w, pages) = checkpointed(dir)?;
        let mut data = fs::read(&pages)?;
        ensure!(!data.is_empty(), "pages.img is empty");
        let mid = data.len() / 2;
        data[mid] ^= 0xff;
        fs::write(&pages, data)?;
        restore_refused(dir, &w)
    });
}

#[test]
fn restore_while_pid_taken() {
    common::run_test("restore_while_pid_taken", |dir| {
        let mut w = Workload::start(dir, &COUNTERS)?;
        common::checkpoint(dir, &w, &COUNTERS, Mode::LeaveRunning)?;
        common::check_running(&mut w, "after checkpoint --leave-running")?;
        let (run, _) = common::restore(dir)?;
        let msg = run.refusal().context("restoring over a live pid")?;
        ensure!(
            mentions_number(msg, w.pid()),
            "the refusal does not name pid {}: {msg}",
            w.pid()
        );
        let lower = msg.to_lowercase();
        ensure!(
            ["taken", "in use", "exists", "busy", "occupied"]
                .iter()
                .any(|word| lower.contains(word)),
            "the refusal does not say the pid is taken: {msg}"
        );
        common::check_running(&mut w, "after the refused restore")?;
        w.finish(&COUNTERS)
    });
}

const TREE_SESSION: Spec = Spec::new("tree_session");

/// A child's PID taken at restore (the tree's session leader still runs:
/// only the root was killed after checkpoint --leave-running) is refused
/// before anything is created, naming that PID, and the root's PID is not
/// left behind.
#[test]
fn restore_while_child_pid_taken() {
    common::run_test("restore_while_child_pid_taken", |dir| {
        let mut w = Workload::start(dir, &TREE_SESSION)?;
        w.record_descendants();
        let children = common::descendants(w.pid());
        ensure!(
            children.len() == 3,
            "tree_session has descendants {children:?}"
        );
        common::checkpoint(dir, &w, &TREE_SESSION, Mode::LeaveRunning)?;
        nix::sys::signal::kill(w.pid(), nix::sys::signal::Signal::SIGKILL)?;
        w.wait_original()?;
        let (run, _) = common::restore(dir)?;
        let msg = run.refusal().context("restoring over a live child pid")?;
        ensure!(
            children.iter().any(|&c| mentions_number(msg, c)),
            "the refusal names none of the children {children:?}: {msg}"
        );
        ensure!(
            msg.to_lowercase().contains("taken"),
            "the refusal does not say the pid is taken: {msg}"
        );
        ensure_gone(w.pid())
    });
}

const TREE_OUTSIDE: Spec = Spec::new("tree_outside");

/// A child whose pipe's other end its parent holds cannot be checkpointed
/// alone: refused naming the child, its fd and the pipe, and both go on.
#[test]
fn refuses_pipe_to_a_process_outside_the_tree() {
    common::run_test("refuses_pipe_to_a_process_outside_the_tree", |dir| {
        let mut w = Workload::start(dir, &TREE_OUTSIDE)?;
        w.record_descendants();
        let children = common::descendants(w.pid());
        let [child] = children[..] else {
            bail!("tree_outside has descendants {children:?}");
        };
        let msg = checkpoint_pid_refusal(dir, child, "a pipe to its parent")?;
        ensure!(
            mentions_number(&msg, UNSUPPORTED_FD) && msg.contains("pipe"),
            "the refusal does not name pipe fd {UNSUPPORTED_FD}: {msg}"
        );
        ensure!(
            msg.contains("outside"),
            "the refusal does not say the other end is outside: {msg}"
        );
        let (state, tracer) = common::proc_state(child)?;
        ensure!(
            tracer == 0 && !matches!(state, 't' | 'T' | 'Z'),
            "the child is in state {state}, traced by {tracer}, after the refusal"
        );
        common::check_running(&mut w, "after the refused checkpoint")?;
        w.finish(&TREE_OUTSIDE)
    });
}

/// Checkpoints a running workload that must be refused; returns the
/// refusal once it is checked to name the PID.
fn checkpoint_refusal(dir: &TestDir, w: &Workload, what: &str) -> Result<String> {
    checkpoint_pid_refusal(dir, w.pid(), what)
}

/// Checkpoints process `pid`, which must be refused; returns the refusal
/// once it is checked to name the PID and to have left no partial image
/// directory behind.
fn checkpoint_pid_refusal(dir: &TestDir, pid: Pid, what: &str) -> Result<String> {
    let msg = common::checkpoint_refusal(dir, pid)
        .with_context(|| format!("checkpointing a process with {what}"))?;
    let pid = pid.to_string();
    ensure!(
        mentions_number(&msg, &pid),
        "the refusal does not name pid {pid}: {msg}"
    );
    let image = dir.image();
    ensure!(
        !image.exists(),
        "the refused checkpoint left {} behind, holding {:?}",
        image.display(),
        fs::read_dir(&image)?
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect::<Vec<_>>()
    );
    Ok(msg)
}

fn refuses_unsupported_fd(test: &str, spec: &Spec, kind: &str) {
    common::run_test(test, |dir| {
        let mut w = Workload::start(dir, spec)?;
        let msg = checkpoint_refusal(dir, &w, &format!("a {kind}"))?;
        ensure!(
            mentions_number(&msg, UNSUPPORTED_FD),
            "the refusal does not name fd {UNSUPPORTED_FD}: {msg}"
        );
        ensure!(
            msg.to_lowercase().contains(kind),
            "the refusal does not say \"{kind}\": {msg}"
        );
        common::check_running(&mut w, "after the refused checkpoint")?;
        w.finish(spec)
    });
}

const ONE_ENDED_FIFO: Spec = Spec::new("refused_fds").args(&["fifo"]);
const BIG_MEMFD: Spec = Spec::new("refused_fds").args(&["bigmemfd"]);

/// A FIFO whose write end a process outside the tree holds (this test
/// process opens it once the workload made it): a FIFO only read, with no
/// writer left anywhere, is carried (fifo_no_writer.c).
#[test]
fn refuses_fifo_with_an_end_outside() {
    common::run_test("refuses_fifo_with_an_end_outside", |dir| {
        let mut w = Workload::start(dir, &ONE_ENDED_FIFO)?;
        let writer = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(dir.path().join("files").join("fifo"))
            .context("opening the workload's FIFO for writing")?;
        let msg = checkpoint_refusal(dir, &w, "a fifo")?;
        ensure!(
            mentions_number(&msg, UNSUPPORTED_FD),
            "the refusal does not name fd {UNSUPPORTED_FD}: {msg}"
        );
        ensure!(
            msg.to_lowercase().contains("fifo"),
            "the refusal does not say \"fifo\": {msg}"
        );
        common::check_running(&mut w, "after the refused checkpoint")?;
        drop(writer);
        w.finish(&ONE_ENDED_FIFO)
    });
}

#[test]
fn refuses_memfd_over_64_mib() {
    refuses_unsupported_fd("refuses_memfd_over_64_mib", &BIG_MEMFD, "memfd");
}

const OUTSIDE_PIDFD: Spec = Spec::new("refused_fds").args(&["pidfd"]);

/// A pidfd of a process outside the tree: the restored pidfd would have
/// to point at a process that is not restored.
#[test]
fn refuses_pidfd_of_a_process_outside() {
    refuses_unsupported_fd(
        "refuses_pidfd_of_a_process_outside",
        &OUTSIDE_PIDFD,
        "pidfd of process",
    );
}

const OTHER_NS: Spec = Spec::new("other_ns");

#[test]
fn refuses_process_in_other_namespace() {
    common::run_test("refuses_process_in_other_namespace", |dir| {
        let mut w = Workload::start(dir, &OTHER_NS)?;
        let msg = checkpoint_refusal(dir, &w, "its own UTS namespace")?;
        ensure!(
            msg.contains("uts namespace"),
            "the refusal does not name the uts namespace: {msg}"
        );
        common::check_running(&mut w, "after the refused checkpoint")?;
        w.finish(&OTHER_NS)
    });
}

const SOCKET: Spec = Spec::new("unsupported_fd").args(&["socket"]);
const UNIX: Spec = Spec::new("unsupported_fd").args(&["unix"]);
const UNIX_IN_FLIGHT: Spec = Spec::new("unsupported_fd").args(&["unix_in_flight"]);

/// The listener that unsupported_fd.c's "unix" mode connects to: held by
/// this test process, so outside the checkpointed one. One per process,
/// shared by the tests that start that mode.
fn outside_listener() -> &'static UnixListener {
    static LISTENER: OnceLock<UnixListener> = OnceLock::new();
    LISTENER.get_or_init(|| {
        let name = format!("ferry-zdtm-outside-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract name");
        UnixListener::bind_addr(&addr).expect("listening on the abstract name")
    })
}

#[test]
fn refuses_socket() {
    refuses_unsupported_fd(
        "refuses_socket",
        &SOCKET,
        "multipath tcp socket (ipproto_mptcp)",
    );
}

#[test]
fn refuses_unix_socket_connected_outside() {
    outside_listener();
    refuses_unsupported_fd(
        "refuses_unix_socket_connected_outside",
        &UNIX,
        "unix socket connected to a process outside the checkpoint",
    );
}

/// A unix socket in flight inside a unix socket (sent with SCM_RIGHTS, not
/// received yet) is refused when the queue is copied, after freezing: the
/// tree runs on.
#[test]
fn refuses_unix_socket_in_flight() {
    refuses_unsupported_fd(
        "refuses_unix_socket_in_flight",
        &UNIX_IN_FLIGHT,
        "unix socket in flight",
    );
}

const STALE_EPOLL: Spec = Spec::new("stale_epoll");

/// An epoll registration whose fd was closed, with the file kept alive only
/// by another process (no fd of this one can stand in for it at restore),
/// cannot be recreated with epoll_ctl.
#[test]
fn refuses_stale_epoll_registration() {
    refuses_unsupported_fd("refuses_stale_epoll_registration", &STALE_EPOLL, "epoll");
}

/// The stale epoll holder passes its own verification untouched.
#[test]
fn stale_epoll_workload_standalone() {
    common::standalone(&STALE_EPOLL);
}

/// The socket holders pass their own verification untouched.
#[test]
fn unsupported_fd_workload_standalone() {
    outside_listener();
    common::standalone(&SOCKET);
    common::standalone(&UNIX);
    common::standalone(&UNIX_IN_FLIGHT);
    common::standalone(&TREE_OUTSIDE);
}

const SYSV_SHM: Spec = Spec::new("sysv_shm");

/// The key sysv_shm.c gives its segment A.
fn sysv_shm_key(pid: Pid) -> i32 {
    0x5f00_0000 | (pid.as_raw() & 0xff_ffff)
}

/// The shmids /proc/sysvipc/shm lists.
fn sysv_shmids() -> Result<Vec<i32>> {
    let text = fs::read_to_string("/proc/sysvipc/shm")?;
    Ok(text
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
        .collect())
}

/// The child of sysv_shm.c alone shares its segments with its parent,
/// outside that tree: refused naming the child and the segment, and both
/// go on.
#[test]
fn refuses_sysv_shm_attached_outside_the_tree() {
    let _cleanup = common::SysvShmCleanup;
    common::run_test("refuses_sysv_shm_attached_outside_the_tree", |dir| {
        let mut w = Workload::start(dir, &SYSV_SHM)?;
        w.record_descendants();
        let children = common::descendants(w.pid());
        let [child] = children[..] else {
            bail!("sysv_shm has descendants {children:?}");
        };
        let msg = checkpoint_pid_refusal(dir, child, "SysV segments shared with its parent")?;
        ensure!(
            msg.contains("SysV shm") && msg.contains("outside the tree"),
            "the refusal does not name a SysV segment attached outside the tree: {msg}"
        );
        let (state, tracer) = common::proc_state(child)?;
        ensure!(
            tracer == 0 && !matches!(state, 't' | 'T' | 'Z'),
            "the child is in state {state}, traced by {tracer}, after the refusal"
        );
        common::check_running(&mut w, "after the refused checkpoint")?;
        w.finish(&SYSV_SHM)
    });
}

/// A SysV key still taken at restore (checkpoint --leave-running keeps the
/// segment, and it outlives the killed original) is refused naming the
/// segment; the segments created before it are removed and no process is
/// left behind.
#[test]
fn restore_while_sysv_key_taken() {
    let _cleanup = common::SysvShmCleanup;
    common::run_test("restore_while_sysv_key_taken", |dir| {
        let mut w = Workload::start(dir, &SYSV_SHM)?;
        w.record_descendants();
        let key = sysv_shm_key(w.pid());
        common::checkpoint(dir, &w, &SYSV_SHM, Mode::LeaveRunning)?;
        w.kill_original()?;
        let before = sysv_shmids()?;
        let (run, _) = common::restore(dir)?;
        let after = sysv_shmids()?;
        // The original's segment A outlived it: the test removes it.
        let removed = std::process::Command::new("ipcrm")
            .args(["-M", &key.to_string()])
            .status()?;
        let msg = run.refusal().context("restoring over a taken SysV key")?;
        ensure!(
            msg.contains("SysV shared memory segment") && msg.contains("taken"),
            "the refusal does not say the SysV segment's key is taken: {msg}"
        );
        ensure!(
            msg.contains(&format!("{key:#x}")),
            "the refusal does not name key {key:#x}: {msg}"
        );
        // The image's segments that were not there before (B, which went
        // with the original) must not be there after.
        let image = dir.image();
        let shown = common::agent(dir, &["image", "show", common::path_str(&image)?])?;
        let in_image: Vec<i32> = shown
            .stdout
            .lines()
            .filter_map(|l| {
                l.trim()
                    .strip_prefix("SysV shm ")?
                    .split(' ')
                    .next()?
                    .parse()
                    .ok()
            })
            .collect();
        ensure!(
            in_image.len() == 2,
            "the image shows SysV segments {in_image:?}"
        );
        let left: Vec<&i32> = in_image
            .iter()
            .filter(|id| !before.contains(id) && after.contains(id))
            .collect();
        ensure!(
            left.is_empty(),
            "the failed restore left SysV segments {left:?}"
        );
        ensure!(removed.success(), "ipcrm -M {key:#x} failed");
        ensure_gone(w.pid())
    });
}
