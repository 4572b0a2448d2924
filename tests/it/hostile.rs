//! The hostile-input suite, through the GraphQL API of every backend.
//!
//! Families of cases a hostile client would send, each run against a seeded catalogue:
//! - `documents`: GraphQL document shapes meant to exhaust the server (fragment bombs,
//!   deep nesting, alias floods, crafted cursors and windows, bad variables, directives);
//! - `values`: domain values at and past every limit (skus, slugs, prices, metadata,
//!   images, ids of other formats, versions).
//!
//! Transport-level cases (methods, content types, bodies, batches) are in
//! `hostile_http.rs`, and concurrent writes in the contract suite's `integrity` cases.
//!
//! Every case asserts: the engine answered (no panic), every error carries one of the
//! codes a client can act on (never `INTERNAL` or `UNAVAILABLE` for bad input), and a
//! refused write changed nothing: the catalogue read before and after each family is
//! identical.

use gitstore_api::graphql::GraphqlApi;
use serde_json::{Value, json};

use crate::support::{data, exec};

/// One `#[tokio::test]` per hostile family for a backend.
#[macro_export]
macro_rules! hostile_suite {
    ($make:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn documents() {
            let Some(api) = $make.await else { return };
            $crate::hostile::documents(&api).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn values() {
            let Some(api) = $make.await else { return };
            $crate::hostile::values(&api).await;
        }
    };
}

/// Codes a hostile request may get back.
const CLIENT_CODES: [&str; 4] = [
    "INVALID_ARGUMENT",
    "NOT_FOUND",
    "CONFLICT",
    "ALREADY_EXISTS",
];

/// What the catalogue looks like, to compare before and after a family.
async fn catalogue(api: &GraphqlApi) -> Value {
    data(
        api,
        "{ products(first: 200) { totalCount edges { node { id sku title price updatedAt
            category { id } collections { id } images metadata } } }
           categories { id slug updatedAt parent { id } }
           collections { id slug updatedAt productCount } }",
        json!({}),
    )
    .await
}

struct Seed {
    category: String,
    product: String,
    product_version: String,
    collection: String,
}

async fn seed(api: &GraphqlApi, tag: &str) -> Seed {
    let category = data(
        api,
        "mutation($i: CreateCategoryInput!) { createCategory(input: $i) { category { id } } }",
        json!({ "i": { "name": "Hostile", "slug": format!("hostile-{tag}") } }),
    )
    .await["createCategory"]["category"]["id"]
        .as_str()
        .expect("category id")
        .to_owned();
    let product = data(
        api,
        "mutation($i: CreateProductInput!) { createProduct(input: $i) { product { id updatedAt } } }",
        json!({ "i": { "sku": format!("HOSTILE-{tag}"), "title": "Target", "price": "1.00", "categoryId": category } }),
    )
    .await["createProduct"]["product"]
        .clone();
    let collection = data(
        api,
        "mutation($i: CreateCollectionInput!) { createCollection(input: $i) { collection { id } } }",
        json!({ "i": { "name": "Hostile", "slug": format!("hostile-coll-{tag}"), "productIds": [product["id"]] } }),
    )
    .await["createCollection"]["collection"]["id"]
        .as_str()
        .expect("collection id")
        .to_owned();
    Seed {
        category,
        product: product["id"].as_str().expect("id").to_owned(),
        product_version: product["updatedAt"].as_str().expect("version").to_owned(),
        collection,
    }
}

/// Runs one case and checks the answer's shape; returns the response.
async fn case(api: &GraphqlApi, name: &str, query: &str, variables: Value) -> Value {
    let response = exec(api, query, variables).await;
    if let Some(errors) = response.get("errors").and_then(Value::as_array) {
        assert!(!errors.is_empty(), "{name}: empty errors array");
        for error in errors {
            let code = error["extensions"]["code"].as_str().unwrap_or_default();
            assert!(
                CLIENT_CODES.contains(&code),
                "{name}: error without an actionable code: {error}"
            );
            let message = error["message"].as_str().unwrap_or_default();
            assert!(!message.is_empty(), "{name}: error without a message");
            assert!(
                !message.contains("panicked")
                    && !message.contains("sqlx")
                    && !message.contains("scylla::"),
                "{name}: internals leaked: {message}"
            );
        }
    }
    response
}

/// Runs a case that must be refused.
async fn refused(api: &GraphqlApi, name: &str, query: &str, variables: Value) {
    let response = case(api, name, query, variables).await;
    assert!(
        response
            .get("errors")
            .is_some_and(|e| e.as_array().is_some_and(|a| !a.is_empty())),
        "{name}: expected a refusal, got {response}"
    );
}

