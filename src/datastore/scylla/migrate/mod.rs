//! The self-migration runner of the scylla backend and its distributed lock.
//!
//! # Migrations
//! Files `migrations/scylla/NNNN_name.cql` are embedded in the binary ([`MIGRATIONS`]),
//! split into statements on `;` (comments and quoted text are respected) and applied in
//! version order. After each statement the runner waits for schema agreement, so the
//! next statement never reaches a node that has not seen the previous one. A migration
//! is recorded in `schema_migrations` with the SHA-256 of its file only after all its
//! statements succeeded; its statements must therefore be idempotent (`IF NOT EXISTS`),
//! so that a migration cut short by a crash can run again from the start. `ALTER TABLE t
//! ADD c type` has no portable `IF NOT EXISTS` (Cassandra 5 has one, ScyllaDB does not),
//! so the runner makes it idempotent itself: it skips the statement when
//! `system_schema.columns` already lists the column ([`added_column`]). Before doing
//! anything the runner compares what is recorded with what is embedded: a recorded
//! migration whose file changed, or that this binary does not have, stops startup with
//! an error naming the file — the database would otherwise drift from the code silently.
//!
//! # The lock
//! Only one instance applies migrations at a time, under one LWT-guarded row renewed by a
//! heartbeat; `lock.rs` says how it is taken, kept, lost and released.
//!
//! When everything is already applied (every start but the first after a release) the
//! runner only reads `schema_migrations` and never touches the lock. The two bookkeeping
//! tables are created by the runner itself, with `IF NOT EXISTS`, before the lock exists.
//!
//! # Files
//! - `files.rs`: the embedded migration files, their checksums and statement splitting;
//! - `lock.rs`: the distributed lock and its heartbeat.

mod files;
mod lock;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use scylla::DeserializeRow;
use scylla::errors::{ExecutionError, SchemaAgreementError};

pub use self::files::{MIGRATIONS, Migration, added_column, split_statements};
pub use self::lock::{LockSettings, MigrationLock};
use super::cql::{Cas, Cql};
use super::rows::ts;
use crate::datastore::{Error, Timestamp};

const CREATE_MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (\
     version int PRIMARY KEY, file text, checksum text, applied_at timestamp, applied_by text)";
const CREATE_LOCK_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migration_lock (\
     name text PRIMARY KEY, holder text, heartbeat_at timestamp)";
const SELECT_TABLES: &str = "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ?";
const SELECT_APPLIED: &str = "SELECT version, file, checksum FROM schema_migrations";
const RECORD_APPLIED: &str = "INSERT INTO schema_migrations (version, file, checksum, \
     applied_at, applied_by) VALUES (?, ?, ?, ?, ?) IF NOT EXISTS";
const SELECT_COLUMN: &str = "SELECT column_name FROM system_schema.columns \
     WHERE keyspace_name = ? AND table_name = ? AND column_name = ?";

/// Whether an `ALTER TABLE … ADD` statement has already been applied.
async fn column_exists(
    cql: &Cql,
    keyspace: &str,
    table: &str,
    column: &str,
) -> Result<bool, Error> {
    let found: Option<(String,)> = cql
        .one(
            SELECT_COLUMN,
            (keyspace, table, column),
            "reading the columns of a table",
        )
        .await?;
    Ok(found.is_some())
}

