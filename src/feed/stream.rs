//! One subscriber's side: replay from `after`, then the live queue, without gap or
//! duplicate (see the parent module's "Hand-over" section).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;

use super::{EVENTS_SENT_METRIC, Feed, FeedError, READ_BATCH, SubscriberSignal};
use crate::datastore::{ChangeRecord, Datastore};
use crate::feed::ChangeFilter;

/// A subscription: call [`ChangeStream::next`] until it returns `None`. Dropping it
/// unregisters the subscriber.
pub struct ChangeStream {
    feed: Feed,
    id: u64,
    rx: mpsc::Receiver<Arc<ChangeRecord>>,
    signal: Arc<SubscriberSignal>,
    filter: ChangeFilter,
    /// While replaying: the position read through so far.
    replay: Option<u64>,
    replayed: VecDeque<Arc<ChangeRecord>>,
    /// The tailer's position when this subscriber registered: the live queue holds
    /// everything after it.
    registered_at: u64,
    /// Everything at or below this position was sent (or skipped by the filter).
    covered: u64,
    done: bool,
}

impl ChangeStream {
    pub(super) fn new(
        feed: Feed,
        id: u64,
        rx: mpsc::Receiver<Arc<ChangeRecord>>,
        signal: Arc<SubscriberSignal>,
        filter: ChangeFilter,
        after: Option<u64>,
        registered_at: u64,
    ) -> Self {
        Self {
            feed,
            id,
            rx,
            signal,
            filter,
            replay: after,
            replayed: VecDeque::new(),
            registered_at,
            covered: after.unwrap_or(registered_at),
            done: false,
        }
    }

    /// What the tailer and this stream share (its transport waits on it to close a
    /// connection whose subscriber was dropped).
    #[must_use]
    pub fn signal(&self) -> Arc<SubscriberSignal> {
        self.signal.clone()
    }

    /// The next record, or the error that ends the stream; `None` once it has ended
    /// (after an error, or when the feed stops).
    pub async fn next(&mut self) -> Option<Result<Arc<ChangeRecord>, FeedError>> {
        if self.done {
            return None;
        }
        let item = self.produce().await;
        match &item {
            Some(Ok(record)) => {
                self.covered = record.position;
                metrics::counter!(EVENTS_SENT_METRIC).increment(1);
            }
            Some(Err(_)) | None => self.done = true,
        }
        item
    }

    async fn produce(&mut self) -> Option<Result<Arc<ChangeRecord>, FeedError>> {
        while let Some(read_through) = self.replay {
            if let Some(record) = self.replayed.pop_front() {
                return Some(Ok(record));
            }
            if read_through >= self.registered_at {
                self.replay = None;
                break;
            }
            let read = match self
                .feed
                .store()
                .read_changes(read_through, READ_BATCH)
                .await
            {
                Ok(read) => read,
                Err(err) => return Some(Err(err.into())),
            };
            if read.pruned_through > read_through {
                return Some(Err(FeedError::Expired {
                    after: read_through,
                    pruned_through: read.pruned_through,
                }));
            }
            let Some(last) = read.records.last().map(|r| r.position) else {
                self.replay = None;
                break;
            };
            self.replay = Some(last);
            self.replayed.extend(
                read.records
                    .into_iter()
                    .filter(|r| self.filter.matches(&r.change))
                    .map(Arc::new),
            );
            if self.replayed.is_empty() {
                // Nothing matched in this page: the filter skipped it all.
                self.covered = self.covered.max(last);
            }
        }
        loop {
            if let Some(err) = self.dropped_error() {
                return Some(Err(err));
            }
            let Some(record) = self.rx.recv().await else {
                // The tailer let go: dropped (said above on the next turn) or stopped.
                return self.dropped_error().map(Err);
            };
            if record.position > self.covered {
                return Some(Ok(record));
            }
        }
    }

    fn dropped_error(&self) -> Option<FeedError> {
        if !self.signal.is_dropped() {
            return None;
        }
        Some(if self.signal.pruned.load(Ordering::Acquire) {
            FeedError::PrunedBehind {
                resume_after: self.covered,
            }
        } else {
            FeedError::Lagged {
                buffer: self.feed.inner.settings.buffer,
                resume_after: self.covered,
            }
        })
    }
}

impl Drop for ChangeStream {
    fn drop(&mut self) {
        self.feed.unregister(self.id);
    }
}
