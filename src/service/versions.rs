//! Catalogue versions: the content hash, `publishCatalog`, and the draft version.
//!
//! The hash covers every entity in a canonical order (by id, every field, serialised by
//! serde in declaration order), so two backends holding the same catalogue publish the
//! same `commit`.

use std::collections::{BTreeMap, HashSet};

use sha2::{Digest, Sha256};

use super::{Catalog, validate};
use crate::datastore::{
    CatalogStats, CatalogVersion, Category, CategoryId, Collection, CollectionId, Datastore, Key,
    Page, Product, ProductFilter, ProductId, Timestamp,
};

/// How long a draft snapshot may be reused when this process saw no write.
pub const DRAFT_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(2);
use crate::error::{Error, Result};

/// The catalogue as a whole, for `catalogVersion` before anything is published.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// SHA-256 content hash.
    pub commit: String,
    /// Counts.
    pub stats: CatalogStats,
}

impl<D: Datastore> Catalog<D> {
    /// Hashes the whole catalogue in canonical order (entities by id, every field) and
    /// counts it, including references that point at nothing.
    ///
    /// # Errors
    /// Backend failures.
    pub async fn snapshot(&self) -> Result<Snapshot> {
        const BATCH: usize = 500;
        let mut categories = self.store.list_categories().await?;
        categories.sort_by(|a, b| a.id.cmp(&b.id));
        let mut collections = self.store.list_collections().await?;
        collections.sort_by(|a, b| a.id.cmp(&b.id));
        let mut products: BTreeMap<ProductId, Product> = BTreeMap::new();
        let mut page = Page {
            limit: BATCH,
            ..Page::default()
        };
        loop {
            let batch = self
                .store
                .list_products(&ProductFilter::default(), &page)
                .await?;
            let done = batch.len() < BATCH;
            page.after = batch.last().map(Key::of);
            products.extend(batch.into_iter().map(|p| (p.id.clone(), p)));
            if done {
                break;
            }
        }

        // Hashing tens of thousands of rows is CPU work: keep it off the async workers.
        tokio::task::spawn_blocking(move || digest(&categories, &collections, &products))
            .await
            .map_err(|e| Error::Internal {
                message: format!("hashing the catalogue failed: {e}"),
            })
    }

    /// The draft version's snapshot, computed at most once per catalogue change.
    ///
    /// Every write through this service bumps a generation counter after it lands; a
    /// snapshot is reused while the generation it was computed at is still current and it
    /// is younger than [`DRAFT_MAX_AGE`] (writes made by *other* instances sharing the
    /// database are not counted here, so they show within that age). Concurrent requests
    /// wait for one computation instead of each hashing the catalogue.
    async fn draft_snapshot(&self) -> Result<Snapshot> {
        let mut cached = self.draft.lock().await;
        let generation = self.generation();
        if let Some((at, when, snapshot)) = cached.as_ref()
            && *at == generation
            && when.elapsed() < DRAFT_MAX_AGE
        {
            return Ok(snapshot.clone());
        }
        let snapshot = self.snapshot().await?;
        *cached = Some((generation, std::time::Instant::now(), snapshot.clone()));
        Ok(snapshot)
    }

    /// Records an immutable catalogue version tagged `tag`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad tag or message, [`Error::AlreadyExists`] for a
    /// reused tag; backend failures.
    pub async fn publish(&self, tag: &str, message: &str) -> Result<CatalogVersion> {
        validate::tag(tag)?;
        if message.trim().is_empty() || message.len() > validate::BLOB_MAX {
            return Err(Error::InvalidArgument(format!(
                "message must be 1-{} bytes and not blank",
                validate::BLOB_MAX
            )));
        }
        let snapshot = self.snapshot().await?;
        let version = CatalogVersion {
            tag: tag.to_owned(),
            commit: snapshot.commit,
            published_at: self.clock.next(None),
            message: Some(message.to_owned()),
            stats: snapshot.stats,
        };
        self.write(self.store.create_catalog_version(&version))
            .await?;
        Ok(version)
    }

    /// The latest published version, or a `draft` describing the live catalogue.
    ///
    /// # Errors
    /// Backend failures.
    pub async fn current_version(&self) -> Result<CatalogVersion> {
        if let Some(v) = self.store.latest_catalog_version().await? {
            return Ok(v);
        }
        let snapshot = self.draft_snapshot().await?;
        Ok(CatalogVersion {
            tag: "draft".to_owned(),
            commit: snapshot.commit,
            published_at: Timestamp::now(),
            message: None,
            stats: snapshot.stats,
        })
    }
}

/// The content hash and counts of a catalogue read in canonical order.
fn digest(
    categories: &[Category],
    collections: &[Collection],
    products: &BTreeMap<ProductId, Product>,
) -> Snapshot {
    let category_ids: HashSet<&CategoryId> = categories.iter().map(|c| &c.id).collect();
    let collection_ids: HashSet<&CollectionId> = collections.iter().map(|c| &c.id).collect();
    let mut orphaned = 0_i64;
    let mut hasher = Sha256::new();
    for c in categories {
        if c.parent_id
            .as_ref()
            .is_some_and(|p| !category_ids.contains(p))
        {
            orphaned += 1;
        }
        hash_line(&mut hasher, "category", c);
    }
    for c in collections {
        hash_line(&mut hasher, "collection", c);
    }
    for p in products.values() {
        if !category_ids.contains(&p.category_id) {
            orphaned += 1;
        }
        orphaned += p
            .collection_ids
            .iter()
            .filter(|c| !collection_ids.contains(c))
            .count() as i64;
        hash_line(&mut hasher, "product", p);
    }
    Snapshot {
        commit: hex::encode(hasher.finalize()),
        stats: CatalogStats {
            product_count: products.len() as i64,
            category_count: categories.len() as i64,
            collection_count: collections.len() as i64,
            orphaned_references: orphaned,
        },
    }
}

/// Adds one entity to the hash as `kind<TAB>json<LF>`.
fn hash_line<T: serde::Serialize>(hasher: &mut Sha256, kind: &str, value: &T) {
    // serde_json writes struct fields in declaration order, which makes this canonical.
    let json = serde_json::to_string(value).unwrap_or_default();
    hasher.update(kind.as_bytes());
    hasher.update(b"\t");
    hasher.update(json.as_bytes());
    hasher.update(b"\n");
}
