//! What `migrate-agent check` reports: one result per mechanism and the
//! host's kernel and CPU.

use super::feature::Feature;
use serde::Serialize;

/// What a probe found out about one mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeStatus {
    /// The mechanism was tried and worked.
    Present,
    /// The kernel or host lacks the mechanism (unknown system call, ioctl or
    /// flag, no such mount).
    Absent,
    /// The probe could not use the mechanism for another reason (permission,
    /// resources, unexpected behaviour): it may exist but is unusable here.
    Failed,
}

impl ProbeStatus {
    /// The status as the word printed in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeStatus::Present => "present",
            ProbeStatus::Absent => "absent",
            ProbeStatus::Failed => "failed",
        }
    }
}

/// The outcome of trying one mechanism, as `migrate-agent check` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeResult {
    /// Which mechanism (its report name, under "name" in the JSON).
    #[serde(rename = "name")]
    pub feature: Feature,
    /// Whether it worked.
    pub status: ProbeStatus,
    /// Whether checkpoint/restore is impossible without it.
    pub required: bool,
    /// What was tried and seen, or why it did not work.
    pub detail: String,
}

/// The CPU's XSAVE configuration: a thread's register image can only be
/// loaded on a CPU with the same state components enabled.
#[derive(Debug, Clone, Serialize)]
pub struct CpuReport {
    /// XCR0: the XSAVE state components the kernel enabled.
    pub xcr0: u64,
    /// Size in bytes of the XSAVE area for those components.
    pub xsave_size: u32,
    /// Names of the enabled components.
    pub xsave_components: Vec<&'static str>,
}

/// Everything `migrate-agent check` learns about this host: which of the
/// mechanisms ferry uses work here, so a migration can be refused up front
/// instead of failing half-way.
#[derive(Debug, Clone, Serialize)]
pub struct HostReport {
    /// The kernel release (uname -r): both ends of a migration should match.
    pub kernel_release: String,
    /// The CPU's XSAVE configuration.
    pub cpu: CpuReport,
    /// One result per mechanism, in probing order.
    pub probes: Vec<ProbeResult>,
}

impl HostReport {
    /// The required mechanisms that did not work: each one makes
    /// checkpoint/restore impossible on this host.
    pub fn checkpoint_blockers(&self) -> Vec<&ProbeResult> {
        self.probes
            .iter()
            .filter(|p| p.required && p.status != ProbeStatus::Present)
            .collect()
    }

    /// Whether every mechanism checkpoint/restore needs works here.
    pub fn can_checkpoint(&self) -> bool {
        self.checkpoint_blockers().is_empty()
    }

    /// The result of the probe of `feature`, to choose between optional
    /// mechanisms (for example the dirty-page tracker).
    pub fn probe(&self, feature: Feature) -> Option<&ProbeResult> {
        self.probes.iter().find(|p| p.feature == feature)
    }
}
