//! Per-subscription offset checking: gaps, duplicates and out-of-order deliveries.
//!
//! Offsets of a channel are contiguous (1, 2, 3, …) and must arrive in order. The tracker
//! expects `latest + 1` first (latest as given by the subscribe reply) and classifies each
//! delivered offset:
//! - equal to the expected one: in order;
//! - greater: a gap; the skipped offsets are remembered as holes;
//! - smaller and inside a hole: out of order (it arrived late; the hole shrinks);
//! - smaller otherwise: a duplicate (already seen, or older than the subscription).
//!
//! Holes left at the end are offsets that never arrived ([`OffsetTracker::missing`]).
//! The tracker allocates nothing unless gaps occur, and then keeps at most
//! [`MAX_HOLES`] hole ranges (older ones are then counted as missing for good).

/// Most hole ranges remembered per subscription.
pub const MAX_HOLES: usize = 64;

/// How one delivered offset was classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Exactly the expected offset.
    InOrder,
    /// Ahead of the expected offset, skipping this many offsets.
    Gap(u64),
    /// A skipped offset that arrived late.
    OutOfOrder,
    /// An offset already delivered, or older than the subscription.
    Duplicate,
}

/// Tracks the offsets delivered on one subscription.
#[derive(Debug, Clone, Default)]
pub struct OffsetTracker {
    next: u64,
    /// Half-open ranges `[start, end)` of skipped offsets, in ascending order.
    holes: Vec<(u64, u64)>,
    /// Skipped offsets forgotten when there were too many holes.
    forgotten: u64,
}

impl OffsetTracker {
    /// A tracker for a subscription whose reply said the channel's latest offset is `latest`.
    pub fn new(latest: Option<u64>) -> Self {
        Self { next: latest.unwrap_or(0).saturating_add(1), holes: Vec::new(), forgotten: 0 }
    }

    /// Classifies a delivered offset and updates the state.
    pub fn observe(&mut self, offset: u64) -> Seen {
        if offset == self.next {
            self.next = offset.saturating_add(1);
            return Seen::InOrder;
        }
        if offset > self.next {
            let skipped = offset - self.next;
            self.add_hole(self.next, offset);
            self.next = offset.saturating_add(1);
            return Seen::Gap(skipped);
        }
        // offset < next: late arrival into a hole, or a duplicate.
        let found = self.holes.iter().position(|&(start, end)| start <= offset && offset < end);
        let Some(idx) = found else {
            return Seen::Duplicate;
        };
        let (start, end) = self.holes[idx];
        match (start == offset, offset + 1 == end) {
            (true, true) => {
                self.holes.remove(idx);
            }
            (true, false) => self.holes[idx].0 = offset + 1,
            (false, true) => self.holes[idx].1 = offset,
            (false, false) => {
                self.holes[idx].1 = offset;
                self.holes.insert(idx + 1, (offset + 1, end));
                self.trim();
            }
        }
        Seen::OutOfOrder
    }

    /// The highest offset delivered so far (the subscription's start when none was).
    pub fn last(&self) -> u64 {
        self.next.saturating_sub(1)
    }

    /// Offsets skipped and (so far) never delivered.
    pub fn missing(&self) -> u64 {
        self.forgotten + self.holes.iter().map(|(s, e)| e - s).sum::<u64>()
    }

    fn add_hole(&mut self, start: u64, end: u64) {
        self.holes.push((start, end));
        self.trim();
    }

    fn trim(&mut self) {
        while self.holes.len() > MAX_HOLES {
            let (s, e) = self.holes.remove(0);
            self.forgotten += e - s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(t: &mut OffsetTracker, offsets: &[u64]) -> Vec<Seen> {
        offsets.iter().map(|&o| t.observe(o)).collect()
    }

    #[test]
    fn in_order_from_latest_or_empty_channel() {
        let mut t = OffsetTracker::new(None);
        assert_eq!(t.next, 1);
        assert!(feed(&mut t, &[1, 2, 3]).iter().all(|s| *s == Seen::InOrder));
        let mut t = OffsetTracker::new(Some(41));
        assert_eq!(t.observe(42), Seen::InOrder);
        assert_eq!(t.next, 43);
        assert_eq!(t.missing(), 0);
    }

    #[test]
    fn gaps_count_skipped_offsets() {
        let mut t = OffsetTracker::new(None);
        assert_eq!(feed(&mut t, &[1, 4, 5, 9]), [Seen::InOrder, Seen::Gap(2), Seen::InOrder, Seen::Gap(3)]);
        assert_eq!(t.missing(), 5);
        // Starting late is a gap too.
        let mut t = OffsetTracker::new(Some(10));
        assert_eq!(t.observe(12), Seen::Gap(1));
    }

    #[test]
    fn duplicates_and_stale_offsets() {
        let mut t = OffsetTracker::new(Some(5));
        assert_eq!(
            feed(&mut t, &[6, 7, 7, 6, 3]),
            [Seen::InOrder, Seen::InOrder, Seen::Duplicate, Seen::Duplicate, Seen::Duplicate]
        );
        assert_eq!(t.missing(), 0);
    }

    #[test]
    fn late_offsets_fill_holes_once() {
        let mut t = OffsetTracker::new(None);
        // 1, then 5 (skips 2..=4), then 3, 2, 4 late, then 3 again is a duplicate.
        let seen = feed(&mut t, &[1, 5, 3, 2, 4, 3, 6]);
        assert_eq!(
            seen,
            [
                Seen::InOrder,
                Seen::Gap(3),
                Seen::OutOfOrder,
                Seen::OutOfOrder,
                Seen::OutOfOrder,
                Seen::Duplicate,
                Seen::InOrder
            ]
        );
        assert_eq!(t.missing(), 0);
        assert!(t.holes.is_empty());
    }

    #[test]
    fn hole_list_is_bounded() {
        let mut t = OffsetTracker::new(None);
        for i in 0..(MAX_HOLES as u64 * 3) {
            t.observe(i * 2 + 2); // skips every odd offset
        }
        assert!(t.holes.len() <= MAX_HOLES);
        assert_eq!(t.missing(), MAX_HOLES as u64 * 3);
        // A forgotten hole's late arrival reads as a duplicate; a remembered one is fine.
        assert_eq!(t.observe(1), Seen::Duplicate);
        let last_odd = MAX_HOLES as u64 * 6 - 1;
        assert_eq!(t.observe(last_odd), Seen::OutOfOrder);
    }
}
