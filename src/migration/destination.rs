//! The destination side of a live migration: accept or refuse the offer,
//! store the pages of every round as they arrive, and on the frozen state
//! restore the workload, report it running and keep it only once the
//! source confirms. On any failure nothing is left here.

use super::destination_shared::{container_of, keep, kill_tree, name};
pub use super::destination_shared::{DestinationOptions, DestinationState, Received, Reconnect};
use super::error::MigrationError;
use super::page_store::{wait_round, PageStore};
use super::postcopy_destination::PostCopyArrival;
use super::protocol::{Offer, RemoteRuns, ToDestination, ToSource};
use crate::dump::sink::{CheckpointSink, ImageSink};
use crate::image::{Checkpoint, ImageWriter};
use crate::transport::Session;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// What a session opened by a peer agent was for.
#[derive(Debug)]
pub enum Outcome {
    /// A migration: the workload runs here.
    Received(Received),
    /// A dry run's probe: nothing was kept.
    Probed,
    /// The destination of a post-copy migration from here reconnects after
    /// the link broke: hand the session to the waiting source
    /// ([`super::postcopy::hand_over`]).
    Resume(super::protocol::ResumeRequest),
}

/// Why receiving a migration failed. Nothing of it is left here.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    /// The peer broke the protocol or the link failed.
    #[error("migration from {peer} failed in state {state:?}: {why}")]
    Failed {
        /// The source agent.
        peer: String,
        /// Where the migration was.
        state: DestinationState,
        /// What went wrong.
        #[source]
        why: MigrationError,
    },
}

/// How long a failed migration's session stays open for the source to
/// read why.
const LINGER: Duration = Duration::from_secs(2);

/// Receives one migration on `session` (the source has just connected),
/// or answers a probe, or recognises a post-copy resume.
pub async fn receive(
    session: &mut Session,
    opts: &DestinationOptions,
) -> Result<Outcome, ReceiveError> {
    let mut state = DestinationState::Accepting;
    let peer = session.peer_addr().to_string();
    let mut dir = None;
    let mut restored: Option<Vec<i32>> = None;
    let mut created = None;
    let result = run(
        session,
        opts,
        &mut state,
        &mut dir,
        &mut restored,
        &mut created,
    )
    .await;
    if let Err(why) = &result {
        tracing::warn!(%peer, ?state, %why, "migration failed; cleaning up");
        let reason = format!("the destination failed while {}: {why}", describe(state));
        let _ = session.send(&ToSource::Failed { reason }).await;
        if let Some(pids) = restored {
            kill_tree(&pids);
        }
        if let Some(c) = created {
            delete_container(&c);
        }
    }
    if let Some(dir) = dir {
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::warn!(dir = %dir.display(), %e, "cannot remove an incoming image");
        }
    }
    if result.is_err() {
        // Nothing is left here now. Closing at once would lose the
        // answers in flight (a refusal, the failure): let the source read
        // them and close first.
        let _ = tokio::time::timeout(LINGER, async {
            while session.recv::<ToDestination>().await.is_ok() {}
        })
        .await;
    }
    result.map_err(|why| ReceiveError::Failed { peer, state, why })
}

fn describe(state: DestinationState) -> String {
    match state {
        DestinationState::Accepting => "checking the offer".into(),
        DestinationState::Receiving { round } => format!("storing round {round}"),
        DestinationState::Restoring => "restoring".into(),
        DestinationState::PostCopy => "fetching pages from the source (post-copy)".into(),
        DestinationState::Running => "waiting for the source's confirmation".into(),
        DestinationState::Done => "finishing".into(),
    }
}

