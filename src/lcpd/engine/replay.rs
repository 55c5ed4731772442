//! Replay protection per (peer, job_id, msg_id), with the reference's semantics: a message
//! whose envelope expiry has passed is dropped; otherwise its key is remembered until
//! `min(expiry, now + window)`, and a second message with the same key before then is dropped.
//! The store is bounded: past `max_entries` the entries closest to expiry go first.

use std::collections::{BTreeSet, HashMap};

/// Default bound on remembered keys.
pub const DEFAULT_MAX_ENTRIES: usize = 65_536;

type Key = (String, [u8; 32], [u8; 32]);

/// What to do with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// New: process it.
    Fresh,
    /// Its expiry has passed: drop it.
    Expired,
    /// Seen before: drop it.
    Replayed,
}

/// The store.
#[derive(Debug)]
pub struct ReplayStore {
    window: u64,
    max_entries: usize,
    until: HashMap<Key, u64>,
    by_time: BTreeSet<(u64, Key)>,
}

impl ReplayStore {
    /// A store keeping keys at most `window` seconds and at most `max_entries` of them.
    pub fn new(window: u64, max_entries: usize) -> Self {
        Self { window, max_entries: max_entries.max(1), until: HashMap::new(), by_time: BTreeSet::new() }
    }

    /// Checks and records a message.
    pub fn check(&mut self, now: u64, peer: &str, job_id: [u8; 32], msg_id: [u8; 32], expiry: u64) -> Verdict {
        if expiry < now {
            return Verdict::Expired;
        }
        let key = (peer.to_string(), job_id, msg_id);
        if let Some(&t) = self.until.get(&key) {
            if t >= now {
                return Verdict::Replayed;
            }
        }
        let t = expiry.min(now.saturating_add(self.window));
        if let Some(old) = self.until.insert(key.clone(), t) {
            self.by_time.remove(&(old, key.clone()));
        }
        self.by_time.insert((t, key));
        while self.until.len() > self.max_entries {
            let Some(first) = self.by_time.pop_first() else { break };
            self.until.remove(&first.1);
        }
        Verdict::Fresh
    }

    /// Forgets entries whose time has passed.
    pub fn prune(&mut self, now: u64) {
        while let Some((t, _)) = self.by_time.first() {
            if *t >= now {
                break;
            }
            if let Some((_, k)) = self.by_time.pop_first() {
                self.until.remove(&k);
            }
        }
    }

    /// Number of remembered keys.
    pub fn len(&self) -> usize {
        self.until.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.until.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_dropped_until_window_ends() {
        let mut s = ReplayStore::new(600, 100);
        assert_eq!(s.check(1000, "p", [1; 32], [2; 32], 1300), Verdict::Fresh);
        assert_eq!(s.check(1001, "p", [1; 32], [2; 32], 1300), Verdict::Replayed);
        // Another peer, job or msg id is a different key.
        assert_eq!(s.check(1001, "q", [1; 32], [2; 32], 1300), Verdict::Fresh);
        assert_eq!(s.check(1001, "p", [1; 32], [3; 32], 1300), Verdict::Fresh);
        // After the message's own expiry it is expired rather than replayed.
        assert_eq!(s.check(1301, "p", [1; 32], [2; 32], 1300), Verdict::Expired);
    }

    #[test]
    fn window_caps_a_far_expiry() {
        let mut s = ReplayStore::new(600, 100);
        assert_eq!(s.check(1000, "p", [1; 32], [2; 32], 1_000_000), Verdict::Fresh);
        assert_eq!(s.check(1600, "p", [1; 32], [2; 32], 1_000_000), Verdict::Replayed);
        s.prune(1601);
        assert!(s.is_empty());
        assert_eq!(s.check(1601, "p", [1; 32], [2; 32], 1_000_000), Verdict::Fresh);
    }

    #[test]
    fn bounded() {
        let mut s = ReplayStore::new(600, 3);
        for i in 0..10u8 {
            assert_eq!(s.check(1000, "p", [i; 32], [0; 32], 1000 + u64::from(i)), Verdict::Fresh);
        }
        assert_eq!(s.len(), 3);
        // The latest-expiring keys stay.
        assert_eq!(s.check(1000, "p", [9; 32], [0; 32], 1009), Verdict::Replayed);
    }
}
