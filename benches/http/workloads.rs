//! The workloads of issue 12's table, and the request sources that seed the catalogue and
//! write to it.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use serde_json::{Value, json};

use crate::load::{Cycle, Source};

/// The six scalars every product selection reads.
const SCALARS: &str = "id sku title price currency inventoryStatus";

/// Which requests a workload sends and on how many connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Workload {
    /// `{ __typename }`: the GraphQL stack without data.
    Typename,
    /// `productById` with six scalars, ids in a scattered order.
    ById,
    /// `product(sku:)` with six scalars.
    BySku,
    /// `products(first: 20)` with six scalars.
    List20,
    /// The same with `collections { id name }`.
    List20Collections,
    /// The same with `category { id name }` and `collections { id name }`.
    List20Nested,
    /// `products(first: 100)` with six scalars.
    List100,
    /// `products(first: 100)` with `category` and `collections`.
    List100Nested,
    /// [`Workload::List20Nested`] on one connection: the latency of one request alone.
    List20NestedAlone,
    /// `createProduct` of a new product in one category and one collection.
    Create,
}

impl Workload {
    /// Every workload, in table order.
    pub const ALL: [Self; 10] = [
        Self::Typename,
        Self::ById,
        Self::BySku,
        Self::List20,
        Self::List20Collections,
        Self::List20Nested,
        Self::List100,
        Self::List100Nested,
        Self::List20NestedAlone,
        Self::Create,
    ];

    /// The name `--workloads` and `--perf` take.
    pub fn name(self) -> &'static str {
        match self {
            Self::Typename => "typename",
            Self::ById => "by-id",
            Self::BySku => "by-sku",
            Self::List20 => "list20",
            Self::List20Collections => "list20-collections",
            Self::List20Nested => "list20-nested",
            Self::List100 => "list100",
            Self::List100Nested => "list100-nested",
            Self::List20NestedAlone => "list20-nested-alone",
            Self::Create => "create",
        }
    }

    /// The row label of the results table.
    pub fn label(self) -> &'static str {
        match self {
            Self::Typename => "`{ __typename }`",
            Self::ById => "`productById` (6 scalars)",
            Self::BySku => "`product(sku:)` (6 scalars)",
            Self::List20 => "`products(first: 20)` scalars",
            Self::List20Collections => "`products(first: 20)` + `collections { id name }`",
            Self::List20Nested => "`products(first: 20)` + `category { id name }` + collections",
            Self::List100 => "`products(first: 100)` scalars",
            Self::List100Nested => "`products(first: 100)` + category + collections",
            Self::List20NestedAlone => "one request of the nested `first: 20`, alone",
            Self::Create => "`createProduct`",
        }
    }

    /// Parses a `--workloads` name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|w| w.name() == name)
    }

    /// Connections this workload runs on, given `--connections`.
    pub fn connections(self, configured: usize) -> usize {
        if self == Self::List20NestedAlone {
            1
        } else {
            configured
        }
    }

    /// The workloads each backend runs by default: everything on memdb; point reads, the
    /// nested list and writes on the durable backends (each costs a seeded server).
    pub fn for_backend(backend: &str) -> Vec<Self> {
        match backend {
            "memdb" => Self::ALL.to_vec(),
            "sqlite" => vec![Self::ById, Self::BySku, Self::List20Nested, Self::Create],
            _ => vec![
                Self::ById,
                Self::BySku,
                Self::List20,
                Self::List20Nested,
                Self::List20NestedAlone,
                Self::Create,
            ],
        }
    }

    /// The request source over a seeded catalogue.
    pub fn source(self, catalogue: &Catalogue, run: &str) -> Arc<dyn Source> {
        let list = |first: u32, extra: &str| {
            let query = format!(
                "{{ products(first: {first}) {{ edges {{ node {{ {SCALARS}{extra} }} }} }} }}"
            );
            Arc::new(Cycle(vec![body(&query, &Value::Null)])) as Arc<dyn Source>
        };
        let collections = " collections { id name }";
        let nested = " category { id name } collections { id name }";
        match self {
            Self::Typename => Arc::new(Cycle(vec![body("{ __typename }", &Value::Null)])),
            Self::ById => Arc::new(by_id(catalogue)),
            Self::BySku => {
                let query =
                    format!("query($sku: String!) {{ product(sku: $sku) {{ {SCALARS} }} }}");
                Arc::new(Cycle(
                    catalogue
                        .scattered()
                        .map(|p| body(&query, &json!({ "sku": p.sku })))
                        .collect(),
                ))
            }
            Self::List20 => list(20, ""),
            Self::List20Collections => list(20, collections),
            Self::List20Nested | Self::List20NestedAlone => list(20, nested),
            Self::List100 => list(100, ""),
            Self::List100Nested => list(100, nested),
            Self::Create => Arc::new(Create {
                prefix: format!("W{run}"),
                categories: catalogue.categories.clone(),
                collections: catalogue.collections.clone(),
                first: 0,
                seeded: None,
            }),
        }
    }
}

