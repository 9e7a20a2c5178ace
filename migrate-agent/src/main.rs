//! migrate-agent: ferry's command-line interface and its per-host daemon
//! (`migrate-agent serve`, which the other commands talk to over its control
//! socket). It parses, calls the ferry library and prints; the logic lives
//! in the library.

mod certs;
mod check;
mod checkpoint;
mod container;
mod drain;
mod dry_run;
mod generate;
mod image_show;
mod migrate;
mod output;
mod restore;
mod serve;
mod status;

use clap::{CommandFactory, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// ferry's per-host agent: checkpoint, restore and (later) live-migrate
/// Linux processes and containers.
#[derive(Parser, Debug)]
#[command(name = "migrate-agent", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Probe this host's kernel and CPU for every mechanism ferry uses, by
    /// trying each one. Exits non-zero when checkpointing is impossible here.
    Check {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// The agent's configuration, whose certificates are checked too (a
        /// warning 30 days before one expires). Default: /etc/ferry/agent.toml
        /// when it exists.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Checkpoint a running process (all its threads) into a directory.
    /// Memory is copied while the process runs (writes tracked with
    /// userfaultfd write-protection where the kernel offers WP_ASYNC), then
    /// the process is frozen for the pages written meanwhile and its state.
    Checkpoint {
        /// PID of the process to checkpoint (or --container).
        #[arg(required_unless_present = "container")]
        pid: Option<i32>,
        #[command(flatten)]
        container: container::ContainerArgs,
        /// Directory to write the image into (created; must be empty).
        #[arg(long)]
        dir: PathBuf,
        /// Let the process continue after the checkpoint instead of killing it.
        #[arg(long)]
        leave_running: bool,
        /// The tree's own network namespace (one other than this command's,
        /// e.g. a name of `ip netns add`) stays where it is instead of being
        /// carried: it is locked whole (every packet dropped but those
        /// marked 0x66727279 or CRIU's 0xC114) until a restore with
        /// --join-netns runs the tree in it again. Without it, a tree's own
        /// namespace is carried when it holds only lo.
        #[arg(long, conflicts_with = "container")]
        external_netns: bool,
        /// Print statistics as JSON instead of a one-line summary.
        #[arg(long)]
        json: bool,
        /// Record the tree's cgroups relative to this cgroup (of the
        /// hierarchies CONTROLLER names, else of all the others) instead
        /// of this command's own, with every cgroup below it, empty ones
        /// included (CRIU's --cgroup-root). Repeatable.
        #[arg(long = "cgroup-root", value_name = "[CONTROLLER:]PATH")]
        cgroup_roots: Vec<ferry::proc::cgroups::CgroupRoot>,
    },
    /// Restore a checkpointed process from a directory, detached, with the
    /// same PID and TIDs, continuing where it stopped.
    Restore {
        /// Image directory written by `checkpoint`.
        #[arg(long)]
        dir: PathBuf,
        /// Write the restored PID to this file (with --container: the
        /// init's PID as this host sees it, as runc's --pid-file).
        #[arg(long)]
        pidfile: Option<PathBuf>,
        /// Restore into this container, created from --bundle.
        #[command(flatten)]
        container: container::ContainerArgs,
        /// The container's bundle (with --container).
        #[arg(long, requires = "container")]
        bundle: Option<PathBuf>,
        /// Print statistics as JSON instead of a one-line summary.
        #[arg(long)]
        json: bool,
        /// Put the tasks back into the cgroups they were in, making the
        /// missing ones (soft), or leave them in this command's (ignore);
        /// a container's tasks stay in those its runtime made.
        #[arg(long, value_enum, default_value = "soft")]
        cgroups: restore::Cgroups,
        /// Put the tasks' cgroups below this cgroup (of the hierarchies
        /// CONTROLLER names, else of all the others) instead of this
        /// command's own, making the missing ones with their recorded
        /// modes (CRIU's --cgroup-root). Repeatable.
        #[arg(long = "cgroup-root", value_name = "[CONTROLLER:]PATH")]
        cgroup_roots: Vec<ferry::proc::cgroups::CgroupRoot>,
        /// Restore the tree into this network namespace (a path such as
        /// /var/run/netns/NAME or /proc/PID/ns/net), as CRIU's --join-ns
        /// net:PATH: required for an image checkpointed with
        /// --external-netns, whose lock it releases.
        #[arg(long, conflicts_with = "container")]
        join_netns: Option<PathBuf>,
    },
    /// Run the per-host agent: receive migrations from peer agents (QUIC,
    /// mutual TLS) and take local commands on the control socket.
    Serve {
        /// Agent configuration (TOML; configs/agent.toml documents every key).
        #[arg(long)]
        config: PathBuf,
    },
    /// Live-migrate a running process (and its threads) to another host's
    /// agent, through this host's agent. Memory is copied in rounds while the
    /// process runs; it is frozen only for the last dirty pages and its state,
    /// and killed here only once it runs on the destination. On any failure
    /// it keeps running here.
    Migrate(migrate::MigrateArgs),
    /// Move every running container of a runtime to another host's agent,
    /// one after the other (as `migrate --container` does), for host
    /// maintenance; goes on after a failure (that container keeps running
    /// here), prints one line per container (ok or the error, downtime,
    /// total), and exits 1 when any failed.
    Drain(drain::DrainArgs),
    /// Find out, without moving or freezing it, whether a workload can
    /// move and what it would cost: lists every resource ferry would refuse
    /// (process, fd or mapping, and why), tracks its writes for --duration
    /// (dirty rate over time, per mapping, working set; the tracking is
    /// removed at the end and on Ctrl-C), with --to asks this host's agent to
    /// check the destination and measure the bandwidth (nothing is kept
    /// there), and predicts downtime and duration for pre-copy, post-copy
    /// and hybrid with a recommended mode and --max-downtime. Exits 0 when
    /// the workload could move, 3 when it could not, 130 when interrupted.
    DryRun(dry_run::DryRunArgs),
    /// Ask the local agent for its status: version, configuration file,
    /// its certificate's expiry, each configured peer (reachable or not,
    /// its certificate's expiry), the migrations it is sending (phase,
    /// round, bytes, rate, ETA) and the last finished ones (outcome,
    /// downtime). Warns 30 days before a certificate expires.
    Status(status::StatusArgs),
    /// Inspect checkpoint images.
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// Make the certificates agents authenticate each other with.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// Write shell completions and man pages generated from these
    /// definitions into --out (scripts/package.sh ships them).
    #[command(hide = true)]
    GenerateDocs {
        /// Directory for completions/ and man/ (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum CertsCommand {
    /// Create a certificate authority (ca.pem, and ca.key with mode 0600)
    /// in DIR. Existing files are never overwritten.
    Init {
        /// Directory for the CA's files (created if missing).
        #[arg(long)]
        dir: PathBuf,
    },
    /// Issue a host certificate (cert.pem, and key.pem with mode 0600) for
    /// an agent named NAME, signed by the CA in --ca.
    Issue {
        /// Directory holding the CA's ca.pem and ca.key.
        #[arg(long)]
        ca: PathBuf,
        /// The agent's name: the certificate's DNS name, which peers check.
        #[arg(long)]
        name: String,
        /// Also put this IP address in the certificate.
        #[arg(long)]
        ip: Option<std::net::IpAddr>,
        /// Directory for the certificate and key (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Validity, in days from now (`check` and `status` warn 30 days
        /// before the end).
        #[arg(long, default_value_t = ferry::transport::certs::DEFAULT_VALIDITY_DAYS,
              value_parser = clap::value_parser!(u32).range(1..))]
        days: u32,
    },
}

