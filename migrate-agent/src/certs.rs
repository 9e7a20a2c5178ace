//! `migrate-agent certs init` and `migrate-agent certs issue`: the site CA
//! and the host certificates agents use for mutual TLS.

use ferry::transport::certs;
use std::net::IpAddr;
use std::path::Path;
use std::process::ExitCode;

/// Creates a CA in `dir` and says where its files are.
pub fn init(dir: &Path) -> anyhow::Result<ExitCode> {
    let files = certs::init_ca(dir, "ferry CA")?;
    println!(
        "CA certificate {} and key {} written; copy the certificate (never the key) to every agent",
        files.cert.display(),
        files.key.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Issues a host certificate for `name`, valid for `days` days, signed by
/// the CA in `ca`.
pub fn issue(
    ca: &Path,
    name: &str,
    ip: Option<IpAddr>,
    days: u32,
    out: &Path,
) -> anyhow::Result<ExitCode> {
    let files = certs::issue_for_days(ca, name, ip, days, out)?;
    println!(
        "certificate for {name} {} (valid for {days} days) and key {} written",
        files.cert.display(),
        files.key.display()
    );
    Ok(ExitCode::SUCCESS)
}