/// `productById` of every seeded product, scattered.
fn by_id(catalogue: &Catalogue) -> Cycle {
    let query = format!("query($id: ID!) {{ productById(id: $id) {{ {SCALARS} }} }}");
    Cycle(
        catalogue
            .scattered()
            .map(|p| body(&query, &json!({ "id": p.id })))
            .collect(),
    )
}

/// A JSON request body.
pub fn body(query: &str, variables: &Value) -> Bytes {
    Bytes::from(json!({ "query": query, "variables": variables }).to_string())
}

/// A product written through the API.
#[derive(Clone, Debug)]
pub struct Seeded {
    /// Its number (the seed ticket), which fixes its sku, category and collections.
    pub n: u64,
    /// Its id.
    pub id: String,
    /// Its sku.
    pub sku: String,
    /// Its `updatedAt`, the version an update must pass.
    pub version: String,
}

/// What a seeded server holds.
#[derive(Debug, Default)]
pub struct Catalogue {
    /// Category ids.
    pub categories: Vec<String>,
    /// Collection ids.
    pub collections: Vec<String>,
    /// Products, by number.
    pub products: Vec<Seeded>,
}

impl Catalogue {
    /// The products in a fixed scattered order (a stride coprime to their count), so that
    /// consecutive requests read unrelated products.
    pub fn scattered(&self) -> impl Iterator<Item = &Seeded> {
        let len = self.products.len();
        let stride = [7919, 104_729, 1_299_709]
            .into_iter()
            .find(|s| !len.is_multiple_of(*s))
            .unwrap_or(1);
        (0..len).map(move |i| &self.products[(i * stride) % len])
    }
}

const CREATE: &str = "mutation($input: CreateProductInput!) { createProduct(input: $input) \
                      { product { id sku updatedAt } } }";

/// `createProduct` of product `first + ticket`: sku `<prefix>-<n>`, category `n mod 20`,
/// collections `n mod 10` and `(n / 10) mod 10`. With `seeded`, each answer is kept.
pub struct Create {
    /// Sku prefix, unique per run.
    pub prefix: String,
    /// Category ids to spread products over.
    pub categories: Vec<String>,
    /// Collection ids to spread products over.
    pub collections: Vec<String>,
    /// Number of the first product.
    pub first: u64,
    /// Where to keep what was written, one list per connection.
    pub seeded: Option<Vec<Mutex<Vec<Seeded>>>>,
}

impl Create {
    /// A source that keeps the products it writes.
    pub fn seeding(catalogue: &Catalogue, first: u64, connections: usize) -> Self {
        Self {
            prefix: "SKU".to_owned(),
            categories: catalogue.categories.clone(),
            collections: catalogue.collections.clone(),
            first,
            seeded: Some((0..connections).map(|_| Mutex::new(Vec::new())).collect()),
        }
    }

    /// Takes the products written so far, in no particular order.
    pub fn take_seeded(&self) -> Vec<Seeded> {
        self.seeded
            .iter()
            .flatten()
            .flat_map(|m| {
                std::mem::take(&mut *m.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
            })
            .collect()
    }
}

impl Source for Create {
    fn request(&self, _conn: usize, ticket: u64) -> Bytes {
        let n = self.first + ticket;
        let category = &self.categories[(n % self.categories.len() as u64) as usize];
        let count = self.collections.len() as u64;
        let mut collections = vec![&self.collections[(n % count) as usize]];
        let second = &self.collections[((n / 10) % count) as usize];
        if second != collections[0] {
            collections.push(second);
        }
        body(
            CREATE,
            &json!({ "input": {
                "sku": format!("{}-{n:07}", self.prefix),
                "title": format!("Product {n}"),
                "body": "Written by the HTTP benchmark.",
                "price": format!("{}.{:02}", 1 + n % 500, n % 100),
                "currency": "EUR",
                "inventoryQuantity": n % 50,
                "categoryId": category,
                "collectionIds": collections,
                "images": [format!("https://img.example/p/{n}.jpg")],
                "metadata": { "n": n, "origin": "bench" },
            }}),
        )
    }

