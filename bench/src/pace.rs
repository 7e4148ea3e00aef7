//! Rate pacing arithmetic for publishers.
//!
//! Each publisher owns `rate / publishers` events per second. It wakes on a tokio interval
//! and sends however many events are *due* since it started (`floor(rate × elapsed)`) minus
//! those already sent, so a late wake-up is caught up with a burst instead of lowering the
//! rate. One burst is capped ([`max_batch`]) so a stalled connection cannot build a huge
//! backlog in one go; the due count keeps growing, so nothing is silently lost, and at the
//! end of the run whatever was not sent simply shows as fewer events published.

use std::time::Duration;

/// Shortest pacing interval.
pub const MIN_TICK: Duration = Duration::from_millis(1);
/// Longest pacing interval.
pub const MAX_TICK: Duration = Duration::from_millis(50);

/// One publisher's share of the total rate (events/s).
pub fn per_publisher_rate(total_rate: f64, publishers: usize) -> f64 {
    if publishers == 0 || !total_rate.is_finite() || total_rate <= 0.0 {
        return 0.0;
    }
    total_rate / publishers as f64
}

/// Events due after `elapsed` at `rate` events/s.
pub fn due(rate: f64, elapsed: Duration) -> u64 {
    let n = rate * elapsed.as_secs_f64();
    if n.is_finite() && n > 0.0 {
        n.floor() as u64
    } else {
        0
    }
}

/// How many events to send now: what is due minus what was sent, capped at `max`.
pub fn batch(due: u64, sent: u64, max: u64) -> u64 {
    due.saturating_sub(sent).min(max)
}

/// The pacing interval for `rate` events/s: about one event per tick, within
/// [`MIN_TICK`]..=[`MAX_TICK`].
pub fn tick_period(rate: f64) -> Duration {
    if !rate.is_finite() || rate <= 0.0 {
        return MAX_TICK;
    }
    Duration::from_secs_f64((1.0 / rate).clamp(MIN_TICK.as_secs_f64(), MAX_TICK.as_secs_f64()))
}

/// Largest burst per tick: a quarter second of events, at least one.
pub fn max_batch(rate: f64) -> u64 {
    due(rate, Duration::from_millis(250)).max(1)
}

/// The channel index of the `k`-th event (0-based) of publisher `publisher`, so that all
/// publishers together cycle evenly over all channels.
pub fn channel_for(publisher: usize, k: u64, publishers: usize, channels: usize) -> usize {
    if channels == 0 {
        return 0;
    }
    let global = k.wrapping_mul(publishers.max(1) as u64).wrapping_add(publisher as u64);
    (global % channels as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_is_split_over_publishers() {
        assert_eq!(per_publisher_rate(1000.0, 4), 250.0);
        assert_eq!(per_publisher_rate(1000.0, 0), 0.0);
        assert_eq!(per_publisher_rate(-1.0, 3), 0.0);
        assert_eq!(per_publisher_rate(f64::NAN, 3), 0.0);
    }

    #[test]
    fn due_counts_whole_events() {
        assert_eq!(due(250.0, Duration::from_millis(0)), 0);
        assert_eq!(due(250.0, Duration::from_millis(3)), 0);
        assert_eq!(due(250.0, Duration::from_millis(4)), 1);
        assert_eq!(due(250.0, Duration::from_secs(10)), 2500);
        assert_eq!(due(0.5, Duration::from_secs(3)), 1);
        assert_eq!(due(0.0, Duration::from_secs(3)), 0);
        assert_eq!(due(f64::INFINITY, Duration::from_secs(3)), 0);
    }

    #[test]
    fn late_ticks_catch_up_in_capped_bursts() {
        let rate = 1000.0;
        let max = max_batch(rate);
        assert_eq!(max, 250);
        // On time: one tick, one event.
        assert_eq!(batch(due(rate, Duration::from_millis(1)), 0, max), 1);
        // 100 ms late: the whole backlog in one burst.
        assert_eq!(batch(due(rate, Duration::from_millis(101)), 1, max), 100);
        // 2 s stall: bursts of `max` until caught up, nothing lost.
        let mut sent = 101;
        let d = due(rate, Duration::from_millis(2101));
        let mut bursts = 0;
        while sent < d {
            sent += batch(d, sent, max);
            bursts += 1;
        }
        assert_eq!(sent, 2101);
        assert_eq!(bursts, 8);
        assert_eq!(batch(5, 9, max), 0);
        assert_eq!(max_batch(0.1), 1);
    }

    #[test]
    fn tick_period_is_clamped() {
        assert_eq!(tick_period(1_000_000.0), MIN_TICK);
        assert_eq!(tick_period(1.0), MAX_TICK);
        assert_eq!(tick_period(0.0), MAX_TICK);
        assert_eq!(tick_period(100.0), Duration::from_millis(10));
    }

    #[test]
    fn channels_are_cycled_evenly() {
        let (publishers, channels) = (3, 4);
        let mut counts = [0u32; 4];
        for k in 0..8 {
            for p in 0..publishers {
                counts[channel_for(p, k, publishers, channels)] += 1;
            }
        }
        assert_eq!(counts, [6, 6, 6, 6]);
        assert_eq!(channel_for(2, 0, 3, 10), 2);
        assert_eq!(channel_for(2, 1, 3, 10), 5);
        assert_eq!(channel_for(0, 5, 0, 0), 0);
    }
}
