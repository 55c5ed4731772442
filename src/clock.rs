//! Wall-clock time as the services store and compare it: unix seconds.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in unix seconds (0 if the clock is before 1970).
pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