async fn run(
    session: &mut Session,
    opts: &DestinationOptions,
    state: &mut DestinationState,
    dir_out: &mut Option<PathBuf>,
    restored: &mut Option<Vec<i32>>,
    created: &mut Option<crate::container::Container>,
) -> Result<Outcome, MigrationError> {
    let offer = match session.recv::<ToDestination>().await {
        Ok(ToDestination::Offer(offer)) => offer,
        Ok(ToDestination::Probe(probe)) => {
            super::dryrun::answer_probe(session, probe).await?;
            return Ok(Outcome::Probed);
        }
        Ok(ToDestination::Resume(req)) => return Ok(Outcome::Resume(req)),
        Ok(other) => {
            return Err(MigrationError::protocol(format!(
                "expected an offer, got {}",
                name(&other)
            )))
        }
        Err(e) => return Err(e.into()),
    };
    let dir = opts.work_dir.join(sanitize(&offer.id));
    if let Err(reason) = check_offer(&offer, &dir, opts) {
        let _ = session
            .send(&ToSource::Refused {
                reason: reason.to_string(),
            })
            .await;
        return Err(reason);
    }
    let writer = ImageWriter::create(&dir).map_err(MigrationError::local)?;
    *dir_out = Some(dir.clone());
    tracing::info!(id = %offer.id, pid = offer.pid, bytes = offer.memory_bytes, "offer accepted");
    session.send(&ToSource::Accepted).await?;

    let (store, mut stored) = PageStore::start(writer, session.take_incoming_pages());
    let mut counts: BTreeMap<u32, u64> = BTreeMap::new();
    let mut round = 0u32;
    let mut rootfs = super::rootfs_sync::DestinationRootfs::default();
    let bundle = offer.container.as_ref().map(|c| c.bundle.clone());
    let (checkpoint, remote): (Checkpoint, Option<Vec<RemoteRuns>>) = loop {
        *state = DestinationState::Receiving { round };
        // The control read is not cancel-safe: keep one future and count
        // stored frames while it waits.
        let message = {
            let recv = session.recv::<ToDestination>();
            tokio::pin!(recv);
            loop {
                tokio::select! {
                    m = &mut recv => break m?,
                    s = stored.recv() => match s {
                        Some(Ok(r)) => *counts.entry(r).or_default() += 1,
                        Some(Err(e)) => return Err(e),
                        None => return Err(MigrationError::local("the page store stopped")),
                    },
                }
            }
        };
        match message {
            ToDestination::RoundEnd { round: r, frames } if r == round => {
                wait_round(&mut stored, &mut counts, round, frames).await?;
                store.acked.store(round + 1, Ordering::Release);
                session.send(&ToSource::RoundStored { round }).await?;
                round += 1;
            }
            ToDestination::State(checkpoint) => break (*checkpoint, None),
            ToDestination::PostCopyState { checkpoint, remote } => {
                break (*checkpoint, Some(remote))
            }
            ToDestination::Abort { reason } => {
                return Err(MigrationError::refused("the source aborted: ", reason))
            }
            ToDestination::RootfsQuery => rootfs.answer_query(session, bundle.as_deref()).await?,
            ToDestination::RootfsChanges { changes, last } => {
                rootfs
                    .apply(session, bundle.as_deref(), changes, last)
                    .await?
            }
            other => {
                return Err(MigrationError::protocol(format!(
                    "unexpected {} in round {round}",
                    name(&other)
                )))
            }
        }
    };
    drop(stored);
    let (writer, incoming) = store.finish().await?;
    if let Some(remote) = remote {
        let arrival = PostCopyArrival {
            dir,
            offer,
            checkpoint,
            writer,
            incoming,
            remote,
        };
        return super::postcopy_destination::run(session, opts, state, restored, created, arrival)
            .await
            .map(Outcome::Received);
    }

    *state = DestinationState::Restoring;
    let tids: Vec<i32> = checkpoint
        .processes
        .iter()
        .flat_map(|p| p.threads.iter().map(|t| t.tid))
        .collect();
    let restore_dir = dir.clone();
    let container = container_of(&offer, opts);
    let target = container.clone();
    let restore = tokio::task::spawn_blocking(move || {
        let mut sink = ImageSink::new(writer);
        sink.commit(&checkpoint).map_err(MigrationError::local)?;
        match target {
            Some(t) => {
                let husk = t.prepare()?;
                crate::container::restore_created(
                    &t.container,
                    husk,
                    &restore_dir,
                    crate::restore::RestoreOptions::default(),
                )
                .map_err(MigrationError::local)
            }
            None => crate::restore::restore(&restore_dir).map_err(MigrationError::local),
        }
    })
    .await
    .map_err(|e| MigrationError::local_in("the restore task failed", e))??;
    match container {
        // Its PIDs are the container's: the container is what to remove
        // on a later failure.
        Some(t) => *created = Some(t.container),
        None => *restored = Some(tids),
    }

    *state = DestinationState::Running;
    session
        .send(&ToSource::Running {
            restore_ms: restore.restore_ms,
            pid: restore.pid,
        })
        .await?;
    match tokio::time::timeout(opts.confirm_timeout, session.recv::<ToDestination>()).await {
        Ok(Ok(ToDestination::Done)) => keep(session, opts).await,
        Ok(Ok(other)) => {
            return Err(MigrationError::protocol(format!(
                "expected the source's confirmation, got {}",
                name(&other)
            )))
        }
        Ok(Err(e)) => return Err(e.into()),
        Err(_) => {
            return Err(MigrationError::protocol(format!(
                "no confirmation from the source within {:?}",
                opts.confirm_timeout
            )))
        }
    }
    *restored = None;
    *created = None;
    *state = DestinationState::Done;
    Ok(Outcome::Received(Received {
        id: offer.id,
        pid: restore.pid,
        restore_ms: restore.restore_ms,
    }))
}

