//! The point-read fast path (`gitstore_api::graphql::fast`) answers exactly as the engine
//! does: every case runs on an API without the fast path and twice on one with it (the
//! first run plans the document, the second answers from the plan), and the three
//! responses must serialise to the same bytes. Cases that must be planned are checked to
//! be, and cases that must not be, are checked not to be.

use gitstore_api::graphql::{GraphqlApi, Planned};
use serde_json::{Value, json};

use crate::support::data;

/// `fast_path_matches_engine` for one backend; `$make` is an async expression yielding
/// `Option<GraphqlApi>` (`None` = backend unavailable, skip).
#[macro_export]
macro_rules! fast_path_suite {
    ($make:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn fast_path_matches_engine() {
            let Some(api) = $make.await else { return };
            $crate::fast_path::fast_path_matches_engine(&api).await;
        }
    };
}

const PRODUCT_SCALARS: &str = "__typename id sku title body price currency inventoryStatus \
    inventoryQuantity images metadata createdAt updatedAt";
const GROUP_SCALARS: &str = "__typename id name slug displayOrder body createdAt updatedAt";

async fn run(api: &GraphqlApi, query: &str, variables: &Value, operation: Option<&str>) -> String {
    let mut request = async_graphql::Request::new(query)
        .variables(async_graphql::Variables::from_json(variables.clone()));
    if let Some(name) = operation {
        request = request.operation_name(name);
    }
    api.answer_json(request).await
}

