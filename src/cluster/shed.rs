//! How many clients to move away now: a pure decision, no I/O.
//!
//! A node starts shedding when it holds more than the cluster mean by more than the tolerance,
//! and then keeps going until it is at the mean (rounded up), never below it. Clients it advised
//! lately may still be on their way to another node: until the other nodes' counts have grown
//! by as many (or the window for reconnecting has passed), the missing ones count in the
//! cluster's total, so the mean does not sink while they are in flight and the node never
//! overshoots. At most `per_tick` clients are shed per decision, and none while the node
//! drains.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Decisions kept in flight at most (older ones are dropped: they no longer count).
const MAX_IN_FLIGHT_ENTRIES: usize = 1024;

/// What a decision looks at.
#[derive(Debug, Clone, Copy)]
pub struct Census<'a> {
    /// This node's connections.
    pub own: u64,
    /// Every other ready node's connections.
    pub others: &'a [u64],
    /// Whether this node drains (then it never sheds).
    pub draining: bool,
    /// Now.
    pub now: Instant,
}

/// The rebalancing state of one node.
#[derive(Debug)]
pub struct Shedder {
    tolerance: f64,
    per_tick: u64,
    /// How long an advised client counts as in flight.
    window: Duration,
    active: bool,
    /// (when, how many, the other nodes' total just before): advised clients still counted.
    in_flight: VecDeque<(Instant, u64, u64)>,
    /// The other nodes' total at the last decision.
    others_total: u64,
}

impl Shedder {
    /// `tolerance`: a fraction of the mean; `per_tick`: clients per decision at most (≥ 1);
    /// `window`: how long an advised client takes to reconnect at most.
    pub fn new(tolerance: f64, per_tick: u64, window: Duration) -> Self {
        Self {
            tolerance,
            per_tick: per_tick.max(1),
            window,
            active: false,
            in_flight: VecDeque::new(),
            others_total: 0,
        }
    }

