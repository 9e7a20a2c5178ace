//! Live migration: the source and destination state machines, the
//! switch-over policy and the statistics of a migration.

pub mod policy;
