//! The contract suite on the SQLite backend, one fresh database file per case.

use gitstore_api::datastore::{
    CatalogVersion, Category, CategoryId, Collection, CollectionId, Datastore, Error, Instrumented,
    Page, Product, ProductFilter, ProductId, Result, SqliteStore, Timestamp,
};
use gitstore_api::service::{Catalog, NewCategory, NewProduct, ProductPatch, Updated};
use rust_decimal::Decimal;
use tempfile::TempDir;

/// A migrated [`SqliteStore`] on a file in its own temporary directory, which is removed
/// when the store is dropped.
pub struct TempSqlite {
    store: SqliteStore,
    dir: TempDir,
}

impl TempSqlite {
    /// Opens and migrates a new database file.
    pub async fn open() -> Self {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let path = dir.path().join("gitstore.db");
        let store = SqliteStore::connect(path.to_str().expect("utf-8 temp path"))
            .await
            .expect("open the sqlite store");
        store.migrate().await.expect("migrate the sqlite store");
        Self { store, dir }
    }

    /// The database file.
    pub fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("gitstore.db")
    }
}

impl Datastore for TempSqlite {
    fn backend(&self) -> &'static str {
        self.store.backend()
    }
    async fn create_product(&self, product: &Product) -> Result<()> {
        self.store.create_product(product).await
    }
    async fn get_product(&self, id: &ProductId) -> Result<Product> {
        self.store.get_product(id).await
    }
    async fn get_product_by_sku(&self, sku: &str) -> Result<Product> {
        self.store.get_product_by_sku(sku).await
    }
    async fn get_products(&self, ids: &[ProductId]) -> Result<Vec<Product>> {
        self.store.get_products(ids).await
    }
    async fn update_product(
        &self,
        product: &Product,
        expected: Timestamp,
        collection_ids: Option<&[CollectionId]>,
    ) -> Result<()> {
        self.store
            .update_product(product, expected, collection_ids)
            .await
    }
    async fn delete_product(&self, id: &ProductId) -> Result<()> {
        self.store.delete_product(id).await
    }
    async fn list_products(&self, filter: &ProductFilter, page: &Page) -> Result<Vec<Product>> {
        self.store.list_products(filter, page).await
    }
    async fn count_products(&self, filter: &ProductFilter) -> Result<u64> {
        self.store.count_products(filter).await
    }
    async fn create_category(&self, category: &Category) -> Result<()> {
        self.store.create_category(category).await
    }
    async fn get_category(&self, id: &CategoryId) -> Result<Category> {
        self.store.get_category(id).await
    }
    async fn get_category_by_slug(&self, slug: &str) -> Result<Category> {
        self.store.get_category_by_slug(slug).await
    }
    async fn get_categories(&self, ids: &[CategoryId]) -> Result<Vec<Category>> {
        self.store.get_categories(ids).await
    }
    async fn list_categories(&self) -> Result<Vec<Category>> {
        self.store.list_categories().await
    }
    async fn update_category(&self, category: &Category, expected: Timestamp) -> Result<()> {
        self.store.update_category(category, expected).await
    }
    async fn delete_category(&self, id: &CategoryId) -> Result<()> {
        self.store.delete_category(id).await
    }
    async fn create_collection(
        &self,
        collection: &Collection,
        product_ids: &[ProductId],
    ) -> Result<()> {
        self.store.create_collection(collection, product_ids).await
    }
    async fn get_collection(&self, id: &CollectionId) -> Result<Collection> {
        self.store.get_collection(id).await
    }
    async fn get_collection_by_slug(&self, slug: &str) -> Result<Collection> {
        self.store.get_collection_by_slug(slug).await
    }
    async fn get_collections(&self, ids: &[CollectionId]) -> Result<Vec<Collection>> {
        self.store.get_collections(ids).await
    }
    async fn list_collections(&self) -> Result<Vec<Collection>> {
        self.store.list_collections().await
    }
    async fn update_collection(
        &self,
        collection: &Collection,
        expected: Timestamp,
        product_ids: Option<&[ProductId]>,
    ) -> Result<()> {
        self.store
            .update_collection(collection, expected, product_ids)
            .await
    }
    async fn delete_collection(&self, id: &CollectionId) -> Result<()> {
        self.store.delete_collection(id).await
    }
    async fn create_catalog_version(&self, version: &CatalogVersion) -> Result<()> {
        self.store.create_catalog_version(version).await
    }
    async fn latest_catalog_version(&self) -> Result<Option<CatalogVersion>> {
        self.store.latest_catalog_version().await
    }
    async fn ping(&self) -> Result<()> {
        self.store.ping().await
    }
    async fn close(&self) {
        self.store.close().await;
    }
}

crate::contract_suite!(async { Some(Instrumented::new(TempSqlite::open().await)) });

// ---------- many writers on one database ----------

