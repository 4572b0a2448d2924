//! What clients of the Go gitstore-api bring with them, through `GraphqlApi::execute`:
//! UUIDs and offset cursors from the old service, and queries whose response they read
//! in selection order. Generic over the backend like the GraphQL suite.

use gitstore_api::graphql::GraphqlApi;
use serde_json::{Value, json};

use crate::support::{data, exec};

/// One `#[tokio::test]` per compatibility case for a backend; `$make` is an async
/// expression yielding `Option<GraphqlApi>` (`None` = backend unavailable, skip).
#[macro_export]
macro_rules! compat_suite {
    ($make:expr) => {
        $crate::compat_suite!($make; foreign_ids_read_as_unknown, foreign_ids_in_writes_are_not_found,
            go_cursors_say_the_format_changed, response_follows_the_selection_order);
    };
    ($make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(api) = $make.await else { return };
                $crate::compat::$case(&api).await;
            }
        )*
    };
}

/// A UUID as the Go service hands out.
const UUID: &str = "3fa85f64-5717-4562-b3fc-2c963f66afa6";

struct Seed {
    category: String,
    product: String,
    collection: String,
}

async fn seed(api: &GraphqlApi) -> Seed {
    let tag = ulid::Ulid::new().to_string().to_lowercase();
    let category = data(
        api,
        "mutation($i: CreateCategoryInput!) { createCategory(input: $i) { category { id } } }",
        json!({ "i": { "name": "Compat", "slug": format!("compat-{tag}") } }),
    )
    .await["createCategory"]["category"]["id"]
        .as_str()
        .expect("category id")
        .to_owned();
    let mut product = String::new();
    for n in 0..2 {
        product = data(
            api,
            "mutation($i: CreateProductInput!) { createProduct(input: $i) { product { id } } }",
            json!({ "i": { "sku": format!("COMPAT-{tag}-{n}"), "title": format!("Compat {n}"),
                "price": "1.00", "categoryId": category } }),
        )
        .await["createProduct"]["product"]["id"]
            .as_str()
            .expect("product id")
            .to_owned();
    }
    let collection = data(
        api,
        "mutation($i: CreateCollectionInput!) { createCollection(input: $i) { collection { id } } }",
        json!({ "i": { "name": "Compat", "slug": format!("compat-coll-{tag}"), "productIds": [product] } }),
    )
    .await["createCollection"]["collection"]["id"]
        .as_str()
        .expect("collection id")
        .to_owned();
    Seed {
        category,
        product,
        collection,
    }
}

/// Lookups and filters by an id that is not one of ours answer like an unknown id.
pub async fn foreign_ids_read_as_unknown(api: &GraphqlApi) {
    let seed = seed(api).await;
    let d = data(
        api,
        "query($u: ID!, $p: ID!) {
            productById(id: $u) { id }
            categoryById(id: $u) { id }
            collectionById(id: $u) { id }
            node(id: $u) { id }
            nodes(ids: [$u, $p]) { id }
        }",
        json!({ "u": UUID, "p": seed.product }),
    )
    .await;
    assert_eq!(
        d,
        json!({ "productById": null, "categoryById": null, "collectionById": null,
                "node": null, "nodes": [null, { "id": seed.product }] })
    );
    let empty = json!({ "totalCount": 0, "edges": [],
        "pageInfo": { "hasNextPage": false, "hasPreviousPage": false, "startCursor": null, "endCursor": null } });
    let listing = "query($f: ProductFilter) { products(first: 10, filter: $f) {
        totalCount edges { cursor } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }";
    for filter in [
        json!({ "categoryId": UUID }),
        json!({ "collectionId": UUID }),
        json!({ "categoryId": "42" }),
        // An id of another entity type names no category either.
        json!({ "categoryId": seed.collection }),
        json!({ "collectionId": seed.category, "search": "compat" }),
    ] {
        let d = data(api, listing, json!({ "f": filter })).await;
        assert_eq!(d["products"], empty, "{filter}");
    }
    // The page arguments are still checked.
    let r = exec(
        api,
        "{ products(first: 5000, filter: { categoryId: \"x\" }) { totalCount } }",
        Value::Null,
    )
    .await;
    assert_eq!(
        r["errors"][0]["extensions"]["code"], "INVALID_ARGUMENT",
        "{r}"
    );
    // A real filter still matches.
    let d = data(
        api,
        listing,
        json!({ "f": { "categoryId": seed.category, "collectionId": seed.collection } }),
    )
    .await;
    assert_eq!(d["products"]["totalCount"], 1, "{d}");
}

