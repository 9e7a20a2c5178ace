//! Wire formats: control messages (a u32 little-endian length, then that
//! many postcard bytes) and page frames (a fixed 32-byte little-endian
//! header, then the raw pages). Every length read from a peer is checked
//! against a bound before anything is allocated for it.

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest control message accepted or sent, in bytes. A process state with
/// many fds, mappings and threads can be large, but 64 MiB is far beyond
/// any real one; a peer announcing more is refused before allocation.
pub const MAX_CONTROL_LEN: u32 = 64 << 20;

/// Why a control message could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// postcard could not encode the value.
    #[error("could not encode a control message for {peer}: {source}")]
    Encode {
        /// The peer (its address, or the local CLI).
        peer: String,
        /// postcard's reason.
        #[source]
        source: postcard::Error,
    },
    /// The encoded message exceeds [`MAX_CONTROL_LEN`].
    #[error("a control message for {peer} is {len} bytes, over the {max}-byte limit")]
    TooLarge {
        /// The peer (its address, or the local CLI).
        peer: String,
        /// The encoded length.
        len: usize,
        /// [`MAX_CONTROL_LEN`].
        max: u32,
    },
    /// The stream failed (connection lost, peer stopped reading).
    #[error("could not send a control message to {peer}: {source}")]
    Io {
        /// The peer (its address, or the local CLI).
        peer: String,
        /// The stream's error.
        #[source]
        source: std::io::Error,
    },
}

/// Why a control message could not be received.
#[derive(Debug, thiserror::Error)]
pub enum RecvError {
    /// The peer finished the stream between two messages.
    #[error("peer {peer} closed the control stream")]
    Closed {
        /// The peer (its address, or the local CLI).
        peer: String,
    },
    /// The peer announced a message over [`MAX_CONTROL_LEN`].
    #[error(
        "peer {peer} announced a {len}-byte control message, over the {max}-byte limit; refused"
    )]
    TooLarge {
        /// The peer (its address, or the local CLI).
        peer: String,
        /// The announced length.
        len: u32,
        /// [`MAX_CONTROL_LEN`].
        max: u32,
    },
    /// The stream failed or ended inside a message.
    #[error("could not read a control message from {peer}: {source}")]
    Io {
        /// The peer (its address, or the local CLI).
        peer: String,
        /// The stream's error (UnexpectedEof when cut short).
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not a valid postcard encoding of the expected type.
    #[error("peer {peer} sent a malformed control message ({len} bytes): {source}")]
    Malformed {
        /// The peer (its address, or the local CLI).
        peer: String,
        /// The message length.
        len: u32,
        /// postcard's reason.
        #[source]
        source: postcard::Error,
    },
    /// A valid message followed by bytes that belong to no message: a
    /// peer that pads its messages is refused, not half understood.
    #[error("peer {peer} sent a {len}-byte control message with {extra} trailing bytes after its end; refused")]
    Trailing {
        /// The peer (its address, or the local CLI).
        peer: String,
        /// The message length.
        len: u32,
        /// Bytes left after the decoded message.
        extra: usize,
    },
}

/// Bytes of a control message allocated before any of them arrived: a
/// body grows as it arrives beyond this, so a peer announcing a large
/// message it never sends costs nothing.
const INITIAL_BODY: usize = 64 << 10;

/// Writes one control message: u32 LE length, then postcard bytes.
pub async fn write_message<W, T>(
    w: &mut W,
    peer: impl std::fmt::Display,
    value: &T,
) -> Result<(), SendError>
where
    W: AsyncWrite + Unpin,
    T: Serialize + ?Sized,
{
    let mut buf = vec![0u8; 4];
    buf = postcard::to_extend(value, buf).map_err(|source| SendError::Encode {
        peer: peer.to_string(),
        source,
    })?;
    let len = buf.len() - 4;
    if len > MAX_CONTROL_LEN as usize {
        return Err(SendError::TooLarge {
            peer: peer.to_string(),
            len,
            max: MAX_CONTROL_LEN,
        });
    }
    buf[..4].copy_from_slice(&(len as u32).to_le_bytes());
    tracing::trace!(len, "sending a control message");
    let io = |source| SendError::Io {
        peer: peer.to_string(),
        source,
    };
    w.write_all(&buf).await.map_err(io)?;
    w.flush().await.map_err(io)
}

/// Reads one control message written by [`write_message`]. The length is
/// checked against [`MAX_CONTROL_LEN`] before the body is allocated.
pub async fn read_message<R, T>(r: &mut R, peer: impl std::fmt::Display) -> Result<T, RecvError>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    read_bounded(r, peer, MAX_CONTROL_LEN).await
}

