//! GraphQL behaviour through `GraphqlApi::execute` (no socket), snapshotted with insta.
//!
//! Every case is generic over the backend: `graphql_suite!` runs them all for one, and
//! each snapshot has one name shared by all backends, so every backend must produce
//! byte-identical (redacted) responses.

use gitstore_api::graphql::GraphqlApi;
use serde_json::{Value, json};

use crate::support::{data, exec, redact};

/// One `#[tokio::test]` per GraphQL case for a backend; `$make` is an async expression
/// yielding `Option<GraphqlApi>` (`None` = backend unavailable, skip).
#[macro_export]
macro_rules! graphql_suite {
    ($make:expr) => {
        $crate::graphql_suite!($make;
            create_and_read_product, node_and_nodes, product_paging, product_filters,
            update_product_and_conflict, delete_product, category_tree, category_updates,
            category_delete_rules, reorder_categories, collections_and_membership,
            reorder_and_delete_collections, catalog_versions, error_codes, input_validation,
            limits, client_mutation_id_echo, auth_mutations_not_configured,
        );
    };
    ($make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(api) = $make.await else { return };
                $crate::graphql::$case(&api).await;
            }
        )*
    };
}

macro_rules! snap {
    ($name:expr, $value:expr) => {
        let value = &$value;
        insta::with_settings!({ snapshot_path => "snapshots", prepend_module_to_snapshot => false }, {
            insta::assert_json_snapshot!($name, redact(value));
        })
    };
}

const PRODUCT_FIELDS: &str = "id sku title body price currency inventoryStatus inventoryQuantity \
    category { slug } collections { slug } images metadata createdAt updatedAt";

async fn create_category(api: &GraphqlApi, slug: &str, parent: Option<&str>) -> Value {
    let d = data(
        api,
        "mutation($input: CreateCategoryInput!) { createCategory(input: $input) { category { id slug updatedAt } } }",
        json!({ "input": { "name": slug.to_uppercase(), "slug": slug, "parentId": parent } }),
    )
    .await;
    d["createCategory"]["category"].clone()
}

async fn create_product(api: &GraphqlApi, sku: &str, category: &str, extra: Value) -> Value {
    let mut input = json!({ "sku": sku, "title": format!("Product {sku}"), "price": "10.00", "categoryId": category });
    if let (Some(obj), Some(more)) = (input.as_object_mut(), extra.as_object()) {
        obj.extend(more.clone());
    }
    let d = data(
        api,
        &format!("mutation($input: CreateProductInput!) {{ createProduct(input: $input) {{ product {{ {PRODUCT_FIELDS} }} }} }}"),
        json!({ "input": input }),
    )
    .await;
    d["createProduct"]["product"].clone()
}

async fn create_collection(api: &GraphqlApi, slug: &str, products: &[&str]) -> Value {
    let d = data(
        api,
        "mutation($input: CreateCollectionInput!) { createCollection(input: $input) { collection { id slug updatedAt productCount } } }",
        json!({ "input": { "name": slug.to_uppercase(), "slug": slug, "productIds": products } }),
    )
    .await;
    d["createCollection"]["collection"].clone()
}

fn s(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}

pub async fn create_and_read_product(api: &GraphqlApi) {
    let cat = create_category(api, "teas", None).await;
    let coll = create_collection(api, "summer", &[]).await;
    let created = create_product(
        api,
        "TEA-GREEN-1",
        s(&cat["id"]),
        json!({
            "body": "Sencha from Shizuoka", "price": 12.5, "currency": "EUR",
            "inventoryStatus": "PREORDER", "inventoryQuantity": 40,
            "collectionIds": [coll["id"]], "images": ["https://img/2.png", "https://img/1.png"],
            "metadata": { "origin": "JP", "grades": [1, 2], "organic": true }
        }),
    )
    .await;
    snap!("create_product", created);
    let by_sku = data(
        api,
        &format!("{{ product(sku: \"TEA-GREEN-1\") {{ {PRODUCT_FIELDS} }} }}"),
        json!({}),
    )
    .await;
    assert_eq!(
        by_sku["product"], created,
        "read back equals what create returned"
    );
    let by_id = data(
        api,
        &format!("query($id: ID!) {{ productById(id: $id) {{ {PRODUCT_FIELDS} }} }}"),
        json!({ "id": created["id"] }),
    )
    .await;
    assert_eq!(by_id["productById"], created);
    let missing = data(
        api,
        "{ product(sku: \"NOPE\") { id } productById(id: \"prod_01hzzzzzzzzzzzzzzzzzzzzzzz\") { id } bad: productById(id: \"garbage\") { id } }",
        json!({}),
    )
    .await;
    snap!("product_missing", missing);
}

