//! Buffered reading and batched writing for one connection, over any byte stream.
//!
//! An idle connection holds no buffer: most of a broker's connections are idle most of the
//! time, and two 16 KiB buffers each cost 20 times what the rest of the connection does.
//! A read into an empty read buffer goes to a per-thread scratch buffer first and keeps only
//! the bytes that came; a buffer left empty is released before the connection waits again
//! (see [`Io::release_empty`]).

use std::cell::RefCell;
use std::future::poll_fn;
use std::pin::Pin;
use std::task::{ready, Poll};
use std::time::Duration;

use bytes::BytesMut;
use fulmar_proto::{
    decode, encode, encode_publish_view, DecodeError, Packet, ProtocolVersion, PublishView,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// Read headroom reserved before reading the rest of a partial packet, so a large packet
/// arrives in few reads.
const READ_CHUNK: usize = 16 * 1024;
/// The per-thread scratch buffer that reads into an empty read buffer land in: as large as
/// a busy publisher's pipelined packets in one syscall should be.
const SCRATCH: usize = 64 * 1024;
/// Capacity given to an empty write buffer when the first packet of a batch is queued, so a
/// batch of deliveries grows it rarely.
const WRITE_CHUNK: usize = 16 * 1024;

thread_local! {
    /// Shared by all connections a worker thread polls: a read into it is copied out within
    /// the same poll, so it never holds a connection's bytes across an `.await`.
    static READ_SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH].into_boxed_slice());
}

/// The two halves of a connection's stream and their buffers.
///
/// # Invariants
/// `wbuf` holds whole encoded packets only; writes drain it from the front, so a partial
/// write never reorders or splits packets for the peer. An empty buffer may have no
/// allocation at all.
pub struct Io<R, W> {
    pub(crate) reader: R,
    pub(crate) writer: W,
    pub(crate) rbuf: BytesMut,
    pub(crate) wbuf: BytesMut,
}

