//! Group commit: one writer task runs every write, many writes to one transaction.
//!
//! # Why
//! With `synchronous=FULL` a `COMMIT` returns only after the WAL is fsynced, so a
//! transaction per write caps writes at the disk's fsyncs per second however many callers
//! wait. Writes that arrive while a commit is on its way to disk are better committed
//! together: one fsync then acknowledges all of them.
//!
//! # The writer task
//! [`SqliteStore::write`] boxes its body as a job, queues it on a bounded channel for the
//! one writer task that the store started ([`Writer::spawn`]), and awaits its answer. The
//! task opens `BEGIN IMMEDIATE` on the write connection and runs the queued jobs one
//! after another until the queue is empty or [`MAX_BATCH`] jobs ran; then it commits, and
//! only then answers each caller. Nothing waits on a timer: a write that finds the queue
//! empty is committed at once, so a lone write costs what it did before plus one
//! statement, and batches form from the writes that queued while the previous commit was
//! being fsynced. The bound keeps a batch, and so the wait of its first caller, short.
//! The task holds the connection (from the store's one-connection write pool) while
//! writes keep coming and gives it back when the queue runs dry, so `migrate` and `close`
//! can still have it.
//!
//! # A failing write fails alone
//! Each job runs inside a savepoint of its own (`SAVEPOINT write`, released when the next
//! job's is opened; the commit releases the last). A body that fails (a taken
//! sku, a stale version, a missing reference) is undone by `ROLLBACK TO write`, exactly
//! its own statements, and its neighbours commit. A body that panics is caught
//! (`catch_unwind`), rolled back to its savepoint the same way, and answered
//! [`Error::Unavailable`]; the batch goes on.
//!
//! Every answer, failures included, waits for the commit: a write refused because of a
//! neighbour earlier in the same batch (that neighbour took the sku) must not be reported
//! if the neighbour never lands. When a transaction statement fails (`BEGIN`, `SAVEPOINT`,
//! `RELEASE`, `ROLLBACK TO`, `COMMIT`: an I/O error, a full disk, an error after which
//! SQLite rolled back the whole transaction), what the batch holds is unknown, so every
//! write that ran in it is answered with that failure, and the transaction is rolled back.
//! Writes still queued go to the next batch.
//!
//! # Atomic checks
//! A body checks what it must (versions, references, uniqueness) on the write connection
//! inside the batch's transaction, so it sees every committed write and every earlier
//! write of its batch, and nobody else can write in between. The batch commits or fails
//! as a whole, so a check that passed still holds at the commit.
//!
//! # Cancellation
//! A request future can be dropped at any await: the client went away, a timeout fired.
//! A write never runs in its caller's future: the writer task owns every job from the
//! moment it is queued, so a dropped caller's write still ends in its batch's commit or
//! rollback, and its answer is simply not read. (Had the transaction run in the caller's
//! future, a drop between `BEGIN IMMEDIATE` and its end could leave the one write
//! connection inside an open transaction holding the write lock — sqlx 0.8 leaks a custom
//! `BEGIN` that is acknowledged but not yet wrapped in its `Transaction` — and every later
//! write would fail until a restart.) A caller dropped while the queue is full has queued
//! nothing.
//!
//! # Connection hygiene
//! The transaction statements are plain statements sent by this module, so SQLite alone
//! holds the transaction state. When the end of a transaction cannot be confirmed (a failed
//! `BEGIN`, or a failed `ROLLBACK` after a failure), the connection is closed instead of
//! returned to the pool: SQLite rolls back whatever a closing connection left open, and the
//! pool opens a fresh one for the next batch.
//!
//! # Lifetime
//! The task runs on the runtime the store was opened on and lives as long as the store's
//! end of the queue: a dropped store lets it finish the queued writes and stop. After
//! [`SqliteStore::close`](crate::datastore::Datastore::close) the pool refuses the
//! connection, so later writes are answered [`Error::Unavailable`].

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::SqlitePool;
use sqlx::{Sqlite, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

use super::SqliteStore;
use crate::datastore::{Error, Result};

/// The most writes one transaction holds. Enough to turn a queue of callers into a few
/// fsyncs, small enough that the first write of a batch is not kept waiting for long.
pub(super) const MAX_BATCH: usize = 256;

/// Writes that may wait for the writer before callers wait to queue (backpressure).
const QUEUE: usize = 4 * MAX_BATCH;

/// Opens every batch, and the savepoint of its first write. `IMMEDIATE` takes the write
/// lock at once, so it is waited for (busy timeout) rather than failed on a later upgrade.
const BEGIN: &str = "BEGIN IMMEDIATE; SAVEPOINT write";
/// Between two writes of a batch: keeps the last one's work and opens the next one's
/// savepoint.
const NEXT: &str = "RELEASE write; SAVEPOINT write";
/// Undoes the statements of the write that just failed, and only those.
const UNDO: &str = "ROLLBACK TO write";

/// Name of the Prometheus counter of committed write transactions.
pub const COMMITS_METRIC: &str = "gitstore_sqlite_commits_total";
/// Name of the Prometheus counter of writes that ran in a committed transaction.
pub const COMMITTED_WRITES_METRIC: &str = "gitstore_sqlite_committed_writes_total";

/// What the writer has committed so far: `writes / commits` is the mean batch size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Transactions committed.
    pub commits: u64,
    /// Writes that ran in those transactions (failed ones, rolled back to their
    /// savepoint, included).
    pub writes: u64,
}

