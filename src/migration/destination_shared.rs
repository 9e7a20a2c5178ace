//! What the destination's two halves (a pre-copy restore in
//! [`super::destination`], a post-copy one in
//! [`super::postcopy_destination`]) share: the agent's options, what a
//! finished migration leaves, the container an offer moves, and how the
//! workload is kept or killed.

use super::error::MigrationError;
use super::protocol::{Offer, RootfsRequest, ToDestination, ToSource};
use crate::container::docker::PreparedStart;
use crate::restore::HeldTree;
use crate::transport::Session;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How a post-copy destination reconnects to the source agent when the
/// link breaks while the workload runs here with pages still there.
#[derive(Clone)]
pub struct Reconnect {
    /// This agent's endpoint, to connect from.
    pub transport: Arc<crate::transport::Transport>,
    /// How long to keep trying (the source waits a margin longer).
    pub within: Duration,
}

impl std::fmt::Debug for Reconnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconnect")
            .field("within", &self.within)
            .finish_non_exhaustive()
    }
}

/// Where the destination keeps incoming images, and how long it waits for
/// the source's last word.
#[derive(Debug, Clone)]
pub struct DestinationOptions {
    /// Directory for incoming images (one subdirectory per migration).
    pub work_dir: PathBuf,
    /// How long to wait for the source's confirmation after reporting the
    /// workload running; without it the restored copy is killed, since the
    /// source then resumes its own.
    pub confirm_timeout: Duration,
    /// Post-copy recovery (None: a broken link ends the migration and the
    /// copy here is killed).
    pub reconnect: Option<Reconnect>,
    /// The command that configures a migrated container's own network
    /// namespace before its restore (None: such containers are refused).
    pub network_hook: Option<PathBuf>,
    /// The dockerd here, which creates and starts migrated Docker
    /// containers.
    pub docker: crate::container::docker::Docker,
}

/// The name of the state a received migration is in, for the log and the
/// error when it fails (the states themselves, with what each holds, are
/// destination.rs's `Receipt`; post-copy's sub-states are named by
/// postcopy_destination.rs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestinationState {
    /// Waiting for an offer.
    Accepting,
    /// Storing the pages of a pre-copy round.
    Receiving {
        /// The round.
        round: u32,
    },
    /// Restoring the workload.
    Restoring,
    /// Post-copy: the workload runs while its pages still come from the
    /// source.
    PostCopy,
    /// The workload runs; waiting for the source's confirmation.
    Running,
    /// The migration is complete.
    Done,
}

/// What a finished migration left here.
#[derive(Debug, Clone)]
pub struct Received {
    /// The migration's identifier.
    pub id: String,
    /// The restored root PID.
    pub pid: i32,
    /// Milliseconds the restore took.
    pub restore_ms: f64,
    /// Pages the restore moved in from a warm restore's staging instead
    /// of installing them.
    pub pages_moved: u64,
}

/// The container an offer moves, as this host creates it.
#[derive(Debug)]
pub(super) struct ContainerTarget {
    /// The container, as this host's runtime names it.
    pub container: crate::container::Container,
    /// Its own network namespace: the hook and the source's addresses.
    network: Option<(PathBuf, crate::container::net::NetworkConfig)>,
    /// A Docker container: created and being started by the dockerd
    /// here since the offer; its init comes from ferry-runc's handoff.
    docker: Option<PreparedStart>,
    /// A runc or crun container: created at the offer (its network hook's
    /// `prepare` phase run then too).
    created: Option<CreatedContainer>,
}

impl ContainerTarget {
    /// The waiting init of the container made at the offer, for the
    /// restore ([`ContainerTarget::restore`]). A Docker container's init
    /// is the one ferry-runc hands over (created by `docker start`).
    pub fn husk(&mut self) -> Result<i32, MigrationError> {
        if let Some(d) = &self.docker {
            let (pid, container) = d.husk().map_err(MigrationError::local)?;
            self.container = container;
            return Ok(pid);
        }
        self.created.as_ref().map(|c| c.pid).ok_or_else(|| {
            MigrationError::local(format!(
                "container {} was not created at the offer",
                self.container.id
            ))
        })
    }

