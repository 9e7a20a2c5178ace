//! `migrate-agent check`.

use anyhow::Context;
use ferry::agent::CertificateStatus;
use ferry::config::AgentConfig;
use ferry::memory::DirtyBackend;
use ferry::probe::{probe_host, Feature, HostReport};
use ferry::transport::certs;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

/// The JSON form of the report: the probes plus the verdict, so scripts
/// need not recompute which probes are required.
#[derive(Serialize)]
struct CheckJson<'a> {
    #[serde(flatten)]
    report: &'a HostReport,
    /// The agent's certificates (CA, host), by file, when a configuration
    /// was read.
    certificates: BTreeMap<String, CertificateStatus>,
    can_checkpoint: bool,
    checkpoint_blockers: Vec<Feature>,
    /// The dirty-page tracker a checkpoint's pre-copy would use.
    dirty_tracker: DirtyBackend,
}

/// The configuration `check` reads certificates from without --config.
const DEFAULT_CONFIG: &str = "/etc/ferry/agent.toml";

/// Probes the host and prints the report: a table, or one JSON object with
/// `json`. Exits with 1 when checkpoint/restore is impossible here. With
/// an agent configuration (`config`, or /etc/ferry/agent.toml when it
/// exists), also says when its certificates expire, with a warning on
/// stderr 30 days before.
pub fn run(json: bool, config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let certificates = match config {
        Some(path) => certificates(&path)?,
        None if Path::new(DEFAULT_CONFIG).exists() => certificates(Path::new(DEFAULT_CONFIG))?,
        None => Vec::new(),
    };
    let now = SystemTime::now();
    for (file, status) in &certificates {
        if let Some(warning) = status.warning(now) {
            eprintln!("warning: the certificate {} {warning}", file.display());
        }
    }
    let report = probe_host();
    let blockers = report.checkpoint_blockers();
    if json {
        let out = CheckJson {
            report: &report,
            certificates: certificates
                .iter()
                .map(|(file, status)| (file.display().to_string(), status.clone()))
                .collect(),
            can_checkpoint: blockers.is_empty(),
            checkpoint_blockers: blockers.iter().map(|p| p.feature).collect(),
            dirty_tracker: DirtyBackend::choose(&report.probes),
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_table(&report);
        for (file, status) in &certificates {
            println!("certificate {}: {}", file.display(), status.describe(now));
        }
    }
    Ok(if blockers.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Prints one line per probe (name, status, required or optional, detail),
/// then the dirty tracker pre-copy would use and the verdict.
fn print_table(report: &HostReport) {
    let width = report
        .probes
        .iter()
        .map(|p| p.feature.as_str().len())
        .max()
        .unwrap_or(0)
        .max("kernel".len());
    println!("{:<width$}  {}", "kernel", report.kernel_release);
    println!(
        "{:<width$}  xcr0 {:#x} ({}), XSAVE area {} bytes",
        "cpu",
        report.cpu.xcr0,
        report.cpu.xsave_components.join(" "),
        report.cpu.xsave_size
    );
    for probe in &report.probes {
        println!(
            "{:<width$}  {:<7}  {:<8}  {}",
            probe.feature.as_str(),
            probe.status.as_str(),
            if probe.required {
                "required"
            } else {
                "optional"
            },
            probe.detail
        );
    }
    let tracker = match DirtyBackend::choose(&report.probes) {
        DirtyBackend::None => "none (no pre-copy: all memory is copied while frozen)",
        chosen => chosen.as_str(),
    };
    println!("dirty tracker: {tracker}");
    let blockers = report.checkpoint_blockers();
    if blockers.is_empty() {
        println!("checkpoint/restore: possible");
    } else {
        let reasons: Vec<String> = blockers
            .iter()
            .map(|p| format!("{} ({}): {}", p.feature, p.status.as_str(), p.detail))
            .collect();
        println!("checkpoint/restore: impossible: {}", reasons.join("; "));
    }
}

/// The expiry of the CA and host certificates `config` names.
fn certificates(config: &Path) -> anyhow::Result<Vec<(PathBuf, CertificateStatus)>> {
    let config = AgentConfig::load(config)
        .with_context(|| "check reads the agent's certificates from its configuration")?;
    Ok([config.ca, config.cert]
        .into_iter()
        .map(|file| {
            let expiry = certs::pem_file_expiry(&file).map_err(|e| e.to_string());
            (file, CertificateStatus::of(expiry))
        })
        .collect())
}
