//! Every command's `--help` says the unit of each flag that takes a
//! quantity (durations in s or ms, rates in bytes per second, validity in
//! days), and every flag taking a value is classified here: a new flag
//! must be added to one of the two tables, so its unit is decided.

mod common;

use anyhow::{ensure, Context, Result};
use std::collections::BTreeSet;
use std::process::Command;

/// Flags taking a quantity, and what their help must say: for durations,
/// an example with each unit (`50ms`, `1s`); for rates and days, the words.
const QUANTITIES: &[(&str, Unit)] = &[
    ("--max-downtime", Unit::Duration),
    ("--duration", Unit::Duration),
    ("--bandwidth-limit", Unit::Words("bytes per second")),
    ("--bandwidth", Unit::Words("bytes per second")),
    ("--days", Unit::Words("days")),
];

/// Flags whose value has no unit: paths, names, addresses, choices,
/// counts.
const NO_UNIT: &[&str] = &[
    "--dir",
    "--pidfile",
    "--container",
    "--runtime",
    "--runtime-root",
    "--bundle",
    "--config",
    "--to",
    "--server-name",
    "--control-socket",
    "--mode",
    "--cgroups",
    "--max-rounds",
    "--ca",
    "--name",
    "--ip",
    "--out",
    "--last",
    "--docker",
    "--docker-host",
    "--cgroup-root",
    "--join-netns",
];

#[derive(Clone, Copy)]
enum Unit {
    Duration,
    Words(&'static str),
}

fn help(args: &[&str]) -> Result<String> {
    let out = Command::new(common::agent_bin()?)
        .args(args)
        .arg("--help")
        .output()?;
    ensure!(out.status.success(), "{args:?} --help failed");
    Ok(String::from_utf8(out.stdout)?)
}

/// The subcommands an --help lists under "Commands:" (without `help`).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

/// Each option taking a value, with its help paragraph (up to the next
/// option).
fn options(help: &str) -> Vec<(String, String)> {
    let mut options: Vec<(String, String)> = Vec::new();
    let mut current: Option<usize> = None;
    for line in help.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if indent > 0 && indent <= 6 && trimmed.starts_with('-') {
            current = None;
            let long = trimmed
                .split([' ', ','])
                .find(|word| word.starts_with("--"));
            if let (Some(long), true) = (long, trimmed.contains('<')) {
                options.push((long.to_string(), trimmed.to_string()));
                current = Some(options.len() - 1);
            }
        } else if let Some(i) = current {
            options[i].1.push(' ');
            options[i].1.push_str(trimmed);
        }
    }
    options
}

/// The unit suffixes of the numbers in `text` ("50ms" gives "ms").
fn number_units(text: &str) -> BTreeSet<String> {
    let mut units = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric()) {
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
                i += 1;
            }
            units.insert(text[start..i].to_string());
        } else {
            i += 1;
        }
    }
    units
}

#[test]
fn every_flag_says_its_unit() -> Result<()> {
    let top = help(&[])?;
    let mut commands: Vec<Vec<String>> = subcommands(&top).into_iter().map(|c| vec![c]).collect();
    let mut seen = BTreeSet::new();
    let mut checked = 0;
    while let Some(command) = commands.pop() {
        let args: Vec<&str> = command.iter().map(String::as_str).collect();
        let text = help(&args)?;
        for sub in subcommands(&text) {
            let mut nested = command.clone();
            nested.push(sub);
            commands.push(nested);
        }
        for (flag, paragraph) in options(&text) {
            seen.insert(flag.clone());
            let unit = QUANTITIES.iter().find(|(f, _)| *f == flag).map(|(_, u)| *u);
            match unit {
                Some(Unit::Duration) => {
                    let units = number_units(&paragraph);
                    ensure!(
                        units.contains("ms") && units.contains("s"),
                        "`{command:?}` {flag}: a duration's help must show both units \
                         (e.g. 50ms, 1s): {paragraph}"
                    );
                }
                Some(Unit::Words(words)) => ensure!(
                    paragraph.contains(words),
                    "`{command:?}` {flag}: the help does not say {words:?}: {paragraph}"
                ),
                None => ensure!(
                    NO_UNIT.contains(&flag.as_str()),
                    "`{command:?}` {flag} is new: add it to QUANTITIES (with its unit, \
                     said in its help) or NO_UNIT in tests/help.rs: {paragraph}"
                ),
            }
            checked += 1;
        }
    }
    for (flag, _) in QUANTITIES {
        ensure!(seen.contains(*flag), "no command has {flag} any more");
    }
    ensure!(
        checked > 20,
        "only {checked} flags found: is the help format parsed?"
    );
    let status = help(&["status"])?;
    let last = options(&status)
        .into_iter()
        .find(|(f, _)| f == "--last")
        .context("status has no --last")?;
    ensure!(last.1.contains("[default: 5]"), "{}", last.1);
    Ok(())
}