/// Refuses an offer this host cannot take, with the reason as a sentence.
fn check_offer(offer: &Offer, dir: &Path, opts: &DestinationOptions) -> Result<(), MigrationError> {
    // A container's PIDs are those of the PID namespace it gets here.
    let host_tids: &[i32] = if offer.container.is_some() {
        &[]
    } else {
        &offer.tids
    };
    crate::restore::check_target(offer.xcr0, offer.xstate_size, host_tids)
        .map_err(MigrationError::local)?;
    if let Some(c) = &offer.container {
        crate::container::check_capabilities().map_err(MigrationError::local)?;
        crate::container::check_runtime(c.runtime).map_err(MigrationError::local)?;
        crate::container::check_bundle(&c.id, Path::new(&c.bundle))
            .map_err(MigrationError::local)?;
        if c.network.is_some() && opts.network_hook.is_none() {
            return Err(MigrationError::local(format!(
                "container {} has a network namespace of its own, and this agent has no network hook to configure it ([container] network_hook in its configuration)",
                c.id
            )));
        }
        let root = c.runtime_root.as_deref().map(Path::new);
        let here = crate::container::Container::new(c.runtime, root, &c.id);
        if here.state().is_ok() {
            return Err(MigrationError::local(format!(
                "a container {} exists here already ({} --root {})",
                c.id,
                c.runtime.binary(),
                here.root.display()
            )));
        }
    }
    if dir.exists() {
        return Err(MigrationError::local(format!(
            "a migration with identifier {} is already in progress here ({})",
            offer.id,
            dir.display()
        )));
    }
    Ok(())
}

/// A migration identifier as a directory name.
fn sanitize(id: &str) -> String {
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
/// Deletes a container restored here whose migration then failed.
fn delete_container(c: &crate::container::Container) {
    if let Err(e) = c.delete() {
        tracing::error!(id = %c.id, %e, "deleting the container of a failed migration failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::net::{Interface, NetworkConfig};
    use crate::migration::protocol::ContainerOffer;

    fn offer(bundle: &Path) -> Offer {
        Offer {
            id: "t".into(),
            pid: 1,
            tids: vec![1],
            xcr0: crate::kernel::cpu::xcr0(),
            xstate_size: crate::kernel::cpu::xsave_size(),
            memory_bytes: 0,
            page_streams: 1,
            container: Some(ContainerOffer {
                id: format!("ferry-check-offer-{}", std::process::id()),
                runtime: crate::container::Runtime::Runc,
                runtime_root: Some(bundle.join("runc-root").display().to_string()),
                bundle: bundle.display().to_string(),
                network: Some(NetworkConfig {
                    interfaces: vec![Interface {
                        name: "eth0".into(),
                        addresses: vec!["10.232.0.2/24".into()],
                    }],
                    routes: vec![],
                }),
            }),
        }
    }

    #[test]
    fn a_container_with_its_own_network_needs_a_hook() {
        let bundle = tempfile::tempdir().unwrap();
        std::fs::write(bundle.path().join("config.json"), "{}").unwrap();
        let offer = offer(bundle.path());
        let mut opts = DestinationOptions {
            work_dir: bundle.path().join("work"),
            confirm_timeout: Duration::from_secs(1),
            reconnect: None,
            network_hook: None,
        };
        let dir = opts.work_dir.join("t");
        let refused = check_offer(&offer, &dir, &opts).unwrap_err().to_string();
        assert!(refused.contains("no network hook"), "{refused}");
        opts.network_hook = Some(PathBuf::from("/bin/true"));
        check_offer(&offer, &dir, &opts).unwrap();
    }
}