    fn answered(&self, conn: usize, ticket: u64, body: &[u8]) {
        let Some(seeded) = &self.seeded else {
            return;
        };
        let Ok(value) = serde_json::from_slice::<Value>(body) else {
            return;
        };
        let product = &value["data"]["createProduct"]["product"];
        let field = |name: &str| product[name].as_str().unwrap_or_default().to_owned();
        seeded[conn]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Seeded {
                n: self.first + ticket,
                id: field("id"),
                sku: field("sku"),
                version: field("updatedAt"),
            });
    }
}

const UPDATE: &str = "mutation($input: UpdateProductInput!) { updateProduct(input: $input) \
                      { product { updatedAt } conflict { currentVersion } } }";

/// A mixed run for the memory report: half `productById`, a fifth the nested first-20
/// list, the rest `updateProduct` of a price (the catalogue's size stays the same). Each
/// connection updates only its own products, so versions never conflict.
pub struct Mixed {
    by_id: Cycle,
    nested: Bytes,
    owned: Vec<Mutex<Owned>>,
    /// Updates written.
    pub updated: AtomicU64,
    /// Updates refused with a version conflict (none expected).
    pub conflicts: AtomicU64,
}

struct Owned {
    products: Vec<(String, String)>,
    next: usize,
    pending: Option<usize>,
}

impl Mixed {
    /// Over `catalogue`, for `connections` connections.
    pub fn new(catalogue: &Catalogue, connections: usize) -> Self {
        let nested = body(
            &format!(
                "{{ products(first: 20) {{ edges {{ node {{ {SCALARS} category {{ id name }} \
                 collections {{ id name }} }} }} }} }}"
            ),
            &Value::Null,
        );
        let mut owned: Vec<Owned> = (0..connections)
            .map(|_| Owned {
                products: Vec::new(),
                next: 0,
                pending: None,
            })
            .collect();
        for (i, p) in catalogue.products.iter().enumerate() {
            owned[i % connections]
                .products
                .push((p.id.clone(), p.version.clone()));
        }
        Self {
            by_id: by_id(catalogue),
            nested,
            owned: owned.into_iter().map(Mutex::new).collect(),
            updated: AtomicU64::new(0),
            conflicts: AtomicU64::new(0),
        }
    }
}

impl Source for Mixed {
    fn request(&self, conn: usize, ticket: u64) -> Bytes {
        match ticket % 10 {
            0..=4 => self.by_id.request(conn, ticket),
            5 | 6 => self.nested.clone(),
            _ => {
                let mut owned = self.owned[conn]
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if owned.products.is_empty() {
                    return self.nested.clone();
                }
                let i = owned.next % owned.products.len();
                owned.next += 1;
                owned.pending = Some(i);
                let (id, version) = &owned.products[i];
                let price = if ticket % 20 < 10 { "10.00" } else { "11.00" };
                body(
                    UPDATE,
                    &json!({ "input": { "id": id, "version": version, "price": price } }),
                )
            }
        }
    }

    fn answered(&self, conn: usize, ticket: u64, body: &[u8]) {
        if ticket % 10 < 7 {
            return;
        }
        let mut owned = self.owned[conn]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(i) = owned.pending.take() else {
            return;
        };
        let Ok(value) = serde_json::from_slice::<Value>(body) else {
            return;
        };
        let payload = &value["data"]["updateProduct"];
        let version = if let Some(v) = payload["product"]["updatedAt"].as_str() {
            self.updated.fetch_add(1, Ordering::Relaxed);
            Some(v)
        } else {
            self.conflicts.fetch_add(1, Ordering::Relaxed);
            payload["conflict"]["currentVersion"].as_str()
        };
        if let Some(version) = version {
            owned.products[i].1 = version.to_owned();
        }
    }
}
