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
//! Only one instance applies migrations at a time. The lock is one row of
//! `schema_migration_lock`, taken with `INSERT … IF NOT EXISTS USING TTL`, renewed by a
//! heartbeat every third of the TTL while migrating (`UPDATE … USING TTL … IF holder = ?`)
//! and released with `DELETE … IF holder = ?`. An instance that finds the lock held polls
//! until it is free or the configured wait runs out, logging who holds it. Once it has the
//! lock it reads the recorded migrations again, because the previous holder has usually
//! applied everything already. A holder that crashes stops renewing, its row expires with
//! the TTL, and the next instance takes over with no manual step. If the heartbeat finds
//! the lock gone (the holder stalled longer than the TTL), the runner stops before the
//! next statement instead of racing the new holder.
//!
//! When everything is already applied (every start but the first after a release) the
//! runner only reads `schema_migrations` and never touches the lock. The two bookkeeping
//! tables are created by the runner itself, with `IF NOT EXISTS`, before the lock exists.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use scylla::DeserializeRow;
use scylla::errors::{ExecutionError, SchemaAgreementError};
use sha2::{Digest, Sha256};

use super::cql::{Cas, Cql};
use super::rows::ts;
use crate::datastore::{Error, Timestamp};

/// One embedded migration file.
#[derive(Clone, Copy, Debug)]
pub struct Migration {
    /// The number the file name starts with; migrations apply in this order.
    pub version: i32,
    /// The file name, e.g. `0001_catalogue.cql`.
    pub file: &'static str,
    /// The file's content.
    pub cql: &'static str,
}

impl Migration {
    /// The path of the file in the repository, as error messages name it.
    #[must_use]
    pub fn path(&self) -> String {
        format!("migrations/scylla/{}", self.file)
    }

    /// SHA-256 of the file, hex encoded; recorded when the migration is applied.
    #[must_use]
    pub fn checksum(&self) -> String {
        hex::encode(Sha256::digest(self.cql.as_bytes()))
    }

    /// The file's statements, without comments, in order.
    #[must_use]
    pub fn statements(&self) -> Vec<String> {
        split_statements(self.cql)
    }
}

/// Every migration of the scylla backend, in version order. A test checks that this list
/// and the `migrations/scylla/` directory agree, so a new file cannot be forgotten here.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        file: "0001_catalogue.cql",
        cql: include_str!("../../../migrations/scylla/0001_catalogue.cql"),
    },
    Migration {
        version: 2,
        file: "0002_integrity.cql",
        cql: include_str!("../../../migrations/scylla/0002_integrity.cql"),
    },
    Migration {
        version: 3,
        file: "0003_revoked_tokens.cql",
        cql: include_str!("../../../migrations/scylla/0003_revoked_tokens.cql"),
    },
];

/// The lock row's key: there is one lock per keyspace.
const LOCK_NAME: &str = "migrations";

const CREATE_MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (\
     version int PRIMARY KEY, file text, checksum text, applied_at timestamp, applied_by text)";
const CREATE_LOCK_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migration_lock (\
     name text PRIMARY KEY, holder text, heartbeat_at timestamp)";
const SELECT_TABLES: &str = "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ?";
const SELECT_APPLIED: &str = "SELECT version, file, checksum FROM schema_migrations";
const RECORD_APPLIED: &str = "INSERT INTO schema_migrations (version, file, checksum, \
     applied_at, applied_by) VALUES (?, ?, ?, ?, ?) IF NOT EXISTS";
const TAKE_LOCK: &str = "INSERT INTO schema_migration_lock (name, holder, heartbeat_at) \
     VALUES (?, ?, ?) IF NOT EXISTS USING TTL ?";
const RENEW_LOCK: &str = "UPDATE schema_migration_lock USING TTL ? SET holder = ?, \
     heartbeat_at = ? WHERE name = ? IF holder = ?";
const RELEASE_LOCK: &str = "DELETE FROM schema_migration_lock WHERE name = ? IF holder = ?";
const SELECT_HOLDER: &str = "SELECT holder FROM schema_migration_lock WHERE name = ?";
const SELECT_COLUMN: &str = "SELECT column_name FROM system_schema.columns \
     WHERE keyspace_name = ? AND table_name = ? AND column_name = ?";

