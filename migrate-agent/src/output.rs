//! Logging set-up and error reports shared by every subcommand.

/// Sends tracing output to stderr, filtered by RUST_LOG, else by `default`
/// (warnings for commands, the configured level for the daemon). Colour
/// codes only when stderr is a terminal: an agent's log file or a log
/// collector gets plain text.
pub fn init_logging(default: String) {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// An error and its causes on one line, each cause said once. Most of
/// ferry's error messages already end with their cause (`...: {source}`),
/// so anyhow's `{:#}` would print it twice ("...: X (os error 2): X (os
/// error 2)"); a cause whose text the line already ends with is left out.
pub fn error_report(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::error_report;

    /// An error that ends its message with its cause, as ferry's do.
    #[derive(Debug)]
    struct Read(std::io::Error);

    impl std::fmt::Display for Read {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "cannot read /x: {}", self.0)
        }
    }

    impl std::error::Error for Read {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn each_cause_is_said_once() {
        let io = std::io::Error::from_raw_os_error(2);
        let err = anyhow::Error::new(Read(io)).context("checkpoint of 7 failed");
        assert_eq!(
            error_report(&err),
            "checkpoint of 7 failed: cannot read /x: No such file or directory (os error 2)"
        );
    }
}
