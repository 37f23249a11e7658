//! Encoded packets waiting for the socket, kept in fixed-size chunks.
//!
//! One contiguous write buffer is the simple design, but a busy connection writes only part
//! of it per syscall and appends while the rest waits: every append that does not fit then
//! moves or reallocates everything still unwritten. With 4 KiB messages that was 37% of the
//! broker's instructions in a QoS 1 fan-in (callgrind: ~4,250 instructions of copying per
//! message for ~400 of encoding). Chunks never move: a packet goes into the last chunk when
//! it has room, or into a new one; the socket drains the first chunk and a drained chunk is
//! reused for the next packets.
//!
//! A large PUBLISH payload is not copied at all when the writer takes vectored writes: the
//! chunk gets the packet's header and then ends with a reference to the payload, which the
//! write hands to the kernel as one more slice (the next packets go into the rest of the
//! chunk's allocation, split off). In 4 KiB fan-out the copy into the chunk was 13 % of the
//! broker's CPU, and the kernel's copy from a payload shared by all recipients finds it in
//! cache.
//!
//! # Invariants
//! Chunks hold whole packets, in order: `front`, then `more`. A chunk is encoded bytes, then
//! possibly a shared payload (`Busy::front_payload` for `front`) that completes the packet
//! whose header ends those bytes; a chunk's length counts both. `len` is the sum of the
//! chunks' lengths minus `written`, the bytes of `front` already written (`written` is less
//! than `front`'s length, or both are 0). Only the last chunk is appended to, and only while it
//! has no payload. `more` is empty unless `front` holds bytes, and no chunk in `more` is
//! empty. `busy` is `None` whenever the queue has released its allocations. Chunks are never
//! advanced, so a drained one keeps its whole capacity for reuse.
//!
//! A queue that goes idle gives its first chunk to a small per-thread pool rather than back
//! to the allocator, and the next queue on that thread with packets to write takes it from
//! there. Connections go idle and wake many times a second under load; a 16 KiB allocation
//! and free each time also made glibc consolidate its fast bins, which then sent the
//! per-message allocations (the routed `Arc<Message>`) down its slow paths.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWrite;

/// Capacity of the first chunk of a batch: most batches are a few small packets.
pub const FIRST_CHUNK: usize = 16 * 1024;
/// Capacity of the chunks after the first; a packet larger than this gets a chunk of its own
/// size.
pub const CHUNK: usize = 64 * 1024;
/// Slices handed to one vectored write: two per PUBLISH with a shared payload, and a write
/// takes up to [`MAX_WRITE`] bytes.
const MAX_SLICES: usize = 64;
/// Bytes handed to one write: no more than one TCP segmentation-offload unit (64 KiB less
/// headers, rounded down to whole segments: 65,483 bytes on loopback, 65,160 on Ethernet).
/// The kernel sends the first unit of a write at once, but with a pacing congestion control
/// (BBR, the fq qdisc) every further unit waits for the socket's pacing timer and goes out
/// from softirq: with 256 KiB writes that made 4 KiB fan-in cost 30-45 % more broker CPU per
/// message than writes of one unit, which cost nothing measurable without pacing (cubic).
/// See BENCHMARKS.md, "Writes of one segment".
pub const MAX_WRITE: usize = 63 * 1024;
/// Idle first chunks a worker thread keeps for the next queue that wakes (64 KiB).
const POOLED_FIRST_CHUNKS: usize = 4;