/// Reads one control message of at most `max` bytes (a handshake's
/// messages are small: a peer cannot make each of them cost 64 MiB). The
/// body is allocated as it arrives, and a message must end exactly where
/// its length says.
pub async fn read_bounded<R, T>(
    r: &mut R,
    peer: impl std::fmt::Display,
    max: u32,
) -> Result<T, RecvError>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    let mut len = [0u8; 4];
    if !read_or_eof(r, &mut len)
        .await
        .map_err(|source| RecvError::Io {
            peer: peer.to_string(),
            source,
        })?
    {
        return Err(RecvError::Closed {
            peer: peer.to_string(),
        });
    }
    let len = u32::from_le_bytes(len);
    if len > max {
        return Err(RecvError::TooLarge {
            peer: peer.to_string(),
            len,
            max,
        });
    }
    let mut body = Vec::with_capacity((len as usize).min(INITIAL_BODY));
    let got = r
        .take(u64::from(len))
        .read_to_end(&mut body)
        .await
        .map_err(|source| RecvError::Io {
            peer: peer.to_string(),
            source,
        })?;
    if got != len as usize {
        return Err(RecvError::Io {
            peer: peer.to_string(),
            source: std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("the stream ended {got} bytes into a {len}-byte message"),
            ),
        });
    }
    decode_exact(&body, peer)
}

/// Decodes a whole control message body: postcard, with no byte left over.
fn decode_exact<T: DeserializeOwned>(
    body: &[u8],
    peer: impl std::fmt::Display,
) -> Result<T, RecvError> {
    let len = body.len() as u32;
    let (value, rest) = postcard::take_from_bytes(body).map_err(|source| RecvError::Malformed {
        peer: peer.to_string(),
        len,
        source,
    })?;
    if !rest.is_empty() {
        return Err(RecvError::Trailing {
            peer: peer.to_string(),
            len,
            extra: rest.len(),
        });
    }
    Ok(value)
}

/// Fills `buf` completely, or returns Ok(false) when the stream ended
/// before its first byte (a clean end between two frames). Ending inside
/// `buf` is UnexpectedEof.
pub(crate) async fn read_or_eof<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut [u8],
) -> std::io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = r.read(&mut buf[filled..]).await?;
        if n == 0 {
            if filled == 0 {
                return Ok(false);
            }
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "the stream ended {filled} bytes into a {}-byte header",
                    buf.len()
                ),
            ));
        }
        filled += n;
    }
    Ok(true)
}

/// Size of a page: frames carry whole 4 KiB pages.
pub const PAGE_SIZE: usize = 4096;
/// First field of every page frame header: "FPG1".
pub const PAGE_MAGIC: u32 = u32::from_le_bytes(*b"FPG1");
/// Length of a page frame header in bytes.
pub const PAGE_HEADER_LEN: usize = 32;
/// Most pages in one frame (1 MiB of data): bounds the receiver's buffer.
pub const MAX_FRAME_PAGES: u32 = 256;
/// Header flag: the pages are all zero and no payload follows.
pub const FLAG_ALL_ZERO: u32 = 1;

/// The fixed header in front of every page frame. On the wire (all little
/// endian): magic u32, round u32, pid i32, flags u32, vaddr u64, npages
/// u32, zero padding u32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageHeader {
    /// Pre-copy round the pages belong to (later rounds supersede earlier).
    pub round: u32,
    /// The process whose memory this is.
    pub pid: i32,
    /// [`FLAG_ALL_ZERO`] or 0.
    pub flags: u32,
    /// Address of the first page in the process (page-aligned).
    pub vaddr: u64,
    /// Number of consecutive pages, 1..=[`MAX_FRAME_PAGES`].
    pub npages: u32,
}

/// Why a page frame header was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PageHeaderError {
    /// The header does not start with [`PAGE_MAGIC`].
    #[error("bad page frame magic {found:#010x} (expected {PAGE_MAGIC:#010x})")]
    Magic {
        /// The first four bytes.
        found: u32,
    },
    /// npages is 0 or over [`MAX_FRAME_PAGES`].
    #[error(
        "page frame for pid {pid} at {vaddr:#x} has {npages} pages; 1 to {MAX_FRAME_PAGES} allowed"
    )]
    PageCount {
        /// The process.
        pid: i32,
        /// The address.
        vaddr: u64,
        /// The announced count.
        npages: u32,
    },
    /// vaddr is not a multiple of [`PAGE_SIZE`], or the range wraps.
    #[error("page frame for pid {pid} has address {vaddr:#x}, which is not page-aligned or whose {npages} pages overflow")]
    Address {
        /// The process.
        pid: i32,
        /// The address.
        vaddr: u64,
        /// The count.
        npages: u32,
    },
    /// Flags this version does not know, or non-zero padding.
    #[error(
        "page frame for pid {pid} at {vaddr:#x} has unknown flags {flags:#x} or padding {pad:#x}"
    )]
    Flags {
        /// The process.
        pid: i32,
        /// The address.
        vaddr: u64,
        /// The flags.
        flags: u32,
        /// The padding word.
        pad: u32,
    },
}

