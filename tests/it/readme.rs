//! The README's GraphQL examples, run in order against a fresh server, so the quickstart
//! session a new user follows stays true.

use serde_json::Value;

use crate::support::{exec, memdb_api};

fn examples() -> Vec<String> {
    let readme = include_str!("../../README.md");
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match (&mut current, line.trim_start()) {
            (None, "```graphql") => current = Some(String::new()),
            (Some(block), "```") => {
                out.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            _ => {}
        }
    }
    out
}

fn find<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    match value {
        Value::Object(map) => map
            .get(key)
            .or_else(|| map.values().find_map(|v| find(v, key))),
        Value::Array(items) => items.iter().find_map(|v| find(v, key)),
        _ => None,
    }
}

#[tokio::test]
async fn readme_examples_work_in_order() {
    let api = memdb_api();
    let blocks = examples();
    assert!(
        blocks.len() >= 6,
        "README lost its examples: {}",
        blocks.len()
    );
    let mut category_id = String::new();
    let mut product_id = String::new();
    let mut updated_at = String::new();
    let mut responses = Vec::new();
    for block in &blocks {
        let query = block
            .replace("PASTE_CATEGORY_ID", &category_id)
            .replace("PASTE_PRODUCT_ID", &product_id)
            .replace("PASTE_UPDATED_AT", &updated_at);
        let response = exec(&api, &query, Value::Null).await;
        assert!(
            response.get("errors").is_none(),
            "README example failed:\n{query}\n{response:#}"
        );
        if let Some(c) = find(&response, "createCategory") {
            category_id = c["category"]["id"].as_str().unwrap().to_owned();
        }
        if let Some(p) = find(&response, "createProduct") {
            product_id = p["product"]["id"].as_str().unwrap().to_owned();
            updated_at = p["product"]["updatedAt"].as_str().unwrap().to_owned();
        }
        responses.push(response);
    }
    // The quickstart tells a story: the search finds the product, the first update lands,
    // the repeat is a conflict that wrote nothing, and the publish counts what was made.
    assert_eq!(responses[2]["data"]["products"]["totalCount"], 1);
    assert_eq!(
        responses[3]["data"]["updateProduct"]["product"]["price"],
        "11.90"
    );
    let conflict = &responses[4]["data"]["updateProduct"];
    assert_eq!(conflict["product"], Value::Null);
    assert_eq!(conflict["conflict"]["current"]["price"], "11.90");
    assert!(
        conflict["conflict"]["diff"]
            .as_str()
            .unwrap()
            .contains("price: \"11.90\" -> \"9.90\"")
    );
    assert_eq!(
        responses[5]["data"]["publishCatalog"]["catalogVersion"]["stats"]["productCount"],
        1
    );
}

/// Every file or directory the README links to (`[..](path)`) exists, so the
/// architecture map cannot point at a file that was moved or split.
#[test]
fn readme_links_point_at_existing_files() {
    let readme = include_str!("../../README.md");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
    for (at, _) in readme.match_indices("](") {
        let rest = &readme[at + 2..];
        let Some(end) = rest.find(')') else { continue };
        let target = rest[..end].split('#').next().unwrap_or_default();
        if target.is_empty() || target.contains("://") || target.starts_with('<') {
            continue;
        }
        assert!(
            root.join(target).exists(),
            "README links to {target}, which does not exist"
        );
        checked += 1;
    }
    assert!(
        checked > 20,
        "only {checked} links found; is the parser right?"
    );
}
