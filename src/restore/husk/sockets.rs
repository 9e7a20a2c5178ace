//! Recreates an image's TCP and UDP sockets here in migrate-agent, to be
//! pulled into the husk like pipes: listening TCP and bound UDP sockets
//! with their options (a UDP socket's connection state, queued datagrams
//! and shutdown in `udp.rs`); and what every socket shares (type, options,
//! status flags, listening), which `unix.rs` uses too.

use super::udp;
use crate::image::{Checkpoint, FileImage, InetSocket, ProcessImage, SocketOptions};
use crate::kernel::sockets::{getsockopt_int, setsockopt_int};
use crate::kernel::sockopts;
use crate::restore::error::RestoreError;
use nix::errno::Errno;
use nix::sys::socket::{bind, listen, AddressFamily, Backlog, SockType, SockaddrIn, SockaddrIn6};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

/// Creates every TCP and UDP socket of the tree `ck`, putting our fd of
/// each at the index of its description in `ours`.
pub fn create(ck: &Checkpoint, ours: &mut [Option<OwnedFd>]) -> Result<(), RestoreError> {
    for (i, file) in ck.files.iter().enumerate() {
        let (Some(image), FileImage::InetSocket(n)) = (holder(ck, i), file) else {
            continue;
        };
        let sock = inet(image.pid, n)?;
        set_flags(image.pid, &sock, n.flags)?;
        ours[i] = Some(sock);
    }
    // Every socket of a port is bound now: each gets its own reuse flags
    // back (see `inet`).
    for (i, file) in ck.files.iter().enumerate() {
        if let (Some(image), FileImage::InetSocket(n), Some(sock)) =
            (holder(ck, i), file, ours[i].as_ref())
        {
            if binds_port(n) {
                set_reuse(image.pid, sock, n.options.reuse_addr, n.options.reuse_port)?;
            }
        }
    }
    udp::refill_and_shut(ck, ours)?;
    Ok(())
}

/// Creates each socket of the tree `ck` that `make` makes (given the
/// holder's PID and the description; None for the descriptions it does
/// not make) with its status flags, putting our fd of each at the index
/// of its description in `ours`.
pub(super) fn create_each(
    ck: &Checkpoint,
    ours: &mut [Option<OwnedFd>],
    make: impl Fn(i32, &FileImage) -> Option<Result<(OwnedFd, i32), RestoreError>>,
) -> Result<(), RestoreError> {
    for (i, file) in ck.files.iter().enumerate() {
        let Some(image) = holder(ck, i) else { continue };
        if let Some(made) = make(image.pid, file) {
            let (sock, flags) = made?;
            set_flags(image.pid, &sock, flags)?;
            ours[i] = Some(sock);
        }
    }
    Ok(())
}

/// The first process that holds description `i` (for its working
/// directory and for messages).
pub(super) fn holder(ck: &Checkpoint, i: usize) -> Option<&ProcessImage> {
    ck.processes
        .iter()
        .find(|p| p.fds.iter().any(|f| f.file as usize == i))
}

/// The socket type `raw` (SOCK_STREAM ...) of a socket of `pid`.
pub(super) fn sock_type(pid: i32, raw: i32) -> Result<SockType, RestoreError> {
    SockType::try_from(raw).map_err(|errno| RestoreError::Injected {
        pid,
        call: format!("socket type {raw}"),
        errno,
    })
}

/// Listens on `sock` with `backlog` (capped at SOMAXCONN), if it has one.
pub(super) fn listen_on(
    pid: i32,
    sock: &OwnedFd,
    backlog: Option<u32>,
) -> Result<(), RestoreError> {
    if let Some(b) = backlog {
        let b = Backlog::new(b.min(libc::SOMAXCONN as u32) as i32).expect("within range");
        listen(sock, b).map_err(|errno| RestoreError::Injected {
            pid,
            call: format!("listen with backlog {}", i32::from(b)),
            errno,
        })?;
    }
    Ok(())
}

/// A TCP or UDP socket, bound and listening as in the image.
fn inet(pid: i32, n: &InetSocket) -> Result<OwnedFd, RestoreError> {
    let fail = |call: String| move |errno| RestoreError::Injected { pid, call, errno };
    let family = if n.ipv6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    let sock = crate::kernel::sockets::socket_with_protocol(family as i32, n.sock_type, n.protocol)
        .map_err(fail(format!(
            "socket({family:?}, {}, {})",
            n.sock_type, n.protocol
        )))?;
    set_options(pid, &sock, &n.options)?;
    let s = sock.as_fd();
    // A raw socket refuses any change of it (EINVAL), even to its value.
    if n.ipv6
        && getsockopt_int(s, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY).ok() != Some(n.v6only.into())
    {
        setsockopt_int(
            s,
            libc::IPPROTO_IPV6,
            libc::IPV6_V6ONLY,
            i32::from(n.v6only),
        )
        .map_err(fail("setting IPV6_V6ONLY".into()))?;
    }
    if n.nodelay {
        setsockopt_int(s, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)
            .map_err(fail("setting TCP_NODELAY".into()))?;
    }
    if n.broadcast {
        setsockopt_int(s, libc::SOL_SOCKET, libc::SO_BROADCAST, 1)
            .map_err(fail("setting SO_BROADCAST".into()))?;
    }
    // Bound and listening with SO_REUSEADDR and SO_REUSEPORT on, as CRIU
    // does, and given back the image's values once every socket of the
    // tree is bound (`create`): the sockets of the tree that share a port
    // (one of two SO_REUSEPORT listeners turned it off since, a listener
    // whose SO_REUSEADDR was on when the connections now in TIME_WAIT on
    // its port were accepted) bind only so, as they once did.
    if binds_port(n) {
        set_reuse(pid, &sock, true, true)?;
    }
    match n.local {
        Some(std::net::SocketAddr::V4(a)) if !n.ipv6 => {
            bind(sock.as_raw_fd(), &SockaddrIn::from(a))
        }
        Some(std::net::SocketAddr::V6(a)) if n.ipv6 => {
            bind(sock.as_raw_fd(), &SockaddrIn6::from(a))
        }
        Some(_) => Err(Errno::EAFNOSUPPORT),
        None => Ok(()),
    }
    .map_err(fail(format!(
        "bind to {}",
        n.local
            .map_or_else(|| "no address".into(), |a| a.to_string())
    )))?;
    listen_on(pid, &sock, n.listen_backlog)?;
    udp::connect_peer(pid, &sock, n)?;
    Ok(sock)
}

