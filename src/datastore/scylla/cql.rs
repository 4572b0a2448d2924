//! A thin layer over the driver's caching session: every statement is prepared once and
//! reused, every driver error becomes [`Error::Unavailable`] naming what was attempted,
//! multi-row reads always go through driver paging, and lightweight transactions report
//! only the `[applied]` column.
//!
//! Statement texts are written with bare table names; [`Cql`] qualifies every table name
//! that follows `FROM`, `INTO` or `UPDATE` with the configured keyspace before the
//! statement is prepared ([`qualify`]), so the keyspace stays a run-time setting while
//! the cluster only ever prepares fully qualified statements (Cassandra warns on every
//! prepare of a statement that leans on the session keyspace).
//!
//! A row that reaches the client but cannot be decoded (a column null or of a type this
//! backend never writes) is [`Error::Internal`], not `Unavailable`: it concerns that row
//! only, so listings can skip it (see `scan.rs`).

use futures_util::stream::BoxStream;
use futures_util::{StreamExt as _, TryStreamExt as _};
use scylla::client::caching_session::CachingSession;
use scylla::client::pager::NextRowError;
use scylla::deserialize::row::{ColumnIterator, DeserializeRow};
use scylla::deserialize::value::DeserializeValue;
use scylla::errors::{ExecutionError, RequestAttemptError};
use scylla::response::query_result::{MaybeFirstRowError, QueryResult};
use scylla::serialize::row::SerializeRow;
use scylla::statement::Consistency;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::unprepared::Statement;

use super::rows::Values;
use crate::datastore::{Error, Result};

/// Rows per page for scans whose consumer may stop early (listing pages).
pub(super) const LISTING_PAGE_SIZE: i32 = 100;
/// Rows per page for scans that read everything (counts, small tables).
pub(super) const SCAN_PAGE_SIZE: i32 = 1000;

/// The outcome of a lightweight transaction.
pub(super) enum Cas {
    /// The condition held and the write landed.
    Applied,
    /// The condition did not hold; nothing was written.
    NotApplied,
    /// The request failed (timeout, lost connection): the write may or may not have landed,
    /// so the caller must read the row back at serial consistency to find out.
    Unknown(Box<ExecutionError>),
}

/// The shared session plus the keyspace and the consistency used for linearizable reads.
pub(super) struct Cql {
    session: CachingSession,
    keyspace: String,
    serial_read: Consistency,
    /// Tests: answers to fake for lightweight transactions (see [`CasFault`]).
    faults: std::sync::Mutex<Vec<(String, CasFault)>>,
}

/// Tests: how a lightweight transaction whose text contains a given fragment goes
/// wrong, once per injected fault, in the order injected.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CasFault {
    /// The request is lost before it reaches the cluster: nothing is written, and the
    /// answer is a timeout (an unknown outcome).
    Lose,
    /// The request is sent twice: first a lost earlier proposal of it lands late, then
    /// it runs again and its own answer is returned.
    Twice,
}

/// `text` with every table name after `FROM`, `INTO` and `UPDATE` qualified with
/// `keyspace` (names that already contain a dot, like `system.local`, are kept).
pub(super) fn qualify(text: &str, keyspace: &str) -> String {
    let mut out = String::with_capacity(text.len() + 4 * keyspace.len());
    let mut qualify_next = false;
    for (i, word) in text.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        if qualify_next && !word.is_empty() && !word.contains('.') {
            out.push_str(keyspace);
            out.push('.');
        }
        out.push_str(word);
        if !word.is_empty() {
            qualify_next = matches!(
                word.to_ascii_uppercase().as_str(),
                "FROM" | "INTO" | "UPDATE"
            );
        }
    }
    out
}

/// A row-level decoding failure of a stream becomes `Internal`, anything else
/// `Unavailable`.
fn stream_error(what: &str, err: NextRowError) -> Error {
    match err {
        NextRowError::RowDeserializationError(e) => {
            Error::internal(format!("{what}: a stored row cannot be read"), e)
        }
        other => Error::unavailable(what, other),
    }
}

/// Maps a driver error to [`Error::Unavailable`], keeping it as the source for logs.
pub(super) fn unavailable<E>(what: &str) -> impl FnOnce(E) -> Error + '_
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    move |err| Error::unavailable(what, err)
}

