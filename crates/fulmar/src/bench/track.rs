//! Per-publisher sequence accounting on the receiving side: lost, duplicated, out of order.
//!
//! For each publisher a subscriber expects, it keeps the next sequence number it has not yet
//! seen (`next`) and the ranges below `next` that are still missing (`gaps`). An arrival
//! - at `next` is in order;
//! - above `next` opens a gap `[next, seq)`: those are missing *so far*;
//! - below `next` and inside a gap fills it: it came out of order;
//! - below `next` and not inside a gap was seen before: a duplicate.
//!
//! At the end, what is still in a gap is lost, and so is every number from `next` up to the
//! count the publisher reports having sent (tail loss).
//!
//! # Invariants
//! The gaps are disjoint, non-empty, sorted and all below `next`.

use std::collections::BTreeMap;

/// Sequence state of one (subscriber, publisher) pair.
#[derive(Debug, Default, Clone)]
pub struct SeqTrack {
    /// Lowest sequence number not seen and not counted as a gap.
    next: u64,
    /// Missing ranges below `next`: start → end (exclusive).
    gaps: BTreeMap<u64, u64>,
    /// Arrivals that filled a gap.
    pub out_of_order: u64,
    /// Arrivals of a number already seen.
    pub duplicates: u64,
    /// Numbers ever skipped over (each gap's length when it opened); with `out_of_order`,
    /// the live count of missing messages, which the flow limit must not wait for.
    pub skipped: u64,
}

/// What one arrival was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The next number expected, or a jump ahead (which opens a gap).
    InOrder,
    /// A number that had been skipped.
    OutOfOrder,
    /// A number already seen.
    Duplicate,
}

impl SeqTrack {
    /// Records the arrival of `seq`.
    pub fn record(&mut self, seq: u32) -> Arrival {
        let seq = u64::from(seq);
        if seq >= self.next {
            if seq > self.next {
                self.gaps.insert(self.next, seq);
                self.skipped += seq - self.next;
            }
            self.next = seq + 1;
            return Arrival::InOrder;
        }
        // The gap that could hold `seq`: the last one starting at or below it.
        let hit = self
            .gaps
            .range(..=seq)
            .next_back()
            .map(|(&start, &end)| (start, end))
            .filter(|&(_, end)| seq < end);
        let Some((start, end)) = hit else {
            self.duplicates += 1;
            return Arrival::Duplicate;
        };
        self.gaps.remove(&start);
        if start < seq {
            self.gaps.insert(start, seq);
        }
        if seq + 1 < end {
            self.gaps.insert(seq + 1, end);
        }
        self.out_of_order += 1;
        debug_assert!(self.gaps.iter().all(|(s, e)| s < e && *e <= self.next));
        Arrival::OutOfOrder
    }

    /// Messages still missing, given that the publisher sent `sent` of them (numbers
    /// `0..sent`); `None` for `sent` means unknown, and only gaps count.
    pub fn lost(&self, sent: Option<u64>) -> u64 {
        let gaps: u64 = self.gaps.iter().map(|(s, e)| e - s).sum();
        let tail = sent.map_or(0, |sent| sent.saturating_sub(self.next));
        gaps + tail
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_stream_has_nothing_to_report() {
        let mut t = SeqTrack::default();
        for s in 0..100 {
            assert_eq!(t.record(s), Arrival::InOrder);
        }
        assert_eq!((t.lost(Some(100)), t.duplicates, t.out_of_order), (0, 0, 0));
    }

    #[test]
    fn drop_duplicate_and_swap_are_each_counted_once() {
        let mut t = SeqTrack::default();
        // 0 1 _ 3 3 5 4 6 ; 2 lost, 3 duplicated, 4 late; 7..10 never arrive.
        for s in [0, 1, 3, 3, 5, 4, 6] {
            t.record(s);
        }
        assert_eq!(t.duplicates, 1);
        assert_eq!(t.out_of_order, 1);
        assert_eq!(t.lost(Some(10)), 1 + 3);
        assert_eq!(t.lost(None), 1);
    }

    #[test]
    fn late_arrival_splits_a_gap() {
        let mut t = SeqTrack::default();
        t.record(10);
        assert_eq!(t.record(5), Arrival::OutOfOrder);
        assert_eq!(t.record(5), Arrival::Duplicate);
        assert_eq!(t.record(0), Arrival::OutOfOrder);
        assert_eq!(t.record(9), Arrival::OutOfOrder);
        assert_eq!(t.lost(Some(11)), 7);
    }
}
