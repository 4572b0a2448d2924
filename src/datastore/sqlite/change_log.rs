//! The change log on SQLite: appending a write's records in the write's own savepoint,
//! and reading, heading and pruning the log (the `change_log` table of
//! `migrations/sqlite/0004_change_log.sql`).
//!
//! # Appending
//! A write body appends the records the shared builders of [`crate::datastore::changes`]
//! make, on the write connection, after its checks passed: inside its savepoint of the
//! batch's transaction. If anything after the append fails, the writer rolls the
//! savepoint back, records included; if the batch fails, nothing of it commits. So a
//! record is visible exactly when its write is.
//!
//! One write's records go in one statement: a single record with six parameters, several
//! as one JSON array read by `json_each` in array order (`ORDER BY key`), so the rows, and
//! their positions, follow the builders' order. [`append_sql`] builds that statement with
//! a guard, so a write may run it in the same round trip as its own statement (see
//! `products::create`); [`append`] runs it alone.
//!
//! # Positions are dense
//! Positions come from `AUTOINCREMENT`: one more than the highest ever assigned, which
//! SQLite keeps in `sqlite_sequence`, an ordinary table written in the same savepoint as
//! the rows. Writes are serialized by the write lock (`BEGIN IMMEDIATE`, for this
//! process and every other one on the file), so positions are assigned in commit order.
//! A write rolled back to its savepoint restores `sqlite_sequence` with its rows, so the
//! next write of the batch takes the very next position; a batch that fails restores
//! both entirely. Nothing is cached in memory: every instance on the file reads and
//! extends the same sequence. (`rolled_back_appends_leave_no_gap` in `writer/tests.rs`
//! holds this to account for writes that appended and then failed or panicked inside a
//! batch, and `tests/it/sqlite/change_log.rs` through the store's own writes, for two
//! stores on one file, and across pruning.)
//!
//! # Reading
//! Reads use the read pool. A read of records and `pruned_through` is one statement,
//! hence one snapshot: a prune that commits meanwhile cannot make the records and the
//! bound disagree.

use std::sync::LazyLock;

use sqlx::query::Query;
use sqlx::sqlite::{SqliteArguments, SqlitePool};
use sqlx::{Sqlite, SqliteConnection};

use super::errors::unavailable;
use crate::datastore::{
    Change, ChangeEntity, ChangeKind, ChangeRead, ChangeRecord, Error, Result, Timestamp,
};

/// The columns every append writes.
const INSERT: &str =
    "INSERT INTO change_log (kind, entity, entity_id, version, at, changed_fields)";

/// The `SELECT` of one record: six parameters.
const ONE: &str = "SELECT ?, ?, ?, ?, ?, ?";

/// The `SELECT` of several records: one parameter, a JSON array of
/// `[kind, entity, id, version, at, fields]` arrays (see [`Records`]).
const MANY: &str = "SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, \
                    value ->> 5 FROM json_each(?)";

/// The statement appending one write's records when the SQL condition `guard` holds
/// (its parameters are bound after the records'): for one record when `many` is false,
/// for several (in array order) when it is true.
pub(super) fn append_sql(many: bool, guard: &str) -> String {
    if many {
        format!("{INSERT} {MANY} WHERE {guard} ORDER BY key")
    } else {
        format!("{INSERT} {ONE} WHERE {guard}")
    }
}

/// [`append_sql`] without a guard, by shape.
static PLAIN: LazyLock<[String; 2]> = LazyLock::new(|| [false, true].map(|m| append_sql(m, "1")));

/// One write's records, ready to bind to the statement of their shape.
pub(super) enum Records<'a> {
    /// A single record, bound column by column.
    One(&'a Change),
    /// Several, as one JSON array.
    Many(String),
}

impl<'a> Records<'a> {
    /// Prepares `changes` (the builders' output, in order) for binding.
    ///
    /// # Errors
    /// [`Error::Internal`] if they cannot be encoded (never expected: strings and
    /// integers only).
    pub(super) fn new(changes: &'a [Change]) -> Result<Self> {
        if let [one] = changes {
            return Ok(Self::One(one));
        }
        let rows: Vec<_> = changes
            .iter()
            .map(|c| {
                (
                    c.kind.as_str(),
                    c.entity.as_str(),
                    c.id.as_str(),
                    c.version.map(Timestamp::millis),
                    c.at.millis(),
                    c.fields_joined(),
                )
            })
            .collect();
        serde_json::to_string(&rows)
            .map(Self::Many)
            .map_err(|e| Error::internal("encoding change records", e))
    }

    /// Whether these are bound as a JSON array ([`append_sql`] with `many`).
    pub(super) const fn is_many(&self) -> bool {
        matches!(self, Self::Many(_))
    }

    /// Binds the records to `query`, whose statement is [`append_sql`] of this shape
    /// (possibly after other statements whose parameters are already bound).
    pub(super) fn bind<'q>(
        self,
        query: Query<'q, Sqlite, SqliteArguments<'q>>,
    ) -> Query<'q, Sqlite, SqliteArguments<'q>>
    where
        'a: 'q,
    {
        match self {
            Self::One(c) => query
                .bind(c.kind.as_str())
                .bind(c.entity.as_str())
                .bind(c.id.as_str())
                .bind(c.version.map(Timestamp::millis))
                .bind(c.at.millis())
                .bind(c.fields_joined()),
            Self::Many(json) => query.bind(json),
        }
    }
}

