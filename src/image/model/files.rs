//! Open files in the model: the fd table, the open file descriptions it
//! points to (regular and path files, pipes, FIFOs, memfds, eventfd,
//! timerfd, signalfd, epoll, inotify, fanotify, sockets, terminal ends),
//! deleted files carried whole, and file locks.

use super::tty::PtyEnd;
use serde::{Deserialize, Serialize};

/// What kind of file an fd that ferry can carry refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PathFileType {
    /// A regular file.
    Regular,
    /// A character device such as /dev/null, /dev/zero or /dev/urandom.
    CharDevice,
    /// A directory (opened O_RDONLY, or O_PATH), with its readdir position.
    Directory,
    /// A block device (only as a deleted device node, a [`GhostFile`]
    /// with a [`GhostFile::device`]).
    BlockDevice,
}

/// An open file descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdImage {
    /// The fd number.
    pub fd: i32,
    /// Whether FD_CLOEXEC is set.
    pub cloexec: bool,
    /// Index into [`Checkpoint::files`](crate::image::model::Checkpoint::files) of the description it refers to.
    pub file: u32,
}

/// An open file description: what an fd refers to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileImage {
    /// A file opened by path.
    Path(OpenFile),
    /// One end of a pipe.
    Pipe(PipeEnd),
    /// An eventfd: a counter, recreated with its value.
    Eventfd(EventfdImage),
    /// A timerfd: a timer, re-armed with its remaining time and unread
    /// expirations.
    Timerfd(TimerfdImage),
    /// A signalfd: reads the signals of its mask queued for the reader.
    Signalfd(SignalfdImage),
    /// An epoll instance with its registrations.
    Epoll(EpollImage),
    /// An inotify instance with its watches.
    Inotify(InotifyImage),
    /// A unix domain socket: an end of a connected pair held by the
    /// process, or a bound, listening or unnamed one.
    UnixSocket(UnixSocket),
    /// A listening TCP socket or a bound (or unbound) UDP or TCP socket,
    /// IPv4 or IPv6.
    InetSocket(InetSocket),
    /// An end of a FIFO (named pipe) whose both ends the process holds,
    /// reopened by path.
    Fifo(FifoEnd),
    /// A memfd (memfd_create), recreated with its name, size, data and
    /// seals.
    Memfd(MemfdImage),
    /// An established (or half-closed) TCP connection, IPv4 or IPv6,
    /// carried with TCP_REPAIR.
    TcpConnection(TcpConnection),
    /// A pidfd (pidfd_open) of a process of the tree or of a dead one.
    Pidfd(PidfdImage),
    /// The stdio a container's runtime gave its init (a pipe or terminal
    /// whose other end a process outside the tree holds: containerd's
    /// shim, conmon, the shell that ran `runc run`): restored as a dup of
    /// the same stdio slot of the restored init's husk, i.e. the stdio
    /// the restoring runtime gives the new container.
    ExternalStdio(ExternalStdio),
    /// A netlink socket (AF_NETLINK), made again with its protocol, port
    /// id, groups, connected destination and options.
    NetlinkSocket(NetlinkSocket),
    /// A packet socket (AF_PACKET), made again with its type, protocol,
    /// interface, options, memberships, rings and fanout group.
    PacketSocket(PacketSocket),
    /// An end of a pseudo-terminal pair (the master, /dev/ptmx, or its
    /// slave, /dev/pts/N), both ends held by the tree.
    Pty(PtyEnd),
    /// A fanotify group with its marks.
    Fanotify(FanotifyImage),
}

/// A memfd description: an anonymous file whose contents live only in
/// memory, so they travel in the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemfdImage {
    /// The name given to memfd_create (the link shows "/memfd:NAME").
    pub name: String,
    /// Its inode at checkpoint: MAP_SHARED mappings of it name it.
    pub inode: u64,
    /// Its size in bytes.
    pub size: u64,
    /// The ranges holding data, as (offset, bytes); holes are left out.
    pub data: Vec<(u64, Vec<u8>)>,
    /// Its seals (F_GET_SEALS); F_SEAL_SEAL alone means it was created
    /// without MFD_ALLOW_SEALING.
    pub seals: i32,
    /// Status flags of the description (O_NONBLOCK ...), without the
    /// access mode and O_CLOEXEC.
    pub flags: i32,
    /// File offset.
    pub pos: i64,
    /// Its permission bits (st_mode & 07777, as fchmod set them; a new
    /// memfd has 0777).
    pub mode: u32,
    /// The description's access mode (O_RDONLY, O_WRONLY or O_RDWR): one
    /// opened again through /proc/PID/fd may be read-only.
    pub access: i32,
    /// For a further description of a memfd an earlier one of
    /// [`Checkpoint::files`](crate::image::model::Checkpoint::files)
    /// describes already (one opened through /proc/PID/fd): that one's
    /// index. This one carries no data then: restore opens the same memfd
    /// again, so that writes through either are seen by both.
    pub same_as: Option<u32>,
}