/// `(table, column)` when `statement` is `ALTER TABLE <table> ADD <column> <type>`.
#[must_use]
pub fn added_column(statement: &str) -> Option<(String, String)> {
    let words: Vec<&str> = statement.split_whitespace().collect();
    match words.as_slice() {
        [alter, table_kw, table, add, column, _type, ..]
            if alter.eq_ignore_ascii_case("ALTER")
                && table_kw.eq_ignore_ascii_case("TABLE")
                && add.eq_ignore_ascii_case("ADD")
                && !column.starts_with('(')
                && !column.eq_ignore_ascii_case("IF") =>
        {
            Some((table.to_ascii_lowercase(), column.to_ascii_lowercase()))
        }
        _ => None,
    }
}

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

/// How the runner waits for and holds the lock.
#[derive(Clone, Copy, Debug)]
pub struct LockSettings {
    /// Lifetime of the lock row without a heartbeat (whole seconds, at least three).
    pub ttl: Duration,
    /// How long an instance waits for another holder before giving up.
    pub wait_timeout: Duration,
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

/// The migration lock, held: a heartbeat renews it until [`MigrationLock::release`].
///
/// Migrations take it by themselves; an operator task that must not overlap a migration
/// (a manual data fix, a backfill) can take it through
/// [`ScyllaStore::hold_migration_lock`](super::ScyllaStore::hold_migration_lock).
/// Dropping it without releasing stops the heartbeat and lets the row expire by its TTL,
/// exactly as a crash would.
pub struct MigrationLock {
    cql: Arc<Cql>,
    holder: String,
    lost: Arc<AtomicBool>,
    heartbeat: Option<Heartbeat>,
}

impl MigrationLock {
    /// Waits for the lock (see the module docs) and starts renewing it.
    pub(super) async fn acquire(
        cql: &Arc<Cql>,
        keyspace: &str,
        settings: LockSettings,
    ) -> Result<Self, MigrateError> {
        ensure_bookkeeping(cql, keyspace).await?;
        let holder = holder_id();
        acquire(cql, &holder, settings).await?;
        let heartbeat = Heartbeat::start(Arc::clone(cql), holder.clone(), settings.ttl);
        Ok(Self {
            cql: Arc::clone(cql),
            holder,
            lost: Arc::clone(&heartbeat.lost),
            heartbeat: Some(heartbeat),
        })
    }

    /// This instance's name in the lock row.
    #[must_use]
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Whether the heartbeat found the lock expired or taken by another instance.
    #[must_use]
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }

    /// Stops the heartbeat and deletes the lock row if this instance still holds it.
    pub async fn release(mut self) {
        if let Some(heartbeat) = self.heartbeat.take() {
            heartbeat.stop().await;
        }
        release(&self.cql, &self.holder).await;
    }
}

impl Drop for MigrationLock {
    fn drop(&mut self) {
        if let Some(heartbeat) = self.heartbeat.take() {
            heartbeat.task.abort();
        }
    }
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

/// A name for this instance in the lock row, unique per run.
fn holder_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".to_owned());
    format!(
        "{host}/pid-{}/{}",
        std::process::id(),
        ulid::Ulid::new().to_string().to_lowercase()
    )
}

/// The shortest lock TTL used. CQL TTLs count whole seconds from the second the write
/// lands in, so a row may expire up to a second early: a shorter TTL would leave the
/// heartbeat no margin.
const MIN_LOCK_TTL_SECONDS: u64 = 3;

fn ttl_seconds(ttl: Duration) -> i32 {
    i32::try_from(ttl.as_secs().max(MIN_LOCK_TTL_SECONDS)).unwrap_or(i32::MAX)
}

/// How often the heartbeat renews: three times per TTL, minus the second a TTL can lose.
fn heartbeat_period(ttl: Duration) -> Duration {
    let seconds = ttl.as_secs().max(MIN_LOCK_TTL_SECONDS);
    Duration::from_secs(seconds - 1) / 3
}

/// Reads the current holder at serial consistency (sees in-flight lock transactions).
async fn current_holder(cql: &Cql) -> Result<Option<String>, Error> {
    let row: Option<(Option<String>,)> = cql
        .one(
            cql.serial(SELECT_HOLDER),
            (LOCK_NAME,),
            "reading the migration lock",
        )
        .await?;
    Ok(row.and_then(|(holder,)| holder))
}

