//! `migrate-agent check`.

use ferry::memory::DirtyBackend;
use ferry::probe::{probe_host, Feature, HostReport};
use serde::Serialize;
use std::process::ExitCode;

/// The JSON form of the report: the probes plus the verdict, so scripts
/// need not recompute which probes are required.
#[derive(Serialize)]
struct CheckJson<'a> {
    #[serde(flatten)]
    report: &'a HostReport,
    can_checkpoint: bool,
    checkpoint_blockers: Vec<Feature>,
    /// The dirty-page tracker a checkpoint's pre-copy would use.
    dirty_tracker: DirtyBackend,
}

/// Probes the host and prints the report: a table, or one JSON object with
/// `json`. Exits with 1 when checkpoint/restore is impossible here.
pub fn run(json: bool) -> anyhow::Result<ExitCode> {
    let report = probe_host();
    let blockers = report.checkpoint_blockers();
    if json {
        let out = CheckJson {
            report: &report,
            can_checkpoint: blockers.is_empty(),
            checkpoint_blockers: blockers.iter().map(|p| p.feature).collect(),
            dirty_tracker: DirtyBackend::choose(&report.probes),
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_table(&report);
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
