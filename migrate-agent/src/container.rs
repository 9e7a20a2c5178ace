//! The options that name a container instead of a PID.

use anyhow::bail;
use ferry::container::{Container, Runtime};
use std::path::PathBuf;

/// `--container ID [--runtime runc|crun] [--runtime-root DIR]`.
#[derive(clap::Args, Debug, Clone)]
pub struct ContainerArgs {
    /// Work on this container (its init's process tree) instead of a PID.
    #[arg(long)]
    pub container: Option<String>,
    /// The OCI runtime that manages the container: runc or crun.
    #[arg(long, default_value = "runc")]
    pub runtime: String,
    /// The runtime's state directory (its --root; default /run/runc or
    /// /run/crun).
    #[arg(long)]
    pub runtime_root: Option<PathBuf>,
}

impl ContainerArgs {
    /// The container named, if any.
    pub fn container(&self) -> anyhow::Result<Option<Container>> {
        let Some(id) = &self.container else {
            return Ok(None);
        };
        let Some(runtime) = Runtime::from_name(&self.runtime) else {
            bail!(
                "unknown runtime {:?}: ferry drives runc and crun",
                self.runtime
            );
        };
        Ok(Some(Container::new(
            runtime,
            self.runtime_root.as_deref(),
            id,
        )))
    }
}

/// `--docker NAME|ID [--docker-host unix:///PATH]`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct DockerArgs {
    /// Work on this Docker container (a name or ID) instead of a PID: a
    /// migration's destination agent's dockerd creates and starts it, and
    /// it leaves this host's dockerd once it runs there.
    #[arg(long, conflicts_with = "container")]
    pub docker: Option<String>,
    /// The dockerd the container runs on (default: the agent's `[container]
    /// docker_socket`, else /var/run/docker.sock).
    #[arg(long, requires = "docker")]
    pub docker_host: Option<String>,
}

impl DockerArgs {
    /// The migration request's Docker part, if a container is named; it
    /// is left stopped on this host once it runs on the destination if
    /// `keep_stopped`, else removed.
    pub fn request(&self, keep_stopped: bool) -> Option<ferry::agent::DockerRequest> {
        self.docker
            .as_ref()
            .map(|name| ferry::agent::DockerRequest {
                name: name.clone(),
                socket: self.docker_host.as_deref().map(|h| {
                    ferry::container::docker::Docker::from_host(h)
                        .socket()
                        .to_path_buf()
                }),
                keep_stopped,
            })
    }
}

/// `PID | --container ID ... | --docker NAME ...`: the workload a command
/// works on, named as `migrate` and `dry-run` both name it.
#[derive(clap::Args, Debug)]
pub struct WorkloadArgs {
    /// PID of the process (the root of its tree) as the agent that runs
    /// the command sees it (`dry-run` without --to runs it itself, so
    /// there as this command sees it), or --container, or --docker.
    #[arg(required_unless_present_any = ["container", "docker"])]
    pub pid: Option<i32>,
    #[command(flatten)]
    pub container: ContainerArgs,
    #[command(flatten)]
    pub docker: DockerArgs,
}

impl WorkloadArgs {
    /// The workload as the user named it, for messages: a Docker
    /// container, a runtime's container, or the process.
    pub fn describe(&self) -> String {
        match (&self.container.container, &self.docker.docker) {
            (_, Some(name)) => format!("Docker container {name}"),
            (Some(id), None) => format!("container {id}"),
            (None, None) => format!("process {}", self.pid.unwrap_or(0)),
        }
    }
}
