//! The /init of the soft-dirty VM test (tests/softdirty_vm.rs runs
//! scripts/softdirty-vm.sh, which builds this statically and boots it in
//! Debian's 6.1 kernel under qemu): the development host's kernel lacks
//! CONFIG_MEM_SOFT_DIRTY, so `SoftDirtyTracker` can only be tried there.
//!
//! It mounts /proc, checks that the probe chooses soft-dirty, starts a
//! child (itself, with the argument `child`) that writes pages on command,
//! tracks the child over several rounds and checks that exactly the written
//! pages are reported (plus every page of a mapping the kernel marks
//! VM_SOFTDIRTY, "sd", i.e. created or merged since the last clear), also
//! across a munmap and mmap between rounds. Then it checkpoints the child
//! while it rewrites pages without pause (pre-copy on soft-dirty) and checks
//! that the image holds one consistent moment of its memory. Every check
//! prints a `PASS` or `FAIL` line; the last line is `softdirty-vm: PASS` or
//! `softdirty-vm: FAIL`, then the machine powers off.

use ferry::dump::{checkpoint, CheckpointOptions};
use ferry::image::{ImageReader, PageData, Vma, PAGE_SIZE};
use ferry::memory::{DirtyBackend, DirtyTracker, SoftDirtyTracker};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{ChildStdin, ChildStdout, Command, Stdio};

/// Pages of the child's region A, written page by page on command.
const A_PAGES: usize = 256;
/// Pages of region B, unmapped and mapped again (bigger) in one round.
const B_PAGES: usize = 64;
/// Pages of region B once mapped again.
const B_NEW_PAGES: usize = 96;
const PAGE: usize = PAGE_SIZE as usize;

fn main() {
    if std::env::args().nth(1).as_deref() == Some("child") {
        child();
        return;
    }
    let mut checks = Checks::default();
    if let Err(err) = init(&mut checks) {
        checks.check("setup", false, err);
    }
    let verdict = if checks.failed == 0 { "PASS" } else { "FAIL" };
    println!(
        "softdirty-vm: {verdict} ({} passed, {} failed)",
        checks.passed, checks.failed
    );
    nix::unistd::sync();
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
}

/// Counts and prints the checks.
#[derive(Default)]
struct Checks {
    passed: u32,
    failed: u32,
}

impl Checks {
    fn check(&mut self, name: &str, ok: bool, detail: impl std::fmt::Display) {
        if ok {
            self.passed += 1;
            println!("softdirty-vm: PASS {name}: {detail}");
        } else {
            self.failed += 1;
            println!("softdirty-vm: FAIL {name}: {detail}");
        }
    }
}

fn init(checks: &mut Checks) -> Result<(), String> {
    use nix::mount::{mount, MsFlags};
    for (what, fstype) in [("/proc", "proc"), ("/dev", "devtmpfs")] {
        std::fs::create_dir_all(what).map_err(|e| format!("mkdir {what}: {e}"))?;
        mount(
            Some(fstype),
            what,
            Some(fstype),
            MsFlags::empty(),
            None::<&str>,
        )
        .map_err(|e| format!("mount {fstype} on {what}: {e}"))?;
    }
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!("softdirty-vm: kernel {}", release.trim());

    let backend = DirtyBackend::detect();
    checks.check(
        "backend",
        backend == DirtyBackend::SoftDirty,
        format!("the probe chose {}", backend.as_str()),
    );

    let mut child = Child::spawn()?;
    track_child(checks, &mut child)?;
    checkpoint_child(checks, child)
}

/// The child process and the command pipe to it.
struct Child {
    process: std::process::Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Child {
    fn spawn() -> Result<Child, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let mut process = Command::new(exe)
            .arg("child")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawning the child: {e}"))?;
        let stdin = process.stdin.take().ok_or("no child stdin")?;
        let stdout = BufReader::new(process.stdout.take().ok_or("no child stdout")?);
        Ok(Child {
            process,
            stdin,
            stdout,
        })
    }

    fn pid(&self) -> i32 {
        self.process.id() as i32
    }

    /// Sends one command line and returns the child's answer line.
    fn command(&mut self, line: &str) -> Result<String, String> {
        writeln!(self.stdin, "{line}").map_err(|e| format!("sending {line:?}: {e}"))?;
        self.answer()
    }

