//! The agent's configuration file (TOML), shared by the transport and the
//! daemon: who the agent is, where it listens, its certificates and whom
//! it trusts. `configs/agent.toml` documents every key.
//!
//! The dependency goes one way: this file reads the transport's limits and
//! builds its [`Settings`]; the transport knows nothing of the file.

use crate::transport::{
    Settings, TlsFiles, DEFAULT_BULK_CONNECTIONS, MAX_BULK_CONNECTIONS, PROTOCOL_VERSION,
};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Default control socket of the daemon.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/ferry/agent.sock";
/// Default directory for images and other working files.
pub const DEFAULT_WORK_DIR: &str = "/var/lib/ferry";
/// Default log filter.
pub const DEFAULT_LOG_LEVEL: &str = "info";

/// One agent's configuration, as read from its TOML file. Unknown keys are
/// refused, so a typo is never silently ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// This agent's name: the DNS name in its certificate, sent to peers.
    pub name: String,
    /// UDP address the QUIC endpoint listens on.
    pub listen: SocketAddr,
    /// Unix socket on which the daemon takes local commands.
    #[serde(default = "default_control_socket")]
    pub control_socket: PathBuf,
    /// The site CA's certificate (PEM).
    pub ca: PathBuf,
    /// This agent's certificate chain (PEM).
    pub cert: PathBuf,
    /// This agent's private key (PEM).
    pub key: PathBuf,
    /// When present, the only peer names (certificate DNS names) accepted.
    #[serde(default)]
    pub allowed_peers: Option<Vec<String>>,
    /// QUIC connections per migration for page data (one CPU each).
    #[serde(default = "default_bulk_connections")]
    pub bulk_connections: usize,
    /// Post-copy recovery: seconds the destination tries to reconnect to
    /// the source after the link broke (the source waits a margin more).
    #[serde(default = "default_postcopy_recovery_secs")]
    pub postcopy_recovery_secs: u64,
    /// Where images and working files are kept.
    #[serde(default = "default_work_dir")]
    pub work_dir: PathBuf,
    /// tracing filter (error, warn, info, debug, trace, or a directive).
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// How containers are received (`[container]`).
    #[serde(default)]
    pub container: ContainerConfig,
    /// The peer agents `migrate-agent status` reports on (`[peers]`, name =
    /// "IP:port"): whether they answer, when their certificates expire.
    #[serde(default)]
    pub peers: std::collections::BTreeMap<String, SocketAddr>,
    /// The file this configuration was read from (not a key: `status`
    /// names it).
    #[serde(skip)]
    pub file: PathBuf,
}

/// The `[container]` table: what a destination does for a migrated
/// container beyond `runtime create`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerConfig {
    /// Run after `runtime create` and before the restore of a container
    /// with a network namespace of its own, to give it the source's
    /// addresses and routes (see configs/agent.toml).
    pub network_hook: Option<PathBuf>,
    /// The socket of this host's dockerd, which `migrate --docker` asks
    /// about the container leaving and which creates and starts a Docker
    /// container arriving (default /var/run/docker.sock).
    pub docker_socket: Option<PathBuf>,
}

impl ContainerConfig {
    /// The dockerd socket, the default when none is configured.
    pub fn docker_socket(&self) -> PathBuf {
        self.docker_socket
            .clone()
            .unwrap_or_else(|| PathBuf::from(crate::container::docker::DEFAULT_SOCKET))
    }
}

fn default_control_socket() -> PathBuf {
    PathBuf::from(DEFAULT_CONTROL_SOCKET)
}
fn default_bulk_connections() -> usize {
    DEFAULT_BULK_CONNECTIONS
}
fn default_postcopy_recovery_secs() -> u64 {
    15
}
fn default_work_dir() -> PathBuf {
    PathBuf::from(DEFAULT_WORK_DIR)
}
fn default_log_level() -> String {
    DEFAULT_LOG_LEVEL.to_string()
}