/// Whether `n` is a TCP or UDP socket bound to a port.
fn binds_port(n: &InetSocket) -> bool {
    matches!(n.sock_type, libc::SOCK_STREAM | libc::SOCK_DGRAM)
        && n.local.is_some_and(|a| a.port() != 0)
}

/// Sets SO_REUSEADDR and SO_REUSEPORT of `sock`.
fn set_reuse(pid: i32, sock: &OwnedFd, addr: bool, port: bool) -> Result<(), RestoreError> {
    for (opt, on, name) in [
        (libc::SO_REUSEADDR, addr, "SO_REUSEADDR"),
        (libc::SO_REUSEPORT, port, "SO_REUSEPORT"),
    ] {
        setsockopt_int(sock.as_fd(), libc::SOL_SOCKET, opt, i32::from(on)).map_err(|errno| {
            RestoreError::Injected {
                pid,
                call: format!("setting {name} to {}", i32::from(on)),
                errno,
            }
        })?;
    }
    Ok(())
}

/// Sets the options every kind of socket has (the one setting of them, for
/// unix, UDP, raw and TCP sockets alike): the reuse flags, then those that
/// differ from a fresh socket's: the buffer sizes (setting them pins them,
/// as a user's setsockopt does), the int-valued ones in their table's
/// order, linger, timeouts and the bound device. migrate-agent sets them
/// with its own capabilities (SO_MARK, SO_PRIORITY above 6 and
/// SO_BINDTODEVICE need CAP_NET_ADMIN or CAP_NET_RAW), so a restored
/// process without them gets its socket back as it had it.
pub(super) fn set_options(pid: i32, sock: &OwnedFd, o: &SocketOptions) -> Result<(), RestoreError> {
    let s = sock.as_fd();
    let fail = |call: &str| {
        let call = call.to_string();
        move |errno| RestoreError::Injected { pid, call, errno }
    };
    setsockopt_int(
        s,
        libc::SOL_SOCKET,
        libc::SO_REUSEADDR,
        i32::from(o.reuse_addr),
    )
    .map_err(fail("setting SO_REUSEADDR"))?;
    setsockopt_int(
        s,
        libc::SOL_SOCKET,
        libc::SO_REUSEPORT,
        i32::from(o.reuse_port),
    )
    .map_err(fail("setting SO_REUSEPORT"))?;
    for (get, force, size) in [
        (libc::SO_SNDBUF, libc::SO_SNDBUFFORCE, o.sndbuf),
        (libc::SO_RCVBUF, libc::SO_RCVBUFFORCE, o.rcvbuf),
    ] {
        if getsockopt_int(s, libc::SOL_SOCKET, get).map_err(fail("reading a buffer size"))?
            != size as i32
        {
            // The kernel doubles what it is given.
            setsockopt_int(s, libc::SOL_SOCKET, force, (size / 2) as i32)
                .map_err(fail(&format!("setting a buffer size of {size}")))?;
        }
    }
    for i in &o.int_options {
        if getsockopt_int(s, i.level, i.name).ok() != Some(i.value) {
            setsockopt_int(s, i.level, i.name, i.value).map_err(fail(&format!(
                "setting {} to {}",
                sockopts::shown(i.level, i.name),
                i.value
            )))?;
        }
    }
    if sockopts::linger(s).ok() != Some(o.linger) {
        sockopts::set_linger(s, o.linger).map_err(fail("setting SO_LINGER"))?;
    }
    for (opt, us, name) in [
        (libc::SO_RCVTIMEO, o.rcv_timeout_us, "SO_RCVTIMEO"),
        (libc::SO_SNDTIMEO, o.snd_timeout_us, "SO_SNDTIMEO"),
    ] {
        if sockopts::timeout_us(s, opt).ok() != Some(us) {
            sockopts::set_timeout_us(s, opt, us).map_err(fail(&format!("setting {name}")))?;
        }
    }
    if let Some(filter) = &o.icmp6_filter {
        sockopts::set_icmp6_filter(s, filter).map_err(fail("setting ICMPV6_FILTER"))?;
    }
    if let Some(dev) = &o.bound_device {
        sockopts::bind_to_device(s, dev).map_err(fail(&format!(
            "binding a socket to interface {dev} (SO_BINDTODEVICE)"
        )))?;
    }
    Ok(())
}

/// Sets the status flags (O_NONBLOCK ...) of the description of `sock`.
pub(super) fn set_flags(pid: i32, sock: &OwnedFd, flags: i32) -> Result<(), RestoreError> {
    let status = nix::fcntl::OFlag::from_bits_truncate(flags);
    nix::fcntl::fcntl(sock, nix::fcntl::FcntlArg::F_SETFL(status))
        .map(drop)
        .map_err(|errno| RestoreError::Injected {
            pid,
            call: format!("F_SETFL {flags:#o} on a socket"),
            errno,
        })
}
