//! Reading /proc: mappings, tasks, status, stat, fds and fdinfo. Parsers are
//! pure functions over text so they can be unit-tested on captured samples;
//! the `read_*` functions only fetch the text.

pub mod notify;

use std::fs;
use std::io;
use std::path::PathBuf;

pub mod anon;
pub mod cgroups;
pub mod limits;
pub mod locks;
pub mod pidfd;
pub mod sysvipc;

/// Why something could not be read from /proc.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    /// A /proc file could not be read (the process may have exited).
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A /proc file did not have the expected format.
    #[error("cannot parse {path}: {what}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        what: String,
    },
}

fn read_text(path: PathBuf) -> Result<(PathBuf, String), ProcError> {
    match fs::read_to_string(&path) {
        Ok(text) => Ok((path, text)),
        Err(source) => Err(ProcError::Read { path, source }),
    }
}

fn parse_err(path: &std::path::Path, what: impl Into<String>) -> ProcError {
    ProcError::Parse {
        path: path.to_path_buf(),
        what: what.into(),
    }
}

/// One line of /proc/PID/smaps (with its VmFlags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapsEntry {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// Readable.
    pub read: bool,
    /// Writable.
    pub write: bool,
    /// Executable.
    pub exec: bool,
    /// MAP_SHARED (else private).
    pub shared: bool,
    /// File offset.
    pub offset: u64,
    /// Inode of the backing file (0 for anonymous).
    pub inode: u64,
    /// The path or pseudo-name ("[heap]", "[vdso]"); empty for anonymous.
    pub path: String,
    /// The VmFlags codes, space separated.
    pub vm_flags: String,
}

/// Parses the text of /proc/PID/smaps (or /proc/PID/maps, leaving VmFlags
/// empty).
pub fn parse_smaps(path: &std::path::Path, text: &str) -> Result<Vec<MapsEntry>, ProcError> {
    let mut out: Vec<MapsEntry> = Vec::new();
    for line in text.lines() {
        if let Some(flags) = line.strip_prefix("VmFlags:") {
            if let Some(last) = out.last_mut() {
                last.vm_flags = flags.trim().to_string();
            }
            continue;
        }
        let first = line.split_whitespace().next().unwrap_or("");
        let Some((s, e)) = first.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (u64::from_str_radix(s, 16), u64::from_str_radix(e, 16)) else {
            // smaps field lines ("Size: ...") also contain no '-' range.
            continue;
        };
        let mut fields = line.splitn(6, char::is_whitespace).skip(1);
        let perms = fields.next().unwrap_or("");
        let offset = fields.next().unwrap_or("0");
        let _dev = fields.next();
        let inode = fields.next().unwrap_or("0");
        let rest = fields.next().unwrap_or("").trim_start();
        let p = perms.as_bytes();
        if p.len() < 4 {
            return Err(parse_err(path, format!("bad permissions in line {line:?}")));
        }
        out.push(MapsEntry {
            start,
            end,
            read: p[0] == b'r',
            write: p[1] == b'w',
            exec: p[2] == b'x',
            shared: p[3] == b's',
            offset: u64::from_str_radix(offset, 16)
                .map_err(|_| parse_err(path, format!("bad offset in line {line:?}")))?,
            inode: inode
                .parse()
                .map_err(|_| parse_err(path, format!("bad inode in line {line:?}")))?,
            path: rest.to_string(),
            vm_flags: String::new(),
        });
    }
    Ok(out)
}

/// Reads every mapping of a process, with VmFlags, from /proc/PID/smaps.
pub fn read_smaps(pid: i32) -> Result<Vec<MapsEntry>, ProcError> {
    let (path, text) = read_text(PathBuf::from(format!("/proc/{pid}/smaps")))?;
    parse_smaps(&path, &text)
}

/// Reads the mappings of a process from /proc/PID/maps (no VmFlags; cheap).
pub fn read_maps(pid: i32) -> Result<Vec<MapsEntry>, ProcError> {
    let (path, text) = read_text(PathBuf::from(format!("/proc/{pid}/maps")))?;
    parse_smaps(&path, &text)
}

/// Lists the thread IDs of a process.
pub fn task_ids(pid: i32) -> Result<Vec<i32>, ProcError> {
    let path = PathBuf::from(format!("/proc/{pid}/task"));
    let dir = fs::read_dir(&path).map_err(|source| ProcError::Read {
        path: path.clone(),
        source,
    })?;
    let mut tids: Vec<i32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    tids.sort_unstable();
    Ok(tids)
}

