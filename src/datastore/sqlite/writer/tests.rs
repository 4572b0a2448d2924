//! The writer's own guarantees, driven deterministically: a write held inside its
//! batch lets the test queue others behind it in a known order.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::super::change_log;
use super::{MAX_BATCH, QUEUE, WriteStats};
use crate::datastore::{
    Category, CategoryId, Change, ChangeEntity, ChangeKind, Datastore, Error, Result, SqliteStore,
    Timestamp,
};

fn category(slug: &str) -> Category {
    Category::sample(slug)
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

async fn open(dir: &tempfile::TempDir) -> Arc<SqliteStore> {
    let path = dir.path().join("catalog.db");
    let store = SqliteStore::connect(path.to_str().unwrap()).await.unwrap();
    store.migrate().await.unwrap();
    Arc::new(store)
}

/// Writes waiting in the queue (the one the writer is running is not counted).
fn queued(store: &SqliteStore) -> usize {
    QUEUE - store.writes.queue.capacity()
}

/// Starts a write of `held` that keeps the writer busy, inside its batch's
/// transaction, until the returned sender fires; returns once it is running.
async fn hold_writer(
    store: &Arc<SqliteStore>,
    held: Category,
) -> (oneshot::Sender<()>, JoinHandle<Result<()>>) {
    let (release, gate) = oneshot::channel::<()>();
    let (started, running) = oneshot::channel::<()>();
    let store = Arc::clone(store);
    let task = tokio::spawn(async move {
        store
            .write("held".to_owned(), move |conn, _| {
                Box::pin(async move {
                    started.send(()).unwrap();
                    gate.await.unwrap();
                    insert(conn, &held).await;
                    Ok(())
                })
            })
            .await
    });
    running.await.unwrap();
    (release, task)
}

/// Spawns `write` and returns once it waits in the queue, so that writes queued one
/// after another run in that order.
async fn enqueue<T: Send + 'static>(
    store: &SqliteStore,
    write: impl Future<Output = Result<T>> + Send + 'static,
) -> JoinHandle<Result<T>> {
    let before = queued(store);
    let task = tokio::spawn(write);
    while queued(store) == before {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    task
}

/// A body that writes `c`, then fails or panics as `how` says (`"ok"`, `"fail"`,
/// `"panic"`).
fn body_of(
    store: &Arc<SqliteStore>,
    c: &Category,
    how: &'static str,
) -> impl Future<Output = Result<()>> + Send + 'static {
    let (store, c) = (Arc::clone(store), c.clone());
    async move {
        store
            .write(format!("writing {how}"), move |conn, _| {
                Box::pin(async move {
                    insert(conn, &c).await;
                    match how {
                        "fail" => Err(Error::not_found("category", "nowhere")),
                        "panic" => panic!("a bug in a write body"),
                        _ => Ok(()),
                    }
                })
            })
            .await
    }
}

async fn stored(store: &SqliteStore, c: &Category) -> bool {
    match store.get_category(&c.id).await {
        Ok(found) => found.slug == c.slug,
        Err(Error::NotFound { .. }) => false,
        Err(other) => panic!("reading {:?}: {other:?}", c.slug),
    }
}

/// Writes queued behind a running one share its transaction (one commit). A body
/// that fails, one that panics and one that hits a unique key in the middle of the
/// batch are each undone alone and answered with their own error; their neighbours
/// commit and are answered `Ok`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_queued_together_share_one_commit_and_fail_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let held = category("held");
    let (release, first) = hold_writer(&store, held.clone()).await;

    let before = category("before");
    let failed = category("failed");
    let panicked = category("panicked");
    let taken = Category {
        id: CategoryId::generate(),
        ..category("held")
    };
    let after = category("after");
    let good_before = enqueue(&store, body_of(&store, &before, "ok")).await;
    let failing = enqueue(&store, body_of(&store, &failed, "fail")).await;
    let panicking = enqueue(&store, body_of(&store, &panicked, "panic")).await;
    let duplicate = {
        let (store, taken) = (Arc::clone(&store), taken.clone());
        enqueue(&store.clone(), async move {
            store.create_category(&taken).await
        })
        .await
    };
    let good_after = enqueue(&store, body_of(&store, &after, "ok")).await;
    assert_eq!(
        store.write_stats(),
        WriteStats::default(),
        "nothing committed yet"
    );
    release.send(()).unwrap();

    first.await.unwrap().expect("the held write commits");
    good_before.await.unwrap().expect("a neighbour commits");
    good_after.await.unwrap().expect("a neighbour commits");
    let outcome = failing.await.unwrap();
    assert!(
        matches!(outcome, Err(Error::NotFound { .. })),
        "{outcome:?}"
    );
    let outcome = panicking.await.unwrap();
    assert!(
        matches!(outcome, Err(Error::Unavailable { .. })),
        "{outcome:?}"
    );
    let outcome = duplicate.await.unwrap();
    assert!(
        matches!(outcome, Err(Error::AlreadyExists { field: "slug", .. })),
        "{outcome:?}"
    );
    assert_eq!(
        store.write_stats(),
        WriteStats {
            commits: 1,
            writes: 6
        }
    );
    for (c, kept) in [
        (&held, true),
        (&before, true),
        (&after, true),
        (&failed, false),
        (&panicked, false),
        (&taken, false),
    ] {
        assert_eq!(stored(&store, c).await, kept, "{:?}", c.slug);
    }
    store.close().await;
}

