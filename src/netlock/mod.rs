//! The network lock: while a tree with TCP connections is frozen (and
//! until its restored copy runs), its connections must not answer their
//! peers at all. A frozen source kernel would keep ACKing data the image
//! no longer gets; a killed source or a not yet restored destination
//! would answer with a reset. So their packets are dropped, in both
//! directions, and peers retransmit until the restored sockets answer.
//!
//! A lock is one nftables table (family inet) made by `nft -f -` in one
//! atomic transaction, in the workload's network namespace, named
//! `ferry_<owner>_<label>_<time>`: the owner ([`Owner`]) is a tag derived
//! from the state directory of the agent (or the image directory of a
//! local checkpoint) that made it, so that a sweep at the next start of
//! the same agent removes what a killed one left ([`sweep`]) and never
//! touches a table of another agent or program. Releasing deletes the
//! table; a table already gone is not an error. A journal under /run
//! says where each engaged lock is, so that [`sweep_journaled`] also
//! finds those a killed run left in other namespaces (a container's).

mod error;
mod journal;
mod ruleset;

pub use crate::inspect::tree_flows;
pub use error::{describe_flows, NetLockError};
pub use ruleset::{CRIU_MARK, REPAIR_MARK};

use crate::image::TcpFlow;
use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// Every table ferry makes starts with this; a name without it is never
/// touched.
pub const TABLE_PREFIX: &str = "ferry_";

/// Who made a lock: one agent (by its state directory) or one local
/// checkpoint (by its image directory). Its tag is part of every table
/// name it makes, so [`sweep`] recognises its own tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    tag: u64,
}

impl Owner {
    /// The owner for directory `dir` (the agent's work directory, or a
    /// checkpoint's image directory): the same directory gives the same
    /// owner in every run, so a restarted agent finds its old tables.
    pub fn of_dir(dir: &Path) -> Owner {
        let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        Owner {
            tag: xxhash_rust::xxh3::xxh3_64(dir.as_os_str().as_encoded_bytes()),
        }
    }

    /// The start of the names of this owner's tables.
    fn prefix(&self) -> String {
        format!("{TABLE_PREFIX}{:016x}_", self.tag)
    }
}

/// A network namespace, held open: a lock made in it can be released
/// after every process in it is gone (the open file keeps it alive).
#[derive(Debug)]
pub struct NetNs {
    file: File,
    /// Its nsfs name (net:[INODE]), for messages and to tell it apart.
    name: String,
    /// The path it was opened by, which a later run can open again while
    /// it leads to the same namespace (the journal records it).
    path: String,
}

impl NetNs {
    /// The network namespace of process `pid`.
    pub fn of_process(pid: i32) -> Result<NetNs, NetLockError> {
        NetNs::at(Path::new(&format!("/proc/{pid}/ns/net")))
    }

    /// The network namespace of the calling thread.
    pub fn current() -> Result<NetNs, NetLockError> {
        let mut netns = NetNs::at(Path::new("/proc/thread-self/ns/net"))?;
        netns.path = format!("/proc/{}/ns/net", std::process::id());
        Ok(netns)
    }

    /// The network namespace at `path` (/proc/PID/ns/net, or a name
    /// `ip netns add` bound under /run/netns).
    pub fn at(path: &Path) -> Result<NetNs, NetLockError> {
        let failed = |source| NetLockError::Namespace {
            what: path.display().to_string(),
            source,
        };
        let file = File::open(path).map_err(failed)?;
        let name = std::fs::read_link(format!("/proc/self/fd/{}", fd_number(&file)))
            .map_err(failed)?
            .to_string_lossy()
            .into_owned();
        Ok(NetNs {
            file,
            name,
            path: path.display().to_string(),
        })
    }

    /// Its nsfs name, net:[INODE].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `f` on a thread of ours that joined this namespace (or on
    /// this one, when it is in it already): what `f` creates (sockets,
    /// processes) belongs to it.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, nix::errno::Errno> {
        crate::kernel::in_net_namespace_of(&self.file, f)
    }
}

fn fd_number(file: &File) -> i32 {
    use std::os::fd::AsRawFd;
    file.as_raw_fd()
}

/// A lock's table. [`NetLock::release`] removes it; [`NetLock::keep`]
/// leaves it for another process (a later restore) to release by name.
/// Dropped without either (an error path), it is released, logged.
/// Made by [`engage`] it drops at once; made by [`prepare`] it drops
/// nothing until [`NetLock::arm`].
#[derive(Debug)]
pub struct NetLock {
    table: String,
    netns: NetNs,
    engaged: bool,
    /// Its rules are in: the flows of its sets are silent.
    armed: bool,
    /// The flows its sets hold.
    known: BTreeSet<TcpFlow>,
    /// It drops every packet of its namespace ([`engage_namespace`]):
    /// it has no sets, and covers every flow already.
    whole: bool,
}

