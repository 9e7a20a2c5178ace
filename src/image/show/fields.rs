//! How single values are rendered: signal and flag names, times, socket
//! states, and text fitted to the line width.

use crate::image::model::{
    AltStack, EventfdImage, FdImage, InetSocket, PendingSignal, SocketOptions, TimerfdImage,
    UnixSocket, VmaKind,
};
use std::fmt::Write;

/// Lines are kept within this many columns; long paths are shortened from
/// the left, where they matter least.
pub(super) const WIDTH: usize = 100;

/// Names of signals 1..=31 (x86_64 numbering).
pub(super) const SIGNAL_NAMES: [&str; 31] = [
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
pub(super) const SIGRTMIN: i32 = 32;

/// SA_* flags as the x86_64 kernel defines them; libc lacks SA_RESTORER.
pub(super) const SA_FLAGS: &[(u64, &str)] = &[
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
pub(super) const OPEN_FLAGS: &[(u64, &str)] = &[
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
pub(super) const TFD_FLAGS: &[(u64, &str)] = &[
    (libc::TFD_TIMER_ABSTIME as u64, "TFD_TIMER_ABSTIME"),
    (
        libc::TFD_TIMER_CANCEL_ON_SET as u64,
        "TFD_TIMER_CANCEL_ON_SET",
    ),
];
pub(super) const SS_DISABLE: i32 = 2;
pub(super) const SS_AUTODISARM: i32 = 1 << 31;

pub(super) fn vma_backing(kind: &VmaKind) -> String {
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
        VmaKind::PrivateShmem { inode, offset } => {
            format!("shared anonymous (shmem inode {inode}, offset {offset:#x}) (private)")
        }
        VmaKind::PacketRing { inode, offset } => {
            format!("packet socket rings (inode {inode}) @{offset:#x}")
        }
    }
}

pub(super) fn perms(prot: u32) -> String {
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
pub(super) fn signal_name(signo: i32) -> String {
    match signo {
        1..=31 => format!("{} ({signo})", SIGNAL_NAMES[signo as usize - 1]),
        SIGRTMIN..=64 => format!("SIGRTMIN+{} ({signo})", signo - SIGRTMIN),
        _ => format!("signal {signo}"),
    }
}

/// The signals of a mask (bit n-1 is signal n), named when few enough to
/// read.
pub(super) fn signal_set(mask: u64) -> String {
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

pub(super) fn pending_list(pending: &[PendingSignal]) -> String {
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

pub(super) fn altstack(a: &AltStack) -> String {
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
pub(super) fn open_flags(flags: i32) -> String {
    let mode = match flags & libc::O_ACCMODE {
        libc::O_RDONLY => "O_RDONLY",
        libc::O_WRONLY => "O_WRONLY",
        libc::O_RDWR => "O_RDWR",
        _ => "O_ACCMODE",
    };
    let rest = u64::from((flags & !libc::O_ACCMODE) as u32);
    match flag_names(rest, OPEN_FLAGS) {
        Some(names) => format!("{mode}|{names}"),
        None => mode.to_string(),
    }
}

/// The open flags of an eventfd, timerfd or signalfd: always O_RDWR.
pub(super) fn anon_flags(status: i32) -> String {
    open_flags(status | libc::O_RDWR)
}

pub(super) fn eventfd_text(e: &EventfdImage) -> String {
    format!(
        "eventfd count {}{}",
        e.count,
        if e.semaphore { ", semaphore" } else { "" }
    )
}

pub(super) fn clock_name(clockid: i32) -> String {
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
pub(super) fn timer_state(t: &TimerfdImage) -> String {
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
pub(super) fn flag_names(value: u64, table: &[(u64, &str)]) -> Option<String> {
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

pub(super) fn join_display(values: &[u32]) -> String {
    if values.is_empty() {
        return "none".to_string();
    }
    let parts: Vec<String> = values.iter().map(u32::to_string).collect();
    parts.join(" ")
}

/// `text` shortened from the left to at most `width` characters.
pub(super) fn fit(text: &str, width: usize) -> String {
    let len = text.chars().count();
    if len <= width {
        return text.to_string();
    }
    let tail: String = text.chars().skip(len - width.saturating_sub(1)).collect();
    format!("…{tail}")
}

/// "2026-11-28 15:30:00 UTC" from seconds since the epoch (proleptic
/// Gregorian calendar; H. Hinnant's days-to-civil algorithm).
pub(crate) fn utc_time(secs: u64) -> String {
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
pub(super) fn socket_type(ty: i32) -> String {
    match ty {
        libc::SOCK_STREAM => "stream".into(),
        libc::SOCK_DGRAM => "dgram".into(),
        libc::SOCK_SEQPACKET => "seqpacket".into(),
        other => format!("type-{other}"),
    }
}

/// The socket options that are set, by name.
pub(super) fn socket_options(o: &SocketOptions, extra: &[(&str, bool)]) -> String {
    let mut out = String::new();
    for (name, on) in [("reuseaddr", o.reuse_addr), ("reuseport", o.reuse_port)]
        .iter()
        .chain(extra)
    {
        if *on {
            write!(out, ", {name}").expect("writing to a String");
        }
    }
    if let Some(secs) = o.linger {
        write!(out, ", linger {secs}s").expect("writing to a String");
    }
    if let Some(dev) = &o.bound_device {
        write!(out, ", device {dev}").expect("writing to a String");
    }
    out
}

/// One line about a unix socket: name, state, the fd of its peer, queued
/// data, options.
pub(super) fn unix_socket(u: &UnixSocket, peer_fd: Option<&FdImage>) -> String {
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
    if u.peer_gone {
        out.push_str(", peer closed");
    }
    if let Some(t) = u.connect_to {
        write!(out, ", connected by name to file #{t}").expect("writing to a String");
    }
    if !u.accept_queue.is_empty() {
        write!(out, ", {} not accepted", u.accept_queue.len()).expect("writing to a String");
    }
    match u.shutdown & 3 {
        1 => out.push_str(", shut for reading"),
        2 => out.push_str(", shut for writing"),
        3 if !u.peer_gone => out.push_str(", shut down"),
        _ => {}
    }
    let in_flight: usize = u.queued_ancillary.iter().map(|a| a.fds.len()).sum();
    if in_flight > 0 {
        write!(out, ", {in_flight} files in flight").expect("writing to a String");
    }
    if let Some(f) = u.bound_file {
        write!(out, ", file {}:{} {:04o}", f.uid, f.gid, f.mode).expect("writing to a String");
    }
    out + &socket_options(&u.options, &[])
}

/// One line about a TCP or UDP socket: address, state, options.
pub(super) fn inet_socket(n: &InetSocket) -> String {
    let proto = match n.protocol {
        libc::IPPROTO_UDPLITE => "udplite",
        _ if n.sock_type == libc::SOCK_STREAM => "tcp",
        _ if n.sock_type == libc::SOCK_RAW => "raw",
        _ => "udp",
    };
    let mut out = format!("{proto}{}", if n.ipv6 { "6" } else { "" });
    if n.sock_type == libc::SOCK_RAW {
        write!(out, "({})", n.protocol).expect("writing to a String");
    }
    match n.local {
        Some(a) => write!(out, " {a}"),
        None => write!(out, " (unbound)"),
    }
    .expect("writing to a String");
    if let Some(b) = n.listen_backlog {
        write!(out, " listening({b})").expect("writing to a String");
    }
    if let Some(p) = n.peer {
        write!(out, " -> {p}").expect("writing to a String");
    }
    match n.shutdown & 3 {
        1 => out += " shut(rd)",
        2 => out += " shut(wr)",
        3 => out += " shut(rdwr)",
        _ => {}
    }
    if !n.queued.is_empty() {
        write!(
            out,
            ", {} B in {} datagrams",
            n.queued.iter().map(|d| d.data.len()).sum::<usize>(),
            n.queued.len()
        )
        .expect("writing to a String");
    }
    let flags = [
        ("v6only", n.v6only),
        ("nodelay", n.nodelay),
        ("broadcast", n.broadcast),
    ];
    out + &socket_options(&n.options, &flags)
}

/// One line about a TCP connection: queued data, options, state, then
/// the addresses (at the end, which a narrow column keeps).
pub(super) fn tcp_connection(c: &crate::image::TcpConnection) -> String {
    let options = socket_options(
        &c.options,
        &[
            ("v6only", c.v6only),
            ("nodelay", c.settings.nodelay),
            ("cork", c.settings.cork),
            ("keepalive", c.settings.keepalive),
        ],
    );
    format!(
        "in {} out {} ({} unsent){options}, tcp{} {:?} {} -> {}",
        c.recv_queue.len(),
        c.send_queue.len(),
        c.unsent,
        if c.ipv6 { "6" } else { "" },
        c.state,
        c.local,
        c.remote,
    )
}