impl Cql {
    /// Wraps a session working in `keyspace`; `serial_read` is `SERIAL` or
    /// `LOCAL_SERIAL`.
    pub(super) fn new(session: CachingSession, keyspace: &str, serial_read: Consistency) -> Self {
        Self {
            session,
            keyspace: keyspace.to_owned(),
            serial_read,
            faults: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Tests: fakes the next answers of lightweight transactions whose text contains
    /// `fragment` (see [`CasFault`]).
    pub(super) fn inject(&self, fragment: &str, faults: impl IntoIterator<Item = CasFault>) {
        self.faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(faults.into_iter().map(|f| (fragment.to_owned(), f)));
    }

    /// The fault injected for `text`, taken off the list.
    fn fault_for(&self, text: &str) -> Option<CasFault> {
        let mut faults = self
            .faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let i = faults.iter().position(|(f, _)| text.contains(f.as_str()))?;
        Some(faults.remove(i).1)
    }

    /// The statement with its table names qualified (see [`qualify`]).
    fn q(&self, statement: impl Into<Statement>) -> Statement {
        let mut statement = statement.into();
        statement.contents = qualify(&statement.contents, &self.keyspace);
        statement
    }

    /// The driver session, for DDL and schema agreement.
    pub(super) fn session(&self) -> &scylla::client::session::Session {
        self.session.get_session()
    }

    /// A statement that reads at serial consistency: it sees every committed lightweight
    /// transaction and completes any that is in flight.
    pub(super) fn serial(&self, text: &str) -> Statement {
        let mut statement = self.q(text);
        statement.set_consistency(self.serial_read);
        statement
    }

    /// Runs one prepared statement and returns its raw result.
    pub(super) async fn execute(
        &self,
        statement: impl Into<Statement>,
        values: impl SerializeRow,
        what: &str,
    ) -> Result<QueryResult> {
        self.session
            .execute_unpaged(self.q(statement), values)
            .await
            .map_err(unavailable(what))
    }

    /// Reads at most one row (the statement restricts a full primary key or has `LIMIT 1`).
    pub(super) async fn one<R>(
        &self,
        statement: impl Into<Statement>,
        values: impl SerializeRow,
        what: &str,
    ) -> Result<Option<R>>
    where
        R: for<'f, 'm> DeserializeRow<'f, 'm>,
    {
        let rows = self
            .execute(statement, values, what)
            .await?
            .into_rows_result()
            .map_err(unavailable(what))?;
        rows.maybe_first_row::<R>().map_err(|err| match err {
            MaybeFirstRowError::DeserializationFailed(e) => {
                Error::internal(format!("{what}: the stored row cannot be read"), e)
            }
            other @ MaybeFirstRowError::TypeCheckFailed(_) => Error::unavailable(what, other),
        })
    }

    /// Streams every row of a query, fetched page by page by the driver; dropping the
    /// stream stops fetching.
    pub(super) async fn stream<R>(
        &self,
        text: &str,
        page_size: i32,
        values: impl SerializeRow,
        what: &str,
    ) -> Result<BoxStream<'static, Result<R>>>
    where
        R: for<'f, 'm> DeserializeRow<'f, 'm> + Send + 'static,
    {
        let statement = self.q(text).with_page_size(page_size);
        let pager = self
            .session
            .execute_iter(statement, values)
            .await
            .map_err(unavailable(what))?;
        let rows = pager.rows_stream::<R>().map_err(unavailable(what))?;
        let what = what.to_owned();
        Ok(rows.map_err(move |e| stream_error(&what, e)).boxed())
    }

    /// Collects every row of a query through driver paging.
    pub(super) async fn all<R>(
        &self,
        text: &str,
        values: impl SerializeRow,
        what: &str,
    ) -> Result<Vec<R>>
    where
        R: for<'f, 'm> DeserializeRow<'f, 'm> + Send + 'static,
    {
        self.stream(text, SCAN_PAGE_SIZE, values, what)
            .await?
            .try_collect()
            .await
    }

    /// Runs a conditional statement and reads only its `[applied]` column: Cassandra
    /// returns just that column while Scylla adds the old row, so nothing else is
    /// portable. A request the cluster refused outright (bad statement, missing table,
    /// no permission, LWT unsupported on the keyspace) is an error, not an unknown
    /// outcome: retrying it could never help.
    pub(super) async fn cas(
        &self,
        statement: impl Into<Statement>,
        values: impl SerializeRow,
        what: &str,
    ) -> Result<Cas> {
        let statement = self.q(statement);
        match self.fault_for(&statement.contents) {
            None => {}
            Some(CasFault::Lose) => {
                let lost = scylla::errors::ExecutionError::RequestTimeout(Default::default());
                return Ok(Cas::Unknown(Box::new(lost)));
            }
            Some(CasFault::Twice) => {
                // The late proposal's own answer went to a coordinator nobody waits on.
                let _ = self
                    .session
                    .execute_unpaged(statement.clone(), &values)
                    .await;
            }
        }
        match self.session.execute_unpaged(statement, values).await {
            Ok(result) => match applied(result) {
                Ok(true) => Ok(Cas::Applied),
                Ok(false) => Ok(Cas::NotApplied),
                Err(err) => Err(Error::unavailable(what, err)),
            },
            Err(err) if refused(&err) => Err(Error::unavailable(what, err)),
            Err(err) => Ok(Cas::Unknown(Box::new(err))),
        }
    }

    /// A lightweight transaction whose repetition is harmless (a conditional delete or
    /// rewrite that leaves its condition's column alone), sent again while its answer is
    /// lost: a refusal after a lost answer means the lost attempt landed or the condition
    /// no longer held, and either leaves the row as a clean-up wants it.
    ///
    /// # Errors
    /// As [`Cql::cas`]; [`Error::Unavailable`] when every answer was lost.
    pub(super) async fn cas_idempotent(
        &self,
        statement: &'static str,
        values: impl SerializeRow,
        what: &str,
    ) -> Result<Cas> {
        for _ in 0..super::lwt::CAS_ATTEMPTS {
            match self.cas(statement, &values, what).await? {
                Cas::Unknown(_) => {}
                answer => return Ok(answer),
            }
        }
        Err(Error::unavailable(
            what,
            "no answer from the lightweight transaction",
        ))
    }

    /// Runs statements as one logged batch: either all of them eventually apply or none
    /// does (the batch log replays a batch interrupted half-way).
    pub(super) async fn logged_batch(
        &self,
        statements: Vec<(&'static str, Values)>,
        what: &str,
    ) -> Result<()> {
        if statements.is_empty() {
            return Ok(());
        }
        let mut batch = Batch::new(BatchType::Logged);
        let mut values = Vec::with_capacity(statements.len());
        for (text, bound) in statements {
            batch.append_statement(self.q(text));
            values.push(bound);
        }
        self.session
            .batch(&batch, values)
            .await
            .map(drop)
            .map_err(unavailable(what))
    }
}

/// Whether the cluster surely did not execute the request: it could not be prepared or
/// sent, or a node rejected it for a reason that would hold on every node.
fn refused(err: &ExecutionError) -> bool {
    match err {
        ExecutionError::BadQuery(_) | ExecutionError::PrepareError(_) => true,
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(db, _)) => {
            !db.can_speculative_retry()
        }
        _ => false,
    }
}

/// The `[applied]` flag of a lightweight transaction's result.
fn applied(result: QueryResult) -> std::result::Result<bool, String> {
    let rows = result.into_rows_result().map_err(|e| e.to_string())?;
    let mut iter = rows.rows::<ColumnIterator>().map_err(|e| e.to_string())?;
    let row = iter
        .next()
        .ok_or("conditional statement returned no row")?
        .map_err(|e| e.to_string())?;
    for column in row {
        let column = column.map_err(|e| e.to_string())?;
        if column.spec.name() == "[applied]" {
            <bool as DeserializeValue>::type_check(column.spec.typ()).map_err(|e| e.to_string())?;
            return <bool as DeserializeValue>::deserialize(column.spec.typ(), column.slice)
                .map_err(|e| e.to_string());
        }
    }
    Err("conditional statement returned no [applied] column".to_owned())
}

#[cfg(test)]
mod tests {
    use super::qualify;

    #[test]
    fn table_names_are_qualified_with_the_keyspace() {
        assert_eq!(
            qualify("SELECT a, b FROM products WHERE id = ?", "ks"),
            "SELECT a, b FROM ks.products WHERE id = ?"
        );
        assert_eq!(
            qualify("INSERT INTO unique_keys (a) VALUES (?) IF NOT EXISTS", "ks"),
            "INSERT INTO ks.unique_keys (a) VALUES (?) IF NOT EXISTS"
        );
        assert_eq!(
            qualify("UPDATE categories USING TTL ? SET x = ?", "ks"),
            "UPDATE ks.categories USING TTL ? SET x = ?"
        );
        assert_eq!(
            qualify("DELETE FROM t WHERE id = ?", "ks"),
            "DELETE FROM ks.t WHERE id = ?"
        );
        assert_eq!(
            qualify("SELECT release_version FROM system.local", "ks"),
            "SELECT release_version FROM system.local"
        );
    }
}
