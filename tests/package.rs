//! The Debian package (scripts/package.sh): built from the binaries
//! `cargo build --workspace` made (FERRY_PROFILE = this test's profile, so
//! nothing is compiled twice) or taken from $FERRY_DEB, installed with
//! `dpkg --root` into a throw-away directory (its own dpkg database, the
//! maintainer scripts run with DPKG_ROOT set: nothing of the real system is
//! touched), and checked: files, modes, the conffile, the unit file
//! (`systemd-analyze verify` when present), the man pages and completions,
//! and the installed `migrate-agent` running `check` and `--help`; then
//! the README's two-host bring-up with the installed binary only (the
//! testbed's certificates issued and agents started with it) and
//! `status` on both hosts showing the other reachable.

mod common;

use anyhow::{ensure, Context, Result};
use common::testbed::{Host, Testbed};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `cmd`, failing with its output when it fails.
fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out)
}

/// The .deb to test: $FERRY_DEB, or one scripts/package.sh builds from
/// this test's profile's binaries.
fn package() -> Result<PathBuf> {
    if let Some(deb) = std::env::var_os("FERRY_DEB") {
        return Ok(PathBuf::from(deb));
    }
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/package-HASH
    let profile_dir = exe.parent().and_then(Path::parent).context("target dir")?;
    let profile = profile_dir.file_name().context("profile")?;
    let target = profile_dir.parent().context("target dir")?;
    let out = run(Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/package.sh"))
        .env("FERRY_PROFILE", profile)
        .env("CARGO_TARGET_DIR", target))?;
    let stdout = String::from_utf8(out.stdout)?;
    let deb = stdout
        .lines()
        .last()
        .context("package.sh printed nothing")?;
    Ok(PathBuf::from(deb))
}

fn mode(path: &Path) -> Result<u32> {
    Ok(fs::metadata(path)
        .with_context(|| format!("{} is missing", path.display()))?
        .permissions()
        .mode()
        & 0o7777)
}

