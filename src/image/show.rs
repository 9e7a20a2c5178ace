//! A person-readable description of an image (`migrate-agent image show`),
//! so that what a checkpoint captured can be inspected without a debugger:
//! the role CRIU's crit plays for CRIU images.

use crate::image::format::{ImageReader, PageRun};
use crate::image::model::{
    AltStack, EventfdImage, FdImage, FileImage, InetSocket, PendingSignal, SocketOptions,
    ThreadImage, TimerfdImage, UnixSocket, Vma, VmaKind, PAGE_SIZE,
};
use crate::kernel::cpu::xsave_component_names;
use std::fmt::{self, Write};

/// Lines are kept within this many columns; long paths are shortened from
/// the left, where they matter least.
const WIDTH: usize = 100;

/// Names of signals 1..=31 (x86_64 numbering).
const SIGNAL_NAMES: [&str; 31] = [
    "SIGHUP",
    "SIGINT",
    "SIGQUIT",
    "SIGILL",
    "SIGTRAP",
    "SIGABRT",
    "SIGBUS",
    "SIGFPE",
    "SIGKILL",
    "SIGUSR1",
    "SIGSEGV",
    "SIGUSR2",
    "SIGPIPE",
    "SIGALRM",
    "SIGTERM",
    "SIGSTKFLT",
    "SIGCHLD",
    "SIGCONT",
    "SIGSTOP",
    "SIGTSTP",
    "SIGTTIN",
    "SIGTTOU",
    "SIGURG",
    "SIGXCPU",
    "SIGXFSZ",
    "SIGVTALRM",
    "SIGPROF",
    "SIGWINCH",
    "SIGIO",
    "SIGPWR",
    "SIGSYS",
];

/// The kernel's first real-time signal (glibc reserves two more for itself,
/// but the image records kernel numbers).
const SIGRTMIN: i32 = 32;

/// SA_* flags as the x86_64 kernel defines them; libc lacks SA_RESTORER.
const SA_FLAGS: &[(u64, &str)] = &[
    (0x0000_0001, "SA_NOCLDSTOP"),
    (0x0000_0002, "SA_NOCLDWAIT"),
    (0x0000_0004, "SA_SIGINFO"),
    (0x0000_0400, "SA_UNSUPPORTED"),
    (0x0000_0800, "SA_EXPOSE_TAGBITS"),
    (0x0400_0000, "SA_RESTORER"),
    (0x0800_0000, "SA_ONSTACK"),
    (0x1000_0000, "SA_RESTART"),
    (0x4000_0000, "SA_NODEFER"),
    (0x8000_0000, "SA_RESETHAND"),
];

/// O_* status flags as fdinfo reports them (access mode excluded). Wider
/// masks come first so that O_SYNC is not shown as O_DSYNC and O_TMPFILE
/// not as O_DIRECTORY. O_LARGEFILE is the kernel's value: libc declares it
/// 0 on 64-bit targets, but the kernel sets the bit on every open there.
const OPEN_FLAGS: &[(u64, &str)] = &[
    (libc::O_CREAT as u64, "O_CREAT"),
    (libc::O_EXCL as u64, "O_EXCL"),
    (libc::O_NOCTTY as u64, "O_NOCTTY"),
    (libc::O_TRUNC as u64, "O_TRUNC"),
    (libc::O_APPEND as u64, "O_APPEND"),
    (libc::O_NONBLOCK as u64, "O_NONBLOCK"),
    (libc::O_SYNC as u64, "O_SYNC"),
    (libc::O_DSYNC as u64, "O_DSYNC"),
    (libc::O_ASYNC as u64, "O_ASYNC"),
    (libc::O_DIRECT as u64, "O_DIRECT"),
    (0o100000, "O_LARGEFILE"),
    (libc::O_TMPFILE as u64, "O_TMPFILE"),
    (libc::O_DIRECTORY as u64, "O_DIRECTORY"),
    (libc::O_NOFOLLOW as u64, "O_NOFOLLOW"),
    (libc::O_NOATIME as u64, "O_NOATIME"),
    (libc::O_PATH as u64, "O_PATH"),
];