pub async fn node_and_nodes(api: &GraphqlApi) {
    let cat = create_category(api, "nodes", None).await;
    let coll = create_collection(api, "node-coll", &[]).await;
    let p = create_product(api, "NODE-1", s(&cat["id"]), json!({})).await;
    let d = data(
        api,
        "query($ids: [ID!]!, $one: ID!) {
            node(id: $one) { __typename id ... on Product { sku } }
            nodes(ids: $ids) { __typename id ... on Category { slug } ... on Collection { slug } ... on Product { sku } }
        }",
        json!({ "one": p["id"], "ids": [cat["id"], "cat_00000000000000000000000000", p["id"], "nonsense", coll["id"]] }),
    )
    .await;
    snap!("node_and_nodes", d);
}

pub async fn product_paging(api: &GraphqlApi) {
    let cat = create_category(api, "paging", None).await;
    for i in 1..=5 {
        create_product(api, &format!("PAGE-{i}"), s(&cat["id"]), json!({})).await;
    }
    let q = "query($first: Int, $after: String, $last: Int, $before: String) {
        products(first: $first, after: $after, last: $last, before: $before) {
            totalCount edges { cursor node { sku } } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }";
    let p1 = data(api, q, json!({ "first": 2 })).await;
    snap!("paging_first_2", p1);
    let p2 = data(
        api,
        q,
        json!({ "first": 2, "after": p1["products"]["pageInfo"]["endCursor"] }),
    )
    .await;
    snap!("paging_first_2_after", p2);
    // A product added between pages shows up at the end, never twice.
    create_product(api, "PAGE-6", s(&cat["id"]), json!({})).await;
    let p3 = data(
        api,
        q,
        json!({ "first": 10, "after": p2["products"]["pageInfo"]["endCursor"] }),
    )
    .await;
    snap!("paging_rest_after_insert", p3);
    let l1 = data(api, q, json!({ "last": 2 })).await;
    snap!("paging_last_2", l1);
    let l2 = data(
        api,
        q,
        json!({ "last": 3, "before": l1["products"]["pageInfo"]["startCursor"] }),
    )
    .await;
    snap!("paging_last_3_before", l2);
    let empty = data(api, q, json!({ "first": 0 })).await;
    snap!("paging_first_0", empty);
    let default = data(api, "{ products { edges { node { sku } } } }", json!({})).await;
    assert_eq!(
        default["products"]["edges"].as_array().unwrap().len(),
        6,
        "default page holds up to 20"
    );
}

pub async fn product_filters(api: &GraphqlApi) {
    let teas = create_category(api, "filter-teas", None).await;
    let mugs = create_category(api, "filter-mugs", None).await;
    let green = create_product(
        api,
        "F-GREEN",
        s(&teas["id"]),
        json!({ "title": "Green Tea", "price": "4.50" }),
    )
    .await;
    create_product(
        api,
        "F-BLACK",
        s(&teas["id"]),
        json!({ "title": "Black Tea", "price": "6", "inventoryStatus": "OUT_OF_STOCK" }),
    )
    .await;
    create_product(
        api,
        "F-MUG",
        s(&mugs["id"]),
        json!({ "title": "Mug", "body": "For TEA lovers", "price": "12.00" }),
    )
    .await;
    create_collection(api, "filter-picks", &[s(&green["id"])]).await;
    let picks = data(
        api,
        "{ collection(slug: \"filter-picks\") { id } }",
        json!({}),
    )
    .await;
    let q =
        "query($f: ProductFilter) { products(filter: $f) { totalCount edges { node { sku } } } }";
    let mut results = serde_json::Map::new();
    for (name, filter) in [
        ("category", json!({ "categoryId": teas["id"] })),
        (
            "collection",
            json!({ "collectionId": picks["collection"]["id"] }),
        ),
        ("status", json!({ "inventoryStatus": "OUT_OF_STOCK" })),
        (
            "price_range_inclusive",
            json!({ "priceMin": "4.5", "priceMax": 6 }),
        ),
        ("search_title_and_body", json!({ "search": "tEa" })),
        ("search_sku", json!({ "search": "f-mu" })),
        (
            "combined",
            json!({ "categoryId": teas["id"], "priceMax": "5" }),
        ),
        ("nothing", json!({ "search": "coffee" })),
    ] {
        results.insert(
            name.to_owned(),
            data(api, q, json!({ "f": filter })).await["products"].clone(),
        );
    }
    snap!("product_filters", Value::Object(results));
}