/// An open FIFO description: reopened by path, with the data that was
/// buffered in the FIFO.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FifoEnd {
    /// The FIFO's path.
    pub path: String,
    /// Its permission bits, to recreate it if it is gone at restore.
    pub mode: u32,
    /// Open flags of the description, with the access mode, without
    /// O_CLOEXEC.
    pub flags: i32,
    /// The bytes buffered in the FIFO: carried by the first end of it in
    /// the image, empty in the others.
    pub data: Vec<u8>,
}

/// An eventfd (fdinfo "eventfd-count:" and "eventfd-semaphore:").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventfdImage {
    /// The counter: what a read returns (or counts down in semaphore mode).
    pub count: u64,
    /// EFD_SEMAPHORE: a read returns 1 and decrements the counter by one.
    pub semaphore: bool,
    /// Status flags of the description (O_NONBLOCK), without the access
    /// mode and O_CLOEXEC.
    pub flags: i32,
}

/// A timerfd, as timerfd_gettime and fdinfo report it while the process is
/// frozen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerfdImage {
    /// The clock it counts on (CLOCK_REALTIME, CLOCK_MONOTONIC,
    /// CLOCK_BOOTTIME and their _ALARM variants).
    pub clockid: i32,
    /// Status flags of the description (O_NONBLOCK), without the access
    /// mode and O_CLOEXEC.
    pub flags: i32,
    /// The flags of its last timerfd_settime (TFD_TIMER_ABSTIME,
    /// TFD_TIMER_CANCEL_ON_SET).
    pub settime_flags: i32,
    /// Expirations not yet read: a read after restore returns them (plus
    /// any that happen after restore).
    pub ticks: u64,
    /// Time left until the next expiration in nanoseconds; 0 when disarmed.
    pub remaining_ns: u64,
    /// The period in nanoseconds; 0 for a one-shot timer.
    pub interval_ns: u64,
    /// For a TFD_TIMER_ABSTIME timer on a wall clock (CLOCK_REALTIME,
    /// CLOCK_REALTIME_ALARM): its absolute expiry on that clock, so that it
    /// still fires at the same wall-clock time after restore. Other timers
    /// restart with `remaining_ns` from the moment of restore.
    pub deadline_ns: Option<u64>,
}

/// A signalfd (fdinfo "sigmask:").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalfdImage {
    /// The signals it reads, bit `n - 1` for signal `n`.
    pub sigmask: u64,
    /// Status flags of the description (O_NONBLOCK), without the access
    /// mode and O_CLOEXEC.
    pub flags: i32,
}

/// An epoll instance. It is rebuilt inside the restored process after all
/// its other fds are in place, because the kernel keys each registration by
/// (file, fd number): later EPOLL_CTL_MOD/DEL calls must find the same key.
/// Which targets were ready is not saved: after restore, a ready
/// edge-triggered target may be reported once more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpollImage {
    /// Status flags of the description (O_NONBLOCK ...), without the access
    /// mode and O_CLOEXEC.
    pub flags: i32,
    /// Every registration, in the order fdinfo lists them.
    pub targets: Vec<EpollTarget>,
}

/// One registration of an epoll instance (a `tfd:` line of its fdinfo).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpollTarget {
    /// The registered fd number (the kernel's key, with the file).
    pub fd: i32,
    /// The event mask with its flags (EPOLLET, EPOLLONESHOT, EPOLLEXCLUSIVE,
    /// EPOLLWAKEUP ...), as the kernel holds it.
    pub events: u32,
    /// The user data returned with each event.
    pub data: u64,
    /// When `fd` was closed after the registration was made, or now
    /// refers to another file (a dup kept the registration alive): an fd
    /// of the same process on the registered file, made to appear at `fd`
    /// just for the time of the EPOLL_CTL_ADD at restore.
    pub via: Option<i32>,
}

