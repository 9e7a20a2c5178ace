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

/// Issues a host certificate for `name` signed by the CA in `ca`.
pub fn issue(ca: &Path, name: &str, ip: Option<IpAddr>, out: &Path) -> anyhow::Result<ExitCode> {
    let files = certs::issue(ca, name, ip, out)?;
    println!(
        "certificate for {name} {} and key {} written",
        files.cert.display(),
        files.key.display()
    );
    Ok(ExitCode::SUCCESS)
}