/// Seeds a category, a collection and two products (one with every optional field, one
/// with none), then compares the two paths on each case.
pub async fn fast_path_matches_engine(api: &GraphqlApi) {
    let engine = api.clone().without_fast_path();
    let suffix = ulid::Ulid::new().to_string().to_lowercase();
    let category = data(
        api,
        "mutation($input: CreateCategoryInput!) { createCategory(input: $input) { category { id slug } } }",
        json!({ "input": { "name": "Fast", "slug": format!("fast-{suffix}"), "body": "a category" } }),
    )
    .await["createCategory"]["category"]
        .clone();
    let collection = data(
        api,
        "mutation($input: CreateCollectionInput!) { createCollection(input: $input) { collection { id slug } } }",
        json!({ "input": { "name": "Picks", "slug": format!("picks-{suffix}"), "displayOrder": 3 } }),
    )
    .await["createCollection"]["collection"]
        .clone();
    let second = data(
        api,
        "mutation($input: CreateCollectionInput!) { createCollection(input: $input) { collection { id slug } } }",
        json!({ "input": { "name": "More", "slug": format!("more-{suffix}") } }),
    )
    .await["createCollection"]["collection"]
        .clone();
    let create = "mutation($input: CreateProductInput!) { createProduct(input: $input) { product { id sku } } }";
    let full = data(
        api,
        create,
        json!({ "input": {
            "sku": format!("FAST-1-{suffix}"), "title": "Tea \"kettle\" — ünïcode", "body": "line 1\nline 2",
            "price": "12.50", "currency": "EUR", "inventoryStatus": "PREORDER", "inventoryQuantity": 7,
            "categoryId": category["id"], "collectionIds": [second["id"], collection["id"]],
            "images": ["https://img/b.png", "https://img/a.png"],
            "metadata": { "z": 1, "a": [true, null, 2.5], "nested": { "k": "v" } },
        } }),
    )
    .await["createProduct"]["product"]
        .clone();
    let bare = data(
        api,
        create,
        json!({ "input": { "sku": format!("FAST-2-{suffix}"), "title": "Bare", "price": "0", "categoryId": category["id"] } }),
    )
    .await["createProduct"]["product"]
        .clone();

    let by_id = format!("query($id: ID!) {{ productById(id: $id) {{ {PRODUCT_SCALARS} }} }}");
    let by_sku = format!("query($sku: String!) {{ product(sku: $sku) {{ {PRODUCT_SCALARS} }} }}");
    let named = "query One($id: ID!) { productById(id: $id) { id title } }".to_owned();
    let aliased = format!(
        "query($a: ID!, $b: ID!) {{ __typename first: productById(id: $a) {{ key: id t: title kind: __typename }} \
         second: productById(id: $b) {{ price id }} cat: categoryById(id: \"{}\") {{ {GROUP_SCALARS} }} }}",
        category["id"].as_str().unwrap()
    );
    let groups = format!(
        "query($c: ID!, $cs: String!, $l: ID!, $ls: String!) {{ a: categoryById(id: $c) {{ {GROUP_SCALARS} }} \
         b: category(slug: $cs) {{ {GROUP_SCALARS} }} c: collectionById(id: $l) {{ {GROUP_SCALARS} }} \
         d: collection(slug: $ls) {{ {GROUP_SCALARS} }} }}"
    );
    let literal = format!(
        "{{ product(sku: \"{}\") {{ sku price }} }}",
        full["sku"].as_str().unwrap()
    );
    let groups_vars = json!({ "c": category["id"], "cs": category["slug"], "l": collection["id"], "ls": collection["slug"] });
    // A few more products, so that pages have a next and a previous page.
    for n in 3..=6 {
        data(
            api,
            create,
            json!({ "input": { "sku": format!("FAST-{n}-{suffix}"), "title": format!("P{n}"), "price": format!("{n}.5"),
                "categoryId": category["id"], "collectionIds": if n % 2 == 0 { json!([collection["id"]]) } else { json!([]) } } }),
        )
        .await;
    }
    let nested = format!(
        "{{ __typename products(first: 2) {{ __typename totalCount pageInfo {{ __typename hasNextPage hasPreviousPage \
         startCursor endCursor }} edges {{ __typename cursor node {{ {PRODUCT_SCALARS} category {{ {GROUP_SCALARS} }} \
         collections {{ {GROUP_SCALARS} }} }} }} }} }}"
    );
    let first_page: Value =
        serde_json::from_str(&run(&engine, &nested, &json!({}), None).await).unwrap();
    let end = first_page["data"]["products"]["pageInfo"]["endCursor"].clone();
    assert!(end.is_string(), "{first_page}");
    let next = "query($after: String!) { products(first: 2, after: $after) { pageInfo { hasNextPage hasPreviousPage endCursor } \
        edges { cursor node { sku c: collections { slug } k: category { slug } } } } }"
        .to_owned();

    // (query, variables, operation name, planned once the engine answered it cleanly)
    let cases: Vec<(String, Value, Option<&str>, bool)> = vec![
        (by_id.clone(), json!({ "id": full["id"] }), None, true),
        (by_id.clone(), json!({ "id": bare["id"] }), None, true),
        (by_id.clone(), json!({ "id": "prod_00000000000000000000000000" }), None, true),
        (by_id.clone(), json!({ "id": "not-an-id" }), None, true),
        // Variables the plan does not take: the engine answers (errors, or a number ID).
        (by_id.clone(), json!({}), None, true),
        (by_id.clone(), json!({ "id": null }), None, true),
        (by_id.clone(), json!({ "id": 42 }), None, true),
        (by_id.clone(), json!({ "id": ["x"] }), None, true),
        (by_sku.clone(), json!({ "sku": full["sku"] }), None, true),
        (by_sku.clone(), json!({ "sku": "NO-SUCH-SKU" }), None, true),
        (by_sku.clone(), json!({ "sku": 5 }), None, true),
        (named.clone(), json!({ "id": full["id"] }), None, true),
        (named.clone(), json!({ "id": full["id"] }), Some("One"), true),
        (named.clone(), json!({ "id": full["id"] }), Some("Other"), true),
        (aliased, json!({ "a": full["id"], "b": bare["id"] }), None, true),
        (groups, groups_vars, None, true),
        (literal, json!({}), None, true),
        (nested, json!({}), None, true),
        (next.clone(), json!({ "after": end }), None, true),
        // Refused page arguments and odd variables: the engine answers.
        (next.clone(), json!({ "after": "not-a-cursor" }), None, true),
        (next.clone(), json!({ "after": 7 }), None, true),
        (next, json!({}), None, true),
        ("{ products { edges { node { id } } } }".to_owned(), json!({}), None, true),
        ("{ products(first: 0) { edges { node { id } } } }".to_owned(), json!({}), None, true),
        ("{ products(first: 100000) { totalCount } }".to_owned(), json!({}), None, false),
        ("{ a: products(first: 1) { totalCount } b: products(first: 3) { edges { cursor } } }".to_owned(), json!({}), None, true),
        // Not planned: filters, backwards pages, a variable page size, deeper relations.
        (
            format!("{{ products(first: 5, filter: {{ categoryId: \"{}\" }}) {{ totalCount }} }}", category["id"].as_str().unwrap()),
            json!({}), None, false,
        ),
        ("{ products(last: 2) { edges { cursor } } }".to_owned(), json!({}), None, false),
        (
            "query($n: Int!) { products(first: $n) { edges { cursor } } }".to_owned(),
            json!({ "n": 2 }), None, false,
        ),
        (
            "{ products(first: 2) { edges { node { category { parent { id } } } } } }".to_owned(),
            json!({}), None, false,
        ),
        // Not planned: fragments, directives, relations, duplicate keys, nullable variables.
        (
            "query($id: ID!) { productById(id: $id) { ...F } } fragment F on Product { id sku }".to_owned(),
            json!({ "id": full["id"] }), None, false,
        ),
        (
            "query($id: ID!, $t: Boolean!) { productById(id: $id) { id title @include(if: $t) } }".to_owned(),
            json!({ "id": full["id"], "t": false }), None, false,
        ),
        (
            "query($id: ID!) { productById(id: $id) { id category { slug } collections { slug } } }".to_owned(),
            json!({ "id": full["id"] }), None, false,
        ),
        (
            "query($id: ID!) { productById(id: $id) { id id } a: productById(id: $id) { id } }".to_owned(),
            json!({ "id": full["id"] }), None, false,
        ),
        (
            "query($id: ID!) { p: productById(id: $id) { id } p: productById(id: $id) { sku } }".to_owned(),
            json!({ "id": full["id"] }), None, false,
        ),
        (
            "query($id: ID) { productById(id: $id) { id } }".to_owned(),
            json!({ "id": full["id"] }), None, false,
        ),
        (
            "query($id: ID!) { productById(id: $id) { id } } query Two { __typename }".to_owned(),
            json!({ "id": full["id"] }), Some("Two"), false,
        ),
    ];
    let mut from_bodies = 0;
    for (query, variables, operation, planned) in &cases {
        let expected = run(&engine, query, variables, *operation).await;
        assert!(
            !engine.is_planned(query),
            "the engine-only API must never plan"
        );
        for attempt in 0..2 {
            let got = run(api, query, variables, *operation).await;
            assert_eq!(
                got, expected,
                "fast path (attempt {attempt}) differs from the engine for {query} with {variables} ({operation:?})"
            );
        }
        assert_eq!(
            api.is_planned(query),
            *planned,
            "planned must be {planned}: {query}"
        );
        // `POST /graphql` first offers the body itself to the plan.
        let body = json!({ "query": query, "variables": variables, "operationName": operation });
        let answered = api.answer_planned(body.to_string().as_bytes()).await;
        if let Planned::Body(answered) = answered {
            assert!(*planned, "answered from a body without a plan: {query}");
            assert_eq!(
                String::from_utf8(answered).unwrap(),
                expected,
                "{query} with {variables}"
            );
            from_bodies += 1;
        }
    }
    assert!(
        from_bodies >= 10,
        "only {from_bodies} cases answered from the body"
    );
    // A planned text whose variable is missing: the plan gives the request back (and the
    // HTTP handler sends it straight to the engine); a variable of another type is not
    // read from the body at all.
    let offer = |variables: Value| {
        let body = json!({ "query": by_id, "variables": variables }).to_string();
        async move { api.answer_planned(body.as_bytes()).await }
    };
    assert!(api.is_planned(&by_id));
    assert_eq!(offer(json!({})).await, Planned::Declined);
    assert_eq!(offer(json!({ "id": 5 })).await, Planned::Unplanned);
    assert!(matches!(
        offer(json!({ "id": full["id"] })).await,
        Planned::Body(_)
    ));
    // The fast path answers with the current row: an update is seen at once.
    let before = run(api, &by_id, &json!({ "id": full["id"] }), None).await;
    data(
        api,
        "mutation($id: ID!, $v: DateTime!) { updateProduct(input: { id: $id, version: $v, title: \"Renamed\" }) { product { id } } }",
        json!({ "id": full["id"], "v": serde_json::from_str::<Value>(&before).unwrap()["data"]["productById"]["updatedAt"] }),
    )
    .await;
    let after = run(api, &by_id, &json!({ "id": full["id"] }), None).await;
    assert!(after.contains("\"title\":\"Renamed\""), "{after}");
    assert_eq!(
        after,
        run(&engine, &by_id, &json!({ "id": full["id"] }), None).await
    );
}