/// Locks `flows` in `netns` for `owner`: one table dropping every packet
/// of those connections, in and out, made atomically. `label` (the PID of
/// the workload, a migration's name) goes into the table's name with the
/// time, so two locks are never one table.
pub fn engage(
    owner: Owner,
    label: &str,
    netns: NetNs,
    flows: &[TcpFlow],
) -> Result<NetLock, NetLockError> {
    make(owner, label, netns, flows, Shape::Armed)
}

/// [`engage`] in two steps, so that little of it remains for the moment
/// the lock must take effect (a freeze): the table and its sets holding
/// `flows` are made now, while the workload still runs, and drop nothing
/// until [`NetLock::arm`] adds their rules (and whatever flows appeared
/// since) in one short transaction.
pub fn prepare(
    owner: Owner,
    label: &str,
    netns: NetNs,
    flows: &[TcpFlow],
) -> Result<NetLock, NetLockError> {
    make(owner, label, netns, flows, Shape::Prepared)
}

/// Locks the whole network namespace `netns` for `owner`: every packet
/// in and out dropped but those carrying [`REPAIR_MARK`] or [`CRIU_MARK`]
/// (a namespace a tree shares with others and leaves where it is, as
/// CRIU locks the namespaces it dumps). Effective at once; `label` as for
/// [`engage`].
pub fn engage_namespace(owner: Owner, label: &str, netns: NetNs) -> Result<NetLock, NetLockError> {
    make(owner, label, netns, &[], Shape::Namespace)
}

/// What a lock's table drops.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// The packets of its flows, from the start.
    Armed,
    /// Nothing until [`NetLock::arm`].
    Prepared,
    /// Every packet of its namespace.
    Namespace,
}

/// The table of [`engage`], [`prepare`] or [`engage_namespace`].
fn make(
    owner: Owner,
    label: &str,
    netns: NetNs,
    flows: &[TcpFlow],
    shape: Shape,
) -> Result<NetLock, NetLockError> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let label: String = label
        .chars()
        .take(48)
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let table = format!("{}{label}_{nanos:x}", owner.prefix());
    let comment = match shape {
        Shape::Namespace => {
            format!("ferry network lock of {label}: namespace silent until restored")
        }
        _ => format!(
            "ferry network lock of {label}: {} TCP connections silent until restored",
            flows.len()
        ),
    };
    let commands = match shape {
        Shape::Armed => ruleset::engage_commands(&table, &comment, flows),
        Shape::Prepared => ruleset::prepare_commands(&table, &comment, flows),
        Shape::Namespace => ruleset::namespace_commands(&table, &comment),
    };
    let armed = shape != Shape::Prepared;
    // Journaled first: a run killed right after nft made the table still
    // leaves the way to it.
    journal::record(&table, &netns.path, &netns.name);
    if let Err(err) = run_nft(&netns, &["-f", "-"], &commands, "engaging a lock") {
        journal::forget(&table);
        return Err(err);
    }
    tracing::debug!(
        table,
        netns = netns.name,
        flows = flows.len(),
        armed,
        "network lock made"
    );
    Ok(NetLock {
        table,
        netns,
        engaged: true,
        armed,
        known: flows.iter().copied().collect(),
        whole: shape == Shape::Namespace,
    })
}

impl NetLock {
    /// Makes the lock cover `flows` (those it does not hold yet are
    /// added) and take effect if it did not yet, in one transaction; no
    /// nft run at all when it is armed and knows every one of them. A
    /// flow it holds that is not in `flows` (closed since) stays:
    /// dropping the packets of a closed connection changes nothing.
    pub fn arm(&mut self, flows: &[TcpFlow]) -> Result<(), NetLockError> {
        if self.whole {
            return Ok(());
        }
        let new: Vec<TcpFlow> = flows
            .iter()
            .filter(|f| !self.known.contains(f))
            .copied()
            .collect();
        if self.armed && new.is_empty() {
            return Ok(());
        }
        let commands = ruleset::arm_commands(&self.table, &new, !self.armed);
        run_nft(&self.netns, &["-f", "-"], &commands, "arming a lock")?;
        self.armed = true;
        self.known.extend(new.iter().copied());
        tracing::debug!(table = self.table, added = new.len(), "network lock armed");
        Ok(())
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.table
    }

    /// Removes the lock: the connections answer again.
    pub fn release(mut self) -> Result<(), NetLockError> {
        self.engaged = false;
        release_table(&self.netns, &self.table)
    }

    /// Leaves the lock engaged and returns its name, for a later process
    /// (restore) to release with [`release_table`].
    pub fn keep(mut self) -> String {
        self.engaged = false;
        journal::forget(&self.table);
        std::mem::take(&mut self.table)
    }
}