pub async fn update_product_and_conflict(api: &GraphqlApi) {
    let cat = create_category(api, "upd", None).await;
    let other = create_category(api, "upd-other", None).await;
    let p = create_product(
        api,
        "UPD-1",
        s(&cat["id"]),
        json!({ "inventoryQuantity": 5, "metadata": { "a": 1 } }),
    )
    .await;
    let m = format!(
        "mutation($input: UpdateProductInput!) {{ updateProduct(input: $input) {{ clientMutationId product {{ {PRODUCT_FIELDS} }} conflict {{ currentVersion attemptedVersion diff current {{ sku title price updatedAt }} }} }} }}"
    );
    let ok = data(
        api,
        &m,
        json!({ "input": {
            "clientMutationId": "u1", "id": p["id"], "version": p["updatedAt"],
            "title": "Renamed", "description": "via the description alias", "price": "11.25",
            "categoryId": other["id"], "inventoryQuantity": null, "metadata": null
        } }),
    )
    .await;
    snap!("update_product_ok", ok);
    let updated = &ok["updateProduct"]["product"];
    assert!(
        s(&updated["updatedAt"]) > s(&p["updatedAt"]),
        "updatedAt strictly increases"
    );
    // The same (now stale) version again: nothing is written, the payload explains.
    let stale = data(
        api,
        &m,
        json!({ "input": { "id": p["id"], "version": p["updatedAt"], "title": "Stale write", "sku": "UPD-STALE" } }),
    )
    .await;
    snap!("update_product_conflict", stale);
    let conflict = &stale["updateProduct"]["conflict"];
    assert_eq!(conflict["currentVersion"], updated["updatedAt"]);
    assert_eq!(conflict["attemptedVersion"], p["updatedAt"]);
    let after = data(
        api,
        "{ product(sku: \"UPD-1\") { title } stale: product(sku: \"UPD-STALE\") { id } }",
        json!({}),
    )
    .await;
    assert_eq!(
        after,
        json!({ "product": { "title": "Renamed" }, "stale": null })
    );
}

pub async fn delete_product(api: &GraphqlApi) {
    let cat = create_category(api, "del", None).await;
    let p = create_product(api, "DEL-1", s(&cat["id"]), json!({})).await;
    let m = "mutation($id: ID!) { deleteProduct(input: { id: $id, clientMutationId: \"d\" }) { clientMutationId deletedProductId } }";
    let d = data(api, m, json!({ "id": p["id"] })).await;
    assert_eq!(d["deleteProduct"]["deletedProductId"], p["id"]);
    let again = exec(api, m, json!({ "id": p["id"] })).await;
    snap!("delete_product_twice", again);
    let gone = data(api, "{ product(sku: \"DEL-1\") { id } }", json!({})).await;
    assert_eq!(gone["product"], Value::Null);
}

const CATEGORY_FIELDS: &str = "slug displayOrder path depth parent { slug } children { slug displayOrder } products(first: 5) { totalCount edges { node { sku } } }";

pub async fn category_tree(api: &GraphqlApi) {
    let root = create_category(api, "home", None).await;
    let kitchen = create_category(api, "kitchen", Some(s(&root["id"]))).await;
    create_category(api, "garden", Some(s(&root["id"]))).await;
    create_category(api, "cups", Some(s(&kitchen["id"]))).await;
    create_category(api, "another-root", None).await;
    create_product(api, "TREE-1", s(&kitchen["id"]), json!({})).await;
    let tree = data(
        api,
        &format!("{{ categories {{ {CATEGORY_FIELDS} }} }}"),
        json!({}),
    )
    .await;
    snap!("category_tree", tree);
    let one = data(
        api,
        &format!("query($id: ID!) {{ category(slug: \"cups\") {{ {CATEGORY_FIELDS} }} categoryById(id: $id) {{ slug }} }}"),
        json!({ "id": kitchen["id"] }),
    )
    .await;
    snap!("category_by_slug_and_id", one);
}

