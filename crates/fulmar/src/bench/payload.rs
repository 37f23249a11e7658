//! The payload every benchmark message carries, and the clock its timestamps come from.
//!
//! Layout (big-endian, then zero padding up to `--size`):
//!
//! | bytes | field |
//! |---|---|
//! | 0..4 | publisher index (global, 0-based) |
//! | 4..8 | sequence number, per publisher, from 0 |
//! | 8..16 | send time: nanoseconds on [`now_ns`]'s clock |
//!
//! Sender and receiver live in one process, so one monotonic clock serves both and the
//! latency is a plain subtraction.

use std::sync::OnceLock;
use std::time::Instant;

/// Smallest payload that holds the header.
pub const HEADER_LEN: usize = 16;

/// Offset of the sequence number inside the payload.
pub const SEQ_OFFSET: usize = 4;

/// Offset of the send timestamp inside the payload.
pub const TIME_OFFSET: usize = 8;

/// The process-wide epoch of [`now_ns`].
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since the process's benchmark epoch (monotonic, shared by all threads).
pub fn now_ns() -> u64 {
    u64::try_from(epoch().elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// The [`Instant`] of a [`now_ns`] value, for timers.
pub fn instant_at(ns: u64) -> Instant {
    epoch() + std::time::Duration::from_nanos(ns)
}

/// The header fields of a received payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Index of the publisher that sent it.
    pub publisher: u32,
    /// The publisher's sequence number.
    pub seq: u32,
    /// Send time on [`now_ns`]'s clock.
    pub sent_ns: u64,
}

impl Stamp {
    /// Reads the header; `None` if the payload is too short to be one of ours.
    pub fn read(payload: &[u8]) -> Option<Self> {
        let header: &[u8; HEADER_LEN] = payload.get(..HEADER_LEN)?.try_into().ok()?;
        let u32_at =
            |i: usize| u32::from_be_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
        let mut time = [0u8; 8];
        time.copy_from_slice(&header[TIME_OFFSET..]);
        Some(Self {
            publisher: u32_at(0),
            seq: u32_at(SEQ_OFFSET),
            sent_ns: u64::from_be_bytes(time),
        })
    }

    /// Writes the header into the front of `payload` (at least [`HEADER_LEN`] bytes).
    pub fn write(self, payload: &mut [u8]) {
        payload[..SEQ_OFFSET].copy_from_slice(&self.publisher.to_be_bytes());
        payload[SEQ_OFFSET..TIME_OFFSET].copy_from_slice(&self.seq.to_be_bytes());
        payload[TIME_OFFSET..HEADER_LEN].copy_from_slice(&self.sent_ns.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trips() {
        let stamp = Stamp {
            publisher: 7,
            seq: 0xDEAD_BEEF,
            sent_ns: 123_456_789_012,
        };
        let mut buf = [0u8; 20];
        stamp.write(&mut buf);
        assert_eq!(Stamp::read(&buf), Some(stamp));
        assert_eq!(Stamp::read(&buf[..15]), None);
    }
}
