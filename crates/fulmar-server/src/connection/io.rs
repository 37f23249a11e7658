//! Buffered reading and batched writing for one connection, over any byte stream.

use std::time::Duration;

use bytes::BytesMut;
use fulmar_proto::{decode, encode, encode_publish, DecodeError, Packet, ProtocolVersion, Publish};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Read headroom kept free before each read, so small reads never trigger tiny allocations.
const READ_CHUNK: usize = 16 * 1024;

/// The two halves of a connection's stream and their buffers.
///
/// # Invariants
/// `wbuf` holds whole encoded packets only; writes drain it from the front, so a partial
/// write never reorders or splits packets for the peer.
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
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            wbuf: BytesMut::with_capacity(READ_CHUNK),
        }
    }

    /// Makes room for the next read.
    pub fn reserve_read(&mut self) {
        if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 4 {
            self.rbuf.reserve(READ_CHUNK);
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
            self.reserve_read();
            match self.reader.read_buf(&mut self.rbuf).await {
                Ok(0) | Err(_) => return Err(ReadError::Closed),
                Ok(_) => {}
            }
        }
    }

    /// Appends a packet to the write buffer. An encoding failure (a packet the codec cannot
    /// represent, which the broker never builds from valid input) is logged and skipped.
    pub fn queue(&mut self, packet: &Packet, version: ProtocolVersion) {
        if let Err(e) = encode(packet, version, &mut self.wbuf) {
            tracing::error!(packet = packet.kind_name(), error = %e, "cannot encode packet");
        }
    }

    /// Appends a PUBLISH to the write buffer.
    pub fn queue_publish(&mut self, publish: &Publish, version: ProtocolVersion) {
        if let Err(e) = encode_publish(publish, version, &mut self.wbuf) {
            tracing::error!(error = %e, "cannot encode PUBLISH");
        }
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