/// Waits for the lock until `settings.wait_timeout`, polling with jitter.
async fn acquire(cql: &Cql, holder: &str, settings: LockSettings) -> Result<(), MigrateError> {
    let started = Instant::now();
    let poll = (settings.ttl / 10).clamp(Duration::from_millis(200), Duration::from_secs(2));
    let mut last_log: Option<Instant> = None;
    loop {
        let values = (
            LOCK_NAME,
            holder,
            ts(Timestamp::now()),
            ttl_seconds(settings.ttl),
        );
        let answer = cql
            .cas(TAKE_LOCK, values, "taking the migration lock")
            .await?;
        if matches!(answer, Cas::Applied) {
            tracing::info!(holder, "took the migration lock");
            return Ok(());
        }
        if let Cas::Unknown(err) = &answer {
            tracing::warn!(error = %err, "taking the migration lock failed; checking who holds it");
        }
        let seen = match current_holder(cql).await {
            Ok(seen) => seen,
            Err(err) => {
                tracing::warn!(error = %err, "could not read the migration lock; retrying");
                None
            }
        };
        if seen.as_deref() == Some(holder) {
            tracing::info!(holder, "took the migration lock");
            return Ok(());
        }
        let waited = started.elapsed();
        let seen = seen.unwrap_or_else(|| "nobody".to_owned());
        if waited >= settings.wait_timeout {
            return Err(MigrateError::LockTimeout {
                waited,
                holder: seen,
            });
        }
        if last_log.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
            tracing::info!(
                held_by = %seen,
                waited_ms = u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
                wait_timeout_ms = u64::try_from(settings.wait_timeout.as_millis()).unwrap_or(u64::MAX),
                "migration lock is held; waiting"
            );
            last_log = Some(Instant::now());
        }
        // Up to 50 % jitter so that waiting instances do not poll in lockstep.
        let jitter = poll.mul_f64(
            f64::from(u8::try_from(ulid::Ulid::new().random() & 0x7f).unwrap_or(0)) / 255.0,
        );
        tokio::time::sleep(poll + jitter).await;
    }
}

/// Releases the lock if this instance still holds it. A failure only delays the next
/// migrator until the TTL expires, so it is logged, not returned.
async fn release(cql: &Cql, holder: &str) {
    for _ in 0..2 {
        match cql
            .cas(
                RELEASE_LOCK,
                (LOCK_NAME, holder),
                "releasing the migration lock",
            )
            .await
        {
            Ok(Cas::Applied) => {
                tracing::info!(holder, "released the migration lock");
                return;
            }
            Ok(Cas::NotApplied) => {
                tracing::warn!(
                    holder,
                    "the migration lock was no longer held by this instance"
                );
                return;
            }
            Ok(Cas::Unknown(err)) => {
                tracing::warn!(error = %err, "releasing the migration lock failed; retrying");
            }
            Err(err) => {
                tracing::warn!(error = %err, "releasing the migration lock failed; retrying");
            }
        }
    }
    tracing::warn!(
        holder,
        "could not release the migration lock; it expires with its ttl"
    );
}

/// Renews the lock every third of its TTL until stopped; sets `lost` when the row turns
/// out to belong to someone else.
struct Heartbeat {
    lost: Arc<AtomicBool>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Heartbeat {
    fn start(cql: Arc<Cql>, holder: String, ttl: Duration) -> Self {
        let lost = Arc::new(AtomicBool::new(false));
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let flag = Arc::clone(&lost);
        let every = heartbeat_period(ttl);
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stopped => return,
                    () = tokio::time::sleep(every) => {}
                }
                let values = (
                    ttl_seconds(ttl),
                    holder.as_str(),
                    ts(Timestamp::now()),
                    LOCK_NAME,
                    holder.as_str(),
                );
                match cql
                    .cas(RENEW_LOCK, values, "renewing the migration lock")
                    .await
                {
                    Ok(Cas::Applied) => tracing::debug!("renewed the migration lock"),
                    Ok(Cas::NotApplied) => {
                        tracing::error!(
                            holder,
                            "the migration lock expired or was taken over; stopping"
                        );
                        flag.store(true, Ordering::Release);
                        return;
                    }
                    Ok(Cas::Unknown(err)) => {
                        tracing::warn!(error = %err, "renewing the migration lock failed; will retry");
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "renewing the migration lock failed; will retry");
                    }
                }
            }
        });
        Self { lost, stop, task }
    }

    async fn stop(self) {
        // The task may already have ended (lock lost); then there is no receiver.
        let _ = self.stop.send(());
        if let Err(err) = self.task.await {
            tracing::warn!(error = %err, "migration lock heartbeat ended abnormally");
        }
    }
}

