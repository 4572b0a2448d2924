//! The CQL text of the statements the backend runs, other than those of the entity tables
//! themselves (`SELECT`/`INSERT`/`UPDATE`/`DELETE` by id), which live next to their
//! row mapping in `rows.rs`.
//!
//! Each statement is prepared once by the caching session and reused; values are bound
//! positionally, in the order of the `?` placeholders here.

// Connection checks.
pub(super) const CHECK_KEYSPACE: &str =
    "SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = ?";
pub(super) const PING: &str = "SELECT release_version FROM system.local";

// Unique keys (`unique_keys.rs`).
pub(super) const RESERVE: &str = "INSERT INTO unique_keys \
     (scope, value, owner, claim, reserved_at) VALUES (?, ?, ?, ?, ?) IF NOT EXISTS USING TTL ?";
pub(super) const RESERVE_CONFIRMED: &str = "INSERT INTO unique_keys \
     (scope, value, owner, claim, reserved_at) VALUES (?, ?, ?, ?, ?) IF NOT EXISTS";
pub(super) const TAKE_OVER: &str = "UPDATE unique_keys USING TTL ? SET claim = ?, \
     reserved_at = ? WHERE scope = ? AND value = ? IF owner = ? AND claim = ?";
pub(super) const CONFIRM: &str = "UPDATE unique_keys SET owner = ?, claim = ?, reserved_at = ? \
     WHERE scope = ? AND value = ? IF claim = ?";
pub(super) const RELEASE: &str = "DELETE FROM unique_keys WHERE scope = ? AND value = ? \
     IF owner = ? AND claim = ?";
pub(super) const SELECT_OWNER: &str = "SELECT owner FROM unique_keys WHERE scope = ? AND value = ?";
pub(super) const SELECT_RESERVATION: &str = "SELECT owner, claim FROM unique_keys \
     WHERE scope = ? AND value = ?";

// Listing and category index rows (`index.rs`, `scan.rs`).
pub(super) const INSERT_MONTH_ROW: &str =
    "INSERT INTO products_by_month (month, created_at, id) VALUES (?, ?, ?)";
pub(super) const DELETE_MONTH_ROW: &str =
    "DELETE FROM products_by_month WHERE month = ? AND created_at = ? AND id = ?";
pub(super) const INSERT_MONTH: &str = "INSERT INTO product_months (shard, month) VALUES (0, ?)";
pub(super) const SELECT_MONTHS: &str = "SELECT month FROM product_months WHERE shard = 0";
pub(super) const INSERT_CATEGORY_ROW: &str =
    "INSERT INTO products_by_category (category_id, created_at, id) VALUES (?, ?, ?)";
pub(super) const DELETE_CATEGORY_ROW: &str =
    "DELETE FROM products_by_category WHERE category_id = ? AND created_at = ? AND id = ?";

// Membership, both directions (`index.rs`).
pub(super) const INSERT_PRODUCT_SIDE: &str =
    "INSERT INTO product_collections (product_id, collection_id) VALUES (?, ?)";
pub(super) const DELETE_PRODUCT_SIDE: &str =
    "DELETE FROM product_collections WHERE product_id = ? AND collection_id = ?";
pub(super) const INSERT_COLLECTION_SIDE: &str =
    "INSERT INTO collection_products (collection_id, created_at, product_id) VALUES (?, ?, ?)";
pub(super) const DELETE_COLLECTION_SIDE: &str = "DELETE FROM collection_products \
     WHERE collection_id = ? AND created_at = ? AND product_id = ?";
pub(super) const SELECT_COLLECTIONS_OF: &str =
    "SELECT collection_id FROM product_collections WHERE product_id = ?";
pub(super) const SELECT_COLLECTIONS_OF_MANY: &str =
    "SELECT product_id, collection_id FROM product_collections WHERE product_id IN ?";
pub(super) const SELECT_MEMBERS: &str =
    "SELECT created_at, product_id FROM collection_products WHERE collection_id = ?";
pub(super) const DELETE_ALL_PRODUCT_SIDE: &str =
    "DELETE FROM product_collections WHERE product_id = ?";
pub(super) const DELETE_ALL_COLLECTION_SIDE: &str =
    "DELETE FROM collection_products WHERE collection_id = ?";

// Whole-table listings.
pub(super) const SELECT_ALL_CATEGORIES: &str = "SELECT id, name, slug, parent_id, \
     display_order, body, created_at, updated_at FROM categories";
pub(super) const SELECT_ALL_COLLECTIONS: &str =
    "SELECT id, name, slug, display_order, body, created_at, updated_at FROM collections";

// Catalogue versions (`versions.rs`).
pub(super) const INSERT_VERSION: &str = "INSERT INTO catalog_versions (tag, commit, published_at, \
     message, product_count, category_count, collection_count, orphaned_references, \
     change_claim, change_seq, change_records) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS";
pub(super) const SELECT_VERSION_CLAIM: &str =
    "SELECT change_claim FROM catalog_versions WHERE tag = ?";
pub(super) const DELETE_VERSION: &str =
    "DELETE FROM catalog_versions WHERE tag = ? IF published_at = ?";
pub(super) const INSERT_VERSION_BY_TIME: &str = "INSERT INTO catalog_versions_by_time (shard, tag, \
     commit, published_at, message, product_count, category_count, collection_count, \
     orphaned_references) VALUES (0, ?, ?, ?, ?, ?, ?, ?, ?)";
pub(super) const LATEST_VERSION: &str = "SELECT tag, commit, published_at, message, product_count, \
     category_count, collection_count, orphaned_references FROM catalog_versions_by_time \
     WHERE shard = 0 LIMIT 1";

// Token revocations (`ScyllaStore::revoke_token`): each row lives until the token's expiry.
pub(super) const INSERT_REVOKED_TOKEN: &str =
    "INSERT INTO revoked_tokens (jti, expires_at) VALUES (?, ?) USING TTL ?";
pub(super) const SELECT_REVOKED_TOKEN: &str = "SELECT expires_at FROM revoked_tokens WHERE jti = ?";