/// Why a configuration file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("could not read the agent configuration {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The system's reason.
        #[source]
        source: std::io::Error,
    },
    /// The TOML is malformed, a key is unknown or missing, or a value has
    /// the wrong type (toml's message names the key, line and column).
    #[error("invalid agent configuration {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's explanation.
        message: String,
    },
    /// A value parses but is unusable.
    #[error("invalid agent configuration {path}: key `{key}`: {reason}")]
    Value {
        /// The file.
        path: PathBuf,
        /// The key.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl AgentConfig {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and checks configuration text; `path` only names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<AgentConfig, ConfigError> {
        let mut config: AgentConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        config.file = path.to_path_buf();
        let value = |key, reason: String| ConfigError::Value {
            path: path.to_path_buf(),
            key,
            reason,
        };
        if config.name.is_empty() {
            return Err(value("name", "must not be empty".into()));
        }
        let max = MAX_BULK_CONNECTIONS;
        if !(1..=max).contains(&config.bulk_connections) {
            return Err(value(
                "bulk_connections",
                format!("is {}; must be 1 to {max}", config.bulk_connections),
            ));
        }
        if !(1..=3600).contains(&config.postcopy_recovery_secs) {
            return Err(value(
                "postcopy_recovery_secs",
                format!("is {}; must be 1 to 3600", config.postcopy_recovery_secs),
            ));
        }
        if config.allowed_peers.as_ref().is_some_and(|p| p.is_empty()) {
            return Err(value(
                "allowed_peers",
                "is empty, which would refuse every peer; remove the key to accept any peer the CA signed".into(),
            ));
        }
        Ok(config)
    }
}

impl Settings {
    /// The transport part of an agent's configuration file.
    pub fn from_config(config: &AgentConfig) -> Self {
        Settings {
            listen: config.listen,
            agent_name: config.name.clone(),
            tls: TlsFiles {
                ca: config.ca.clone(),
                cert: config.cert.clone(),
                key: config.key.clone(),
            },
            allowed_peers: config.allowed_peers.clone(),
            bulk_connections: config.bulk_connections,
            protocol_version: PROTOCOL_VERSION,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../configs/agent.toml");

    #[test]
    fn example_config_parses() {
        let c = AgentConfig::parse(EXAMPLE, Path::new("configs/agent.toml")).unwrap();
        assert_eq!(c.name, "host-a");
        assert_eq!(c.bulk_connections, 2);
        assert_eq!(c.peers["host-b"], "10.231.0.2:7420".parse().unwrap());
        assert_eq!(c.file, Path::new("configs/agent.toml"));
        assert_eq!(
            c.container.network_hook,
            Some(PathBuf::from("/usr/local/lib/ferry/container-net.sh"))
        );
    }

    #[test]
    fn defaults_apply() {
        let text =
            "name = \"a\"\nlisten = \"0.0.0.0:7420\"\nca = \"/c\"\ncert = \"/e\"\nkey = \"/k\"\n";
        let c = AgentConfig::parse(text, Path::new("x.toml")).unwrap();
        assert_eq!(c.control_socket, PathBuf::from(DEFAULT_CONTROL_SOCKET));
        assert_eq!(c.work_dir, PathBuf::from(DEFAULT_WORK_DIR));
        assert_eq!(c.allowed_peers, None);
        assert_eq!(c.log_level, "info");
        assert_eq!(c.container.network_hook, None);
    }

    #[test]
    fn unknown_key_and_bad_values_are_named() {
        let base =
            "name = \"a\"\nlisten = \"0.0.0.0:7420\"\nca = \"/c\"\ncert = \"/e\"\nkey = \"/k\"\n";
        let err = AgentConfig::parse(&format!("{base}lisen = 1\n"), Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("x.toml") && err.contains("lisen"), "{err}");
        let err = AgentConfig::parse(
            &format!("{base}bulk_connections = 0\n"),
            Path::new("x.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("bulk_connections"), "{err}");
        let err = AgentConfig::parse(
            &base.replace("0.0.0.0:7420", "nowhere"),
            Path::new("x.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("listen"), "{err}");
    }
}
