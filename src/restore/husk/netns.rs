//! The tree's network namespace at restore, twin of `dump/netns.rs`: the
//! restoring program's, a new one made again from the image (lo's state
//! and addresses, then the firewall, with the tools that saved it, before
//! any socket of the tree is created in it), or one the restore joins
//! (`--join-netns PATH`, CRIU's --join-ns net:PATH). The root husk is
//! spawned into it, and every other process is cloned from the root's.

use crate::image::{Checkpoint, NetnsImage, NetworkNamespace};
use crate::kernel::SpawnedHusk;
use crate::netlock::{run_tool, NetNs};
use crate::restore::error::RestoreError;
use nix::errno::Errno;
use nix::unistd::Pid;
use std::path::Path;

/// Where the restored tree's network lives.
#[derive(Debug)]
pub enum NetnsTarget<'a> {
    /// The restoring program's network namespace.
    Ours,
    /// A new namespace, made as the image says.
    New(&'a NetnsImage),
    /// An existing namespace, held open.
    Join(NetNs),
}

impl<'a> NetnsTarget<'a> {
    /// Where the tree of `ck` goes: `join` (a path to a network
    /// namespace) when given; else a new namespace when the image carries
    /// one, ours when it shared the checkpointing program's. An image
    /// whose namespace was left outside needs `join`; one that carries its
    /// own refuses it.
    pub fn choose(ck: &'a Checkpoint, join: Option<&Path>) -> Result<Self, RestoreError> {
        let pid = ck.root().map_or(0, |p| p.pid);
        match (&ck.network_namespace, join) {
            (NetworkNamespace::Own(_), Some(path)) => Err(RestoreError::Netns {
                pid,
                why: format!("the image carries the tree's own network namespace, which is made again: --join-netns {} does not apply", path.display()),
            }),
            (NetworkNamespace::Own(image), None) => Ok(NetnsTarget::New(image)),
            (_, Some(path)) => NetNs::at(path).map(NetnsTarget::Join).map_err(|e| RestoreError::Netns {
                pid,
                why: e.to_string(),
            }),
            (NetworkNamespace::External, None) => Err(RestoreError::Netns {
                pid,
                why: "the checkpoint left the tree's network namespace outside (checkpoint --external-netns): name the namespace to join with restore --join-netns PATH".into(),
            }),
            (NetworkNamespace::Shared, None) => Ok(NetnsTarget::Ours),
        }
    }

    /// Spawns the root husk with `spawn` (given the extra clone flags) in
    /// this namespace: a new one made by the clone, or an existing one
    /// entered by the spawning thread first.
    pub fn spawn(
        &self,
        spawn: impl FnOnce(u64) -> Result<SpawnedHusk, Errno> + Send,
    ) -> Result<SpawnedHusk, Errno> {
        match self {
            NetnsTarget::Ours => spawn(0),
            NetnsTarget::New(_) => spawn(libc::CLONE_NEWNET as u64),
            NetnsTarget::Join(netns) => netns.enter(|| spawn(0))?,
        }
    }

    /// Makes a new namespace what the image says, from outside the husk
    /// `husk` that lives in it (`pid` names the tree in errors): lo up
    /// with its addresses, then the legacy iptables and ip6tables rules,
    /// then the nftables ruleset. Nothing for the other targets.
    pub fn configure(&self, pid: i32, husk: Pid) -> Result<(), RestoreError> {
        let NetnsTarget::New(image) = self else {
            return Ok(());
        };
        let failed = |e: crate::netlock::NetLockError| RestoreError::Netns {
            pid,
            why: e.to_string(),
        };
        let netns = NetNs::of_process(husk.as_raw()).map_err(failed)?;
        let run = |program: &str, args: &[&str], input: &str, action: &str| {
            run_tool(&netns, program, args, input, action).map_err(failed)
        };
        if image.loopback_up {
            run(
                "ip",
                &["link", "set", "dev", "lo", "up"],
                "",
                "bringing lo up",
            )?;
        }
        for address in &image.loopback_addresses {
            run(
                "ip",
                &["address", "add", address, "dev", "lo"],
                "",
                "adding an address to lo",
            )?;
        }
        for (program, rules) in [
            ("iptables-legacy-restore", &image.iptables),
            ("ip6tables-legacy-restore", &image.ip6tables),
        ] {
            if !rules.is_empty() {
                run(program, &[], rules, "restoring the rules")?;
            }
        }
        if !image.nftables.is_empty() {
            run(
                "nft",
                &["-f", "-"],
                &image.nftables,
                "restoring the ruleset",
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::testutil::sample_checkpoint;

    fn image() -> NetnsImage {
        NetnsImage {
            loopback_up: true,
            loopback_addresses: vec![],
            iptables: String::new(),
            ip6tables: String::new(),
            nftables: String::new(),
        }
    }

    #[test]
    fn an_external_namespace_must_be_joined_and_an_own_one_is_made() {
        let mut ck = sample_checkpoint();
        ck.network_namespace = NetworkNamespace::External;
        let err = NetnsTarget::choose(&ck, None).unwrap_err().to_string();
        assert!(err.contains("restore --join-netns PATH"), "{err}");
        let joined = NetnsTarget::choose(&ck, Some(Path::new("/proc/self/ns/net")));
        assert!(matches!(joined, Ok(NetnsTarget::Join(_))));

        ck.network_namespace = NetworkNamespace::Own(image());
        assert!(matches!(
            NetnsTarget::choose(&ck, None),
            Ok(NetnsTarget::New(_))
        ));
        let err = NetnsTarget::choose(&ck, Some(Path::new("/proc/self/ns/net")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not apply"), "{err}");

        ck.network_namespace = NetworkNamespace::Shared;
        assert!(matches!(
            NetnsTarget::choose(&ck, None),
            Ok(NetnsTarget::Ours)
        ));
    }
}