    fn answer(&mut self) -> Result<String, String> {
        let mut answer = String::new();
        self.stdout
            .read_line(&mut answer)
            .map_err(|e| format!("reading the child's answer: {e}"))?;
        if answer.is_empty() {
            return Err("the child closed its stdout".into());
        }
        Ok(answer.trim().to_string())
    }

    /// Reads a "NAME addr pages" line: a region's page-aligned range.
    fn region(&mut self, answer: Option<String>) -> Result<(u64, u64), String> {
        let line = match answer {
            Some(line) => line,
            None => self.answer()?,
        };
        let mut words = line.split_whitespace().skip(1);
        let parse = |w: Option<&str>, radix| {
            w.and_then(|w| u64::from_str_radix(w, radix).ok())
                .ok_or_else(|| format!("bad region line {line:?}"))
        };
        let start = parse(words.next(), 16)?;
        let pages = parse(words.next(), 10)?;
        Ok((start, start + pages * PAGE_SIZE))
    }
}

/// The child's mappings as smaps shows them now, with VmFlags.
fn mappings(pid: i32) -> Result<Vec<Vma>, String> {
    let maps = ferry::proc::read_smaps(pid).map_err(|e| e.to_string())?;
    ferry::inspect::mappings::classify_mappings(pid, &maps).map_err(|e| e.to_string())
}

/// One round: reads the child's mappings, collects (and re-arms) the
/// written pages of `ranges` (the child waits for its next command, so it
/// is as good as stopped), and checks them against the pages the child
/// was told to write plus every page of a mapping flagged "sd".
fn round(
    checks: &mut Checks,
    name: &str,
    tracker: &mut SoftDirtyTracker,
    pid: i32,
    ranges: &[(u64, u64)],
    written: &BTreeSet<u64>,
) -> Result<(), String> {
    let vmas = mappings(pid)?;
    let mut runs = Vec::new();
    tracker
        .written(ranges, true, &mut runs)
        .map_err(|e| e.to_string())?;
    let reported: BTreeSet<u64> = runs
        .iter()
        .flat_map(|&(s, e)| (s..e).step_by(PAGE))
        .collect();
    let mut new_mappings = 0;
    let expected: BTreeSet<u64> = ranges
        .iter()
        .flat_map(|&(s, e)| (s..e).step_by(PAGE))
        .filter(|&addr| {
            let sd = vmas
                .iter()
                .any(|v| v.start <= addr && addr < v.end && v.has_vm_flag("sd"));
            new_mappings += u64::from(sd);
            sd || written.contains(&addr)
        })
        .collect();
    let missing: Vec<String> = expected
        .difference(&reported)
        .take(8)
        .map(|a| format!("{a:#x}"))
        .collect();
    let extra: Vec<String> = reported
        .difference(&expected)
        .take(8)
        .map(|a| format!("{a:#x}"))
        .collect();
    checks.check(
        name,
        missing.is_empty() && extra.is_empty(),
        format!(
            "{} page(s) reported, {} written, {new_mappings} in new mappings; missing [{}] extra [{}]",
            reported.len(),
            written.len(),
            missing.join(" "),
            extra.join(" ")
        ),
    );
    Ok(())
}

/// Tells the child to write pages `pages` of the region at `base`, adding
/// their addresses to `written`.
fn write_pages(
    child: &mut Child,
    which: &str,
    base: u64,
    pages: &[u64],
    written: &mut BTreeSet<u64>,
) -> Result<(), String> {
    let list: Vec<String> = pages.iter().map(u64::to_string).collect();
    let answer = child.command(&format!("{which} {}", list.join(" ")))?;
    if answer != "ok" {
        return Err(format!("the child answered {answer:?} to a write"));
    }
    written.extend(pages.iter().map(|p| base + p * PAGE_SIZE));
    Ok(())
}