/// Why migrating failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// An applied migration's file differs from what was recorded.
    #[error(
        "migration {path} was changed after it was applied (recorded checksum {recorded}, \
         embedded checksum {embedded}); restore the applied file and put the change in a new \
         migration"
    )]
    Edited {
        /// Repository path of the file.
        path: String,
        /// Checksum recorded when it was applied.
        recorded: String,
        /// Checksum of the embedded file.
        embedded: String,
    },
    /// A migration is recorded as applied but this binary does not have it.
    #[error(
        "migration {file} (version {version}) is recorded as applied but migrations/scylla/ in \
         this binary does not have it; run a build that includes it"
    )]
    Missing {
        /// Version recorded.
        version: i32,
        /// File name recorded.
        file: String,
    },
    /// Another instance held the lock for longer than the configured wait.
    #[error(
        "gave up after {waited:?} waiting for the migration lock held by {holder:?}; it expires \
         on its own if that holder is gone, or raise the migration wait timeout"
    )]
    LockTimeout {
        /// How long this instance waited.
        waited: Duration,
        /// The holder seen last.
        holder: String,
    },
    /// The heartbeat found the lock taken by someone else while migrating.
    #[error(
        "lost the migration lock before applying {path}: it expired or another instance took it \
         over"
    )]
    LockLost {
        /// The migration that was about to run.
        path: String,
    },
    /// A statement of a migration failed.
    #[error("migration {path} statement {number} failed")]
    Statement {
        /// Repository path of the file.
        path: String,
        /// 1-based position of the statement in the file.
        number: usize,
        /// The driver error.
        #[source]
        source: Box<ExecutionError>,
    },
    /// The cluster did not agree on the schema after a statement.
    #[error("no schema agreement after migration {path} statement {number}")]
    SchemaAgreement {
        /// Repository path of the file.
        path: String,
        /// 1-based position of the statement in the file.
        number: usize,
        /// The driver error.
        #[source]
        source: Box<SchemaAgreementError>,
    },
    /// Reading or writing the bookkeeping tables failed.
    #[error(transparent)]
    Datastore(#[from] Error),
}

/// What one run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// Files this run applied, in order.
    pub applied: Vec<&'static str>,
    /// Number of migrations that were applied before this run.
    pub already_applied: usize,
}

impl std::fmt::Display for MigrationReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.applied.is_empty() {
            write!(
                f,
                "schema up to date ({} migrations already applied)",
                self.already_applied
            )
        } else {
            write!(
                f,
                "applied {} ({} already applied)",
                self.applied.join(", "),
                self.already_applied
            )
        }
    }
}

#[derive(DeserializeRow)]
struct AppliedRow {
    version: i32,
    file: Option<String>,
    checksum: Option<String>,
}

/// Applies every pending embedded migration under the lock.
pub(super) async fn run(
    cql: &Arc<Cql>,
    keyspace: &str,
    settings: LockSettings,
) -> Result<MigrationReport, MigrateError> {
    ensure_bookkeeping(cql, keyspace).await?;
    let pending = pending(&read_applied(cql).await?, MIGRATIONS)?;
    if pending.is_empty() {
        return Ok(MigrationReport {
            applied: Vec::new(),
            already_applied: MIGRATIONS.len(),
        });
    }
    let lock = MigrationLock::acquire(cql, keyspace, settings).await?;
    let outcome = apply_pending(cql, keyspace, &lock.holder, &lock.lost).await;
    lock.release().await;
    outcome
}

/// Creates the two bookkeeping tables when they are missing.
async fn ensure_bookkeeping(cql: &Cql, keyspace: &str) -> Result<(), MigrateError> {
    let tables: Vec<(String,)> = cql
        .all(
            SELECT_TABLES,
            (keyspace,),
            "reading the tables of the keyspace",
        )
        .await?;
    let has = |name: &str| tables.iter().any(|(t,)| t == name);
    for (table, ddl) in [
        ("schema_migrations", CREATE_MIGRATIONS_TABLE),
        ("schema_migration_lock", CREATE_LOCK_TABLE),
    ] {
        if has(table) {
            continue;
        }
        cql.session()
            .query_unpaged(ddl, ())
            .await
            .map_err(|e| Error::unavailable(format!("creating table {table}"), e))?;
        cql.session()
            .await_schema_agreement()
            .await
            .map_err(|e| Error::unavailable(format!("awaiting schema agreement on {table}"), e))?;
    }
    // Another instance may have created a table a moment ago: let the schema settle
    // before statements on it are prepared.
    cql.session()
        .await_schema_agreement()
        .await
        .map_err(|e| Error::unavailable("awaiting schema agreement", e))?;
    Ok(())
}

