//! Products: lookups, writes, and the checks of the references they carry.

use std::collections::HashSet;
use std::sync::Arc;

use super::conflict::{Updated, product_conflict};
use super::input::{NewProduct, ProductPatch};
use super::{Catalog, absent_as_none, dedup, parse_ref, validate};
use crate::datastore::{
    CategoryId, CollectionId, Current, Datastore, InventoryStatus, Product, ProductId, Timestamp,
};
use crate::error::{Error, Input, Problem, Result};

impl<D: Datastore> Catalog<D> {
    /// A product by id; `None` for an unknown or malformed id.
    ///
    /// # Errors
    /// Backend failures.
    pub async fn product(&self, id: &str) -> Result<Option<Arc<Product>>> {
        let Some(id) = ProductId::parse(id) else {
            return Ok(None);
        };
        absent_as_none(self.store.get_product_shared(&id).await)
    }

    /// A product by sku; `None` when absent.
    ///
    /// # Errors
    /// Backend failures.
    pub async fn product_by_sku(&self, sku: &str) -> Result<Option<Arc<Product>>> {
        absent_as_none(self.store.get_product_by_sku_shared(sku).await)
    }

    /// Batch read for loaders and `nodes`.
    ///
    /// # Errors
    /// Backend failures.
    pub async fn products_by_ids(&self, ids: &[ProductId]) -> Result<Vec<Product>> {
        Ok(self.store.get_products(ids).await?)
    }

    /// Creates a product.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for bad fields, [`Error::Reference`] for a malformed or
    /// unknown category or collection, [`Error::AlreadyExists`] for a taken sku; backend
    /// failures.
    pub async fn create_product(&self, input: NewProduct) -> Result<Product> {
        let now = self.clock.next(None);
        let mut product = Product {
            id: ProductId::generate(),
            sku: input.sku,
            title: input.title,
            body: input.body,
            price: input.price,
            currency: input.currency.unwrap_or_else(|| "USD".to_owned()),
            inventory_status: input.inventory_status.unwrap_or(InventoryStatus::InStock),
            inventory_quantity: input.inventory_quantity,
            category_id: CategoryId::generate(),
            collection_ids: Vec::new(),
            images: input.images,
            metadata: input.metadata,
            created_at: now,
            updated_at: now,
        };
        validate_product(&product)?;
        // Every backend checks the references atomically with the insert (a category or
        // collection deleted meanwhile must not be referenced), and its `NotFound` becomes
        // the same reference error below; so only the ids' format is checked here, and a
        // create costs one datastore call, not three.
        product.category_id = parse_ref(&input.category_id, Input::Category, CategoryId::parse)?;
        product.collection_ids = dedup(
            input
                .collection_ids
                .iter()
                .map(|raw| parse_ref(raw, Input::Collections, CollectionId::parse))
                .collect::<Result<Vec<_>>>()?,
        );
        self.write(self.store.create_product(&product))
            .await
            .map_err(|e| {
                Error::from(e)
                    .missing_reference("collection", Input::Collections)
                    .missing_reference("category", Input::Category)
            })?;
        Ok(product)
    }

    /// Applies `patch` to the product `id` if `version` is still its `updatedAt`.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::InvalidArgument`], [`Error::Reference`],
    /// [`Error::AlreadyExists`]; backend failures.
    pub async fn update_product(
        &self,
        id: &str,
        version: Timestamp,
        patch: ProductPatch,
    ) -> Result<Updated<Product>> {
        let id = ProductId::parse(id).ok_or_else(|| Error::not_found("product", id))?;
        let stored = self.store.get_product(&id).await?;
        let mut next = stored.clone();
        if let Some(v) = patch.sku {
            next.sku = v;
        }
        if let Some(v) = patch.title {
            next.title = v;
        }
        if let Some(v) = patch.body {
            next.body = v;
        }
        if let Some(v) = patch.price {
            next.price = v;
        }
        if let Some(v) = patch.currency {
            next.currency = v;
        }
        if let Some(v) = patch.inventory_status {
            next.inventory_status = v;
        }
        if let Some(v) = patch.inventory_quantity {
            next.inventory_quantity = v;
        }
        if let Some(v) = patch.images {
            next.images = v;
        }
        if let Some(v) = patch.metadata {
            next.metadata = v;
        }
        validate_product(&next)?;
        if let Some(raw) = &patch.category_id {
            next.category_id = self.check_category_exists(raw).await?;
        }
        let collections = match &patch.collection_ids {
            Some(raws) => Some(self.check_collections_exist(raws).await?),
            None => None,
        };
        if let Some(ids) = &collections {
            next.collection_ids.clone_from(ids);
        }
        if stored.updated_at != version {
            return Ok(product_conflict(stored, &next, version));
        }
        next.updated_at = self.clock.next(Some(stored.updated_at));
        match self
            .write(
                self.store
                    .update_product(&next, version, collections.as_deref()),
            )
            .await
        {
            Ok(()) => Ok(Updated::Written(next)),
            Err(crate::datastore::Error::Conflict(Current::Product(current))) => {
                Ok(product_conflict(*current, &next, version))
            }
            Err(e) => Err(Error::from(e)
                .missing_reference("collection", Input::Collections)
                .missing_reference("category", Input::Category)),
        }
    }

    /// Deletes a product and its memberships.
    ///
    /// # Errors
    /// [`Error::NotFound`]; backend failures.
    pub async fn delete_product(&self, id: &str) -> Result<ProductId> {
        let id = ProductId::parse(id).ok_or_else(|| Error::not_found("product", id))?;
        self.write(self.store.delete_product(&id)).await?;
        Ok(id)
    }

    /// The category a product is put in, which must exist.
    async fn check_category_exists(&self, raw: &str) -> Result<CategoryId> {
        let id = parse_ref(raw, Input::Category, CategoryId::parse)?;
        match self.store.get_category(&id).await {
            Ok(_) => Ok(id),
            Err(crate::datastore::Error::NotFound { .. }) => {
                Err(Error::reference(Input::Category, raw, Problem::Missing))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The collections a product is put in, which must all exist; sorted, no repeats.
    async fn check_collections_exist(&self, raws: &[String]) -> Result<Vec<CollectionId>> {
        let ids = raws
            .iter()
            .map(|raw| parse_ref(raw, Input::Collections, CollectionId::parse))
            .collect::<Result<Vec<_>>>()?;
        let ids = dedup(ids);
        if ids.is_empty() {
            return Ok(ids);
        }
        let found: HashSet<CollectionId> = self
            .store
            .get_collections(&ids)
            .await?
            .into_iter()
            .map(|c| c.id)
            .collect();
        if let Some(missing) = ids.iter().find(|id| !found.contains(id)) {
            return Err(Error::reference(
                Input::Collections,
                missing.as_str(),
                Problem::Missing,
            ));
        }
        Ok(ids)
    }
}

/// Every field limit of a product.
fn validate_product(product: &Product) -> Result<()> {
    validate::sku(&product.sku)?;
    validate::name("title", &product.title)?;
    validate::body(product.body.as_deref())?;
    validate::price(product.price)?;
    validate::currency(&product.currency)?;
    validate::quantity(product.inventory_quantity)?;
    validate::images(&product.images)?;
    validate::metadata(product.metadata.as_ref())
}