/// Splits CQL text into statements on `;`, dropping `--`, `//` and `/* */` comments and
/// respecting `'strings'`, `"identifiers"` and `$$pg-style$$` literals.
#[must_use]
pub fn split_statements(text: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '-' if chars.peek() == Some(&'-') => skip_line(&mut chars),
            '/' if chars.peek() == Some(&'/') => skip_line(&mut chars),
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = '\0';
                for c in chars.by_ref() {
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
                current.push(' ');
            }
            '\'' | '"' => {
                current.push(c);
                // A doubled quote inside is an escaped quote: it closes and reopens.
                for inner in chars.by_ref() {
                    current.push(inner);
                    if inner == c {
                        break;
                    }
                }
            }
            '$' if chars.peek() == Some(&'$') => {
                chars.next();
                current.push_str("$$");
                let mut prev = '\0';
                for inner in chars.by_ref() {
                    current.push(inner);
                    if prev == '$' && inner == '$' {
                        break;
                    }
                    prev = inner;
                }
            }
            ';' => push_statement(&mut statements, &mut current),
            _ => current.push(c),
        }
    }
    push_statement(&mut statements, &mut current);
    statements
}

fn skip_line(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    for c in chars.by_ref() {
        if c == '\n' {
            break;
        }
    }
}

fn push_statement(statements: &mut Vec<String>, current: &mut String) {
    let statement = current.trim();
    if !statement.is_empty() {
        statements.push(statement.to_owned());
    }
    current.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_semicolons_outside_comments_and_literals() {
        let text = "-- a comment; with a semicolon\n\
                    CREATE TABLE a (x int PRIMARY KEY) WITH comment = 'x;y';\n\
                    /* block; comment */ INSERT INTO \"we;ird\" (x) VALUES (1);\n\
                    // another; one\n\
                    SELECT $$a;b$$ FROM t  ;  ;\n\
                    UPDATE t SET s = 'it''s; fine' WHERE x = 1";
        assert_eq!(
            split_statements(text),
            vec![
                "CREATE TABLE a (x int PRIMARY KEY) WITH comment = 'x;y'",
                "INSERT INTO \"we;ird\" (x) VALUES (1)",
                "SELECT $$a;b$$ FROM t",
                "UPDATE t SET s = 'it''s; fine' WHERE x = 1",
            ]
        );
    }

    #[test]
    fn embedded_migrations_match_the_directory() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/scylla");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| {
                std::path::Path::new(name)
                    .extension()
                    .is_some_and(|e| e == "cql")
            })
            .collect();
        files.sort();
        let embedded: Vec<&str> = MIGRATIONS.iter().map(|m| m.file).collect();
        assert_eq!(
            files,
            embedded,
            "MIGRATIONS must list every file of {}",
            dir.display()
        );
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.file[..4].parse::<i32>().unwrap(), m.version, "{}", m.file);
            assert_eq!(
                m.version,
                i32::try_from(i).unwrap() + 1,
                "versions are 1, 2, 3, …"
            );
            assert_eq!(std::fs::read_to_string(dir.join(m.file)).unwrap(), m.cql);
            assert!(!m.statements().is_empty(), "{} has statements", m.file);
        }
    }

    #[test]
    fn every_migration_statement_is_idempotent_ddl() {
        for m in MIGRATIONS {
            for s in m.statements() {
                let upper = s.to_uppercase();
                assert!(
                    (upper.starts_with("CREATE") && upper.contains("IF NOT EXISTS"))
                        || added_column(&s).is_some(),
                    "{}: a migration statement must be re-runnable: {s}",
                    m.file
                );
            }
        }
    }

    #[test]
    fn alter_add_is_recognised_for_the_runner_to_skip() {
        assert_eq!(
            added_column("ALTER TABLE categories ADD deleting text"),
            Some(("categories".to_owned(), "deleting".to_owned()))
        );
        assert_eq!(
            added_column("alter table Categories add Pending_Refs set<text>"),
            Some(("categories".to_owned(), "pending_refs".to_owned()))
        );
        assert_eq!(added_column("ALTER TABLE t ADD (a int, b int)"), None);
        assert_eq!(added_column("ALTER TABLE t ADD IF NOT EXISTS a int"), None);
        assert_eq!(
            added_column("CREATE TABLE IF NOT EXISTS t (a int PRIMARY KEY)"),
            None
        );
    }

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
