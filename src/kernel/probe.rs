//! Host feature probes for `migrate-agent check`: each one tries the
//! mechanism rather than reading configuration.
