//! Reads by key, run on the calling thread.
//!
//! sqlx runs each SQLite connection on a thread of its own: a read sends its statement to
//! that thread and gets its rows back over channels, and returning the connection spawns a
//! task; every value of every row is copied for the trip. For a lookup by key that
//! hand-off costs several times SQLite's own work (thread wake-ups were a third of the
//! server's CPU on `productById`, see BENCHMARKS.md). Some reads are bounded: a read by
//! key is one index descent per key (one key, or the ids one page refers to), and a
//! listing with at most one equality filter walks an index in its own order for one page
//! of at most 128 rows ([`super::query::is_bounded`]), over pages the OS and SQLite's cache keep in
//! memory. So those reads run here, with rusqlite, on the runtime thread that asks, on
//! connections of their own. Counts, searches, price ranges and combined filters, whose
//! cost grows with the data, stay on sqlx's threads, and so does every write.
//!
//! A direct read does not wait on locks: its connections have no busy timeout, so a
//! lock it cannot take (another connection rebuilding the WAL index, or holding the file
//! in exclusive mode) fails it at once. Two waits remain, both bounded and rare, and
//! accepted: pages missing from the OS cache are read from disk on the runtime thread
//! (keep the file on local storage), and SQLite's WAL read retry backs off for a few
//! microseconds, very rarely longer, while a checkpoint races the read. Any failure here
//! (the file cannot be opened, `SQLITE_BUSY`, a value of an unexpected type) is not taken
//! as the answer: the caller reads again through sqlx, which answers or fails as it always
//! did. So this path changes what a read costs, never what it returns. Its connections
//! see the same committed snapshot a pooled reader does (WAL, `query_only`), statement by
//! statement.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Row};

use super::SqliteStore;

/// Idle connections kept at least; more on machines with more cores. At most one direct
/// read runs per thread at a time (it never yields), so with one per runtime thread a read
/// finds one idle.
const MIN_IDLE: usize = 16;

/// How many prepared statements each connection keeps: every listing shape (4 filters,
/// 4 windows, 2 directions) and every read by key, with room to spare.
const STATEMENT_CACHE: usize = 64;

/// Name of the Prometheus counter of direct-eligible reads that could not be read
/// directly and went to sqlx's pool instead.
pub const FALLBACKS_METRIC: &str = "gitstore_sqlite_direct_read_fallbacks_total";

/// How the store's direct-eligible reads (by key, bounded listings) were served so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Served directly, on the calling thread.
    pub direct: u64,
    /// Not served directly (a failure, or the store closing), so read through sqlx.
    pub pooled: u64,
}

impl SqliteStore {
    /// How many direct-eligible reads (by key, bounded listings) ran directly, and how
    /// many went to the read pool.
    #[must_use]
    pub fn read_stats(&self) -> ReadStats {
        self.direct.stats()
    }
}

/// A row type that can be read from a rusqlite row, by column name.
pub(super) trait DirectRow: Sized {
    fn read(row: &Row<'_>) -> rusqlite::Result<Self>;
}

/// The direct-read connections of one database file.
pub(super) struct DirectReads {
    path: String,
    max_idle: usize,
    idle: Mutex<Vec<Connection>>,
    closed: AtomicBool,
    direct: AtomicU64,
    pooled: AtomicU64,
}

impl DirectReads {
    /// Direct reads of the (existing, WAL-mode) database at `path`; connections open on
    /// first use.
    pub(super) fn new(path: &str) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        Self {
            path: path.to_owned(),
            max_idle: cores.saturating_mul(2).max(MIN_IDLE),
            idle: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
            direct: AtomicU64::new(0),
            pooled: AtomicU64::new(0),
        }
    }

    /// The rows `sql` selects with `params`, or `None` when they could not be read here
    /// (the caller then reads through sqlx).
    pub(super) fn rows<R: DirectRow>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Option<Vec<R>> {
        self.run(|conn| {
            let mut statement = conn.prepare_cached(sql)?;
            let rows = statement.query_map(params, R::read)?;
            rows.collect()
        })
    }

    /// The row `sql` selects with `key` (the first, if several), `Some(None)` when there
    /// is none, or `None` when it could not be read here.
    pub(super) fn row<R: DirectRow>(&self, sql: &str, key: &str) -> Option<Option<R>> {
        self.run(|conn| {
            let mut statement = conn.prepare_cached(sql)?;
            let mut rows = statement.query([key])?;
            rows.next()?.map(R::read).transpose()
        })
    }

    /// How reads by key were served so far.
    pub(super) fn stats(&self) -> ReadStats {
        ReadStats {
            direct: self.direct.load(Ordering::Relaxed),
            pooled: self.pooled.load(Ordering::Relaxed),
        }
    }

    /// Stops direct reads and closes the idle connections; later reads go to sqlx (which
    /// refuses them once its pools are closed).
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Runs `read` on an idle connection, or a new one, and keeps the connection when it
    /// succeeded. A failed read drops its connection: the next one starts clean.
    fn run<T>(&self, read: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Option<T> {
        let value = self.try_run(read);
        let counter = if value.is_some() {
            &self.direct
        } else {
            &self.pooled
        };
        counter.fetch_add(1, Ordering::Relaxed);
        value
    }

    fn try_run<T>(&self, read: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Option<T> {
        if self.closed.load(Ordering::Acquire) {
            return None;
        }
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match idle.map_or_else(|| self.open(), Ok) {
            Ok(conn) => conn,
            Err(err) => {
                fell_back(&self.path, "cannot open the database", &err);
                return None;
            }
        };
        match read(&conn) {
            Ok(value) => {
                self.keep(conn);
                Some(value)
            }
            Err(err) => {
                fell_back(&self.path, "the read failed", &err);
                // A value that did not convert leaves the connection as good as it was;
                // a failure of SQLite's own (busy, I/O, a missing table) may not.
                if !matches!(err, rusqlite::Error::SqliteFailure(..)) {
                    self.keep(conn);
                }
                None
            }
        }
    }

    /// Puts `conn` back with the idle ones, unless there are enough or the store closed.
    fn keep(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.max_idle && !self.closed.load(Ordering::Acquire) {
            idle.push(conn);
        }
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        // Never create the file: the store's writer created it and set WAL mode. The
        // other flags are sqlx's, so that a path names the same file on both.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_PRIVATE_CACHE
            | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(&self.path, flags)?;
        conn.busy_timeout(Duration::ZERO)?;
        conn.pragma_update(None, "query_only", true)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(conn)
    }
}

/// Counts and logs (at debug: the pooled read that follows reports any real failure) a
/// read by key that goes to the pool.
fn fell_back(path: &str, why: &str, err: &rusqlite::Error) {
    metrics::counter!(FALLBACKS_METRIC).increment(1);
    tracing::debug!(error = %err, path, "direct read: {why}; reading through the pool");
}