/// Appends `changes` on the write connection, in its own statement.
pub(super) async fn append(
    conn: &mut SqliteConnection,
    changes: &[Change],
    what: &str,
) -> Result<()> {
    let records = Records::new(changes)?;
    let sql = &PLAIN[usize::from(records.is_many())];
    records
        .bind(sqlx::query(sql))
        .execute(conn)
        .await
        .map_err(|e| unavailable(what, e))?;
    Ok(())
}

/// A row of [`read`]: the meta row, joined to at most one record.
#[derive(sqlx::FromRow)]
struct LogRow {
    position: Option<i64>,
    kind: Option<String>,
    entity: Option<String>,
    entity_id: Option<String>,
    version: Option<i64>,
    at: Option<i64>,
    changed_fields: Option<String>,
    pruned_through: i64,
}

impl LogRow {
    /// The record this row carries, if any.
    fn into_record(self) -> Result<Option<ChangeRecord>> {
        let Some(position) = self.position else {
            return Ok(None);
        };
        let corrupt = |field: &str, value: Option<&str>| {
            Error::internal(
                format!("change record {position} has an unreadable {field}"),
                format!("stored value {value:?}"),
            )
        };
        let kind = self
            .kind
            .as_deref()
            .and_then(ChangeKind::parse)
            .ok_or_else(|| corrupt("kind", self.kind.as_deref()))?;
        let entity = self
            .entity
            .as_deref()
            .and_then(ChangeEntity::parse)
            .ok_or_else(|| corrupt("entity", self.entity.as_deref()))?;
        let at = self.at.ok_or_else(|| corrupt("time", None))?;
        Ok(Some(ChangeRecord {
            position: position_of(position),
            change: Change {
                kind,
                entity,
                id: self.entity_id.ok_or_else(|| corrupt("entity id", None))?,
                version: self.version.map(Timestamp::from_millis),
                at: Timestamp::from_millis(at),
                changed_fields: Change::split_fields(self.changed_fields.as_deref().unwrap_or("")),
            },
        }))
    }
}

/// Up to `limit` records after `after`, ascending, and `pruned_through`, from one
/// snapshot: the one meta row left-joined to the page of records.
pub(super) async fn read(pool: &SqlitePool, after: u64, limit: usize) -> Result<ChangeRead> {
    let rows = sqlx::query_as::<_, LogRow>(
        "SELECT c.position, c.kind, c.entity, c.entity_id, c.version, c.at, c.changed_fields, \
         m.pruned_through FROM change_log_meta m LEFT JOIN \
         (SELECT * FROM change_log WHERE position > ? ORDER BY position LIMIT ?) c ON 1 \
         ORDER BY c.position",
    )
    .bind(stored_position(after))
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await
    .map_err(|e| unavailable("reading the change log", e))?;
    let pruned_through = rows.first().map_or(0, |r| position_of(r.pruned_through));
    let mut records = Vec::with_capacity(rows.len());
    for row in rows {
        records.extend(row.into_record()?);
    }
    Ok(ChangeRead {
        records,
        pruned_through,
    })
}

/// The highest position ever assigned that is still known: the newest record's, or
/// `pruned_through` when retention removed every record (so it never goes back).
pub(super) async fn head(pool: &SqlitePool) -> Result<u64> {
    let head: i64 = sqlx::query_scalar(
        "SELECT max(m.pruned_through, coalesce((SELECT max(position) FROM change_log), 0)) \
         FROM change_log_meta m",
    )
    .fetch_one(pool)
    .await
    .map_err(|e| unavailable("reading the change log head", e))?;
    Ok(position_of(head))
}

/// Removes the longest prefix of records older than `before` and records the last
/// position removed as `pruned_through`; returns how many went. A write body.
pub(super) async fn prune(
    conn: &mut SqliteConnection,
    before: Timestamp,
    what: &str,
) -> Result<u64> {
    // The prefix ends before the first record (in position order) that is not older
    // than `before`: a walk from the start that stops there, then a seek.
    let last: Option<i64> = sqlx::query_scalar(
        "SELECT max(position) FROM change_log WHERE position < coalesce( \
         (SELECT position FROM change_log WHERE at >= ? ORDER BY position LIMIT 1), \
         9223372036854775807)",
    )
    .bind(before.millis())
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| unavailable(what, e))?;
    let Some(last) = last else { return Ok(0) };
    let removed = sqlx::query("DELETE FROM change_log WHERE position <= ?")
        .bind(last)
        .execute(&mut *conn)
        .await
        .map_err(|e| unavailable(what, e))?
        .rows_affected();
    sqlx::query("UPDATE change_log_meta SET pruned_through = max(pruned_through, ?)")
        .bind(last)
        .execute(conn)
        .await
        .map_err(|e| unavailable(what, e))?;
    Ok(removed)
}

/// A position as SQLite stores it (positions fit: they count rows).
fn stored_position(position: u64) -> i64 {
    i64::try_from(position).unwrap_or(i64::MAX)
}

/// A stored position (never negative) as the trait speaks of it.
fn position_of(stored: i64) -> u64 {
    u64::try_from(stored).unwrap_or_default()
}