pub async fn category_updates(api: &GraphqlApi) {
    let a = create_category(api, "upd-a", None).await;
    let b = create_category(api, "upd-b", Some(s(&a["id"]))).await;
    let m = "mutation($input: UpdateCategoryInput!) { updateCategory(input: $input) {
        category { slug name path depth parent { slug } } conflict { diff current { slug } } } }";
    let renamed = data(api, m, json!({ "input": { "id": b["id"], "version": b["updatedAt"], "name": "Bee", "slug": "upd-bee" } })).await;
    snap!("update_category_ok", renamed);
    // Making `a` a child of its own child is a cycle.
    let cycle = exec(
        api,
        m,
        json!({ "input": { "id": a["id"], "version": a["updatedAt"], "parentId": b["id"] } }),
    )
    .await;
    snap!("update_category_cycle", cycle);
    let stale = data(
        api,
        m,
        json!({ "input": { "id": b["id"], "version": b["updatedAt"], "name": "Stale" } }),
    )
    .await;
    snap!("update_category_conflict", stale);
    // Moving b to the root.
    let current = data(
        api,
        "{ category(slug: \"upd-bee\") { updatedAt } }",
        json!({}),
    )
    .await;
    let moved = data(api, m, json!({ "input": { "id": b["id"], "version": current["category"]["updatedAt"], "parentId": null } })).await;
    assert_eq!(moved["updateCategory"]["category"]["depth"], 0);
}

pub async fn category_delete_rules(api: &GraphqlApi) {
    let parent = create_category(api, "del-parent", None).await;
    let child = create_category(api, "del-child", Some(s(&parent["id"]))).await;
    create_product(api, "DEL-CAT-1", s(&child["id"]), json!({})).await;
    let m = "mutation($id: ID!) { deleteCategory(input: { id: $id }) { deletedCategoryId orphanedProductIds } }";
    let with_children = exec(api, m, json!({ "id": parent["id"] })).await;
    snap!("delete_category_with_children", with_children);
    let with_products = exec(api, m, json!({ "id": child["id"] })).await;
    snap!("delete_category_with_products", with_products);
    let leaf = create_category(api, "del-leaf", Some(s(&parent["id"]))).await;
    let ok = data(api, m, json!({ "id": leaf["id"] })).await;
    assert_eq!(ok["deleteCategory"]["deletedCategoryId"], leaf["id"]);
    assert_eq!(ok["deleteCategory"]["orphanedProductIds"], json!([]));
}

pub async fn reorder_categories(api: &GraphqlApi) {
    let root = create_category(api, "ro-root", None).await;
    let x = create_category(api, "ro-x", Some(s(&root["id"]))).await;
    let y = create_category(api, "ro-y", Some(s(&root["id"]))).await;
    let z = create_category(api, "ro-z", None).await;
    let m = "mutation($input: ReorderCategoriesInput!) { reorderCategories(input: $input) { clientMutationId categories { slug displayOrder parent { slug } } } }";
    let reordered = data(api, m, json!({ "input": { "clientMutationId": "r", "orderedIds": [y["id"], x["id"]], "parentId": root["id"] } })).await;
    snap!("reorder_categories", reordered);
    // Move z under root and put it first.
    let moved = data(
        api,
        m,
        json!({ "input": { "orderedIds": [z["id"], y["id"], x["id"]], "parentId": root["id"], "movedCategoryId": z["id"], "newParentId": root["id"] } }),
    )
    .await;
    snap!("reorder_categories_with_move", moved);
    let not_siblings = exec(
        api,
        m,
        json!({ "input": { "orderedIds": [root["id"], x["id"]], "parentId": root["id"] } }),
    )
    .await;
    snap!("reorder_categories_not_siblings", not_siblings);
    let cycle = exec(api, m, json!({ "input": { "orderedIds": [], "movedCategoryId": root["id"], "newParentId": x["id"] } })).await;
    assert_eq!(cycle["errors"][0]["extensions"]["code"], "INVALID_ARGUMENT");
    let children = data(
        api,
        "{ category(slug: \"ro-root\") { children { slug } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        children["category"]["children"],
        json!([{ "slug": "ro-z" }, { "slug": "ro-y" }, { "slug": "ro-x" }])
    );
}