/// The store's handle on its writer task: the queue of jobs and the task's counters.
pub(super) struct Writer {
    queue: mpsc::Sender<Box<dyn Job>>,
    counts: Arc<Counts>,
}

#[derive(Default)]
struct Counts {
    commits: AtomicU64,
    writes: AtomicU64,
}

impl Writer {
    /// Starts the writer task over `pool` (the one-connection write pool) on the current
    /// runtime.
    pub(super) fn spawn(pool: SqlitePool) -> Self {
        let (queue, jobs) = mpsc::channel(QUEUE);
        let counts = Arc::new(Counts::default());
        tokio::spawn(run(pool, jobs, Arc::clone(&counts)));
        Self { queue, counts }
    }

    /// The commit counters.
    pub(super) fn stats(&self) -> WriteStats {
        WriteStats {
            commits: self.counts.commits.load(Ordering::Relaxed),
            writes: self.counts.writes.load(Ordering::Relaxed),
        }
    }
}

impl SqliteStore {
    /// Runs `body` on the write connection inside a transaction, and answers once that
    /// transaction committed; when `body` fails, only its own statements are undone and
    /// its error is the answer. `what` says what is being written, for errors; `body`
    /// gets it too.
    ///
    /// The write runs on the writer task, grouped with the writes queued with it, so it
    /// completes even when the future of this call is dropped (see the module doc).
    pub(super) async fn write<T, F>(&self, what: String, body: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection, &'c str) -> BoxFuture<'c, Result<T>>
            + Send
            + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Write {
            what,
            body: Some(body),
            outcome: None,
            reply,
        });
        let what = job.what.clone();
        if let Err(refused) = self.writes.queue.send(job).await {
            return Err(Error::unavailable(refused.0.what().to_owned(), Stopped));
        }
        // The writer answers every job it takes; a job dropped unanswered means the
        // task itself is gone (its runtime shut down).
        answer
            .await
            .unwrap_or_else(|_| Err(Error::unavailable(what, Stopped)))
    }

    /// How many transactions the writer committed, and how many writes they held.
    #[must_use]
    pub fn write_stats(&self) -> WriteStats {
        self.writes.stats()
    }
}

/// One queued write, its result type erased so that one queue carries them all.
trait Job: Send {
    /// What is being written, for errors.
    fn what(&self) -> &str;
    /// Runs the body on `conn` (once) and keeps its outcome; true when it succeeded.
    fn run<'c>(&'c mut self, conn: &'c mut SqliteConnection) -> BoxFuture<'c, bool>;
    /// Replaces the outcome with `err`: the body panicked, or its batch failed.
    fn fail(&mut self, err: Error);
    /// Sends the outcome to the caller, if it is still listening.
    fn answer(self: Box<Self>);
}

