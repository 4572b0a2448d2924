//! GraphiQL in a real browser with the internet cut off, and a cross-origin call the way
//! the admin web app makes it.
//!
//! `tests/browser/graphiql.mjs` drives the system Chromium (through playwright-core) against an
//! in-process server, aborting every request to any other host, and runs a query from the
//! playground, and a subscription whose event appears after a mutation over HTTP. Needs `node`, Chromium and `npm ci --prefix tests/browser`
//! (`scripts/setup-browser-test` installs all three); skips without them, except in CI.

use std::path::Path;
use std::process::Command;

use gitstore_api::http::playground::serves_offline;
use serde_json::{Value, json};

use crate::support::skip_outside_ci;
use crate::support::spawn_app;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const SKU: &str = "BROWSER-1";

/// Why no browser can be driven here, if none can.
fn missing_browser() -> Option<String> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    if !Path::new(&chromium).is_file() {
        return Some(format!("no Chromium at {chromium}"));
    }
    if Command::new("node").arg("--version").output().is_err() {
        return Some("no `node` on PATH".to_owned());
    }
    if !Path::new(ROOT)
        .join("tests/browser/node_modules/playwright-core")
        .is_dir()
    {
        return Some("playwright-core not installed (npm ci --prefix tests/browser)".to_owned());
    }
    None
}

/// Why the GraphiQL run cannot happen here, if it cannot.
fn missing_prerequisite() -> Option<String> {
    if let Some(reason) = missing_browser() {
        return Some(reason);
    }
    if !serves_offline() {
        return Some(
            "GraphiQL assets not embedded in this build (npm ci --prefix assets/graphiql)"
                .to_owned(),
        );
    }
    None
}

fn assert_no_errors(response: &Value) {
    assert!(response.get("errors").is_none(), "{response:#}");
}

#[tokio::test]
async fn graphiql_runs_a_query_in_chromium_without_internet() {
    let test = "graphiql_runs_a_query_in_chromium_without_internet";
    let app = spawn_app().await;

    let html = app
        .client
        .get(app.url("/playground"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    if serves_offline() {
        // Every script and stylesheet comes from this server.
        let linked: Vec<&str> = html
            .split(['"', '\''])
            .filter(|s| s.starts_with("http:") || s.starts_with("https:") || s.starts_with("//"))
            .collect();
        assert!(
            linked.is_empty(),
            "the offline page links elsewhere: {linked:?}"
        );
        assert_eq!(html.matches("\"/playground/assets/").count(), 5, "{html}");
    }

    if let Some(reason) = missing_prerequisite() {
        skip_outside_ci(test, &reason);
        return;
    }

    let category = app
        .gql(
            r#"mutation { createCategory(input: { name: "Browser", slug: "browser" }) { category { id } } }"#,
            json!({}),
        )
        .await;
    assert_no_errors(&category);
    let category_id = category["data"]["createCategory"]["category"]["id"].clone();
    let product = app
        .gql(
            r#"mutation ($sku: String!, $categoryId: ID!) {
                createProduct(input: { sku: $sku, title: "Browser product", price: "9.99", categoryId: $categoryId }) {
                    product { id }
                }
            }"#,
            json!({ "sku": SKU, "categoryId": category_id }),
        )
        .await;
    assert_no_errors(&product);

    let screenshot = Path::new(ROOT).join("target/screenshots/graphiql.png");
    let _ = std::fs::remove_file(&screenshot);
    let mut command = Command::new("node");
    command
        .arg(Path::new(ROOT).join("tests/browser/graphiql.mjs"))
        .arg(&app.base)
        .arg(&screenshot)
        .arg(SKU);
    // Blocking, so off the runtime thread: the server answers the browser from this runtime.
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "graphiql.mjs failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains(SKU), "{stdout}");
    let size = std::fs::metadata(&screenshot).map_or(0, |m| m.len());
    assert!(
        size > 10_000,
        "screenshot {} missing or empty",
        screenshot.display()
    );
}

/// A subscription in the playground: GraphiQL opens a WebSocket through the embedded
/// graphql-ws client, a mutation over HTTP creates a product, and its event shows in the
/// result pane (`tests/browser/subscription.mjs`), with the internet cut off.
#[tokio::test]
async fn graphiql_shows_a_subscription_event_in_chromium() {
    let test = "graphiql_shows_a_subscription_event_in_chromium";
    if let Some(reason) = missing_prerequisite() {
        skip_outside_ci(test, &reason);
        return;
    }
    let app = spawn_app().await;
    let category = app
        .gql(
            r#"mutation { createCategory(input: { name: "Live", slug: "live" }) { category { id } } }"#,
            json!({}),
        )
        .await;
    assert_no_errors(&category);
    let category_id = category["data"]["createCategory"]["category"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let screenshot = Path::new(ROOT).join("target/screenshots/graphiql-subscription.png");
    let _ = std::fs::remove_file(&screenshot);
    let mut command = Command::new("node");
    command
        .arg(Path::new(ROOT).join("tests/browser/subscription.mjs"))
        .arg(&app.base)
        .arg(&screenshot)
        .arg(&category_id)
        .arg("BROWSER-SUB-1");
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "subscription.mjs failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains("BROWSER-SUB-1"), "{stdout}");
    assert!(stdout.contains("\"kind\": \"CREATED\""), "{stdout}");
}

/// A page of another origin posts to `/graphql` with `X-Request-ID` (so Chromium sends a
/// preflight): the browser lets the call through and the page can read the echoed id
/// (`tests/browser/cors.mjs`).
#[tokio::test]
async fn graphql_from_another_origin_in_chromium() {
    let test = "graphql_from_another_origin_in_chromium";
    if let Some(reason) = missing_browser() {
        skip_outside_ci(test, &reason);
        return;
    }
    let app = spawn_app().await;
    let mut command = Command::new("node");
    command
        .arg(Path::new(ROOT).join("tests/browser/cors.mjs"))
        .arg(&app.base);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "cors.mjs failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let outcome: Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(
        outcome,
        json!({ "status": 200, "requestId": "browser-cors-1",
                "body": { "data": { "products": { "totalCount": 0 } } } })
    );
}
