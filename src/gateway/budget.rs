//! The per-day spending ceiling: paid prices by UTC day in `gateway.db`, kept across restarts,
//! plus in-memory reservations for jobs being paid, so that concurrent requests cannot overrun the
//! budget together.
//!
//! A request reserves its quoted price before it pays. The reservation becomes spending when the
//! payment is reported (or when the result starts, which only happens after payment), and is
//! released when the job ends without a payment. A job whose payment outcome is never learnt
//! (the client went away while it was paying and lcpd never said) counts as paid: the budget errs
//! on the side of spending less.

use rusqlite::{params, Connection};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

/// Schema of `gateway.db` (forward-only migrations; see `crate::store`).
pub const MIGRATIONS: &[&str] = &["CREATE TABLE spend (
        job_id BLOB PRIMARY KEY,
        day INTEGER NOT NULL,
        peer TEXT NOT NULL,
        price_msat INTEGER NOT NULL,
        at INTEGER NOT NULL
    );
    CREATE INDEX spend_day ON spend(day);"];

/// Seconds in a (UTC) day.
const DAY_SECS: u64 = 86_400;

/// The UTC day number of a unix time.
pub fn day_of(unix_secs: u64) -> u64 {
    unix_secs / DAY_SECS
}

/// Budget errors.
#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    /// Paying this price would exceed the day's budget.
    #[error(
        "daily budget exceeded: {price_msat} msat would bring today's spending to {would} msat, over the budget of {limit} msat"
    )]
    Exceeded {
        /// The price asked for.
        price_msat: u64,
        /// Spent plus reserved plus this price.
        would: u64,
        /// The budget.
        limit: u64,
    },
    /// The database.
    #[error(transparent)]
    Open(#[from] crate::store::StoreError),
    /// The database.
    #[error("gateway.db: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// Reservations and the day's spending, without I/O: what the budget decisions depend on.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Committed spending by day (a cache of the database for the days asked about).
    spent: HashMap<u64, u64>,
    /// Open reservations: job id -> (day, msat).
    reserved: HashMap<[u8; 32], (u64, u64)>,
}

impl Ledger {
    /// Reserved msat on `day`.
    pub fn reserved_on(&self, day: u64) -> u64 {
        self.reserved.values().filter(|(d, _)| *d == day).map(|(_, m)| *m).fold(0, u64::saturating_add)
    }

    /// Committed msat on `day`, if known.
    pub fn spent_on(&self, day: u64) -> Option<u64> {
        self.spent.get(&day).copied()
    }

    /// Records the committed total of a day (as read from the database).
    pub fn set_spent(&mut self, day: u64, msat: u64) {
        self.spent.insert(day, msat);
    }

    /// Reserves `price` for `job_id` on `day` if spent + reserved + price stays within `limit`.
    pub fn reserve(&mut self, job_id: [u8; 32], day: u64, price: u64, limit: Option<u64>) -> Result<(), BudgetError> {
        if let Some(limit) = limit {
            let would = self.spent_on(day).unwrap_or(0).saturating_add(self.reserved_on(day)).saturating_add(price);
            if would > limit {
                return Err(BudgetError::Exceeded { price_msat: price, would, limit });
            }
        }
        self.reserved.insert(job_id, (day, price));
        Ok(())
    }

    /// Drops a reservation; returns it.
    pub fn release(&mut self, job_id: &[u8; 32]) -> Option<(u64, u64)> {
        self.reserved.remove(job_id)
    }

    /// Turns a reservation into spending on `day` (the day of payment).
    pub fn commit(&mut self, job_id: &[u8; 32], day: u64, price: u64) {
        self.reserved.remove(job_id);
        let s = self.spent.entry(day).or_insert(0);
        *s = s.saturating_add(price);
    }
}

/// The budget: ledger plus database.
pub struct Budget {
    limit: Option<u64>,
    inner: Mutex<(Ledger, Connection)>,
}

impl Budget {
    /// Opens (creating) the database at `path`.
    pub fn open(path: &Path, limit: Option<u64>) -> Result<Self, BudgetError> {
        let conn = crate::store::open(path, MIGRATIONS)?;
        // A paid price is on disk before the next request is checked against it.
        conn.pragma_update(None, "synchronous", "FULL")?;
        Ok(Self { limit, inner: Mutex::new((Ledger::default(), conn)) })
    }

    fn spent_in_db(conn: &Connection, day: u64) -> Result<u64, rusqlite::Error> {
        let v: i64 = conn.query_row(
            "SELECT COALESCE(SUM(price_msat), 0) FROM spend WHERE day = ?1",
            params![day as i64],
            |r| r.get(0),
        )?;
        Ok(u64::try_from(v).unwrap_or(0))
    }