fn track_child(checks: &mut Checks, child: &mut Child) -> Result<(), String> {
    let pid = child.pid();
    let a = child.region(None)?;
    let b = child.region(None)?;
    let tracker_vmas = mappings(pid)?;
    let mut tracker = SoftDirtyTracker::start(pid, &tracker_vmas).map_err(|e| e.to_string())?;
    checks.check(
        "tracker",
        tracker.is_tracked(a.0, a.1) && tracker.is_tracked(b.0, b.1) && tracker.rearm_needs_stop(),
        format!(
            "regions A {:#x}-{:#x} and B {:#x}-{:#x} tracked",
            a.0, a.1, b.0, b.1
        ),
    );
    let mut written = BTreeSet::new();
    write_pages(child, "a", a.0, &[3, 7, 8, 100, 255], &mut written)?;
    write_pages(child, "b", b.0, &[0, 63], &mut written)?;
    round(checks, "round 1", &mut tracker, pid, &[a, b], &written)?;

    // Pages written in round 1 again: clear_refs write-protected them.
    written.clear();
    write_pages(child, "a", a.0, &[3, 5], &mut written)?;
    round(checks, "round 2", &mut tracker, pid, &[a, b], &written)?;

    written.clear();
    round(
        checks,
        "round 3 (no writes)",
        &mut tracker,
        pid,
        &[a, b],
        &written,
    )?;

    // B unmapped and a bigger B mapped (somewhere): its pages are all
    // reported through VM_SOFTDIRTY; old B's range reports nothing.
    written.clear();
    let answer = child.command("remap")?;
    let b_new = child.region(Some(answer))?;
    write_pages(child, "a", a.0, &[9], &mut written)?;
    let b_unmapped = !mappings(pid)?
        .iter()
        .any(|v| v.start < b.1 && b.0 < v.end && (v.start, v.end) != b_new);
    println!(
        "softdirty-vm: B moved to {:#x}-{:#x}; old B range unmapped: {b_unmapped}",
        b_new.0, b_new.1
    );
    round(
        checks,
        "round 4 (munmap and mmap)",
        &mut tracker,
        pid,
        &[a, b, b_new],
        &written,
    )?;
    let new_vma = mappings(pid)?
        .into_iter()
        .find(|v| v.start <= b_new.0 && b_new.1 <= v.end);
    checks.check(
        "new mapping clean after the clear",
        new_vma.as_ref().is_some_and(|v| !v.has_vm_flag("sd")),
        format!("{new_vma:?}"),
    );

    // After the clear the new mapping is tracked page by page too.
    written.clear();
    write_pages(child, "a", a.0, &[1], &mut written)?;
    write_pages(child, "b", b_new.0, &[2, 3, 95], &mut written)?;
    round(
        checks,
        "round 5 (after remap)",
        &mut tracker,
        pid,
        &[a, b_new],
        &written,
    )?;
    Ok(())
}

/// Checkpoints the child (killed at the end) while it rewrites region A
/// without pause, then checks that the image's A is one moment of it: the
/// child writes a counter c into every word of page c % A_PAGES, c = 1, 2,
/// ..., so with C the highest counter in the image, page p must hold the
/// highest c <= C of its class, except page C % A_PAGES, caught mid-write
/// (a prefix of C, the rest the value before).
fn checkpoint_child(checks: &mut Checks, mut child: Child) -> Result<(), String> {
    let pid = child.pid();
    let answer = child.command("spin")?;
    let a = child.region(Some(answer))?;
    // Let it write for a while.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let dir = Path::new("/image");
    let stats = checkpoint(pid, dir, CheckpointOptions::default());
    let _ = child.process.kill();
    let _ = child.process.wait();
    let stats = stats.map_err(|e| format!("checkpoint of the spinning child: {e}"))?;
    checks.check(
        "checkpoint pre-copy",
        stats.precopy_rounds >= 2 && stats.precopy_pages > 0,
        format!(
            "{} pre-copy round(s), {} pages copied while running, {} while frozen",
            stats.precopy_rounds, stats.precopy_pages, stats.frozen_pages
        ),
    );

    let reader = ImageReader::open(dir).map_err(|e| e.to_string())?;
    let mut image = vec![0u8; (a.1 - a.0) as usize];
    reader
        .read_pages(|_pid, vaddr, data| {
            let len = match data {
                PageData::Bytes(bytes) => bytes.len() as u64,
                PageData::Zero { npages } => npages * PAGE_SIZE,
            };
            let (s, e) = (vaddr.max(a.0), (vaddr + len).min(a.1));
            if s < e {
                let dst = &mut image[(s - a.0) as usize..(e - a.0) as usize];
                match data {
                    PageData::Bytes(bytes) => {
                        dst.copy_from_slice(&bytes[(s - vaddr) as usize..(e - vaddr) as usize])
                    }
                    PageData::Zero { .. } => dst.fill(0),
                }
            }
            Ok::<(), ferry::image::ImageError>(())
        })
        .map_err(|e| e.to_string())?;
    let (consistent, detail) = consistent_moment(&image);
    checks.check("checkpoint image consistent", consistent, detail);
    Ok(())
}

