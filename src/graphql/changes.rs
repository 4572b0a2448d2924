//! The change feed in the schema: the `Change` type and its enums, the `changes` pull
//! connection and the `catalogChanged` subscription ([`Subscription`]).
//!
//! A position is the log's `u64` written as a decimal string; a change's cursor is its
//! position, and `after` takes either. Filtering happens here, above the datastore
//! ([`crate::feed`] reads pages and skips what does not match); a page's `endCursor` is
//! the last position *scanned*, so paging on with it never scans the same records twice.

use std::sync::Arc;

use async_graphql::{Context, Enum, ErrorExtensions as _, ID, InputObject, Object, Result};
use futures_util::Stream;

use super::catalog;
use super::error::{ResultExt as _, coded};
use super::loaders::Loaders;
use super::scalars::DateTime;
use super::types::{Category, Collection, Node, PageInfo, Product};
use crate::datastore::{self, CategoryId, ChangeRecord, CollectionId, ProductId};
use crate::feed::{ChangeFilter, Connection, Feed, FeedError};

/// What happened to an entity.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "crate::datastore::ChangeKind")]
pub enum ChangeKind {
    /// It was created.
    Created,
    /// Its fields or memberships changed.
    Updated,
    /// It was deleted.
    Deleted,
    /// A catalogue version was published.
    Published,
}

/// Which kind of entity changed.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "crate::datastore::ChangeEntity")]
pub enum ChangeEntity {
    /// A product.
    Product,
    /// A category.
    Category,
    /// A collection.
    Collection,
    /// The catalogue as a whole (published versions; `id` is the tag).
    Catalog,
}

/// Which changes to return; all given conditions must hold.
#[derive(InputObject, Default)]
#[graphql(name = "ChangeFilter")]
pub struct ChangeFilterInput {
    /// Only changes of these entities.
    pub entities: Option<Vec<ChangeEntity>>,
    /// Only changes of these kinds.
    pub kinds: Option<Vec<ChangeKind>>,
}

impl From<ChangeFilterInput> for ChangeFilter {
    fn from(input: ChangeFilterInput) -> Self {
        Self {
            entities: input
                .entities
                .map(|e| e.into_iter().map(Into::into).collect()),
            kinds: input.kinds.map(|k| k.into_iter().map(Into::into).collect()),
        }
    }
}

/// One change of the catalogue, as recorded in the change log.
pub struct Change {
    record: Arc<ChangeRecord>,
    /// Delivered by a subscription: `node` is read afresh for each event.
    live: bool,
}

#[Object]
impl Change {
    /// Where the change sits in the log (a decimal number, increasing); also its cursor.
    async fn position(&self) -> String {
        self.record.position.to_string()
    }
    /// What happened.
    async fn kind(&self) -> ChangeKind {
        self.record.change.kind.into()
    }
    /// Which kind of entity changed.
    async fn entity(&self) -> ChangeEntity {
        self.record.change.entity.into()
    }
    /// The entity's id (the version tag for `CATALOG`).
    async fn id(&self) -> ID {
        ID(self.record.change.id.clone())
    }
    /// The entity's `updatedAt` after the change, when the change moved it (null for
    /// deletes and for the other side of a membership change).
    async fn version(&self) -> Option<DateTime> {
        self.record.change.version.map(DateTime)
    }
    /// When the write happened.
    async fn at(&self) -> DateTime {
        DateTime(self.record.change.at)
    }
    /// GraphQL names of the fields that changed (empty for creates and deletes).
    async fn changed_fields(&self) -> &[String] {
        &self.record.change.changed_fields
    }
    /// The entity as it is now (not as it was at the change); null once deleted, and
    /// for `CATALOG` changes.
    async fn node(&self, ctx: &Context<'_>) -> Result<Option<Node>> {
        let id = self.record.change.id.as_str();
        if self.live {
            // One event at a time: read it directly (a loader would wait for its batch
            // window on every event), and forget what earlier events cached so its
            // relations are read as they are now too.
            ctx.data_unchecked::<Loaders>().forget();
            let catalog = catalog(ctx);
            return Ok(match self.record.change.entity {
                datastore::ChangeEntity::Product => catalog
                    .product(id)
                    .await
                    .gql()?
                    .map(|p| Node::Product(Product::from(p))),
                datastore::ChangeEntity::Category => catalog
                    .category(id)
                    .await
                    .gql()?
                    .map(|c| Node::Category(Category::from(c))),
                datastore::ChangeEntity::Collection => catalog
                    .collection(id)
                    .await
                    .gql()?
                    .map(|c| Node::Collection(Collection::from(c))),
                datastore::ChangeEntity::Catalog => None,
            });
        }
        // A page of changes: one batch per entity type through the loaders.
        let loaders = ctx.data_unchecked::<Loaders>();
        Ok(match self.record.change.entity {
            datastore::ChangeEntity::Product => match ProductId::parse(id) {
                Some(key) => loaders
                    .products
                    .load_one(key)
                    .await?
                    .map(|p| Node::Product(Product::from(p))),
                None => None,
            },
            datastore::ChangeEntity::Category => match CategoryId::parse(id) {
                Some(key) => loaders
                    .categories
                    .load_one(key)
                    .await?
                    .map(|c| Node::Category(Category(c))),
                None => None,
            },
            datastore::ChangeEntity::Collection => match CollectionId::parse(id) {
                Some(key) => loaders
                    .collections
                    .load_one(key)
                    .await?
                    .map(|c| Node::Collection(Collection(c))),
                None => None,
            },
            datastore::ChangeEntity::Catalog => None,
        })
    }
}