    /// Clients advised within the window.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.iter().map(|(_, n, _)| n).sum()
    }

    /// Of the clients in flight, those the other nodes' counts do not show yet: the others'
    /// growth since the oldest advice is taken as arrivals.
    fn missing(&self) -> u64 {
        let Some((_, _, before)) = self.in_flight.front() else { return 0 };
        self.in_flight().saturating_sub(self.others_total.saturating_sub(*before))
    }

    /// Whether the node is shedding (above the tolerance, or on its way down to the mean).
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// How many clients to advise now.
    pub fn decide(&mut self, c: Census<'_>) -> u64 {
        while self.in_flight.front().is_some_and(|(at, _, _)| c.now.saturating_duration_since(*at) >= self.window) {
            self.in_flight.pop_front();
        }
        self.others_total = c.others.iter().sum();
        if c.draining || c.others.is_empty() {
            self.active = false;
            return 0;
        }
        let total = c.own + self.others_total + self.missing();
        let mean = total as f64 / (c.others.len() + 1) as f64;
        // Never below the mean: at least its ceiling stays.
        let floor = mean.ceil() as u64;
        if !self.active && c.own as f64 > mean * (1.0 + self.tolerance) {
            self.active = true;
        }
        if c.own <= floor {
            self.active = false;
        }
        if !self.active {
            return 0;
        }
        (c.own - floor).min(self.per_tick)
    }

    /// Records that `n` clients were advised at `now` (after the last decision).
    pub fn shed(&mut self, n: u64, now: Instant) {
        if n == 0 {
            return;
        }
        if self.in_flight.len() >= MAX_IN_FLIGHT_ENTRIES {
            self.in_flight.pop_front();
        }
        self.in_flight.push_back((now, n, self.others_total));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(10);

    fn census(own: u64, others: &[u64], now: Instant) -> Census<'_> {
        Census { own, others, draining: false, now }
    }

    /// Runs decisions as a node would, where advised clients land on the first peer at once
    /// (`arrive`) or never show up (`!arrive`), and returns the node's counts after each tick.
    fn simulate(own: u64, mut others: Vec<u64>, rate: u64, arrive: bool, ticks: usize) -> Vec<u64> {
        let mut s = Shedder::new(0.10, rate, WINDOW);
        let t0 = Instant::now();
        let mut own = own;
        let mut out = Vec::new();
        for i in 0..ticks {
            let now = t0 + Duration::from_secs(i as u64);
            let n = s.decide(census(own, &others, now));
            own -= n;
            s.shed(n, now);
            if arrive {
                others[0] += n;
            }
            out.push(own);
        }
        out
    }

    #[test]
    fn alone_a_node_never_sheds() {
        let mut s = Shedder::new(0.10, 100, WINDOW);
        assert_eq!(s.decide(census(10_000, &[], Instant::now())), 0);
    }

    #[test]
    fn at_or_below_the_mean_never_sheds() {
        let mut s = Shedder::new(0.10, 100, WINDOW);
        let now = Instant::now();
        for (own, others) in [(300, vec![300]), (0, vec![600]), (100, vec![300, 200]), (0, vec![0])] {
            assert_eq!(s.decide(census(own, &others, now)), 0, "{own} vs {others:?}");
            assert!(!s.is_active());
        }
    }

    #[test]
    fn within_the_tolerance_above_the_mean_never_starts() {
        let mut s = Shedder::new(0.10, 100, WINDOW);
        // mean 300: 330 is exactly the tolerance, not above it.
        assert_eq!(s.decide(census(330, &[270], Instant::now())), 0);
        // mean 301.5 × 1.1 = 331.65: 332 is above; it sheds down to 302, the mean's ceiling.
        assert_eq!(s.decide(census(332, &[271], Instant::now())), 30);
    }

    #[test]
    fn above_the_tolerance_it_sheds_at_the_rate() {
        let mut s = Shedder::new(0.10, 25, WINDOW);
        assert_eq!(s.decide(census(600, &[0], Instant::now())), 25);
        assert!(s.is_active());
    }

    #[test]
    fn it_stops_at_the_mean_when_clients_land_elsewhere() {
        let counts = simulate(600, vec![1], 50, true, 12);
        // mean 300.5: shed 50 a tick down to 301 (the mean's ceiling), then stop for good.
        assert_eq!(&counts[..6], &[550, 500, 450, 400, 350, 301]);
        assert!(counts[6..].iter().all(|&c| c == 301), "{counts:?}");
    }

    #[test]
    fn advised_clients_in_flight_keep_it_from_overshooting() {
        // Nobody has reconnected yet: without counting them, the mean would sink with every
        // tick and the node would shed far below the real mean.
        let counts = simulate(600, vec![0], 100, false, 5);
        assert_eq!(counts, [500, 400, 300, 300, 300]);
    }

    #[test]
    fn in_flight_clients_stop_counting_after_the_window() {
        let mut s = Shedder::new(0.10, 1000, WINDOW);
        let t0 = Instant::now();
        let n = s.decide(census(600, &[0], t0));
        assert_eq!(n, 300);
        s.shed(n, t0);
        assert_eq!(s.in_flight(), 300);
        // The advised clients never came back anywhere: after the window the node is at the
        // mean of what is really there (300 vs 0), above the tolerance, and sheds again.
        assert_eq!(s.decide(census(300, &[0], t0 + WINDOW)), 150);
        assert_eq!(s.in_flight(), 0);
    }

    #[test]
    fn hysteresis_once_started_it_goes_down_to_the_mean() {
        let mut s = Shedder::new(0.10, 10, WINDOW);
        let now = Instant::now();
        // Starts above mean × 1.1 (mean 300)…
        assert_eq!(s.decide(census(400, &[200], now)), 10);
        // …and keeps going below the tolerance line, until the mean.
        assert_eq!(s.decide(census(320, &[280], now)), 10);
        assert_eq!(s.decide(census(301, &[299], now)), 1);
        assert_eq!(s.decide(census(300, &[300], now)), 0);
        assert!(!s.is_active());
        // Stopped: within the tolerance again, it does not start over.
        assert_eq!(s.decide(census(320, &[280], now)), 0);
    }

    #[test]
    fn never_while_draining() {
        let mut s = Shedder::new(0.10, 100, WINDOW);
        let c = Census { own: 1000, others: &[0, 0], draining: true, now: Instant::now() };
        assert_eq!(s.decide(c), 0);
        assert!(!s.is_active());
    }

    #[test]
    fn several_peers_share_the_mean() {
        let mut s = Shedder::new(0.10, 1000, WINDOW);
        // 900 over three nodes: mean 300.
        assert_eq!(s.decide(census(700, &[100, 100], Instant::now())), 400);
    }

    #[test]
    fn zero_tolerance_still_stops_at_the_ceiling_of_the_mean() {
        let mut s = Shedder::new(0.0, 1000, WINDOW);
        assert_eq!(s.decide(census(301, &[300], Instant::now())), 0);
        assert_eq!(s.decide(census(303, &[300], Instant::now())), 1);
    }
}