/// Resident memory of a process in bytes (Rss of /proc/PID/smaps_rollup):
/// what a migration will copy, for the destination's space check and the
/// progress bar.
pub fn rss_bytes(pid: i32) -> Result<u64, ProcError> {
    rollup_bytes(pid, "Rss:")
}

/// Resident anonymous memory of a process in bytes (Anonymous of
/// /proc/PID/smaps_rollup): what post-copy can leave behind and fetch on
/// demand, for the dry run's model.
pub fn anonymous_bytes(pid: i32) -> Result<u64, ProcError> {
    rollup_bytes(pid, "Anonymous:")
}

fn rollup_bytes(pid: i32, field: &str) -> Result<u64, ProcError> {
    let (path, text) = read_text(PathBuf::from(format!("/proc/{pid}/smaps_rollup")))?;
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .ok_or_else(|| ProcError::Parse {
            path,
            what: format!("no {field} line"),
        })
}

/// Memory available for new work on this host (MemAvailable of
/// /proc/meminfo), in bytes: the dry run compares it with the size of a
/// workload a destination would take.
pub fn mem_available_bytes() -> Result<u64, ProcError> {
    let (path, text) = read_text(PathBuf::from("/proc/meminfo"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .ok_or_else(|| parse_err(&path, "no MemAvailable line"))
}

/// This host's name (/proc/sys/kernel/hostname), for identifiers and logs.
pub fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string())
}

/// Lists the children of every thread of a process.
pub fn children(pid: i32) -> Result<Vec<i32>, ProcError> {
    let mut out = Vec::new();
    for tid in task_ids(pid)? {
        let (_, text) = read_text(PathBuf::from(format!("/proc/{pid}/task/{tid}/children")))?;
        out.extend(
            text.split_whitespace()
                .filter_map(|t| t.parse::<i32>().ok()),
        );
    }
    Ok(out)
}

/// The fields of /proc/PID/status that ferry uses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Status {
    /// Name (comm).
    pub name: String,
    /// Single-letter state (R, S, D, T, t, Z, X).
    pub state: char,
    /// Thread group ID.
    pub tgid: i32,
    /// Parent PID.
    pub ppid: i32,
    /// PID of the tracer, 0 when not traced.
    pub tracer_pid: i32,
    /// Real, effective, saved, filesystem UIDs.
    pub uids: [u32; 4],
    /// Real, effective, saved, filesystem GIDs.
    pub gids: [u32; 4],
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// File mode creation mask.
    pub umask: u32,
    /// Capability sets (of the thread whose status this is).
    pub caps: CapSets,
    /// NoNewPrivs: the no_new_privs bit.
    pub no_new_privs: bool,
    /// Seccomp: 0 none, 1 strict, 2 filter.
    pub seccomp: u32,
    /// Seccomp_filters: the number of filters attached.
    pub seccomp_filters: u32,
    /// The thread runs with a user shadow stack (CET): "shstk" among its
    /// x86_Thread_features.
    pub shadow_stack: bool,
}

/// The capability sets of a thread (CapInh, CapPrm, CapEff, CapBnd, CapAmb).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CapSets {
    /// Inheritable set.
    pub inheritable: u64,
    /// Permitted set.
    pub permitted: u64,
    /// Effective set.
    pub effective: u64,
    /// Bounding set.
    pub bounding: u64,
    /// Ambient set.
    pub ambient: u64,
}

fn four_ids(path: &std::path::Path, v: &str) -> Result<[u32; 4], ProcError> {
    let ids: Vec<u32> = v
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    ids.try_into()
        .map_err(|_| parse_err(path, format!("expected four IDs, found {v:?}")))
}

