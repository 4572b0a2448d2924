-- The change log (see src/datastore/changes.rs): one row per change record, appended by
-- each write inside the write's own savepoint of its `BEGIN IMMEDIATE` transaction (see
-- src/datastore/sqlite/change_log.rs), so a record exists exactly when its write
-- committed, and every instance on this file appends to and reads this one log.
--
-- `position` is AUTOINCREMENT: SQLite keeps the highest position ever assigned in
-- `sqlite_sequence`, so positions are never reused, even after retention deleted every
-- row (a plain rowid would restart at max(rowid) + 1). `sqlite_sequence` is an ordinary
-- table written in the same transaction, so a write rolled back to its savepoint takes
-- its positions back with it: readers never see a gap.
--
-- kind and entity are the stored spellings of `ChangeKind`/`ChangeEntity` (`CREATED`,
-- `PRODUCT`, ...), deliberately without a CHECK: a new kind must not need a table
-- rebuild, and an unknown value reads back as an internal error naming the record.
-- `version` and `at` are Unix milliseconds; `changed_fields` the comma-joined GraphQL
-- field names (`Change::fields_joined`), empty for creates and deletes.
--
-- On a database that already holds a catalogue the log starts empty here: writes made
-- before this migration have no records (a feed starts from the head anyway).

CREATE TABLE change_log (
    position       INTEGER PRIMARY KEY AUTOINCREMENT,
    kind           TEXT    NOT NULL,
    entity         TEXT    NOT NULL,
    entity_id      TEXT    NOT NULL,
    version        INTEGER,
    at             INTEGER NOT NULL,
    changed_fields TEXT    NOT NULL
) STRICT;

-- One row: the highest position retention has removed (0 until the first prune).
CREATE TABLE change_log_meta (
    id             INTEGER PRIMARY KEY CHECK (id = 0),
    pruned_through INTEGER NOT NULL
) STRICT;

INSERT INTO change_log_meta (id, pruned_through) VALUES (0, 0);