/// However many writes are queued, one transaction takes at most `MAX_BATCH`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_holds_at_most_max_batch_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let (release, first) = hold_writer(&store, category("held")).await;
    let extra = MAX_BATCH + 44;
    let mut tasks = Vec::new();
    for n in 0..extra {
        let c = category(&format!("queued-{n}"));
        tasks.push(tokio::spawn(body_of(&store, &c, "ok")));
    }
    while queued(&store) < extra {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    release.send(()).unwrap();
    first.await.unwrap().unwrap();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(
        store.write_stats(),
        WriteStats {
            commits: 2,
            writes: 1 + extra as u64
        }
    );
    assert_eq!(store.list_categories().await.unwrap().len(), 1 + extra);
    store.close().await;
}

/// A body that ends the transaction behind the writer's back makes its savepoint
/// vanish: the batch's state is unknown, so every write in it is answered
/// `Unavailable` (and none was committed), while the write queued behind it runs in
/// a fresh batch on a fresh connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_transaction_fails_its_whole_batch_and_the_next_one_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let held = category("held");
    let (release, first) = hold_writer(&store, held.clone()).await;
    let before = category("before");
    let good_before = enqueue(&store, body_of(&store, &before, "ok")).await;
    let rogue = {
        let store = Arc::clone(&store);
        enqueue(&store.clone(), async move {
            store
                .write("rolling back".to_owned(), |conn, _| {
                    Box::pin(async move {
                        sqlx::query("ROLLBACK").execute(conn).await.unwrap();
                        Ok(())
                    })
                })
                .await
        })
        .await
    };
    let after = category("after");
    let good_after = enqueue(&store, body_of(&store, &after, "ok")).await;
    release.send(()).unwrap();

    for task in [first, good_before, rogue] {
        let outcome = task.await.unwrap();
        assert!(
            matches!(outcome, Err(Error::Unavailable { .. })),
            "{outcome:?}"
        );
    }
    good_after.await.unwrap().expect("the next batch commits");
    assert_eq!(
        store.write_stats(),
        WriteStats {
            commits: 1,
            writes: 1
        }
    );
    for (c, kept) in [(&held, false), (&before, false), (&after, true)] {
        assert_eq!(stored(&store, c).await, kept, "{:?}", c.slug);
    }
    store.close().await;
}

/// A body that appends change records for `ids` (one record each, in one statement),
/// then succeeds, fails or panics as `how` says.
fn append_then(
    store: &Arc<SqliteStore>,
    ids: &[&str],
    how: &'static str,
) -> impl Future<Output = Result<()>> + Send + 'static {
    let store = Arc::clone(store);
    let records: Vec<Change> = ids
        .iter()
        .map(|id| Change {
            kind: ChangeKind::Created,
            entity: ChangeEntity::Product,
            id: (*id).to_owned(),
            version: None,
            at: Timestamp::now(),
            changed_fields: Vec::new(),
        })
        .collect();
    async move {
        store
            .write(format!("appending {how}"), move |conn, what| {
                Box::pin(async move {
                    change_log::append(conn, &records, what).await?;
                    match how {
                        "fail" => Err(Error::not_found("category", "nowhere")),
                        "panic" => panic!("a bug in a write body"),
                        _ => Ok(()),
                    }
                })
            })
            .await
    }
}

/// Writes that appended change records and then failed or panicked inside a batch give
/// their positions back with their savepoint (`sqlite_sequence` rolls back with it):
/// the writes after them in the same transaction take the very next positions, so the
/// log has no gap; and a later batch continues from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolled_back_appends_leave_no_gap() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let (release, first) = hold_writer(&store, category("held")).await;
    let plan: [(&[&str], &str); 6] = [
        (&["a"], "ok"),
        (&["b"], "fail"),
        (&["c1", "c2"], "panic"),
        (&["d1", "d2"], "ok"),
        (&["e1", "e2", "e3"], "fail"),
        (&["f"], "ok"),
    ];
    let mut tasks = Vec::new();
    for (ids, how) in plan {
        tasks.push((how, enqueue(&store, append_then(&store, ids, how)).await));
    }
    release.send(()).unwrap();
    first.await.unwrap().unwrap();
    for (how, task) in tasks {
        let outcome = task.await.unwrap();
        match how {
            "ok" => outcome.unwrap(),
            _ => assert!(outcome.is_err(), "{how}: {outcome:?}"),
        }
    }
    assert_eq!(
        store.write_stats(),
        WriteStats {
            commits: 1,
            writes: 7
        },
        "all in one transaction"
    );
    append_then(&store, &["g"], "ok").await.unwrap();

    let read = store.read_changes(0, 100).await.unwrap();
    let seen: Vec<(u64, &str)> = read
        .records
        .iter()
        .map(|r| (r.position, r.change.id.as_str()))
        .collect();
    assert_eq!(
        seen,
        [(1, "a"), (2, "d1"), (3, "d2"), (4, "f"), (5, "g")],
        "dense positions, in write order, none for the rolled-back writes"
    );
    assert_eq!(read.pruned_through, 0);
    assert_eq!(store.change_head().await.unwrap(), 5);
    store.close().await;
}