#[test]
fn package_installs_into_a_throwaway_root() -> Result<()> {
    let deb = package()?;
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("root");
    for sub in ["var/lib/dpkg/info", "var/lib/dpkg/updates"] {
        fs::create_dir_all(root.join(sub))?;
    }
    fs::write(root.join("var/lib/dpkg/status"), "")?;
    let dpkg = |args: &[&str]| {
        run(Command::new("dpkg")
            .arg(format!("--root={}", root.display()))
            // The maintainer scripts run here with DPKG_ROOT set, not in a
            // chroot (the root has no shell); libc6 is not in its database.
            .args(["--force-script-chrootless", "--force-depends"])
            .arg("--log=/dev/null")
            .args(args))
    };
    dpkg(&["-i", deb.to_str().context("path")?])?;

    for bin in ["usr/bin/migrate-agent", "usr/bin/ferry-runc"] {
        assert_eq!(mode(&root.join(bin))?, 0o755, "{bin}");
    }
    assert_eq!(mode(&root.join("etc/ferry/certs"))?, 0o700);
    assert_eq!(mode(&root.join("var/lib/ferry"))?, 0o700);
    assert_eq!(mode(&root.join("etc/ferry/agent.toml"))?, 0o644);
    let status = fs::read_to_string(root.join("var/lib/dpkg/status"))?;
    let conffiles = status
        .split("Conffiles:\n")
        .nth(1)
        .context("the package has no conffiles")?;
    assert!(conffiles.starts_with(" /etc/ferry/agent.toml "), "{status}");
    // The shipped configuration is one the agent accepts.
    ferry::config::AgentConfig::load(&root.join("etc/ferry/agent.toml"))?;

    let unit = root.join("lib/systemd/system/ferry-agent.service");
    let text = fs::read_to_string(&unit)?;
    for line in [
        "ExecStart=/usr/bin/migrate-agent serve --config /etc/ferry/agent.toml",
        "Restart=on-failure",
        "KillMode=process",
    ] {
        assert!(text.lines().any(|l| l == line), "the unit lacks {line}");
    }
    verify_unit(&root, &text, dir.path())?;

    let man = root.join("usr/share/man/man1");
    for page in [
        "migrate-agent.1.gz",
        "migrate-agent-status.1.gz",
        "migrate-agent-certs-issue.1.gz",
    ] {
        ensure!(man.join(page).exists(), "no man page {page}");
    }
    for entry in fs::read_dir(&man)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        ensure!(
            !name.contains("-help"),
            "a man page for clap's help subcommand: {name}"
        );
        ensure!(
            !name.contains("generate-docs"),
            "a man page for a hidden command: {name}"
        );
    }
    for completion in [
        "usr/share/bash-completion/completions/migrate-agent",
        "usr/share/zsh/vendor-completions/_migrate-agent",
        "usr/share/fish/vendor_completions.d/migrate-agent.fish",
    ] {
        let text = fs::read_to_string(root.join(completion))?;
        assert!(
            text.contains("dry-run") && text.contains("status"),
            "{completion}"
        );
    }
    // Docker is never told about ferry-runc by the package.
    ensure!(
        !root.join("etc/docker").exists(),
        "the package wrote /etc/docker"
    );

    let agent = root.join("usr/bin/migrate-agent");
    let out = run(Command::new(&agent).arg("--help"))?;
    assert!(String::from_utf8(out.stdout)?.contains("status"));
    let out = Command::new(&agent).args(["check", "--json"]).output()?;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("check --json: {}", String::from_utf8_lossy(&out.stderr)))?;
    assert_eq!(report["can_checkpoint"], true, "{report}");
    run(Command::new(root.join("usr/bin/ferry-runc")).arg("--version"))?;

    bring_up_with(&agent);

    // Purging removes the work directory and keeps the certificates.
    fs::write(root.join("etc/ferry/certs/key.pem"), "operator's key")?;
    dpkg(&["--purge", "ferry"])?;
    ensure!(!root.join("usr/bin/migrate-agent").exists());
    ensure!(!root.join("var/lib/ferry").exists());
    ensure!(root.join("etc/ferry/certs/key.pem").exists());
    Ok(())
}

/// `systemd-analyze verify` on the installed unit, with its paths pointed
/// into the throw-away root (verify checks that ExecStart's program exists
/// and that the Documentation= man pages are found), where systemd is.
fn verify_unit(root: &Path, unit: &str, scratch: &Path) -> Result<()> {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("systemd-analyze not found: the unit file is not verified");
        return Ok(());
    }
    let prefix = root.display().to_string();
    let copy = scratch.join("ferry-agent.service");
    fs::write(
        &copy,
        unit.replace("/usr/bin/", &format!("{prefix}/usr/bin/"))
            .replace("/etc/ferry/", &format!("{prefix}/etc/ferry/")),
    )?;
    let out = run(Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .env("MANPATH", root.join("usr/share/man")))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(stderr.trim().is_empty(), "systemd-analyze verify: {stderr}");
    Ok(())
}

/// The two-host bring-up with the installed `agent`: the testbed issues
/// each host's certificate and starts its agent with it
/// (FERRY_AGENT_BIN), and `status` on each host shows the other one
/// reachable with its certificate's expiry.
fn bring_up_with(agent: &Path) {
    // The only test of this file: nothing else reads the variable meanwhile.
    std::env::set_var("FERRY_AGENT_BIN", agent);
    common::run_test("package_bring_up", |dir| {
        let bed = Testbed::up(dir)?;
        for (host, peer) in [(Host::A, "host-b"), (Host::B, "host-a")] {
            let out = run(Command::new(agent)
                .args(["status", "--json", "--control-socket"])
                .arg(bed.control_socket(host)))?;
            let status: serde_json::Value = serde_json::from_slice(&out.stdout)?;
            let first = &status["peers"][0];
            ensure!(
                first["name"] == peer
                    && first["reachable"] == true
                    && first["certificate"]["expires_unix"].as_u64().is_some(),
                "{status}"
            );
        }
        Ok(())
    });
}
