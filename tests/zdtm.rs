//! zdtm-style acceptance tests: each workload in tests/workloads is
//! checkpointed (killed, or left running and then killed), restored with the
//! same PID, and must then pass its own verification.
//!
//! `cargo test --test zdtm standalone` runs only the workloads themselves,
//! without migrate-agent; FERRY_AGENT_BIN selects another agent binary.

mod common;

use anyhow::{ensure, Context};
use common::{Mode, Spec};

/// Pages of bigmem.c that hold its pattern: 62 of every 64 pages of 512 MiB.
const BIGMEM_PATTERN_PAGES: u64 = (512 << 20) / 4096 / 64 * 62;

macro_rules! zdtm_tests {
    ($($name:ident, $leave_running:ident => $spec:expr;)*) => {
        $(
            #[test]
            fn $name() {
                common::zdtm(stringify!($name), &$spec, Mode::Kill);
            }

            #[test]
            fn $leave_running() {
                common::zdtm(stringify!($leave_running), &$spec, Mode::LeaveRunning);
            }
        )*

        /// Every workload passes its own verification without any checkpoint.
        #[test]
        fn workloads_standalone() {
            for spec in [$($spec),*] {
                common::standalone(&spec);
            }
        }
    };
}

zdtm_tests! {
    counters, counters_leave_running => Spec::new("counters");
    fpu, fpu_leave_running => Spec::new("fpu");
    threads, threads_leave_running => Spec::new("threads");
    futex, futex_leave_running => Spec::new("futex");
    nanosleep, nanosleep_leave_running => Spec::new("nanosleep");
    signals, signals_leave_running => Spec::new("signals").usr1();
    altstack, altstack_leave_running => Spec::new("altstack").usr1();
    files, files_leave_running => Spec::new("files");
    mprotect, mprotect_leave_running => Spec::new("mprotect");
    bigmem, bigmem_leave_running => Spec::new("bigmem").min_pages_written(BIGMEM_PATTERN_PAGES);
    mapfile, mapfile_leave_running => Spec::new("mapfile");
    comm, comm_leave_running => Spec::new("comm");
    dirty, dirty_leave_running => Spec::new("dirty");
    pipes, pipes_leave_running => Spec::new("pipes");
    fifo, fifo_leave_running => Spec::new("fifo");
    memfd, memfd_leave_running => Spec::new("memfd");
    shm, shm_leave_running => Spec::new("shm");
    onstack, onstack_leave_running => Spec::new("onstack").usr1();
    eventfd, eventfd_leave_running => Spec::new("eventfd");
    timerfd, timerfd_leave_running => Spec::new("timerfd");
    signalfd, signalfd_leave_running => Spec::new("signalfd");
    epoll, epoll_leave_running => Spec::new("epoll");
    inotify, inotify_leave_running => Spec::new("inotify");
    unix_sockets, unix_sockets_leave_running => Spec::new("unix_sockets");
    tcp_listen, tcp_listen_leave_running => Spec::new("tcp_listen");
    socket_tcp, socket_tcp_leave_running => Spec::new("socket_tcp").args(&["4"]);
    socket_tcp6, socket_tcp6_leave_running => Spec::new("socket_tcp").args(&["6"]);
    socket_tcp_halfclosed, socket_tcp_halfclosed_leave_running => Spec::new("socket_tcp").args(&["half"]);
    socket_tcp_closed, socket_tcp_closed_leave_running => Spec::new("socket_tcp_closed");
    socket_tcp_last_ack, socket_tcp_last_ack_leave_running => Spec::new("socket_tcp_last_ack");
    socket_tcp_reset, socket_tcp_reset_leave_running => Spec::new("socket_tcp_last_ack").args(&["reset"]);
    socket_tcp_syn_sent, socket_tcp_syn_sent_leave_running => Spec::new("socket_tcp_syn_sent");
    tcp_reuse, tcp_reuse_leave_running => Spec::new("tcp_reuse");
    posix_timer, posix_timer_leave_running => Spec::new("posix_timer");
    itimer, itimer_leave_running => Spec::new("itimer");
    caps, caps_leave_running => Spec::new("caps");
    seccomp, seccomp_leave_running => Spec::new("seccomp");
    seccomp_strict, seccomp_strict_leave_running => Spec::new("seccomp_strict");
    tree_pipe, tree_pipe_leave_running => Spec::new("tree_pipe");
    tree_zombie, tree_zombie_leave_running => Spec::new("tree_zombie");
    tree_zombie_pgrp, tree_zombie_pgrp_leave_running => Spec::new("tree_zombie_pgrp");
    tree_session, tree_session_leave_running => Spec::new("tree_session");
    tree_shm, tree_shm_leave_running => Spec::new("tree_shm");
    tree_fileoff, tree_fileoff_leave_running => Spec::new("tree_fileoff");
    pipe_writer_gone, pipe_writer_gone_leave_running => Spec::new("pipe_writer_gone");
    dirfd, dirfd_leave_running => Spec::new("dirfd");
    stopped, stopped_leave_running => Spec::new("stopped");
    vma_flags, vma_flags_leave_running => Spec::new("vma_flags");
    memfd_mode, memfd_mode_leave_running => Spec::new("memfd_mode");
    ghost_file, ghost_file_leave_running => Spec::new("ghost_file");
    deleted_dev, deleted_dev_leave_running => Spec::new("deleted_dev");
    other_user, other_user_leave_running => Spec::new("other_user");
    prctl_state, prctl_state_leave_running => Spec::new("prctl_state");
    file_locks, file_locks_leave_running => Spec::new("file_locks");
    unix_peer_gone, unix_peer_gone_leave_running => Spec::new("unix_peer_gone");
    unix_unaccepted, unix_unaccepted_leave_running => Spec::new("unix_unaccepted");
    unix_shutdown, unix_shutdown_leave_running => Spec::new("unix_shutdown");
    unix_empty_msgs, unix_empty_msgs_leave_running => Spec::new("unix_empty_msgs");
    unix_file_mode, unix_file_mode_leave_running => Spec::new("unix_file_mode");
    unix_scm, unix_scm_leave_running => Spec::new("unix_scm");
    udp_sockets, udp_sockets_leave_running => Spec::new("udp_sockets");
    sock_opts, sock_opts_leave_running => Spec::new("sock_opts");
    netlink, netlink_leave_running => Spec::new("netlink");
    packet, packet_leave_running => Spec::new("packet");
    epoll_closed, epoll_closed_leave_running => Spec::new("epoll_closed");
    pidfd, pidfd_leave_running => Spec::new("pidfd");
    tree_shared, tree_shared_leave_running => Spec::new("tree_shared");
    fifo_no_writer, fifo_no_writer_leave_running => Spec::new("fifo_no_writer");
    fd_owner, fd_owner_leave_running => Spec::new("fd_owner");
    pipe_reopen, pipe_reopen_leave_running => Spec::new("pipe_reopen");
    memfd_reopen, memfd_reopen_leave_running => Spec::new("memfd_reopen");
    maps_file_prot, maps_file_prot_leave_running => Spec::new("maps_file_prot");
    membarrier, membarrier_leave_running => Spec::new("membarrier");
    tree_shm_wider, tree_shm_wider_leave_running => Spec::new("tree_shm_wider");
    tmpfile, tmpfile_leave_running => Spec::new("tmpfile");
    sched, sched_leave_running => Spec::new("sched");
    chroot, chroot_leave_running => Spec::new("chroot");
    zombie_group_gone, zombie_group_gone_leave_running => Spec::new("zombie_group_gone");
    unix_ghost_fifo, unix_ghost_fifo_leave_running => Spec::new("unix_ghost_fifo");
    cgroups, cgroups_leave_running => Spec::new("cgroups");
    cgroup_root, cgroup_root_leave_running => Spec::new("cgroup_root").agent_args(
        &["--cgroup-root", "name=ferry_cgra_{pid}:/prefix"],
        &["--cgroup-root", "name=ferry_cgrb_{pid}:/newroot", "--cgroup-root", "name=ferry_cgra_{pid}:/prefix"],
    );
    cgroup_ifpriomap, cgroup_ifpriomap_leave_running => Spec::new("cgroup_ifpriomap")
        .agent_args(&[], &["--cgroup-root", "net_prio:/ferry_prio_{pid}_moved"]);
    pty, pty_leave_running => Spec::new("pty");
    console_vt, console_vt_leave_running => Spec::new("console_vt");
    fanotify, fanotify_leave_running => Spec::new("fanotify");
    cow, cow_leave_running => Spec::new("cow");
    shm_private, shm_private_leave_running => Spec::new("shm_private");
    packet_ring, packet_ring_leave_running => Spec::new("packet_ring");
    netns_own, netns_own_leave_running => Spec::new("netns").args(&["own"]);
}

