//! The contract suite on the SQLite backend, one fresh database file per case.

use gitstore_api::datastore::{
    CatalogVersion, Category, CategoryId, Collection, CollectionId, Datastore, Instrumented,
    Page, Product, ProductFilter, ProductId, Result, SqliteStore, Timestamp,
};
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
