//! ferry: live migration of Linux process trees and containers.
//!
//! The data flows one way: `kernel` wraps the syscalls that nix lacks,
//! `probe` tries which host mechanisms work (`migrate-agent check`),
//! `proc` reads /proc, `ptrace` stops threads and injects system calls,
//! `inspect` refuses what cannot be moved before anything is frozen,
//! `dump` reads a live process into the `image` model, `restore` turns
//! a model back into a live process. `transport` carries state and pages
//! between agents (QUIC, mutual TLS) and `config` is the agent's file.
//! `netlock` keeps a frozen tree's TCP connections silent (nftables).

#![deny(missing_docs)]

pub mod agent;
pub mod config;
pub mod container;
pub mod dump;
#[cfg(fuzzing)]
pub mod fuzzing;
pub mod image;
pub mod inspect;
pub mod kernel;
pub mod lazy;
pub mod memory;
pub mod migration;
pub mod netlock;
pub mod probe;
pub mod proc;
pub mod ptrace;
pub mod restore;
pub mod transport;