/// sigaltstack flags.
/// The flags of timerfd_settime.
const TFD_FLAGS: &[(u64, &str)] = &[
    (libc::TFD_TIMER_ABSTIME as u64, "TFD_TIMER_ABSTIME"),
    (
        libc::TFD_TIMER_CANCEL_ON_SET as u64,
        "TFD_TIMER_CANCEL_ON_SET",
    ),
];
const SS_DISABLE: i32 = 2;
const SS_AUTODISARM: i32 = 1 << 31;

/// Describes the image for a person: header, process, threads, signals,
/// files and a table of mappings with how many of their pages the image
/// holds.
pub fn describe(reader: &ImageReader) -> String {
    let mut out = String::new();
    write_description(&mut out, reader).expect("writing to a String cannot fail");
    out
}

fn write_description(out: &mut String, reader: &ImageReader) -> fmt::Result {
    let manifest = reader.manifest();
    let ck = &manifest.checkpoint;
    let host = &ck.host;

    writeln!(out, "ferry image {}", reader.dir().display())?;
    writeln!(
        out,
        "  format version {}, written by ferry {} at {}",
        crate::image::IMAGE_FORMAT_VERSION,
        manifest.ferry_version,
        utc_time(manifest.created_unix_secs)
    )?;
    writeln!(out, "  host kernel {}", host.kernel_release)?;
    writeln!(
        out,
        "  XCR0 {:#x} ({}), xstate {} bytes",
        host.xcr0,
        xsave_component_names(host.xcr0).join(" "),
        host.xstate_size
    )?;
    writeln!(
        out,
        "  vdso {} bytes, xxh3 {:#018x}",
        host.vdso_len, host.vdso_hash
    )?;
    writeln!(
        out,
        "  {} processes, {} zombies, {} open file descriptions",
        ck.processes.len(),
        ck.zombies.len(),
        ck.files.len()
    )?;
    for z in &ck.zombies {
        writeln!(
            out,
            "  zombie {} (parent {}, group {}, session {}) wait status {:#x}",
            z.pid, z.ppid, z.pgid, z.sid, z.wait_status
        )?;
    }
    for s in &ck.sysv_shm {
        writeln!(
            out,
            "  SysV shm {} key {:#x}, {} bytes, mode {:03o}, owner {}:{}{}",
            s.shmid,
            s.key,
            s.size,
            s.mode,
            s.uid,
            s.gid,
            if s.removed {
                ", marked for removal"
            } else {
                ""
            }
        )?;
    }
    for p in &ck.processes {
        let runs: Vec<PageRun> = reader
            .runs()
            .iter()
            .filter(|r| r.pid == p.pid)
            .copied()
            .collect();
        write_process(out, ck, p, &runs)?;
    }
    Ok(())
}

