//! The change feed: the change log (`crate::datastore::changes`) as a live, resumable
//! stream for subscribers, and as pages for `changes` queries.
//!
//! # One tailer per process
//! [`Feed::start`] spawns one tailer task ([`tailer`]). It holds the highest position it
//! has read (starting at `change_head()`), and reads the log after it whenever a write
//! through this process wakes it ([`crate::datastore::Instrumented::writes`]) while
//! someone subscribes, and every poll interval (`GITSTORE_CHANGES_POLL_INTERVAL`, so
//! writes through *other* instances on the same SQLite file or Scylla keyspace arrive
//! too). With nobody subscribed it reads only on the poll, so writes pay for no log
//! read; the first subscriber to join catches it up first. Each record it reads is
//! counted and handed to every matching subscriber's bounded queue with `try_send`:
//! the tailer never waits for a subscriber, so writers (who only signal a `Notify`)
//! never do either. A subscriber whose queue is full (`GITSTORE_SUBSCRIPTIONS_BUFFER`
//! events) is dropped for lag: it is removed, told so, and its stream ends with an
//! error naming the position to resume after ([`FeedError::Lagged`]).
//!
//! # Hand-over without gap or duplicate
//! A subscriber registers with the tailer *first*, under the lock the tailer fans out
//! under, and learns the tailer's position `h` at that instant: every record after `h`
//! will reach its queue (the tailer reads positions in increasing order after `h`).
//! Then, with `after = a`, it replays the log after `a` page by page ([`stream`]) until
//! it has read a record at or past `h` (or the log ends: every record at or below `h`
//! was readable when the tailer read it, so none is missed). Replay covers `(a, h]`,
//! the queue covers `(h, ∞)`; the stream remembers the highest position it has covered
//! and drops queued records at or below it, so a record both replayed and queued is
//! sent once. Without `after`, the stream starts at `h`. Positions only grow, so events
//! arrive in position order.
//!
//! # Retention
//! [`Feed::start`] also spawns the pruner: `prune_changes(now - GITSTORE_CHANGES_RETENTION)`
//! at start and then every quarter of the retention (at least every minute). A cursor
//! at or after the pruned prefix still works; an older one is refused
//! ([`FeedError::Expired`]) with the position the retained history starts after.

mod page;
pub mod stream;
mod tailer;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};

use crate::datastore::{
    AnyDatastore, Change, ChangeEntity, ChangeKind, ChangeRecord, Datastore, Instrumented,
};
pub use page::ChangePage;
pub use stream::ChangeStream;

/// Counter of change records the tailer read, by `entity` and `kind`: the changes
/// appended to the log, by this instance or another one sharing the datastore.
pub const APPENDED_METRIC: &str = "gitstore_changes_appended_total";
/// Counter of records removed by retention.
pub const PRUNED_METRIC: &str = "gitstore_changes_pruned_total";
/// Gauge of live subscriptions registered with the tailer.
pub const SUBSCRIBERS_METRIC: &str = "gitstore_subscriptions_active";
/// Counter of change events sent to subscribers (replayed and live).
pub const EVENTS_SENT_METRIC: &str = "gitstore_subscription_events_sent_total";
/// Counter of subscriptions dropped, by `reason` (`lag`, `pruned`).
pub const DROPPED_METRIC: &str = "gitstore_subscriptions_dropped_total";

/// Records read per datastore call (tailer, replay, pages).
pub const READ_BATCH: usize = 500;

/// How the feed runs.
#[derive(Clone, Copy, Debug)]
pub struct FeedSettings {
    /// How often the log is read when no local write woke the tailer.
    pub poll_interval: Duration,
    /// Events one subscriber may have queued before it is dropped for lag.
    pub buffer: usize,
    /// How long records are kept.
    pub retention: Duration,
}

impl Default for FeedSettings {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(200),
            buffer: 1024,
            retention: Duration::from_secs(7 * 86_400),
        }
    }
}

/// Which records a reader wants; `None` matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChangeFilter {
    /// Only these entities.
    pub entities: Option<Vec<ChangeEntity>>,
    /// Only these kinds.
    pub kinds: Option<Vec<ChangeKind>>,
}

impl ChangeFilter {
    /// Whether `change` passes.
    #[must_use]
    pub fn matches(&self, change: &Change) -> bool {
        self.entities
            .as_ref()
            .is_none_or(|e| e.contains(&change.entity))
            && self.kinds.as_ref().is_none_or(|k| k.contains(&change.kind))
    }
}

