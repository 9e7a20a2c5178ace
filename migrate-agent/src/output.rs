//! Logging set-up shared by every subcommand.

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
