//! SQLite records of issued invoices and outgoing payments (WAL, versioned schema).
//!
//! Records are written before the engine acts on them: an invoice before it is returned, a
//! payment attempt before it is handed to LDK.

use std::path::Path;
use std::str::FromStr;

use lightning::bitcoin::secp256k1::PublicKey;
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::payd::backend::{InvoiceRecord, InvoiceStatus, PaydError, PaymentRecord, PaymentStatus};

/// Current schema version.
pub const SCHEMA_VERSION: i64 = 2;

const SCHEMA_V1: &str = "
CREATE TABLE invoices (
    payment_hash BLOB PRIMARY KEY NOT NULL CHECK (length(payment_hash) = 32),
    bolt11 TEXT NOT NULL,
    amount_msat INTEGER NOT NULL,
    description_hash BLOB NOT NULL CHECK (length(description_hash) = 32),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    settled INTEGER NOT NULL DEFAULT 0,
    amount_received_msat INTEGER,
    settled_at INTEGER
);
CREATE TABLE payments (
    payment_hash BLOB PRIMARY KEY NOT NULL CHECK (length(payment_hash) = 32),
    bolt11 TEXT NOT NULL,
    amount_msat INTEGER NOT NULL,
    payee TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    preimage BLOB,
    fee_msat INTEGER,
    failure TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
";

/// v2: payments may be `stranded` (their HTLC sits on a force-closed channel that nothing can
/// resolve on devnet), and closed channels are kept with their close reason. SQLite cannot change
/// a CHECK constraint, so the payments table is rebuilt (row ids kept, so the listing order is).
const SCHEMA_V2: &str = "
CREATE TABLE payments_v2 (
    payment_hash BLOB PRIMARY KEY NOT NULL CHECK (length(payment_hash) = 32),
    bolt11 TEXT NOT NULL,
    amount_msat INTEGER NOT NULL,
    payee TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'stranded')),
    preimage BLOB,
    fee_msat INTEGER,
    failure TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
INSERT INTO payments_v2 (rowid, payment_hash, bolt11, amount_msat, payee, status, preimage, fee_msat, failure,
    created_at, updated_at)
    SELECT rowid, payment_hash, bolt11, amount_msat, payee, status, preimage, fee_msat, failure, created_at,
    updated_at FROM payments;
DROP TABLE payments;
ALTER TABLE payments_v2 RENAME TO payments;
CREATE TABLE closed_channels (
    channel_id BLOB PRIMARY KEY NOT NULL CHECK (length(channel_id) = 32),
    counterparty TEXT NOT NULL,
    capacity_sat INTEGER NOT NULL,
    closed_at INTEGER NOT NULL,
    reason TEXT NOT NULL,
    stranded_htlcs INTEGER NOT NULL,
    stranded_msat INTEGER NOT NULL
);
";

/// How long a closed channel stays listed.
pub const CLOSED_CHANNEL_KEEP_SECS: u64 = 30 * 24 * 3600;

/// A channel that closed, as kept for the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClosedChannelRecord {
    /// The channel id.
    pub channel_id: [u8; 32],
    /// The peer, hex (empty if LDK did not say).
    pub counterparty: String,
    /// Channel size.
    pub capacity_sat: u64,
    /// Unix seconds.
    pub closed_at: u64,
    /// Why (LDK's closure reason).
    pub reason: String,
    /// Our HTLCs in flight on it when it closed, which only the chain could resolve.
    pub stranded_htlcs: u64,
    /// Their total.
    pub stranded_msat: u64,
}

fn db(context: &'static str) -> impl FnOnce(rusqlite::Error) -> PaydError {
    move |source| PaydError::Storage { context, source }
}

/// The payd database.
pub struct Store {
    conn: Connection,
}

fn hash32(row: &Row<'_>, idx: usize) -> rusqlite::Result<[u8; 32]> {
    let v: Vec<u8> = row.get(idx)?;
    v.try_into().map_err(|v: Vec<u8>| {
        rusqlite::Error::FromSqlConversionFailure(
            idx,
            rusqlite::types::Type::Blob,
            format!("expected 32 bytes, found {}", v.len()).into(),
        )
    })
}

fn u64_col(row: &Row<'_>, idx: usize) -> rusqlite::Result<u64> {
    let v: i64 = row.get(idx)?;
    u64::try_from(v)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Integer, e.into()))
}

