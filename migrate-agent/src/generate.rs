//! `migrate-agent generate-docs --out DIR` (hidden): shell completions and
//! man pages generated from the clap definitions, so the Debian package
//! (scripts/package.sh) ships documentation that cannot drift from the
//! command line. A hidden subcommand rather than a build script: the
//! definitions live in this binary's modules, and a build.rs would have to
//! compile them a second time.

use anyhow::Context;
use clap_complete::Shell;
use std::path::Path;
use std::process::ExitCode;

/// Writes `DIR/completions/` (bash, zsh, fish) and `DIR/man/` (one page
/// per command, `migrate-agent.1`, `migrate-agent-migrate.1`, ...).
pub fn run(command: clap::Command, out: &Path) -> anyhow::Result<ExitCode> {
    let mut command = without_help_subcommands(command);
    let completions = out.join("completions");
    let man = out.join("man");
    for dir in [&completions, &man] {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the directory {}", dir.display()))?;
    }
    let name = command.get_name().to_string();
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut command, &name, &completions).with_context(
            || {
                format!(
                    "cannot write the {shell} completions into {}",
                    completions.display()
                )
            },
        )?;
    }
    clap_mangen::generate_to(command, &man)
        .with_context(|| format!("cannot write the man pages into {}", man.display()))?;
    Ok(ExitCode::SUCCESS)
}

/// The command without clap's `help` subcommands (at every level), which
/// would each get a man page and a completion of their own while
/// repeating what `--help` says.
fn without_help_subcommands(command: clap::Command) -> clap::Command {
    let names: Vec<String> = command
        .get_subcommands()
        .map(|sub| sub.get_name().to_string())
        .collect();
    names
        .into_iter()
        .fold(command.disable_help_subcommand(true), |command, name| {
            command.mut_subcommand(name, without_help_subcommands)
        })
}