    /// Makes the addresses of the container's network namespace of its
    /// own, if it has one, reachable here (its network hook's `activate`
    /// phase, after `prepare` for a container that was not created at the
    /// offer), and restores the image in `dir` into its init `husk` as
    /// `opts` says; called under the network lock, so the address appears
    /// with the moved connections already silent. The activation runs on
    /// a thread of its own beside the restore: it only makes the host
    /// route to addresses the namespace has held since `prepare`, which
    /// the restore does not need (the hook's 15-20 ms left the downtime).
    /// On failure the container is deleted.
    pub fn restore(
        &mut self,
        husk: i32,
        dir: &Path,
        opts: crate::restore::RestoreOptions,
    ) -> Result<(crate::restore::RestoreStats, Option<HeldTree>), MigrationError> {
        use crate::container::net::{run_hook, HookPhase};
        // Each step below deletes the container when it fails.
        if let Some(c) = self.created.as_mut() {
            c.handed_over = true;
        }
        if let (Some((hook, config)), None) = (&self.network, &self.created) {
            let network = crate::container::NetworkSetup { hook, config };
            crate::container::configure_network(&self.container, husk, network, HookPhase::Prepare)
                .map_err(MigrationError::local)?;
        }
        let container = &self.container;
        let (restored, activated) = std::thread::scope(|scope| {
            let activating = self.network.as_ref().map(|(hook, config)| {
                scope.spawn(move || {
                    run_hook(hook, (&container.id, husk), config, HookPhase::Activate)
                })
            });
            let restored = crate::container::restore_created(container, husk, dir, opts);
            let activated = activating.map_or(Ok(()), |a| {
                // A panic goes on to the restore task's caller, which
                // reports it as the task's failure.
                a.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
            });
            (restored, activated)
        });
        // A failed restore deleted the container.
        let (stats, held) = restored.map_err(MigrationError::local)?;
        if let Err(e) = activated {
            self.workload(held).remove();
            return Err(MigrationError::local(e));
        }
        Ok((stats, held))
    }

    /// What a later failure removes: the container, and the copy `held`
    /// in it, if it is.
    pub fn workload(&self, held: Option<HeldTree>) -> Workload {
        match &self.docker {
            Some(d) => Workload::Docker(d.clone(), held),
            None => Workload::Container(self.container.clone(), held),
        }
    }