impl PageHeader {
    /// The header's wire bytes.
    pub fn encode(&self) -> [u8; PAGE_HEADER_LEN] {
        let mut b = [0u8; PAGE_HEADER_LEN];
        b[0..4].copy_from_slice(&PAGE_MAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&self.round.to_le_bytes());
        b[8..12].copy_from_slice(&self.pid.to_le_bytes());
        b[12..16].copy_from_slice(&self.flags.to_le_bytes());
        b[16..24].copy_from_slice(&self.vaddr.to_le_bytes());
        b[24..28].copy_from_slice(&self.npages.to_le_bytes());
        b
    }

    /// Parses and checks a header: magic, page count bound, alignment,
    /// known flags. Nothing is allocated from an unchecked field.
    pub fn decode(b: &[u8; PAGE_HEADER_LEN]) -> Result<Self, PageHeaderError> {
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let magic = u32_at(0);
        if magic != PAGE_MAGIC {
            return Err(PageHeaderError::Magic { found: magic });
        }
        let mut vaddr = [0u8; 8];
        vaddr.copy_from_slice(&b[16..24]);
        let h = PageHeader {
            round: u32_at(4),
            pid: u32_at(8) as i32,
            flags: u32_at(12),
            vaddr: u64::from_le_bytes(vaddr),
            npages: u32_at(24),
        };
        let pad = u32_at(28);
        if h.flags & !FLAG_ALL_ZERO != 0 || pad != 0 {
            return Err(PageHeaderError::Flags {
                pid: h.pid,
                vaddr: h.vaddr,
                flags: h.flags,
                pad,
            });
        }
        if h.npages == 0 || h.npages > MAX_FRAME_PAGES {
            return Err(PageHeaderError::PageCount {
                pid: h.pid,
                vaddr: h.vaddr,
                npages: h.npages,
            });
        }
        let aligned = h.vaddr % PAGE_SIZE as u64 == 0;
        let fits = h
            .vaddr
            .checked_add(u64::from(h.npages) * PAGE_SIZE as u64)
            .is_some();
        if !aligned || !fits {
            return Err(PageHeaderError::Address {
                pid: h.pid,
                vaddr: h.vaddr,
                npages: h.npages,
            });
        }
        Ok(h)
    }

    /// Whether the pages are all zero (no payload follows).
    pub fn is_zero(&self) -> bool {
        self.flags & FLAG_ALL_ZERO != 0
    }

    /// Bytes of payload after the header: 0 for zero pages, else
    /// npages * [`PAGE_SIZE`].
    pub fn payload_len(&self) -> usize {
        if self.is_zero() {
            0
        } else {
            self.npages as usize * PAGE_SIZE
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::transport::frame::*;

    fn header() -> PageHeader {
        PageHeader {
            round: 3,
            pid: 4242,
            flags: 0,
            vaddr: 0x7f00_0000_1000,
            npages: 16,
        }
    }

    #[test]
    fn header_round_trips_little_endian() {
        let h = header();
        let b = h.encode();
        assert_eq!(&b[0..4], b"FPG1");
        assert_eq!(&b[4..8], &3u32.to_le_bytes());
        assert_eq!(&b[16..24], &0x7f00_0000_1000u64.to_le_bytes());
        assert_eq!(&b[28..32], &[0; 4]);
        assert_eq!(PageHeader::decode(&b), Ok(h));
        assert_eq!(h.payload_len(), 16 * PAGE_SIZE);
        let z = PageHeader {
            flags: FLAG_ALL_ZERO,
            ..h
        };
        assert_eq!(PageHeader::decode(&z.encode()), Ok(z));
        assert_eq!(z.payload_len(), 0);
    }

    #[test]
    fn header_refuses_bad_fields() {
        let mut b = header().encode();
        b[0] = b'X';
        assert!(matches!(
            PageHeader::decode(&b),
            Err(PageHeaderError::Magic { .. })
        ));
        for npages in [0, MAX_FRAME_PAGES + 1, u32::MAX] {
            let b = PageHeader { npages, ..header() }.encode();
            assert!(matches!(
                PageHeader::decode(&b),
                Err(PageHeaderError::PageCount { .. })
            ));
        }
        for vaddr in [0x1001, !0xfff] {
            let b = PageHeader { vaddr, ..header() }.encode();
            assert!(matches!(
                PageHeader::decode(&b),
                Err(PageHeaderError::Address { .. })
            ));
        }
        let b = PageHeader {
            flags: 2,
            ..header()
        }
        .encode();
        assert!(matches!(
            PageHeader::decode(&b),
            Err(PageHeaderError::Flags { .. })
        ));
        let mut b = header().encode();
        b[31] = 1;
        assert!(matches!(
            PageHeader::decode(&b),
            Err(PageHeaderError::Flags { .. })
        ));
    }
}