async fn read_applied(cql: &Cql) -> Result<Vec<AppliedRow>, MigrateError> {
    Ok(cql
        .all(SELECT_APPLIED, (), "reading applied migrations")
        .await?)
}

/// Checks the recorded migrations against `embedded` and returns those still to apply.
fn pending(
    applied: &[AppliedRow],
    embedded: &'static [Migration],
) -> Result<Vec<&'static Migration>, MigrateError> {
    for row in applied {
        let Some(migration) = embedded.iter().find(|m| m.version == row.version) else {
            return Err(MigrateError::Missing {
                version: row.version,
                file: row.file.clone().unwrap_or_default(),
            });
        };
        let embedded_sum = migration.checksum();
        let recorded = row.checksum.clone().unwrap_or_default();
        if recorded != embedded_sum {
            return Err(MigrateError::Edited {
                path: migration.path(),
                recorded,
                embedded: embedded_sum,
            });
        }
    }
    let mut todo: Vec<&Migration> = embedded
        .iter()
        .filter(|m| !applied.iter().any(|row| row.version == m.version))
        .collect();
    todo.sort_by_key(|m| m.version);
    Ok(todo)
}

/// Under the lock: re-reads what is applied (the last holder usually did it all) and
/// applies the rest.
async fn apply_pending(
    cql: &Cql,
    keyspace: &str,
    holder: &str,
    lost: &AtomicBool,
) -> Result<MigrationReport, MigrateError> {
    let todo = pending(&read_applied(cql).await?, MIGRATIONS)?;
    let mut report = MigrationReport {
        applied: Vec::new(),
        already_applied: MIGRATIONS.len() - todo.len(),
    };
    for migration in todo {
        let path = migration.path();
        tracing::info!(migration = %path, "applying migration");
        for (index, statement) in migration.statements().into_iter().enumerate() {
            let number = index + 1;
            if lost.load(Ordering::Acquire) {
                return Err(MigrateError::LockLost { path });
            }
            if let Some((table, column)) = added_column(&statement)
                && column_exists(cql, keyspace, &table, &column).await?
            {
                continue;
            }
            cql.session()
                .query_unpaged(statement, ())
                .await
                .map_err(|source| MigrateError::Statement {
                    path: path.clone(),
                    number,
                    source: Box::new(source),
                })?;
            cql.session()
                .await_schema_agreement()
                .await
                .map_err(|source| MigrateError::SchemaAgreement {
                    path: path.clone(),
                    number,
                    source: Box::new(source),
                })?;
        }
        let values = (
            migration.version,
            migration.file,
            migration.checksum(),
            ts(Timestamp::now()),
            holder,
        );
        match cql
            .cas(RECORD_APPLIED, values, "recording a migration")
            .await?
        {
            Cas::Applied => {}
            Cas::NotApplied => return Err(MigrateError::LockLost { path }),
            Cas::Unknown(err) => {
                return Err(Error::unavailable(format!("recording migration {path}"), err).into());
            }
        }
        tracing::info!(migration = %path, "migration applied");
        report.applied.push(migration.file);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(version: i32, checksum: &str) -> AppliedRow {
        AppliedRow {
            version,
            file: Some(format!("{version:04}_x.cql")),
            checksum: Some(checksum.to_owned()),
        }
    }

    #[test]
    fn pending_checks_recorded_checksums() {
        assert_eq!(pending(&[], MIGRATIONS).unwrap().len(), MIGRATIONS.len());
        let good = row(1, &MIGRATIONS[0].checksum());
        assert_eq!(
            pending(&[good], MIGRATIONS).unwrap().len(),
            MIGRATIONS.len() - 1
        );

        let err = pending(&[row(1, "0bad")], MIGRATIONS).unwrap_err();
        assert!(matches!(err, MigrateError::Edited { .. }));
        assert!(
            err.to_string()
                .contains("migrations/scylla/0001_catalogue.cql"),
            "{err}"
        );

        let err = pending(&[row(9999, "x")], MIGRATIONS).unwrap_err();
        assert!(err.to_string().contains("9999_x.cql"), "{err}");
    }
}
