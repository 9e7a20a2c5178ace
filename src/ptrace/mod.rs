//! ptrace