/// Pages of sysv_shm.c's segment A with data: dumped once although three
/// attachments (the parent's, the child's inherited and its read-only one)
/// map it. The rest of the two small processes stays well under another
/// copy of it.
const SYSV_SHM_A_PAGES: u64 = 256;

/// SysV shared memory: a keyed segment and one marked for removal, shared
/// by a parent and its child (one attachment read-only), come back with
/// their shmids, key, contents and modes. Checkpoint kills the tree and
/// marks the keyed segment for removal (it moved into the image), so the
/// restore on the same host finds its key and shmid free.
#[test]
fn sysv_shm() {
    let spec = Spec::new("sysv_shm")
        .min_pages_written(SYSV_SHM_A_PAGES)
        .max_pages_written(2 * SYSV_SHM_A_PAGES - 1);
    let _cleanup = common::SysvShmCleanup;
    common::zdtm("sysv_shm", &spec, Mode::Kill);
}

/// The same with --leave-running: the original then runs on until the
/// harness kills it, and a segment not marked for removal would outlive
/// it here (holding its key and shmid), so this variant uses only
/// segments marked for removal.
#[test]
fn sysv_shm_leave_running() {
    let spec = Spec::new("sysv_shm")
        .args(&["removed"])
        .min_pages_written(SYSV_SHM_A_PAGES)
        .max_pages_written(2 * SYSV_SHM_A_PAGES - 1);
    common::zdtm("sysv_shm_leave_running", &spec, Mode::LeaveRunning);
}