/// Describes one process of the tree, with `runs`, its pages.
fn write_process(
    out: &mut String,
    ck: &crate::image::Checkpoint,
    p: &crate::image::ProcessImage,
    runs: &[PageRun],
) -> fmt::Result {
    writeln!(out, "\nprocess {} {:?}", p.pid, p.comm)?;
    writeln!(
        out,
        "  parent {}   group {}   session {}",
        p.ppid, p.pgid, p.sid
    )?;
    writeln!(out, "  exe    {}", p.exe)?;
    writeln!(out, "  cwd    {}", p.cwd)?;
    writeln!(out, "  umask  {:04o}", p.umask)?;
    let [ruid, euid, suid, fsuid] = p.creds.uids;
    let [rgid, egid, sgid, fsgid] = p.creds.gids;
    writeln!(
        out,
        "  uids   real {ruid} effective {euid} saved {suid} fs {fsuid}"
    )?;
    writeln!(
        out,
        "  gids   real {rgid} effective {egid} saved {sgid} fs {fsgid}; groups {}",
        join_display(&p.creds.groups)
    )?;
    let mm = &p.mm;
    writeln!(
        out,
        "  code   {:#x}-{:#x}   data {:#x}-{:#x}",
        mm.start_code, mm.end_code, mm.start_data, mm.end_data
    )?;
    writeln!(
        out,
        "  brk    {:#x} (heap starts {:#x})   stack starts {:#x}",
        mm.brk, mm.start_brk, mm.start_stack
    )?;
    writeln!(
        out,
        "  args   {:#x}-{:#x}   env {:#x}-{:#x}   auxv {} words",
        mm.arg_start,
        mm.arg_end,
        mm.env_start,
        mm.env_end,
        mm.auxv.len()
    )?;

    writeln!(out, "\nthreads ({})", p.threads.len())?;
    for t in &p.threads {
        write_thread(out, t)?;
    }

    writeln!(out, "\nsignal handlers (those not SIG_DFL)")?;
    for sa in p.sigactions.iter().filter(|sa| sa.handler != 0) {
        let handler = match sa.handler {
            1 => "SIG_IGN".to_string(),
            h => format!("{h:#x}"),
        };
        writeln!(
            out,
            "  {:<16} handler {:<16} mask {:#x}  {}",
            signal_name(sa.signo),
            handler,
            sa.mask,
            flag_names(sa.flags, SA_FLAGS).unwrap_or_default()
        )?;
    }
    writeln!(
        out,
        "shared pending signals: {}",
        pending_list(&p.shared_pending)
    )?;

    let namespaces: Vec<&str> = p
        .namespaces
        .iter()
        .map(|(_, target)| target.as_str())
        .collect();
    writeln!(
        out,
        "namespaces: {}",
        fit(&namespaces.join(" "), WIDTH - 12)
    )?;
    writeln!(out, "\nfile descriptors ({})", p.fds.len())?;
    for fd in &p.fds {
        let (flags, pos, what) = match ck.files.get(fd.file as usize) {
            Some(FileImage::Path(f)) => (open_flags(f.flags), f.pos.to_string(), f.path.clone()),
            Some(FileImage::Pipe(end)) => {
                let pipe = ck.pipes.get(end.pipe as usize);
                (
                    open_flags(
                        end.flags
                            | if end.write_end {
                                libc::O_WRONLY
                            } else {
                                libc::O_RDONLY
                            },
                    ),
                    "-".to_string(),
                    format!(
                        "pipe:[{}] {} end, {} bytes buffered",
                        pipe.map_or(0, |p| p.inode),
                        if end.write_end { "write" } else { "read" },
                        pipe.map_or(0, |p| p.data.len())
                    ),
                )
            }
            Some(FileImage::Eventfd(e)) => (anon_flags(e.flags), "-".into(), eventfd_text(e)),
            Some(FileImage::Timerfd(t)) => (
                anon_flags(t.flags),
                "-".into(),
                format!("timerfd {}", clock_name(t.clockid)),
            ),
            Some(FileImage::Signalfd(s)) => (
                anon_flags(s.flags),
                "-".into(),
                format!("signalfd {}", signal_set(s.sigmask)),
            ),
            Some(FileImage::Epoll(e)) => (
                open_flags(e.flags | libc::O_RDWR),
                "-".to_string(),
                format!("epoll, {} registrations", e.targets.len()),
            ),
            Some(FileImage::Inotify(i)) => (
                open_flags(i.flags),
                "-".to_string(),
                format!("inotify, {} watches", i.watches.len()),
            ),
            Some(FileImage::UnixSocket(u)) => (
                open_flags(u.flags | libc::O_RDWR),
                "-".to_string(),
                unix_socket(u, p.fds.iter().find(|f| Some(f.file) == u.peer)),
            ),
            Some(FileImage::InetSocket(n)) => (
                open_flags(n.flags | libc::O_RDWR),
                "-".to_string(),
                inet_socket(n),
            ),
            Some(FileImage::Memfd(m)) => (
                open_flags(m.flags | libc::O_RDWR),
                m.pos.to_string(),
                format!("memfd:{} {} bytes, seals {:#x}", m.name, m.size, m.seals),
            ),
            Some(FileImage::Fifo(f)) => (
                open_flags(f.flags),
                "-".to_string(),
                format!("FIFO {}, {} bytes buffered", f.path, f.data.len()),
            ),
            None => (
                "?".to_string(),
                "-".to_string(),
                format!("file #{} (missing)", fd.file),
            ),
        };
        let shared = ck
            .processes
            .iter()
            .flat_map(|q| &q.fds)
            .filter(|o| o.file == fd.file)
            .count()
            > 1;
        let prefix = format!(
            "  {:>4}  {:<32} pos {:<10} {:<8} ",
            fd.fd,
            flags,
            pos,
            match (fd.cloexec, shared) {
                (true, true) => "cloexec,shared",
                (true, false) => "cloexec",
                (false, true) => "shared",
                (false, false) => "",
            }
        );
        writeln!(
            out,
            "{prefix}{}",
            fit(&what, WIDTH.saturating_sub(prefix.len()))
        )?;
        if let Some(FileImage::Timerfd(t)) = ck.files.get(fd.file as usize) {
            writeln!(out, "        {}", fit(&timer_state(t), WIDTH - 8))?;
        }
        if p.fds.iter().find(|o| o.file == fd.file).map(|o| o.fd) == Some(fd.fd) {
            write_registrations(out, ck.files.get(fd.file as usize))?;
        }
    }

    write_timers(out, p)?;
    writeln!(out, "\nseccomp filters ({}, oldest first)", p.seccomp.len())?;
    for (i, f) in p.seccomp.iter().enumerate() {
        writeln!(
            out,
            "  filter {i}: {} instructions, flags {:#x}",
            f.program.len(),
            f.flags
        )?;
    }
    write_vmas(out, &p.vmas, runs)
}

