//! Page streams: one-way streams of page frames (see [`super::frame`]).
//! The source opens several per session, spread over the bulk connections,
//! because one QUIC connection is served by one CPU.

use super::frame::{
    read_or_eof, PageHeader, PageHeaderError, FLAG_ALL_ZERO, MAX_FRAME_PAGES, PAGE_HEADER_LEN,
    PAGE_SIZE,
};
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};

/// Write buffer of a page stream: headers and small frames are gathered
/// into writes of this size; a 1 MiB frame goes through nearly directly.
const SEND_BUFFER: usize = 256 << 10;

/// Why sending pages failed.
#[derive(Debug, thiserror::Error)]
pub enum PageSendError {
    /// The data is not a whole number of pages, or vaddr is not aligned.
    #[error("cannot send pages of pid {pid} at {vaddr:#x} to {peer}: {len} bytes is not a whole number of 4 KiB pages at a page-aligned address")]
    Misaligned {
        /// The peer's address.
        peer: SocketAddr,
        /// The process.
        pid: i32,
        /// The address.
        vaddr: u64,
        /// The data length.
        len: usize,
    },
    /// The stream failed (connection lost, peer stopped reading).
    #[error("could not send pages to {peer}: {source}")]
    Io {
        /// The peer's address.
        peer: SocketAddr,
        /// The stream's error.
        #[source]
        source: std::io::Error,
    },
}

/// Why receiving pages failed.
#[derive(Debug, thiserror::Error)]
pub enum PageRecvError {
    /// The peer sent a header this side refuses (nothing was allocated).
    #[error("peer {peer} sent a bad page frame: {source}")]
    Header {
        /// The peer's address.
        peer: SocketAddr,
        /// What is wrong with it.
        #[source]
        source: PageHeaderError,
    },
    /// The stream failed, or ended inside a frame.
    #[error("could not read pages from {peer}: {source}")]
    Io {
        /// The peer's address.
        peer: SocketAddr,
        /// The stream's error (UnexpectedEof when cut short).
        #[source]
        source: std::io::Error,
    },
}

/// The sending end of a page stream. Frames are buffered; call
/// [`PageSender::finish`] to flush and end the stream.
pub struct PageSender<W = quinn::SendStream> {
    stream: BufWriter<W>,
    peer: SocketAddr,
}

impl<W: AsyncWrite + Unpin> PageSender<W> {
    /// Wraps any byte stream (a QUIC unidirectional stream in production).
    pub fn new(stream: W, peer: SocketAddr) -> Self {
        PageSender {
            stream: BufWriter::with_capacity(SEND_BUFFER, stream),
            peer,
        }
    }

    /// Sends `data` (whole pages) as the content of process `pid` at
    /// `vaddr` for pre-copy `round`, cut into frames of at most
    /// [`MAX_FRAME_PAGES`] pages.
    pub async fn send_pages(
        &mut self,
        pid: i32,
        round: u32,
        vaddr: u64,
        data: &[u8],
    ) -> Result<(), PageSendError> {
        if data.len() % PAGE_SIZE != 0 || vaddr % PAGE_SIZE as u64 != 0 {
            return Err(PageSendError::Misaligned {
                peer: self.peer,
                pid,
                vaddr,
                len: data.len(),
            });
        }
        let mut addr = vaddr;
        for chunk in data.chunks(MAX_FRAME_PAGES as usize * PAGE_SIZE) {
            let header = PageHeader {
                round,
                pid,
                flags: 0,
                vaddr: addr,
                npages: (chunk.len() / PAGE_SIZE) as u32,
            };
            self.write(&header.encode()).await?;
            self.write(chunk).await?;
            addr += chunk.len() as u64;
        }
        Ok(())
    }

