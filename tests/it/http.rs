//! The HTTP surface on a real socket: health, readiness, metrics, GraphiQL, transport errors.

use serde_json::{Value, json};

use crate::support::{BinaryApp, spawn_app};

#[tokio::test]
async fn health_and_ready() {
    let app = spawn_app().await;
    let health: Value = app
        .client
        .get(app.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    assert!(health["timestamp"].as_str().unwrap().ends_with('Z'));
    let head = app.client.head(app.url("/health")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    let ready = app.client.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let mut body: Value = ready.json().await.unwrap();
    // The Go shape {status, checks: {datastore, uptime}}, plus our own fields.
    assert!(body["checks"]["datastore"]["latencyMs"].as_f64().unwrap() >= 0.0);
    assert!(
        body["checks"]["uptime"].as_str().unwrap().ends_with('s'),
        "{body}"
    );
    body["checks"]["datastore"]
        .as_object_mut()
        .unwrap()
        .remove("latencyMs");
    body["checks"].as_object_mut().unwrap().remove("uptime");
    assert_eq!(
        body,
        json!({
            "status": "healthy",
            "checks": { "datastore": { "status": "healthy", "backend": "memdb" } },
            "backend": "memdb",
            "migrations": "applied",
            "auth": "disabled",
            "version": env!("CARGO_PKG_VERSION"),
        })
    );
}

/// Before migrations are applied `/ready` is 503 with `migrations: pending`, while
/// `/health` already answers.
#[tokio::test]
async fn ready_is_503_until_migrated() {
    use gitstore_api::app::App;
    use gitstore_api::config::Config;
    use gitstore_api::datastore::{AnyDatastore, MemdbStore};
    let app = App::with_store(Config::defaults(), AnyDatastore::Memdb(MemdbStore::new()))
        .expect("valid settings");
    let router = gitstore_api::http::router(app.state().clone(), &Config::defaults().http);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        axum::serve(listener, axum::ServiceExt::into_make_service(router)).await
    });
    let client = reqwest::Client::new();
    let ready = client.get(format!("{base}/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "unavailable", "{body}");
    assert_eq!(body["migrations"], "pending", "{body}");
    assert_eq!(
        body["checks"]["datastore"]["status"], "unavailable",
        "{body}"
    );
    assert!(body["checks"]["datastore"]["error"].is_string(), "{body}");
    let health = client.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    server.abort();
}

#[tokio::test]
async fn graphql_post_and_get() {
    let app = spawn_app().await;
    let created = app
        .gql(
            "mutation($i: CreateCategoryInput!) { createCategory(input: $i) { category { slug } } }",
            json!({ "i": { "name": "Books", "slug": "books" } }),
        )
        .await;
    assert_eq!(
        created["data"]["createCategory"]["category"]["slug"],
        "books"
    );
    let get: Value = app
        .client
        .get(app.url("/graphql"))
        .query(&[
            (
                "query",
                "query($s: String!) { category(slug: $s) { name } }",
            ),
            ("variables", "{\"s\":\"books\"}"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(get, json!({ "data": { "category": { "name": "Books" } } }));
    // Batches are accepted too.
    let batch: Value = app
        .client
        .post(app.url("/graphql"))
        .json(&json!([{ "query": "{ categories { slug } }" }, { "query": "{ collections { slug } }" }]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        batch,
        json!([{ "data": { "categories": [{ "slug": "books" }] } }, { "data": { "collections": [] } }])
    );
}

#[tokio::test]
async fn transport_errors_are_clear() {
    let app = spawn_app().await;
    let bad = app
        .client
        .post(app.url("/graphql"))
        .header("content-type", "application/json")
        .body("{\"query\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.unwrap();
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.starts_with("request body is not a valid GraphQL JSON request"),
        "{message}"
    );
    assert_eq!(body["errors"][0]["extensions"]["code"], "INVALID_ARGUMENT");

    let empty = app
        .client
        .post(app.url("/graphql"))
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status(), 400);
    // Without a content type the same empty POST is refused before its body is read.
    let untyped = app.client.post(app.url("/graphql")).send().await.unwrap();
    assert_eq!(untyped.status(), 415);

    let mutation_over_get = app
        .client
        .get(app.url("/graphql"))
        .query(&[("query", "mutation { logout { success } }")])
        .send()
        .await
        .unwrap();
    assert_eq!(mutation_over_get.status(), 405);

    let huge = format!(
        "{{\"query\": \"{{ products {{ totalCount }} }}\", \"x\": \"{}\"}}",
        "a".repeat(2 * 1024 * 1024)
    );
    let too_big = app
        .client
        .post(app.url("/graphql"))
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(too_big.status(), 413);

    let missing = app.client.get(app.url("/nope")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn root_redirects_to_playground_which_serves_its_assets() {
    let app = spawn_app().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let root = client.get(app.url("/")).send().await.unwrap();
    assert!(root.status().is_redirection());
    assert_eq!(root.headers()["location"], "/playground");
    let page = app.client.get(app.url("/playground")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text().await.unwrap();
    assert!(
        html.contains("/graphql"),
        "the page points GraphiQL at /graphql"
    );
    if gitstore_api::http::playground::serves_offline() {
        let assets: Vec<&str> = html
            .split(['"', '\''])
            .filter(|s| s.starts_with("/playground/assets/"))
            .collect();
        assert!(assets.len() >= 3, "page links its local assets: {assets:?}");
        for asset in assets {
            let r = app.client.get(app.url(asset)).send().await.unwrap();
            assert_eq!(r.status(), 200, "{asset}");
            assert!(r.bytes().await.unwrap().len() > 1000, "{asset} has content");
        }
    } else {
        crate::support::skip_outside_ci(
            "playground assets",
            "GraphiQL assets not embedded (run `npm ci --prefix assets/graphiql`)",
        );
    }
}

/// Runs the real binary so its `/metrics` belong to this test alone, and proves the
/// batching: a page of 10 or 100 products (or one product) with nested
/// category/parent/collections costs exactly one batch call per nesting level.
#[tokio::test]
async fn metrics_show_datastore_operations_and_batched_loading() {
    let app = BinaryApp::start(&[]).await.expect("binary starts");
    let client = reqwest::Client::new();
    let gql = |query: String| {
        let client = client.clone();
        let url = format!("{}/graphql", app.base);
        async move {
            let r: Value = client
                .post(url)
                .json(&json!({ "query": query }))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert!(r.get("errors").is_none(), "{r}");
            r
        }
    };
    let root = gql("mutation { createCategory(input: { name: \"Root\", slug: \"root\" }) { category { id } } }".into()).await;
    let root_id = root["data"]["createCategory"]["category"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut children = Vec::new();
    for i in 0..3 {
        let c = gql(format!("mutation {{ createCategory(input: {{ name: \"C{i}\", slug: \"c{i}\", parentId: \"{root_id}\" }}) {{ category {{ id }} }} }}")).await;
        children.push(
            c["data"]["createCategory"]["category"]["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let coll = gql("mutation { createCollection(input: { name: \"All\", slug: \"all\" }) { collection { id } } }".into()).await;
    let coll_id = coll["data"]["createCollection"]["collection"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for i in 0..10 {
        let cat = &children[i % 3];
        gql(format!("mutation {{ createProduct(input: {{ sku: \"M-{i}\", title: \"t\", price: \"1\", categoryId: \"{cat}\", collectionIds: [\"{coll_id}\"] }}) {{ product {{ id }} }} }}")).await;
    }
    let metric = |text: &str, op: &str| -> u64 {
        let needle = format!(
            "gitstore_datastore_operation_duration_seconds_count{{operation=\"{op}\",backend=\"memdb\"}}"
        );
        text.lines()
            .find(|l| l.starts_with(&needle))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let scrape = || async {
        client
            .get(format!("{}/metrics", app.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    // Without loaders this query costs 10 category reads, 10 parent reads and 10
    // collection reads. The page prefetches its relations, one batch per level, so
    // every run costs exactly one call per level, whatever the scheduling.
    let mut after = String::new();
    let per_level = |query: &'static str| {
        let gql = &gql;
        let scrape = &scrape;
        async move {
            let before = scrape().await;
            gql(query.into()).await;
            let after = scrape().await;
            let delta = |op: &str| metric(&after, op) - metric(&before, op);
            (
                delta("list_products"),
                delta("get_categories"),
                delta("get_collections"),
                after,
            )
        }
    };
    for _ in 0..3 {
        let (lists, categories, collections, text) = per_level(
            "{ products(first: 10) { edges { node { sku category { slug parent { slug } } collections { slug } } } } }",
        )
        .await;
        assert_eq!(
            (lists, categories, collections),
            (1, 2, 1),
            "one list, one batch for the categories, one for their parents, one for collections"
        );
        after = text;
    }
    // Without `parent` the page is answered without the engine from its second run on
    // (`graphql::fast`), with the same calls: one per level.
    for run in 0..3 {
        let (lists, categories, collections, _) = per_level(
            "{ products(first: 10) { edges { node { sku category { slug } collections { slug } } } } }",
        )
        .await;
        assert_eq!((lists, categories, collections), (1, 1, 1), "run {run}");
    }
    // A page of 100 (110 products in all) costs the same calls as a page of 10.
    let mut many = String::from("mutation {");
    for i in 10..110 {
        let cat = &children[i % 3];
        many.push_str(&format!(" p{i}: createProduct(input: {{ sku: \"M-{i}\", title: \"t\", price: \"1\", categoryId: \"{cat}\", collectionIds: [\"{coll_id}\"] }}) {{ product {{ id }} }}"));
    }
    many.push('}');
    gql(many).await;
    let (lists, categories, collections, _) = per_level(
        "{ products(first: 100) { edges { node { sku category { slug parent { slug } } collections { slug } } } } }",
    )
    .await;
    assert_eq!((lists, categories, collections), (1, 2, 1), "first: 100");
    // One product: its relations are prefetched too.
    let (_, categories, collections, _) = per_level(
        "{ product(sku: \"M-1\") { category { slug parent { slug } } collections { slug } } }",
    )
    .await;
    assert_eq!((categories, collections), (2, 1), "one product");
    assert!(after.contains("gitstore_datastore_operation_duration_seconds_bucket{operation=\"create_product\",backend=\"memdb\",le=\"0.00001\"}"), "10 µs bucket present");
    assert!(after.contains("le=\"10\""), "10 s bucket present");
    // A duplicate sku shows up as an error of kind already_exists.
    let dup: Value = client
        .post(format!("{}/graphql", app.base))
        .json(&json!({ "query": format!("mutation {{ createProduct(input: {{ sku: \"M-1\", title: \"t\", price: \"1\", categoryId: \"{root_id}\" }}) {{ product {{ id }} }} }}") }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(dup["errors"][0]["extensions"]["code"], "ALREADY_EXISTS");
    let text = scrape().await;
    assert!(text.contains("gitstore_datastore_operation_errors_total{operation=\"create_product\",backend=\"memdb\",kind=\"already_exists\"} 1"), "{text}");
    assert!(text.contains(
        "gitstore_graphql_requests_total{operation_type=\"mutation\",outcome=\"error\"} 1"
    ));
    assert!(text.contains(
        "gitstore_http_requests_total{method=\"POST\",route=\"/graphql\",status=\"200\"}"
    ));
}

#[tokio::test]
async fn introspection_can_be_switched_off_and_cors_is_configurable() {
    use gitstore_api::config::Config;
    use gitstore_api::datastore::{AnyDatastore, MemdbStore};
    let mut config = Config::defaults();
    config.graphql.introspection = false;
    config.http.cors_origins = vec!["https://shop.example".to_owned()];
    let app = crate::support::spawn_with(config, AnyDatastore::Memdb(MemdbStore::new())).await;
    let r = app
        .gql("{ __schema { queryType { name } } }", json!({}))
        .await;
    assert_eq!(
        r["data"]["__schema"],
        Value::Null,
        "introspection is off: {r}"
    );
    let ok = app.gql("{ categories { slug } }", json!({})).await;
    assert_eq!(ok, json!({ "data": { "categories": [] } }));
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/graphql"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let allowed = preflight("https://shop.example").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://shop.example"
    );
    let denied = preflight("https://evil.example").await.unwrap();
    assert!(
        denied
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );

    let open = spawn_app().await;
    let r = open
        .gql("{ __schema { queryType { name } } }", json!({}))
        .await;
    assert_eq!(r["data"]["__schema"]["queryType"]["name"], "Query");
    let any = open
        .client
        .request(reqwest::Method::OPTIONS, open.url("/graphql"))
        .header("origin", "https://anywhere.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(any.headers()["access-control-allow-origin"], "*");
}

/// POSTs `body` to `/graphql` chunked, each piece of `piece` bytes in its own write, and
/// returns the status line and the response body.
async fn post_in_pieces(
    app: &crate::support::TestApp,
    body: &[u8],
    piece: usize,
) -> (String, Value) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .unwrap();
    stream.set_nodelay(true).unwrap();
    stream
        .write_all(
            b"POST /graphql HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
              transfer-encoding: chunked\r\nconnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    for part in body.chunks(piece) {
        let mut chunk = format!("{:x}\r\n", part.len()).into_bytes();
        chunk.extend_from_slice(part);
        chunk.extend_from_slice(b"\r\n");
        stream.write_all(&chunk).await.unwrap();
        stream.flush().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    stream.write_all(b"0\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8(answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let status = head.lines().next().unwrap().to_owned();
    (status, serde_json::from_str(body).unwrap())
}

/// A body that arrives in pieces is read whole: a planned query, a mutation and a body
/// that grows past the limit answer as they do when sent in one piece.
#[tokio::test]
async fn bodies_in_pieces_are_read_whole() {
    let app = spawn_app().await;
    let create = json!({
        "query": "mutation($i: CreateCategoryInput!) { createCategory(input: $i) { category { id slug } } }",
        "variables": { "i": { "name": "Pieces", "slug": "pieces" } },
    });
    let (status, created) = post_in_pieces(&app, create.to_string().as_bytes(), 7).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    let category = &created["data"]["createCategory"]["category"];
    assert_eq!(category["slug"], "pieces", "{created}");
    let created = app
        .gql(
            "mutation($i: CreateProductInput!) { createProduct(input: $i) { product { sku } } }",
            json!({ "i": { "sku": "PIECE-1", "title": "In pieces", "price": "1.00",
                           "currency": "USD", "categoryId": category["id"] } }),
        )
        .await;
    assert_eq!(
        created["data"]["createProduct"]["product"]["sku"], "PIECE-1",
        "{created}"
    );
    let query = "query($sku: String!) { product(sku: $sku) { sku title price } }";
    let variables = json!({ "sku": "PIECE-1" });
    // The first answer comes from the engine, later ones from the plan it leaves.
    let whole = app.gql(query, variables.clone()).await;
    assert_eq!(whole["data"]["product"]["title"], "In pieces");
    assert_eq!(app.gql(query, variables.clone()).await, whole);
    let body = json!({ "query": query, "variables": variables }).to_string();
    for piece in [1, 5, 64] {
        let (status, answer) = post_in_pieces(&app, body.as_bytes(), piece).await;
        assert_eq!(status, "HTTP/1.1 200 OK", "pieces of {piece}");
        assert_eq!(answer, whole, "pieces of {piece}");
    }
    let limit = gitstore_api::config::Config::defaults().http.max_body_bytes;
    let padded = format!(
        r#"{{"query": "{{ __typename }}", "x": "{}"}}"#,
        "a".repeat(limit)
    );
    let (status, refused) = post_in_pieces(&app, padded.as_bytes(), limit / 4).await;
    assert_eq!(status, "HTTP/1.1 413 Payload Too Large");
    assert_eq!(
        refused["errors"][0]["extensions"]["code"],
        "INVALID_ARGUMENT"
    );
}