/// The registrations of an epoll description or the watches of an inotify
/// one, a line each, under the first fd that refers to it.
fn write_registrations(out: &mut String, file: Option<&FileImage>) -> fmt::Result {
    match file {
        Some(FileImage::Epoll(e)) => {
            for t in &e.targets {
                writeln!(
                    out,
                    "        fd {:<4} events {:#010x}  data {:#x}",
                    t.fd, t.events, t.data
                )?;
            }
        }
        Some(FileImage::Inotify(i)) => {
            for w in &i.watches {
                let prefix = format!("        wd {:<4} mask {:#010x}  ", w.wd, w.mask);
                writeln!(
                    out,
                    "{prefix}{}",
                    fit(&w.path, WIDTH.saturating_sub(prefix.len()))
                )?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn write_timers(out: &mut String, p: &crate::image::ProcessImage) -> fmt::Result {
    let ms = |ns: u64| ns as f64 / 1e6;
    writeln!(
        out,
        "\ntimers ({} POSIX, {} interval)",
        p.timers.len(),
        p.itimers.len()
    )?;
    for t in &p.timers {
        let notify = match t.notify & !libc::SIGEV_THREAD_ID {
            libc::SIGEV_NONE => "none".to_string(),
            libc::SIGEV_THREAD => "thread".to_string(),
            _ => signal_name(t.signo),
        };
        let target = if t.notify & libc::SIGEV_THREAD_ID != 0 {
            format!(" to thread {}", t.notify_tid)
        } else {
            String::new()
        };
        writeln!(
            out,
            "  timer {} clock {}: {notify}{target} value {:#x}; next in {:.3} ms, every {:.3} ms",
            t.id,
            t.clock,
            t.sigval,
            ms(t.value_ns),
            ms(t.interval_ns)
        )?;
    }
    for it in &p.itimers {
        let name = match it.which {
            libc::ITIMER_REAL => "ITIMER_REAL",
            libc::ITIMER_VIRTUAL => "ITIMER_VIRTUAL",
            _ => "ITIMER_PROF",
        };
        writeln!(
            out,
            "  {name}: next in {:.3} ms, every {:.3} ms",
            ms(it.value_us * 1000),
            ms(it.interval_us * 1000)
        )?;
    }
    Ok(())
}

fn write_thread(out: &mut String, t: &ThreadImage) -> fmt::Result {
    let r = &t.regs;
    writeln!(
        out,
        "  {} {:?}: rip {:#x} rsp {:#x} fs_base {:#x}",
        t.tid, t.comm, r.rip, r.rsp, r.fs_base
    )?;
    // orig_rax is -1 unless the thread stopped inside a system call.
    if (r.orig_rax as i64) >= 0 {
        writeln!(
            out,
            "      in system call {} (orig_rax), rax {}",
            r.orig_rax, r.rax as i64
        )?;
    } else {
        writeln!(out, "      not in a system call, rax {:#x}", r.rax)?;
    }
    writeln!(
        out,
        "      sigmask {:#018x} {}",
        t.sigmask,
        signal_set(t.sigmask)
    )?;
    let rseq = match t.rseq {
        Some(rs) => format!("{:#x} len {} sig {:#x}", rs.ptr, rs.len, rs.sig),
        None => "none".to_string(),
    };
    writeln!(out, "      rseq {rseq}; altstack {}", altstack(&t.altstack))?;
    writeln!(out, "      pending {}", pending_list(&t.pending))?;
    let c = &t.privileges;
    writeln!(
        out,
        "      caps eff {:#x} prm {:#x} inh {:#x} bnd {:#x} amb {:#x}",
        c.effective, c.permitted, c.inheritable, c.bounding, c.ambient
    )?;
    writeln!(
        out,
        "      securebits {:#x}; no_new_privs {}",
        c.securebits,
        if c.no_new_privs { "set" } else { "clear" }
    )
}

fn write_vmas(out: &mut String, vmas: &[Vma], runs: &[PageRun]) -> fmt::Result {
    let mut sorted = runs.to_vec();
    sorted.sort_by_key(|r| r.vaddr);
    let digits = vmas
        .iter()
        .map(|v| format!("{:x}", v.end).len())
        .max()
        .unwrap_or(12);
    writeln!(out, "\nmappings ({})", vmas.len())?;
    writeln!(
        out,
        "  {:<w$}  perm  {:>8} {:>8} {:>8}  backing",
        "range",
        "pages",
        "data",
        "zero",
        w = 2 * digits + 1
    )?;
    let (mut in_vmas_data, mut in_vmas_zero) = (0, 0);
    for v in vmas {
        let (data, zero) = pages_in(&sorted, v.start, v.end);
        in_vmas_data += data;
        in_vmas_zero += zero;
        let prefix = format!(
            "  {:0w$x}-{:0w$x}  {}   {:>8} {:>8} {:>8}  ",
            v.start,
            v.end,
            perms(v.prot),
            v.pages(),
            data,
            zero,
            w = digits
        );
        writeln!(
            out,
            "{prefix}{}",
            fit(&vma_backing(&v.kind), WIDTH.saturating_sub(prefix.len()))
        )?;
    }
    let data: u64 = runs.iter().filter(|r| !r.zero).map(|r| r.npages).sum();
    let zero: u64 = runs.iter().filter(|r| r.zero).map(|r| r.npages).sum();
    writeln!(
        out,
        "\ntotal: {} pages in the image ({} data, {} zero), {} bytes of page data",
        data + zero,
        data,
        zero,
        data * PAGE_SIZE
    )?;
    let outside = (data + zero).saturating_sub(in_vmas_data + in_vmas_zero);
    if outside != 0 {
        writeln!(
            out,
            "warning: {outside} pages in the image lie outside every mapping"
        )?;
    }
    Ok(())
}

/// Data and zero pages of `runs` (sorted by address) inside [start, end).
fn pages_in(sorted: &[PageRun], start: u64, end: u64) -> (u64, u64) {
    let first = sorted.partition_point(|r| r.vaddr + r.npages * PAGE_SIZE <= start);
    let (mut data, mut zero) = (0, 0);
    for r in sorted[first..].iter().take_while(|r| r.vaddr < end) {
        let lo = r.vaddr.max(start);
        let hi = (r.vaddr + r.npages * PAGE_SIZE).min(end);
        let n = hi.saturating_sub(lo) / PAGE_SIZE;
        if r.zero {
            zero += n;
        } else {
            data += n;
        }
    }
    (data, zero)
}

fn vma_backing(kind: &VmaKind) -> String {
    match kind {
        VmaKind::Anonymous => "anonymous".to_string(),
        VmaKind::Heap => "[heap]".to_string(),
        VmaKind::Stack => "[stack]".to_string(),
        VmaKind::File {
            path, offset: 0, ..
        } => path.clone(),
        VmaKind::File { path, offset, .. } => format!("{path} @{offset:#x}"),
        VmaKind::SharedAnonymous { inode, offset } => {
            format!("shared anonymous (shmem inode {inode}, offset {offset:#x})")
        }
        VmaKind::SharedFile { path, offset } => format!("{path} @{offset:#x} (shared)"),
        VmaKind::SharedMemfd { inode, offset } => {
            format!("memfd inode {inode} @{offset:#x} (shared)")
        }
        VmaKind::SysvShm { shmid } => format!("SysV shm {shmid}"),
        VmaKind::Vdso => "[vdso]".to_string(),
        VmaKind::Vvar => "[vvar]".to_string(),
        VmaKind::VvarVclock => "[vvar_vclock]".to_string(),
        VmaKind::Vsyscall => "[vsyscall]".to_string(),
    }
}

fn perms(prot: u32) -> String {
    [
        (libc::PROT_READ, 'r'),
        (libc::PROT_WRITE, 'w'),
        (libc::PROT_EXEC, 'x'),
    ]
    .iter()
    .map(|&(bit, c)| if prot & bit as u32 != 0 { c } else { '-' })
    .collect()
}

/// "SIGUSR1 (10)", "SIGRTMIN+2 (34)".
fn signal_name(signo: i32) -> String {
    match signo {
        1..=31 => format!("{} ({signo})", SIGNAL_NAMES[signo as usize - 1]),
        SIGRTMIN..=64 => format!("SIGRTMIN+{} ({signo})", signo - SIGRTMIN),
        _ => format!("signal {signo}"),
    }
}

/// The signals of a mask (bit n-1 is signal n), named when few enough to
/// read.
fn signal_set(mask: u64) -> String {
    match mask.count_ones() {
        0 => "(none)".to_string(),
        n @ 9.. => format!("({n} signals)"),
        _ => {
            let names: Vec<String> = (1..=64)
                .filter(|s| mask & (1u64 << (s - 1)) != 0)
                .map(signal_name)
                .collect();
            format!("({})", names.join(", "))
        }
    }
}

fn pending_list(pending: &[PendingSignal]) -> String {
    if pending.is_empty() {
        return "none".to_string();
    }
    let items: Vec<String> = pending
        .iter()
        .map(|s| {
            let word = |at: usize| {
                s.siginfo
                    .get(at..at + 4)
                    .and_then(|b| b.try_into().ok())
                    .map(i32::from_le_bytes)
            };
            // si_code at byte 8; for user-sent signals (si_code <= 0) the
            // sender's pid follows at byte 16.
            match (word(8), word(16)) {
                (Some(code), Some(pid)) if code <= 0 => {
                    format!("{} si_code {code} from pid {pid}", signal_name(s.signo))
                }
                (Some(code), _) => format!("{} si_code {code}", signal_name(s.signo)),
                (None, _) => format!("{} (short siginfo)", signal_name(s.signo)),
            }
        })
        .collect();
    items.join("; ")
}

fn altstack(a: &AltStack) -> String {
    if a.flags & SS_DISABLE != 0 {
        return "disabled".to_string();
    }
    let autodisarm = if a.flags & SS_AUTODISARM != 0 {
        " autodisarm"
    } else {
        ""
    };
    format!("{:#x} size {:#x}{autodisarm}", a.sp, a.size)
}

/// "O_WRONLY|O_APPEND": the access mode, then the status flags.
fn open_flags(flags: i32) -> String {
    let mode = match flags & libc::O_ACCMODE {
        libc::O_RDONLY => "O_RDONLY",
        libc::O_WRONLY => "O_WRONLY",
        libc::O_RDWR => "O_RDWR",
        _ => "O_ACCMODE",
    };
    let rest = (flags & !libc::O_ACCMODE) as u32 as u64;
    match flag_names(rest, OPEN_FLAGS) {
        Some(names) => format!("{mode}|{names}"),
        None => mode.to_string(),
    }
}

/// The open flags of an eventfd, timerfd or signalfd: always O_RDWR.
fn anon_flags(status: i32) -> String {
    open_flags(status | libc::O_RDWR)
}

fn eventfd_text(e: &EventfdImage) -> String {
    format!(
        "eventfd count {}{}",
        e.count,
        if e.semaphore { ", semaphore" } else { "" }
    )
}

fn clock_name(clockid: i32) -> String {
    match clockid {
        libc::CLOCK_REALTIME => "CLOCK_REALTIME".to_string(),
        libc::CLOCK_MONOTONIC => "CLOCK_MONOTONIC".to_string(),
        libc::CLOCK_BOOTTIME => "CLOCK_BOOTTIME".to_string(),
        libc::CLOCK_REALTIME_ALARM => "CLOCK_REALTIME_ALARM".to_string(),
        libc::CLOCK_BOOTTIME_ALARM => "CLOCK_BOOTTIME_ALARM".to_string(),
        other => format!("clock {other}"),
    }
}

/// A timer's unread expirations, next expiry, period and settime flags.
fn timer_state(t: &TimerfdImage) -> String {
    let secs = |ns: u64| format!("{:.6} s", ns as f64 / 1e9);
    let mut text = format!("{} unread, ", t.ticks);
    text += &match (t.remaining_ns, t.deadline_ns) {
        (0, _) => "disarmed".to_string(),
        (_, Some(at)) => format!("next at {}", utc_time(at / 1_000_000_000)),
        (left, None) => format!("next in {}", secs(left)),
    };
    if t.interval_ns != 0 {
        text += &format!(", every {}", secs(t.interval_ns));
    }
    if let Some(names) = flag_names(t.settime_flags as u64, TFD_FLAGS) {
        text += &format!(", {names}");
    }
    text
}

/// Names the bits of `value` from `table` ("A|B"), with any unknown bits in
/// hex; None when no bit is set.
fn flag_names(value: u64, table: &[(u64, &str)]) -> Option<String> {
    let mut left = value;
    let mut names: Vec<String> = Vec::new();
    for &(bits, name) in table {
        if bits != 0 && left & bits == bits {
            names.push(name.to_string());
            left &= !bits;
        }
    }
    if left != 0 {
        names.push(format!("{left:#x}"));
    }
    (!names.is_empty()).then(|| names.join("|"))
}

fn join_display(values: &[u32]) -> String {
    if values.is_empty() {
        return "none".to_string();
    }
    let parts: Vec<String> = values.iter().map(u32::to_string).collect();
    parts.join(" ")
}

/// `text` shortened from the left to at most `width` characters.
fn fit(text: &str, width: usize) -> String {
    let len = text.chars().count();
    if len <= width {
        return text.to_string();
    }
    let tail: String = text.chars().skip(len - width.saturating_sub(1)).collect();
    format!("…{tail}")
}

/// "2026-11-28 15:30:00 UTC" from seconds since the epoch (proleptic
/// Gregorian calendar; H. Hinnant's days-to-civil algorithm).
fn utc_time(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

/// Names a socket type.
fn socket_type(ty: i32) -> String {
    match ty {
        libc::SOCK_STREAM => "stream".into(),
        libc::SOCK_DGRAM => "dgram".into(),
        libc::SOCK_SEQPACKET => "seqpacket".into(),
        other => format!("type-{other}"),
    }
}

/// The socket options that are set, by name.
fn socket_options(o: &SocketOptions, extra: &[(&str, bool)]) -> String {
    let mut out = String::new();
    for (name, on) in [("reuseaddr", o.reuse_addr), ("reuseport", o.reuse_port)]
        .iter()
        .chain(extra)
    {
        if *on {
            write!(out, ", {name}").expect("writing to a String");
        }
    }
    out
}

/// One line about a unix socket: name, state, the fd of its peer, queued
/// data, options.
fn unix_socket(u: &UnixSocket, peer_fd: Option<&FdImage>) -> String {
    let mut out = format!("unix {}", socket_type(u.sock_type));
    match &u.name {
        Some(n) if n.first() == Some(&0) => {
            write!(out, " @{}", String::from_utf8_lossy(&n[1..]))
        }
        Some(n) => write!(out, " {}", String::from_utf8_lossy(n)),
        None => Ok(()),
    }
    .expect("writing to a String");
    if let Some(b) = u.listen_backlog {
        write!(out, " listening({b})").expect("writing to a String");
    }
    if let Some(p) = peer_fd {
        write!(
            out,
            " <-> fd {}, {} B in {} msgs",
            p.fd,
            u.queued.iter().map(Vec::len).sum::<usize>(),
            u.queued.len()
        )
        .expect("writing to a String");
    }
    out + &socket_options(&u.options, &[])
}

/// One line about a TCP or UDP socket: address, state, options.
fn inet_socket(n: &InetSocket) -> String {
    let proto = if n.sock_type == libc::SOCK_STREAM {
        "tcp"
    } else {
        "udp"
    };
    let mut out = format!("{proto}{}", if n.ipv6 { "6" } else { "" });
    match n.local {
        Some(a) => write!(out, " {a}"),
        None => write!(out, " (unbound)"),
    }
    .expect("writing to a String");
    if let Some(b) = n.listen_backlog {
        write!(out, " listening({b})").expect("writing to a String");
    }
    out + &socket_options(&n.options, &[("v6only", n.v6only), ("nodelay", n.nodelay)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::format::ImageWriter;
    use crate::image::testutil::{
        checkpoint_with_anon, rewrite_manifest, sample_checkpoint, TempDir,
    };

    #[test]
    fn describe_covers_every_section_within_the_width() {
        let dir = TempDir::new("show");
        let mut w = ImageWriter::create(dir.path()).unwrap();
        // Two code pages, some heap, a zero run in the anonymous mapping
        // and the stack, plus one page no mapping covers.
        w.write_pages(4242, 0x5555_5555_4000, &[0x90; 2 * 4096])
            .unwrap();
        w.write_pages(4242, 0x5555_5555_9000, &[1; 3 * 4096])
            .unwrap();
        w.write_zero_pages(4242, 0x7f00_0000_0000, 100).unwrap();
        w.write_pages(4242, 0x7ffd_1234_6000, &[2; 4096]).unwrap();
        w.write_pages(4242, 0x1000, &[3; 4096]).unwrap();
        // The writer drops pages outside every mapping, so commit with a
        // mapping at 0x1000, then swap in the sample checkpoint: the index
        // (of an older or damaged image) then has a page nothing maps.
        w.commit(&checkpoint_with_anon(&[(0x1000, 0x2000)]))
            .unwrap();
        rewrite_manifest(dir.path(), |m| m.checkpoint = sample_checkpoint());
        let reader = ImageReader::open(dir.path()).unwrap();
        let text = describe(&reader);
        println!("{text}");
        for line in text.lines() {
            assert!(line.chars().count() <= WIDTH, "too wide: {line}");
        }
        for needle in [
            "format version 3",
            "SysV shm 32769 key 0x4242, 10000 bytes, mode 640, owner 1000:1000",
            "1 processes, 1 zombies, 13 open file descriptions",
            "zombie 4243 (parent 4242, group 4000, session 4000) wait status 0x300",
            "parent 4000   group 4000   session 4000",
            "XCR0 0x7 (x87 sse avx), xstate 832 bytes",
            "process 4242 \"sleeper\"",
            "umask  0022",
            "in system call 230 (orig_rax), rax -516",
            "not in a system call",
            "sigmask 0x0000000000000200 (SIGUSR1 (10))",
            "altstack disabled",
            "SIGUSR2 (12) si_code 0 from pid 0",
            "SIGRTMIN+4 (36)",
            "SA_SIGINFO|SA_RESTORER|SA_RESTART",
            "SIG_IGN",
            "O_WRONLY|O_APPEND|O_LARGEFILE",
            "cloexec",
            "/usr/bin/sleeper",
            "eventfd count 5, semaphore",
            "timerfd CLOCK_MONOTONIC",
            "3 unread, next in 0.015000 s, every 0.020000 s",
            "signalfd (SIGUSR2 (12))",
            "epoll, 2 registrations",
            "fd 8    events 0x00000019  data 0xdeadbeef",
            "inotify, 2 watches",
            "wd 3    mask 0x00000002  /tmp/sleeper.log",
            "[heap]",
            "unix dgram <-> fd 13, 7 B in 2 msgs",
            "unix stream @sleeper listening(16)",
            "listening(128), reuseaddr, nodelay",
            "filter 0: 1 instructions, flags 0x0",
            "caps eff 0x400 prm 0x1ffffffffff inh 0x0 bnd 0x1ffffffffff amb 0x0",
            "securebits 0x10; no_new_privs set",
            "timer 7 clock 1: SIGUSR2 (12) value 0x1234; next in 15.000 ms, every 20.000 ms",
            "ITIMER_REAL: next in 1500.000 ms, every 0.000 ms",
            "total: 107 pages in the image (7 data, 100 zero), 28672 bytes of page data",
            "warning: 1 pages in the image lie outside every mapping",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        assert!(!text.contains("SIGHUP"), "SIG_DFL handlers are not listed");
    }

    #[test]
    fn helpers_name_values() {
        assert_eq!(utc_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_time(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc_time(1_764_343_800), "2025-11-28 15:30:00 UTC");
        assert_eq!(signal_name(64), "SIGRTMIN+32 (64)");
        assert_eq!(signal_name(0), "signal 0");
        assert_eq!(open_flags(libc::O_RDWR | libc::O_SYNC), "O_RDWR|O_SYNC");
        assert_eq!(
            open_flags(0o100000 | 0x4000_0000),
            "O_RDONLY|O_LARGEFILE|0x40000000"
        );
        assert_eq!(perms(5), "r-x");
        assert_eq!(fit("/a/very/long/path", 8), "…ng/path");
        assert_eq!(signal_set(u64::MAX), "(64 signals)");
    }
}
