//! migrate-agent: ferry's CLI (and, later, its per-host daemon).

fn main() {}