thread_local! {
    /// Empty chunks of exactly [`FIRST_CHUNK`] capacity, at most [`POOLED_FIRST_CHUNKS`].
    /// Whichever thread a queue is polled on, a chunk it takes is its own until it is idle.
    static FIRST_CHUNK_POOL: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// The write side's queue of encoded packets.
#[derive(Debug, Default)]
pub struct WriteQueue {
    /// The chunk being written; inline, so a batch that fits one chunk allocates only it.
    front: BytesMut,
    /// Bytes at the start of `front` already written.
    written: usize,
    len: usize,
    /// What only a busy connection needs, boxed so that an idle one carries a null pointer.
    busy: Option<Box<Busy>>,
}

/// The chunks after the first, and a chunk to reuse.
#[derive(Debug, Default)]
struct Busy {
    /// The shared payload that ends `front`, if it ends with one.
    front_payload: Option<Bytes>,
    more: VecDeque<Chunk>,
    /// A drained chunk kept for the next packets, so a busy connection allocates none; freed
    /// by [`WriteQueue::release_empty`] before the connection waits idle.
    spare: Option<BytesMut>,
}

/// A chunk after the first: encoded bytes, then possibly a shared payload.
#[derive(Debug)]
struct Chunk {
    encoded: BytesMut,
    payload: Option<Bytes>,
}

impl Chunk {
    fn len(&self) -> usize {
        self.encoded.len() + self.payload.as_ref().map_or(0, Bytes::len)
    }
}

/// A chunk from the thread's pool, if it has one and `size_hint` fits a first chunk.
fn pooled_first_chunk(size_hint: usize) -> Option<BytesMut> {
    if size_hint > FIRST_CHUNK {
        return None;
    }
    FIRST_CHUNK_POOL.with_borrow_mut(Vec::pop)
}

/// What `more` reads as while `busy` is `None`.
static NO_MORE: VecDeque<Chunk> = VecDeque::new();

impl WriteQueue {
    /// Bytes waiting to be written.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing waits to be written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends one packet through `encode`, which writes it into the buffer it is given;
    /// `size_hint` is about its encoded size (a low hint only costs a reallocation of the
    /// last chunk). Whatever `encode` wrote counts, even if it then failed.
    ///
    /// `#[inline]` for the reason given at `Io::queue_publish`: it runs for every packet.
    #[inline]
    pub fn append<T>(&mut self, size_hint: usize, encode: impl FnOnce(&mut BytesMut) -> T) -> T {
        let front_is_last = self
            .busy
            .as_ref()
            .is_none_or(|busy| busy.more.is_empty() && busy.front_payload.is_none());
        let last = if front_is_last && self.front.capacity() - self.front.len() >= size_hint {
            &mut self.front
        } else {
            self.last_with_room(size_hint)
        };
        let before = last.len();
        let result = encode(last);
        let added = last.len() - before;
        self.len += added;
        if added == 0 && self.more().back().is_some_and(|c| c.len() == 0) {
            self.busy_mut().more.pop_back();
        }
        result
    }

    /// Appends a PUBLISH whose header `encode` writes (`size_hint` is about the header's size)
    /// and whose `payload` is then sent from where it is, not copied. Nothing of the payload is
    /// queued if `encode` wrote nothing.
    pub fn append_shared<T>(
        &mut self,
        size_hint: usize,
        encode: impl FnOnce(&mut BytesMut) -> T,
        payload: &Bytes,
    ) -> T {
        let before = self.len;
        let result = self.append(size_hint, encode);
        if self.len > before && !payload.is_empty() {
            let busy = self.busy_mut();
            let slot = match busy.more.back_mut() {
                Some(last) => &mut last.payload,
                None => &mut busy.front_payload,
            };
            debug_assert!(
                slot.is_none(),
                "only a chunk without a payload is appended to"
            );
            *slot = Some(payload.clone());
            self.len += payload.len();
        }
        result
    }

    /// The chunk to append a packet of about `size_hint` bytes to, started if need be. After
    /// a chunk that ends with a shared payload, the next one is the rest of its allocation
    /// when that has room.
    fn last_with_room(&mut self, size_hint: usize) -> &mut BytesMut {
        if self.front.is_empty() {
            if self.front.capacity() < size_hint {
                self.front = match pooled_first_chunk(size_hint) {
                    Some(chunk) => chunk,
                    None => self.new_chunk(size_hint, FIRST_CHUNK),
                };
            }
            return &mut self.front;
        }
        let busy = self.busy.get_or_insert_with(Box::default);
        let (last, sealed) = match busy.more.back_mut() {
            Some(chunk) => (&mut chunk.encoded, chunk.payload.is_some()),
            None => (&mut self.front, busy.front_payload.is_some()),
        };
        let room = last.capacity() - last.len();
        if sealed || room < size_hint {
            let encoded = if sealed && room >= size_hint {
                last.split_off(last.len())
            } else {
                self.new_chunk(size_hint, CHUNK)
            };
            self.busy_mut().more.push_back(Chunk {
                encoded,
                payload: None,
            });
        }
        let more = self.busy.as_mut().and_then(|busy| busy.more.back_mut());
        more.map_or(&mut self.front, |chunk| &mut chunk.encoded)
    }

    fn more(&self) -> &VecDeque<Chunk> {
        self.busy.as_ref().map_or(&NO_MORE, |busy| &busy.more)
    }

    fn front_payload(&self) -> &[u8] {
        self.busy
            .as_ref()
            .and_then(|busy| busy.front_payload.as_deref())
            .unwrap_or_default()
    }

    /// Everything queued as the slices it lies in, in order, from the start of `front`
    /// (`written` included); an absent payload is an empty slice.
    fn parts(&self) -> impl Iterator<Item = &[u8]> {
        [&self.front[..], self.front_payload()]
            .into_iter()
            .chain(self.more().iter().flat_map(|chunk| {
                [
                    &chunk.encoded[..],
                    chunk.payload.as_deref().unwrap_or_default(),
                ]
            }))
    }

    fn busy_mut(&mut self) -> &mut Busy {
        self.busy.get_or_insert_with(Box::default)
    }

    /// The spare chunk if it has room for `size_hint`, or a new one of at least `capacity`.
    fn new_chunk(&mut self, size_hint: usize, capacity: usize) -> BytesMut {
        match self.busy.as_mut().and_then(|busy| busy.spare.take()) {
            Some(spare) if spare.capacity() >= size_hint => spare,
            _ => BytesMut::with_capacity(size_hint.max(capacity)),
        }
    }

    /// Writes at most [`MAX_WRITE`] bytes from the front chunks once (vectored when the
    /// writer is), and drops what was written. `Ok(0)` means the peer no longer accepts bytes.
    pub fn poll_write<W: AsyncWrite + Unpin>(
        &mut self,
        writer: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<usize>> {
        let most = if writer.is_write_vectored() {
            MAX_SLICES
        } else {
            1
        };
        let mut slices = [IoSlice::new(&[]); MAX_SLICES];
        let mut count = 0;
        let mut room = MAX_WRITE;
        let mut skip = self.written;
        for part in self.parts() {
            if skip >= part.len() {
                skip -= part.len();
                continue;
            }
            let part = &part[skip..];
            skip = 0;
            let part = &part[..part.len().min(room)];
            slices[count] = IoSlice::new(part);
            count += 1;
            room -= part.len();
            if room == 0 || count == most {
                break;
            }
        }
        let written = match count {
            0 => 0,
            1 => std::task::ready!(Pin::new(writer).poll_write(cx, &slices[0]))?,
            _ => std::task::ready!(Pin::new(writer).poll_write_vectored(cx, &slices[..count]))?,
        };
        self.consume(written);
        Poll::Ready(Ok(written))
    }

    /// Writes once; see [`WriteQueue::poll_write`]. A plain `poll_fn` (16 bytes) rather than
    /// an async fn around it: the run loop of every connection holds this future.
    pub fn write_some<'a, W: AsyncWrite + Unpin>(
        &'a mut self,
        writer: &'a mut W,
    ) -> impl Future<Output = std::io::Result<usize>> + 'a {
        std::future::poll_fn(move |cx| self.poll_write(writer, cx))
    }

    /// Drops the first `written` bytes; a fully written chunk becomes the spare.
    fn consume(&mut self, mut written: usize) {
        debug_assert!(written <= self.len);
        self.len -= written.min(self.len);
        while written > 0 && !self.front.is_empty() {
            let unwritten = self.front.len() + self.front_payload().len() - self.written;
            if written < unwritten {
                self.written += written;
                return;
            }
            written -= unwritten;
            self.written = 0;
            // A chunk grown for one huge packet is not kept, nor the header of a payload whose
            // allocation's rest went on as the next chunk: it would keep that allocation alive.
            let keep = (FIRST_CHUNK..=4 * CHUNK).contains(&self.front.capacity());
            let next = self.busy.as_mut().and_then(|busy| {
                busy.front_payload = None;
                busy.more.pop_front()
            });
            match next {
                // The last chunk drained: it stays the front, empty, for the next packets.
                None => {
                    self.front.clear();
                    if !keep {
                        self.front = BytesMut::new();
                    }
                }
                Some(next) => {
                    let mut drained = std::mem::replace(&mut self.front, next.encoded);
                    let busy = self.busy_mut();
                    busy.front_payload = next.payload;
                    if keep {
                        drained.clear();
                        busy.spare = Some(drained);
                    }
                }
            }
        }
    }

    /// Frees every allocation when nothing waits (called before the connection waits); a
    /// first-sized chunk goes to the thread's pool instead while it has room.
    pub fn release_empty(&mut self) {
        if self.is_empty() {
            let front = std::mem::take(&mut self.front);
            *self = WriteQueue::default();
            if front.capacity() == FIRST_CHUNK {
                FIRST_CHUNK_POOL.with_borrow_mut(|pool| {
                    if pool.len() < POOLED_FIRST_CHUNKS {
                        debug_assert!(front.is_empty());
                        pool.push(front);
                    }
                });
            }
        }
    }

    /// Whether the queue holds any allocation (for tests of the idle state).
    #[cfg(test)]
    pub fn is_allocated(&self) -> bool {
        self.front.capacity() > 0 || self.busy.is_some()
    }

    /// The chunks holding bytes (for tests).
    #[cfg(test)]
    fn chunk_count(&self) -> usize {
        usize::from(!self.front.is_empty()) + self.more().len()
    }

    /// The bytes waiting, concatenated (for tests).
    #[cfg(test)]
    pub fn to_vec(&self) -> Vec<u8> {
        self.parts().flatten().copied().skip(self.written).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;
    use tokio::io::AsyncReadExt;

    fn packet(byte: u8, len: usize) -> Vec<u8> {
        vec![byte; len]
    }

    #[test]
    fn packets_stay_in_order_across_chunks_and_a_large_one_gets_its_own() {
        let mut queue = WriteQueue::default();
        let mut expected = Vec::new();
        for (i, len) in [10, FIRST_CHUNK - 10, 7, 3 * CHUNK, 1]
            .into_iter()
            .enumerate()
        {
            let bytes = packet(i as u8, len);
            queue.append(len, |buf| buf.put_slice(&bytes));
            expected.extend_from_slice(&bytes);
        }
        assert_eq!(queue.len(), expected.len());
        assert_eq!(queue.to_vec(), expected);
        assert_eq!(
            queue.chunk_count(),
            4,
            "10 + 16374 | 7 | 3 chunks' worth | 1"
        );
    }

    #[test]
    fn an_idle_queue_hands_its_first_chunk_to_the_next_one_on_the_thread() {
        let mut idle = WriteQueue::default();
        idle.append(10, |buf| buf.put_slice(&packet(1, 10)));
        let chunk = idle.front.as_ptr();
        idle.consume(10);
        idle.release_empty();
        assert!(!idle.is_allocated());
        let mut waking = WriteQueue::default();
        waking.append(10, |buf| buf.put_slice(&packet(2, 10)));
        assert_eq!(waking.front.as_ptr(), chunk);
        assert_eq!(waking.to_vec(), packet(2, 10));
    }

    #[test]
    fn an_append_that_writes_nothing_leaves_no_chunk() {
        let mut queue = WriteQueue::default();
        queue.append(100, |_| ());
        assert!(queue.is_empty());
        assert_eq!(queue.chunk_count(), 0);
    }

    /// A writer that takes up to `limit` bytes of what it is offered and records each write's
    /// length and where each slice it took from starts.
    struct Recording {
        vectored: bool,
        limit: usize,
        bytes: Vec<u8>,
        writes: Vec<usize>,
        slices: Vec<*const u8>,
    }

    impl Recording {
        fn new(vectored: bool) -> Self {
            Self::limited(vectored, usize::MAX)
        }

        fn limited(vectored: bool, limit: usize) -> Self {
            Recording {
                vectored,
                limit,
                bytes: Vec::new(),
                writes: Vec::new(),
                slices: Vec::new(),
            }
        }

        fn take(&mut self, bufs: &[&[u8]]) -> usize {
            let mut room = self.limit;
            for buf in bufs {
                if room == 0 {
                    break;
                }
                let part = &buf[..buf.len().min(room)];
                self.bytes.extend_from_slice(part);
                self.slices.push(part.as_ptr());
                room -= part.len();
            }
            let total = self.limit - room;
            self.writes.push(total);
            total
        }
    }

    impl AsyncWrite for Recording {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            Poll::Ready(Ok(self.take(&[buf])))
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<std::io::Result<usize>> {
            let bufs: Vec<&[u8]> = bufs.iter().map(|b| &b[..]).collect();
            Poll::Ready(Ok(self.take(&bufs)))
        }

        fn is_write_vectored(&self) -> bool {
            self.vectored
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn no_write_hands_over_more_than_one_segment_unit() {
        for vectored in [true, false] {
            let mut queue = WriteQueue::default();
            let mut expected = Vec::new();
            // Small packets across several chunks, then one packet larger than a write.
            for i in 0..3000u32 {
                let bytes = packet(i as u8, 100);
                queue.append(100, |buf| buf.put_slice(&bytes));
                expected.extend_from_slice(&bytes);
            }
            let huge = packet(7, 3 * MAX_WRITE + 5);
            queue.append(huge.len(), |buf| buf.put_slice(&huge));
            expected.extend_from_slice(&huge);
            let mut writer = Recording::new(vectored);
            while !queue.is_empty() {
                queue.write_some(&mut writer).await.unwrap();
            }
            assert_eq!(writer.bytes, expected, "vectored: {vectored}");
            assert!(
                writer.writes.iter().all(|&n| n > 0 && n <= MAX_WRITE),
                "vectored: {vectored}: {:?}",
                writer.writes
            );
            if vectored {
                assert!(
                    writer.writes.iter().filter(|&&n| n == MAX_WRITE).count() >= 6,
                    "full writes gather across chunks: {:?}",
                    writer.writes
                );
            }
        }
    }

    #[tokio::test]
    async fn partial_writes_drain_the_front_and_idle_frees_everything() {
        let (mut client, mut server) = tokio::io::duplex(1000);
        let mut queue = WriteQueue::default();
        let mut expected = Vec::new();
        for i in 0..40u8 {
            let bytes = packet(i, 4096);
            queue.append(4096, |buf| buf.put_slice(&bytes));
            expected.extend_from_slice(&bytes);
        }
        let reader = tokio::spawn(async move {
            let mut got = vec![0; expected.len()];
            client.read_exact(&mut got).await.unwrap();
            assert_eq!(got, expected);
        });
        while !queue.is_empty() {
            let n = queue.write_some(&mut server).await.unwrap();
            assert!(
                n > 0 && n <= 1000,
                "the duplex pipe takes at most 1000 at once"
            );
        }
        reader.await.unwrap();
        assert!(
            queue.front.capacity() >= CHUNK,
            "a drained chunk is kept while busy: {}",
            queue.front.capacity()
        );
        queue.release_empty();
        assert!(!queue.is_allocated());
    }
    /// Appends `count` packets alternating between copied ones and ones whose `payload_len`
    /// payload is shared; returns the bytes expected on the wire and the shared payloads.
    fn mixed(queue: &mut WriteQueue, count: u8, payload_len: usize) -> (Vec<u8>, Vec<Bytes>) {
        let mut expected = Vec::new();
        let mut payloads = Vec::new();
        for i in 0..count {
            let header = packet(i, 5 + usize::from(i % 3));
            if i % 2 == 0 {
                queue.append(header.len(), |buf| buf.put_slice(&header));
                expected.extend_from_slice(&header);
            } else {
                let payload = Bytes::from(packet(!i, payload_len));
                queue.append_shared(header.len(), |buf| buf.put_slice(&header), &payload);
                expected.extend_from_slice(&header);
                expected.extend_from_slice(&payload);
                payloads.push(payload);
            }
        }
        (expected, payloads)
    }

    #[tokio::test]
    async fn shared_payloads_are_written_in_place_and_in_order() {
        let mut queue = WriteQueue::default();
        let (expected, payloads) = mixed(&mut queue, 41, 4096);
        assert_eq!(queue.len(), expected.len());
        assert_eq!(queue.to_vec(), expected);
        assert!(
            payloads.iter().all(|p| !p.is_unique()),
            "the queue holds each payload"
        );
        let mut writer = Recording::new(true);
        while !queue.is_empty() {
            queue.write_some(&mut writer).await.unwrap();
        }
        assert_eq!(writer.bytes, expected);
        for payload in &payloads {
            assert!(
                writer.slices.contains(&payload.as_ptr()),
                "each payload is handed to the writer where it is, not copied"
            );
            assert!(payload.is_unique(), "a written payload is released");
        }
        assert!(writer.writes.iter().all(|&n| n <= MAX_WRITE));
    }

    #[tokio::test]
    async fn partial_writes_split_anywhere_across_headers_and_shared_payloads() {
        for vectored in [true, false] {
            for limit in [1, 2, 5, 6, 7, 13, 100, 4099, 4103, 9000, MAX_WRITE] {
                let mut queue = WriteQueue::default();
                let (expected, payloads) = mixed(&mut queue, 9, 4096);
                let mut writer = Recording::limited(vectored, limit);
                while !queue.is_empty() {
                    let before = queue.len();
                    let n = queue.write_some(&mut writer).await.unwrap();
                    assert!(n > 0 && n <= limit, "vectored {vectored}, limit {limit}");
                    assert_eq!(queue.len(), before - n);
                    assert_eq!(queue.to_vec(), expected[writer.bytes.len()..]);
                }
                assert_eq!(writer.bytes, expected, "vectored {vectored}, limit {limit}");
                assert!(payloads.iter().all(Bytes::is_unique));
            }
        }
    }

    #[test]
    fn packets_after_a_shared_payload_go_into_the_rest_of_its_chunk() {
        let mut queue = WriteQueue::default();
        let (expected, _payloads) = mixed(&mut queue, 200, 4096);
        assert_eq!(queue.to_vec(), expected);
        assert_eq!(
            queue.chunk_count(),
            100,
            "one chunk per shared payload, all carved from the first chunk's allocation"
        );
        let base = queue.front.as_ptr() as usize;
        let last = queue.more().back().unwrap().encoded.as_ptr() as usize;
        assert!(
            last - base < FIRST_CHUNK,
            "no new allocation for the headers"
        );
    }

    #[test]
    fn a_shared_payload_is_not_queued_when_its_header_fails_to_encode() {
        let mut queue = WriteQueue::default();
        let payload = Bytes::from(packet(1, 4096));
        queue.append_shared(10, |_| (), &payload);
        assert!(queue.is_empty());
        assert!(payload.is_unique());
        queue.append_shared(10, |buf| buf.put_slice(&[7; 3]), &payload);
        assert_eq!(queue.len(), 3 + 4096);
    }

    #[tokio::test]
    async fn a_drained_header_chunk_is_not_kept_for_reuse() {
        let mut queue = WriteQueue::default();
        let (_, _payloads) = mixed(&mut queue, 6, 4096);
        let mut writer = Recording::new(true);
        while !queue.is_empty() {
            queue.write_some(&mut writer).await.unwrap();
        }
        let spare = queue.busy.as_ref().and_then(|busy| busy.spare.as_ref());
        assert!(
            spare.is_none_or(|chunk| chunk.capacity() >= FIRST_CHUNK),
            "a header split off its allocation would keep all of it alive"
        );
        queue.release_empty();
        assert!(!queue.is_allocated());
    }
    /// Random appends (copied and shared, small and large) interleaved with writes of random
    /// sizes, vectored or not, against the plain byte stream they must produce.
    #[tokio::test]
    async fn random_appends_and_partial_writes_keep_the_byte_stream() {
        let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = move |below: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            usize::try_from(seed % below as u64).unwrap()
        };
        for round in 0..200 {
            let mut queue = WriteQueue::default();
            let mut writer = Recording::limited(round % 2 == 0, 1 + next(3 * CHUNK));
            let mut expected = Vec::new();
            let mut payloads = Vec::new();
            for op in 0..next(300) {
                let byte = u8::try_from(op % 251).unwrap();
                match next(4) {
                    0 => {
                        let header = packet(byte, 1 + next(20));
                        let payload = Bytes::from(packet(!byte, next(3 * CHUNK)));
                        queue.append_shared(next(40), |buf| buf.put_slice(&header), &payload);
                        expected.extend_from_slice(&header);
                        expected.extend_from_slice(&payload);
                        payloads.push(payload);
                    }
                    1 => {
                        let bytes = packet(byte, next(2 * CHUNK));
                        queue.append(next(2 * CHUNK), |buf| buf.put_slice(&bytes));
                        expected.extend_from_slice(&bytes);
                    }
                    2 => {
                        let bytes = packet(byte, 1 + next(100));
                        queue.append(bytes.len(), |buf| buf.put_slice(&bytes));
                        expected.extend_from_slice(&bytes);
                    }
                    _ if !queue.is_empty() => {
                        queue.write_some(&mut writer).await.unwrap();
                    }
                    _ => queue.release_empty(),
                }
                assert_eq!(queue.len(), expected.len() - writer.bytes.len());
            }
            assert_eq!(
                queue.to_vec(),
                expected[writer.bytes.len()..],
                "round {round}"
            );
            while !queue.is_empty() {
                queue.write_some(&mut writer).await.unwrap();
            }
            assert_eq!(writer.bytes, expected, "round {round}");
            assert!(writer.writes.iter().all(|&n| n <= MAX_WRITE));
            assert!(payloads.iter().all(Bytes::is_unique), "round {round}");
            queue.release_empty();
            assert!(!queue.is_allocated());
        }
    }
}
