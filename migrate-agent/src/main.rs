//! migrate-agent: ferry's command-line interface (and, later, its per-host
//! daemon). It parses, calls the ferry library and prints; the logic lives in
//! the library.

mod certs;
mod check;
mod checkpoint;
mod image_show;
mod output;
mod restore;

use clap::{Parser, Subcommand};
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
    },
    /// Checkpoint a running process (all its threads) into a directory.
    /// Memory is copied while the process runs (writes tracked with
    /// userfaultfd write-protection where the kernel offers WP_ASYNC), then
    /// the process is frozen for the pages written meanwhile and its state.
    Checkpoint {
        /// PID of the process to checkpoint.
        pid: i32,
        /// Directory to write the image into (created; must be empty).
        #[arg(long)]
        dir: PathBuf,
        /// Let the process continue after the checkpoint instead of killing it.
        #[arg(long)]
        leave_running: bool,
        /// Print statistics as JSON instead of a one-line summary.
        #[arg(long)]
        json: bool,
    },
    /// Restore a checkpointed process from a directory, detached, with the
    /// same PID and TIDs, continuing where it stopped.
    Restore {
        /// Image directory written by `checkpoint`.
        #[arg(long)]
        dir: PathBuf,
        /// Write the restored PID to this file.
        #[arg(long)]
        pidfile: Option<PathBuf>,
        /// Print statistics as JSON instead of a one-line summary.
        #[arg(long)]
        json: bool,
    },
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
    output::init_logging();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check { json } => check::run(json),
        Command::Checkpoint {
            pid,
            dir,
            leave_running,
            json,
        } => checkpoint::run(pid, &dir, leave_running, json),
        Command::Restore { dir, pidfile, json } => restore::run(&dir, pidfile.as_deref(), json),
        Command::Image {
            command: ImageCommand::Show { dir },
        } => image_show::run(&dir),
        Command::Certs {
            command: CertsCommand::Init { dir },
        } => certs::init(&dir),
        Command::Certs {
            command: CertsCommand::Issue { ca, name, ip, out },
        } => certs::issue(&ca, &name, ip, &out),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("migrate-agent: {err:#}");
            ExitCode::FAILURE
        }
    }
}