/// A write body, then its outcome, and where to send it.
struct Write<T, F> {
    what: String,
    body: Option<F>,
    outcome: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
}

impl<T, F> Job for Write<T, F>
where
    T: Send + 'static,
    F: for<'c> FnOnce(&'c mut SqliteConnection, &'c str) -> BoxFuture<'c, Result<T>>
        + Send
        + 'static,
{
    fn what(&self) -> &str {
        &self.what
    }

    fn run<'c>(&'c mut self, conn: &'c mut SqliteConnection) -> BoxFuture<'c, bool> {
        Box::pin(async move {
            let Some(body) = self.body.take() else {
                return false;
            };
            let outcome = body(conn, &self.what).await;
            let ok = outcome.is_ok();
            self.outcome = Some(outcome);
            ok
        })
    }

    fn fail(&mut self, err: Error) {
        self.outcome = Some(Err(err));
    }

    fn answer(self: Box<Self>) {
        let Self {
            what,
            outcome,
            reply,
            ..
        } = *self;
        let outcome = outcome.unwrap_or_else(|| Err(Error::unavailable(what, Stopped)));
        // A caller that went away does not read its answer; its write stands.
        let _ = reply.send(outcome);
    }
}

/// The writer task: one batch at a time until the store is dropped.
///
/// It holds the write connection while writes keep coming, and gives it back to the
/// pool when the queue runs dry (so that `migrate` and `close` can have it): taking it
/// costs sqlx a ping each way, which would otherwise sit between every two batches.
async fn run(pool: SqlitePool, mut jobs: mpsc::Receiver<Box<dyn Job>>, counts: Arc<Counts>) {
    while let Some(mut first) = jobs.recv().await {
        let mut lease = match pool.acquire().await {
            Ok(conn) => Lease { conn, clean: true },
            Err(err) => {
                fail_all(vec![first], "taking the write connection", err);
                continue;
            }
        };
        loop {
            batch(&mut lease, first, &mut jobs, &counts).await;
            if !lease.clean {
                // Dropped unclean: closed, and the next batch gets a fresh connection.
                break;
            }
            match jobs.try_recv() {
                Ok(job) => first = job,
                Err(_) => break,
            }
        }
    }
}

/// Runs `first` and the writes queued behind it (at most [`MAX_BATCH`]) in one
/// transaction, and answers each of them.
///
/// Savepoint statements ride with their neighbours (`BEGIN IMMEDIATE; SAVEPOINT write`,
/// `RELEASE write; SAVEPOINT write`, and `COMMIT`, which releases the last one), so
/// a write costs one round trip to the connection's thread besides its own statements.
async fn batch(
    lease: &mut Lease,
    first: Box<dyn Job>,
    jobs: &mut mpsc::Receiver<Box<dyn Job>>,
    counts: &Counts,
) {
    // Unclean until the end of the transaction is seen: a failed BEGIN closes the
    // connection, which costs one reconnect and also clears a connection that was
    // somehow still inside a transaction.
    lease.clean = false;
    if let Err(err) = exec(&mut lease.conn, BEGIN).await {
        return fail_all(vec![first], BEGIN, err);
    }
    let mut ran: Vec<Box<dyn Job>> = Vec::new();
    let mut job = first;
    loop {
        let step = run_job(&mut lease.conn, job.as_mut()).await;
        ran.push(job);
        if let Err((statement, err)) = step {
            lease.rollback().await;
            return fail_all(ran, statement, err);
        }
        // Only this task takes from the queue, so a queue seen non-empty here still
        // holds a write after the next statement; one seen empty ends the batch.
        if ran.len() >= MAX_BATCH || jobs.is_empty() {
            break;
        }
        if let Err(err) = exec(&mut lease.conn, NEXT).await {
            lease.rollback().await;
            return fail_all(ran, NEXT, err);
        }
        match jobs.try_recv() {
            Ok(next) => job = next,
            // Not reached (see above); an empty savepoint is harmless.
            Err(_) => break,
        }
    }
    match exec(&mut lease.conn, "COMMIT").await {
        Ok(()) => {
            lease.clean = true;
            let writes = ran.len() as u64;
            counts.commits.fetch_add(1, Ordering::Relaxed);
            counts.writes.fetch_add(writes, Ordering::Relaxed);
            metrics::counter!(COMMITS_METRIC).increment(1);
            metrics::counter!(COMMITTED_WRITES_METRIC).increment(writes);
            for job in ran {
                job.answer();
            }
        }
        Err(err) => {
            // Nothing was committed; the transaction may still be open.
            lease.rollback().await;
            fail_all(ran, "COMMIT", err);
        }
    }
}