/// Writers per test: the concurrency the issue asks the backend to absorb.
const WRITERS: usize = 32;
/// Skus every writer tries to create; exactly one create of each may win.
const CONTENDED_SKUS: usize = 4;
/// Optimistic read-modify-write increments each writer makes to one shared product.
const INCREMENTS: i32 = 4;

/// Runs `WRITERS` concurrent writers, spread over `catalogs` (which share one database
/// file), and checks that only the outcomes a client may see came back: successes,
/// `AlreadyExists` for a lost sku race, and version conflicts that a retry resolves.
/// Any other error (a `database is locked` surfacing as `Unavailable`) fails the test,
/// and so does a lost update or a sku created twice.
async fn writers_workload(catalogs: &[Catalog<Instrumented<SqliteStore>>]) {
    let first = &catalogs[0];
    let category = first
        .create_category(NewCategory {
            name: "Writers".to_owned(),
            slug: format!("writers-{}", ulid::Ulid::new().to_string().to_lowercase()),
            ..NewCategory::default()
        })
        .await
        .expect("create the category");
    let new_product = |sku: String| NewProduct {
        sku,
        title: "Contended".to_owned(),
        price: Decimal::new(1999, 2),
        category_id: category.id.to_string(),
        ..NewProduct::default()
    };
    let shared = first
        .create_product(NewProduct {
            inventory_quantity: Some(0),
            ..new_product("SHARED".to_owned())
        })
        .await
        .expect("create the shared product");

    let writer = |n: usize| {
        let catalog = &catalogs[n % catalogs.len()];
        let new_product = &new_product;
        let shared = &shared;
        async move {
            let mut conflicts = 0_u32;
            catalog
                .create_product(new_product(format!("OWN-{n}")))
                .await
                .expect("an uncontended create succeeds");
            let mut won = Vec::new();
            for k in 0..CONTENDED_SKUS {
                match catalog
                    .create_product(new_product(format!("RACE-{k}")))
                    .await
                {
                    Ok(_) => won.push(k),
                    Err(Error::AlreadyExists { field: "sku", .. }) => {}
                    Err(other) => panic!("writer {n}: create RACE-{k} failed with {other:?}"),
                }
            }
            for _ in 0..INCREMENTS {
                loop {
                    let stored = catalog
                        .product(shared.id.as_str())
                        .await
                        .expect("read the shared product")
                        .expect("the shared product exists");
                    let patch = ProductPatch {
                        inventory_quantity: Some(Some(stored.inventory_quantity.unwrap_or(0) + 1)),
                        ..ProductPatch::default()
                    };
                    match catalog
                        .update_product(shared.id.as_str(), stored.updated_at, patch)
                        .await
                    {
                        Ok(Updated::Written(_)) => break,
                        Ok(Updated::Conflict { .. }) => conflicts += 1,
                        Err(other) => panic!("writer {n}: update failed with {other:?}"),
                    }
                }
            }
            (won, conflicts)
        }
    };
    let outcomes = futures_util::future::join_all((0..WRITERS).map(writer)).await;

    let mut winners = vec![0; CONTENDED_SKUS];
    for (won, _) in &outcomes {
        for &k in won {
            winners[k] += 1;
        }
    }
    assert_eq!(
        winners,
        vec![1; CONTENDED_SKUS],
        "each contended sku created exactly once"
    );
    let conflicts: u32 = outcomes.iter().map(|(_, c)| c).sum();
    let stored = first
        .product(shared.id.as_str())
        .await
        .unwrap()
        .expect("the shared product exists");
    let expected = i32::try_from(WRITERS).unwrap() * INCREMENTS;
    assert_eq!(
        stored.inventory_quantity,
        Some(expected),
        "no increment lost ({conflicts} stale writes were refused and retried)"
    );
    let filter = ProductFilter {
        category_id: Some(category.id.clone()),
        ..ProductFilter::default()
    };
    assert_eq!(
        first.count_products(&filter).await.unwrap(),
        (1 + WRITERS + CONTENDED_SKUS) as u64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_on_one_store() {
    let db = TempSqlite::open().await;
    let path = db.path();
    db.close().await;
    let store = SqliteStore::connect(path.to_str().unwrap()).await.unwrap();
    let catalogs = [Catalog::new(Instrumented::new(store))];
    writers_workload(&catalogs).await;
    catalogs[0].store().close().await;
}

/// Several stores on one file stand in for several processes (a second instance, a
/// `migrate` run): their write connections contend for SQLite's lock, which
/// `BEGIN IMMEDIATE` and the busy timeout turn into waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_across_connections() {
    let db = TempSqlite::open().await;
    let path = db.path();
    let mut catalogs = Vec::new();
    for _ in 0..4 {
        let store = SqliteStore::connect(path.to_str().unwrap()).await.unwrap();
        catalogs.push(Catalog::new(Instrumented::new(store)));
    }
    writers_workload(&catalogs).await;
    for catalog in &catalogs {
        catalog.store().close().await;
    }
    db.close().await;
}