    /// Paid msat on the day of `now` (unix seconds).
    pub fn spent_today(&self, now: u64) -> Result<u64, BudgetError> {
        let day = day_of(now);
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let (ledger, conn) = &mut *g;
        if let Some(s) = ledger.spent_on(day) {
            return Ok(s);
        }
        let s = Self::spent_in_db(conn, day)?;
        ledger.set_spent(day, s);
        Ok(s)
    }

    /// Reserves `price` for a job about to be paid, or refuses when the day's budget would be
    /// exceeded.
    pub fn reserve(&self, job_id: [u8; 32], price: u64, now: u64) -> Result<(), BudgetError> {
        let day = day_of(now);
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let (ledger, conn) = &mut *g;
        if ledger.spent_on(day).is_none() {
            let s = Self::spent_in_db(conn, day)?;
            ledger.set_spent(day, s);
        }
        ledger.reserve(job_id, day, price, self.limit)
    }

    /// Releases the reservation of a job that was not paid.
    pub fn release(&self, job_id: &[u8; 32]) {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).0.release(job_id);
    }

    /// Records a paid job (once per job id) and drops its reservation.
    pub fn commit(&self, job_id: &[u8; 32], peer: &str, price: u64, now: u64) -> Result<(), BudgetError> {
        let day = day_of(now);
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let (ledger, conn) = &mut *g;
        let n = conn.execute(
            "INSERT OR IGNORE INTO spend (job_id, day, peer, price_msat, at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![&job_id[..], day as i64, peer, i64::try_from(price).unwrap_or(i64::MAX), now as i64],
        )?;
        if n == 0 {
            ledger.release(job_id);
            return Ok(());
        }
        if ledger.spent_on(day).is_none() {
            // Loads the total including the row just written.
            let s = Self::spent_in_db(conn, day)?;
            ledger.release(job_id);
            ledger.set_spent(day, s);
        } else {
            ledger.commit(job_id, day, price);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn reservations_count_against_the_limit() {
        let mut l = Ledger::default();
        l.set_spent(5, 600);
        l.reserve([1; 32], 5, 300, Some(1000)).unwrap();
        let e = l.reserve([2; 32], 5, 101, Some(1000)).unwrap_err();
        assert!(matches!(e, BudgetError::Exceeded { price_msat: 101, would: 1001, limit: 1000 }), "{e}");
        l.reserve([2; 32], 5, 100, Some(1000)).unwrap();
        assert_eq!(l.reserved_on(5), 400);
        // Other days and no limit are unaffected.
        l.reserve([3; 32], 6, 1000, Some(1000)).unwrap();
        l.reserve([4; 32], 5, u64::MAX, None).unwrap();
        l.release(&[4; 32]);
        l.release(&[1; 32]);
        l.commit(&[2; 32], 5, 100);
        assert_eq!((l.spent_on(5), l.reserved_on(5)), (Some(700), 0));
    }

    #[test]
    fn spending_survives_a_restart_and_counts_once_per_job() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("gateway.db");
        let b = Budget::open(&p, Some(1000)).unwrap();
        b.reserve([1; 32], 400, NOW).unwrap();
        b.commit(&[1; 32], "peer", 400, NOW).unwrap();
        b.commit(&[1; 32], "peer", 400, NOW).unwrap();
        assert_eq!(b.spent_today(NOW).unwrap(), 400);
        drop(b);
        let b = Budget::open(&p, Some(1000)).unwrap();
        assert_eq!(b.spent_today(NOW).unwrap(), 400);
        assert!(matches!(b.reserve([2; 32], 601, NOW), Err(BudgetError::Exceeded { would: 1001, .. })));
        b.reserve([2; 32], 600, NOW).unwrap();
        b.release(&[2; 32]);
        b.reserve([3; 32], 600, NOW).unwrap();
        // The next UTC day starts from zero.
        assert_eq!(b.spent_today(NOW + DAY_SECS).unwrap(), 0);
        b.reserve([4; 32], 1000, NOW + DAY_SECS).unwrap();
    }

    #[test]
    fn commit_without_a_cached_day_reads_the_database() {
        let d = tempfile::tempdir().unwrap();
        let b = Budget::open(&d.path().join("g.db"), None).unwrap();
        b.commit(&[1; 32], "p", 5, NOW).unwrap();
        b.commit(&[2; 32], "p", 7, NOW).unwrap();
        assert_eq!(b.spent_today(NOW).unwrap(), 12);
        assert_eq!(day_of(NOW), NOW / 86_400);
    }
}
