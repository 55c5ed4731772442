//! Per-peer limits as sans-IO state machines: the inbound rate limit (a token bucket) and the
//! keepalive clock. Time is passed in, so both are tested without waiting.

use std::time::{Duration, Instant};

/// Inbound message rate limit: a bucket of `burst` messages refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Messages accepted back to back before the sustained rate applies (at least 1).
    pub burst: u32,
    /// Sustained messages per second.
    pub per_second: u32,
}

impl Default for RateLimit {
    /// Generous enough for LCP result streams of 16 KiB chunks at tens of MB/s.
    fn default() -> Self {
        RateLimit { burst: 20_000, per_second: 10_000 }
    }
}

/// Token bucket enforcing a [`RateLimit`].
#[derive(Debug, Clone)]
pub struct TokenBucket {
    limit: RateLimit,
    /// Tokens, scaled by 1e9 so refills are exact in nanoseconds.
    nano_tokens: u128,
    last: Instant,
}

const NANOS: u128 = 1_000_000_000;

impl TokenBucket {
    /// A full bucket at time `now`.
    pub fn new(limit: RateLimit, now: Instant) -> Self {
        let limit = RateLimit { burst: limit.burst.max(1), per_second: limit.per_second };
        TokenBucket { limit, nano_tokens: u128::from(limit.burst) * NANOS, last: now }
    }

    /// The limit this bucket enforces.
    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Takes one token if available (after refilling for the time elapsed since the last call).
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_nanos();
        self.last = self.last.max(now);
        let cap = u128::from(self.limit.burst) * NANOS;
        let refill = elapsed.saturating_mul(u128::from(self.limit.per_second));
        self.nano_tokens = self.nano_tokens.saturating_add(refill).min(cap);
        if self.nano_tokens >= NANOS {
            self.nano_tokens -= NANOS;
            true
        } else {
            false
        }
    }
}

/// Keepalive settings: ping after `interval` of silence, give up after `timeout` of silence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepaliveConfig {
    /// Silence after which a ping is sent.
    pub interval: Duration,
    /// Silence after which the peer is presumed dead and disconnected (should exceed
    /// `interval`, so that a ping has a chance to be answered).
    pub timeout: Duration,
}

impl Default for KeepaliveConfig {
    fn default() -> Self {
        KeepaliveConfig { interval: Duration::from_secs(30), timeout: Duration::from_secs(90) }
    }
}

impl KeepaliveConfig {
    /// How often the keepalive clock should be checked.
    pub fn tick(&self) -> Duration {
        (self.interval.min(self.timeout) / 2).max(Duration::from_millis(1))
    }
}

/// What the keepalive clock asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepaliveAction {
    /// Nothing to do.
    Idle,
    /// Send a ping now.
    SendPing,
    /// Nothing received for `idle`: disconnect.
    Dead {
        /// Time since the last inbound traffic.
        idle: Duration,
    },
}

/// The keepalive clock of one connection.
///
/// Any inbound message counts as traffic. While our own consumer is slow and we have stopped
/// reading (back-pressure), silence is our doing, not the peer's: [`KeepaliveClock::on_tick`]
/// is then told `stalled = true` and counts it as traffic.
#[derive(Debug, Clone)]
pub struct KeepaliveClock {
    config: KeepaliveConfig,
    last_rx: Instant,
    ping_outstanding: bool,
}

impl KeepaliveClock {
    /// A clock that starts counting at `now`.
    pub fn new(config: KeepaliveConfig, now: Instant) -> Self {
        KeepaliveClock { config, last_rx: now, ping_outstanding: false }
    }

    /// Records inbound traffic at `now`.
    pub fn on_receive(&mut self, now: Instant) {
        self.last_rx = self.last_rx.max(now);
        self.ping_outstanding = false;
    }