impl Drop for NetLock {
    fn drop(&mut self) {
        if self.engaged {
            if let Err(err) = release_table(&self.netns, &self.table) {
                tracing::error!(table = self.table, %err, "releasing a dropped network lock failed");
            }
        }
    }
}

/// Removes lock `table` from `netns`; a table already gone is not an
/// error. Refuses a name ferry does not make (a name read from an image
/// must never remove someone else's table).
pub fn release_table(netns: &NetNs, table: &str) -> Result<(), NetLockError> {
    let ours = table.len() > TABLE_PREFIX.len()
        && table.starts_with(TABLE_PREFIX)
        && table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ours {
        return Err(NetLockError::ForeignTable {
            table: table.to_string(),
        });
    }
    let commands = ruleset::delete_commands(&[table.to_string()]);
    run_nft(netns, &["-f", "-"], &commands, "releasing a lock")?;
    journal::forget(table);
    tracing::debug!(table, netns = netns.name, "network lock released");
    Ok(())
}

/// Removes every lock of `owner` left in `netns` (by a run of the same
/// agent that was killed before releasing them) and returns their names.
/// Tables of other owners are left alone.
pub fn sweep(owner: Owner, netns: &NetNs) -> Result<Vec<String>, NetLockError> {
    let listing = run_nft(netns, &["list", "tables"], "", "listing tables")?;
    let prefix = owner.prefix();
    let stale: Vec<String> = ruleset::inet_tables(&listing)
        .into_iter()
        .filter(|t| t.starts_with(&prefix))
        .collect();
    if !stale.is_empty() {
        run_nft(
            netns,
            &["-f", "-"],
            &ruleset::delete_commands(&stale),
            "removing stale locks",
        )?;
        tracing::info!(?stale, netns = netns.name, "stale network locks removed");
    }
    Ok(stale)
}

/// Removes every lock of `owner` that a killed run left in a network
/// namespace other than its own (a container's, where a source tree
/// keeps running after its agent died): the namespaces its journal
/// names, while they exist. Returns the tables removed.
pub fn sweep_journaled(owner: Owner) -> Result<Vec<String>, NetLockError> {
    let mut removed = Vec::new();
    for (path, name) in journal::take_namespaces(&owner.prefix()) {
        // A path that leads nowhere now, or to another namespace (its
        // process died, its PID was reused): the namespace is gone, and
        // its tables with it.
        match NetNs::at(Path::new(&path)) {
            Ok(netns) if netns.name == name => removed.extend(sweep(owner, &netns)?),
            _ => {}
        }
    }
    Ok(removed)
}

/// Checks that nft can run, before a tree holding `flows` is frozen: the
/// refusal names the connections.
pub fn check_nft(flows: &[TcpFlow]) -> Result<(), NetLockError> {
    let missing = |why: String| NetLockError::NftMissing {
        flows: flows.to_vec(),
        why,
    };
    match Command::new("nft").arg("--version").output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(missing(format!("nft --version ended with {}", out.status))),
        Err(e) => Err(missing(e.to_string())),
    }
}

/// Runs `nft ARGS` with `input` on its stdin inside `netns` and returns
/// its stdout.
fn run_nft(
    netns: &NetNs,
    args: &[&str],
    input: &str,
    action: &str,
) -> Result<String, NetLockError> {
    run_tool(netns, "nft", args, input, action)
}

/// Runs `program ARGS` (nft, iptables-legacy-save, ...) with `input` on
/// its stdin inside `netns` and returns its stdout; `action` says what it
/// was for, in errors. A namespace other than the caller's is entered by
/// a thread of ours (setns), which the program inherits; the rest of the
/// process stays where it is.
pub fn run_tool(
    netns: &NetNs,
    program: &str,
    args: &[&str],
    input: &str,
    action: &str,
) -> Result<String, NetLockError> {
    crate::kernel::in_net_namespace_of(&netns.file, || {
        tool_here(netns, program, args, input, action)
    })
    .map_err(|errno| NetLockError::Namespace {
        what: netns.name.clone(),
        source: errno.into(),
    })?
}

/// Runs `program` in the calling thread's network namespace.
fn tool_here(
    netns: &NetNs,
    program: &str,
    args: &[&str],
    input: &str,
    action: &str,
) -> Result<String, NetLockError> {
    let spawn_failed = |source| NetLockError::Spawn {
        program: program.to_string(),
        netns: netns.name.clone(),
        source,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_failed)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes()).map_err(spawn_failed)?;
    }
    let out = child.wait_with_output().map_err(spawn_failed)?;
    if !out.status.success() {
        return Err(NetLockError::Nft {
            action: format!("{program} {action}"),
            netns: netns.name.clone(),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