/// An inotify instance. Events queued at checkpoint and not yet read are
/// not carried: they are lost. After restore the next watch the program
/// adds gets the number after the highest restored one, which may differ
/// from what it would have got (the kernel's counter is not visible).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InotifyImage {
    /// Status flags of the description (O_NONBLOCK ...), without the access
    /// mode and O_CLOEXEC.
    pub flags: i32,
    /// Every watch, in increasing watch descriptor order.
    pub watches: Vec<InotifyWatch>,
}

/// The most unused watch descriptor numbers a restore skips (by adding and
/// removing a watch for each) to give every watch its saved number: the
/// kernel hands out numbers in increasing order only.
pub const MAX_SKIPPED_WATCHES: i32 = 1024;

/// One inotify watch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InotifyWatch {
    /// The watch descriptor the program knows it by.
    pub wd: i32,
    /// The event mask with IN_ONESHOT / IN_EXCL_UNLINK, as fdinfo shows it.
    pub mask: u32,
    /// Absolute path of the watched file or directory, found from its file
    /// handle at checkpoint.
    pub path: String,
}

/// Socket settings that ferry sets again on the recreated socket, the
/// same for every kind of socket (unix, UDP, raw, TCP listening or
/// connected): read by `dump::sockets::socket_options`, set by
/// `restore::husk::sockets::set_options`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketOptions {
    /// SO_REUSEADDR.
    pub reuse_addr: bool,
    /// SO_REUSEPORT.
    pub reuse_port: bool,
    /// SO_SNDBUF as getsockopt reports it (twice what was asked for).
    pub sndbuf: u32,
    /// SO_RCVBUF as getsockopt reports it (twice what was asked for).
    pub rcvbuf: u32,
    /// The int-valued options of `kernel::sockopts::CARRIED` this socket
    /// answers (SO_PRIORITY, SO_MARK, IP_TOS, TCP_CORK ...), in that
    /// table's order; restore sets those that differ on the new socket.
    pub int_options: Vec<IntOption>,
    /// SO_LINGER: the linger time in seconds when it is on.
    pub linger: Option<i32>,
    /// SO_RCVTIMEO in microseconds (0: reads wait forever).
    pub rcv_timeout_us: u64,
    /// SO_SNDTIMEO in microseconds (0: writes wait forever).
    pub snd_timeout_us: u64,
    /// SO_BINDTODEVICE: the name of the interface the socket is bound to.
    pub bound_device: Option<String>,
    /// For a raw ICMPv6 socket: ICMPV6_FILTER, the bitmap of the ICMPv6
    /// types it drops.
    pub icmp6_filter: Option<Vec<u8>>,
}

/// A unix domain socket (AF_UNIX).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnixSocket {
    /// SOCK_STREAM, SOCK_DGRAM or SOCK_SEQPACKET.
    pub sock_type: i32,
    /// Status flags of the description (O_NONBLOCK ...), without the
    /// access mode and O_CLOEXEC.
    pub flags: i32,
    /// The name it is bound to: the bytes of sun_path (a leading NUL for
    /// an abstract name); None when unnamed. A connected stream or
    /// seqpacket socket has none here (an accepted one reports its
    /// listener's name, which is not its own); a datagram socket keeps its
    /// own.
    pub name: Option<Vec<u8>>,
    /// The listen backlog, for a listening socket. Connections queued and
    /// not yet accepted at checkpoint come back only when the tree holds
    /// their client end (`accept_queue`).
    pub listen_backlog: Option<u32>,
    /// For an end of a connection whose other end the tree also holds:
    /// the index into [`Checkpoint::files`](crate::image::model::Checkpoint::files) of that other end.
    pub peer: Option<u32>,
    /// Data queued to be read at this end, one entry per message (for a
    /// stream socket the entries are just chunks of the byte stream).
    pub queued: Vec<Vec<u8>>,
    /// Buffer sizes and reuse flags.
    pub options: SocketOptions,
    /// A connected socket whose peer has closed (held by a process of the
    /// tree or not): reads return `queued`, then end of file (a stream or
    /// seqpacket socket) or nothing more; a datagram socket's next send
    /// fails with ECONNREFUSED. Recreated as one end of a pair whose other
    /// end is closed.
    pub peer_gone: bool,
    /// An ECONNRESET is pending (its peer closed with data unread): the
    /// next read once `queued` is drained reports it.
    pub reset_pending: bool,
    /// The shutdown bits (1: no more receiving, 2: no more sending), as
    /// shutdown() or a peer's close left them.
    pub shutdown: u8,
    /// The index into [`Checkpoint::files`](crate::image::model::Checkpoint::files)
    /// of the bound socket this one is connected to by name without being
    /// its peer: the server a datagram socket sends to (shared by several
    /// clients), or the listener a stream connection not accepted yet
    /// waits on (then listed in that listener's `accept_queue`).
    pub connect_to: Option<u32>,
    /// For a listening socket: the client ends (indices into
    /// [`Checkpoint::files`](crate::image::model::Checkpoint::files)) of
    /// the connections the tree made to it and did not accept yet, in
    /// accept order. Restore connects them again in that order.
    pub accept_queue: Vec<u32>,
    /// For a socket bound to a path: the owner and mode of the socket file
    /// there, set again after binding it (bind creates it as ferry's user,
    /// with ferry's umask). None for an abstract or unnamed socket; for a
    /// socket bound to a path, None means its file was gone (unlinked
    /// while bound): restore unlinks it again once its clients connected.
    pub bound_file: Option<SocketFileOwner>,
    /// What travels with each message of `queued` (same length; empty in
    /// an image without it): file descriptions in flight (SCM_RIGHTS) and
    /// the sender's credentials (SCM_CREDENTIALS).
    pub queued_ancillary: Vec<Ancillary>,
    /// SO_PASSCRED: the receiver gets each sender's credentials.
    pub passcred: bool,
}