/// Parses the text of /proc/PID/status.
pub fn parse_status(path: &std::path::Path, text: &str) -> Result<Status, ProcError> {
    let mut st = Status::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        let num = |v: &str| -> Result<i32, ProcError> {
            v.parse()
                .map_err(|_| parse_err(path, format!("bad number {v:?} for {k}")))
        };
        match k {
            "Name" => st.name = v.to_string(),
            "State" => st.state = v.chars().next().unwrap_or('?'),
            "Tgid" => st.tgid = num(v)?,
            "PPid" => st.ppid = num(v)?,
            "TracerPid" => st.tracer_pid = num(v)?,
            "Uid" => st.uids = four_ids(path, v)?,
            "Gid" => st.gids = four_ids(path, v)?,
            "Groups" => {
                st.groups = v
                    .split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect()
            }
            "CapInh" | "CapPrm" | "CapEff" | "CapBnd" | "CapAmb" => {
                let set = u64::from_str_radix(v, 16)
                    .map_err(|_| parse_err(path, format!("bad {k} {v:?}")))?;
                let c = &mut st.caps;
                *match k {
                    "CapInh" => &mut c.inheritable,
                    "CapPrm" => &mut c.permitted,
                    "CapEff" => &mut c.effective,
                    "CapBnd" => &mut c.bounding,
                    _ => &mut c.ambient,
                } = set;
            }
            "NoNewPrivs" => st.no_new_privs = num(v)? != 0,
            "Seccomp" => st.seccomp = num(v)? as u32,
            "Seccomp_filters" => st.seccomp_filters = num(v)? as u32,
            "x86_Thread_features" => st.shadow_stack = v.split_whitespace().any(|f| f == "shstk"),
            "Umask" => {
                st.umask = u32::from_str_radix(v, 8)
                    .map_err(|_| parse_err(path, format!("bad umask {v:?}")))?
            }
            _ => {}
        }
    }
    Ok(st)
}

/// Reads /proc/PID/status.
pub fn read_status(pid: i32) -> Result<Status, ProcError> {
    let (path, text) = read_text(PathBuf::from(format!("/proc/{pid}/status")))?;
    parse_status(&path, &text)
}

/// Reads /proc/PID/task/TID/status (credentials and seccomp are per thread).
pub fn read_thread_status(pid: i32, tid: i32) -> Result<Status, ProcError> {
    let (path, text) = read_text(PathBuf::from(format!("/proc/{pid}/task/{tid}/status")))?;
    parse_status(&path, &text)
}

/// The highest capability number this kernel knows
/// (/proc/sys/kernel/cap_last_cap).
pub fn cap_last_cap() -> Result<u32, ProcError> {
    let (path, text) = read_text(PathBuf::from("/proc/sys/kernel/cap_last_cap"))?;
    text.trim()
        .parse()
        .map_err(|_| parse_err(&path, format!("bad number {:?}", text.trim())))
}

/// The memory-layout fields of /proc/PID/stat (fields 26-28 and 45-51).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatMm {
    /// Field 26.
    pub start_code: u64,
    /// Field 27.
    pub end_code: u64,
    /// Field 28.
    pub start_stack: u64,
    /// Field 45.
    pub start_data: u64,
    /// Field 46.
    pub end_data: u64,
    /// Field 47.
    pub start_brk: u64,
    /// Field 48.
    pub arg_start: u64,
    /// Field 49.
    pub arg_end: u64,
    /// Field 50.
    pub env_start: u64,
    /// Field 51.
    pub env_end: u64,
}

/// Parses the memory-layout fields out of /proc/PID/stat text.
pub fn parse_stat_mm(path: &std::path::Path, text: &str) -> Result<StatMm, ProcError> {
    let field = stat_fields(path, text)?;
    Ok(StatMm {
        start_code: field(26)?,
        end_code: field(27)?,
        start_stack: field(28)?,
        start_data: field(45)?,
        end_data: field(46)?,
        start_brk: field(47)?,
        arg_start: field(48)?,
        arg_end: field(49)?,
        env_start: field(50)?,
        env_end: field(51)?,
    })
}

/// Splits /proc/PID/stat into numeric fields; returns a getter by the
/// field's number in proc(5) (4 and up).
fn stat_fields<'a>(
    path: &'a std::path::Path,
    text: &str,
) -> Result<impl Fn(usize) -> Result<u64, ProcError> + 'a, ProcError> {
    // The comm field may contain spaces and parentheses: split after the last ')'.
    let close = text
        .rfind(')')
        .ok_or_else(|| parse_err(path, "no ')' after comm"))?;
    // Field 3 (state) is the first after ") ".
    let fields: Vec<u64> = text[close + 1..]
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse::<i64>().map(|v| v as u64).unwrap_or(0))
        .collect();
    Ok(move |n: usize| -> Result<u64, ProcError> {
        fields
            .get(n.wrapping_sub(4))
            .copied()
            .ok_or_else(|| parse_err(path, format!("missing field {n}")))
    })
}

