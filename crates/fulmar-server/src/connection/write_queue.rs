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
//! A large PUBLISH payload is not copied at all when the writer takes vectored writes: its
//! header goes into the chunks like any packet, and the payload waits beside them, a
//! reference placed at the offset in the encoded stream where its header ends; a write hands
//! it to the kernel as one more slice. In 4 KiB fan-out the copy into the chunk was 13 % of
//! the broker's CPU, and the kernel's copy from a payload shared by all recipients finds it
//! in cache. Placing payloads by offset keeps the headers of consecutive messages together
//! in one chunk: a chunk per payload (split off the previous one's allocation) cost ~250
//! instructions per delivery in bookkeeping and reference counts.
//!
//! # Invariants
//! The encoded stream is `front`, then each chunk of `more`, contiguous: `front[0]` is at
//! stream offset `Busy::front_offset`. Each shared payload follows the encoded byte before
//! its `after` offset and precedes the one at it; `payloads` is in stream order, no two at
//! one offset (each follows its own header) and none empty. `written` is the bytes of
//! `front` already written (less than `front`'s length, or both 0); `payload_written` is the
//! bytes of the first payload already written, non-zero only while that payload is due, at
//! offset `front_offset + written`. `len` is everything still unwritten, encoded and
//! payloads. Only the last chunk is appended to. `more` is empty unless `front` holds bytes,
//! and no chunk in `more` is empty. `busy` is `None` whenever the queue has released its
//! allocations. Chunks are never advanced, so a drained one keeps its whole capacity for
//! reuse.
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
use std::ops::ControlFlow;
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

/// The chunks after the first, the shared payloads, and a chunk to reuse.
#[derive(Debug, Default)]
struct Busy {
    more: VecDeque<BytesMut>,
    payloads: VecDeque<SharedPayload>,
    /// Bytes of the first payload already written.
    payload_written: usize,
    /// Stream offset of `front[0]`: the encoded bytes drained since `busy` was allocated.
    front_offset: u64,
    /// A drained chunk kept for the next packets, so a busy connection allocates none; freed
    /// by [`WriteQueue::release_empty`] before the connection waits idle.
    spare: Option<BytesMut>,
}

/// A payload written from where it is, and where in the encoded stream it goes.
#[derive(Debug)]
struct SharedPayload {
    /// Stream offset of the encoded byte it precedes (its header ends just before).
    after: u64,
    bytes: Bytes,
}

