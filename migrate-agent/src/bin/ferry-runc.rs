//! ferry-runc: an OCI runtime with runc's command line; `checkpoint` and
//! `restore` run ferry's engine, every other command is runc's
//! (`ferry-runc --help`). The logic is ferry::container::oci_runtime.

fn main() -> std::process::ExitCode {
    ferry::container::oci_runtime::main(std::env::args_os().collect())
}
