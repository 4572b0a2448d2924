//! The bodies of collection writes, each run inside one write transaction
//! ([`super::SqliteStore::write`]). Member products are checked inside it
//! ([`set_collection_members`]); memberships of a deleted collection go with it. Each
//! write appends its change records last, after every check passed, in the same
//! savepoint; updates and deletes read the stored collection and its members in that
//! transaction for them.

use sqlx::SqliteConnection;

use super::change_log;
use super::errors::{unavailable, write_error};
use super::membership::set_collection_members;
use super::query::COLLECTION_COLUMNS;
use super::rows::CollectionRow;
use crate::datastore::changes;
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
    set_collection_members(conn, &collection.id, members, false).await?;
    let records = changes::collection_created(collection, members);
    change_log::append(conn, &records, what).await
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
    // Read inside the transaction: the row cannot change between this read, the
    // version check and the write, and the change records diff against it.
    let old: Collection =
        match sqlx::query_as::<_, CollectionRow>(&format!("{COLLECTION_COLUMNS} WHERE id = ?"))
            .bind(collection.id.as_str())
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| unavailable(what, e))?
        {
            Some(row) => row.into(),
            None => return Err(Error::not_found("collection", collection.id.as_str())),
        };
    if old.updated_at != expected {
        return Err(Error::Conflict(Current::Collection(Box::new(old))));
    }
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
        // Not reached: the row was read in this transaction with this version.
        return Err(Error::Conflict(Current::Collection(Box::new(old))));
    }
    let records = match members {
        Some(ids) => {
            let before = set_collection_members(conn, &collection.id, ids, true).await?;
            changes::collection_updated(&old, collection, Some((&before, ids)))
        }
        None => changes::collection_updated(&old, collection, None),
    };
    change_log::append(conn, &records, what).await
}

/// Deletes a collection; its memberships go with it (`ON DELETE CASCADE`). Its members
/// are read first, in the transaction, for its change records.
pub(super) async fn delete(conn: &mut SqliteConnection, id: &str, what: &str) -> Result<()> {
    let members: Vec<String> =
        sqlx::query_scalar("SELECT product_id FROM memberships WHERE collection_id = ?")
            .bind(id)
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| unavailable(what, e))?;
    let deleted = sqlx::query("DELETE FROM collections WHERE id = ?")
        .bind(id)
        .execute(&mut *conn)
        .await
        .map_err(|e| unavailable(what, e))?
        .rows_affected();
    if deleted == 0 {
        return Err(Error::not_found("collection", id));
    }
    let members: Vec<ProductId> = members.into_iter().map(ProductId::from_stored).collect();
    let records = changes::collection_deleted(id, &members, Timestamp::now());
    change_log::append(conn, &records, what).await
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