fn opt_u64_col(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<u64>> {
    let v: Option<i64> = row.get(idx)?;
    v.map(|v| {
        u64::try_from(v)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Integer, e.into()))
    })
    .transpose()
}

fn to_i64(field: &'static str, v: u64) -> Result<i64, PaydError> {
    i64::try_from(v).map_err(|_| PaydError::InvalidArgument {
        field,
        reason: format!("{v} does not fit the database's signed 64-bit integer"),
    })
}

const INVOICE_COLS: &str = "payment_hash, bolt11, amount_msat, description_hash, created_at, \
                            expires_at, settled, amount_received_msat, settled_at";
const PAYMENT_COLS: &str = "payment_hash, bolt11, amount_msat, payee, status, preimage, fee_msat, \
                            failure, created_at, updated_at";

fn invoice_from_row(row: &Row<'_>, now: u64) -> rusqlite::Result<InvoiceRecord> {
    let settled: bool = row.get(6)?;
    let expires_at = u64_col(row, 5)?;
    let status = if settled {
        InvoiceStatus::Settled
    } else if now >= expires_at {
        InvoiceStatus::Expired
    } else {
        InvoiceStatus::Open
    };
    Ok(InvoiceRecord {
        payment_hash: hash32(row, 0)?,
        bolt11: row.get(1)?,
        amount_msat: u64_col(row, 2)?,
        description_hash: hash32(row, 3)?,
        created_at: u64_col(row, 4)?,
        expires_at,
        status,
        amount_received_msat: opt_u64_col(row, 7)?,
        settled_at: opt_u64_col(row, 8)?,
    })
}

fn payment_from_row(row: &Row<'_>) -> rusqlite::Result<PaymentRecord> {
    let conv = |idx: usize, msg: String| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, msg.into())
    };
    let payee: String = row.get(3)?;
    let payee = PublicKey::from_str(&payee).map_err(|e| conv(3, format!("payee: {e}")))?;
    let status: String = row.get(4)?;
    let status = match status.as_str() {
        "pending" => PaymentStatus::Pending,
        "succeeded" => PaymentStatus::Succeeded,
        "failed" => PaymentStatus::Failed,
        "stranded" => PaymentStatus::Stranded,
        other => return Err(conv(4, format!("unknown payment status {other:?}"))),
    };
    let preimage: Option<Vec<u8>> = row.get(5)?;
    let preimage = preimage
        .map(|p| <[u8; 32]>::try_from(p.as_slice()).map_err(|_| conv(5, format!("preimage of {} bytes", p.len()))))
        .transpose()?;
    Ok(PaymentRecord {
        payment_hash: hash32(row, 0)?,
        bolt11: row.get(1)?,
        amount_msat: u64_col(row, 2)?,
        payee,
        status,
        preimage,
        fee_msat: opt_u64_col(row, 6)?,
        failure: row.get(7)?,
        created_at: u64_col(row, 8)?,
        updated_at: u64_col(row, 9)?,
    })
}