    /// Once the restored container runs here (`husk` its init), tells
    /// the link where its addresses are now (gratuitous ARP), so that
    /// peers stop sending to the source host: on a thread of its own,
    /// beside the report that the copy runs (it reads the interfaces of
    /// two namespaces, which the downtime need not wait for); only
    /// logged, whatever happens.
    pub fn announce(&self, husk: i32) {
        let Some((_, config)) = &self.network else {
            return;
        };
        let (id, config) = (self.container.id.clone(), config.clone());
        let spawned = std::thread::Builder::new()
            .name("announce".into())
            .spawn(move || {
                let (sent, failed) = crate::container::announce::announce(husk, &config);
                tracing::info!(%id, announced = ?sent, "announced the moved addresses");
                for why in failed {
                    tracing::warn!(%id, %why, "announcing a moved address failed");
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(id = %self.container.id, %e, "cannot start announcing the moved addresses");
        }
    }
}

/// The container an offer moves (None for a process tree), made ready
/// before the source freezes anything: a Docker container's start
/// prepared by the dockerd here (`docker`); a runc or crun container
/// created, its init waiting (the runtime's `create` takes 40-60 ms,
/// which the downtime no longer holds), its network namespace of its own
/// prepared by the network hook. Blocking.
pub(super) fn prepare_container(
    offer: &Offer,
    opts: &DestinationOptions,
    docker: Option<PreparedStart>,
) -> Result<Option<ContainerTarget>, MigrationError> {
    let Some(c) = offer.container.as_ref() else {
        return Ok(None);
    };
    let root = c.runtime_root.as_deref().map(Path::new);
    let container = crate::container::Container::new(c.runtime, root, &c.id);
    let network = c
        .network
        .clone()
        .and_then(|n| opts.network_hook.clone().map(|hook| (hook, n)));
    let created = match docker {
        Some(_) => None,
        None => {
            let created = CreatedContainer::create(
                &opts.work_dir,
                &offer.id,
                container.clone(),
                Path::new(&c.bundle),
            )?;
            // Dropped on failure, the container goes with what the
            // hook made in its namespace.
            if let Some((hook, config)) = &network {
                let phase = crate::container::net::HookPhase::Prepare;
                crate::container::net::run_hook(hook, (&c.id, created.pid), config, phase)
                    .map_err(MigrationError::local)?;
            }
            Some(created)
        }
    };
    Ok(Some(ContainerTarget {
        container,
        network,
        docker,
        created,
    }))
}

/// The records of containers created at an offer and not yet restored
/// into, inside the agent's work directory (a name no migration's
/// incoming directory can have: it has a dot).
const CREATED_DIR: &str = ".created";

/// A runc or crun container created at the offer, its init waiting.
/// Until the restore takes it over ([`ContainerTarget::restore`]), a
/// failure (this dropped) deletes it. Until the restore has ended, a
/// record in the work directory names it, so that should this agent die
/// meanwhile its next start deletes it ([`remove_stale_created`]); the
/// record goes before the destination records its copy Prepared, so a
/// container the source may commit to is never deleted by it.
#[derive(Debug)]
struct CreatedContainer {
    container: crate::container::Container,
    pid: i32,
    record: PathBuf,
    handed_over: bool,
}

impl CreatedContainer {
    /// Creates `container` from `bundle` for migration `id`, recorded in
    /// `work_dir` once the runtime made it (a container of that name
    /// that exists already is refused by the runtime, and never recorded).
    fn create(
        work_dir: &Path,
        id: &str,
        container: crate::container::Container,
        bundle: &Path,
    ) -> Result<Self, MigrationError> {
        let pid = container
            .create(bundle, crate::container::InitStdio::Null)
            .map_err(MigrationError::local)?
            .pid;
        let dir = work_dir.join(CREATED_DIR);
        let created = CreatedContainer {
            record: dir.join(sanitize(id)),
            container,
            pid,
            handed_over: false,
        };
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(&created.record, record_line(&created.container)))
            .map_err(|e| {
                MigrationError::local(format!(
                    "cannot record the container {} created at the offer in {}: {e}",
                    created.container.id,
                    dir.display()
                ))
            })?;
        tracing::debug!(id = %created.container.id, pid, "created the container at the offer");
        Ok(created)
    }
}

impl Drop for CreatedContainer {
    fn drop(&mut self) {
        if !self.handed_over {
            if let Err(e) = self.container.delete() {
                tracing::error!(id = %self.container.id, %e, "deleting the container created for a failed migration failed");
            }
        }
        let _ = std::fs::remove_file(&self.record);
    }
}

/// At the agent's start: deletes each container a dead run of it created
/// at an offer and had not restored into (still `created`, never
/// started: a container that runs is left alone), and its record.
pub(super) fn remove_stale_created(work_dir: &Path) {
    let Ok(records) = std::fs::read_dir(work_dir.join(CREATED_DIR)) else {
        return;
    };
    for path in records.flatten().map(|e| e.path()) {
        let line = std::fs::read_to_string(&path).unwrap_or_default();
        match from_record_line(&line).map(|c| (c.state(), c)) {
            Some((Ok(st), c)) if st.status == "created" => match c.delete() {
                Ok(()) => {
                    tracing::info!(id = %c.id, "deleted the container a dead run of this agent created for a migration")
                }
                Err(e) => {
                    tracing::error!(id = %c.id, %e, "deleting the container a dead run of this agent created failed")
                }
            },
            Some((Ok(st), c)) => {
                tracing::info!(id = %c.id, status = %st.status, "a container a dead run of this agent created runs; left alone")
            }
            Some((Err(_), _)) => {} // gone already
            None => {
                tracing::warn!(record = %path.display(), "unreadable record of a created container; removed")
            }
        }
        let _ = std::fs::remove_file(&path);
    }
}

/// A created container's record: its runtime, ID and state directory
/// (last: a path may hold spaces), read back by [`from_record_line`].
fn record_line(c: &crate::container::Container) -> String {
    format!("{} {} {}\n", c.runtime.binary(), c.id, c.root.display())
}

/// The container a [`record_line`] names (None when it is not one).
fn from_record_line(line: &str) -> Option<crate::container::Container> {
    let mut words = line.trim_end_matches('\n').splitn(3, ' ');
    let runtime = crate::container::Runtime::from_name(words.next()?)?;
    let (id, root) = (words.next()?, words.next()?);
    Some(crate::container::Container::new(
        runtime,
        Some(Path::new(root)),
        id,
    ))
}

/// Answers the source's Done: the workload stays whatever happens to
/// this answer (the source kills its copy once it reads it, or times out);
/// the source closes the session once it has read it. A Docker
/// container's start is finished first (ferry-runc answered, `docker
/// start` returned: Docker's own bookkeeping, which the restored workload
/// runs through, out of the downtime); if that fails, the error goes back
/// instead of Kept (the caller's failure path answers Failed and removes
/// the container) and the source resumes its copy.
pub(super) async fn keep(
    session: &mut Session,
    opts: &DestinationOptions,
    workload: Option<&Workload>,
) -> Result<(), MigrationError> {
    if let Some(Workload::Docker(d, _)) = workload {
        let d = d.clone();
        tokio::task::spawn_blocking(move || d.finish())
            .await
            .map_err(|e| MigrationError::local_in("the Docker start task failed", e))?
            .map_err(MigrationError::local)?;
    }
    if let Some(w) = workload {
        w.keep();
    }
    let _ = session.send(&ToSource::Kept).await;
    let _ = tokio::time::timeout(opts.confirm_timeout, session.recv::<ToDestination>()).await;
    Ok(())
}

pub(super) fn name(message: &ToDestination) -> &'static str {
    match message {
        ToDestination::RoundEnd { .. } => "a round end",
        ToDestination::State(_) => "the process state",
        ToDestination::PostCopyState { .. } => "the process state for post-copy",
        ToDestination::Done => "a confirmation",
        ToDestination::Abort { .. } => "an abort",
        ToDestination::Rootfs(RootfsRequest::Query) => "a rootfs query",
        ToDestination::Rootfs(RootfsRequest::Changes { .. }) => "rootfs changes",
        ToDestination::Commit => "a commit",
    }
}

