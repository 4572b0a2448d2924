//! The bodies of collection writes, each run inside one write transaction
//! ([`super::SqliteStore::write`]). Member products are checked inside it
//! ([`set_collection_members`]); memberships of a deleted collection go with it.

use sqlx::SqliteConnection;

use super::errors::{unavailable, write_error};
use super::membership::set_collection_members;
use super::query::COLLECTION_COLUMNS;
use super::rows::CollectionRow;
use crate::datastore::{Collection, Current, Error, ProductId, Result, Timestamp};

/// Stores a new collection with exactly `members`, which must exist.
pub(super) async fn create(
    conn: &mut SqliteConnection,
    collection: &Collection,
    members: &[ProductId],
    what: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO collections (id, name, slug, display_order, body, created_at, \
         updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(collection.id.as_str())
    .bind(&collection.name)
    .bind(&collection.slug)
    .bind(collection.display_order)
    .bind(&collection.body)
    .bind(collection.created_at.millis())
    .bind(collection.updated_at.millis())
    .execute(&mut *conn)
    .await
    .map_err(|e| slug_error(e, collection, what))?;
    set_collection_members(conn, &collection.id, members, false).await
}

/// Replaces a collection whose stored version is `expected`; with `members`, also its
/// members, which must exist.
pub(super) async fn update(
    conn: &mut SqliteConnection,
    collection: &Collection,
    expected: Timestamp,
    members: Option<&[ProductId]>,
    what: &str,
) -> Result<()> {
    let written = sqlx::query(
        "UPDATE collections SET name = ?, slug = ?, display_order = ?, body = ?, \
         created_at = ?, updated_at = ? WHERE id = ? AND updated_at = ?",
    )
    .bind(&collection.name)
    .bind(&collection.slug)
    .bind(collection.display_order)
    .bind(&collection.body)
    .bind(collection.created_at.millis())
    .bind(collection.updated_at.millis())
    .bind(collection.id.as_str())
    .bind(expected.millis())
    .execute(&mut *conn)
    .await
    .map_err(|e| slug_error(e, collection, what))?
    .rows_affected();
    if written == 0 {
        let stored =
            sqlx::query_as::<_, CollectionRow>(&format!("{COLLECTION_COLUMNS} WHERE id = ?"))
                .bind(collection.id.as_str())
                .fetch_optional(&mut *conn)
                .await
                .map_err(|e| unavailable(what, e))?;
        return Err(match stored {
            Some(row) => Error::Conflict(Current::Collection(Box::new(row.into()))),
            None => Error::not_found("collection", collection.id.as_str()),
        });
    }
    if let Some(ids) = members {
        set_collection_members(conn, &collection.id, ids, true).await?;
    }
    Ok(())
}

/// Deletes a collection; its memberships go with it (`ON DELETE CASCADE`).
pub(super) async fn delete(conn: &mut SqliteConnection, id: &str, what: &str) -> Result<()> {
    let deleted = sqlx::query("DELETE FROM collections WHERE id = ?")
        .bind(id)
        .execute(conn)
        .await
        .map_err(|e| unavailable(what, e))?
        .rows_affected();
    if deleted == 0 {
        return Err(Error::not_found("collection", id));
    }
    Ok(())
}

fn slug_error(err: sqlx::Error, collection: &Collection, what: &str) -> Error {
    write_error(
        err,
        "collections",
        "collection",
        collection.id.as_str(),
        "slug",
        &collection.slug,
        what,
    )
}