/// The SysV workload passes its own verification, in both variants.
#[test]
fn sysv_shm_standalone() {
    let _cleanup = common::SysvShmCleanup;
    common::standalone(&Spec::new("sysv_shm"));
    common::standalone(&Spec::new("sysv_shm").args(&["removed"]));
}

/// A tree whose root is the init of a PID namespace of its own (made by
/// the workload's launcher, as `unshare --pid --fork` does): checkpointed
/// with the PIDs it has inside, restored into a new PID namespace where the
/// root is PID 1 again and its child PID 2.
#[test]
fn pid_namespace() {
    let spec = Spec::new("pid_namespace");
    common::run_test("pid_namespace", |dir| {
        let mut w = common::Workload::start(dir, &spec)?;
        w.record_descendants();
        let family = common::descendants(w.pid());
        let init = *family.first().context("the launcher has no child")?;
        let image = dir.image();
        let init_arg = init.to_string();
        let stats = common::agent(
            dir,
            &[
                "checkpoint",
                &init_arg,
                "--dir",
                common::path_str(&image)?,
                "--json",
            ],
        )?
        .json()
        .context("checkpoint of the namespace's init")?;
        ensure!(
            common::field(&stats, "processes")? == 2.0,
            "checkpointed {stats}"
        );
        w.wait_original()?;
        let (run, pid) = common::restore(dir)?;
        if let Some(pid) = pid {
            w.adopt(pid);
        }
        run.json().context("restore into a new PID namespace")?;
        let pid = pid.context("restore wrote no pidfile")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let nspid = status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .context("no NSpid")?;
        ensure!(
            nspid.split_whitespace().last() == Some("1"),
            "the restored root {pid} has NSpid {nspid}, not PID 1 of its namespace"
        );
        let ns = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/pid"));
        ensure!(
            ns(&pid.to_string())? != ns("self")?,
            "the restored root {pid} is in this PID namespace"
        );
        w.finish(&spec)
    });
}

/// scripts/bench.sh's subject passes its own verification.
#[test]
fn bench_workload_standalone() {
    common::standalone(&Spec::new("bench_mem").args(&["64"]));
}

/// A network namespace of the test's own (`ip netns add`), deleted when
/// dropped, with a listener inside it for the lock's probes.
struct NamedNetns {
    name: String,
    listener: std::net::TcpListener,
}