/// Over HTTP a planned request answers with the engine's status, content type, body and
/// headers, for both response media types, and the operation metrics count it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planned_answers_over_http_match_the_engine() {
    let app = crate::support::spawn_app().await;
    let created = app
        .gql(
            "mutation { createCategory(input: { name: \"H\", slug: \"h\" }) { category { id } } }",
            json!({}),
        )
        .await;
    let id = created["data"]["createCategory"]["category"]["id"].clone();
    let query = "query($id: ID!) { categoryById(id: $id) { __typename id name slug createdAt } }";
    for accept in ["application/json", "application/graphql-response+json"] {
        let mut seen = Vec::new();
        for _ in 0..3 {
            let response = app
                .client
                .post(app.url("/graphql"))
                .header("accept", accept)
                .json(&json!({ "query": query, "variables": { "id": id } }))
                .send()
                .await
                .unwrap();
            let status = response.status();
            let mut headers: Vec<(String, String)> = response
                .headers()
                .iter()
                .filter(|(name, _)| !matches!(name.as_str(), "date" | "x-request-id"))
                .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_owned()))
                .collect();
            headers.sort();
            seen.push((status, headers, response.text().await.unwrap()));
        }
        // The first answer is the engine's (it plans the text); the next two are planned.
        assert!(seen[0].2.contains("\"name\":\"H\""), "{:?}", seen[0]);
        assert_eq!(seen[1], seen[0], "accept {accept}");
        assert_eq!(seen[2], seen[0], "accept {accept}");
    }
    // A planned text without its variable: the plan gives it back, and the answer is the
    // engine's, the same as for a text it has no plan for (the same document with a space
    // after it: the same error locations).
    let missing = |query: String| {
        let app = &app;
        async move {
            let response = app
                .client
                .post(app.url("/graphql"))
                .json(&json!({ "query": query, "variables": {} }))
                .send()
                .await
                .unwrap();
            (response.status(), response.text().await.unwrap())
        }
    };
    let declined = missing(query.to_owned()).await;
    assert!(declined.1.contains("\"errors\""), "{declined:?}");
    assert_eq!(declined, missing(format!("{query} ")).await);
    let metrics = app.metrics().await;
    let ok_queries: f64 = metrics
        .lines()
        .find(|l| {
            l.starts_with("gitstore_graphql_requests_total")
                && l.contains("operation_type=\"query\"")
                && l.contains("outcome=\"ok\"")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0);
    assert!(
        ok_queries >= 6.0,
        "planned queries are counted: {ok_queries}"
    );
}