/// An IPv4 or IPv6 socket: TCP listening or not yet connected, or UDP
/// (connected or not, shut down or not, with its queued datagrams).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InetSocket {
    /// SOCK_STREAM (TCP) or SOCK_DGRAM (UDP).
    pub sock_type: i32,
    /// Status flags of the description (O_NONBLOCK ...), without the
    /// access mode and O_CLOEXEC.
    pub flags: i32,
    /// The local address; None when the socket is not bound (an IPv4 or
    /// IPv6 socket is then told apart by `ipv6`).
    pub local: Option<std::net::SocketAddr>,
    /// An AF_INET6 socket (which may still be bound to an IPv4-mapped
    /// address).
    pub ipv6: bool,
    /// The listen backlog, for a listening TCP socket. Connections queued
    /// and not yet accepted at checkpoint are not carried.
    pub listen_backlog: Option<u32>,
    /// IPV6_V6ONLY (IPv6 sockets only).
    pub v6only: bool,
    /// TCP_NODELAY (TCP only).
    pub nodelay: bool,
    /// Buffer sizes and reuse flags.
    pub options: SocketOptions,
    /// The address a UDP socket is connected to (connect(2)), if any.
    pub peer: Option<std::net::SocketAddr>,
    /// The shutdown(2) bits of a UDP socket, or of a TCP socket whose
    /// connection ended (both): 1 reading shut down, 2 writing shut down
    /// (the kernel's RCV_SHUTDOWN and SEND_SHUTDOWN).
    pub shutdown: u8,
    /// Datagrams queued to be read on a UDP socket, oldest first.
    pub queued: Vec<Datagram>,
    /// IPPROTO_TCP, IPPROTO_UDP or IPPROTO_UDPLITE.
    pub protocol: i32,
    /// SO_BROADCAST (UDP: datagrams may go to broadcast addresses).
    pub broadcast: bool,
}

/// One end of a pipe (or FIFO) held by the process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipeEnd {
    /// Index into [`Checkpoint::pipes`](crate::image::model::Checkpoint::pipes).
    pub pipe: u32,
    /// The write end (else the read end).
    pub write_end: bool,
    /// Status flags of this end's description (O_NONBLOCK ...), without
    /// the access mode and O_CLOEXEC.
    pub flags: i32,
}

/// A pipe: its capacity and the bytes buffered in it at checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipeImage {
    /// The pipe's inode number on the checkpointing host, for messages.
    pub inode: u64,
    /// Capacity in bytes (F_GETPIPE_SZ).
    pub capacity: u32,
    /// Data written and not yet read.
    pub data: Vec<u8>,
}

/// A file opened by path, reopened by path on restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenFile {
    /// Absolute path.
    pub path: String,
    /// Regular file, character device or directory.
    pub file_type: PathFileType,
    /// The open flags from fdinfo (access mode, O_APPEND, O_NONBLOCK ...),
    /// without O_CLOEXEC, which is per fd.
    pub flags: i32,
    /// File position (for a directory, its readdir offset, as lseek
    /// reports it).
    pub pos: i64,
    /// For a file deleted while open: its index in
    /// [`Checkpoint::ghost_files`](crate::image::model::Checkpoint::ghost_files); `path` is then where it was.
    pub ghost: Option<u32>,
}

