-- The catalogue schema for the `sqlite` backend.
--
-- Conventions:
-- * ids are the typed strings the service generates (`prod_…`, `cat_…`, `coll_…`);
-- * times are INTEGER milliseconds since the Unix epoch (`Timestamp`);
-- * every listing pages by the keyset `(created_at, id)`, so each access path has an
--   index that ends in those two columns and the page is read in index order;
-- * STRICT tables, so a wrong type is an error instead of a silent conversion.
--
-- Referential rules (a product's category exists, a parent exists and makes no cycle)
-- are checked by the service; the schema enforces what must hold atomically: unique
-- sku and slugs, and memberships that never point at a deleted product or collection.

CREATE TABLE categories (
    id            TEXT    NOT NULL PRIMARY KEY,
    name          TEXT    NOT NULL,
    slug          TEXT    NOT NULL UNIQUE,
    parent_id     TEXT,
    display_order INTEGER NOT NULL,
    body          TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) STRICT;

CREATE TABLE collections (
    id            TEXT    NOT NULL PRIMARY KEY,
    name          TEXT    NOT NULL,
    slug          TEXT    NOT NULL UNIQUE,
    display_order INTEGER NOT NULL,
    body          TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) STRICT;

CREATE TABLE products (
    id                 TEXT    NOT NULL PRIMARY KEY,
    sku                TEXT    NOT NULL UNIQUE,
    title              TEXT    NOT NULL,
    body               TEXT,
    -- The exact decimal as written (scale kept: "9.90" stays "9.90"); never REAL.
    price              TEXT    NOT NULL,
    -- A fixed-width sortable form of the price (see `price_key` in sqlite.rs), so text order is
    -- numeric order: range filters compare it and use its index, exactly for any bound.
    price_key          TEXT    NOT NULL CHECK (length(price_key) = 58),
    currency           TEXT    NOT NULL,
    inventory_status   TEXT    NOT NULL
        CHECK (inventory_status IN ('IN_STOCK', 'OUT_OF_STOCK', 'PREORDER', 'DISCONTINUED')),
    inventory_quantity INTEGER,
    category_id        TEXT    NOT NULL,
    -- JSON array of image URLs, in display order.
    images             TEXT    NOT NULL,
    -- JSON object as text, or NULL.
    metadata           TEXT,
    -- Title, sku and body lower-cased with Rust's Unicode `to_lowercase` (SQLite's own
    -- lower() folds ASCII only), so search matches exactly what the memory backend does.
    search_title       TEXT    NOT NULL,
    search_sku         TEXT    NOT NULL,
    search_body        TEXT,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
) STRICT;

CREATE INDEX products_by_key ON products (created_at, id);
CREATE INDEX products_by_category ON products (category_id, created_at, id);
CREATE INDEX products_by_status ON products (inventory_status, created_at, id);
CREATE INDEX products_by_price ON products (price_key, created_at, id);

-- Product–collection membership: the one source of truth for both directions.
-- `product_created_at` copies the product's creation time so a collection's products
-- page in keyset order straight from `memberships_by_collection`.
CREATE TABLE memberships (
    collection_id      TEXT    NOT NULL REFERENCES collections (id) ON DELETE CASCADE,
    product_id         TEXT    NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    product_created_at INTEGER NOT NULL,
    PRIMARY KEY (product_id, collection_id)
) STRICT, WITHOUT ROWID;

CREATE UNIQUE INDEX memberships_by_collection
    ON memberships (collection_id, product_created_at, product_id);

CREATE TABLE catalog_versions (
    -- Insertion order, the tie breaker when two versions share `published_at`.
    seq                 INTEGER PRIMARY KEY,
    tag                 TEXT    NOT NULL UNIQUE,
    commit_hash         TEXT    NOT NULL,
    published_at        INTEGER NOT NULL,
    message             TEXT,
    product_count       INTEGER NOT NULL,
    category_count      INTEGER NOT NULL,
    collection_count    INTEGER NOT NULL,
    orphaned_references INTEGER NOT NULL
) STRICT;

CREATE INDEX catalog_versions_by_time ON catalog_versions (published_at, seq);