    /// Decides what to do at `now`, given the time of the latest inbound traffic known to the
    /// caller and whether reading is paused by back-pressure.
    pub fn on_tick(&mut self, now: Instant, stalled: bool) -> KeepaliveAction {
        if stalled {
            self.on_receive(now);
            return KeepaliveAction::Idle;
        }
        let idle = now.saturating_duration_since(self.last_rx);
        if idle >= self.config.timeout {
            KeepaliveAction::Dead { idle }
        } else if idle >= self.config.interval && !self.ping_outstanding {
            self.ping_outstanding = true;
            KeepaliveAction::SendPing
        } else {
            KeepaliveAction::Idle
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_refills_at_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(RateLimit { burst: 3, per_second: 2 }, t0);
        assert!(b.try_take(t0));
        assert!(b.try_take(t0));
        assert!(b.try_take(t0));
        assert!(!b.try_take(t0), "burst exhausted");
        // 2 per second: one token every 500 ms.
        assert!(!b.try_take(t0 + Duration::from_millis(499)));
        assert!(b.try_take(t0 + Duration::from_millis(500)));
        assert!(!b.try_take(t0 + Duration::from_millis(500)));
        // A long pause refills only up to the burst.
        let later = t0 + Duration::from_secs(100);
        assert!(b.try_take(later));
        assert!(b.try_take(later));
        assert!(b.try_take(later));
        assert!(!b.try_take(later));
    }

    #[test]
    fn bucket_with_zero_rate_never_refills() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(RateLimit { burst: 0, per_second: 0 }, t0);
        assert_eq!(b.limit().burst, 1, "burst is at least one");
        assert!(b.try_take(t0));
        assert!(!b.try_take(t0 + Duration::from_secs(3600)));
    }

    #[test]
    fn bucket_ignores_time_going_backwards() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut b = TokenBucket::new(RateLimit { burst: 1, per_second: 1 }, t0);
        assert!(b.try_take(t0));
        assert!(!b.try_take(t0 - Duration::from_secs(5)));
        assert!(b.try_take(t0 + Duration::from_secs(1)));
    }

    fn clock() -> (KeepaliveClock, Instant) {
        let t0 = Instant::now();
        let c = KeepaliveClock::new(
            KeepaliveConfig { interval: Duration::from_secs(10), timeout: Duration::from_secs(30) },
            t0,
        );
        (c, t0)
    }

    #[test]
    fn keepalive_pings_once_then_declares_dead() {
        let (mut c, t0) = clock();
        assert_eq!(c.on_tick(t0 + Duration::from_secs(5), false), KeepaliveAction::Idle);
        assert_eq!(c.on_tick(t0 + Duration::from_secs(10), false), KeepaliveAction::SendPing);
        assert_eq!(
            c.on_tick(t0 + Duration::from_secs(20), false),
            KeepaliveAction::Idle,
            "one ping outstanding at a time"
        );
        assert_eq!(
            c.on_tick(t0 + Duration::from_secs(31), false),
            KeepaliveAction::Dead { idle: Duration::from_secs(31) }
        );
    }

    #[test]
    fn keepalive_traffic_resets_the_clock() {
        let (mut c, t0) = clock();
        assert_eq!(c.on_tick(t0 + Duration::from_secs(12), false), KeepaliveAction::SendPing);
        c.on_receive(t0 + Duration::from_secs(13));
        assert_eq!(c.on_tick(t0 + Duration::from_secs(20), false), KeepaliveAction::Idle);
        // 10 s of silence since the answer: a new ping; not yet the timeout.
        assert_eq!(c.on_tick(t0 + Duration::from_secs(23), false), KeepaliveAction::SendPing);
        assert_eq!(c.on_tick(t0 + Duration::from_secs(40), false), KeepaliveAction::Idle);
        assert_eq!(
            c.on_tick(t0 + Duration::from_secs(44), false),
            KeepaliveAction::Dead { idle: Duration::from_secs(31) }
        );
    }

    #[test]
    fn keepalive_stalled_reader_is_not_a_dead_peer() {
        let (mut c, t0) = clock();
        assert_eq!(c.on_tick(t0 + Duration::from_secs(60), true), KeepaliveAction::Idle);
        assert_eq!(c.on_tick(t0 + Duration::from_secs(65), false), KeepaliveAction::Idle);
        assert_eq!(
            c.on_tick(t0 + Duration::from_secs(91), false),
            KeepaliveAction::Dead { idle: Duration::from_secs(31) }
        );
    }
}