/// A regular file deleted (unlinked) while fds still refer to it (CRIU's
/// "ghost file"): no path leads to it any more, so its contents travel in
/// the image. At restore it is recreated beside its old path, every
/// description of it is reopened from that one file, and it is unlinked
/// again. At most [`GHOST_FILE_MAX`] bytes are carried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GhostFile {
    /// Where it was before it was deleted (without " (deleted)").
    pub path: String,
    /// Its permission bits (st_mode & 07777).
    pub mode: u32,
    /// Its owner.
    pub uid: u32,
    /// Its group.
    pub gid: u32,
    /// Its size in bytes.
    pub size: u64,
    /// The ranges holding data, as (offset, bytes); holes are left out.
    pub data: Vec<(u64, Vec<u8>)>,
    /// Last access time (seconds, nanoseconds).
    pub atime: (i64, i64),
    /// Last modification time (seconds, nanoseconds).
    pub mtime: (i64, i64),
    /// For a deleted device node (CRIU's deleted_dev) rather than a
    /// regular file: which device it is (`size` is then 0 and `data`
    /// empty). At restore a node is made again with mknod, opened, and
    /// unlinked; a device this host lacks fails the restore.
    pub device: Option<GhostDevice>,
}

/// The largest deleted file carried: its contents travel in the image.
pub const GHOST_FILE_MAX: u64 = 64 << 20;

/// Who a file lock belongs to, which decides how restore takes it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileLockKind {
    /// A POSIX record lock (F_SETLK): owned by the process.
    Posix,
    /// An open file description lock (F_OFD_SETLK): owned by the
    /// description.
    Ofd,
    /// A flock() lock: owned by the description, always the whole file.
    Flock,
}

/// One file lock, taken again through fd `fd` of its process on restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileLock {
    /// An fd of the process on the locked description.
    pub fd: i32,
    /// Its owner kind.
    pub kind: FileLockKind,
    /// A write (exclusive) lock; otherwise a read (shared) one.
    pub write: bool,
    /// First byte locked.
    pub start: u64,
    /// Bytes locked (0: up to the end of the file, however it grows).
    pub len: u64,
}

/// Where a TCP connection stood at checkpoint: the states ferry carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TcpConnState {
    /// ESTABLISHED: data flows both ways.
    Established,
    /// FIN_WAIT1: this end shut down writing; its FIN is not acknowledged
    /// yet.
    FinWait1,
    /// FIN_WAIT2: this end shut down writing and the peer acknowledged
    /// its FIN; the peer may still send.
    FinWait2,
    /// CLOSE_WAIT: the peer shut down writing (its FIN is received, reads
    /// end with end of file after the queued data); this end may still
    /// send. The restored end learns of the FIN again from the restore (a
    /// FIN segment given to the restored socket as if the peer sent it).
    CloseWait,
    /// LAST_ACK: the peer shut down writing, then this end did; its FIN
    /// (queued behind any data the peer has not taken) is not
    /// acknowledged yet.
    LastAck,
    /// CLOSING: this end shut down writing, then the peer's FIN came
    /// before the acknowledgement of this end's FIN.
    Closing,
    /// CLOSE with bytes still queued to be read: the connection was reset
    /// by the peer (or closed both ways) and its error, if any, was
    /// reported to the program already. Restored, it reads its bytes, then
    /// end of file.
    Closed,
    /// CLOSE with bytes still queued to be read, reset by the peer, the
    /// error not reported yet (poll gives POLLERR). Restored, it reads its
    /// bytes, then the error (ECONNRESET, however it came).
    Reset,
    /// SYN_SENT: a connect() still waiting for its peer's answer. Only
    /// the addresses and the initial sequence number (`send_seq`, which
    /// counts the SYN) matter: restored, the socket is bound in repair
    /// mode, given that sequence number and connects again, so that the
    /// connect completes when the peer answers (its SYN retransmitted).
    SynSent,
}

impl TcpConnState {
    /// Whether this end has sent its FIN (shut down writing).
    pub fn fin_sent(self) -> bool {
        matches!(
            self,
            Self::FinWait1 | Self::FinWait2 | Self::LastAck | Self::Closing
        )
    }

