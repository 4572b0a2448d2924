//! Two instances on one SQLite file: a subscriber on B sees writes made through A
//! (B's tailer polls the log), in order. Needs the SQLite change log.

use std::time::Duration;

use gitstore_api::datastore::{AnyDatastore, SqliteStore};
use serde_json::json;

use super::{SUBSCRIPTION, WsClient, category, config, product};
use crate::support::spawn_with;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_on_one_instance_sees_writes_through_another() {
    let path = crate::sqlite::scratch_db();
    let open = || async {
        AnyDatastore::Sqlite(
            SqliteStore::connect(path.to_str().unwrap())
                .await
                .expect("open sqlite"),
        )
    };
    let a = spawn_with(config(|_| {}), open().await).await;
    let b = spawn_with(
        config(|c| c.changes.poll_interval = Duration::from_millis(100)),
        open().await,
    )
    .await;
    let mut client = WsClient::connect(&b).await;
    client.subscribe("1", SUBSCRIPTION, json!({})).await;
    super::registered(&a, &mut client).await;
    let cat = category(&a, "shared").await;
    let p = product(&a, &cat, "SHARED-1", None).await;
    let one = client.event(Duration::from_secs(10)).await;
    let two = client.event(Duration::from_secs(10)).await;
    assert_eq!(one["catalogChanged"]["id"], cat);
    assert_eq!(two["catalogChanged"]["id"], p);
    assert_eq!(two["catalogChanged"]["node"]["sku"], "SHARED-1");
}
