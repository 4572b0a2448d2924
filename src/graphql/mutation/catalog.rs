//! `publishCatalog`: record an immutable catalogue version.

use async_graphql::{Context, InputObject, Object, Result, SimpleObject};

use crate::graphql::catalog;
use crate::graphql::error::ResultExt;
use crate::graphql::types::CatalogVersion;

/// Input of `publishCatalog`.
#[derive(InputObject)]
pub struct PublishCatalogInput {
    /// Echoed in the payload.
    pub client_mutation_id: Option<String>,
    /// Unique tag, e.g. `v1.2.0`.
    pub version: String,
    /// What changed.
    pub message: String,
}

/// Result of `publishCatalog`.
#[derive(SimpleObject)]
pub struct PublishCatalogPayload {
    /// Echo of the input's id.
    pub client_mutation_id: Option<String>,
    /// The recorded version.
    pub catalog_version: Option<CatalogVersion>,
}

/// Catalogue versions.
#[derive(Default)]
pub struct CatalogMutation;

#[Object]
impl CatalogMutation {
    /// Records an immutable catalogue version with a content hash and stats.
    async fn publish_catalog(
        &self,
        ctx: &Context<'_>,
        input: PublishCatalogInput,
    ) -> Result<PublishCatalogPayload> {
        let version = catalog(ctx)
            .publish(&input.version, &input.message)
            .await
            .gql()?;
        Ok(PublishCatalogPayload {
            client_mutation_id: input.client_mutation_id,
            catalog_version: Some(CatalogVersion(version)),
        })
    }
}