/// A chunk from the thread's pool, if it has one and `size_hint` fits a first chunk.
fn pooled_first_chunk(size_hint: usize) -> Option<BytesMut> {
    if size_hint > FIRST_CHUNK {
        return None;
    }
    FIRST_CHUNK_POOL.with_borrow_mut(Vec::pop)
}

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
        let front_is_last = self.busy.as_ref().is_none_or(|busy| busy.more.is_empty());
        let last = if front_is_last && self.front.capacity() - self.front.len() >= size_hint {
            &mut self.front
        } else {
            self.last_with_room(size_hint)
        };
        let before = last.len();
        let result = encode(last);
        let added = last.len() - before;
        self.len += added;
        if added == 0 {
            if let Some(busy) = self.busy.as_mut() {
                if busy.more.back().is_some_and(BytesMut::is_empty) {
                    busy.more.pop_back();
                }
            }
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
            let front_len = self.front.len();
            let busy = self.busy_mut();
            let encoded: usize = front_len + busy.more.iter().map(BytesMut::len).sum::<usize>();
            busy.payloads.push_back(SharedPayload {
                after: busy.front_offset + encoded as u64,
                bytes: payload.clone(),
            });
            self.len += payload.len();
        }
        result
    }

    /// The chunk to append a packet of about `size_hint` bytes to, started if need be.
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
        let last = busy.more.back().unwrap_or(&self.front);
        if last.capacity() - last.len() < size_hint {
            let chunk = self.new_chunk(size_hint, CHUNK);
            self.busy_mut().more.push_back(chunk);
        }
        let more = self.busy.as_mut().and_then(|busy| busy.more.back_mut());
        more.unwrap_or(&mut self.front)
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

    /// Hands `visit` what is still unwritten, in order, as the slices it lies in (encoded
    /// spans between payloads, and payloads), until `visit` breaks. No slice is empty.
    fn visit_unwritten<'a>(&'a self, mut visit: impl FnMut(&'a [u8]) -> ControlFlow<()>) {
        let Some(busy) = self.busy.as_deref() else {
            if self.written < self.front.len() {
                let _ = visit(&self.front[self.written..]);
            }
            return;
        };
        let mut payloads = busy.payloads.iter().peekable();
        let mut payload_written = busy.payload_written;
        let mut offset = busy.front_offset;
        let mut at = self.written;
        for chunk in std::iter::once(&self.front).chain(&busy.more) {
            loop {
                let here = offset + at as u64;
                while let Some(payload) = payloads.next_if(|p| p.after == here) {
                    if visit(&payload.bytes[payload_written..]).is_break() {
                        return;
                    }
                    payload_written = 0;
                }
                if at == chunk.len() {
                    break;
                }
                let end = payloads.peek().map_or(chunk.len(), |p| {
                    usize::try_from(p.after - offset).map_or(chunk.len(), |e| e.min(chunk.len()))
                });
                if visit(&chunk[at..end]).is_break() {
                    return;
                }
                at = end;
            }
            offset += chunk.len() as u64;
            at = 0;
        }
    }

    /// Writes at most [`MAX_WRITE`] bytes from the front of the queue once (vectored when
    /// the writer is), and drops what was written. `Ok(0)` means the peer no longer accepts
    /// bytes.
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
        self.visit_unwritten(|part| {
            let part = &part[..part.len().min(room)];
            slices[count] = IoSlice::new(part);
            count += 1;
            room -= part.len();
            if room == 0 || count == most {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
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
        while written > 0 {
            // The encoded bytes of `front` before the next payload, or that payload if due.
            let mut span = self.front.len() - self.written;
            if let Some(busy) = self.busy.as_deref_mut() {
                let here = busy.front_offset + self.written as u64;
                if let Some(payload) = busy.payloads.front() {
                    if payload.after == here {
                        let unwritten = payload.bytes.len() - busy.payload_written;
                        if written < unwritten {
                            busy.payload_written += written;
                            return;
                        }
                        written -= unwritten;
                        busy.payload_written = 0;
                        busy.payloads.pop_front();
                        continue;
                    }
                    span = span.min(usize::try_from(payload.after - here).unwrap_or(span));
                }
            }
            debug_assert!(span > 0, "`written` exceeds what is queued");
            if written < span {
                self.written += written;
                return;
            }
            written -= span;
            self.written += span;
            if self.written == self.front.len() {
                self.next_front();
            }
        }
    }

    /// Replaces the fully written `front` with the next chunk, or empties it.
    fn next_front(&mut self) {
        // A chunk grown for one huge packet is not kept.
        let keep = (FIRST_CHUNK..=4 * CHUNK).contains(&self.front.capacity());
        let drained = self.front.len() as u64;
        self.written = 0;
        let next = self.busy.as_mut().and_then(|busy| {
            busy.front_offset += drained;
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
                let mut drained = std::mem::replace(&mut self.front, next);
                if keep {
                    drained.clear();
                    self.busy_mut().spare = Some(drained);
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
        usize::from(!self.front.is_empty()) + self.busy.as_ref().map_or(0, |busy| busy.more.len())
    }

    /// The bytes waiting, concatenated (for tests).
    #[cfg(test)]
    pub fn to_vec(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.len);
        self.visit_unwritten(|part| {
            assert!(!part.is_empty(), "no slice is empty");
            bytes.extend_from_slice(part);
            ControlFlow::Continue(())
        });
        bytes
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
    fn headers_around_shared_payloads_share_one_chunk() {
        let mut queue = WriteQueue::default();
        let (expected, payloads) = mixed(&mut queue, 200, 4096);
        assert_eq!(queue.to_vec(), expected);
        assert_eq!(
            queue.chunk_count(),
            1,
            "200 headers of 5-7 bytes fit the first chunk; the payloads wait beside it"
        );
        assert_eq!(queue.len(), expected.len());
        assert!(payloads.iter().all(|p| !p.is_unique()));
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
    async fn a_queue_that_wrote_shared_payloads_pools_its_first_chunk() {
        let mut queue = WriteQueue::default();
        let (expected, payloads) = mixed(&mut queue, 6, 4096);
        let chunk = queue.front.as_ptr();
        let mut writer = Recording::new(true);
        while !queue.is_empty() {
            queue.write_some(&mut writer).await.unwrap();
        }
        assert_eq!(writer.bytes, expected);
        assert!(payloads.iter().all(Bytes::is_unique));
        queue.release_empty();
        assert!(!queue.is_allocated());
        let mut waking = WriteQueue::default();
        waking.append(10, |buf| buf.put_slice(&packet(2, 10)));
        assert_eq!(
            waking.front.as_ptr(),
            chunk,
            "the first chunk went back to the thread's pool whole"
        );
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