/// Where a process sits in the process tree, and how it ended if it is a
/// zombie (fields 4-6 and 52 of /proc/PID/stat).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatIds {
    /// Parent PID.
    pub ppid: i32,
    /// Process group ID.
    pub pgid: i32,
    /// Session ID.
    pub sid: i32,
    /// The wait status a zombie leaves to its parent (0 while alive).
    pub exit_code: i32,
}

/// Reads the parent, process group, session and exit code of `pid`.
pub fn read_stat_ids(pid: i32) -> Result<StatIds, ProcError> {
    let (path, text) = read_text(PathBuf::from(format!("/proc/{pid}/stat")))?;
    let field = stat_fields(&path, &text)?;
    Ok(StatIds {
        ppid: field(4)? as i32,
        pgid: field(5)? as i32,
        sid: field(6)? as i32,
        exit_code: field(52)? as i32,
    })
}

/// A thread's scheduling fields of /proc/PID/task/TID/stat: policy
/// (field 41, without SCHED_RESET_ON_FORK), real-time priority (40) and
/// nice value (19).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatSched {
    /// SCHED_OTHER, SCHED_FIFO, SCHED_RR, SCHED_BATCH, SCHED_IDLE or
    /// SCHED_DEADLINE.
    pub policy: u32,
    /// Static priority of a real-time policy (0 otherwise).
    pub rt_priority: u32,
    /// Nice value.
    pub nice: i32,
}

/// Reads the scheduling fields of thread `tid` of `pid`.
pub fn read_thread_sched(pid: i32, tid: i32) -> Result<StatSched, ProcError> {
    let (path, text) = read_text(PathBuf::from(format!("/proc/{pid}/task/{tid}/stat")))?;
    let field = stat_fields(&path, &text)?;
    Ok(StatSched {
        policy: field(41)? as u32,
        rt_priority: field(40)? as u32,
        nice: field(19)? as i32,
    })
}

/// CPU time the process has used (utime + stime of /proc/PID/stat, all
/// threads), in clock ticks: the dry run compares it before and during
/// tracking to show what tracking costs the workload.
pub fn cpu_ticks(pid: i32) -> Result<u64, ProcError> {
    let (path, text) = read_text(PathBuf::from(format!("/proc/{pid}/stat")))?;
    let field = stat_fields(&path, &text)?;
    Ok(field(14)? + field(15)?)
}

/// Reads the memory-layout fields of /proc/PID/stat.
pub fn read_stat_mm(pid: i32) -> Result<StatMm, ProcError> {
    let (path, text) = read_text(PathBuf::from(format!("/proc/{pid}/stat")))?;
    parse_stat_mm(&path, &text)
}

/// Reads the auxiliary vector as words, up to and including AT_NULL.
pub fn read_auxv(pid: i32) -> Result<Vec<u64>, ProcError> {
    let path = PathBuf::from(format!("/proc/{pid}/auxv"));
    let bytes = fs::read(&path).map_err(|source| ProcError::Read {
        path: path.clone(),
        source,
    })?;
    Ok(bytes
        .chunks_exact(8)
        .map(|c| u64::from_ne_bytes(c.try_into().expect("chunks_exact(8)")))
        .collect())
}

/// Reads a symlink under /proc (exe, cwd, fd/N).
pub fn read_link(path: String) -> Result<String, ProcError> {
    let path = PathBuf::from(path);
    fs::read_link(&path)
        .map(|p| p.to_string_lossy().into_owned())
        .map_err(|source| ProcError::Read { path, source })
}

/// The identity of a file as ferry compares it between checkpoint and
/// restore (its size and modification time, from stat): a mapped file that
/// changed in between is refused at restore.
pub fn file_identity(meta: &fs::Metadata) -> crate::image::FileIdentity {
    use std::os::unix::fs::MetadataExt;
    crate::image::FileIdentity {
        size: meta.size(),
        mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
    }
}

/// Reads a thread's name.
pub fn read_thread_comm(pid: i32, tid: i32) -> Result<String, ProcError> {
    let (_, text) = read_text(PathBuf::from(format!("/proc/{pid}/task/{tid}/comm")))?;
    Ok(text.trim_end_matches('\n').to_string())
}

/// A process outside `tree` (and not this one) holding an end of pipe
/// `inode`, as (pid, fd), if there is one: every process's fds are looked
/// at, so call it only for a pipe whose other end the tree lacks.
pub fn pipe_holder_outside(inode: u64, tree: &[i32]) -> Result<Option<(i32, i32)>, ProcError> {
    holder_outside(tree, &format!("pipe:[{inode}]"), |_, _| true)
}