impl NamedNetns {
    fn add(test: &str) -> anyhow::Result<NamedNetns> {
        let name = format!("ferry-{test}-{}", std::process::id());
        let status = std::process::Command::new("ip")
            .args(["netns", "add", &name])
            .status()?;
        ensure!(status.success(), "ip netns add {name}: {status}");
        let mut ns = NamedNetns {
            name,
            listener: std::net::TcpListener::bind("0.0.0.0:0")?,
        };
        ns.listener = ns.enter(|| {
            let lo = std::process::Command::new("ip")
                .args(["link", "set", "up", "dev", "lo"])
                .status()?;
            ensure!(lo.success(), "ip link set up dev lo: {lo}");
            Ok(std::net::TcpListener::bind("127.0.0.1:0")?)
        })?;
        Ok(ns)
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// Runs `f` on a thread that joined the namespace.
    fn enter<T: Send>(&self, f: impl FnOnce() -> anyhow::Result<T> + Send) -> anyhow::Result<T> {
        let file = std::fs::File::open(self.path())?;
        std::thread::scope(|s| {
            s.spawn(move || {
                nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)?;
                f()
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the thread in the namespace panicked"))?
        })
    }

    /// Whether a connection to the listener, its packets marked `mark`
    /// (0: none) both ways (the listener's too, as the zdtm hook's server
    /// does), is set up within 300 ms; a refusal (a reset: the lock must
    /// drop, never answer) is an error.
    fn connects(&self, mark: u32) -> anyhow::Result<bool> {
        use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn};
        socket::setsockopt(&self.listener, sockopt::Mark, &mark)?;
        let to = SockaddrIn::from(match self.listener.local_addr()? {
            std::net::SocketAddr::V4(v4) => v4,
            other => anyhow::bail!("the listener is on {other}"),
        });
        let connected = self.enter(|| {
            let fd = socket::socket(
                AddressFamily::Inet,
                SockType::Stream,
                SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
                None,
            )?;
            if mark != 0 {
                socket::setsockopt(&fd, sockopt::Mark, &mark)?;
            }
            match socket::connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &to) {
                Ok(()) | Err(nix::errno::Errno::EINPROGRESS) => {}
                Err(e) => return Err(e.into()),
            }
            let mut poll = [nix::poll::PollFd::new(
                std::os::fd::AsFd::as_fd(&fd),
                nix::poll::PollFlags::POLLOUT,
            )];
            if nix::poll::poll(&mut poll, nix::poll::PollTimeout::from(300u16))? == 0 {
                return Ok(false);
            }
            let err = socket::getsockopt(&fd, sockopt::SocketError)?;
            ensure!(err == 0, "the connection was refused: errno {err}");
            Ok(true)
        })?;
        if connected {
            // Taken off the backlog, so that later probes find room.
            self.listener.accept()?;
        }
        socket::setsockopt(&self.listener, sockopt::Mark, &0)?;
        Ok(connected)
    }
}

impl Drop for NamedNetns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

/// A tree in a named network namespace (as zdtm's netns_lock_iptables):
/// `checkpoint --external-netns` leaves the namespace where it is, locked
/// whole until the restore (a connection to a listener in it gets no
/// answer, not even a reset, unless its packets carry ferry's or CRIU's
/// mark), and `restore --join-netns` runs the tree there again and
/// unlocks it.
fn external_netns(test: &str, mode: Mode) {
    common::run_test(test, |dir| {
        let ns = NamedNetns::add(test)?;
        ensure!(
            ns.connects(0)?,
            "the namespace is locked before the checkpoint"
        );
        let path = ns.path();
        let spec = Spec::new("netns").args(&["join"]);
        let mut w = common::Workload::start_with(dir, &spec, &[&path])?;
        let pid = w.pid().to_string();
        let image = dir.image();
        let mut args = vec!["checkpoint", &pid, "--dir", common::path_str(&image)?];
        args.extend(["--json", "--external-netns"]);
        if mode == Mode::LeaveRunning {
            args.push("--leave-running");
        }
        common::agent(dir, &args)?.json().context("checkpoint")?;
        match mode {
            Mode::Kill => {
                w.reap_checkpointed()?;
                ensure!(
                    !ns.connects(0)?,
                    "the namespace is not locked after the checkpoint"
                );
                ensure!(
                    ns.connects(0x6672_7279)?,
                    "ferry's mark does not pass the lock"
                );
                ensure!(ns.connects(0xC114)?, "CRIU's mark does not pass the lock");
            }
            Mode::LeaveRunning => {
                ensure!(
                    ns.connects(0)?,
                    "the namespace is still locked after the checkpoint"
                );
                w.kill_original()?;
            }
        }
        common::restore_workload_with(dir, &mut w, &["--join-netns".into(), path.clone()])?;
        ensure!(
            ns.connects(0)?,
            "the namespace is still locked after the restore"
        );
        w.finish(&spec)
    });
}

#[test]
fn netns_external() {
    external_netns("netns_external", Mode::Kill);
}

#[test]
fn netns_external_leave_running() {
    external_netns("netns_external_leave_running", Mode::LeaveRunning);
}

