//! Why a runtime, cgroup, checkpoint, restore or network operation on a
//! container failed: one type for the whole adapter, in a file of its own
//! so that `net` and the runtime code share it without importing each
//! other.

/// Why a runtime or cgroup operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// The runtime binary could not be run.
    #[error("cannot run {runtime}: {source}")]
    Spawn {
        /// The runtime binary.
        runtime: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The runtime refused or failed.
    #[error("`{command}` failed: {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// What the runtime said.
        stderr: String,
    },
    /// The runtime's answer could not be understood.
    #[error("`{command}` printed a state ferry cannot read: {why}")]
    BadState {
        /// The command line.
        command: String,
        /// Why.
        why: String,
    },
    /// The container is not in a state ferry can work with.
    #[error("container {id} is {status}, not {wanted}")]
    Status {
        /// The container.
        id: String,
        /// Its status.
        status: String,
        /// The status needed.
        wanted: &'static str,
    },
    /// The bundle is missing or has no config.json.
    #[error("bundle {bundle} of container {id} has no config.json on this host")]
    NoBundle {
        /// The container.
        id: String,
        /// The bundle directory.
        bundle: String,
    },
    /// A cgroup file could not be read or written.
    #[error("cgroup {path}: {source}")]
    Cgroup {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The cgroup freezer failed.
    #[error(transparent)]
    Freezer(#[from] super::freezer::FreezerError),
    /// A process of the container is outside its init's tree.
    #[error("process {pid} runs in container {id}'s cgroup but does not descend from its init {init} (started by `exec`?); ferry carries the init's tree only")]
    Escaped {
        /// The container.
        id: String,
        /// Its init.
        init: i32,
        /// The process.
        pid: i32,
    },
    /// The checkpoint of the container's tree failed (it keeps running).
    #[error("checkpoint of container {id} failed: {source}")]
    Checkpoint {
        /// The container.
        id: String,
        /// What failed.
        source: crate::dump::CheckpointError,
    },
    /// The restore into the created container failed (it was deleted).
    #[error("restore of container {id} failed: {source}")]
    Restore {
        /// The container.
        id: String,
        /// What failed.
        source: crate::restore::RestoreError,
    },
    /// The container's network namespace could not be read.
    #[error("cannot record the network of container {id} (init {pid}): {why}")]
    Network {
        /// The container.
        id: String,
        /// Its init.
        pid: i32,
        /// Why.
        why: String,
    },
    /// The network hook failed.
    #[error("the network hook {hook} failed for container {id}: {why}")]
    Hook {
        /// The hook command.
        hook: String,
        /// The container.
        id: String,
        /// Why.
        why: String,
    },
    /// The runtime binary is missing or does not run on this host.
    #[error("the container runtime {runtime} cannot run on this host: {why}")]
    RuntimeMissing {
        /// The runtime binary.
        runtime: &'static str,
        /// Why.
        why: String,
    },
    /// This process lacks a capability that checkpoint or restore needs.
    #[error("ferry lacks {missing} (effective capabilities {effective:#x}): checkpointing and restoring a container need CAP_SYS_PTRACE and CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN; run the agent as root with them")]
    Capabilities {
        /// The capabilities missing, by name.
        missing: String,
        /// The effective set.
        effective: u64,
    },
}
