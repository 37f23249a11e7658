//! Buffered reading and batched writing for one connection, over any byte stream.
//!
//! An idle connection holds no buffer: most of a broker's connections are idle most of the
//! time, and two 16 KiB buffers each cost 20 times what the rest of the connection does.
//! A read into an empty read buffer goes to a per-thread slab first and keeps only the bytes
//! that came; a buffer left empty is released before the connection waits again (see
//! [`Io::release_empty`]).

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use fulmar_proto::{
    decode, encode, encode_publish_view, encode_publish_view_header, DecodeError, Packet,
    ProtocolVersion, PublishView,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::write_queue::WriteQueue;

/// Read headroom reserved before reading the rest of a partial packet, so a large packet
/// arrives in few reads.
const READ_CHUNK: usize = 16 * 1024;
/// The per-thread slab that reads into an empty read buffer land in: as large as a busy
/// publisher's pipelined packets in one syscall should be. 64 KiB reads made 4 KiB pairs
/// QoS 1 cost one read and one write syscall per ~14 messages; 256 KiB (reads of at least
/// 64 KiB) cut that by a third and the broker's CPU per message by ~20 %.
const SLAB: usize = 256 * 1024;
/// A slab with less room left than this is replaced before the next read (a shorter read
/// only means one more syscall).
const SLAB_MIN_ROOM: usize = 64 * 1024;
/// Reads at least this large keep their bytes where they landed in the slab (the read
/// buffer and the payloads decoded from it share the slab's allocation); smaller ones are
/// copied out, so a lone small message never pins a whole slab. What may wait long is
/// copied out of it (`Message::detached`): retained messages, and what is queued for or kept
/// by an offline session. A message queued for a connected session keeps its slab alive until
/// it is sent or acknowledged (bounded by the queue limits, which count payload bytes, times
/// at most the slab's size over the read's; see docs/limits.md).
const ZERO_COPY_READ: usize = 4 * 1024;
/// The longest partial packet that a read carries into the slab (copied in front of the
/// bytes read, so that the read has the slab's room: reads into the partial packet's own
/// buffer were capped at its spare capacity, ~60 KiB, which in 4 KiB fan-in QoS 1 made one
/// read and one PUBACK write per 15 messages). A longer one, the start of a large packet, is
/// read into its own buffer.
const MAX_CARRY: usize = 16 * 1024;
/// Size hint for a packet other than PUBLISH (acks are 2-4 bytes, CONNACK and SUBACK small).
const SMALL_PACKET: usize = 64;
/// Payloads at least this large are written from where they are, not copied into the write
/// buffer, when the writer takes vectored writes (plain TCP, and TLS, where rustls encrypts
/// from the slices; not WebSocket). Smaller ones cost less to copy than a slice of their own.
/// A shared payload keeps the read slab it is a slice of alive until it is written, so this
/// also bounds how many slabs a write buffer can hold: `max_write_buffer_bytes` / 2 KiB
/// (docs/limits.md).
const SHARED_PAYLOAD: usize = 2 * 1024;

thread_local! {
    /// Spare capacity not yet handed out, shared by all connections a worker thread polls;
    /// always empty between reads. Every read's bytes leave it within the same poll (split
    /// off or copied), so it never holds a connection's bytes across an `.await`.
    static READ_SLAB: RefCell<BytesMut> = RefCell::new(BytesMut::new());
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
    pub(crate) wbuf: WriteQueue,
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
            wbuf: WriteQueue::default(),
        }
    }

    /// Releases the allocation of each empty buffer; called before the connection waits.
    /// Decoded packets share the read buffer's allocation (zero-copy payloads), so dropping
    /// our handle frees it as soon as they are gone.
    pub fn release_empty(&mut self) {
        if self.rbuf.is_empty() && self.rbuf.capacity() > 0 {
            self.rbuf = BytesMut::new();
        }
        self.wbuf.release_empty();
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
        let hint = match packet {
            Packet::Publish(publish) => publish_size_hint(publish.view()),
            _ => SMALL_PACKET,
        };
        if let Err(e) = self.wbuf.append(hint, |buf| encode(packet, version, buf)) {
            tracing::error!(packet = packet.kind_name(), error = %e, "cannot encode packet");
        }
    }

    /// Appends a PUBLISH to the write buffer.
    ///
    /// `#[inline]`: the encoding step of every delivery (`Session::deliver_with`'s `emit`).
    /// Without it the function is inlinable only when the release build's codegen-unit
    /// split happens to put it beside the delivery loop, which unrelated edits changed (and
    /// the calls here and into `WriteQueue::append` then cost ~60 instructions per delivery
    /// in `fulmar bench fanin -q 1`).
    #[inline]
    pub fn queue_publish(&mut self, publish: PublishView<'_>, version: ProtocolVersion) {
        let hint = publish_size_hint(publish);
        let encoded = if publish.payload.len() >= SHARED_PAYLOAD && self.writer.is_write_vectored()
        {
            let header =
                |buf: &mut BytesMut| encode_publish_view_header(publish, version, buf).map(drop);
            let header_hint = hint - publish.payload.len();
            self.wbuf
                .append_shared(header_hint, header, publish.payload)
        } else {
            self.wbuf
                .append(hint, |buf| encode_publish_view(publish, version, buf))
        };
        if let Err(e) = encoded {
            tracing::error!(error = %e, "cannot encode PUBLISH");
        }
    }

    /// Writes out whatever is buffered, giving up after `limit` (used when closing, so a
    /// peer that does not read cannot hold the task).
    pub async fn flush_within(&mut self, limit: Duration) {
        let write = async {
            while !self.wbuf.is_empty() {
                match self.wbuf.write_some(&mut self.writer).await {
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

/// About the encoded size of a PUBLISH, without measuring its properties: fixed header,
/// topic, packet id and payload, plus room for small properties.
#[inline]
fn publish_size_hint(publish: PublishView<'_>) -> usize {
    let properties = if publish.properties.is_empty() { 0 } else { 64 };
    8 + publish.topic.as_str().len() + publish.payload.len() + properties
}

/// Reads once from `reader` into `rbuf`, like `read_buf`, but without keeping a read buffer
/// for a connection that has nothing buffered: such a read lands in the thread's slab, and
/// `rbuf` becomes exactly the bytes read (split off the slab when the read was large, a
/// copy when it was small). A partial packet buffered (up to [`MAX_CARRY`]) is carried into
/// the slab in front of the bytes read; a longer one is read on in its own buffer.
/// Cancel-safe: bytes are in `rbuf` once it returns.
///
/// One `poll_fn` (16 bytes) rather than an async fn around it: the run loop of every idle
/// connection holds this future.
pub(crate) fn read_some<'a, R: AsyncRead + Unpin>(
    reader: &'a mut R,
    rbuf: &'a mut BytesMut,
) -> impl Future<Output = std::io::Result<usize>> + 'a {
    poll_fn(move |cx| {
        if rbuf.len() > MAX_CARRY {
            return poll_read_into(reader, rbuf, cx);
        }
        READ_SLAB.with_borrow_mut(|slab| {
            debug_assert!(slab.is_empty());
            if slab.capacity() < SLAB_MIN_ROOM {
                // The old slab lives on only in the reads split off it.
                *slab = BytesMut::with_capacity(SLAB);
            }
            // The read lands after room for the partial packet buffered, which is copied in
            // front of it only once bytes came (a pending read costs no copy).
            let carry = rbuf.len();
            let mut buf = ReadBuf::uninit(&mut slab.spare_capacity_mut()[carry..]);
            ready!(Pin::new(&mut *reader).poll_read(cx, &mut buf))?;
            let read = buf.filled().len();
            if read == 0 {
                return Poll::Ready(Ok(0));
            }
            for (slot, byte) in slab.spare_capacity_mut().iter_mut().zip(rbuf.iter()) {
                slot.write(*byte);
            }
            let total = carry + read;
            // SAFETY: the first `carry` bytes of the spare capacity were just written from
            // `rbuf`, and `ReadBuf` hands out as filled only bytes that were written: the
            // `read` bytes after them.
            unsafe { slab.set_len(total) };
            // Either way `rbuf` no longer points into whatever it held before (the tail of
            // an earlier allocation), so that is not kept alive by it.
            *rbuf = if total >= ZERO_COPY_READ {
                slab.split_to(total)
            } else {
                let copy = BytesMut::from(&slab[..]);
                slab.clear();
                copy
            };
            Poll::Ready(Ok(read))
        })
    })
}

/// `read_buf` as a poll function: reads into the spare capacity of `rbuf`, which first gets
/// [`READ_CHUNK`] more when little is left.
fn poll_read_into<R: AsyncRead + Unpin>(
    reader: &mut R,
    rbuf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<std::io::Result<usize>> {
    if rbuf.capacity() - rbuf.len() < READ_CHUNK / 4 {
        rbuf.reserve(READ_CHUNK);
    }
    let mut buf = ReadBuf::uninit(rbuf.spare_capacity_mut());
    ready!(Pin::new(reader).poll_read(cx, &mut buf))?;
    let read = buf.filled().len();
    // SAFETY: `ReadBuf` hands out as filled only bytes that were written, and they are the
    // first `read` bytes of the spare capacity after `rbuf.len()`.
    unsafe { rbuf.set_len(rbuf.len() + read) };
    Poll::Ready(Ok(read))
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
        assert_eq!(
            io.rbuf.capacity(),
            3,
            "a small read is copied out of the slab"
        );
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
    async fn a_large_read_keeps_its_bytes_in_the_slab() {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let (reader, writer) = tokio::io::split(server);
        let mut io = Io::new(reader, writer);
        let publish = [&[0x30, 0x81, 0x40, 0x00, 0x01, b't'][..], &[7; 8190]].concat();
        client.write_all(&publish).await.unwrap();
        let n = read_some(&mut io.reader, &mut io.rbuf).await.unwrap();
        assert_eq!(n, publish.len());
        let address = io.rbuf.as_ptr();
        assert!(
            READ_SLAB.with_borrow(|slab| slab.as_ptr()) == address.wrapping_add(n),
            "the read was split off the slab, not copied"
        );
        let packet = io
            .read_packet(ProtocolVersion::V3_1_1, 1 << 20)
            .await
            .unwrap();
        let Packet::Publish(publish) = packet else {
            panic!("not a PUBLISH: {packet:?}");
        };
        assert_eq!(publish.payload.len(), 8190);
        assert!(publish.payload.iter().all(|&b| b == 7));
    }

    #[tokio::test]
    async fn a_partial_packet_is_carried_in_front_of_a_large_read() {
        let (mut client, server) = tokio::io::duplex(256 * 1024);
        let (reader, writer) = tokio::io::split(server);
        let mut io = Io::new(reader, writer);
        // A 4 KiB PUBLISH cut after 100 bytes, then its rest and 20 more in one read.
        let publish = [&[0x30, 0x84, 0x20, 0x00, 0x01, b't'][..], &[7; 4097]].concat();
        client.write_all(&publish[..100]).await.unwrap();
        read_some(&mut io.reader, &mut io.rbuf).await.unwrap();
        assert!(decode(&mut io.rbuf, ProtocolVersion::V3_1_1, 1 << 20)
            .unwrap()
            .is_none());
        let rest = [&publish[100..], &publish.repeat(20)].concat();
        client.write_all(&rest).await.unwrap();
        let n = read_some(&mut io.reader, &mut io.rbuf).await.unwrap();
        assert_eq!(
            n,
            rest.len(),
            "the read was not capped by the partial packet's buffer"
        );
        for _ in 0..21 {
            let packet = decode(&mut io.rbuf, ProtocolVersion::V3_1_1, 1 << 20).unwrap();
            let Some(Packet::Publish(publish)) = packet else {
                panic!("not a whole PUBLISH: {packet:?}");
            };
            assert!(publish.payload.len() == 4097 && publish.payload.iter().all(|&b| b == 7));
        }
        assert!(io.rbuf.is_empty());
    }

    #[tokio::test]
    async fn over_tcp_a_large_payload_is_written_from_where_it_is_and_a_small_one_copied() {
        use bytes::Bytes;
        use fulmar_proto::{PacketId, Properties, Publish, QoS, TopicName};
        use tokio::io::AsyncReadExt;

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (reader, writer) = server.into_split();
        let mut io = Io::new(reader, writer);
        let publish = |len: usize, byte: u8| Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: TopicName::new("a/b").unwrap(),
            packet_id: PacketId::new(u16::from(byte)),
            properties: Properties::default(),
            payload: Bytes::from(vec![byte; len]),
        };
        let (large, small) = (publish(SHARED_PAYLOAD, 1), publish(SHARED_PAYLOAD - 1, 2));
        for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
            io.queue_publish(large.view(), version);
            io.queue_publish(small.view(), version);
            assert!(
                !large.payload.is_unique(),
                "the queue shares the large payload"
            );
            assert!(small.payload.is_unique(), "the small payload was copied");
            let mut expected = BytesMut::new();
            for p in [&large, &small] {
                fulmar_proto::encode_publish(p, version, &mut expected).unwrap();
            }
            assert_eq!(io.wbuf.to_vec(), expected);
            io.flush_within(Duration::from_secs(5)).await;
            assert!(large.payload.is_unique(), "released once written");
            let mut got = vec![0; expected.len()];
            tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut got))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(got, expected);
        }
    }

    #[tokio::test]
    async fn the_write_buffer_is_released_once_written() {
        let (_client, server) = tokio::io::duplex(1024);
        let (reader, writer) = tokio::io::split(server);
        let mut io = Io::new(reader, writer);
        io.queue(&Packet::PingResp, ProtocolVersion::V3_1_1);
        io.release_empty();
        assert_eq!(io.wbuf.to_vec(), [0xD0, 0x00], "unwritten bytes stay");
        io.flush_within(Duration::from_secs(5)).await;
        io.release_empty();
        assert!(!io.wbuf.is_allocated());
    }
}