/// A process outside `tree` (and not this one) holding FIFO `inode`
/// (opened at `path`), as (pid, fd), if there is one: every process's fds
/// are looked at, so call it only for a FIFO whose other end the tree
/// lacks.
pub fn fifo_holder_outside(
    path: &str,
    inode: u64,
    tree: &[i32],
) -> Result<Option<(i32, i32)>, ProcError> {
    use std::os::unix::fs::MetadataExt;
    holder_outside(tree, path, |pid, fd| {
        fs::metadata(format!("/proc/{pid}/fd/{fd}")).is_ok_and(|m| m.ino() == inode)
    })
}

/// The first (pid, fd) of a process outside `tree` (and not this one)
/// whose fd link reads `wanted` and which `same` confirms.
fn holder_outside(
    tree: &[i32],
    wanted: &str,
    same: impl Fn(i32, i32) -> bool,
) -> Result<Option<(i32, i32)>, ProcError> {
    let path = PathBuf::from("/proc");
    let dir = fs::read_dir(&path).map_err(|source| ProcError::Read { path, source })?;
    let me = std::process::id() as i32;
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == me || tree.contains(&pid) {
            continue;
        }
        // A process that exits meanwhile holds nothing.
        if let Ok(fds) = fds(pid) {
            let found = fds
                .into_iter()
                .find(|(fd, t)| t == wanted && same(pid, *fd));
            if let Some((fd, _)) = found {
                return Ok(Some((pid, fd)));
            }
        }
    }
    Ok(None)
}

/// Lists a process's open fds with the targets of their /proc links (an
/// fd a running process closes meanwhile is left out).
pub fn fds(pid: i32) -> Result<Vec<(i32, String)>, ProcError> {
    let path = PathBuf::from(format!("/proc/{pid}/fd"));
    let dir = fs::read_dir(&path).map_err(|source| ProcError::Read {
        path: path.clone(),
        source,
    })?;
    let mut fds: Vec<i32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort_unstable();
    let mut out = Vec::with_capacity(fds.len());
    for fd in fds {
        match read_link(format!("/proc/{pid}/fd/{fd}")) {
            Ok(target) => out.push((fd, target)),
            // Closed by a running process since its directory was read.
            Err(ProcError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound && fd_closed(pid, fd) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Whether fd `fd` of `pid` is no longer open while the process itself is
/// still there: a running process may close an fd while its fds are being
/// read.
pub fn fd_closed(pid: i32, fd: i32) -> bool {
    fs::symlink_metadata(format!("/proc/{pid}/fd/{fd}")).is_err()
        && std::path::Path::new(&format!("/proc/{pid}/fd")).exists()
}

/// The fields of /proc/PID/fdinfo/N that ferry uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FdInfo {
    /// File position.
    pub pos: i64,
    /// Open flags (octal in the file), including O_CLOEXEC.
    pub flags: i32,
    /// For a pseudo-terminal master: the index of its pty (N of
    /// /dev/pts/N).
    pub tty_index: Option<u32>,
}

/// Parses /proc/PID/fdinfo/N text.
pub fn parse_fdinfo(path: &std::path::Path, text: &str) -> Result<FdInfo, ProcError> {
    let mut info = FdInfo::default();
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("pos:") {
            info.pos = v
                .trim()
                .parse()
                .map_err(|_| parse_err(path, format!("bad pos {v:?}")))?;
        } else if let Some(v) = line.strip_prefix("flags:") {
            info.flags = i32::from_str_radix(v.trim(), 8)
                .map_err(|_| parse_err(path, format!("bad flags {v:?}")))?;
        } else if let Some(v) = line.strip_prefix("tty-index:") {
            let index = v.trim().parse();
            info.tty_index =
                Some(index.map_err(|_| parse_err(path, format!("bad tty-index {v:?}")))?);
        }
    }
    Ok(info)
}

/// Reads /proc/PID/fdinfo/N.
pub fn read_fdinfo(pid: i32, fd: i32) -> Result<FdInfo, ProcError> {
    let (path, text) = read_text(PathBuf::from(format!("/proc/{pid}/fdinfo/{fd}")))?;
    parse_fdinfo(&path, &text)
}

/// One POSIX timer as /proc/PID/timers lists it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TimerEntry {
    /// The timer ID (the timer_t the process holds).
    pub id: i32,
    /// Signal delivered on expiry.
    pub signo: i32,
    /// sigev_value delivered with the signal.
    pub sigval: u64,
    /// sigev_notify: SIGEV_SIGNAL, SIGEV_NONE or SIGEV_THREAD, with
    /// SIGEV_THREAD_ID or'ed in when a thread is targeted.
    pub notify: i32,
    /// The targeted thread (SIGEV_THREAD_ID) or process.
    pub target: i32,
    /// The clock the timer counts.
    pub clock: i32,
}

/// Parses /proc/PID/timers text; returns the timers in ID order.
pub fn parse_timers(path: &std::path::Path, text: &str) -> Result<Vec<TimerEntry>, ProcError> {
    let mut out: Vec<TimerEntry> = Vec::new();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        let bad = || parse_err(path, format!("bad {k} line {v:?}"));
        if k == "ID" {
            out.push(TimerEntry {
                id: v.parse().map_err(|_| bad())?,
                ..TimerEntry::default()
            });
            continue;
        }
        let t = out.last_mut().ok_or_else(bad)?;
        match k {
            "signal" => {
                let (signo, val) = v.split_once('/').ok_or_else(bad)?;
                t.signo = signo.parse().map_err(|_| bad())?;
                t.sigval = u64::from_str_radix(val, 16).map_err(|_| bad())?;
            }
            "notify" => {
                let (how, target) = v.split_once('/').ok_or_else(bad)?;
                let (kind, target) = target.split_once('.').ok_or_else(bad)?;
                t.notify = match how {
                    "signal" => libc::SIGEV_SIGNAL,
                    "none" => libc::SIGEV_NONE,
                    "thread" => libc::SIGEV_THREAD,
                    _ => return Err(bad()),
                } | if kind == "tid" {
                    libc::SIGEV_THREAD_ID
                } else {
                    0
                };
                t.target = target.parse().map_err(|_| bad())?;
            }
            "ClockID" => t.clock = v.parse().map_err(|_| bad())?,
            _ => {}
        }
    }
    out.sort_by_key(|t| t.id);
    Ok(out)
}

