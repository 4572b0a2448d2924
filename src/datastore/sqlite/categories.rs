//! The bodies of category writes, each run inside one write transaction
//! ([`super::SqliteStore::write`]).
//!
//! The tree rules are checked on the write connection inside the same `BEGIN IMMEDIATE`
//! transaction as the write, after it: no other writer runs in between, so two crossed
//! moves (A under B, B under A) are serialized and the second one sees the first and
//! fails with [`Error::Cycle`]; a product created in a category and the category's
//! delete likewise see each other. Each write appends its change records last, after
//! every check passed, in the same savepoint.

use sqlx::SqliteConnection;

use super::change_log;
use super::errors::{unavailable, write_error};
use super::query::CATEGORY_COLUMNS;
use super::rows::CategoryRow;
use crate::datastore::changes;
use crate::datastore::{Category, CategoryId, Current, Error, Result, Timestamp};

/// Stores a new category; its parent must exist.
pub(super) async fn create(
    conn: &mut SqliteConnection,
    category: &Category,
    what: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO categories (id, name, slug, parent_id, display_order, body, \
         created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(category.id.as_str())
    .bind(&category.name)
    .bind(&category.slug)
    .bind(category.parent_id.as_ref().map(CategoryId::as_str))
    .bind(category.display_order)
    .bind(&category.body)
    .bind(category.created_at.millis())
    .bind(category.updated_at.millis())
    .execute(&mut *conn)
    .await
    .map_err(|e| slug_error(e, category, what))?;
    if let Some(parent) = &category.parent_id {
        // The row just written is not its own parent: it did not exist before.
        if parent == &category.id || !exists(conn, parent).await? {
            return Err(Error::not_found("category", parent.as_str()));
        }
    }
    change_log::append(conn, &changes::category_created(category), what).await
}

/// Replaces a category whose stored version is `expected`; its parent must exist and
/// must be neither the category nor one of its descendants.
pub(super) async fn update(
    conn: &mut SqliteConnection,
    category: &Category,
    expected: Timestamp,
    what: &str,
) -> Result<()> {
    // Read inside the transaction: the row cannot change between this read, the
    // version check and the write, and the change record diffs against it.
    let old: Category =
        match sqlx::query_as::<_, CategoryRow>(&format!("{CATEGORY_COLUMNS} WHERE id = ?"))
            .bind(category.id.as_str())
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| unavailable(what, e))?
        {
            Some(row) => row.into(),
            None => return Err(Error::not_found("category", category.id.as_str())),
        };
    if old.updated_at != expected {
        return Err(Error::Conflict(Current::Category(Box::new(old))));
    }
    let written = sqlx::query(
        "UPDATE categories SET name = ?, slug = ?, parent_id = ?, display_order = ?, \
         body = ?, created_at = ?, updated_at = ? WHERE id = ? AND updated_at = ?",
    )
    .bind(&category.name)
    .bind(&category.slug)
    .bind(category.parent_id.as_ref().map(CategoryId::as_str))
    .bind(category.display_order)
    .bind(&category.body)
    .bind(category.created_at.millis())
    .bind(category.updated_at.millis())
    .bind(category.id.as_str())
    .bind(expected.millis())
    .execute(&mut *conn)
    .await
    .map_err(|e| slug_error(e, category, what))?
    .rows_affected();
    if written == 0 {
        // Not reached: the row was read in this transaction with this version.
        return Err(Error::Conflict(Current::Category(Box::new(old))));
    }
    if let Some(parent) = &category.parent_id {
        if !exists(conn, parent).await? {
            return Err(Error::not_found("category", parent.as_str()));
        }
        if is_at_or_above(conn, &category.id, parent).await? {
            return Err(Error::Cycle {
                category: category.id.as_str().to_owned(),
                parent: parent.as_str().to_owned(),
            });
        }
    }
    change_log::append(conn, &changes::category_updated(&old, category), what).await
}

/// Deletes a category that has no child categories and no products.
pub(super) async fn delete(conn: &mut SqliteConnection, id: &str, what: &str) -> Result<()> {
    let deleted = sqlx::query("DELETE FROM categories WHERE id = ?")
        .bind(id)
        .execute(&mut *conn)
        .await
        .map_err(|e| unavailable(what, e))?
        .rows_affected();
    if deleted == 0 {
        return Err(Error::not_found("category", id));
    }
    let in_use: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM categories WHERE parent_id = ?1) \
         OR EXISTS (SELECT 1 FROM products WHERE category_id = ?1)",
    )
    .bind(id)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| unavailable(what, e))?;
    if in_use {
        return Err(Error::InUse {
            entity: "category",
            key: id.to_owned(),
        });
    }
    let records = changes::category_deleted(id, Timestamp::now());
    change_log::append(conn, &records, what).await
}

async fn exists(conn: &mut SqliteConnection, id: &CategoryId) -> Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM categories WHERE id = ?)")
        .bind(id.as_str())
        .fetch_one(conn)
        .await
        .map_err(|e| unavailable("checking the parent category", e))
}

/// Whether `category` is `parent` or one of its ancestors, i.e. whether placing
/// `category` under `parent` closes a loop. Reads the tree as this transaction sees it;
/// `UNION` (not `UNION ALL`) ends the walk even on a tree that already has a loop.
async fn is_at_or_above(
    conn: &mut SqliteConnection,
    category: &CategoryId,
    parent: &CategoryId,
) -> Result<bool> {
    sqlx::query_scalar(
        "WITH RECURSIVE up(id) AS ( \
           SELECT ?1 \
           UNION SELECT c.parent_id FROM categories c JOIN up ON c.id = up.id \
           WHERE c.parent_id IS NOT NULL) \
         SELECT EXISTS (SELECT 1 FROM up WHERE id = ?2)",
    )
    .bind(parent.as_str())
    .bind(category.as_str())
    .fetch_one(conn)
    .await
    .map_err(|e| unavailable("checking the category tree for a cycle", e))
}

fn slug_error(err: sqlx::Error, category: &Category, what: &str) -> Error {
    write_error(
        err,
        "categories",
        "category",
        category.id.as_str(),
        "slug",
        &category.slug,
        what,
    )
}
