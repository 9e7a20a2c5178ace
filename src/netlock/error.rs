//! Why a network lock could not be engaged, released or swept.

use crate::image::TcpFlow;

/// Why a network lock failed. Every variant names the table, namespace or
/// connections concerned.
#[derive(Debug, thiserror::Error)]
pub enum NetLockError {
    /// `nft` is not installed (or cannot run) while the tree holds
    /// connections that must be locked while it is frozen.
    #[error("the tree holds TCP connections ({}) that must be locked while it is frozen, but nft cannot run ({why}): install Debian's nftables package", describe_flows(.flows))]
    NftMissing {
        /// The connections that would need the lock.
        flows: Vec<TcpFlow>,
        /// Why nft could not run.
        why: String,
    },
    /// `nft` (or another firewall tool) could not be started at all.
    #[error("running {program} in network namespace {netns} failed: {source}")]
    Spawn {
        /// The program (nft, iptables-legacy-save, ...).
        program: String,
        /// The namespace (its nsfs name, e.g. net:[4026531840]).
        netns: String,
        /// The system's reason.
        source: std::io::Error,
    },
    /// `nft` (or another firewall tool) ran and refused the commands.
    #[error("{action} in network namespace {netns} failed ({status}): {stderr}")]
    Nft {
        /// The program and what was asked of it: "nft engaging a lock",
        /// "nft listing tables", "iptables-legacy-restore restoring the
        /// rules".
        action: String,
        /// The namespace.
        netns: String,
        /// nft's exit status.
        status: std::process::ExitStatus,
        /// What nft printed on stderr.
        stderr: String,
    },
    /// The network namespace to lock could not be opened or joined.
    #[error("cannot enter the network namespace of {what}: {source}")]
    Namespace {
        /// The namespace's path or name.
        what: String,
        /// The system's reason.
        source: std::io::Error,
    },
    /// A table name (read from an image) that is not one ferry makes: it
    /// is never touched.
    #[error("{table:?} is not the name of a network lock ferry makes; it is left alone")]
    ForeignTable {
        /// The name.
        table: String,
    },
}

/// The connections as `local -> remote, ...`, for messages.
pub fn describe_flows(flows: &[TcpFlow]) -> String {
    flows
        .iter()
        .map(|f| format!("{} -> {}", f.local, f.remote))
        .collect::<Vec<_>>()
        .join(", ")
}