#[derive(Subcommand, Debug)]
enum ImageCommand {
    /// Describe what an image holds, readable by a person.
    Show {
        /// Image directory.
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    output::init_logging(match &cli.command {
        Command::Serve { config } => ferry::config::AgentConfig::load(config)
            .map(|c| c.log_level)
            .unwrap_or_else(|_| "info".to_string()),
        _ => "warn".to_string(),
    });
    let result = match cli.command {
        Command::Check { json, config } => check::run(json, config),
        Command::Checkpoint {
            pid,
            container,
            dir,
            leave_running,
            external_netns,
            json,
            cgroup_roots,
        } => container.container().and_then(|c| match (c, pid) {
            (Some(c), _) => checkpoint::run_container(&c, &dir, leave_running, json),
            (None, Some(pid)) => {
                checkpoint::run(pid, &dir, leave_running, external_netns, json, cgroup_roots)
            }
            (None, None) => anyhow::bail!("name a PID or a --container"),
        }),
        Command::Restore {
            dir,
            pidfile,
            container,
            bundle,
            json,
            cgroups,
            cgroup_roots,
            join_netns,
        } => container.container().and_then(|c| match (c, bundle) {
            (Some(c), Some(bundle)) => {
                restore::run_container(&c, &bundle, &dir, pidfile.as_deref(), json)
            }
            (Some(_), None) => anyhow::bail!("restore --container needs the container's --bundle"),
            (None, _) => restore::run(
                &dir,
                pidfile.as_deref(),
                json,
                (cgroups, cgroup_roots),
                join_netns,
            ),
        }),
        Command::Image {
            command: ImageCommand::Show { dir },
        } => image_show::run(&dir),
        Command::Serve { config } => serve::run(&config),
        Command::Status(args) => status::run(args),
        Command::Migrate(args) => migrate::run(args),
        Command::Drain(args) => drain::run(args),
        Command::DryRun(args) => dry_run::run(args),
        Command::Certs {
            command: CertsCommand::Init { dir },
        } => certs::init(&dir),
        Command::Certs {
            command:
                CertsCommand::Issue {
                    ca,
                    name,
                    ip,
                    out,
                    days,
                },
        } => certs::issue(&ca, &name, ip, days, &out),
        Command::GenerateDocs { out } => generate::run(Cli::command(), &out),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("migrate-agent: {}", output::error_report(&err));
            ExitCode::FAILURE
        }
    }
}