/// Reads /proc/PID/timers.
pub fn read_timers(pid: i32) -> Result<Vec<TimerEntry>, ProcError> {
    let (path, text) = read_text(PathBuf::from(format!("/proc/{pid}/timers")))?;
    parse_timers(&path, &text)
}

/// The namespace kinds a process's /proc/PID/ns holds, in a fixed order.
pub const NAMESPACE_KINDS: [&str; 8] =
    ["cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"];

/// Reads the namespaces of a process: (kind, the link's target, e.g.
/// "net:[4026531833]"), for each kind the kernel shows.
pub fn namespaces(pid: &str) -> Result<Vec<(String, String)>, ProcError> {
    let mut out = Vec::new();
    for kind in NAMESPACE_KINDS {
        let path = format!("/proc/{pid}/ns/{kind}");
        if std::path::Path::new(&path).exists() {
            out.push((kind.to_string(), read_link(path)?));
        }
    }
    Ok(out)
}

/// Bits of a /proc/PID/pagemap entry.
pub mod pagemap {
    /// The page is present in RAM.
    pub const PRESENT: u64 = 1 << 63;
    /// The page is swapped out.
    pub const SWAPPED: u64 = 1 << 62;
    /// The page is a file page or shared anonymous (not a private anon copy).
    pub const FILE_OR_SHARED: u64 = 1 << 61;
    /// The page is exclusively mapped.
    pub const EXCLUSIVE: u64 = 1 << 56;
    /// Soft-dirty (only meaningful with CONFIG_MEM_SOFT_DIRTY).
    pub const SOFT_DIRTY: u64 = 1 << 55;
    /// The page frame number of a present page (0 unless the reader has
    /// CAP_SYS_ADMIN).
    pub const PFN: u64 = (1 << 55) - 1;

    /// Whether two entries, of two processes, show the same physical page:
    /// both present with the same known frame (a page still shared
    /// copy-on-write since a fork).
    pub fn same_frame(a: u64, b: u64) -> bool {
        a & b & PRESENT != 0 && a & PFN != 0 && a & PFN == b & PFN
    }

    /// Pagemap entries read per pread by the walkers (512 KiB of entries,
    /// covering 256 MiB of address space).
    pub const BATCH_PAGES: u64 = 64 * 1024;

