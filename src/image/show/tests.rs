//! `describe` over a sample image that has every section, and the value
//! renderers.

use super::fields::{fit, open_flags, perms, signal_name, signal_set, utc_time, WIDTH};
use super::*;
use crate::image::format::ImageWriter;
use crate::image::testutil::{checkpoint_with_anon, rewrite_manifest, sample_checkpoint, TempDir};

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
        "format version 9",
        "TCP 10.0.0.1:80 -> [::ffff:10.0.0.2]:5000 (locked while frozen)",
        "network lock ferry_0011223344556677_4242_1 engaged until restore",
        "SysV shm 32769 key 0x4242, 10000 bytes, mode 640, owner 1000:1000",
        "1 processes, 1 zombies, 13 open file descriptions",
        "zombie 4243 (parent 4242, group 4000, session 4000) wait status 0x300",
        "parent 4000   group 4000   session 4000",
        "session 4000   child subreaper",
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
        "no_new_privs set; pdeath signal SIGKILL (9)",
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
