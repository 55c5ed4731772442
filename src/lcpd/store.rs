//! lcpd's job store (`lcpd.db`): provider and requester jobs, their states, quotes, payment
//! hashes, inputs and results. Records are JSON (fields can be added with defaults); input and
//! result bytes sit in their own columns and are written once.
//!
//! The database runs with `synchronous = FULL`: a record the engine asked to keep is on disk
//! before the engine's next action (a quote sent, a job dispatched, a payment attempted).

use super::engine::{ProviderRecord, RequesterRecord};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;

/// Schema of `lcpd.db` (forward-only migrations; see `crate::store`).
pub const MIGRATIONS: &[&str] = &["CREATE TABLE provider_jobs (
        peer TEXT NOT NULL,
        job_id BLOB NOT NULL,
        state TEXT NOT NULL,
        payment_hash BLOB,
        record TEXT NOT NULL,
        input BLOB,
        result BLOB,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (peer, job_id)
    );
    CREATE INDEX provider_jobs_state ON provider_jobs(state);
    CREATE INDEX provider_jobs_updated ON provider_jobs(updated_at);
    CREATE TABLE requester_jobs (
        job_id BLOB PRIMARY KEY,
        peer TEXT NOT NULL,
        state TEXT NOT NULL,
        record TEXT NOT NULL,
        input BLOB,
        result BLOB,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE INDEX requester_jobs_state ON requester_jobs(state);
    CREATE INDEX requester_jobs_updated ON requester_jobs(updated_at);"];

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum JobStoreError {
    #[error(transparent)]
    Open(#[from] crate::store::StoreError),
    #[error("lcpd.db: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("lcpd.db: a stored record is unreadable: {0}")]
    Record(#[from] serde_json::Error),
}

/// A provider job to resume, with its input when it is unfinished.
pub type ResumedProvider = (ProviderRecord, Option<Vec<u8>>);

/// The store.
pub struct JobStore {
    conn: Connection,
}

impl JobStore {
    /// Opens `path`, migrating it.
    pub fn open(path: &Path) -> Result<Self, JobStoreError> {
        let conn = crate::store::open(path, MIGRATIONS)?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        Ok(Self { conn })
    }

    /// Writes a provider job; `input` and `result` only when given.
    pub fn save_provider(
        &self,
        rec: &ProviderRecord,
        input: Option<&[u8]>,
        result: Option<&[u8]>,
    ) -> Result<(), JobStoreError> {
        let json = serde_json::to_string(rec)?;
        let paid_hash: Option<&[u8]> = (!rec.bolt11.is_empty()).then_some(&rec.payment_hash[..]);
        self.conn.execute(
            "INSERT INTO provider_jobs (peer, job_id, state, payment_hash, record, input, result, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (peer, job_id) DO UPDATE SET
               state = excluded.state, payment_hash = excluded.payment_hash, record = excluded.record,
               input = COALESCE(excluded.input, input), result = COALESCE(excluded.result, result),
               updated_at = excluded.updated_at",
            params![
                rec.peer,
                &rec.job_id[..],
                rec.state.as_str(),
                paid_hash,
                json,
                input,
                result,
                rec.created_at as i64,
                rec.updated_at as i64
            ],
        )?;
        Ok(())
    }

    /// Writes a requester job; `input` and `result` only when given.
    pub fn save_requester(
        &self,
        rec: &RequesterRecord,
        input: Option<&[u8]>,
        result: Option<&[u8]>,
    ) -> Result<(), JobStoreError> {
        let json = serde_json::to_string(rec)?;
        self.conn.execute(
            "INSERT INTO requester_jobs (job_id, peer, state, record, input, result, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (job_id) DO UPDATE SET
               state = excluded.state, record = excluded.record,
               input = COALESCE(excluded.input, input), result = COALESCE(excluded.result, result),
               updated_at = excluded.updated_at",
            params![
                &rec.job_id[..],
                rec.peer,
                rec.state.as_str(),
                json,
                input,
                result,
                rec.created_at as i64,
                rec.updated_at as i64
            ],
        )?;
        Ok(())
    }

    /// Provider jobs to resume: unfinished ones, and finished ones updated since `since`
    /// (so a requester asking again gets the stored result), with their inputs.
    pub fn provider_to_resume(&self, since: u64) -> Result<Vec<ResumedProvider>, JobStoreError> {
        let mut st = self.conn.prepare(
            "SELECT record, CASE WHEN state IN ('done','failed','cancelled','expired') THEN NULL ELSE input END
             FROM provider_jobs WHERE state NOT IN ('done','failed','cancelled','expired') OR updated_at >= ?1
             ORDER BY created_at",
        )?;
        let rows =
            st.query_map(params![since as i64], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<Vec<u8>>>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (json, input) = row?;
            out.push((serde_json::from_str(&json)?, input));
        }
        Ok(out)
    }

    /// Requester jobs to resume, as [`Self::provider_to_resume`], and ended jobs of any age
    /// whose payment's outcome is still unknown.
    pub fn requester_to_resume(&self, since: u64) -> Result<Vec<(RequesterRecord, Vec<u8>)>, JobStoreError> {
        let mut st = self.conn.prepare(
            "SELECT record, input FROM requester_jobs
             WHERE state NOT IN ('done','failed','cancelled','expired') OR updated_at >= ?1
                OR json_extract(record, '$.payment_unresolved') = 1
             ORDER BY created_at",
        )?;
        let rows =
            st.query_map(params![since as i64], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<Vec<u8>>>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (json, input) = row?;
            out.push((serde_json::from_str(&json)?, input.unwrap_or_default()));
        }
        Ok(out)
    }

    /// The stored result of a provider job.
    pub fn provider_result(&self, peer: &str, job_id: &[u8; 32]) -> Result<Option<Vec<u8>>, JobStoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT result FROM provider_jobs WHERE peer = ?1 AND job_id = ?2",
                params![peer, &job_id[..]],
                |r| r.get::<_, Option<Vec<u8>>>(0),
            )
            .optional()?
            .flatten())
    }

    /// The stored result of a requester job.
    pub fn requester_result(&self, job_id: &[u8; 32]) -> Result<Option<Vec<u8>>, JobStoreError> {
        Ok(self
            .conn
            .query_row("SELECT result FROM requester_jobs WHERE job_id = ?1", params![&job_id[..]], |r| {
                r.get::<_, Option<Vec<u8>>>(0)
            })
            .optional()?
            .flatten())
    }

    /// The newest provider jobs, newest first.
    pub fn provider_jobs(&self, limit: u32) -> Result<Vec<ProviderRecord>, JobStoreError> {
        self.records("SELECT record FROM provider_jobs ORDER BY created_at DESC, rowid DESC LIMIT ?1", params![limit])
    }

    /// The newest requester jobs, newest first.
    pub fn requester_jobs(&self, limit: u32) -> Result<Vec<RequesterRecord>, JobStoreError> {
        self.records("SELECT record FROM requester_jobs ORDER BY created_at DESC, rowid DESC LIMIT ?1", params![limit])
    }

    /// The records (JSON in column 0) a query selects.
    fn records<T: serde::de::DeserializeOwned>(
        &self,
        sql: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<T>, JobStoreError> {
        let mut st = self.conn.prepare(sql)?;
        let rows = st.query_map(args, |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for json in rows {
            out.push(serde_json::from_str(&json?)?);
        }
        Ok(out)
    }

    /// Provider jobs with this job id (any peer).
    pub fn provider_job(&self, job_id: &[u8; 32]) -> Result<Vec<ProviderRecord>, JobStoreError> {
        self.records("SELECT record FROM provider_jobs WHERE job_id = ?1", params![&job_id[..]])
    }

    /// A requester job.
    pub fn requester_job(&self, job_id: &[u8; 32]) -> Result<Option<RequesterRecord>, JobStoreError> {
        Ok(self.records("SELECT record FROM requester_jobs WHERE job_id = ?1", params![&job_id[..]])?.pop())
    }

    /// Counts per state (for status and tests): `(role, state, count)`.
    pub fn counts(&self) -> Result<Vec<(String, String, u64)>, JobStoreError> {
        let mut out = Vec::new();
        for (role, table) in [("provider", "provider_jobs"), ("requester", "requester_jobs")] {
            let mut st = self.conn.prepare(&format!("SELECT state, COUNT(*) FROM {table} GROUP BY state"))?;
            let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            for row in rows {
                let (s, n) = row?;
                out.push((role.to_string(), s, n.max(0) as u64));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lcpd::engine::{ProviderState, RequesterState};

    fn prec(state: ProviderState, t: u64) -> ProviderRecord {
        ProviderRecord {
            peer: "02aa".into(),
            job_id: [t as u8; 32],
            state,
            protocol_version: 2,
            task_kind: "k".into(),
            params: None,
            model: None,
            input_content_type: "c".into(),
            input_content_encoding: "identity".into(),
            input_len: 3,
            price_msat: 1,
            quote_expiry: 9,
            terms_hash: [1; 32],
            bolt11: "lnbcrt1".into(),
            payment_hash: [2; 32],
            quote_response: vec![1, 2],
            result_content_type: None,
            result_len: None,
            result_hash: None,
            error: None,
            created_at: t,
            updated_at: t,
        }
    }

    #[test]
    fn provider_jobs_round_trip_and_resume_selection() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = JobStore::open(&dir.path().join("lcpd.db")).expect("open");
        s.save_provider(&prec(ProviderState::Quoted, 10), Some(b"in"), None).expect("save");
        // A later save without input keeps the input; with a result adds it.
        let mut r = prec(ProviderState::Done, 10);
        r.updated_at = 20;
        s.save_provider(&r, None, Some(b"out")).expect("save");
        s.save_provider(&prec(ProviderState::Paid, 11), Some(b"in2"), None).expect("save");
        s.save_provider(&prec(ProviderState::Failed, 12), None, None).expect("save");
        let resume = s.provider_to_resume(15).expect("resume");
        let states: Vec<_> = resume.iter().map(|(r, i)| (r.job_id[0], r.state, i.clone())).collect();
        assert_eq!(
            states,
            vec![(10, ProviderState::Done, None), (11, ProviderState::Paid, Some(b"in2".to_vec()))],
            "unfinished with input, recently finished without, old finished not at all"
        );
        assert_eq!(s.provider_result("02aa", &[10; 32]).expect("q"), Some(b"out".to_vec()));
        assert_eq!(s.provider_jobs(10).expect("list").len(), 3);
        // Reopen: the schema stays, the data stays.
        drop(s);
        let s = JobStore::open(&dir.path().join("lcpd.db")).expect("reopen");
        assert_eq!(s.provider_job(&[11; 32]).expect("q")[0].state, ProviderState::Paid);
        let counts = s.counts().expect("counts");
        assert!(counts.contains(&("provider".into(), "paid".into(), 1)));
    }

    #[test]
    fn requester_jobs_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = JobStore::open(&dir.path().join("lcpd.db")).expect("open");
        let rec = RequesterRecord {
            peer: "02bb".into(),
            job_id: [7; 32],
            state: RequesterState::Paying,
            task_kind: "k".into(),
            params: Some(vec![1, 1, b'a']),
            model: Some("a".into()),
            input_content_type: "c".into(),
            input_len: 2,
            max_price_msat: Some(9),
            price_msat: 5,
            quote_expiry: 100,
            terms_hash: [3; 32],
            bolt11: "lnbcrt1".into(),
            payment_hash: [4; 32],
            preimage: None,
            payment_unresolved: false,
            result_content_type: None,
            result_len: None,
            result_hash: None,
            error: None,
            created_at: 1,
            updated_at: 1,
        };
        s.save_requester(&rec, Some(b"in"), None).expect("save");
        let resumed = s.requester_to_resume(50).expect("resume");
        assert_eq!(resumed, vec![(rec.clone(), b"in".to_vec())]);
        let mut done = rec.clone();
        done.state = RequesterState::Done;
        done.updated_at = 2;
        s.save_requester(&done, None, Some(b"res")).expect("save");
        assert!(s.requester_to_resume(50).expect("resume").is_empty());
        assert_eq!(s.requester_job(&[7; 32]).expect("q"), Some(done));
        assert_eq!(s.requester_result(&[7; 32]).expect("q"), Some(b"res".to_vec()));
        // An old ended job whose payment's outcome is unknown is resumed whatever its age; a
        // record written before the field existed reads as resolved.
        let mut failed = rec.clone();
        (failed.job_id, failed.state, failed.payment_unresolved) = ([8; 32], RequesterState::Failed, true);
        s.save_requester(&failed, Some(b"in2"), None).expect("save");
        assert_eq!(s.requester_to_resume(50).expect("resume"), vec![(failed.clone(), b"in2".to_vec())]);
        failed.payment_unresolved = false;
        s.save_requester(&failed, None, None).expect("save");
        assert!(s.requester_to_resume(50).expect("resume").is_empty());
        let old_json = serde_json::to_string(&failed).expect("json").replace(",\"payment_unresolved\":false", "");
        assert!(!old_json.contains("payment_unresolved"));
        let old: RequesterRecord = serde_json::from_str(&old_json).expect("an older record still reads");
        assert_eq!(old, failed);
    }
}