    /// Whether the peer's FIN was received.
    pub fn fin_received(self) -> bool {
        matches!(self, Self::CloseWait | Self::LastAck | Self::Closing)
    }

    /// Whether the connection is over (reset or closed), kept for the
    /// bytes still queued to be read.
    pub fn ended(self) -> bool {
        matches!(self, Self::Closed | Self::Reset)
    }

    /// Whether the peer's FIN came before this end shut down writing (so
    /// a restore gives it back first).
    pub fn fin_received_first(self) -> bool {
        matches!(self, Self::CloseWait | Self::LastAck)
    }
}

/// The windows of a TCP connection (TCP_REPAIR_WINDOW).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpWindow {
    /// Sequence number of the segment that last updated the send window.
    pub snd_wl1: u32,
    /// The send window (what the peer allows).
    pub snd_wnd: u32,
    /// The largest send window the peer offered.
    pub max_window: u32,
    /// The receive window advertised.
    pub rcv_wnd: u32,
    /// The receive sequence when that window was advertised.
    pub rcv_wup: u32,
}

/// TCP-level settings of a connection, set again after repair.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpSettings {
    /// TCP_NODELAY.
    pub nodelay: bool,
    /// TCP_CORK.
    pub cork: bool,
    /// SO_KEEPALIVE.
    pub keepalive: bool,
    /// TCP_KEEPIDLE, seconds.
    pub keepidle: i32,
    /// TCP_KEEPINTVL, seconds.
    pub keepintvl: i32,
    /// TCP_KEEPCNT.
    pub keepcnt: i32,
    /// TCP_USER_TIMEOUT, milliseconds (0: the system's).
    pub user_timeout: i32,
}

/// An established or half-closed TCP connection, read with TCP_REPAIR
/// (as CRIU's --tcp-established): its addresses, sequence numbers, the
/// data queued both ways, the options negotiated with the peer and its
/// windows, so that it goes on where it stopped without the peer seeing
/// anything but a pause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpConnection {
    /// Status flags of the description (O_NONBLOCK ...), without the
    /// access mode and O_CLOEXEC.
    pub flags: i32,
    /// An AF_INET6 socket (its addresses may be IPv4-mapped).
    pub ipv6: bool,
    /// IPV6_V6ONLY (IPv6 sockets only).
    pub v6only: bool,
    /// The local address and port.
    pub local: std::net::SocketAddr,
    /// The peer's address and port.
    pub remote: std::net::SocketAddr,
    /// The state it was in.
    pub state: TcpConnState,
    /// The sequence number after the last byte written (write_seq, not
    /// counting a FIN): `send_queue` ends there.
    pub send_seq: u32,
    /// The sequence number after the last byte received (rcv_nxt, not
    /// counting a FIN): `recv_queue` ends there.
    pub recv_seq: u32,
    /// Bytes written and not acknowledged by the peer, sent or not, in
    /// order.
    pub send_queue: Vec<u8>,
    /// How many bytes at the end of `send_queue` were never sent: they are
    /// written normally after repair, the rest is queued as sent (and
    /// retransmitted if the peer lacks it).
    pub unsent: u32,
    /// Bytes received and not read by the program.
    pub recv_queue: Vec<u8>,
    /// The MSS clamp (TCP_MAXSEG in repair mode).
    pub mss: u32,
    /// Window scaling (send shift, receive shift), when negotiated.
    pub wscale: Option<(u8, u8)>,
    /// SACK negotiated.
    pub sack: bool,
    /// When timestamps were negotiated: this end's timestamp clock at
    /// checkpoint (TCP_TIMESTAMP), so that the peer sees it go on.
    pub timestamp: Option<u32>,
    /// The windows.
    pub window: TcpWindow,
    /// TCP-level settings.
    pub settings: TcpSettings,
    /// Buffer sizes and reuse flags.
    pub options: SocketOptions,
    /// Shut down for reading (shutdown SHUT_RD) by the program: reads end
    /// with end of file once the queue is read. (A CLOSE_WAIT end is shut
    /// down for reading by the peer's FIN anyway.)
    pub shut_rd: bool,
}

/// Owner and permission bits of the file a unix socket is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketFileOwner {
    /// Its owner.
    pub uid: u32,
    /// Its group.
    pub gid: u32,
    /// Its permission bits (st_mode & 07777).
    pub mode: u32,
}

