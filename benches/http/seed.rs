//! Seeding a server through its own GraphQL API, and checking a workload's request once
//! before it is measured.

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::json;

use crate::load::{self, Source, Stop};
use crate::workloads::{Catalogue, Create};

/// Categories of a seeded catalogue.
pub const CATEGORIES: usize = 20;
/// Collections of a seeded catalogue.
pub const COLLECTIONS: usize = 10;

/// Writes 20 categories, 10 collections and `products` products (over `connections`
/// parallel connections), each product in one category and one or two collections.
///
/// # Errors
/// When any write fails.
pub async fn seed(
    addr: SocketAddr,
    products: u64,
    connections: usize,
) -> Result<Catalogue, String> {
    let mut catalogue = Catalogue::default();
    for i in 0..CATEGORIES {
        let answer = load::graphql(
            addr,
            "mutation($input: CreateCategoryInput!) { createCategory(input: $input) { category { id } } }",
            json!({ "input": { "name": format!("Category {i}"), "slug": format!("category-{i}") } }),
        )
        .await?;
        catalogue
            .categories
            .push(id(&answer["data"]["createCategory"]["category"])?);
    }
    for i in 0..COLLECTIONS {
        let answer = load::graphql(
            addr,
            "mutation($input: CreateCollectionInput!) { createCollection(input: $input) { collection { id } } }",
            json!({ "input": { "name": format!("Collection {i}"), "slug": format!("collection-{i}") } }),
        )
        .await?;
        catalogue
            .collections
            .push(id(&answer["data"]["createCollection"]["collection"])?);
    }
    grow(addr, &mut catalogue, products, connections).await?;
    Ok(catalogue)
}

/// Adds `count` products to `catalogue` through the API and returns the run's outcome
/// (latency of every `createProduct`).
///
/// # Errors
/// When any write fails.
pub async fn grow(
    addr: SocketAddr,
    catalogue: &mut Catalogue,
    count: u64,
    connections: usize,
) -> Result<load::Outcome, String> {
    let first = catalogue.products.len() as u64;
    let create = Arc::new(Create::seeding(catalogue, first, connections));
    let outcome = load::run(
        addr,
        connections,
        Stop::Count(count),
        create.clone(),
        None,
        None,
    )
    .await?;
    if outcome.errors > 0 {
        return Err(format!(
            "{} of {count} products not written; first: {}",
            outcome.errors,
            outcome.first_error.unwrap_or_default()
        ));
    }
    let mut written = create.take_seeded();
    written.sort_by_key(|p| p.n);
    catalogue.products.extend(written);
    Ok(outcome)
}

fn id(object: &serde_json::Value) -> Result<String, String> {
    object["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("no id in {object}"))
}

/// Sends the source's first request once and fails unless it is answered with data and
/// no errors (so a broken query is reported, not measured as fast).
///
/// # Errors
/// The server's answer, when it is not a success.
pub async fn check(addr: SocketAddr, source: &Arc<dyn Source>) -> Result<(), String> {
    let body = source.request(0, u64::MAX / 2);
    let (status, answer) = load::exchange(addr, "POST", "/graphql", body).await?;
    let value: serde_json::Value =
        serde_json::from_slice(&answer).map_err(|e| format!("HTTP {status}, not JSON: {e}"))?;
    if status != 200 || value.get("errors").is_some() || value["data"].is_null() {
        return Err(format!("HTTP {status}: {value}"));
    }
    Ok(())
}