/// Whether `region` (A_PAGES pages of u64 counters) is one moment of the
/// spinning child's writes (see `checkpoint_child`).
fn consistent_moment(region: &[u8]) -> (bool, String) {
    let words: Vec<u64> = region
        .chunks_exact(8)
        .map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes")))
        .collect();
    let top = words.iter().copied().max().unwrap_or(0);
    let n = A_PAGES as u64;
    // The value page p holds once counter `c` is written: the highest
    // counter <= c of its class, 0 if none yet.
    let value_at = |p: u64, c: u64| -> u64 {
        let back = (c + n - p % n) % n;
        c.checked_sub(back).filter(|&v| v >= 1).unwrap_or(0)
    };
    let mut bad = Vec::new();
    for (p, page) in words.chunks_exact(PAGE / 8).enumerate() {
        let p = p as u64;
        let ok = if p == top % n {
            let before = top.saturating_sub(n);
            let cut = page.iter().take_while(|&&w| w == top).count();
            page[cut..].iter().all(|&w| w == before)
        } else {
            page.iter().all(|&w| w == value_at(p, top))
        };
        if !ok {
            bad.push(format!("page {p} word0 {}", page[0]));
        }
    }
    (
        bad.is_empty() && top > n,
        format!(
            "highest counter {top} ({} passes); inconsistent: [{}]",
            top / n,
            bad.iter().take(8).cloned().collect::<Vec<_>>().join(", ")
        ),
    )
}

/// A page-aligned region inside a zeroed heap allocation (which glibc maps
/// with mmap when it is this big, so freeing it unmaps it).
struct Region {
    buf: Vec<u8>,
    offset: usize,
    pages: usize,
}

impl Region {
    fn new(pages: usize) -> Region {
        let buf = vec![0u8; (pages + 1) * PAGE];
        let addr = buf.as_ptr() as usize;
        let offset = addr.next_multiple_of(PAGE) - addr;
        Region { buf, offset, pages }
    }

    fn page(&mut self, i: usize) -> &mut [u8] {
        &mut self.buf[self.offset + i * PAGE..self.offset + (i + 1) * PAGE]
    }

    /// Writes one byte of page `i`.
    fn touch(&mut self, i: usize) {
        let byte = &mut self.page(i)[0];
        *byte = byte.wrapping_add(1);
    }

    fn describe(&self, name: &str) -> String {
        format!(
            "{name} {:x} {}",
            self.buf.as_ptr() as usize + self.offset,
            self.pages
        )
    }
}

/// The child: regions A and B, every page written once, then commands on
/// stdin, one answer line each on stdout.
fn child() {
    let mut a = Region::new(A_PAGES);
    let mut b = Region::new(B_PAGES);
    (0..A_PAGES).for_each(|i| a.touch(i));
    (0..B_PAGES).for_each(|i| b.touch(i));
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{}", a.describe("A"));
    let _ = writeln!(out, "{}", b.describe("B"));
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { return };
        let mut words = line.split_whitespace();
        let answer = match words.next() {
            Some(which @ ("a" | "b")) => {
                let region = if which == "a" { &mut a } else { &mut b };
                for page in words.filter_map(|w| w.parse::<usize>().ok()) {
                    region.touch(page % region.pages);
                }
                "ok".to_string()
            }
            Some("remap") => {
                drop(std::mem::replace(&mut b, Region::new(B_NEW_PAGES)));
                b.describe("B")
            }
            Some("spin") => {
                let _ = writeln!(out, "{}", a.describe("A"));
                let _ = out.flush();
                spin(&mut a);
            }
            _ => return,
        };
        let _ = writeln!(out, "{answer}");
        let _ = out.flush();
    }
}

/// Writes counter c = 1, 2, ... into every word of page c % A_PAGES of
/// `a`, forever, with stdin and stdout on /dev/null (the checkpoint carries
/// the process alone, not pipes to its parent).
fn spin(a: &mut Region) -> ! {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stdout(&null);
    }
    let mut c: u64 = 1;
    loop {
        let page = a.page((c % A_PAGES as u64) as usize);
        for word in page.chunks_exact_mut(8) {
            word.copy_from_slice(&c.to_le_bytes());
        }
        // Keep the stores in page order as seen from outside.
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
        c += 1;
    }
}