    /// Says that `npages` pages of `pid` from `vaddr` are all zero: headers
    /// only, no payload.
    pub async fn send_zero(
        &mut self,
        pid: i32,
        round: u32,
        vaddr: u64,
        npages: u64,
    ) -> Result<(), PageSendError> {
        if vaddr % PAGE_SIZE as u64 != 0 {
            return Err(PageSendError::Misaligned {
                peer: self.peer,
                pid,
                vaddr,
                len: 0,
            });
        }
        let mut left = npages;
        let mut addr = vaddr;
        while left > 0 {
            let n = left.min(u64::from(MAX_FRAME_PAGES));
            let header = PageHeader {
                round,
                pid,
                flags: FLAG_ALL_ZERO,
                vaddr: addr,
                npages: n as u32,
            };
            self.write(&header.encode()).await?;
            addr += n * PAGE_SIZE as u64;
            left -= n;
        }
        Ok(())
    }

    /// Sends what is buffered now (an answer someone waits for) without
    /// ending the stream.
    pub async fn flush(&mut self) -> Result<(), PageSendError> {
        let peer = self.peer;
        self.stream
            .flush()
            .await
            .map_err(|source| PageSendError::Io { peer, source })
    }

    /// Flushes what is buffered and ends the stream; the receiver's
    /// [`PageReceiver::next`] then returns `None`.
    pub async fn finish(mut self) -> Result<(), PageSendError> {
        let peer = self.peer;
        let io = |source| PageSendError::Io { peer, source };
        self.stream.flush().await.map_err(io)?;
        self.stream.shutdown().await.map_err(io)
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), PageSendError> {
        let peer = self.peer;
        self.stream
            .write_all(bytes)
            .await
            .map_err(|source| PageSendError::Io { peer, source })
    }
}

impl PageSender<quinn::SendStream> {
    /// Sends this stream's frames ahead of other streams of its connection
    /// (higher first; 0 is the default): post-copy answers to faults must
    /// not wait behind the background push.
    pub fn set_priority(&self, priority: i32) {
        // A stream already closed has nothing left to order.
        let _ = self.stream.get_ref().set_priority(priority);
    }
}

/// One received frame. `data` borrows the receiver's reusable buffer and is
/// empty for zero pages.
#[derive(Debug)]
pub struct PageFrame<'a> {
    /// The checked header.
    pub header: PageHeader,
    /// npages * 4096 bytes, or nothing when `header.is_zero()`.
    pub data: &'a [u8],
}

/// The receiving end of a page stream.
pub struct PageReceiver<R = quinn::RecvStream> {
    stream: R,
    peer: SocketAddr,
    buf: Vec<u8>,
}

impl<R: AsyncRead + Unpin> PageReceiver<R> {
    /// Wraps any byte stream (a QUIC unidirectional stream in production).
    pub fn new(stream: R, peer: SocketAddr) -> Self {
        PageReceiver {
            stream,
            peer,
            buf: Vec::new(),
        }
    }

    /// The next frame, or `None` when the sender finished the stream. The
    /// header is checked (count bound, alignment) before its payload is
    /// read; the buffer never grows past [`MAX_FRAME_PAGES`] pages.
    pub async fn next(&mut self) -> Result<Option<PageFrame<'_>>, PageRecvError> {
        let peer = self.peer;
        let io = |source| PageRecvError::Io { peer, source };
        let mut raw = [0u8; PAGE_HEADER_LEN];
        if !read_or_eof(&mut self.stream, &mut raw).await.map_err(io)? {
            return Ok(None);
        }
        let header =
            PageHeader::decode(&raw).map_err(|source| PageRecvError::Header { peer, source })?;
        let len = header.payload_len();
        // Grows only (to MAX_FRAME_PAGES pages at most), so frames after
        // the largest one are read without zero-filling the buffer again.
        if self.buf.len() < len {
            self.buf.resize(len, 0);
        }
        let data = &mut self.buf[..len];
        self.stream.read_exact(data).await.map_err(io)?;
        Ok(Some(PageFrame { header, data }))
    }
}