fn repeat(unit: &str, n: usize, sep: &str) -> String {
    vec![unit; n].join(sep)
}

fn fragment_bomb(levels: usize) -> String {
    let mut q = String::from("query { ...F0 }\n");
    for i in 0..levels {
        q.push_str(&format!(
            "fragment F{i} on Query {{ ...F{n} ...F{n} }}\n",
            n = i + 1
        ));
    }
    q.push_str(&format!("fragment F{levels} on Query {{ __typename }}\n"));
    q
}

fn nested(field: &str, levels: usize, leaf: &str) -> String {
    format!(
        "{}{leaf}{}",
        format!("{{ {field} ").repeat(levels),
        " }".repeat(levels)
    )
}

/// GraphQL document shapes.
pub async fn documents(api: &GraphqlApi) {
    let seed = seed(api, &ulid::Ulid::new().to_string().to_lowercase()).await;
    let before = catalogue(api).await;
    let cursor = {
        let page = data(
            api,
            "{ products(first: 1) { edges { cursor } } }",
            json!({}),
        )
        .await;
        page["products"]["edges"][0]["cursor"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let refusals: Vec<(&str, String, Value)> = vec![
        ("fragment bomb 22", fragment_bomb(22), json!({})),
        ("fragment bomb 30", fragment_bomb(30), json!({})),
        ("fragment bomb 64", fragment_bomb(64), json!({})),
        ("fragment cycle", "{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }".into(), json!({})),
        ("self spread", "{ ...A } fragment A on Query { __typename ...A }".into(), json!({})),
        ("unknown fragment", "{ ...Nowhere }".into(), json!({})),
        ("deep categories", format!("{{ categories {} }}", nested("children", 40, "slug")), json!({})),
        ("deep introspection", format!("{{ __schema {{ types {} }} }}", nested("ofType", 60, "name")), json!({})),
        ("parser recursion", format!("{{ {} }}", nested("a", 500, "b")), json!({})),
        ("alias flood", format!("{{ {} }}", (0..6000).map(|i| format!("a{i}: __typename")).collect::<Vec<_>>().join(" ")), json!({})),
        ("catalogVersion aliases", format!("{{ {} }}", (0..499).map(|i| format!("v{i}: catalogVersion {{ commit }}")).collect::<Vec<_>>().join(" ")), json!({})),
        ("count aliases", format!("{{ {} }}", (0..5).map(|i| format!("c{i}: categories {{ products(first: 1) {{ totalCount }} }}")).collect::<Vec<_>>().join(" ")), json!({})),
        ("pages of pages", "{ products(first: 1000) { edges { node { category { products(first: 1000) { edges { node { sku } } } } } } } }".into(), json!({})),
        ("nodes flood", format!("{{ nodes(ids: [{}]) {{ id }} }}", repeat("\"x\"", 6000, ",")), json!({})),
        ("huge document", format!("{{ __typename {} }}", "#".repeat(70_000)), json!({})),
        ("first too big", "{ products(first: 1001) { totalCount } }".into(), json!({})),
        ("first negative", "{ products(first: -1) { totalCount } }".into(), json!({})),
        ("first and last", "{ products(first: 1, last: 1) { totalCount } }".into(), json!({})),
        ("first not an int", "{ products(first: \"ten\") { totalCount } }".into(), json!({})),
        ("first overflow", "{ products(first: 99999999999) { totalCount } }".into(), json!({})),
        ("garbage cursor", "{ products(after: \"zzz\") { totalCount } }".into(), json!({})),
        ("go cursor", "{ products(after: \"YXJyYXljb25uZWN0aW9uOjE=\") { totalCount } }".into(), json!({})),
        ("hex garbage cursor", format!("{{ products(before: \"{}\") {{ totalCount }} }}", hex::encode("nope")), json!({})),
        ("include not boolean", "{ __typename @include(if: \"yes\") }".into(), json!({})),
        ("skip not boolean", "{ products(first: 1) @skip(if: 1) { totalCount } }".into(), json!({})),
        ("unknown directive", "{ products(first: 1) @defer { totalCount } }".into(), json!({})),
        ("unknown field", "{ secrets }".into(), json!({})),
        ("unknown argument", "{ products(limit: 5) { totalCount } }".into(), json!({})),
        ("missing variable", "query($n: Int!) { products(first: $n) { totalCount } }".into(), json!({})),
        ("variable wrong type", "query($n: Int) { products(first: $n) { totalCount } }".into(), json!({ "n": "many" })),
        ("variable null for non-null", "query($s: String!) { product(sku: $s) { id } }".into(), json!({ "s": null })),
        ("undeclared variable", "{ products(first: $n) { totalCount } }".into(), json!({ "n": 1 })),
        ("two anonymous operations", "{ __typename } { __typename }".into(), json!({})),
        ("syntax error", "{ products(first: ) }".into(), json!({})),
        ("unterminated string", "{ product(sku: \"abc) { id } }".into(), json!({})),
        ("subscription", "subscription { products { totalCount } }".into(), json!({})),
        ("mutation field on query", "{ createProduct(input: {}) { product { id } } }".into(), json!({})),
        ("selection on scalar", "{ products { totalCount { x } } }".into(), json!({})),
        ("missing selection", "{ products }".into(), json!({})),
        ("duplicate fields conflicting", "{ products(first: 1) { totalCount } products(first: 2) { totalCount } }".into(), json!({})),
    ];
    let refusal_count = refusals.len();
    for (name, query, variables) in refusals {
        refused(api, name, &query, variables).await;
    }

    // Accepted shapes that must answer without a server error.
    let windows = [
        format!(
            "{{ products(after: \"{cursor}\", before: \"{cursor}\") {{ totalCount edges {{ cursor }} }} }}"
        ),
        format!(
            "{{ products(last: 5, after: \"{cursor}\", before: \"{cursor}\") {{ edges {{ cursor }} }} }}"
        ),
        format!(
            "{{ categories {{ products(first: 5, after: \"{cursor}\", before: \"{cursor}\") {{ edges {{ cursor }} }} }} }}"
        ),
        format!(
            "{{ collections {{ products(last: 3, after: \"{cursor}\", before: \"{cursor}\") {{ edges {{ cursor }} }} }} }}"
        ),
        "{ products(first: 0) { edges { cursor } pageInfo { hasNextPage } } }".to_owned(),
        format!(
            "{{ products(after: \"{}\") {{ edges {{ cursor }} }} }}",
            hex::encode("9223372036854775807|zzz")
        ),
        format!(
            "{{ products(before: \"{}\") {{ edges {{ cursor }} }} }}",
            hex::encode("-9223372036854775808|")
        ),
    ];
    for query in &windows {
        let response = case(api, "window", query, json!({})).await;
        assert!(response.get("errors").is_none(), "{query}: {response}");
    }
    let foreign_ids = [
        "{ productById(id: \"3fa85f64-5717-4562-b3fc-2c963f66afa6\") { id } }".to_owned(),
        "{ node(id: \"UHJvZHVjdDox\") { id } }".to_owned(),
        format!("{{ nodes(ids: [\"\", \"prod_\", \"{}\", \"cat_x\"]) {{ id }} }}", seed.collection.replace("coll_", "prod_")),
        format!("{{ categoryById(id: \"{}\") {{ id }} collectionById(id: \"{}\") {{ id }} }}", seed.product, seed.category),
        "{ product(sku: \"' OR 1=1 --\") { id } category(slug: \"\\\"; DROP TABLE products; --\") { id } }".to_owned(),
        format!("{{ product(sku: \"{}\") {{ id }} }}", "x".repeat(10_000)),
        "{ product(sku: \"a\\u0000b\") { id } }".to_owned(),
        "{ products(filter: { categoryId: \"3fa85f64-5717-4562-b3fc-2c963f66afa6\" }) { totalCount edges { cursor } } }".to_owned(),
        format!("{{ products(filter: {{ collectionId: \"{}\" }}) {{ totalCount }} }}", seed.category),
    ];
    for query in &foreign_ids {
        let response = case(api, "foreign id", query, json!({})).await;
        assert!(response.get("errors").is_none(), "{query}: {response}");
    }
    let accepted = windows.len() + foreign_ids.len();
    assert!(
        refusal_count + accepted >= 50,
        "{} cases",
        refusal_count + accepted
    );
    assert_eq!(
        catalogue(api).await,
        before,
        "documents changed the catalogue"
    );
}

/// Domain values at and past every limit; every write here must be refused.
pub async fn values(api: &GraphqlApi) {
    let seed = seed(api, &ulid::Ulid::new().to_string().to_lowercase()).await;
    let before = catalogue(api).await;
    let create_product =
        "mutation($i: CreateProductInput!) { createProduct(input: $i) { product { id } } }";
    let update_product = "mutation($i: UpdateProductInput!) { updateProduct(input: $i) { product { id } conflict { diff } } }";
    let create_category =
        "mutation($i: CreateCategoryInput!) { createCategory(input: $i) { category { id } } }";
    let create_collection = "mutation($i: CreateCollectionInput!) { createCollection(input: $i) { collection { id } } }";
    let product = |extra: Value| {
        let mut input = json!({ "sku": format!("NEW-{}", ulid::Ulid::new()), "title": "New", "price": "1.00", "categoryId": seed.category });
        if let (Some(obj), Some(more)) = (input.as_object_mut(), extra.as_object()) {
            obj.extend(more.clone());
        }
        json!({ "i": input })
    };
    let update = |extra: Value| {
        let mut input = json!({ "id": seed.product, "version": seed.product_version });
        if let (Some(obj), Some(more)) = (input.as_object_mut(), extra.as_object()) {
            obj.extend(more.clone());
        }
        json!({ "i": input })
    };
    let nest = |levels: usize| {
        let mut v = json!(1);
        for _ in 0..levels {
            v = json!({ "k": v });
        }
        v
    };
    let many_keys: serde_json::Map<String, Value> =
        (0..1001).map(|i| (format!("k{i}"), json!(i))).collect();
    let product_cases: Vec<(&str, Value)> = vec![
        ("sku empty", json!({ "sku": "" })),
        ("sku too long", json!({ "sku": "A".repeat(65) })),
        ("sku space", json!({ "sku": "A B" })),
        ("sku unicode", json!({ "sku": "SKU-é" })),
        ("sku sql", json!({ "sku": "'; DROP TABLE products; --" })),
        ("sku null byte", json!({ "sku": "A\u{0}B" })),
        (
            "sku taken",
            json!({ "sku": before["products"]["edges"][0]["node"]["sku"].clone() }),
        ),
        ("title blank", json!({ "title": "   " })),
        ("title too long", json!({ "title": "t".repeat(201) })),
        ("body too big", json!({ "body": "b".repeat(64 * 1024 + 1) })),
        ("price negative", json!({ "price": "-0.01" })),
        ("price nine decimals", json!({ "price": "1.123456789" })),
        ("price not a number", json!({ "price": "NaN" })),
        ("price infinity", json!({ "price": "Infinity" })),
        ("price huge exponent", json!({ "price": "1e400" })),
        ("price words", json!({ "price": "ten dollars" })),
        ("price object", json!({ "price": { "amount": 1 } })),
        ("currency lower", json!({ "currency": "usd" })),
        ("currency long", json!({ "currency": "DOLLAR" })),
        ("quantity negative", json!({ "inventoryQuantity": -1 })),
        (
            "quantity overflow",
            json!({ "inventoryQuantity": 2_147_483_648_i64 }),
        ),
        ("status unknown", json!({ "inventoryStatus": "SOLD_OUT" })),
        (
            "images too many",
            json!({ "images": vec!["https://img.example/a.png"; 51] }),
        ),
        (
            "image javascript",
            json!({ "images": ["javascript:alert(1)"] }),
        ),
        (
            "image data url",
            json!({ "images": ["data:image/png;base64,AAAA"] }),
        ),
        ("image relative", json!({ "images": ["/a.png"] })),
        (
            "image ftp",
            json!({ "images": ["ftp://img.example/a.png"] }),
        ),
        (
            "image too long",
            json!({ "images": [format!("https://img.example/{}", "a".repeat(2048))] }),
        ),
        ("image blank", json!({ "images": [" "] })),
        ("metadata array", json!({ "metadata": [1, 2] })),
        ("metadata string", json!({ "metadata": "x" })),
        ("metadata too deep", json!({ "metadata": nest(33) })),
        ("metadata 129 deep", json!({ "metadata": nest(129) })),
        ("metadata too many keys", json!({ "metadata": many_keys })),
        (
            "metadata too big",
            json!({ "metadata": { "k": "v".repeat(64 * 1024) } }),
        ),
        (
            "category unknown",
            json!({ "categoryId": "cat_01hzzzzzzzzzzzzzzzzzzzzzzz" }),
        ),
        (
            "category uuid",
            json!({ "categoryId": "3fa85f64-5717-4562-b3fc-2c963f66afa6" }),
        ),
        (
            "category is a product id",
            json!({ "categoryId": seed.product }),
        ),
        (
            "collection unknown",
            json!({ "collectionIds": ["coll_01hzzzzzzzzzzzzzzzzzzzzzzz"] }),
        ),
        (
            "collection is a category id",
            json!({ "collectionIds": [seed.category] }),
        ),
    ];
    let update_cases: Vec<(&str, Value)> = vec![
        (
            "version garbage",
            json!({ "version": "yesterday", "title": "x" }),
        ),
        (
            "version far past",
            json!({ "version": "1970-01-01T00:00:00.000Z", "title": "x" }),
        ),
        (
            "version far future",
            json!({ "version": "9999-12-31T23:59:59.999Z", "title": "x" }),
        ),
        (
            "update unknown id",
            json!({ "id": "prod_01hzzzzzzzzzzzzzzzzzzzzzzz", "title": "x" }),
        ),
        (
            "update uuid id",
            json!({ "id": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "title": "x" }),
        ),
        ("update bad price", json!({ "price": "-1" })),
        ("update bad metadata", json!({ "metadata": nest(40) })),
        (
            "update bad image",
            json!({ "images": ["file:///etc/passwd"] }),
        ),
        (
            "update category unknown",
            json!({ "categoryId": "cat_01hzzzzzzzzzzzzzzzzzzzzzzz" }),
        ),
        (
            "update collections unknown",
            json!({ "collectionIds": ["nope"] }),
        ),
    ];
    let other_cases: Vec<(&str, &str, Value)> = vec![
        (
            "slug upper",
            create_category,
            json!({ "i": { "name": "X", "slug": "Upper" } }),
        ),
        (
            "slug double hyphen",
            create_category,
            json!({ "i": { "name": "X", "slug": "a--b" } }),
        ),
        (
            "slug too long",
            create_category,
            json!({ "i": { "name": "X", "slug": "a".repeat(101) } }),
        ),
        (
            "slug taken",
            create_category,
            json!({ "i": { "name": "X", "slug": before["categories"][0]["slug"].clone() } }),
        ),
        (
            "parent unknown",
            create_category,
            json!({ "i": { "name": "X", "slug": "orphan-x", "parentId": "cat_01hzzzzzzzzzzzzzzzzzzzzzzz" } }),
        ),
        (
            "parent is a product",
            create_category,
            json!({ "i": { "name": "X", "slug": "orphan-y", "parentId": seed.product } }),
        ),
        (
            "name blank",
            create_category,
            json!({ "i": { "name": "", "slug": "blank-name" } }),
        ),
        (
            "members unknown",
            create_collection,
            json!({ "i": { "name": "X", "slug": "members-x", "productIds": ["prod_01hzzzzzzzzzzzzzzzzzzzzzzz"] } }),
        ),
        (
            "members malformed",
            create_collection,
            json!({ "i": { "name": "X", "slug": "members-y", "productIds": ["1"] } }),
        ),
        (
            "delete category in use",
            "mutation($i: DeleteCategoryInput!) { deleteCategory(input: $i) { deletedCategoryId } }",
            json!({ "i": { "id": seed.category } }),
        ),
        (
            "delete unknown product",
            "mutation($i: DeleteProductInput!) { deleteProduct(input: $i) { deletedProductId } }",
            json!({ "i": { "id": "prod_01hzzzzzzzzzzzzzzzzzzzzzzz" } }),
        ),
        (
            "reorder repeated",
            "mutation($i: ReorderCollectionsInput!) { reorderCollections(input: $i) { collections { id } } }",
            json!({ "i": { "orderedIds": [seed.collection, seed.collection] } }),
        ),
        (
            "reorder unknown",
            "mutation($i: ReorderCategoriesInput!) { reorderCategories(input: $i) { categories { id } } }",
            json!({ "i": { "orderedIds": ["cat_01hzzzzzzzzzzzzzzzzzzzzzzz"] } }),
        ),
        (
            "move under itself",
            "mutation($i: ReorderCategoriesInput!) { reorderCategories(input: $i) { categories { id } } }",
            json!({ "i": { "orderedIds": [], "movedCategoryId": seed.category, "newParentId": seed.category } }),
        ),
        (
            "publish bad tag",
            "mutation { publishCatalog(input: { version: \"v 1\", message: \"m\" }) { catalogVersion { tag } } }",
            json!({}),
        ),
        (
            "publish blank message",
            "mutation { publishCatalog(input: { version: \"v-blank\", message: \"  \" }) { catalogVersion { tag } } }",
            json!({}),
        ),
    ];
    let total = product_cases.len() + update_cases.len() + other_cases.len();
    for (name, extra) in product_cases {
        refused(api, name, create_product, product(extra)).await;
    }
    for (name, extra) in update_cases {
        let response = case(api, name, update_product, update(extra)).await;
        // A stale version is not an error: it answers `conflict` and writes nothing.
        let conflict = !response["data"]["updateProduct"]["conflict"].is_null();
        assert!(
            conflict || response.get("errors").is_some(),
            "{name}: expected a refusal or a conflict, got {response}"
        );
    }
    for (name, query, variables) in other_cases {
        refused(api, name, query, variables).await;
    }
    assert!(total >= 60, "{total} cases");
    assert_eq!(
        catalogue(api).await,
        before,
        "refused values changed the catalogue"
    );
}