/// Why reading the CONNECT packet failed.
#[derive(Debug)]
pub enum ReadError {
    /// The peer closed or the socket failed.
    Closed,
    /// The bytes did not decode.
    Decode(DecodeError),
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Io<R, W> {
    /// Wraps the halves of a stream.
    pub fn new(reader: R, writer: W) -> Self {
        Io {
            reader,
            writer,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
        }
    }

    /// Releases the allocation of each empty buffer; called before the connection waits.
    /// Decoded packets share the read buffer's allocation (zero-copy payloads), so dropping
    /// our handle frees it as soon as they are gone.
    pub fn release_empty(&mut self) {
        if self.rbuf.is_empty() && self.rbuf.capacity() > 0 {
            self.rbuf = BytesMut::new();
        }
        if self.wbuf.is_empty() && self.wbuf.capacity() > 0 {
            self.wbuf = BytesMut::new();
        }
    }

    /// Reads until one whole packet is buffered and decodes it.
    pub async fn read_packet(
        &mut self,
        version: ProtocolVersion,
        max_packet_size: usize,
    ) -> Result<Packet, ReadError> {
        loop {
            match decode(&mut self.rbuf, version, max_packet_size) {
                Ok(Some(packet)) => return Ok(packet),
                Ok(None) => {}
                Err(e) => return Err(ReadError::Decode(e)),
            }
            match read_some(&mut self.reader, &mut self.rbuf).await {
                Ok(0) | Err(_) => return Err(ReadError::Closed),
                Ok(_) => {}
            }
        }
    }

    /// Appends a packet to the write buffer. An encoding failure (a packet the codec cannot
    /// represent, which the broker never builds from valid input) is logged and skipped.
    pub fn queue(&mut self, packet: &Packet, version: ProtocolVersion) {
        if let Err(e) = encode(packet, version, self.write_buffer()) {
            tracing::error!(packet = packet.kind_name(), error = %e, "cannot encode packet");
        }
    }

    /// Appends a PUBLISH to the write buffer.
    pub fn queue_publish(&mut self, publish: PublishView<'_>, version: ProtocolVersion) {
        if let Err(e) = encode_publish_view(publish, version, self.write_buffer()) {
            tracing::error!(error = %e, "cannot encode PUBLISH");
        }
    }

    /// The write buffer, with room for a batch when it has no allocation.
    fn write_buffer(&mut self) -> &mut BytesMut {
        if self.wbuf.capacity() == 0 {
            self.wbuf.reserve(WRITE_CHUNK);
        }
        &mut self.wbuf
    }

    /// Writes out whatever is buffered, giving up after `limit` (used when closing, so a
    /// peer that does not read cannot hold the task).
    pub async fn flush_within(&mut self, limit: Duration) {
        let write = async {
            while !self.wbuf.is_empty() {
                match self.writer.write_buf(&mut self.wbuf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            let _ = self.writer.flush().await;
        };
        let _ = tokio::time::timeout(limit, write).await;
    }

    /// Shuts the write side down (sends FIN), bounded by `limit`.
    pub async fn shutdown_within(&mut self, limit: Duration) {
        let _ = tokio::time::timeout(limit, self.writer.shutdown()).await;
    }
}

/// Reads once from `reader` into `rbuf`, like `read_buf`, but without keeping a read buffer
/// for a connection that has nothing buffered: such a read lands in the thread's scratch
/// buffer and only the bytes read are copied into `rbuf`. With a partial packet buffered
/// the read goes straight into `rbuf`. Cancel-safe: bytes are in `rbuf` once it returns.
pub(crate) async fn read_some<R: AsyncRead + Unpin>(
    reader: &mut R,
    rbuf: &mut BytesMut,
) -> std::io::Result<usize> {
    if !rbuf.is_empty() {
        if rbuf.capacity() - rbuf.len() < READ_CHUNK / 4 {
            rbuf.reserve(READ_CHUNK);
        }
        return reader.read_buf(rbuf).await;
    }
    poll_fn(|cx| {
        READ_SCRATCH.with_borrow_mut(|scratch| {
            let mut buf = ReadBuf::new(scratch);
            ready!(Pin::new(&mut *reader).poll_read(cx, &mut buf))?;
            let read = buf.filled();
            // A fresh allocation of exactly what came: whatever `rbuf` still pointed into
            // (the tail of a split-off allocation) is not kept alive by it.
            *rbuf = BytesMut::from(read);
            Poll::Ready(Ok(read.len()))
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_read_into_an_empty_buffer_keeps_only_the_bytes_read() {
        let (mut client, server) = tokio::io::duplex(1024);
        let (reader, writer) = tokio::io::split(server);
        let mut io = Io::new(reader, writer);
        assert_eq!(io.rbuf.capacity(), 0);
        client.write_all(&[0xC0, 0x00, 0xC0]).await.unwrap();
        let n = read_some(&mut io.reader, &mut io.rbuf).await.unwrap();
        assert_eq!(n, 3);
        assert_eq!(io.rbuf.capacity(), 3);
        let ping = io.read_packet(ProtocolVersion::V3_1_1, 1024).await.unwrap();
        assert_eq!(ping, Packet::PingReq);
        // The rest of a partial packet is read into the buffer itself.
        client.write_all(&[0x00]).await.unwrap();
        let ping = io.read_packet(ProtocolVersion::V3_1_1, 1024).await.unwrap();
        assert_eq!(ping, Packet::PingReq);
        io.release_empty();
        assert_eq!(io.rbuf.capacity(), 0);
    }

    #[tokio::test]
    async fn the_write_buffer_is_released_once_written() {
        let (_client, server) = tokio::io::duplex(1024);
        let (reader, writer) = tokio::io::split(server);
        let mut io = Io::new(reader, writer);
        io.queue(&Packet::PingResp, ProtocolVersion::V3_1_1);
        io.release_empty();
        assert_eq!(&io.wbuf[..], &[0xD0, 0x00], "unwritten bytes stay");
        io.flush_within(Duration::from_secs(5)).await;
        io.release_empty();
        assert_eq!(io.wbuf.capacity(), 0);
    }
}