/// A write that references an id that is not one of ours is `NOT_FOUND` naming it; a
/// reference that breaks a rule stays `INVALID_ARGUMENT`.
pub async fn foreign_ids_in_writes_are_not_found(api: &GraphqlApi) {
    let seed = seed(api).await;
    let cases = [
        (
            "mutation($i: CreateProductInput!) { createProduct(input: $i) { product { id } } }",
            json!({ "sku": "COMPAT-NEW", "title": "x", "price": "1", "categoryId": UUID }),
            "categoryId",
        ),
        (
            "mutation($i: CreateProductInput!) { createProduct(input: $i) { product { id } } }",
            json!({ "sku": "COMPAT-NEW", "title": "x", "price": "1", "categoryId": seed.category,
                    "collectionIds": [UUID] }),
            "collectionIds",
        ),
        (
            "mutation($i: CreateCategoryInput!) { createCategory(input: $i) { category { id } } }",
            json!({ "name": "x", "slug": "compat-child", "parentId": UUID }),
            "parentId",
        ),
        (
            "mutation($i: CreateCollectionInput!) { createCollection(input: $i) { collection { id } } }",
            json!({ "name": "x", "slug": "compat-new", "productIds": [seed.product, UUID] }),
            "productIds",
        ),
        (
            "mutation($i: UpdateProductInput!) { updateProduct(input: $i) { product { id } } }",
            json!({ "id": UUID, "version": "2024-01-01T00:00:00.000Z", "title": "x" }),
            "product",
        ),
        (
            "mutation($i: DeleteProductInput!) { deleteProduct(input: $i) { deletedProductId } }",
            json!({ "id": UUID }),
            "product",
        ),
        (
            "mutation($i: DeleteCategoryInput!) { deleteCategory(input: $i) { deletedCategoryId } }",
            json!({ "id": UUID }),
            "category",
        ),
        (
            "mutation($i: DeleteCollectionInput!) { deleteCollection(input: $i) { deletedCollectionId } }",
            json!({ "id": UUID }),
            "collection",
        ),
        (
            "mutation($i: ReorderCollectionsInput!) { reorderCollections(input: $i) { collections { id } } }",
            json!({ "orderedIds": [UUID] }),
            "orderedIds",
        ),
    ];
    for (query, input, named) in cases {
        let r = exec(api, query, json!({ "i": input })).await;
        let error = &r["errors"][0];
        assert_eq!(error["extensions"]["code"], "NOT_FOUND", "{query}: {r}");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(named) && message.contains(UUID),
            "{query}: {message}"
        );
    }
    let repeated = exec(
        api,
        "mutation($i: ReorderCollectionsInput!) { reorderCollections(input: $i) { collections { id } } }",
        json!({ "i": { "orderedIds": [seed.collection, seed.collection] } }),
    )
    .await;
    assert_eq!(
        repeated["errors"][0]["extensions"]["code"], "INVALID_ARGUMENT",
        "{repeated}"
    );
}

/// A cursor of the Go service (`base64("arrayconnection:N")`) is refused with a message
/// that says why.
pub async fn go_cursors_say_the_format_changed(api: &GraphqlApi) {
    seed(api).await;
    for args in [
        "first: 10, after: \"YXJyYXljb25uZWN0aW9uOjE=\"",
        "last: 10, before: \"YXJyYXljb25uZWN0aW9uOjA=\"",
    ] {
        let r = exec(
            api,
            &format!("{{ products({args}) {{ totalCount }} }}"),
            Value::Null,
        )
        .await;
        let error = &r["errors"][0];
        assert_eq!(error["extensions"]["code"], "INVALID_ARGUMENT", "{r}");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("Go gitstore-api") && message.contains("changed format"),
            "{message}"
        );
    }
}

/// The keys of the object at `path` (`*` = every item of a list), one list per object.
fn keys_at(value: &async_graphql::Value, path: &[&str]) -> Vec<Vec<String>> {
    match (value, path.split_first()) {
        (async_graphql::Value::Object(map), None) => {
            vec![map.keys().map(ToString::to_string).collect()]
        }
        (async_graphql::Value::List(items), Some((&"*", rest))) => {
            items.iter().flat_map(|item| keys_at(item, rest)).collect()
        }
        (async_graphql::Value::Object(map), Some((key, rest))) => {
            map.get(*key).map(|v| keys_at(v, rest)).unwrap_or_default()
        }
        _ => Vec::new(),
    }
}

