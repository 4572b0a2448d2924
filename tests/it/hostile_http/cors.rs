//! Refused requests carry CORS headers only for allowed origins.

use gitstore_api::config::Config;
use gitstore_api::datastore::{AnyDatastore, MemdbStore};
use serde_json::Value;

use crate::support::spawn_with;

#[tokio::test]
async fn errors_carry_cors_only_for_allowed_origins() {
    let mut config = Config::defaults();
    config.http.cors_origins = vec!["https://shop.example".to_owned()];
    config.http.max_body_bytes = 1024;
    let app = spawn_with(config, AnyDatastore::Memdb(MemdbStore::new())).await;
    for origin in ["https://shop.example", "https://evil.example"] {
        let requests = [
            app.client
                .put(app.url("/graphql"))
                .header("content-type", "application/json")
                .body("{}"),
            app.client
                .post(app.url("/graphql"))
                .header("content-type", "text/plain")
                .body("{}"),
            app.client
                .post(app.url("/graphql"))
                .header("content-type", "application/json")
                .body("x".repeat(2048)),
            app.client
                .post(app.url("/graphql"))
                .header("content-type", "application/json")
                .body("[]"),
        ];
        for (request, status) in requests.into_iter().zip([405, 415, 413, 400]) {
            let r = request.header("origin", origin).send().await.unwrap();
            assert_eq!(r.status(), status);
            let allowed = r.headers().get("access-control-allow-origin").cloned();
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["errors"][0]["extensions"]["code"], "INVALID_ARGUMENT");
            if origin == "https://shop.example" {
                assert_eq!(allowed.unwrap(), origin, "{status}");
            } else {
                assert!(allowed.is_none(), "{status}: {allowed:?}");
            }
        }
    }
    let r = app
        .client
        .post(app.url("/graphql"))
        .header("content-type", "application/json")
        .body("x".repeat(2048))
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["errors"][0]["message"],
        "request body is larger than the 1024-byte limit"
    );
}
