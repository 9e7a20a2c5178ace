//! ferry-criu: answers the CRIU version query Podman makes before a
//! checkpoint or restore (`criu swrk FD`, VERSION request) and nothing
//! else; put it on Podman's PATH as `criu` when Podman runs ferry-runc.
//! The logic is ferry::container::oci_runtime::criu_version.

fn main() -> std::process::ExitCode {
    ferry::container::oci_runtime::criu_version::main(std::env::args_os().collect())
}