/// Why a read of the feed failed.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The position asked for is older than the retained history.
    #[error(
        "change position {after} is older than the retained change history, which starts \
         after position {pruned_through} (older records were removed by retention); resume \
         with after: \"{pruned_through}\" (missing what was pruned) or from the start"
    )]
    Expired {
        /// The position asked for.
        after: u64,
        /// The highest pruned position.
        pruned_through: u64,
    },
    /// The subscriber fell too far behind and was dropped.
    #[error(
        "subscription dropped: the client fell more than {buffer} events behind; resume with \
         after: \"{resume_after}\""
    )]
    Lagged {
        /// The queue size it overflowed.
        buffer: usize,
        /// The last position it was sent (or covered).
        resume_after: u64,
    },
    /// Retention removed records the subscriber had not yet been sent.
    #[error(
        "subscription dropped: records after position {resume_after} were pruned before they \
         were sent; resume from the start"
    )]
    PrunedBehind {
        /// The last position it was sent.
        resume_after: u64,
    },
    /// The datastore failed.
    #[error(transparent)]
    Store(#[from] crate::datastore::Error),
}

/// Why the tailer dropped a subscriber.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DropReason {
    Lag,
    Pruned,
}

/// One client connection carrying subscriptions (a WebSocket): how a subscription
/// asks its transport to close the connection, and how the tailer tells the transport
/// that one of its subscribers was dropped even while nothing reads the socket.
#[derive(Debug, Default)]
pub struct Connection {
    close: Mutex<Option<String>>,
    dropped: AtomicBool,
    wake: Notify,
}

impl Connection {
    /// Asks the transport to close the connection with `reason` (the first reason
    /// asked for wins).
    pub fn request_close(&self, reason: String) {
        self.close
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(reason);
        self.wake.notify_waiters();
    }

