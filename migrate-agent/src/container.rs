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
