//! How each fd of a process is carried, as inspection classified it: the
//! classes dump describes and the inspection's checks read.

use crate::image::PathFileType;

/// An fd of the process as classified before freezing.
pub struct ClassifiedFd {
    /// The fd number.
    pub fd: i32,
    /// Its /proc link target.
    pub target: String,
    /// How it is carried.
    pub class: FdClass,
}

/// How an fd is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdClass {
    /// Reopened by path.
    Path(PathFileType),
    /// An end of pipe `inode`, recreated with its buffered data.
    Pipe {
        /// The pipe's inode number.
        inode: u64,
    },
    /// An eventfd, recreated with its counter.
    Eventfd,
    /// A timerfd, re-armed with its remaining time and unread expirations.
    Timerfd,
    /// A signalfd, recreated with its mask.
    Signalfd,
    /// An epoll instance, rebuilt with its registrations.
    Epoll,
    /// An inotify instance, rebuilt with its watches.
    Inotify,
    /// A fanotify group, rebuilt with its marks.
    Fanotify,
    /// Unix socket `inode`; `peer` is the inode of the socket it is
    /// connected to (0 when that one is closed), if connected.
    UnixSocket {
        /// The socket's inode number.
        inode: u64,
        /// The peer's inode number.
        peer: Option<u64>,
    },
    /// A listening TCP socket, or an unconnected TCP or UDP socket.
    InetSocket,
    /// A netlink socket with no message queued.
    NetlinkSocket,
    /// A packet socket without a filter, in no fanout group of a BPF
    /// program.
    PacketSocket {
        /// The socket's inode number.
        inode: u64,
    },
    /// An established or half-closed TCP connection, carried with
    /// TCP_REPAIR.
    TcpConnection {
        /// The local address.
        local: std::net::SocketAddr,
        /// The peer's address.
        remote: std::net::SocketAddr,
        /// The TCP state (include/net/tcp_states.h).
        state: u8,
    },
    /// Memfd `inode`, recreated with its contents.
    Memfd {
        /// The memfd's inode number.
        inode: u64,
    },
    /// An end of FIFO `inode`, reopened by path.
    Fifo {
        /// The FIFO's inode number.
        inode: u64,
    },
    /// A pidfd of process `pid` (as this host sees it), or of a process
    /// that has exited and been reaped (None).
    Pidfd {
        /// The process it refers to.
        pid: Option<i32>,
    },
    /// One of a container init's stdio pipes whose other end a process
    /// outside the tree holds (its runtime's shim), or a copy of it:
    /// restored on the stdio the restoring runtime gives the new init.
    ExternalStdio {
        /// The init's fd it was (0, 1 or 2).
        slot: u8,
        /// The pipe's inode number.
        inode: u64,
    },
    /// An end of pseudo-terminal `index` (N of /dev/pts/N): its master
    /// (an open of /dev/ptmx), or its slave; carried when the tree holds
    /// its master.
    Pty {
        /// The pty's index.
        index: u32,
        /// The master end, else the slave.
        master: bool,
    },
}
