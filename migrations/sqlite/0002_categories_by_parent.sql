-- Children of a category, for the checks the backend now makes inside each write
-- transaction: deleting a category that still has children fails, and a move walks the
-- parents up from the new parent to refuse a cycle. (Referential rules are enforced by
-- the backend inside its `BEGIN IMMEDIATE` write transactions; see
-- src/datastore/sqlite/categories.rs and products.rs.)

CREATE INDEX categories_by_parent ON categories (parent_id);
