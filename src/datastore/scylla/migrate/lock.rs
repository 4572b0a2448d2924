//! The distributed migration lock and its heartbeat.
//!
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

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{MigrateError, ensure_bookkeeping};
use crate::datastore::scylla::cql::{Cas, Cql};
use crate::datastore::scylla::rows::ts;
use crate::datastore::{Error, Timestamp};

/// The lock row's key: there is one lock per keyspace.
const LOCK_NAME: &str = "migrations";

const TAKE_LOCK: &str = "INSERT INTO schema_migration_lock (name, holder, heartbeat_at) \
     VALUES (?, ?, ?) IF NOT EXISTS USING TTL ?";
const RENEW_LOCK: &str = "UPDATE schema_migration_lock USING TTL ? SET holder = ?, \
     heartbeat_at = ? WHERE name = ? IF holder = ?";
const RELEASE_LOCK: &str = "DELETE FROM schema_migration_lock WHERE name = ? IF holder = ?";
const SELECT_HOLDER: &str = "SELECT holder FROM schema_migration_lock WHERE name = ?";

/// How the runner waits for and holds the lock.
#[derive(Clone, Copy, Debug)]
pub struct LockSettings {
    /// Lifetime of the lock row without a heartbeat (whole seconds, at least three).
    pub ttl: Duration,
    /// How long an instance waits for another holder before giving up.
    pub wait_timeout: Duration,
}

/// The migration lock, held: a heartbeat renews it until [`MigrationLock::release`].
///
/// Migrations take it by themselves; an operator task that must not overlap a migration
/// (a manual data fix, a backfill) can take it through
/// [`ScyllaStore::hold_migration_lock`](crate::datastore::scylla::ScyllaStore::hold_migration_lock).
/// Dropping it without releasing stops the heartbeat and lets the row expire by its TTL,
/// exactly as a crash would.
pub struct MigrationLock {
    cql: Arc<Cql>,
    pub(super) holder: String,
    pub(super) lost: Arc<AtomicBool>,
    heartbeat: Option<Heartbeat>,
}

impl MigrationLock {
    /// Waits for the lock (see the module docs) and starts renewing it.
    pub(in crate::datastore::scylla) async fn acquire(
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
        let answer = match cql
            .cas(TAKE_LOCK, values, "taking the migration lock")
            .await
        {
            Ok(answer) => answer,
            // Right after another instance created the lock table, this node may not
            // know it yet ("table … does not exist" while the schema settles): retry
            // within the wait budget instead of failing the whole startup.
            Err(err) if started.elapsed() < settings.wait_timeout => {
                tracing::warn!(error = %err, "could not take the migration lock yet; retrying");
                tokio::time::sleep(poll).await;
                continue;
            }
            Err(err) => return Err(err.into()),
        };
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
