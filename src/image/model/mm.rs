//! The address space in the model: the mm fields and the mappings
//! (VMAs), with the page size every page run is counted in.

use serde::{Deserialize, Serialize};

/// Size of a page on every architecture ferry supports (x86_64).
pub const PAGE_SIZE: u64 = 4096;

/// The memory-descriptor fields that /proc/PID/stat exposes and
/// prctl(PR_SET_MM_MAP) sets, plus brk and the auxiliary vector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MmFields {
    /// Start of the code segment.
    pub start_code: u64,
    /// End of the code segment.
    pub end_code: u64,
    /// Start of the data segment.
    pub start_data: u64,
    /// End of the data segment.
    pub end_data: u64,
    /// Start of the heap (program break at exec).
    pub start_brk: u64,
    /// Current program break (from an injected brk(0)).
    pub brk: u64,
    /// Start of the main stack.
    pub start_stack: u64,
    /// Start of the argv area.
    pub arg_start: u64,
    /// End of the argv area.
    pub arg_end: u64,
    /// Start of the environment area.
    pub env_start: u64,
    /// End of the environment area.
    pub env_end: u64,
    /// The auxiliary vector as raw words (pairs of type and value).
    pub auxv: Vec<u64>,
    /// The membarrier() registrations of the address space
    /// (MEMBARRIER_CMD_GET_REGISTRATIONS: the MEMBARRIER_CMD_REGISTER_*
    /// bits), made again at restore: without them the process's expedited
    /// membarrier calls fail with EPERM. 0 where the checkpointing kernel
    /// (before Linux 6.3) cannot tell.
    pub membarrier: u32,
}

/// What kind of object backs a mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VmaKind {
    /// Private anonymous memory (including thread stacks and guard pages).
    Anonymous,
    /// The brk heap ([heap]).
    Heap,
    /// The main thread's stack ([stack]).
    Stack,
    /// A private mapping of a file.
    File {
        /// Path of the mapped file.
        path: String,
        /// Offset into the file, in bytes.
        offset: u64,
        /// The file as it was at checkpoint, to detect a changed file.
        identity: FileIdentity,
    },
    /// Anonymous memory mapped MAP_SHARED (a shmem object): its contents
    /// are in the image, read from the object by the first process of the
    /// tree that maps it; processes that share it (forked with it) map the
    /// same object again after restore.
    SharedAnonymous {
        /// The shmem object's inode at checkpoint: mappings with the same
        /// inode are one object.
        inode: u64,
        /// Offset into the object, in bytes.
        offset: u64,
    },
    /// A file mapped MAP_SHARED: the file itself holds the data (writes go
    /// to it), so it is mapped again by path and nothing is dumped.
    SharedFile {
        /// Path of the mapped file.
        path: String,
        /// Offset into the file, in bytes.
        offset: u64,
    },
    /// A memfd mapped MAP_SHARED: the memfd, held as an fd by the process,
    /// carries the data, and the mapping is made again from it once the
    /// fds are restored.
    SharedMemfd {
        /// The memfd's inode at checkpoint ([`MemfdImage::inode`](crate::image::model::MemfdImage::inode)).
        inode: u64,
        /// Offset into the memfd, in bytes.
        offset: u64,
    },
    /// An attachment of a SysV shared memory segment (shmat): the segment
    /// ([`Checkpoint::sysv_shm`](crate::image::model::Checkpoint::sysv_shm)) is recreated once and attached again at
    /// the same address. SHM_RDONLY shows as a mapping that may not become
    /// writable (no "mw" in its VmFlags).
    SysvShm {
        /// The segment's shmid (the inode number /proc/PID/maps shows).
        shmid: i32,
    },
    /// The [vdso] code pages.
    Vdso,
    /// The [vvar] data pages.
    Vvar,
    /// The [vvar_vclock] pages.
    VvarVclock,
    /// The legacy [vsyscall] page (fixed address, never moved).
    Vsyscall,
    /// A private mapping (MAP_PRIVATE) of a shared anonymous object, made
    /// from an fd opened through /proc/PID/map_files: the object's pages
    /// show through until written, the pages copied on write are in the
    /// image. Restored from the object as a
    /// [`VmaKind::SharedAnonymous`] mapping of the tree recreates it.
    PrivateShmem {
        /// The shmem object's inode at checkpoint.
        inode: u64,
        /// Offset into the object, in bytes.
        offset: u64,
    },
    /// The rings of a packet socket (PACKET_RX_RING, PACKET_TX_RING) mapped
    /// with mmap of the socket, which the process holds as an fd: mapped
    /// again from the restored socket, whose rings are set up as they were.
    /// The frames in them are not carried, as those queued on the socket.
    PacketRing {
        /// The socket's inode at checkpoint ([`PacketSocket::inode`](crate::image::PacketSocket::inode)).
        inode: u64,
        /// Offset into the rings, in bytes.
        offset: u64,
    },
}

/// Identifies a file's contents well enough to notice that it changed
/// between checkpoint and restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileIdentity {
    /// File size in bytes.
    pub size: u64,
    /// Modification time in nanoseconds since the epoch.
    pub mtime_ns: i64,
}

/// One mapping of the address space.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vma {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// PROT_READ | PROT_WRITE | PROT_EXEC bits.
    pub prot: u32,
    /// What backs the mapping.
    pub kind: VmaKind,
    /// The VmFlags line of /proc/PID/smaps, two-letter codes separated by
    /// spaces ("gd" = grows down, "dd" = don't dump, ...).
    pub vm_flags: String,
}

impl Vma {
    /// Number of pages the mapping spans.
    pub fn pages(&self) -> u64 {
        (self.end - self.start) / PAGE_SIZE
    }

    /// Whether the VmFlags line holds the two-letter code `flag`.
    pub fn has_vm_flag(&self, flag: &str) -> bool {
        self.vm_flags.split_whitespace().any(|f| f == flag)
    }

    /// Whether this is private anonymous memory (heap, stacks, malloc
    /// arenas): what userfaultfd can register (write-protect tracking,
    /// filling missing pages).
    pub fn is_private_anonymous(&self) -> bool {
        matches!(
            self.kind,
            VmaKind::Anonymous | VmaKind::Heap | VmaKind::Stack
        )
    }

    /// Whether a child forked with its parent's mapping `parent` still has
    /// it as this one: a private mapping (anonymous, or of a file) of the
    /// same kind and object over the same range, mapped with the same mmap
    /// flags (grows down, no reserve). Only such a mapping can come back as
    /// the parent's, inherited by the restored child with the pages they
    /// still share copy-on-write.
    pub fn inherits(&self, parent: &Vma) -> bool {
        (self.is_private_anonymous() || matches!(self.kind, VmaKind::File { .. }))
            && (self.start, self.end) == (parent.start, parent.end)
            && self.kind == parent.kind
            && ["gd", "nr"]
                .iter()
                .all(|f| self.has_vm_flag(f) == parent.has_vm_flag(f))
    }

    /// Whether the mapping is made again from an fd the process holds, once
    /// its fds are restored (a shared memfd mapping, packet rings).
    pub fn is_from_fd(&self) -> bool {
        matches!(
            self.kind,
            VmaKind::SharedMemfd { .. } | VmaKind::PacketRing { .. }
        )
    }

    /// Whether this is one of the kernel's special mappings that are not
    /// restored by mmap (vdso, vvar, vvar_vclock, vsyscall).
    pub fn is_special(&self) -> bool {
        matches!(
            self.kind,
            VmaKind::Vdso | VmaKind::Vvar | VmaKind::VvarVclock | VmaKind::Vsyscall
        )
    }
}
