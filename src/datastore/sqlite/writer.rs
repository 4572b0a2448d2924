//! Write transactions that run to completion whatever happens to their callers.
//!
//! # Cancellation
//! A request future can be dropped at any await: the client went away, a timeout fired.
//! Had the transaction run in that future, a drop between `BEGIN IMMEDIATE` and its end
//! could leave the one write connection inside an open transaction holding the write
//! lock (sqlx 0.8 leaks a custom `BEGIN` that is acknowledged but not yet wrapped in its
//! `Transaction`), and every later write would fail until a restart. So a write never
//! runs in its caller's future: [`SqliteStore::write`] spawns the whole transaction
//! (acquire, `BEGIN IMMEDIATE`, the body, `COMMIT` or `ROLLBACK`) as a task that owns
//! its inputs, and awaits the task's handle. Dropping the handle does not cancel the
//! task, so a write whose caller has gone still ends in a commit or a rollback, and a
//! caller that waited gets exactly that outcome.
//!
//! # Connection hygiene
//! The transaction statements are plain statements sent by this module, so SQLite alone
//! holds the transaction state. A body that fails is rolled back explicitly. When the end
//! of a transaction cannot be confirmed (a failed `BEGIN`, `COMMIT` and `ROLLBACK`, or a
//! panic in the body), the connection is closed instead of returned to the pool: SQLite
//! rolls back whatever a closing connection left open, and the pool opens a fresh one for
//! the next write.

use futures_util::future::BoxFuture;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::SqlitePool;
use sqlx::{Sqlite, SqliteConnection};

use super::SqliteStore;
use super::errors::unavailable;
use crate::datastore::{Error, Result};

/// Opens every write transaction: takes the write lock at once so it is waited for.
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

impl SqliteStore {
    /// Runs `body` inside one `BEGIN IMMEDIATE` transaction on the write connection and
    /// commits it when `body` succeeds, rolls it back when it fails. `what` says what is
    /// being written, for errors; `body` gets it too.
    ///
    /// The transaction runs on a task of its own, so it completes even when the future
    /// of this call is dropped (see the module doc).
    pub(super) async fn write<T, F>(&self, what: String, body: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection, &'c str) -> BoxFuture<'c, Result<T>>
            + Send
            + 'static,
    {
        let pool = self.writer.clone();
        let message = what.clone();
        let task = tokio::spawn(async move { transaction(&pool, &what, body).await });
        match task.await {
            Ok(outcome) => outcome,
            // Only a panic in the body gets here (the task is never aborted); its
            // connection was closed on the way out.
            Err(err) => Err(Error::unavailable(message, err)),
        }
    }
}

/// The transaction itself: see [`SqliteStore::write`].
async fn transaction<T, F>(pool: &SqlitePool, what: &str, body: F) -> Result<T>
where
    F: for<'c> FnOnce(&'c mut SqliteConnection, &'c str) -> BoxFuture<'c, Result<T>>,
{
    let conn = pool.acquire().await.map_err(|e| unavailable(what, e))?;
    let mut lease = Lease { conn, clean: false };
    // A failed BEGIN leaves the lease unclean: closing costs one reconnect, and also
    // clears a connection that was somehow still inside a transaction.
    exec(&mut lease.conn, BEGIN_WRITE)
        .await
        .map_err(|e| unavailable(what, e))?;
    let outcome = body(&mut lease.conn, what).await;
    if outcome.is_ok() {
        match exec(&mut lease.conn, "COMMIT").await {
            Ok(_) => {
                lease.clean = true;
                return outcome;
            }
            Err(err) => {
                // Nothing was committed; the transaction may still be open.
                lease.rollback(what).await;
                return Err(unavailable(what, err));
            }
        }
    }
    lease.rollback(what).await;
    outcome
}

/// Runs one transaction statement (`BEGIN IMMEDIATE`, `COMMIT`, `ROLLBACK`).
fn exec<'c>(
    conn: &'c mut SqliteConnection,
    sql: &'static str,
) -> BoxFuture<'c, Result<(), sqlx::Error>> {
    Box::pin(async move { sqlx::query(sql).execute(conn).await.map(drop) })
}

/// The write connection while a transaction may be open on it: closed on drop unless
/// the transaction was seen to end.
struct Lease {
    conn: PoolConnection<Sqlite>,
    /// Set once `COMMIT` or `ROLLBACK` succeeded: the connection may go back to the pool.
    clean: bool,
}

impl Lease {
    /// Rolls back; if that fails, the connection will be closed instead of reused.
    async fn rollback(&mut self, what: &str) {
        match exec(&mut self.conn, "ROLLBACK").await {
            Ok(_) => self.clean = true,
            Err(err) => {
                tracing::warn!(
                    error = %err,
                    "rollback failed while {what}; closing the write connection"
                );
            }
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if !self.clean {
            self.conn.close_on_drop();
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::datastore::{Category, CategoryId, Datastore, Error, SqliteStore, Timestamp};

    fn category(slug: &str) -> Category {
        let now = Timestamp::now();
        Category {
            id: CategoryId::generate(),
            name: slug.to_owned(),
            slug: slug.to_owned(),
            parent_id: None,
            display_order: 0,
            body: None,
            created_at: now,
            updated_at: now,
        }
    }

    async fn insert(conn: &mut sqlx::SqliteConnection, c: &Category) {
        sqlx::query(
            "INSERT INTO categories (id, name, slug, parent_id, display_order, body, \
             created_at, updated_at) VALUES (?, ?, ?, NULL, 0, NULL, 0, 0)",
        )
        .bind(c.id.as_str())
        .bind(&c.name)
        .bind(&c.slug)
        .execute(conn)
        .await
        .unwrap();
    }

    /// A body that fails or panics after writing leaves nothing written and the write
    /// connection usable.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_or_panicking_body_is_rolled_back_and_the_writer_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.db");
        let store = SqliteStore::connect(path.to_str().unwrap()).await.unwrap();
        store.migrate().await.unwrap();

        let failed = category("failed");
        let written = failed.clone();
        let outcome: crate::datastore::Result<()> = store
            .write("failing".to_owned(), move |conn, _| {
                Box::pin(async move {
                    insert(conn, &written).await;
                    Err(Error::not_found("category", "nowhere"))
                })
            })
            .await;
        assert!(
            matches!(outcome, Err(Error::NotFound { .. })),
            "{outcome:?}"
        );

        let panicked = category("panicked");
        let written = panicked.clone();
        let outcome: crate::datastore::Result<()> = store
            .write("panicking".to_owned(), move |conn, _| {
                Box::pin(async move {
                    insert(conn, &written).await;
                    panic!("a bug in a write body");
                })
            })
            .await;
        assert!(
            matches!(outcome, Err(Error::Unavailable { .. })),
            "{outcome:?}"
        );

        let next = category("next");
        store
            .create_category(&next)
            .await
            .expect("the writer recovered");
        for gone in [&failed, &panicked] {
            assert!(matches!(
                store.get_category(&gone.id).await,
                Err(Error::NotFound { .. })
            ));
        }
        assert_eq!(store.list_categories().await.unwrap(), vec![next]);
        store.close().await;
    }
}
