//! The description of one process: identity, credentials, threads,
//! signals, files, timers and the table of mappings.

use super::fields::*;
use crate::image::format::PageRun;
use crate::image::model::{FileImage, FileOwnerKind, ThreadImage, ThreadSched, Vma, PAGE_SIZE};
use std::fmt::{self, Write};

/// Describes one process of the tree, with `runs`, its pages.
pub(super) fn write_process(
    out: &mut String,
    ck: &crate::image::Checkpoint,
    p: &crate::image::ProcessImage,
    runs: &[PageRun],
) -> fmt::Result {
    writeln!(out, "\nprocess {} {:?}", p.pid, p.comm)?;
    let subreaper = if p.child_subreaper {
        "   child subreaper"
    } else {
        ""
    };
    writeln!(
        out,
        "  parent {}   group {}   session {}{subreaper}",
        p.ppid, p.pgid, p.sid
    )?;
    writeln!(out, "  exe    {}", p.exe)?;
    writeln!(out, "  cwd    {}", p.cwd)?;
    if p.root != "/" {
        writeln!(out, "  root   {}", p.root)?;
    }
    writeln!(out, "  umask  {:04o}", p.umask)?;
    if p.stopped {
        writeln!(out, "  stopped by job control (restored stopped)")?;
    }
    let [ruid, euid, suid, fsuid] = p.creds.uids;
    let [rgid, egid, sgid, fsgid] = p.creds.gids;
    writeln!(
        out,
        "  uids   real {ruid} effective {euid} saved {suid} fs {fsuid}"
    )?;
    writeln!(
        out,
        "  gids   real {rgid} effective {egid} saved {sgid} fs {fsgid}; groups {}; dumpable {}",
        join_display(&p.creds.groups),
        p.creds.dumpable
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
    if mm.membarrier != 0 {
        writeln!(out, "  membarrier registrations {:#x}", mm.membarrier)?;
    }

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
            Some(FileImage::Path(f)) => {
                let what = match f.ghost.and_then(|g| ck.ghost_files.get(g as usize)) {
                    Some(g) => match g.device {
                        Some(d) => format!(
                            "{} (deleted {} device {}:{})",
                            f.path,
                            if d.block { "block" } else { "character" },
                            d.major,
                            d.minor
                        ),
                        None => format!("{} (deleted, {} bytes carried)", f.path, g.size),
                    },
                    None => f.path.clone(),
                };
                (open_flags(f.flags), f.pos.to_string(), what)
            }
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
            Some(FileImage::TcpConnection(c)) => (
                open_flags(c.flags | libc::O_RDWR),
                "-".to_string(),
                tcp_connection(c),
            ),
            Some(FileImage::Memfd(m)) => (
                open_flags(m.flags | m.access),
                m.pos.to_string(),
                format!(
                    "memfd:{} {} bytes, seals {:#x}, mode {:04o}",
                    m.name, m.size, m.seals, m.mode
                ),
            ),
            Some(FileImage::Pidfd(d)) => (
                open_flags(d.flags | libc::O_RDWR),
                "-".to_string(),
                match d.pid {
                    Some(pid) => format!("pidfd of process {pid}"),
                    None => "pidfd of a dead process".to_string(),
                },
            ),
            Some(FileImage::Fifo(f)) => (
                open_flags(f.flags),
                "-".to_string(),
                format!("FIFO {}, {} bytes buffered", f.path, f.data.len()),
            ),
            Some(FileImage::ExternalStdio(s)) => (
                open_flags(s.flags),
                "-".to_string(),
                format!("{} -> the container's stdio fd {}", s.target, s.slot),
            ),
            Some(FileImage::NetlinkSocket(n)) => (
                open_flags(n.flags | libc::O_RDWR),
                "-".to_string(),
                format!(
                    "netlink protocol {}, port id {}, groups {:?}, to port id {} group {}",
                    n.protocol, n.port_id, n.groups, n.dst_port_id, n.dst_group
                ),
            ),
            Some(FileImage::PacketSocket(k)) => (
                open_flags(k.flags | libc::O_RDWR),
                "-".to_string(),
                format!(
                    "packet type {} protocol {:#06x}, interface {}{}, {} memberships, fanout {:#x}",
                    k.sock_type,
                    u16::from_be(k.protocol),
                    k.ifindex,
                    String::from_utf8_lossy(&k.device),
                    k.memberships.len(),
                    k.fanout
                ),
            ),
            Some(FileImage::Fanotify(f)) => (
                open_flags(f.flags),
                "-".to_string(),
                format!("fanotify, {} marks", f.marks.len()),
            ),
            Some(FileImage::Pty(end)) => (
                open_flags(end.flags),
                "-".to_string(),
                format!(
                    "pseudo-terminal {} {}",
                    ck.ptys.get(end.pty as usize).map_or(0, |t| t.index),
                    if end.master { "master" } else { "slave" }
                ),
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
        if let Some(o) = p.file_owners.iter().find(|o| o.fd == fd.fd) {
            let to = match o.kind {
                _ if o.pid == 0 => "no owner".to_string(),
                FileOwnerKind::Thread => format!("to thread {}", o.pid),
                FileOwnerKind::Process => format!("to process {}", o.pid),
                FileOwnerKind::ProcessGroup => format!("to group {}", o.pid),
            };
            let async_io = if o.async_io { ", O_ASYNC" } else { "" };
            writeln!(out, "        signal {} {to}{async_io}", o.signal)?;
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
pub(super) fn write_registrations(out: &mut String, file: Option<&FileImage>) -> fmt::Result {
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

pub(super) fn write_timers(out: &mut String, p: &crate::image::ProcessImage) -> fmt::Result {
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

pub(super) fn write_thread(out: &mut String, t: &ThreadImage) -> fmt::Result {
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
    let pdeath = match t.pdeath_signal {
        0 => String::new(),
        signo => format!("; pdeath signal {}", signal_name(signo)),
    };
    writeln!(
        out,
        "      securebits {:#x}; no_new_privs {}{pdeath}",
        c.securebits,
        if c.no_new_privs { "set" } else { "clear" }
    )?;
    if t.sched != ThreadSched::default() {
        let s = &t.sched;
        writeln!(
            out,
            "      sched policy {}{} priority {} nice {}",
            s.policy,
            if s.reset_on_fork {
                " (reset on fork)"
            } else {
                ""
            },
            s.rt_priority,
            s.nice
        )?;
    }
    Ok(())
}

pub(super) fn write_vmas(out: &mut String, vmas: &[Vma], runs: &[PageRun]) -> fmt::Result {
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
pub(super) fn pages_in(sorted: &[PageRun], start: u64, end: u64) -> (u64, u64) {
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