/// The workload restored here, as a failure removes it.
#[derive(Debug, Clone)]
pub(super) enum Workload {
    /// A process tree: its PIDs and TIDs (and their descendants) are
    /// killed.
    Tree(Vec<i32>),
    /// A container created here (its PIDs are its namespace's): deleted
    /// (its copy killed first when it is held).
    Container(crate::container::Container, Option<HeldTree>),
    /// A Docker container created here: removed through dockerd (its copy
    /// killed first when it is held).
    Docker(PreparedStart, Option<HeldTree>),
    /// A process tree restored and held frozen until the source decides:
    /// killed (and its freezer cgroup removed).
    Held(HeldTree),
}

impl Workload {
    /// The migration succeeded: the workload stays (a Docker container
    /// is no longer removed when its last handle goes).
    fn keep(&self) {
        if let Workload::Docker(d, _) = self {
            d.keep();
        }
    }

    /// The copy held frozen until the source decides, if it is.
    pub fn held(&self) -> Option<&HeldTree> {
        match self {
            Workload::Held(h) => Some(h),
            Workload::Container(_, h) | Workload::Docker(_, h) => h.as_ref(),
            Workload::Tree(_) => None,
        }
    }

    /// Kills the tree, or deletes the container.
    pub fn remove(self) {
        if let Workload::Container(_, Some(h)) | Workload::Docker(_, Some(h)) = &self {
            h.kill();
        }
        match self {
            Workload::Tree(pids) => kill_tree(&pids),
            Workload::Held(held) => held.kill(),
            Workload::Docker(d, _) => d.remove(),
            Workload::Container(c, _) => {
                if let Err(e) = c.delete() {
                    tracing::error!(id = %c.id, %e, "deleting the container of a failed migration failed");
                }
            }
        }
    }
}