/// Runs one job inside the savepoint opened for it, and rolls back to that savepoint
/// when the job failed or panicked. An error means a transaction statement failed: the
/// batch's state is unknown.
async fn run_job(
    conn: &mut SqliteConnection,
    job: &mut dyn Job,
) -> Result<(), (&'static str, sqlx::Error)> {
    // The job's state after a panic is only ever failed and answered, and the
    // connection's state is settled by the rollback below.
    let ran = AssertUnwindSafe(job.run(conn)).catch_unwind().await;
    let keep = match ran {
        Ok(succeeded) => succeeded,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-string payload".to_owned());
            let what = job.what().to_owned();
            job.fail(Error::unavailable(what, Panicked(message)));
            false
        }
    };
    if keep {
        return Ok(());
    }
    exec(conn, UNDO).await.map_err(|e| (UNDO, e))
}

/// Answers every job in `ran` with the failure of `statement`.
fn fail_all(ran: Vec<Box<dyn Job>>, statement: &'static str, err: sqlx::Error) {
    let cause = Arc::new(err);
    for mut job in ran {
        let what = job.what().to_owned();
        let failed = BatchFailed {
            statement,
            cause: Arc::clone(&cause),
        };
        job.fail(Error::unavailable(what, failed));
        job.answer();
    }
}

/// Runs transaction statements (`;`-separated: sqlx runs each in turn and stops at the
/// first that fails). Boxed: sqlx's futures are large, and the writer awaits several of
/// these in one future.
fn exec<'c>(
    conn: &'c mut SqliteConnection,
    sql: &'static str,
) -> BoxFuture<'c, Result<(), sqlx::Error>> {
    Box::pin(async move { sqlx::query(sql).execute(conn).await.map(drop) })
}

/// The write connection held by the writer task: closed on drop unless the end of its
/// last transaction was seen.
struct Lease {
    conn: PoolConnection<Sqlite>,
    /// Cleared by `BEGIN`, set once `COMMIT` or `ROLLBACK` succeeded: the connection
    /// may go back to the pool.
    clean: bool,
}

impl Lease {
    /// Rolls back; if that fails, the connection will be closed instead of reused.
    async fn rollback(&mut self) {
        match exec(&mut self.conn, "ROLLBACK").await {
            Ok(()) => self.clean = true,
            Err(err) => {
                tracing::warn!(
                    error = %err,
                    "rolling back a failed write batch failed; closing the write connection"
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

/// The source of the error of every write in a batch whose transaction failed.
#[derive(Debug)]
struct BatchFailed {
    statement: &'static str,
    cause: Arc<sqlx::Error>,
}

impl fmt::Display for BatchFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} failed in the write's batch, nothing in it was committed: {}",
            self.statement, self.cause
        )
    }
}

impl std::error::Error for BatchFailed {}

/// The source of the error of a write whose body panicked.
#[derive(Debug)]
struct Panicked(String);

impl fmt::Display for Panicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the write panicked and was rolled back: {}", self.0)
    }
}

impl std::error::Error for Panicked {}

/// The source of the error of a write the writer task could not take or answer.
#[derive(Debug)]
struct Stopped;

impl fmt::Display for Stopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the sqlite writer task has stopped")
    }
}

impl std::error::Error for Stopped {}

#[cfg(test)]
mod tests;