/// CRIU's socket-tcp-reseted, checkpointed while the server end is still
/// ESTABLISHED with bytes unacknowledged and the client end already reset
/// (socket_tcp_reseted.c, in a namespace of the test's own, its rejecting
/// firewall table deleted between the checkpoint and the restore, or right
/// before a checkpoint that leaves the tree running). The restored (or
/// resumed) server end's window probe is answered by a reset (nothing
/// holds the client's side any more), which the network lock must let
/// through: it is released before the connections leave repair mode.
fn tcp_reseted(test: &str, mode: Mode) {
    common::run_test(test, |dir| {
        let ns = NamedNetns::add(test)?;
        let path = ns.path();
        let spec = Spec::new("socket_tcp_reseted");
        let mut w = common::Workload::start_with(dir, &spec, &[&path])?;
        let unblock = || -> anyhow::Result<()> {
            let status = std::process::Command::new("ip")
                .args(["netns", "exec", &ns.name, "nft"])
                .arg("delete table inet ferry_reseted")
                .status()?;
            ensure!(status.success(), "deleting the workload's table: {status}");
            Ok(())
        };
        let pid = w.pid().to_string();
        let image = dir.image();
        let mut args = vec!["checkpoint", &pid, "--dir", common::path_str(&image)?];
        args.extend(["--json", "--external-netns"]);
        if mode == Mode::LeaveRunning {
            unblock()?;
            args.push("--leave-running");
            common::agent(dir, &args)?.json().context("checkpoint")?;
            return w.finish(&spec);
        }
        common::agent(dir, &args)?.json().context("checkpoint")?;
        w.reap_checkpointed()?;
        unblock()?;
        common::restore_workload_with(dir, &mut w, &["--join-netns".into(), path.clone()])?;
        w.finish(&spec)
    });
}

#[test]
fn socket_tcp_reseted() {
    tcp_reseted("socket_tcp_reseted", Mode::Kill);
}

#[test]
fn socket_tcp_reseted_leave_running() {
    tcp_reseted("socket_tcp_reseted_leave_running", Mode::LeaveRunning);
}

/// Ferry killed at any moment of a checkpoint (SIGKILL, as an agent
/// crash or the OOM killer would) leaves the workload running as it was:
/// its threads return from their parked frames with their own registers,
/// FPU state and signal mask (crate::ptrace::park). `checkpoint
/// --leave-running` is started again and again and killed at moments
/// spread over one whole checkpoint; the workload must stay alive, not
/// traced, and pass its own check (which reaches it by SIGTERM) at the end.
fn killed_checkpointer(test: &str, spec: &Spec) {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    const KILLS: u32 = 30;
    common::run_test(test, |dir| {
        let mut w = common::Workload::start(dir, spec)?;
        std::thread::sleep(Duration::from_millis(200));
        let pid = w.pid().to_string();
        let run = |i: u32, kill_after: Option<Duration>| -> anyhow::Result<Duration> {
            let image = dir.path().join(format!("image-{i}"));
            let mut child = Command::new(common::agent_bin()?)
                .args(["checkpoint", &pid, "--leave-running", "--dir"])
                .arg(&image)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?;
            let started = Instant::now();
            match kill_after {
                Some(after) => {
                    std::thread::sleep(after);
                    // Our own child, by its PID.
                    let _ = child.kill();
                    child.wait()?;
                }
                None => ensure!(child.wait()?.success(), "a whole checkpoint failed"),
            }
            Ok(started.elapsed())
        };
        let whole = run(KILLS, None)?;
        for i in 0..KILLS {
            let after = whole * i / KILLS;
            run(i, Some(after))?;
            common::check_running(&mut w, &format!("after a checkpoint killed at {after:?}"))?;
        }
        w.finish(spec)
    });
}

macro_rules! checkpointer_killed_tests {
    ($($name:ident => $spec:expr;)*) => {
        $(
            #[test]
            fn $name() {
                killed_checkpointer(stringify!($name), &$spec);
            }
        )*
    };
}

checkpointer_killed_tests! {
    fpu_checkpointer_killed => Spec::new("fpu");
    threads_checkpointer_killed => Spec::new("threads");
    nanosleep_checkpointer_killed => Spec::new("nanosleep");
    signals_checkpointer_killed => Spec::new("signals").usr1();
    altstack_checkpointer_killed => Spec::new("altstack").usr1();
    futex_checkpointer_killed => Spec::new("futex");
}