/// The ancillary data of one message queued on a unix socket, sent with it
/// again at restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ancillary {
    /// Descriptions in flight (indices into
    /// [`Checkpoint::files`](crate::image::model::Checkpoint::files)), in
    /// the order the receiver gets them as fds.
    pub fds: Vec<u32>,
    /// The sender's credentials, as the receiver sees them with
    /// SO_PASSCRED.
    pub creds: Option<UnixCreds>,
}

/// Credentials attached to a unix socket message (struct ucred).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnixCreds {
    /// The sender's PID.
    pub pid: i32,
    /// Its user.
    pub uid: u32,
    /// Its group.
    pub gid: u32,
}

/// A datagram queued on a UDP socket: sent again at restore from its
/// source address, so that recvfrom still names the sender.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Datagram {
    /// The address it came from.
    pub source: std::net::SocketAddr,
    /// Its payload.
    pub data: Vec<u8>,
}

/// A pidfd: of a process of the tree (opened again on the restored
/// process, which has the same PID), or of a process that had exited and
/// been reaped (made again from a short-lived process of the restorer's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PidfdImage {
    /// The process, as the tree's PID namespace names it; None for a
    /// process that was dead already.
    pub pid: Option<i32>,
    /// Status flags of the description (O_NONBLOCK ...), without the
    /// access mode and O_CLOEXEC.
    pub flags: i32,
    /// Its inode (pidfs: one per process): the dead pidfds of one inode
    /// referred to one process, and come back referring to one.
    pub inode: u64,
}

/// Whom the SIGIO and SIGURG signals of a description go to
/// (F_SETOWN_EX's owner types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileOwnerKind {
    /// One thread (F_OWNER_TID).
    Thread,
    /// A process (F_OWNER_PID, or F_SETOWN with a positive PID).
    Process,
    /// A process group (F_OWNER_PGRP, or F_SETOWN with a negative ID).
    ProcessGroup,
}

/// The signal-driven I/O settings of an open file description, set again
/// through fd `fd` of its process on restore (once per description: the
/// image records them with the first process holding it). Without them a
/// restored program waiting for SIGIO never gets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileOwner {
    /// An fd of the process on the description.
    pub fd: i32,
    /// Who `pid` is.
    pub kind: FileOwnerKind,
    /// The thread, process or group the signals go to (as the tree sees
    /// it); 0 when no owner is set.
    pub pid: i32,
    /// The signal sent (F_SETSIG); 0: SIGIO, without the extra siginfo.
    pub signal: i32,
    /// O_ASYNC is set: the description sends its signals.
    pub async_io: bool,
}

/// An open file description that was one of a container init's stdio
/// fds (0, 1 or 2) held outside the tree, as runc's descriptors.json
/// records it for CRIU: whatever fd number and process of the tree holds
/// it, it is restored as the restored init's own fd `slot` (the stdio the
/// restoring runtime gave it), its status flags set as they were.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalStdio {
    /// The init's stdio fd it was: 0, 1 or 2.
    pub slot: u8,
    /// Access mode and status flags of the description (O_WRONLY,
    /// O_NONBLOCK, O_APPEND ...), without O_CLOEXEC: the status flags are
    /// set again, the access mode is the new stdio's.
    pub flags: i32,
    /// What it was at checkpoint (`pipe:[INODE]`, `/dev/pts/N`), for
    /// messages and `image show`.
    pub target: String,
}

/// One int-valued socket option and its value, as getsockopt read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntOption {
    /// Its level (SOL_SOCKET, SOL_IP, SOL_IPV6, SOL_TCP).
    pub level: i32,
    /// Its name (SO_PRIORITY ...).
    pub name: i32,
    /// Its value.
    pub value: i32,
}

/// Which device a deleted device node ([`GhostFile::device`]) was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GhostDevice {
    /// A block device (S_IFBLK) rather than a character device (S_IFCHR).
    pub block: bool,
    /// Its major number.
    pub major: u32,
    /// Its minor number.
    pub minor: u32,
}