/// Kills a restored workload: the listed PIDs and TIDs and every process
/// descended from them.
pub(super) fn kill_tree(pids: &[i32]) {
    // Children the restored workload forked since (a post-copy workload
    // runs before the source confirms) go too: listed first, since a
    // killed parent's children are reparented.
    let mut all: Vec<i32> = pids.to_vec();
    let mut i = 0;
    while i < all.len() {
        for child in crate::proc::children(all[i]).unwrap_or_default() {
            if !all.contains(&child) {
                all.push(child);
            }
        }
        i += 1;
    }
    for pid in all {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Prepares, when the offer arrives (long before the source freezes
/// anything), the lock of a process tree's connections (the offer's
/// `tcp_flows`) in this agent's network namespace, where the tree will
/// run: its table and sets, journaled, dropping nothing until
/// [`restore_locked`] arms it inside the downtime. Dropped on a failure
/// before, it is released. A container's lock lives in the container's
/// own namespace, which exists only once the container is created (in the
/// downtime): none is prepared for it.
pub(super) fn prepare_lock(
    work_dir: &Path,
    offer: &Offer,
) -> Result<Option<crate::netlock::NetLock>, MigrationError> {
    use crate::netlock::{self, NetNs, Owner};
    if offer.container.is_some() || offer.tcp_flows.is_empty() {
        return Ok(None);
    }
    NetNs::current()
        .and_then(|ns| netlock::prepare(Owner::of_dir(work_dir), "restore", ns, &offer.tcp_flows))
        .map(Some)
        .map_err(MigrationError::local)
}

/// Restores with the image's connections `flows` locked here: from
/// before the restore (in the network namespace the tree will run in: the
/// created container's, `husk`'s, or this agent's) until `restore`
/// returns with the tree running (or failed), so that no packet of a peer
/// is answered by a reset before the restored sockets take over. A lock
/// `prepared` by [`prepare_lock`] only takes effect here (its rules, and
/// the flows it lacks, in one short nft run); without one the lock is
/// made here. It belongs to this agent (`work_dir`), whose next start
/// sweeps it if it is killed meanwhile. The test-only fault hook
/// ([`crate::agent::fault`]) may refuse the restore before anything.
pub(super) fn restore_locked<T>(
    work_dir: &Path,
    flows: &[crate::image::TcpFlow],
    husk: Option<i32>,
    prepared: Option<crate::netlock::NetLock>,
    restore: impl FnOnce() -> Result<T, MigrationError>,
) -> Result<T, MigrationError> {
    use crate::netlock::{self, NetNs, Owner};
    crate::agent::fault::check_restore().map_err(MigrationError::local)?;
    let lock = match prepared {
        Some(mut lock) => lock.arm(flows).map(|()| lock),
        None if flows.is_empty() => return restore(),
        None => {
            let netns = match husk {
                Some(pid) => NetNs::of_process(pid),
                None => NetNs::current(),
            };
            let label = husk.map_or_else(|| "restore".to_string(), |p| format!("restore_{p}"));
            netns.and_then(|ns| netlock::engage(Owner::of_dir(work_dir), &label, ns, flows))
        }
    }
    .map_err(MigrationError::local)?;
    let restored = restore();
    if let Err(err) = lock.release() {
        tracing::error!(%err, "releasing the destination's network lock failed");
    }
    restored
}

/// Refuses, before the source freezes anything, connections of a process
/// tree whose local address this host does not have: their sockets could
/// not be bound here, and peers would keep sending to the old host. A
/// loopback address exists everywhere; a container with a network
/// namespace of its own takes its addresses along (no flows offered).
pub(super) fn check_local_addresses(flows: &[crate::image::TcpFlow]) -> Result<(), MigrationError> {
    let foreign: Vec<_> = flows
        .iter()
        .filter(|f| !f.local.ip().is_loopback())
        .collect();
    if foreign.is_empty() {
        return Ok(());
    }
    let here: Vec<std::net::IpAddr> = nix::ifaddrs::getifaddrs()
        .map_err(|e| MigrationError::local_in("cannot list this host's addresses", e))?
        .filter_map(|i| {
            let a = i.address?;
            a.as_sockaddr_in()
                .map(|v4| std::net::IpAddr::V4(v4.ip()))
                .or_else(|| a.as_sockaddr_in6().map(|v6| std::net::IpAddr::V6(v6.ip())))
        })
        .collect();
    match foreign
        .iter()
        .find(|f| !here.contains(&f.local.ip().to_canonical()))
    {
        Some(f) => Err(MigrationError::local(format!(
            "the TCP connection {} -> {} uses the local address {}, which this host does not have (a process tree keeps its addresses: move it in a container with a network namespace of its own, or give this host the address)",
            f.local,
            f.remote,
            f.local.ip()
        ))),
        None => Ok(()),
    }
}

/// A kernel limit of this host, from /proc/sys/kernel.
fn kernel_limit(name: &str) -> Result<u64, MigrationError> {
    let path = format!("/proc/sys/kernel/{name}");
    std::fs::read_to_string(&path)
        .map_err(|e| MigrationError::local(format!("cannot read {path}: {e}")))?
        .trim()
        .parse()
        .map_err(|e| MigrationError::local(format!("cannot parse {path}: {e}")))
}

/// Refuses an offer (a migration's or a probe's) whose claims no workload
/// on this host could have: more threads than threads-max, a TID beyond
/// pid_max. Checking each TID's /proc entry next is thus bounded.
pub(crate) fn check_offer_claims(offer: &Offer) -> Result<(), MigrationError> {
    let threads_max = kernel_limit("threads-max")?;
    if offer.tids.len() as u64 > threads_max {
        return Err(MigrationError::protocol(format!(
            "the offer names {} threads, more than this host can run ({threads_max}, /proc/sys/kernel/threads-max)",
            offer.tids.len()
        )));
    }
    let pid_max = kernel_limit("pid_max")?;
    if let Some(tid) = offer
        .tids
        .iter()
        .find(|&&tid| tid <= 0 || tid as u64 >= pid_max)
    {
        return Err(MigrationError::protocol(format!(
            "the offer names thread ID {tid}, outside 1 to {} (/proc/sys/kernel/pid_max is {pid_max})",
            pid_max - 1
        )));
    }
    Ok(())
}

/// A migration identifier as a directory name.
pub(super) fn sanitize(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(128)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::{Container, Runtime};

    #[test]
    fn a_created_container_record_reads_back() {
        let c = Container::new(Runtime::Crun, Some(Path::new("/run/my runtime")), "web-1");
        let read = from_record_line(&record_line(&c)).unwrap();
        assert_eq!(
            (read.runtime, read.id, read.root),
            (c.runtime, c.id, c.root)
        );
        assert!(from_record_line("docker web-1 /run/x\n").is_none());
        assert!(from_record_line("runc web-1").is_none());
    }
}