pub async fn collections_and_membership(api: &GraphqlApi) {
    let cat = create_category(api, "mem", None).await;
    let p1 = create_product(api, "MEM-1", s(&cat["id"]), json!({})).await;
    let p2 = create_product(api, "MEM-2", s(&cat["id"]), json!({})).await;
    let coll = create_collection(api, "mem-coll", &[s(&p1["id"]), s(&p2["id"])]).await;
    let view = "{ collection(slug: \"mem-coll\") { slug productCount products(first: 10) { totalCount edges { node { sku collections { slug } } } } }
                  p1: product(sku: \"MEM-1\") { collections { slug productCount } } }";
    snap!(
        "collection_membership_created",
        data(api, view, json!({})).await
    );
    // Replace members from the collection side.
    let m = "mutation($input: UpdateCollectionInput!) { updateCollection(input: $input) { collection { slug productCount } conflict { diff } } }";
    data(api, m, json!({ "input": { "id": coll["id"], "version": coll["updatedAt"], "productIds": [p2["id"]] } })).await;
    // And from the product side.
    let pm = "mutation($input: UpdateProductInput!) { updateProduct(input: $input) { product { collections { slug } } } }";
    let other = create_collection(api, "mem-other", &[]).await;
    data(api, pm, json!({ "input": { "id": p1["id"], "version": p1["updatedAt"], "collectionIds": [other["id"], coll["id"]] } })).await;
    snap!(
        "collection_membership_replaced",
        data(api, view, json!({})).await
    );
    let stale = data(
        api,
        m,
        json!({ "input": { "id": coll["id"], "version": coll["updatedAt"], "name": "Late" } }),
    )
    .await;
    snap!("update_collection_conflict", stale);
    let bad_member = exec(api, m, json!({ "input": { "id": coll["id"], "version": coll["updatedAt"], "productIds": ["prod_01hzzzzzzzzzzzzzzzzzzzzzzz"] } })).await;
    snap!("update_collection_unknown_product", bad_member);
}

pub async fn reorder_and_delete_collections(api: &GraphqlApi) {
    let cat = create_category(api, "rc", None).await;
    let p = create_product(api, "RC-1", s(&cat["id"]), json!({})).await;
    let a = create_collection(api, "rc-a", &[s(&p["id"])]).await;
    let b = create_collection(api, "rc-b", &[]).await;
    let c = create_collection(api, "rc-c", &[]).await;
    let m = "mutation($ids: [ID!]!) { reorderCollections(input: { orderedIds: $ids }) { collections { slug displayOrder } } }";
    data(api, m, json!({ "ids": [c["id"], a["id"], b["id"]] })).await;
    snap!(
        "collections_after_reorder",
        data(
            api,
            "{ collections { slug displayOrder productCount } }",
            json!({})
        )
        .await
    );
    let by_id = data(
        api,
        "query($id: ID!) { collectionById(id: $id) { slug displayOrder productCount } }",
        json!({ "id": b["id"] }),
    )
    .await;
    assert_eq!(
        by_id,
        json!({ "collectionById": { "slug": "rc-b", "displayOrder": 2, "productCount": 0 } })
    );
    let m = "mutation($id: ID!) { deleteCollection(input: { id: $id, clientMutationId: \"dc\" }) { clientMutationId deletedCollectionId } }";
    let del = data(api, m, json!({ "id": a["id"] })).await;
    assert_eq!(del["deleteCollection"]["deletedCollectionId"], a["id"]);
    snap!(
        "delete_collection_twice",
        exec(api, m, json!({ "id": a["id"] })).await
    );
    let gone = data(
        api,
        "query($id: ID!) { collectionById(id: $id) { slug } collection(slug: \"rc-a\") { slug } }",
        json!({ "id": a["id"] }),
    )
    .await;
    assert_eq!(gone, json!({ "collectionById": null, "collection": null }));
    let product = data(
        api,
        "{ product(sku: \"RC-1\") { collections { slug } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        product["product"]["collections"],
        json!([]),
        "membership removed with the collection"
    );
}

pub async fn catalog_versions(api: &GraphqlApi) {
    let q = "{ catalogVersion { tag commit message stats { productCount categoryCount collectionCount orphanedReferences } } }";
    let empty = data(api, q, json!({})).await;
    snap!("catalog_version_draft_empty", empty);
    let cat = create_category(api, "cv", None).await;
    create_product(api, "CV-1", s(&cat["id"]), json!({})).await;
    let draft = data(api, q, json!({})).await;
    assert_ne!(
        draft["catalogVersion"]["commit"], empty["catalogVersion"]["commit"],
        "hash follows content"
    );
    let draft_again = data(api, q, json!({})).await;
    assert_eq!(
        draft["catalogVersion"]["commit"], draft_again["catalogVersion"]["commit"],
        "hash is deterministic"
    );
    let m = "mutation($input: PublishCatalogInput!) { publishCatalog(input: $input) { clientMutationId catalogVersion { tag commit message publishedAt stats { productCount categoryCount collectionCount orphanedReferences } } } }";
    let published = data(api, m, json!({ "input": { "version": "v1.0.0", "message": "first release", "clientMutationId": "p" } })).await;
    snap!("publish_catalog", published);
    assert_eq!(
        published["publishCatalog"]["catalogVersion"]["commit"],
        draft["catalogVersion"]["commit"]
    );
    let latest = data(api, q, json!({})).await;
    assert_eq!(latest["catalogVersion"]["tag"], "v1.0.0");
    let reused = exec(
        api,
        m,
        json!({ "input": { "version": "v1.0.0", "message": "again" } }),
    )
    .await;
    snap!("publish_catalog_reused_tag", reused);
}

pub async fn error_codes(api: &GraphqlApi) {
    let cat = create_category(api, "errs", None).await;
    create_product(api, "ERR-1", s(&cat["id"]), json!({})).await;
    let mut out = serde_json::Map::new();
    let cases = [
        ("not_found", "mutation { updateProduct(input: { id: \"prod_01hzzzzzzzzzzzzzzzzzzzzzzz\", version: \"2026-01-01T00:00:00.000Z\", title: \"x\" }) { product { id } } }".to_owned()),
        ("already_exists", format!("mutation {{ createProduct(input: {{ sku: \"ERR-1\", title: \"dup\", price: \"1\", categoryId: \"{}\" }}) {{ product {{ id }} }} }}", s(&cat["id"]))),
        ("already_exists_slug", "mutation { createCategory(input: { name: \"again\", slug: \"errs\" }) { category { id } } }".to_owned()),
        ("invalid_argument", "mutation { createCategory(input: { name: \"Bad\", slug: \"Not A Slug\" }) { category { id } } }".to_owned()),
        ("invalid_missing_reference", "mutation { createProduct(input: { sku: \"ERR-2\", title: \"t\", price: \"1\", categoryId: \"cat_01hzzzzzzzzzzzzzzzzzzzzzzz\" }) { product { id } } }".to_owned()),
        ("conflict", format!("mutation {{ deleteCategory(input: {{ id: \"{}\" }}) {{ deletedCategoryId }} }}", s(&cat["id"]))),
        ("unauthenticated", "mutation { logout { success } }".to_owned()),
        ("graphql_syntax", "{ products { ".to_owned()),
        ("graphql_unknown_field", "{ products { nope } }".to_owned()),
    ];
    for (name, query) in cases {
        out.insert(name.to_owned(), exec(api, &query, json!({})).await);
    }
    snap!("error_codes", Value::Object(out));
}

pub async fn input_validation(api: &GraphqlApi) {
    let cat = create_category(api, "val", None).await;
    let m = "mutation($input: CreateProductInput!) { createProduct(input: $input) { product { sku price } } }";
    let base = json!({ "sku": "VAL-1", "title": "ok", "price": "1.00", "categoryId": cat["id"] });
    let mut out = serde_json::Map::new();
    let long = "x".repeat(201);
    let tweaks: Vec<(&str, Value)> = vec![
        ("sku_chars", json!({ "sku": "has space" })),
        ("sku_too_long", json!({ "sku": "S".repeat(65) })),
        ("title_empty", json!({ "title": "  " })),
        ("title_too_long", json!({ "title": long })),
        ("price_negative", json!({ "price": "-1" })),
        ("price_scale", json!({ "price": "1.123456789" })),
        ("price_not_decimal", json!({ "price": "ten" })),
        ("currency", json!({ "currency": "usd" })),
        ("quantity", json!({ "inventoryQuantity": -1 })),
        (
            "images_too_many",
            json!({ "images": vec!["https://i/x.png"; 51] }),
        ),
        ("metadata_not_object", json!({ "metadata": [1, 2] })),
        ("body_too_big", json!({ "body": "b".repeat(64 * 1024 + 1) })),
        ("malformed_category_id", json!({ "categoryId": "42" })),
    ];
    for (name, tweak) in tweaks {
        let mut input = base.clone();
        input
            .as_object_mut()
            .unwrap()
            .extend(tweak.as_object().unwrap().clone());
        out.insert(
            name.to_owned(),
            exec(api, m, json!({ "input": input })).await,
        );
    }
    let q = "query($first: Int, $last: Int, $after: String) { products(first: $first, last: $last, after: $after) { totalCount } }";
    out.insert(
        "first_and_last".into(),
        exec(api, q, json!({ "first": 1, "last": 1 })).await,
    );
    out.insert(
        "first_too_big".into(),
        exec(api, q, json!({ "first": 1001 })).await,
    );
    out.insert(
        "bad_cursor".into(),
        exec(api, q, json!({ "first": 1, "after": "zzz" })).await,
    );
    out.insert("bad_version".into(), exec(api, "mutation { updateCategory(input: { id: \"x\", version: \"yesterday\" }) { category { id } } }", json!({})).await);
    snap!("input_validation", Value::Object(out));
    let nothing = data(api, "{ products { totalCount } }", json!({})).await;
    assert_eq!(
        nothing["products"]["totalCount"], 0,
        "no invalid input wrote anything"
    );
}

pub async fn limits(api: &GraphqlApi) {
    let deep = "{ categories { children { children { children { children { children { children { children { children { children { children { children { children { children { children { slug } } } } } } } } } } } } } } }";
    let too_deep = exec(api, deep, json!({})).await;
    assert_eq!(
        too_deep["errors"][0]["extensions"]["code"], "INVALID_ARGUMENT",
        "{too_deep}"
    );
    let wide = "{ products(first: 100) { edges { node { category { products(first: 100) { edges { node { sku } } } } } } } }";
    let too_complex = exec(api, wide, json!({})).await;
    snap!("limits_complexity", too_complex);
}

pub async fn client_mutation_id_echo(api: &GraphqlApi) {
    let d = data(
        api,
        "mutation { a: createCategory(input: { name: \"Echo\", slug: \"echo\", clientMutationId: \"abc-123\" }) { clientMutationId }
                    b: createCollection(input: { name: \"Echo\", slug: \"echo\" }) { clientMutationId } }",
        json!({}),
    )
    .await;
    assert_eq!(
        d,
        json!({ "a": { "clientMutationId": "abc-123" }, "b": { "clientMutationId": null } })
    );
}

pub async fn auth_mutations_not_configured(api: &GraphqlApi) {
    let r = exec(
        api,
        "mutation { login(input: { username: \"admin\", password: \"x\" }) { session { token } } }",
        json!({}),
    )
    .await;
    snap!("login_not_configured", r);
    for m in [
        "mutation { logout { success } }",
        "mutation { refreshToken { session { token } } }",
    ] {
        let r = exec(api, m, json!({})).await;
        assert_eq!(
            r["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
            "{r}"
        );
    }
}

/// Every file in `tests/it/snapshots` belongs to a `snap!` above, and no pending
/// (`.snap.new`) file is left: a renamed or deleted case cannot leave a stale snapshot
/// behind, and an unreviewed change cannot hide next to the accepted one.
#[test]
fn every_snapshot_is_referenced_and_none_is_pending() {
    let source = include_str!("graphql.rs");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/snapshots");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("snapshot directory") {
        let name = entry.expect("directory entry").file_name();
        let name = name.to_string_lossy();
        assert!(
            !name.ends_with(".snap.new") && !name.ends_with(".pending-snap"),
            "pending snapshot {name}: review it with `cargo insta review` or delete it"
        );
        let Some(stem) = name.strip_suffix(".snap") else {
            panic!("unexpected file {name} in tests/it/snapshots");
        };
        assert!(
            source.contains(&format!("\"{stem}\"")),
            "snapshot {name} is not referenced by any snap! in tests/it/graphql.rs; delete it"
        );
        checked += 1;
    }
    assert!(checked > 0, "no snapshots found in {}", dir.display());
}
