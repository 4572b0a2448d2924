//! The hand-over argument of the module docs, step by step on memdb: writes, tailer
//! reads and subscriptions interleaved by hand, so every ordering is the one asked for.

use super::*;
use crate::datastore::{Category, CategoryId, MemdbStore, Timestamp};

fn feed(buffer: usize) -> Feed {
    Feed::new(
        Instrumented::new(AnyDatastore::Memdb(MemdbStore::new())),
        FeedSettings {
            buffer,
            ..FeedSettings::default()
        },
    )
}

/// One write: one `CATEGORY CREATED` record.
async fn write(feed: &Feed) {
    let id = CategoryId::generate();
    let at = Timestamp::now();
    let category = Category {
        name: "c".to_owned(),
        slug: id.as_str().replace('_', "-"),
        id,
        parent_id: None,
        display_order: 0,
        body: None,
        created_at: at,
        updated_at: at,
    };
    feed.store()
        .create_category(&category)
        .await
        .expect("write");
}

async fn tail(feed: &Feed) {
    tailer::catch_up(feed).await.expect("tailer read");
}

/// Everything the stream has ready now (stops at the first pending read).
async fn ready(stream: &mut ChangeStream) -> Vec<u64> {
    let mut out = Vec::new();
    while let Ok(Some(item)) =
        tokio::time::timeout(std::time::Duration::from_millis(50), stream.next()).await
    {
        out.push(item.expect("no error").position);
    }
    out
}

#[tokio::test]
async fn replay_then_live_without_gap_or_duplicate() {
    let feed = feed(64);
    for _ in 0..3 {
        write(&feed).await;
    }
    tail(&feed).await; // the tailer is at 3
    write(&feed).await; // 4: written, not yet read by the tailer
    let mut from_one = feed
        .subscribe(ChangeFilter::default(), Some(1), None)
        .await
        .expect("subscribe");
    let mut live = feed
        .subscribe(ChangeFilter::default(), None, None)
        .await
        .expect("subscribe");
    write(&feed).await; // 5
    tail(&feed).await; // fans out 4 and 5
    write(&feed).await; // 6
    tail(&feed).await;
    // The first subscriber brought the tailer to the log's end (4) before it
    // registered: replay covers 2..=4, the queue 5..=6; 5 is both replayed (the replay
    // page reads on) and queued, and sent once.
    assert_eq!(ready(&mut from_one).await, [2, 3, 4, 5, 6]);
    // Without `after`: from the tailer's position at registration (4, written before).
    assert_eq!(ready(&mut live).await, [5, 6]);
    write(&feed).await;
    tail(&feed).await;
    assert_eq!(ready(&mut from_one).await, [7]);
    assert_eq!(ready(&mut live).await, [7]);
}

#[tokio::test]
async fn a_full_queue_drops_the_subscriber_with_the_position_to_resume_after() {
    let feed = feed(2);
    let mut slow = feed
        .subscribe(ChangeFilter::default(), None, None)
        .await
        .expect("subscribe");
    let mut fine = feed
        .subscribe(ChangeFilter::default(), None, None)
        .await
        .expect("subscribe");
    write(&feed).await;
    tail(&feed).await;
    assert_eq!(ready(&mut fine).await, [1]);
    write(&feed).await;
    write(&feed).await;
    tail(&feed).await; // `slow` still holds 1: 2 fills it, 3 does not fit; `fine` has room
    assert_eq!(ready(&mut fine).await, [2, 3]);
    // Queued events are not sent after the drop: the error names the last one sent.
    match slow.next().await {
        Some(Err(FeedError::Lagged {
            buffer: 2,
            resume_after: 0,
        })) => {}
        other => panic!("expected Lagged, got {other:?}"),
    }
    assert!(
        slow.next().await.is_none(),
        "the stream ends after its error"
    );
    assert_eq!(feed.subscriber_count(), 1);
}

#[tokio::test]
async fn filters_apply_to_replay_and_live() {
    let feed = feed(8);
    write(&feed).await;
    tail(&feed).await;
    let only_products = ChangeFilter {
        entities: Some(vec![ChangeEntity::Product]),
        kinds: None,
    };
    let mut none = feed
        .subscribe(only_products, Some(0), None)
        .await
        .expect("subscribe");
    write(&feed).await;
    tail(&feed).await;
    assert!(ready(&mut none).await.is_empty());
    let page = feed
        .page(
            None,
            10,
            &ChangeFilter {
                entities: Some(vec![ChangeEntity::Product]),
                kinds: None,
            },
        )
        .await
        .expect("page");
    assert!(page.records.is_empty());
    assert_eq!(
        page.end,
        Some(2),
        "the page still moved past what it scanned"
    );
    assert!(!page.has_next);
}

#[tokio::test]
async fn dropping_a_stream_unregisters_it() {
    let feed = feed(8);
    let stream = feed
        .subscribe(ChangeFilter::default(), None, None)
        .await
        .expect("subscribe");
    assert_eq!(feed.subscriber_count(), 1);
    drop(stream);
    assert_eq!(feed.subscriber_count(), 0);
}