    /// Reads the entries of `entries.len()` consecutive pages starting at
    /// virtual page number `first_page` with one pread; `raw` is scratch
    /// space, reused between calls so that big batches allocate once.
    pub fn read_entries(
        pagemap: &std::fs::File,
        first_page: u64,
        raw: &mut Vec<u8>,
        entries: &mut [u64],
    ) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        raw.resize(entries.len() * 8, 0);
        pagemap.read_exact_at(raw, first_page * 8)?;
        for (e, bytes) in entries.iter_mut().zip(raw.chunks_exact(8)) {
            *e = u64::from_le_bytes(bytes.try_into().expect("8 bytes"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn smaps_lines_and_vmflags() {
        let text = "\
55d0c8a00000-55d0c8a02000 r--p 00000000 fe:01 1234   /usr/bin/cat with space
Size:                  8 kB
VmFlags: rd mr mw me dw sd
7ffd1e5f0000-7ffd1e611000 rw-p 00000000 00:00 0                          [stack]
VmFlags: rd wr mr mw me gd ac
7f0000000000-7f0000001000 ---p 00000000 00:00 0 
VmFlags: mr mw me
";
        let m = parse_smaps(Path::new("x"), text).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].path, "/usr/bin/cat with space");
        assert_eq!(m[0].inode, 1234);
        assert!(m[0].read && !m[0].write && !m[0].shared);
        assert_eq!(m[1].path, "[stack]");
        assert_eq!(m[1].vm_flags, "rd wr mr mw me gd ac");
        assert_eq!(m[2].path, "");
        assert!(!m[2].read);
    }

    #[test]
    fn stat_with_parens_in_comm() {
        let mut fields = vec!["0"; 52];
        fields[0] = "42";
        fields[1] = "(a) b)";
        fields[2] = "S";
        fields[25] = "4096";
        fields[46] = "8192";
        fields[50] = "12345";
        let text = fields.join(" ");
        let mm = parse_stat_mm(Path::new("x"), &text).unwrap();
        assert_eq!(mm.start_code, 4096);
        assert_eq!(mm.start_brk, 8192);
        assert_eq!(mm.env_end, 12345);
    }

    #[test]
    fn status_fields() {
        let text = "Name:\tcat\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t7\nPPid:\t1\nTracerPid:\t0\nUid:\t1\t2\t3\t4\nGid:\t5\t6\t7\t8\nGroups:\t10 20 \nCapInh:\t0000000000000000\nCapPrm:\t000001fffeffffff\nCapEff:\t0000000000000400\nCapBnd:\t000001fffeffffff\nCapAmb:\t0000000000000001\nNoNewPrivs:\t1\nSeccomp:\t2\nSeccomp_filters:\t3\n";
        let st = parse_status(Path::new("x"), text).unwrap();
        assert_eq!(st.umask, 0o22);
        assert_eq!(st.uids, [1, 2, 3, 4]);
        assert_eq!(st.groups, vec![10, 20]);
        assert_eq!(st.state, 'S');
        assert_eq!(st.caps.permitted, 0x1fffeffffff);
        assert_eq!((st.caps.effective, st.caps.ambient), (0x400, 1));
        assert!(st.no_new_privs);
        assert_eq!((st.seccomp, st.seccomp_filters), (2, 3));
    }

    #[test]
    fn timers_in_id_order() {
        let text = "ID: 100\nsignal: 12/0000000000001234\nnotify: signal/tid.4201\nClockID: 1\nID: 0\nsignal: 14/0000000000000000\nnotify: none/pid.4201\nClockID: 0\n";
        let t = parse_timers(Path::new("x"), text).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(
            (t[0].id, t[0].signo, t[0].notify, t[0].clock),
            (0, 14, libc::SIGEV_NONE, 0)
        );
        assert_eq!(t[1].sigval, 0x1234);
        assert_eq!(t[1].notify, libc::SIGEV_SIGNAL | libc::SIGEV_THREAD_ID);
        assert_eq!(t[1].target, 4201);
    }

    #[test]
    fn fdinfo_fields() {
        let info =
            parse_fdinfo(Path::new("x"), "pos:\t12\nflags:\t02102001\nmnt_id:\t20\n").unwrap();
        assert_eq!(info.pos, 12);
        assert_eq!(info.flags, 0o2102001);
    }
}