/// The response map follows the selection set (the GraphQL spec's CollectFields order),
/// also where a field waits for a DataLoader and the rest resolve at once.
pub async fn response_follows_the_selection_order(api: &GraphqlApi) {
    let seed = seed(api).await;
    let child = data(
        api,
        "mutation($i: CreateCategoryInput!) { createCategory(input: $i) { category { id } } }",
        json!({ "i": { "name": "Child", "slug": format!("child-{}", ulid::Ulid::new().to_string().to_lowercase()), "parentId": seed.category } }),
    )
    .await["createCategory"]["category"]["id"]
        .clone();
    data(
        api,
        "mutation($i: CreateProductInput!) { createProduct(input: $i) { product { id } } }",
        json!({ "i": { "sku": format!("ORDER-{}", ulid::Ulid::new()), "title": "Ordered", "price": "2.50",
            "categoryId": child, "collectionIds": [seed.collection] } }),
    )
    .await;
    let run = |query: &'static str, variables: Value| async move {
        let request = async_graphql::Request::new(query)
            .variables(async_graphql::Variables::from_json(variables));
        let response = api.execute(request).await;
        assert!(response.errors.is_empty(), "{:?}", response.errors);
        response.data
    };
    let each = |data: &async_graphql::Value, path: &[&str], expected: &[&str]| {
        let found = keys_at(data, path);
        assert!(!found.is_empty(), "nothing at {path:?}");
        for keys in found {
            assert_eq!(keys, expected, "at {path:?}");
        }
    };

    // The query: loader-backed fields used to move to the end.
    let d = run(
        "{ products { edges { node { sku category { name } collections { name } title } } } }",
        Value::Null,
    )
    .await;
    each(
        &d,
        &["products", "edges", "*", "node"],
        &["sku", "category", "collections", "title"],
    );

    // Root fields, aliases, nested loaders, fragment spreads and inline fragments,
    // skipped fields, and a key selected twice (its first place counts).
    let d = run(
        "query($no: Boolean!) {
            v: catalogVersion { tag stats { productCount } }
            list: products(first: 50) {
                totalCount
                edges { node { ...P t: title c: category { parent { slug } slug ...C } sku } cursor }
                pageInfo { endCursor hasNextPage }
            }
            categories { children { slug name } hidden: slug @skip(if: $no) slug parent { name } depth path }
            collections { productCount products(first: 5) { edges { node { collections { slug } sku } } } name }
        }
        fragment P on Product { collections { slug ... on Collection { name } } sku price }
        fragment C on Category { name }",
        json!({ "no": true }),
    )
    .await;
    each(&d, &[], &["v", "list", "categories", "collections"]);
    each(&d, &["v"], &["tag", "stats"]);
    each(&d, &["list"], &["totalCount", "edges", "pageInfo"]);
    each(&d, &["list", "edges", "*"], &["node", "cursor"]);
    each(
        &d,
        &["list", "edges", "*", "node"],
        &["collections", "sku", "price", "t", "c"],
    );
    each(
        &d,
        &["list", "edges", "*", "node", "c"],
        &["parent", "slug", "name"],
    );
    each(
        &d,
        &["list", "edges", "*", "node", "collections", "*"],
        &["slug", "name"],
    );
    each(
        &d,
        &["categories", "*"],
        &["children", "slug", "parent", "depth", "path"],
    );
    each(&d, &["categories", "*", "children", "*"], &["slug", "name"]);
    each(
        &d,
        &["collections", "*"],
        &["productCount", "products", "name"],
    );
    each(
        &d,
        &["collections", "*", "products", "edges", "*", "node"],
        &["collections", "sku"],
    );

    // An abstract type: each node in the order of its own type's selection.
    let d = run(
        "query($ids: [ID!]!) { nodes(ids: $ids) {
            ... on Product { category { name } sku }
            id
            ... on Category { parent { slug } name }
            ... on Collection { productCount slug }
        } }",
        json!({ "ids": [seed.product, seed.category, child, seed.collection] }),
    )
    .await;
    let found = keys_at(&d, &["nodes", "*"]);
    assert_eq!(
        found,
        [
            vec!["category", "sku", "id"],
            vec!["id", "parent", "name"],
            vec!["id", "parent", "name"],
            vec!["id", "productCount", "slug"],
        ]
    );
}