    /// The reason a subscription asked to close with, if one did.
    #[must_use]
    pub fn close_reason(&self) -> Option<String> {
        self.close
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Resolves once the tailer has dropped one of this connection's subscribers.
    pub async fn subscriber_dropped(&self) {
        loop {
            let notified = self.wake.notified();
            if self.dropped.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }
}

/// What the tailer and a subscriber's stream share.
#[derive(Debug, Default)]
pub struct SubscriberSignal {
    dropped: AtomicBool,
    pruned: AtomicBool,
    /// The connection the subscriber came on, told when it is dropped.
    connection: Option<Arc<Connection>>,
}

impl SubscriberSignal {
    /// Whether the tailer dropped this subscriber.
    #[must_use]
    pub fn is_dropped(&self) -> bool {
        self.dropped.load(Ordering::Acquire)
    }

    fn drop_for(&self, reason: DropReason) {
        if reason == DropReason::Pruned {
            self.pruned.store(true, Ordering::Release);
        }
        self.dropped.store(true, Ordering::Release);
        if let Some(connection) = &self.connection {
            connection.dropped.store(true, Ordering::Release);
            connection.wake.notify_waiters();
        }
    }
}

/// A registered subscriber, as the tailer sees it.
struct Entry {
    tx: mpsc::Sender<Arc<ChangeRecord>>,
    filter: ChangeFilter,
    signal: Arc<SubscriberSignal>,
}

/// The tailer's position and the subscribers it fans out to, under one lock: a
/// subscriber registers between two fan-outs, never during one.
#[derive(Default)]
struct State {
    /// The highest position read and fanned out; `None` until first known.
    last: Option<u64>,
    subscribers: HashMap<u64, Entry>,
}

impl State {
    // The gauge moves by steps, never `set`: every feed of the process (tests run
    // many servers in one) adds to the one process-wide series.

    fn add(&mut self, id: u64, entry: Entry) {
        self.subscribers.insert(id, entry);
        metrics::gauge!(SUBSCRIBERS_METRIC).increment(1.0);
    }

    fn remove(&mut self, id: u64) {
        if self.subscribers.remove(&id).is_some() {
            metrics::gauge!(SUBSCRIBERS_METRIC).decrement(1.0);
        }
    }

    fn clear(&mut self) {
        let gone = self.subscribers.len();
        self.subscribers.clear();
        metrics::gauge!(SUBSCRIBERS_METRIC).decrement(gone as f64);
    }
}

struct Inner {
    store: Instrumented<AnyDatastore>,
    settings: FeedSettings,
    state: Mutex<State>,
    next_id: AtomicU64,
    shutdown: watch::Sender<bool>,
}

/// The process's change feed: cheap to clone.
#[derive(Clone)]
pub struct Feed {
    inner: Arc<Inner>,
}

impl Feed {
    /// A feed over `store`; nothing runs until [`Feed::start`].
    #[must_use]
    pub fn new(store: Instrumented<AnyDatastore>, settings: FeedSettings) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                settings,
                state: Mutex::default(),
                next_id: AtomicU64::new(1),
                shutdown: watch::channel(false).0,
            }),
        }
    }

    /// The settings it runs with.
    #[must_use]
    pub fn settings(&self) -> FeedSettings {
        self.inner.settings
    }

    /// Spawns the tailer and the pruner; they stop at [`Feed::stop`].
    pub fn start(&self) {
        // Shown at zero from the start, so a dashboard can tell "none" from "unknown".
        for reason in ["lag", "pruned"] {
            metrics::counter!(DROPPED_METRIC, "reason" => reason).increment(0);
        }
        metrics::counter!(EVENTS_SENT_METRIC).increment(0);
        metrics::gauge!(SUBSCRIBERS_METRIC).increment(0.0);
        tokio::spawn(tailer::run(self.clone(), self.inner.store.writes()));
        tokio::spawn(tailer::prune(self.clone()));
    }

    /// Stops the tailer and the pruner and ends every subscription stream (at shutdown).
    pub fn stop(&self) {
        self.inner.shutdown.send_replace(true);
        self.lock().clear();
    }

    /// Resolves once [`Feed::stop`] was called.
    pub async fn stopped(&self) {
        let mut rx = self.inner.shutdown.subscribe();
        let _ = rx.wait_for(|stopped| *stopped).await;
    }

    /// Subscribes: records matching `filter` after `after` (replayed first), or, without
    /// `after`, after the tailer's current position, then live; `connection` is told
    /// if the tailer drops the subscriber.
    ///
    /// # Errors
    /// The datastore cannot say where the log ends (the stream's own errors come as
    /// its items).
    pub async fn subscribe(
        &self,
        filter: ChangeFilter,
        after: Option<u64>,
        connection: Option<Arc<Connection>>,
    ) -> Result<ChangeStream, FeedError> {
        if self.lock().last.is_none() {
            let head = self.inner.store.change_head().await?;
            let mut state = self.lock();
            if state.last.is_none() {
                state.last = Some(head);
            }
        }
        if self.subscriber_count() == 0 {
            // With nobody subscribed the tailer reads only every poll interval: bring it
            // to the log's end first, so that this subscriber starts from there. (A
            // concurrent catch-up is harmless: fan-out only ever moves the position on.)
            // A failed read leaves the position where it was: at worst this subscriber
            // also gets the records of the last poll interval.
            let _ = tailer::catch_up(self).await;
        }
        let (tx, rx) = mpsc::channel(self.inner.settings.buffer);
        let signal = Arc::new(SubscriberSignal {
            connection,
            ..SubscriberSignal::default()
        });
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let registered_at = {
            let mut state = self.lock();
            state.add(
                id,
                Entry {
                    tx,
                    filter: filter.clone(),
                    signal: signal.clone(),
                },
            );
            state.last.unwrap_or_default()
        };
        Ok(ChangeStream::new(
            self.clone(),
            id,
            rx,
            signal,
            filter,
            after,
            registered_at,
        ))
    }

    /// A page of up to `first` records matching `filter` after `after` (from the oldest
    /// retained record without it); see [`ChangePage`].
    ///
    /// # Errors
    /// [`FeedError::Expired`] for an `after` older than the retained history;
    /// [`FeedError::Store`] when the datastore fails.
    pub async fn page(
        &self,
        after: Option<u64>,
        first: usize,
        filter: &ChangeFilter,
    ) -> Result<ChangePage, FeedError> {
        page::read(&self.inner.store, after, first, filter).await
    }

    /// Live subscribers registered now.
    #[must_use]
    pub fn subscriber_count(&self) -> usize {
        self.lock().subscribers.len()
    }

    fn store(&self) -> &Instrumented<AnyDatastore> {
        &self.inner.store
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Removes a subscriber (its stream was dropped).
    fn unregister(&self, id: u64) {
        self.lock().remove(id);
    }
}