/// A change with its cursor.
pub struct ChangeEdge(Arc<ChangeRecord>);

#[Object]
impl ChangeEdge {
    /// The change's position.
    async fn cursor(&self) -> String {
        self.0.position.to_string()
    }
    /// The change.
    async fn node(&self) -> Change {
        Change {
            record: self.0.clone(),
            live: false,
        }
    }
}

/// A page of the change log, oldest first.
pub struct ChangeConnection {
    edges: Vec<Arc<ChangeRecord>>,
    end: Option<u64>,
    has_next: bool,
    has_previous: bool,
}

#[Object]
impl ChangeConnection {
    /// The changes of this page.
    async fn edges(&self) -> Vec<ChangeEdge> {
        self.edges.iter().cloned().map(ChangeEdge).collect()
    }
    /// `endCursor` is the last position this page scanned (past changes the filter
    /// skipped), so `after: endCursor` continues where it stopped; `hasNextPage` says
    /// whether later changes exist now.
    async fn page_info(&self) -> PageInfo {
        PageInfo {
            has_next_page: self.has_next,
            has_previous_page: self.has_previous,
            start_cursor: self.edges.first().map(|r| r.position.to_string()),
            end_cursor: self.end.map(|p| p.to_string()),
        }
    }
}

/// `after` as a position.
fn position(after: Option<&str>) -> Result<Option<u64>> {
    after
        .map(|raw| {
            raw.trim().parse::<u64>().map_err(|_| {
                coded(
                    "INVALID_ARGUMENT",
                    format!(
                        "change cursor {} is not valid; use a change's position or cursor \
                         (a decimal number such as \"42\")",
                        crate::service::validate::shown(raw)
                    ),
                )
            })
        })
        .transpose()
}

/// The GraphQL error for a feed error.
fn feed_error(err: FeedError) -> async_graphql::Error {
    match err {
        FeedError::Store(inner) => crate::error::Error::from(inner).extend(),
        FeedError::Expired { .. } => coded("INVALID_ARGUMENT", err.to_string()),
        FeedError::Lagged { .. } | FeedError::PrunedBehind { .. } => {
            coded("UNAVAILABLE", err.to_string())
        }
    }
}

/// The process's feed.
fn feed<'a>(ctx: &Context<'a>) -> &'a Feed {
    ctx.data_unchecked::<Feed>()
}

/// `Query.changes`.
pub(super) async fn changes(
    ctx: &Context<'_>,
    after: Option<String>,
    first: Option<i32>,
    filter: Option<ChangeFilterInput>,
) -> Result<ChangeConnection> {
    let after = position(after.as_deref())?;
    let (first, _) =
        crate::service::validate::page_size(first, None, catalog(ctx).page_sizes()).gql()?;
    let filter = ChangeFilter::from(filter.unwrap_or_default());
    let page = feed(ctx)
        .page(after, first, &filter)
        .await
        .map_err(feed_error)?;
    Ok(ChangeConnection {
        edges: page.records.into_iter().map(Arc::new).collect(),
        end: page.end,
        has_next: page.has_next,
        has_previous: after.is_some_and(|a| a > 0),
    })
}

/// The subscription root.
#[derive(Default)]
pub struct Subscription;

#[async_graphql::Subscription]
impl Subscription {
    /// Every change of the catalogue as it happens, in position order. With `after` (a
    /// position or cursor), first every change since then, then live, with no gap and
    /// no duplicate in between. A subscriber that falls more than the server's buffer
    /// behind gets an error naming the position to resume after, and its connection is
    /// closed.
    async fn catalog_changed(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        filter: Option<ChangeFilterInput>,
    ) -> Result<impl Stream<Item = Result<Change>> + use<>> {
        let after = position(after.as_deref())?;
        let filter = ChangeFilter::from(filter.unwrap_or_default());
        let connection = ctx.data_opt::<Arc<Connection>>().cloned();
        let stream = feed(ctx)
            .subscribe(filter, after, connection.clone())
            .await
            .map_err(feed_error)?;
        Ok(futures_util::stream::unfold(Some(stream), move |state| {
            let connection = connection.clone();
            async move {
                let mut stream = state?;
                match stream.next().await? {
                    Ok(record) => Some((Ok(Change { record, live: true }), Some(stream))),
                    Err(err) => {
                        if let Some(connection) = &connection
                            && matches!(
                                err,
                                FeedError::Lagged { .. } | FeedError::PrunedBehind { .. }
                            )
                        {
                            connection.request_close(err.to_string());
                        }
                        Some((Err(feed_error(err)), None))
                    }
                }
            }
        }))
    }
}
