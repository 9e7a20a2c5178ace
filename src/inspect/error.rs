//! Why inspection refuses a tree or cannot read it: the refusals name
//! the process and the resource ferry cannot carry. A checkpoint passes
//! them on unchanged (`CheckpointError::Inspect`).

use crate::proc::ProcError;

/// A resource of the tree that ferry cannot carry, or a failure to read
/// the tree. In every case the tree is left untouched.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// There is no such process.
    #[error("process {pid} does not exist")]
    NoSuchProcess {
        /// The PID asked for.
        pid: i32,
    },
    /// The PID is a thread, not a process.
    #[error("{pid} is a thread of process {tgid}; checkpoint the process instead")]
    NotAProcess {
        /// The PID asked for.
        pid: i32,
        /// Its thread group.
        tgid: i32,
    },
    /// ferry would have to trace itself.
    #[error("process {pid} is this migrate-agent itself")]
    OwnProcess {
        /// Our PID.
        pid: i32,
    },
    /// Another tracer (a debugger, strace) holds the process.
    #[error("process {pid} is already traced by process {tracer}; detach the debugger first")]
    AlreadyTraced {
        /// The process.
        pid: i32,
        /// Its tracer.
        tracer: i32,
    },
    /// The process is a zombie or being torn down.
    #[error("process {pid} is not alive (state {state})")]
    NotAlive {
        /// The process.
        pid: i32,
        /// Its state letter.
        state: char,
    },
    /// The process lives in another namespace than migrate-agent.
    #[error("process {pid} is in another {kind} namespace ({target}) than {reference}; a process in namespaces of its own is carried only as part of a container (migrate --container)")]
    OtherNamespace {
        /// The process.
        pid: i32,
        /// The namespace kind (mnt, net, pid ...).
        kind: String,
        /// The /proc link target naming the namespace.
        target: String,
        /// Whose namespaces it should share (migrate-agent, or the
        /// container's init).
        reference: String,
    },
    /// A plain tree's own network namespace holds more than its loopback.
    #[error("process {pid} is in a network namespace of its own ({target}) with interfaces other than lo ({interfaces}); ferry carries a tree's own network namespace only with its loopback (move the tree as a container, or give checkpoint --external-netns if the namespace stays and the restore joins it)")]
    NetnsInterfaces {
        /// The tree's root.
        pid: i32,
        /// The /proc link target naming the namespace.
        target: String,
        /// The other interfaces, by name.
        interfaces: String,
    },
    /// `--external-netns` for a tree that has no network namespace of its
    /// own.
    #[error("process {pid} is in migrate-agent's network namespace ({target}): --external-netns names a namespace of the tree's own that the checkpoint leaves outside")]
    NotExternalNetns {
        /// The tree's root.
        pid: i32,
        /// The /proc link target naming the namespace.
        target: String,
    },
    /// The container's init has a namespace ferry cannot carry.
    #[error("container init {pid} has its own {kind} namespace ({target}); ferry carries a container's PID, mount, network, UTS, IPC and cgroup namespaces but not its {kind} namespace yet (remove it from linux.namespaces in config.json)")]
    ContainerNamespace {
        /// The container's init.
        pid: i32,
        /// The namespace kind (net, user ...).
        kind: String,
        /// The /proc link target naming the namespace.
        target: String,
    },
    /// An fd of a kind ferry cannot carry.
    #[error("process {pid} holds fd {fd}, a {kind} ({target}), which ferry cannot checkpoint yet")]
    UnsupportedFd {
        /// The process.
        pid: i32,
        /// The fd number.
        fd: i32,
        /// What kind of file it is.
        kind: String,
        /// Its /proc link target.
        target: String,
    },
    /// A mapping ferry cannot carry.
    #[error("process {pid} has mapping {start:#x}-{end:#x} ({name}) that ferry cannot checkpoint: {why}")]
    UnsupportedMapping {
        /// The process.
        pid: i32,
        /// Start address.
        start: u64,
        /// End address.
        end: u64,
        /// Path or pseudo-name.
        name: String,
        /// Why it is refused.
        why: String,
    },
    /// Seccomp state ferry cannot carry.
    #[error("process {pid}: thread {tid} {why}; ferry cannot checkpoint it")]
    Seccomp {
        /// The process.
        pid: i32,
        /// The thread.
        tid: i32,
        /// What is wrong.
        why: String,
    },
    /// A scheduling policy ferry cannot give back.
    #[error("process {pid}: thread {tid} {why}")]
    Scheduling {
        /// The process.
        pid: i32,
        /// The thread.
        tid: i32,
        /// What is wrong.
        why: String,
    },
    /// Reading /proc failed.
    #[error(transparent)]
    Proc(#[from] ProcError),
    /// Some other I/O failed.
    #[error("cannot {what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// A container's stdio pipe held outside the tree, in a checkpoint
    /// whose restore would leave nobody holding its other end (a live
    /// migration between agents).
    #[error("process {pid} holds fd {fd}, a pipe whose {end} end is held outside the checkpointed process tree ({target}): the container's {stream}, which its runtime's shim (or whoever ran the container) holds. A live migration between agents has nobody on the destination to take it over; move the container with `checkpoint --container` and `restore --container` (the restored container gets the stdio of the process that runs the restore, as ferry-runc does for Docker and Podman), or give the container /dev/null or a file as its stdio")]
    ContainerStdio {
        /// The container's init.
        pid: i32,
        /// The fd number (its stdio slot).
        fd: i32,
        /// The end held outside: read or write.
        end: &'static str,
        /// Its /proc link target.
        target: String,
        /// stdin, stdout or stderr.
        stream: &'static str,
    },
}
