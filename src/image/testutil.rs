//! Test support shared by the format and show tests: a hand-built sample
//! checkpoint (optionally with extra anonymous mappings), a self-removing
//! temporary directory and a way to rewrite a committed image's manifest.

use crate::image::format::{Manifest, IMAGE_FORMAT_VERSION};
use crate::image::model::*;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// A directory under the system temp dir, unique per process and call,
/// removed when dropped.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    /// Reserves a fresh path (the directory itself is not created, so tests
    /// can also exercise `ImageWriter::create` creating it).
    pub(crate) fn new(tag: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("ferry-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        Self(path)
    }

    /// The directory's path.
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A checkpoint with every field filled in, shaped like a small real process.
pub(crate) fn sample_checkpoint() -> Checkpoint {
    let mut regs = GeneralRegs {
        rip: 0x5555_5555_5a10,
        rsp: 0x7ffd_1234_5670,
        fs_base: 0x7f00_0000_0740,
        orig_rax: 230,         // clock_nanosleep
        rax: (-516i64) as u64, // -ERESTART_RESTARTBLOCK
        cs: 0x33,
        ss: 0x2b,
        eflags: 0x246,
        ..GeneralRegs::default()
    };
    regs.rdi = 1;
    let worker_regs = GeneralRegs {
        rip: 0x7f00_0011_2233,
        rsp: 0x7f00_0080_0000,
        orig_rax: u64::MAX,
        ..regs
    };
    let siginfo = |signo: i32| {
        let mut info = vec![0u8; 128];
        info[..4].copy_from_slice(&signo.to_le_bytes());
        info
    };
    Checkpoint {
        host: HostInfo {
            kernel_release: "6.1.0-28-amd64".into(),
            xcr0: 0x7,
            xstate_size: 832,
            vdso_len: 0x2000,
            vdso_hash: 0x1234_5678_9abc_def0,
        },
        processes: vec![ProcessImage {
            pid: 4242,
            ppid: 4000,
            pgid: 4000,
            sid: 4000,
            comm: "sleeper".into(),
            exe: "/usr/bin/sleeper".into(),
            cwd: "/home/user".into(),
            umask: 0o022,
            creds: Credentials {
                uids: [1000, 1000, 1000, 1000],
                gids: [1000, 1000, 1000, 1000],
                groups: vec![24, 27, 1000],
                dumpable: 1,
            },
            rlimits: vec![Rlimit {
                resource: 7,
                soft: 1024,
                hard: 524_288,
            }],
            mm: MmFields {
                start_code: 0x5555_5555_4000,
                end_code: 0x5555_5555_6000,
                start_data: 0x5555_5555_7000,
                end_data: 0x5555_5555_8000,
                start_brk: 0x5555_5555_9000,
                brk: 0x5555_5557_a000,
                start_stack: 0x7ffd_1234_6000,
                arg_start: 0x7ffd_1234_6100,
                arg_end: 0x7ffd_1234_6110,
                env_start: 0x7ffd_1234_6110,
                env_end: 0x7ffd_1234_6fe0,
                auxv: vec![6, 4096, 0, 0],
                membarrier: 1 << 4,
            },
            vmas: vec![
                Vma {
                    start: 0x5555_5555_4000,
                    end: 0x5555_5555_6000,
                    prot: 5,
                    kind: VmaKind::File {
                        path: "/usr/bin/sleeper".into(),
                        offset: 0,
                        identity: FileIdentity {
                            size: 16_384,
                            mtime_ns: 1_700_000_000_000_000_000,
                        },
                    },
                    vm_flags: "rd ex mr mw me".into(),
                },
                Vma {
                    start: 0x5555_5555_9000,
                    end: 0x5555_5557_a000,
                    prot: 3,
                    kind: VmaKind::Heap,
                    vm_flags: "rd wr mr mw me ac".into(),
                },
                Vma {
                    start: 0x7f00_0000_0000,
                    end: 0x7f00_0080_1000,
                    prot: 3,
                    kind: VmaKind::Anonymous,
                    vm_flags: "rd wr mr mw me ac".into(),
                },
                Vma {
                    start: 0x7ffd_1234_5000,
                    end: 0x7ffd_1234_7000,
                    prot: 3,
                    kind: VmaKind::Stack,
                    vm_flags: "rd wr mr mw me gd ac".into(),
                },
                Vma {
                    start: 0x7ffd_1235_0000,
                    end: 0x7ffd_1235_2000,
                    prot: 5,
                    kind: VmaKind::Vdso,
                    vm_flags: "rd ex mr mw me de".into(),
                },
            ],
            threads: vec![
                ThreadImage {
                    tid: 4242,
                    comm: "sleeper".into(),
                    regs,
                    xstate: vec![0xab; 832],
                    sigmask: 1 << (10 - 1),
                    rseq: Some(RseqRegistration {
                        ptr: 0x7f00_0000_0fe0,
                        len: 32,
                        sig: 0x5305_3053,
                    }),
                    robust_list_head: 0x7f00_0000_0a20,
                    robust_list_len: 24,
                    clear_child_tid: 0x7f00_0000_0a10,
                    altstack: AltStack {
                        sp: 0,
                        flags: 2, // SS_DISABLE
                        size: 0,
                    },
                    pending: vec![],
                    privileges: root_privileges(),
                    pdeath_signal: 0,
                    sched: ThreadSched::default(),
                    seccomp_filters: vec![],
                    seccomp_strict: false,
                },
                ThreadImage {
                    tid: 4243,
                    comm: "worker".into(),
                    regs: worker_regs,
                    xstate: vec![0xcd; 832],
                    sigmask: 0,
                    rseq: None,
                    robust_list_head: 0x7f00_0080_0a20,
                    robust_list_len: 24,
                    clear_child_tid: 0x7f00_0080_0a10,
                    altstack: AltStack {
                        sp: 0x7f00_0070_0000,
                        flags: 0,
                        size: 0x8000,
                    },
                    pending: vec![PendingSignal {
                        signo: 12,
                        siginfo: siginfo(12),
                    }],
                    privileges: ThreadPrivileges {
                        effective: 1 << 10,
                        ambient: 0,
                        securebits: 0x10, // SECBIT_KEEP_CAPS
                        no_new_privs: true,
                        ..root_privileges()
                    },
                    pdeath_signal: 9,
                    sched: ThreadSched::default(),
                    seccomp_filters: vec![],
                    seccomp_strict: false,
                },
            ],
            sigactions: vec![
                SigAction {
                    signo: 1,
                    handler: 0,
                    flags: 0,
                    restorer: 0,
                    mask: 0,
                },
                SigAction {
                    signo: 10,
                    handler: 0x5555_5555_5b00,
                    flags: 0x1400_0004, // SA_RESTORER | SA_RESTART | SA_SIGINFO
                    restorer: 0x7f00_0001_0000,
                    mask: 0,
                },
                SigAction {
                    signo: 13,
                    handler: 1, // SIG_IGN
                    flags: 0x0400_0000,
                    restorer: 0x7f00_0001_0000,
                    mask: 0,
                },
                SigAction {
                    signo: 36,
                    handler: 0x5555_5555_5c00,
                    flags: 0x0400_0000,
                    restorer: 0x7f00_0001_0000,
                    mask: 1 << 9,
                },
            ],
            shared_pending: vec![PendingSignal {
                signo: 10,
                siginfo: siginfo(10),
            }],
            namespaces: vec![("net".into(), "net:[4026531833]".into())],
            fds: vec![
                FdImage {
                    fd: 0,
                    cloexec: false,
                    file: 0,
                },
                FdImage {
                    fd: 3,
                    cloexec: true,
                    file: 1,
                },
                FdImage {
                    fd: 4,
                    cloexec: false,
                    file: 2,
                },
                FdImage {
                    fd: 5,
                    cloexec: false,
                    file: 3,
                },
                FdImage {
                    fd: 6,
                    cloexec: false,
                    file: 1,
                },
                FdImage {
                    fd: 7,
                    cloexec: true,
                    file: 4,
                },
                FdImage {
                    fd: 8,
                    cloexec: false,
                    file: 5,
                },
                FdImage {
                    fd: 9,
                    cloexec: false,
                    file: 6,
                },
                FdImage {
                    fd: 10,
                    cloexec: false,
                    file: 7,
                },
                FdImage {
                    fd: 11,
                    cloexec: true,
                    file: 8,
                },
                FdImage {
                    fd: 12,
                    cloexec: true,
                    file: 9,
                },
                FdImage {
                    fd: 13,
                    cloexec: true,
                    file: 10,
                },
                FdImage {
                    fd: 14,
                    cloexec: false,
                    file: 11,
                },
                FdImage {
                    fd: 15,
                    cloexec: false,
                    file: 12,
                },
            ],
            timers: vec![PosixTimer {
                id: 7,
                clock: 1, // CLOCK_MONOTONIC
                notify: 0,
                notify_tid: 0,
                signo: 12,
                sigval: 0x1234,
                value_ns: 15_000_000,
                interval_ns: 20_000_000,
            }],
            itimers: vec![IntervalTimer {
                which: 0,
                value_us: 1_500_000,
                interval_us: 0,
            }],
            seccomp: vec![SeccompFilter {
                flags: 0,
                program: vec![BpfInstruction {
                    code: 0x06, // BPF_RET | BPF_K
                    jt: 0,
                    jf: 0,
                    k: 0x7fff_0000, // SECCOMP_RET_ALLOW
                }],
            }],
            stopped: false,
            child_subreaper: true,
            file_locks: vec![FileLock {
                fd: 3,
                kind: FileLockKind::Ofd,
                write: true,
                start: 400,
                len: 100,
            }],
            shares_files_with_parent: false,
            shares_fs_with_parent: true,
            file_owners: vec![FileOwner {
                fd: 3,
                kind: FileOwnerKind::Process,
                pid: 4242,
                signal: 35,
                async_io: true,
            }],
            root: "/".into(),
            shared_with_parent: vec![(0x7f00_0000_0000, 0x7f00_0000_2000)],
        }],
        zombies: vec![ZombieImage {
            pid: 4243,
            ppid: 4242,
            pgid: 4000,
            sid: 4000,
            wait_status: 3 << 8,
        }],
        files: vec![
            FileImage::Path(OpenFile {
                path: "/dev/null".into(),
                file_type: PathFileType::CharDevice,
                flags: 0o100000, // O_RDONLY | O_LARGEFILE
                pos: 0,
                ghost: None,
            }),
            FileImage::Path(OpenFile {
                path: "/tmp/sleeper.log".into(),
                file_type: PathFileType::Regular,
                flags: 0o102001, // O_WRONLY | O_APPEND | O_LARGEFILE
                pos: 12_345,
                ghost: None,
            }),
            FileImage::Pipe(PipeEnd {
                pipe: 0,
                write_end: false,
                flags: 0o4000, // O_NONBLOCK
            }),
            FileImage::Pipe(PipeEnd {
                pipe: 0,
                write_end: true,
                flags: 0,
            }),
            FileImage::Eventfd(EventfdImage {
                count: 5,
                semaphore: true,
                flags: 0o4000, // O_NONBLOCK
            }),
            FileImage::Timerfd(TimerfdImage {
                clockid: libc::CLOCK_MONOTONIC,
                flags: 0,
                settime_flags: 0,
                ticks: 3,
                remaining_ns: 15_000_000,
                interval_ns: 20_000_000,
                deadline_ns: None,
            }),
            FileImage::Signalfd(SignalfdImage {
                sigmask: 1 << 11, // SIGUSR2
                flags: 0,
            }),
            FileImage::Epoll(EpollImage {
                flags: 0,
                targets: vec![
                    EpollTarget {
                        fd: 4,
                        events: 0x8000_0019, // EPOLLIN|EPOLLERR|EPOLLHUP|EPOLLET
                        data: 4,
                        via: None,
                    },
                    EpollTarget {
                        fd: 8,
                        events: 0x19,
                        data: 0xdead_beef,
                        via: Some(9),
                    },
                ],
            }),
            FileImage::Inotify(InotifyImage {
                flags: 0o4000, // O_NONBLOCK
                watches: vec![
                    InotifyWatch {
                        wd: 1,
                        mask: 0x100, // IN_CREATE
                        path: "/tmp".into(),
                    },
                    InotifyWatch {
                        wd: 3,
                        mask: 0x2, // IN_MODIFY
                        path: "/tmp/sleeper.log".into(),
                    },
                ],
            }),
            FileImage::UnixSocket(UnixSocket {
                sock_type: libc::SOCK_DGRAM,
                flags: 0,
                name: None,
                listen_backlog: None,
                peer: Some(10),
                queued: vec![b"one".to_vec(), b"two!".to_vec()],
                options: SocketOptions::default(),
                peer_gone: false,
                reset_pending: false,
                shutdown: 0,
                connect_to: None,
                accept_queue: Vec::new(),
                bound_file: None,
                queued_ancillary: Vec::new(),
                passcred: false,
            }),
            FileImage::UnixSocket(UnixSocket {
                sock_type: libc::SOCK_DGRAM,
                flags: 0o4000, // O_NONBLOCK
                name: None,
                listen_backlog: None,
                peer: Some(9),
                queued: Vec::new(),
                options: SocketOptions::default(),
                peer_gone: false,
                reset_pending: false,
                shutdown: 0,
                connect_to: None,
                accept_queue: Vec::new(),
                bound_file: None,
                queued_ancillary: Vec::new(),
                passcred: false,
            }),
            FileImage::UnixSocket(UnixSocket {
                sock_type: libc::SOCK_STREAM,
                flags: 0,
                name: Some(b"\0sleeper".to_vec()),
                listen_backlog: Some(16),
                peer: None,
                queued: Vec::new(),
                options: SocketOptions::default(),
                peer_gone: false,
                reset_pending: false,
                shutdown: 0,
                connect_to: None,
                accept_queue: Vec::new(),
                bound_file: None,
                queued_ancillary: Vec::new(),
                passcred: false,
            }),
            FileImage::InetSocket(InetSocket {
                sock_type: libc::SOCK_STREAM,
                flags: 0,
                local: Some("127.0.0.1:8080".parse().expect("an address")),
                ipv6: false,
                listen_backlog: Some(128),
                v6only: false,
                nodelay: true,
                options: SocketOptions {
                    reuse_addr: true,
                    reuse_port: false,
                    sndbuf: 16384,
                    rcvbuf: 131072,
                    int_options: vec![IntOption {
                        level: libc::SOL_SOCKET,
                        name: libc::SO_PRIORITY,
                        value: 6,
                    }],
                    linger: None,
                    rcv_timeout_us: 1_500_000,
                    snd_timeout_us: 0,
                    bound_device: None,
                    icmp6_filter: None,
                },
                peer: None,
                shutdown: 0,
                queued: Vec::new(),
                protocol: libc::IPPROTO_TCP,
                broadcast: false,
            }),
        ],
        pipes: vec![PipeImage {
            inode: 4242,
            capacity: 65536,
            data: b"buffered".to_vec(),
        }],
        sysv_shm: vec![crate::image::SysvShmImage {
            key: 0x4242,
            shmid: 32769,
            size: 10000,
            mode: 0o640,
            uid: 1000,
            gid: 1000,
            removed: false,
        }],
        pid_namespace: false,
        ghost_files: Vec::new(),
        tcp_flows: vec![crate::image::TcpFlow {
            local: "10.0.0.1:80".parse().unwrap(),
            remote: "[::ffff:10.0.0.2]:5000".parse().unwrap(),
        }],
        network_lock: Some("ferry_0011223344556677_4242_1".into()),
        cgroups: Default::default(),
        ptys: vec![],
        network_namespace: crate::image::NetworkNamespace::Shared,
    }
}

/// The privileges of a root process.
fn root_privileges() -> ThreadPrivileges {
    ThreadPrivileges {
        effective: 0x1ff_ffff_ffff,
        permitted: 0x1ff_ffff_ffff,
        inheritable: 0,
        bounding: 0x1ff_ffff_ffff,
        ambient: 0,
        securebits: 0,
        no_new_privs: false,
    }
}

/// The sample checkpoint plus one anonymous read-write mapping per
/// `(start, end)` range (page-aligned, clear of the sample's own mappings),
/// so that pages a test writes there survive `ImageWriter::commit`, which
/// drops pages outside every restorable mapping.
pub(crate) fn checkpoint_with_anon(ranges: &[(u64, u64)]) -> Checkpoint {
    let mut checkpoint = sample_checkpoint();
    let vmas = &mut checkpoint.processes[0].vmas;
    for &(start, end) in ranges {
        assert!(start < end && start % PAGE_SIZE == 0 && end % PAGE_SIZE == 0);
        assert!(
            vmas.iter().all(|v| end <= v.start || v.end <= start),
            "{start:#x}-{end:#x} overlaps a sample mapping"
        );
        vmas.push(Vma {
            start,
            end,
            prot: 3,
            kind: VmaKind::Anonymous,
            vm_flags: "rd wr mr mw me ac".into(),
        });
    }
    vmas.sort_unstable_by_key(|v| v.start);
    checkpoint
}

/// Decodes the manifest of the committed image in `dir`, lets `edit` change
/// it and writes it back correctly framed and checksummed (the framing the
/// format module documents), so that only the checks behind the manifest's
/// own can catch what was changed.
pub(crate) fn rewrite_manifest(dir: &Path, edit: impl FnOnce(&mut Manifest)) {
    const HEADER_LEN: usize = 24;
    const CHECKSUM_LEN: usize = 8;
    let path = dir.join("manifest");
    let bytes = std::fs::read(&path).unwrap();
    let body = &bytes[HEADER_LEN..bytes.len() - CHECKSUM_LEN];
    let mut manifest: Manifest = postcard::from_bytes(body).unwrap();
    edit(&mut manifest);
    let body = postcard::to_stdvec(&manifest).unwrap();
    let mut out = Vec::with_capacity(HEADER_LEN + body.len() + CHECKSUM_LEN);
    out.extend_from_slice(b"FERRYIMG");
    out.extend_from_slice(&IMAGE_FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&body);
    out.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(&body).to_le_bytes());
    std::fs::write(&path, out).unwrap();
}
