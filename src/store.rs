//! SQLite storage shared by the stateful services: one file per service, WAL, a schema version in
//! `PRAGMA user_version`, forward-only migrations applied in one transaction each.

use rusqlite::Connection;
use std::path::Path;

/// Storage errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}: {source}")]
    Sqlite { path: String, source: rusqlite::Error },
    #[error("database {path} has schema version {found}, newer than this build knows ({known}); refusing to touch it")]
    TooNew { path: String, found: u32, known: u32 },
}

/// Opens (creating if needed) a database and brings its schema up to date. `migrations[i]` takes
/// the schema from version `i` to `i + 1`.
pub fn open(path: &Path, migrations: &[&str]) -> Result<Connection, StoreError> {
    let p = path.display().to_string();
    let e = |source| StoreError::Sqlite { path: p.clone(), source };
    let mut conn = Connection::open(path).map_err(e)?;
    conn.pragma_update(None, "journal_mode", "WAL").map_err(e)?;
    conn.pragma_update(None, "synchronous", "NORMAL").map_err(e)?;
    conn.pragma_update(None, "foreign_keys", "ON").map_err(e)?;
    conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(e)?;
    migrate(&mut conn, migrations).map_err(|err| match err {
        MigrateError::Sqlite(source) => StoreError::Sqlite { path: p.clone(), source },
        MigrateError::TooNew(found) => StoreError::TooNew { path: p.clone(), found, known: migrations.len() as u32 },
    })?;
    Ok(conn)
}

enum MigrateError {
    Sqlite(rusqlite::Error),
    TooNew(u32),
}

impl From<rusqlite::Error> for MigrateError {
    fn from(e: rusqlite::Error) -> Self {
        MigrateError::Sqlite(e)
    }
}

fn migrate(conn: &mut Connection, migrations: &[&str]) -> Result<(), MigrateError> {
    let current: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if current as usize > migrations.len() {
        return Err(MigrateError::TooNew(current));
    }
    for (i, sql) in migrations.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as u32)?;
        tx.commit()?;
    }
    Ok(())
}

/// The schema version of an open database.
pub fn schema_version(conn: &Connection) -> Result<u32, rusqlite::Error> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = "CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT NOT NULL);";
    const V2: &str = "ALTER TABLE t ADD COLUMN b INTEGER NOT NULL DEFAULT 7;";

    #[test]
    fn migrates_forward_keeps_data_and_uses_wal() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.db");
        let c = open(&p, &[V1]).unwrap();
        c.execute("INSERT INTO t (a) VALUES ('x')", []).unwrap();
        assert_eq!(schema_version(&c).unwrap(), 1);
        let mode: String = c.pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        drop(c);
        let c = open(&p, &[V1, V2]).unwrap();
        assert_eq!(schema_version(&c).unwrap(), 2);
        let (a, b): (String, i64) = c.query_row("SELECT a, b FROM t", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        assert_eq!((a.as_str(), b), ("x", 7));
    }

    #[test]
    fn failed_migration_rolls_back_and_newer_schema_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.db");
        open(&p, &[V1]).unwrap();
        let err = open(&p, &[V1, "ALTER TABLE nope ADD COLUMN x;"]).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        assert_eq!(schema_version(&open(&p, &[V1]).unwrap()).unwrap(), 1);
        open(&p, &[V1, V2]).unwrap();
        let err = open(&p, &[V1]).unwrap_err();
        assert!(matches!(err, StoreError::TooNew { found: 2, known: 1, .. }), "{err}");
    }
}