impl Store {
    /// Open (creating or migrating) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, PaydError> {
        let conn = Connection::open(path).map_err(db("opening the payd database"))?;
        Self::init(conn)
    }

    /// An in-memory database (tests and tools).
    pub fn open_in_memory() -> Result<Self, PaydError> {
        let conn = Connection::open_in_memory().map_err(db("opening an in-memory database"))?;
        Self::init(conn)
    }

    fn init(conn: Connection) -> Result<Self, PaydError> {
        conn.pragma_update(None, "journal_mode", "WAL").map_err(db("enabling WAL"))?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(db("setting synchronous=FULL"))?;
        conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);")
            .map_err(db("creating schema_version"))?;
        let version: Option<i64> = conn
            .query_row("SELECT max(version) FROM schema_version", [], |r| r.get(0))
            .map_err(db("reading schema_version"))?;
        let mut store = Store { conn };
        store.migrate(version.unwrap_or(0))?;
        Ok(store)
    }

    fn migrate(&mut self, from: i64) -> Result<(), PaydError> {
        if from > SCHEMA_VERSION {
            return Err(PaydError::CorruptState {
                what: "payd database".into(),
                reason: format!("schema version {from} is newer than this program's {SCHEMA_VERSION}"),
            });
        }
        if from < 1 {
            let tx = self.conn.transaction().map_err(db("starting migration"))?;
            tx.execute_batch(SCHEMA_V1).map_err(db("creating schema v1"))?;
            tx.execute("INSERT INTO schema_version (version) VALUES (1)", []).map_err(db("recording schema v1"))?;
            tx.commit().map_err(db("committing migration"))?;
        }
        if from < 2 {
            let tx = self.conn.transaction().map_err(db("starting migration"))?;
            tx.execute_batch(SCHEMA_V2).map_err(db("migrating to schema v2"))?;
            tx.execute("INSERT INTO schema_version (version) VALUES (2)", []).map_err(db("recording schema v2"))?;
            tx.commit().map_err(db("committing migration"))?;
        }
        Ok(())
    }

    /// The schema version recorded in the database.
    pub fn schema_version(&self) -> Result<i64, PaydError> {
        self.conn
            .query_row("SELECT max(version) FROM schema_version", [], |r| r.get(0))
            .map_err(db("reading schema_version"))
    }

    /// Record a new invoice.
    pub fn insert_invoice(&self, inv: &InvoiceRecord) -> Result<(), PaydError> {
        self.conn
            .execute(
                "INSERT INTO invoices (payment_hash, bolt11, amount_msat, description_hash, \
                 created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    &inv.payment_hash[..],
                    inv.bolt11,
                    to_i64("amount_msat", inv.amount_msat)?,
                    &inv.description_hash[..],
                    to_i64("created_at", inv.created_at)?,
                    to_i64("expires_at", inv.expires_at)?,
                ],
            )
            .map_err(db("inserting an invoice"))?;
        Ok(())
    }

    /// Mark an invoice settled. Returns `true` only the first time (so settlement is reported
    /// exactly once), `false` if it was already settled or is unknown.
    pub fn settle_invoice(&self, payment_hash: &[u8; 32], amount_msat: u64, now: u64) -> Result<bool, PaydError> {
        let n = self
            .conn
            .execute(
                "UPDATE invoices SET settled = 1, amount_received_msat = ?2, settled_at = ?3 \
                 WHERE payment_hash = ?1 AND settled = 0",
                params![&payment_hash[..], to_i64("amount_msat", amount_msat)?, to_i64("settled_at", now)?],
            )
            .map_err(db("settling an invoice"))?;
        Ok(n == 1)
    }

    /// Look up an invoice.
    pub fn invoice(&self, payment_hash: &[u8; 32], now: u64) -> Result<Option<InvoiceRecord>, PaydError> {
        self.conn
            .query_row(
                &format!("SELECT {INVOICE_COLS} FROM invoices WHERE payment_hash = ?1"),
                params![&payment_hash[..]],
                |r| invoice_from_row(r, now),
            )
            .optional()
            .map_err(db("reading an invoice"))
    }

    /// All invoices, oldest first.
    pub fn invoices(&self, now: u64) -> Result<Vec<InvoiceRecord>, PaydError> {
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {INVOICE_COLS} FROM invoices ORDER BY created_at, rowid"))
            .map_err(db("listing invoices"))?;
        let rows = stmt.query_map([], |r| invoice_from_row(r, now)).map_err(db("listing invoices"))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db("reading an invoice row"))
    }

    /// Record a payment attempt as pending. Returns `false` if a record for this hash exists.
    pub fn insert_pending_payment(&self, p: &PaymentRecord) -> Result<bool, PaydError> {
        let n = self
            .conn
            .execute(
                "INSERT OR IGNORE INTO payments (payment_hash, bolt11, amount_msat, payee, status, \
                 created_at, updated_at) VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?5)",
                params![
                    &p.payment_hash[..],
                    p.bolt11,
                    to_i64("amount_msat", p.amount_msat)?,
                    p.payee.to_string(),
                    to_i64("created_at", p.created_at)?,
                ],
            )
            .map_err(db("recording a payment attempt"))?;
        Ok(n == 1)
    }

    /// Forget a pending payment that was refused before anything was sent, so a later attempt
    /// can be made. Returns `true` if a pending record was removed.
    pub fn forget_unsent_payment(&self, payment_hash: &[u8; 32]) -> Result<bool, PaydError> {
        let n = self
            .conn
            .execute("DELETE FROM payments WHERE payment_hash = ?1 AND status = 'pending'", params![&payment_hash[..]])
            .map_err(db("forgetting an unsent payment"))?;
        Ok(n == 1)
    }

    /// Mark a payment succeeded. Returns `true` if this changed the record.
    pub fn payment_succeeded(
        &self,
        payment_hash: &[u8; 32],
        preimage: &[u8; 32],
        fee_msat: u64,
        now: u64,
    ) -> Result<bool, PaydError> {
        let n = self
            .conn
            .execute(
                "UPDATE payments SET status = 'succeeded', preimage = ?2, fee_msat = ?3, \
                 failure = NULL, updated_at = ?4 WHERE payment_hash = ?1 AND status != 'succeeded'",
                params![&payment_hash[..], &preimage[..], to_i64("fee_msat", fee_msat)?, to_i64("updated_at", now)?],
            )
            .map_err(db("recording a payment success"))?;
        Ok(n == 1)
    }

    /// Mark a pending (or stranded) payment failed. Returns `true` if this changed the record.
    pub fn payment_failed(&self, payment_hash: &[u8; 32], reason: &str, now: u64) -> Result<bool, PaydError> {
        let n = self
            .conn
            .execute(
                "UPDATE payments SET status = 'failed', failure = ?2, updated_at = ?3 \
                 WHERE payment_hash = ?1 AND status IN ('pending', 'stranded')",
                params![&payment_hash[..], reason, to_i64("updated_at", now)?],
            )
            .map_err(db("recording a payment failure"))?;
        Ok(n == 1)
    }

    /// Mark a pending payment stranded. Returns `true` if this changed the record.
    pub fn payment_stranded(&self, payment_hash: &[u8; 32], reason: &str, now: u64) -> Result<bool, PaydError> {
        let n = self
            .conn
            .execute(
                "UPDATE payments SET status = 'stranded', failure = ?2, updated_at = ?3 \
                 WHERE payment_hash = ?1 AND status = 'pending'",
                params![&payment_hash[..], reason, to_i64("updated_at", now)?],
            )
            .map_err(db("recording a stranded payment"))?;
        Ok(n == 1)
    }

    /// Record a closed channel (once; a repeated close event keeps the first record) and forget
    /// those closed longer than [`CLOSED_CHANNEL_KEEP_SECS`] ago.
    pub fn insert_closed_channel(&self, c: &ClosedChannelRecord) -> Result<(), PaydError> {
        self.conn
            .execute(
                "INSERT OR IGNORE INTO closed_channels (channel_id, counterparty, capacity_sat, closed_at, reason, \
                 stranded_htlcs, stranded_msat) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    &c.channel_id[..],
                    c.counterparty,
                    to_i64("capacity_sat", c.capacity_sat)?,
                    to_i64("closed_at", c.closed_at)?,
                    c.reason,
                    to_i64("stranded_htlcs", c.stranded_htlcs)?,
                    to_i64("stranded_msat", c.stranded_msat)?,
                ],
            )
            .map_err(db("recording a closed channel"))?;
        let before = c.closed_at.saturating_sub(CLOSED_CHANNEL_KEEP_SECS);
        self.conn
            .execute("DELETE FROM closed_channels WHERE closed_at < ?1", params![to_i64("closed_at", before)?])
            .map_err(db("forgetting old closed channels"))?;
        Ok(())
    }

    /// Closed channels, most recent first.
    pub fn closed_channels(&self) -> Result<Vec<ClosedChannelRecord>, PaydError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT channel_id, counterparty, capacity_sat, closed_at, reason, stranded_htlcs, stranded_msat \
                 FROM closed_channels ORDER BY closed_at DESC, rowid DESC",
            )
            .map_err(db("listing closed channels"))?;
        let rows = stmt
            .query_map([], |row| {
                Ok(ClosedChannelRecord {
                    channel_id: hash32(row, 0)?,
                    counterparty: row.get(1)?,
                    capacity_sat: u64_col(row, 2)?,
                    closed_at: u64_col(row, 3)?,
                    reason: row.get(4)?,
                    stranded_htlcs: u64_col(row, 5)?,
                    stranded_msat: u64_col(row, 6)?,
                })
            })
            .map_err(db("listing closed channels"))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db("reading a closed channel row"))
    }

    /// Look up a payment.
    pub fn payment(&self, payment_hash: &[u8; 32]) -> Result<Option<PaymentRecord>, PaydError> {
        self.conn
            .query_row(
                &format!("SELECT {PAYMENT_COLS} FROM payments WHERE payment_hash = ?1"),
                params![&payment_hash[..]],
                payment_from_row,
            )
            .optional()
            .map_err(db("reading a payment"))
    }

    /// All payments, oldest first.
    pub fn payments(&self) -> Result<Vec<PaymentRecord>, PaydError> {
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {PAYMENT_COLS} FROM payments ORDER BY created_at, rowid"))
            .map_err(db("listing payments"))?;
        let rows = stmt.query_map([], payment_from_row).map_err(db("listing payments"))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db("reading a payment row"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lightning::bitcoin::secp256k1::{Secp256k1, SecretKey};

    /// A payment of 42 msat recorded as pending at time 10.
    fn pending_payment(payment_hash: [u8; 32]) -> PaymentRecord {
        PaymentRecord {
            payment_hash,
            bolt11: "lnbcrt1".into(),
            amount_msat: 42,
            payee: payee(),
            status: PaymentStatus::Pending,
            preimage: None,
            fee_msat: None,
            failure: None,
            created_at: 10,
            updated_at: 10,
        }
    }

    fn payee() -> PublicKey {
        let sk = SecretKey::from_slice(&[9; 32]).expect("valid constant key");
        PublicKey::from_secret_key(&Secp256k1::new(), &sk)
    }

    fn invoice(h: u8) -> InvoiceRecord {
        InvoiceRecord {
            payment_hash: [h; 32],
            bolt11: format!("lnbcrt{h}"),
            amount_msat: 1000,
            description_hash: [2; 32],
            created_at: 100,
            expires_at: 200,
            status: InvoiceStatus::Open,
            amount_received_msat: None,
            settled_at: None,
        }
    }

    #[test]
    fn invoice_settles_once_and_expires() {
        let s = Store::open_in_memory().expect("db");
        assert_eq!(s.schema_version().expect("version"), SCHEMA_VERSION);
        s.insert_invoice(&invoice(1)).expect("insert");
        assert!(s.insert_invoice(&invoice(1)).is_err(), "duplicate hash refused");
        assert_eq!(s.invoice(&[1; 32], 150).expect("get").map(|i| i.status), Some(InvoiceStatus::Open));
        assert_eq!(s.invoice(&[1; 32], 200).expect("get").map(|i| i.status), Some(InvoiceStatus::Expired));
        assert!(s.settle_invoice(&[1; 32], 1000, 160).expect("settle"));
        assert!(!s.settle_invoice(&[1; 32], 1000, 161).expect("settle again"));
        assert!(!s.settle_invoice(&[7; 32], 1000, 161).expect("unknown"));
        let got = s.invoice(&[1; 32], 500).expect("get").expect("present");
        assert_eq!(got.status, InvoiceStatus::Settled);
        assert_eq!(got.settled_at, Some(160));
        assert_eq!(s.invoices(500).expect("list").len(), 1);
    }

    #[test]
    fn payment_lifecycle() {
        let s = Store::open_in_memory().expect("db");
        let rec = pending_payment([5; 32]);
        assert!(s.insert_pending_payment(&rec).expect("insert"));
        assert!(!s.insert_pending_payment(&rec).expect("second insert is a no-op"));
        assert!(s.payment_succeeded(&[5; 32], &[6; 32], 3, 11).expect("ok"));
        assert!(!s.payment_failed(&[5; 32], "late failure", 12).expect("no downgrade"));
        let got = s.payment(&[5; 32]).expect("get").expect("present");
        assert_eq!(got.status, PaymentStatus::Succeeded);
        assert_eq!(got.preimage, Some([6; 32]));
        assert_eq!(got.fee_msat, Some(3));
        assert_eq!(got.payee, payee());
        assert_eq!(s.payments().expect("list"), vec![got]);
    }

    #[test]
    fn reopen_keeps_records_and_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("payd.sqlite");
        {
            let s = Store::open(&path).expect("db");
            s.insert_invoice(&invoice(3)).expect("insert");
        }
        let s = Store::open(&path).expect("reopen");
        assert_eq!(s.schema_version().expect("version"), SCHEMA_VERSION);
        assert!(s.invoice(&[3; 32], 0).expect("get").is_some());
        let mode: String = s.conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).expect("pragma");
        assert_eq!(mode, "wal");
    }

    #[test]
    fn stranded_payment_is_definite_until_a_real_outcome_arrives() {
        let s = Store::open_in_memory().expect("db");
        let mut rec = pending_payment([7; 32]);
        assert!(s.insert_pending_payment(&rec).expect("insert"));
        assert!(s.payment_stranded(&[7; 32], "channel force-closed", 11).expect("stranded"));
        assert!(!s.payment_stranded(&[7; 32], "again", 12).expect("once"));
        let got = s.payment(&[7; 32]).expect("get").expect("present");
        assert_eq!((got.status, got.failure.as_deref()), (PaymentStatus::Stranded, Some("channel force-closed")));
        // The chain (or LDK failing it back) still decides: a later real outcome replaces it.
        assert!(s.payment_failed(&[7; 32], "failed back", 13).expect("failed"));
        assert_eq!(s.payment(&[7; 32]).expect("get").expect("present").status, PaymentStatus::Failed);
        rec.payment_hash = [8; 32];
        assert!(s.insert_pending_payment(&rec).expect("insert"));
        assert!(s.payment_stranded(&[8; 32], "x", 11).expect("stranded"));
        assert!(s.payment_succeeded(&[8; 32], &[9; 32], 0, 14).expect("succeeded"));
        // Neither outcome is downgraded to stranded.
        assert!(!s.payment_stranded(&[8; 32], "late", 15).expect("no downgrade"));
        assert!(!s.payment_stranded(&[7; 32], "late", 15).expect("no downgrade"));
    }

    #[test]
    fn closed_channels_are_kept_once_and_for_a_while() {
        let s = Store::open_in_memory().expect("db");
        let c = |id: u8, at: u64| ClosedChannelRecord {
            channel_id: [id; 32],
            counterparty: "02ab".into(),
            capacity_sat: 1000,
            closed_at: at,
            reason: format!("closed {id}"),
            stranded_htlcs: 1,
            stranded_msat: 5,
        };
        s.insert_closed_channel(&c(1, 100)).expect("insert");
        s.insert_closed_channel(&c(2, 200)).expect("insert");
        let mut again = c(1, 300);
        again.reason = "repeated".into();
        s.insert_closed_channel(&again).expect("repeat");
        assert_eq!(s.closed_channels().expect("list"), vec![c(2, 200), c(1, 100)]);
        s.insert_closed_channel(&c(3, 200 + CLOSED_CHANNEL_KEEP_SECS)).expect("insert");
        assert_eq!(s.closed_channels().expect("list"), vec![c(3, 200 + CLOSED_CHANNEL_KEEP_SECS), c(2, 200)]);
    }

    #[test]
    fn version_1_database_migrates_keeping_payments_and_their_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("payd.sqlite");
        {
            let conn = Connection::open(&path).expect("raw");
            conn.execute_batch("CREATE TABLE schema_version (version INTEGER NOT NULL);").expect("sv");
            conn.execute_batch(SCHEMA_V1).expect("v1");
            conn.execute("INSERT INTO schema_version (version) VALUES (1)", []).expect("v1 recorded");
            for (h, status) in [(2u8, "failed"), (1u8, "pending")] {
                conn.execute(
                    "INSERT INTO payments (payment_hash, bolt11, amount_msat, payee, status, created_at, updated_at) \
                     VALUES (?1, 'lnbcrt1', 5, ?2, ?3, 10, 10)",
                    params![&[h; 32][..], payee().to_string(), status],
                )
                .expect("row");
            }
        }
        let s = Store::open(&path).expect("migrated");
        assert_eq!(s.schema_version().expect("version"), 2);
        let got: Vec<_> = s.payments().expect("list").into_iter().map(|p| (p.payment_hash[0], p.status)).collect();
        assert_eq!(got, vec![(2, PaymentStatus::Failed), (1, PaymentStatus::Pending)]);
        assert!(s.payment_stranded(&[1; 32], "x", 11).expect("the new state is allowed"));
        assert!(s.closed_channels().expect("new table").is_empty());
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("payd.sqlite");
        drop(Store::open(&path).expect("db"));
        let conn = Connection::open(&path).expect("raw");
        conn.execute("INSERT INTO schema_version (version) VALUES (99)", []).expect("bump");
        drop(conn);
        assert!(matches!(Store::open(&path), Err(PaydError::CorruptState { .. })));
    }
}
