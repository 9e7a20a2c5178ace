//! What a lazy (post-copy) restore hands over: the pages still on the
//! source and each restored process's userfaultfd. Its own file so that the
//! husk builder and restore/mod.rs (which re-exports it) share it without
//! importing each other.

/// What a lazy (post-copy) restore needs: which pages still live on the
/// source, and where to hand each process's userfaultfd.
#[derive(Debug)]
pub struct LazyPages {
    /// Per process (image PID): the pages the source still holds. The
    /// image's copy of such a page, if any, is stale and never installed.
    pub remote: std::collections::HashMap<i32, crate::memory::PageRuns>,
    /// Receives each process's userfaultfd (registered in missing mode over
    /// every private anonymous mapping) as soon as its local pages are in,
    /// before the rest of the process is restored: the restore itself may
    /// touch missing pages, so the fault server must run from then on.
    pub ready: std::sync::mpsc::Sender<LazyProcess>,
}

/// One restored process whose missing pages a fault server resolves.
#[derive(Debug)]
pub struct LazyProcess {
    /// The process (same PID as on the source).
    pub pid: i32,
    /// Its userfaultfd, with fork, remap, remove and unmap events enabled.
    pub uffd: std::os::fd::OwnedFd,
}
