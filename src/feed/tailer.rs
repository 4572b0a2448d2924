//! The tailer (reads the log after its position and fans records out) and the pruner.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::sync::mpsc::error::TrySendError;

use super::{APPENDED_METRIC, DROPPED_METRIC, DropReason, Feed, PRUNED_METRIC, READ_BATCH};
use crate::datastore::{ChangeRecord, Datastore, Timestamp};

/// Longest pause after a failed read (the pause doubles from the poll interval).
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Reads the log whenever `writes` wakes it while someone subscribes, and every poll
/// interval, until the feed stops.
///
/// Every acknowledged write of this process wakes the tailer. With no subscriber nobody
/// waits for the records, so a wake-up is left to the next poll: reading once per write
/// would cost every write a datastore read (on SQLite about a third of a write's CPU)
/// for nothing. The first subscriber to join catches the tailer up before it registers
/// ([`Feed::subscribe`]), so it starts from the log's end all the same.
pub(super) async fn run(feed: Feed, writes: Arc<Notify>) {
    let poll = feed.inner.settings.poll_interval;
    let mut stop = feed.inner.shutdown.subscribe();
    let mut pause = poll;
    loop {
        pause = match catch_up(&feed).await {
            Ok(()) => poll,
            Err(()) => (pause * 2).min(MAX_BACKOFF.max(poll)),
        };
        let due = tokio::time::Instant::now() + pause;
        loop {
            let woken = tokio::select! {
                () = writes.notified() => true,
                () = tokio::time::sleep_until(due) => false,
                _ = stop.wait_for(|stopped| *stopped) => return,
            };
            if !woken || feed.subscriber_count() > 0 {
                break;
            }
        }
    }
}

/// Reads and fans out everything after the tailer's position. The datastore's error
/// was logged by the decorator; the caller backs off.
pub(super) async fn catch_up(feed: &Feed) -> Result<(), ()> {
    let store = feed.store();
    let known = feed.lock().last;
    let mut last = match known {
        Some(last) => last,
        None => {
            let head = store.change_head().await.map_err(|_| ())?;
            let mut state = feed.lock();
            *state.last.get_or_insert(head)
        }
    };
    loop {
        let read = store.read_changes(last, READ_BATCH).await.map_err(|_| ())?;
        if read.pruned_through > last {
            // Retention overtook the tailer (a pause longer than the retention): the
            // records in between are gone for every subscriber.
            tracing::warn!(
                position = last,
                pruned_through = read.pruned_through,
                "change records were pruned before the feed read them; dropping subscribers"
            );
            drop_all(feed, DropReason::Pruned);
        }
        let Some(newest) = read.records.last().map(|r| r.position) else {
            let mut state = feed.lock();
            let position = state.last.get_or_insert(last);
            *position = (*position).max(read.pruned_through);
            return Ok(());
        };
        for record in &read.records {
            metrics::counter!(
                APPENDED_METRIC,
                "entity" => record.change.entity.as_str(),
                "kind" => record.change.kind.as_str()
            )
            .increment(1);
        }
        let full = read.records.len() >= READ_BATCH;
        fan_out(feed, read.records);
        last = newest;
        if !full {
            return Ok(());
        }
    }
}

/// Hands `records` to every matching subscriber, dropping those whose queue is full
/// or whose stream is gone, and advances the tailer's position.
fn fan_out(feed: &Feed, records: Vec<ChangeRecord>) {
    let buffer = feed.inner.settings.buffer;
    let mut state = feed.lock();
    let from = state.last.unwrap_or_default();
    let mut gone = Vec::new();
    for record in records {
        if record.position <= from {
            continue;
        }
        let record = Arc::new(record);
        for (id, entry) in &state.subscribers {
            if !entry.filter.matches(&record.change) {
                continue;
            }
            match entry.tx.try_send(record.clone()) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    tracing::info!(
                        subscriber = id,
                        buffer,
                        "subscriber fell behind; dropping it"
                    );
                    metrics::counter!(DROPPED_METRIC, "reason" => "lag").increment(1);
                    entry.signal.drop_for(DropReason::Lag);
                    gone.push(*id);
                }
                Err(TrySendError::Closed(_)) => gone.push(*id),
            }
        }
        for id in gone.drain(..) {
            state.remove(id);
        }
        state.last = Some(record.position);
    }
}

fn drop_all(feed: &Feed, reason: DropReason) {
    let mut state = feed.lock();
    let label = match reason {
        DropReason::Lag => "lag",
        DropReason::Pruned => "pruned",
    };
    for entry in state.subscribers.values() {
        metrics::counter!(DROPPED_METRIC, "reason" => label).increment(1);
        entry.signal.drop_for(reason);
    }
    state.clear();
}

/// Prunes records older than the retention at start and then every quarter of it (at
/// least every minute), until the feed stops.
pub(super) async fn prune(feed: Feed) {
    let retention = feed.inner.settings.retention;
    let every = (retention / 4).clamp(Duration::from_millis(50), Duration::from_secs(60));
    let mut stop = feed.inner.shutdown.subscribe();
    loop {
        let cutoff_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        let before = Timestamp::from_millis(Timestamp::now().millis().saturating_sub(cutoff_ms));
        if let Ok(removed) = feed.store().prune_changes(before).await
            && removed > 0
        {
            metrics::counter!(PRUNED_METRIC).increment(removed);
            tracing::debug!(removed, "pruned change records older than the retention");
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
    }
}