/// A netlink socket (AF_NETLINK): what a program talking to the kernel
/// (routing, uevents, sock_diag) or to another process through it holds.
/// Its queued messages are not carried: a socket holding some is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetlinkSocket {
    /// SOCK_RAW or SOCK_DGRAM.
    pub sock_type: i32,
    /// The netlink protocol (NETLINK_ROUTE, NETLINK_KOBJECT_UEVENT ...).
    pub protocol: i32,
    /// Status flags of the description (O_NONBLOCK ...).
    pub flags: i32,
    /// Its port id (bound, or given by the kernel on its first send or
    /// connect); 0 when it has none yet.
    pub port_id: u32,
    /// The multicast groups it listens to (1-based numbers, as
    /// NETLINK_ADD_MEMBERSHIP takes them).
    pub groups: Vec<u32>,
    /// The port id its sends go to when connected (0: the kernel).
    pub dst_port_id: u32,
    /// The group its sends also go to when connected (0: none).
    pub dst_group: u32,
    /// The options every socket has, and the SOL_NETLINK ones.
    pub options: SocketOptions,
}

/// A packet socket (AF_PACKET: SOCK_RAW, SOCK_DGRAM or the old
/// SOCK_PACKET). The frames queued on it are not carried, as the network
/// may drop them; its rings are carried as configured, and mapped again
/// where the process mapped them ([`VmaKind::PacketRing`](crate::image::VmaKind::PacketRing)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PacketSocket {
    /// SOCK_RAW, SOCK_DGRAM or SOCK_PACKET.
    pub sock_type: i32,
    /// The protocol it receives (an EtherType in network byte order, as
    /// socket(2) and bind(2) take it; 0: none).
    pub protocol: u16,
    /// Status flags of the description (O_NONBLOCK ...).
    pub flags: i32,
    /// The interface it is bound to (0: all, or not bound).
    pub ifindex: i32,
    /// For a SOCK_PACKET socket: the name of the device it is bound to
    /// (empty: not bound).
    pub device: Vec<u8>,
    /// Its memberships (PACKET_ADD_MEMBERSHIP).
    pub memberships: Vec<PacketMembership>,
    /// PACKET_RX_RING's configuration (tpacket_req3's seven fields), if
    /// set.
    pub rx_ring: Option<[u32; 7]>,
    /// PACKET_TX_RING's, if set.
    pub tx_ring: Option<[u32; 7]>,
    /// PACKET_FANOUT as getsockopt reads it (group id, and type and flags
    /// shifted by 16); 0: in no fanout group.
    pub fanout: u32,
    /// The options every socket has, and the SOL_PACKET ones.
    pub options: SocketOptions,
    /// The socket's inode at checkpoint, which a mapping of its rings
    /// names.
    pub inode: u64,
}

/// A membership of a packet socket: a multicast or unicast address, or
/// promiscuous or all-multicast mode, on an interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PacketMembership {
    /// The interface.
    pub ifindex: i32,
    /// PACKET_MR_MULTICAST, PACKET_MR_PROMISC, PACKET_MR_ALLMULTI or
    /// PACKET_MR_UNICAST.
    pub mr_type: u16,
    /// The link-layer address, at most 8 bytes.
    pub address: Vec<u8>,
    /// How many times it was added (each PACKET_DROP_MEMBERSHIP takes one).
    pub count: u32,
}

/// A fanotify group (fanotify_init), made again with the same flags and
/// marks. Events queued in it are not carried (CRIU does not carry them
/// either).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FanotifyImage {
    /// Status flags of the description (O_NONBLOCK ...), without the
    /// access mode and O_CLOEXEC.
    pub flags: i32,
    /// The flags given to fanotify_init (FAN_CLASS_*, FAN_NONBLOCK,
    /// FAN_UNLIMITED_QUEUE ...).
    pub init_flags: u32,
    /// fanotify_init's event_f_flags: the open flags of the event fds.
    pub event_flags: u32,
    /// Its marks.
    pub marks: Vec<FanotifyMark>,
}

/// A mark of a fanotify group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FanotifyMark {
    /// What kind of object it is on.
    pub kind: FanotifyMarkKind,
    /// The path of that object: a file or directory, or a mount of the
    /// filesystem, as migrate-agent sees them; a mount point as the
    /// process sees it.
    pub path: String,
    /// Its flags (FAN_MARK_IGNORED_SURV_MODIFY, FAN_MARK_EVICTABLE,
    /// FAN_MARK_IGNORE).
    pub flags: u32,
    /// The events it reports.
    pub mask: u64,
    /// The events it ignores.
    pub ignored_mask: u64,
}

/// What a fanotify mark is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FanotifyMarkKind {
    /// One file or directory.
    Inode,
    /// A mount (FAN_MARK_MOUNT).
    Mount,
    /// A whole filesystem (FAN_MARK_FILESYSTEM).
    Filesystem,
}
