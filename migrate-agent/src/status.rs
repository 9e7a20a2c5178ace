//! `migrate-agent status`: asks the local agent what it is, whom it
//! reaches and what it moves, and prints it (or the JSON).

use anyhow::bail;
use ferry::agent::{self, AgentStatus, ControlEvent, ControlRequest};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

/// `status`'s options.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// The local agent's control socket.
    #[arg(long, default_value = ferry::config::DEFAULT_CONTROL_SOCKET)]
    control_socket: PathBuf,
    /// How many finished migrations to show (newest first; the agent keeps
    /// the last 32).
    #[arg(long, default_value_t = 5)]
    last: u32,
    /// Print the status as JSON.
    #[arg(long)]
    json: bool,
}

/// Asks the agent and prints its answer; warns on stderr about
/// certificates that expire within 30 days.
pub fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let request = ControlRequest::Status { last: args.last };
    let answer = runtime
        .block_on(agent::request(&args.control_socket, &request, |_| {}))
        .map_err(anyhow::Error::msg)?;
    let status = match answer {
        ControlEvent::Status(status) => status,
        ControlEvent::Failed { error } => bail!("{error}"),
        other => bail!("the agent answered status with {other:?}"),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print_status(&status);
    }
    let now = SystemTime::now();
    if let Some(warning) = status.certificate.warning(now) {
        eprintln!("warning: this agent's certificate {warning}");
    }
    for peer in &status.peers {
        if let Some(warning) = peer.certificate.warning(now) {
            eprintln!("warning: the certificate of peer {} {warning}", peer.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_status(status: &AgentStatus) {
    println!("agent        {} (ferry {})", status.name, status.version);
    println!("config       {}", status.config_file.display());
    println!("listen       {}", status.listen);
    println!(
        "certificate  {}",
        status.certificate.describe(SystemTime::now())
    );
    if status.peers.is_empty() {
        println!("peers        none configured ([peers] in the config file)");
    }
    for peer in &status.peers {
        let reach = match &peer.error {
            None => "reachable".to_string(),
            Some(e) => format!("unreachable: {e}"),
        };
        println!("peer         {} {}: {reach}", peer.name, peer.address);
        if peer.reachable {
            println!(
                "             certificate {}",
                peer.certificate.describe(SystemTime::now())
            );
        }
    }
    if status.running.is_empty() {
        println!("running      none");
    }
    for m in &status.running {
        let figures = match &m.progress {
            Some(p) => format!(
                "{:?}, round {}, {} MiB sent, {:.1} MiB/s, {}",
                p.phase,
                p.round,
                p.bytes_sent >> 20,
                p.throughput_bytes_per_sec / f64::from(1u32 << 20),
                m.eta_secs
                    .map_or("ETA unknown".to_string(), |s| format!("ETA {s:.1} s"))
            ),
            None => "starting".to_string(),
        };
        println!(
            "running      #{} {} to {} for {:.1} s: {figures}",
            m.id, m.workload, m.to, m.elapsed_secs
        );
    }
    for m in &status.finished {
        let detail = match (&m.downtime_ms, &m.error) {
            (Some(d), _) => format!("downtime {d:.1} ms"),
            (None, Some(e)) => e.clone(),
            (None, None) => String::new(),
        };
        println!(
            "finished     #{} {} to {}: {} in {:.1} s, {detail}",
            m.id, m.workload, m.to, m.outcome, m.duration_secs
        );
    }
}
