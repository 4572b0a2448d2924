//! The `scylla` backend: ScyllaDB (or Apache Cassandra) through the `scylla` driver.
//!
//! # Tables (`migrations/scylla/`)
//! Each query has a table shaped for it; nothing needs a secondary index, a materialized
//! view or `ALLOW FILTERING`:
//! - `products`, `categories`, `collections`: entities by id;
//! - `unique_keys`: reservations of skus and slugs, `((scope, value))`;
//! - `products_by_month` + `product_months`: the keyset listing of all products;
//! - `products_by_category`, `collection_products`: members in `(created_at, id)` order;
//! - `product_collections`: a product's collections (the other direction of membership);
//! - `catalog_versions` (unique tags) and `catalog_versions_by_time` (newest first).
//!
//! # Atomicity: what is a lightweight transaction and what is not
//! Entity rows and reservation rows are only ever written with lightweight transactions
//! (LWT), so racing writers resolve exactly as on memdb: `INSERT … IF NOT EXISTS` lets one
//! creator of a sku or slug win, and `UPDATE … IF updated_at = ?` lets one of several
//! writers holding the same version win; the losers get `AlreadyExists` or a `Conflict`
//! carrying the entity read back at serial consistency. A write first reserves its key,
//! then writes the entity; when the entity write definitely did not land it releases the
//! reservation again (`DELETE … IF owner = ? AND claim = ?`). Every reservation carries a
//! random `claim` so that one write can never release a reservation another write of the
//! same entity depends on. When an LWT's answer is lost (a timeout), the row is read back
//! at serial consistency to learn whether it landed, instead of guessing.
//!
//! The other tables are indexes derived from the entities, written with plain writes and
//! logged batches. They may briefly (or, after a crash mid-write, permanently) hold rows
//! that no longer match an entity, but never lack one: index rows are written *before*
//! the entity and removed *after* it. Every read through an index therefore fetches the
//! entity and checks it (`created_at` equal to the index key, and [`ProductFilter::matches`]
//! for the rest), so a stale index row is skipped, never returned. Membership is the
//! exception that needs both directions to agree: each pair is written or deleted in both
//! tables by one logged batch.
//!
//! A crash between reserving a key and writing the entity (or between deleting an entity
//! and releasing its key) leaves a reservation without an entity: lookups ignore it, but
//! it keeps the key taken until the row is deleted by hand. Reclaiming it automatically
//! would need to tell it apart from a write still in flight, which no timeout can do
//! safely, and uniqueness matters more than the rare lost key.
//!
//! # Listing and counting products
//! `list_products` scans the narrowest index for the filter — a collection's members, a
//! category's products, or else the month-bucketed listing — with driver paging, from
//! `after` upwards or from `before` downwards, fetches each candidate product (32 at a
//! time) and keeps those that pass [`ProductFilter::matches`], until `limit` are found.
//! Inventory status, price range and search are therefore filtered in the client: a
//! selective filter over a large category reads many rows, which is the price of having
//! no secondary indexes. `count_products` scans the same way without a limit; counter
//! tables were rejected because CQL counters are not idempotent (a retried increment
//! counts twice), cannot join a logged batch with the rows they count, and could not
//! count filtered subsets anyway.
//!
//! The listing of all products is bucketed by UTC creation month: partitions stay bounded
//! by a month's worth of new products instead of growing forever, and because buckets
//! follow the keyset order a page reads one bucket (rarely two) without merging. The few
//! existing months are listed in `product_months`, so empty months cost nothing. The
//! current month's partition takes all new rows; for a catalogue, whose write rate is
//! low, that is a fine trade for ordered, merge-free paging.

mod cql;
pub mod migrate;
mod rows;

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Datelike as _;
use futures_util::{StreamExt as _, TryStreamExt as _};
use scylla::client::caching_session::CachingSession;
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session_builder::SessionBuilder;
use scylla::value::{CqlTimestamp, CqlValue};

use self::cql::{Cas, Cql, LISTING_PAGE_SIZE, SCAN_PAGE_SIZE};
use self::migrate::{LockSettings, MigrateError, MigrationReport};
use self::rows::{Entity, Values, VersionRow, ts, version_values};
use super::{
    CatalogVersion, Category, CategoryId, Collection, CollectionId, Datastore, Error, Page,
    Product, ProductFilter, ProductId, Result, Timestamp,
};

/// How many times a lightweight transaction is retried after an unknown outcome.
const CAS_ATTEMPTS: usize = 5;
/// Entity reads in flight at once while scanning an index or reading a batch.
const FETCH_CONCURRENCY: usize = 32;
/// Statements per logged batch when writing memberships (two per pair): small enough to
/// stay under the servers' batch size warnings.
const BATCH_STATEMENTS: usize = 32;
/// Prepared statements kept by the caching session.
const STATEMENT_CACHE: usize = 256;

const CHECK_KEYSPACE: &str =
    "SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = ?";
const PING: &str = "SELECT release_version FROM system.local";

const RESERVE: &str = "INSERT INTO unique_keys (scope, value, owner, claim, reserved_at) \
     VALUES (?, ?, ?, ?, ?) IF NOT EXISTS";
const TAKE_OVER: &str = "UPDATE unique_keys SET claim = ?, reserved_at = ? \
     WHERE scope = ? AND value = ? IF owner = ? AND claim = ?";
const RELEASE: &str = "DELETE FROM unique_keys WHERE scope = ? AND value = ? \
     IF owner = ? AND claim = ?";
const SELECT_OWNER: &str = "SELECT owner FROM unique_keys WHERE scope = ? AND value = ?";
const SELECT_RESERVATION: &str = "SELECT owner, claim FROM unique_keys \
     WHERE scope = ? AND value = ?";

const INSERT_MONTH_ROW: &str =
    "INSERT INTO products_by_month (month, created_at, id) VALUES (?, ?, ?)";
const DELETE_MONTH_ROW: &str =
    "DELETE FROM products_by_month WHERE month = ? AND created_at = ? AND id = ?";
const INSERT_MONTH: &str = "INSERT INTO product_months (shard, month) VALUES (0, ?)";
const SELECT_MONTHS: &str = "SELECT month FROM product_months WHERE shard = 0";
const INSERT_CATEGORY_ROW: &str =
    "INSERT INTO products_by_category (category_id, created_at, id) VALUES (?, ?, ?)";
const DELETE_CATEGORY_ROW: &str =
    "DELETE FROM products_by_category WHERE category_id = ? AND created_at = ? AND id = ?";

const INSERT_PRODUCT_SIDE: &str =
    "INSERT INTO product_collections (product_id, collection_id) VALUES (?, ?)";
const DELETE_PRODUCT_SIDE: &str =
    "DELETE FROM product_collections WHERE product_id = ? AND collection_id = ?";
const INSERT_COLLECTION_SIDE: &str =
    "INSERT INTO collection_products (collection_id, created_at, product_id) VALUES (?, ?, ?)";
const DELETE_COLLECTION_SIDE: &str = "DELETE FROM collection_products \
     WHERE collection_id = ? AND created_at = ? AND product_id = ?";
const SELECT_COLLECTIONS_OF: &str =
    "SELECT collection_id FROM product_collections WHERE product_id = ?";
const SELECT_MEMBERS: &str =
    "SELECT created_at, product_id FROM collection_products WHERE collection_id = ?";
const DELETE_ALL_PRODUCT_SIDE: &str = "DELETE FROM product_collections WHERE product_id = ?";
const DELETE_ALL_COLLECTION_SIDE: &str = "DELETE FROM collection_products WHERE collection_id = ?";

const SELECT_ALL_CATEGORIES: &str = "SELECT id, name, slug, parent_id, display_order, body, \
     created_at, updated_at FROM categories";
const SELECT_ALL_COLLECTIONS: &str =
    "SELECT id, name, slug, display_order, body, created_at, updated_at FROM collections";

const INSERT_VERSION: &str = "INSERT INTO catalog_versions (tag, commit, published_at, \
     message, product_count, category_count, collection_count, orphaned_references) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS";
const SELECT_VERSION: &str = "SELECT tag, commit, published_at, message, product_count, \
     category_count, collection_count, orphaned_references FROM catalog_versions WHERE tag = ?";
const DELETE_VERSION: &str = "DELETE FROM catalog_versions WHERE tag = ? IF published_at = ?";
const INSERT_VERSION_BY_TIME: &str = "INSERT INTO catalog_versions_by_time (shard, tag, \
     commit, published_at, message, product_count, category_count, collection_count, \
     orphaned_references) VALUES (0, ?, ?, ?, ?, ?, ?, ?, ?)";
const LATEST_VERSION: &str = "SELECT tag, commit, published_at, message, product_count, \
     category_count, collection_count, orphaned_references FROM catalog_versions_by_time \
     WHERE shard = 0 LIMIT 1";

/// A consistency level for reads and writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConsistencyLevel {
    /// `ANY` (writes only).
    Any,
    /// `ONE`.
    One,
    /// `TWO`.
    Two,
    /// `THREE`.
    Three,
    /// `QUORUM`.
    Quorum,
    /// `ALL`.
    All,
    /// `LOCAL_QUORUM`, the default.
    #[default]
    LocalQuorum,
    /// `EACH_QUORUM` (writes only).
    EachQuorum,
    /// `LOCAL_ONE`.
    LocalOne,
}

impl ConsistencyLevel {
    const NAMES: [(&'static str, Self); 9] = [
        ("ANY", Self::Any),
        ("ONE", Self::One),
        ("TWO", Self::Two),
        ("THREE", Self::Three),
        ("QUORUM", Self::Quorum),
        ("ALL", Self::All),
        ("LOCAL_QUORUM", Self::LocalQuorum),
        ("EACH_QUORUM", Self::EachQuorum),
        ("LOCAL_ONE", Self::LocalOne),
    ];

    const fn driver(self) -> scylla::statement::Consistency {
        use scylla::statement::Consistency as C;
        match self {
            Self::Any => C::Any,
            Self::One => C::One,
            Self::Two => C::Two,
            Self::Three => C::Three,
            Self::Quorum => C::Quorum,
            Self::All => C::All,
            Self::LocalQuorum => C::LocalQuorum,
            Self::EachQuorum => C::EachQuorum,
            Self::LocalOne => C::LocalOne,
        }
    }
}

impl FromStr for ConsistencyLevel {
    type Err = String;

    /// Accepts the CQL names in any case, e.g. `LOCAL_QUORUM` or `local_quorum`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let upper = s.trim().to_ascii_uppercase().replace('-', "_");
        Self::NAMES
            .iter()
            .find(|(name, _)| *name == upper)
            .map(|(_, level)| *level)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::NAMES.iter().map(|(n, _)| *n).collect();
                format!(
                    "unknown consistency {s:?}; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

impl fmt::Display for ConsistencyLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = Self::NAMES
            .iter()
            .find(|(_, level)| level == self)
            .map_or("?", |(n, _)| *n);
        f.write_str(name)
    }
}

/// The consistency of the Paxos phase of lightweight transactions and of serial reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SerialConsistencyLevel {
    /// `SERIAL`: linearizable across all data centres.
    Serial,
    /// `LOCAL_SERIAL`, the default: linearizable within the local data centre.
    #[default]
    LocalSerial,
}

impl SerialConsistencyLevel {
    const fn driver(self) -> scylla::statement::SerialConsistency {
        match self {
            Self::Serial => scylla::statement::SerialConsistency::Serial,
            Self::LocalSerial => scylla::statement::SerialConsistency::LocalSerial,
        }
    }

    const fn read_consistency(self) -> scylla::statement::Consistency {
        match self {
            Self::Serial => scylla::statement::Consistency::Serial,
            Self::LocalSerial => scylla::statement::Consistency::LocalSerial,
        }
    }
}

impl FromStr for SerialConsistencyLevel {
    type Err = String;

    /// Accepts `SERIAL` or `LOCAL_SERIAL` in any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().replace('-', "_").as_str() {
            "SERIAL" => Ok(Self::Serial),
            "LOCAL_SERIAL" => Ok(Self::LocalSerial),
            _ => Err(format!(
                "unknown serial consistency {s:?}; expected SERIAL or LOCAL_SERIAL"
            )),
        }
    }
}

impl fmt::Display for SerialConsistencyLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Serial => "SERIAL",
            Self::LocalSerial => "LOCAL_SERIAL",
        })
    }
}

/// Settings of the scylla backend.
#[derive(Clone)]
pub struct ScyllaConfig {
    /// Contact points, `host:port` each.
    pub hosts: Vec<String>,
    /// The keyspace; it must exist already (the operator creates it).
    pub keyspace: String,
    /// User name for password authentication, if the cluster requires it.
    pub username: Option<String>,
    /// Password for `username`.
    pub password: Option<String>,
    /// Consistency of reads and writes.
    pub consistency: ConsistencyLevel,
    /// Consistency of the Paxos phase of lightweight transactions.
    pub serial_consistency: SerialConsistencyLevel,
    /// Client-side timeout of each request (also used to connect).
    pub request_timeout: Duration,
    /// How long the migration lock lives without a heartbeat.
    pub migration_lock_ttl: Duration,
    /// How long an instance waits for another instance's migration lock.
    pub migration_wait_timeout: Duration,
}

impl Default for ScyllaConfig {
    fn default() -> Self {
        Self {
            hosts: vec!["localhost:9042".to_owned()],
            keyspace: "gitstore".to_owned(),
            username: None,
            password: None,
            consistency: ConsistencyLevel::LocalQuorum,
            serial_consistency: SerialConsistencyLevel::LocalSerial,
            request_timeout: Duration::from_secs(10),
            migration_lock_ttl: Duration::from_secs(30),
            migration_wait_timeout: Duration::from_secs(300),
        }
    }
}

impl fmt::Debug for ScyllaConfig {
    /// Never prints the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScyllaConfig")
            .field("hosts", &self.hosts)
            .field("keyspace", &self.keyspace)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("consistency", &self.consistency)
            .field("serial_consistency", &self.serial_consistency)
            .field("request_timeout", &self.request_timeout)
            .field("migration_lock_ttl", &self.migration_lock_ttl)
            .field("migration_wait_timeout", &self.migration_wait_timeout)
            .finish()
    }
}

/// The `scylla` backend. Cheap to share: one session with its connection pools and
/// prepared-statement cache.
pub struct ScyllaStore {
    cql: Arc<Cql>,
    keyspace: String,
    lock: LockSettings,
    /// Months this process has already recorded in `product_months`.
    known_months: Mutex<BTreeSet<i32>>,
}

/// Which index a product scan reads.
enum Source<'a> {
    Collection(&'a CollectionId),
    Category(&'a CategoryId),
    All,
}

impl<'a> Source<'a> {
    fn for_filter(filter: &'a ProductFilter) -> Self {
        match (&filter.collection_id, &filter.category_id) {
            (Some(c), _) => Self::Collection(c),
            (None, Some(c)) => Self::Category(c),
            (None, None) => Self::All,
        }
    }
}

/// How a conditional update of an entity ended.
enum Write<T> {
    Done,
    Stale(T),
    Missing,
}

/// A reservation row as read back.
#[derive(scylla::DeserializeRow)]
struct Reservation {
    owner: Option<String>,
    claim: Option<String>,
}

/// Statements that must land in the same logged batch.
type Group = Vec<(&'static str, Values)>;

/// `(created_at, id)` as stored in an index.
type KeyRow = (CqlTimestamp, String);

/// UTC year and month of a timestamp as `YYYYMM`, the listing bucket.
fn month_of(t: Timestamp) -> i32 {
    let dt = t.to_datetime();
    dt.year() * 100 + i32::try_from(dt.month()).unwrap_or(1)
}

fn new_claim() -> String {
    ulid::Ulid::new().to_string().to_lowercase()
}

fn boxed<V: scylla::serialize::row::SerializeRow + Send + Sync + 'static>(values: V) -> Values {
    Box::new(values)
}

impl ScyllaStore {
    /// Connects to the cluster, checks that the keyspace exists and makes it the session's
    /// keyspace. Does not migrate: call [`ScyllaStore::migrate`] before serving.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when no contact point answers, and
    /// [`Error::FailedPrecondition`] naming the keyspace when it does not exist.
    pub async fn connect(cfg: &ScyllaConfig) -> Result<Self> {
        let profile = ExecutionProfile::builder()
            .consistency(cfg.consistency.driver())
            .serial_consistency(Some(cfg.serial_consistency.driver()))
            .request_timeout(Some(cfg.request_timeout))
            .build();
        let mut builder = SessionBuilder::new()
            .known_nodes(&cfg.hosts)
            .connection_timeout(cfg.request_timeout)
            .default_execution_profile_handle(profile.into_handle());
        if let Some(user) = &cfg.username {
            builder = builder.user(user, cfg.password.as_deref().unwrap_or_default());
        }
        let hosts = cfg.hosts.join(",");
        // Boxed: the driver's connect future is large and would bloat every caller's.
        let session = Box::pin(builder.build())
            .await
            .map_err(|e| Error::unavailable(format!("connecting to scylla at {hosts}"), e))?;
        let cql = Cql::new(
            CachingSession::from(session, STATEMENT_CACHE),
            cfg.serial_consistency.read_consistency(),
        );
        let found: Option<(String,)> = cql
            .one(
                CHECK_KEYSPACE,
                (cfg.keyspace.as_str(),),
                "checking that the keyspace exists",
            )
            .await?;
        if found.is_none() {
            return Err(Error::FailedPrecondition(format!(
                "keyspace {:?} does not exist; create it first (see compose.scylla.yml \
                 scylla-init)",
                cfg.keyspace
            )));
        }
        cql.session()
            .use_keyspace(&cfg.keyspace, true)
            .await
            .map_err(|e| Error::unavailable(format!("using keyspace {:?}", cfg.keyspace), e))?;
        Ok(Self {
            cql: Arc::new(cql),
            keyspace: cfg.keyspace.clone(),
            lock: LockSettings {
                ttl: cfg.migration_lock_ttl,
                wait_timeout: cfg.migration_wait_timeout,
            },
            known_months: Mutex::new(BTreeSet::new()),
        })
    }

    /// Applies the embedded migrations that are not applied yet, under the distributed
    /// migration lock (see [`migrate`]). Safe to call from many instances at once.
    ///
    /// # Errors
    /// [`MigrateError`] when an applied migration was edited or is missing from this
    /// binary, when the lock stays taken past the wait timeout, or when a statement fails.
    pub async fn migrate(&self) -> Result<MigrationReport, MigrateError> {
        migrate::run(&self.cql, &self.keyspace, self.lock).await
    }

    /// Takes the migration lock and holds it, renewed by a heartbeat, until the returned
    /// guard is released: for operator tasks that must not overlap a migration. Waits for
    /// another holder like a migrator does.
    ///
    /// # Errors
    /// [`MigrateError::LockTimeout`] when another holder keeps it past the wait timeout,
    /// or [`MigrateError::Datastore`] when the lock table cannot be reached.
    pub async fn hold_migration_lock(&self) -> Result<migrate::MigrationLock, MigrateError> {
        migrate::MigrationLock::acquire(&self.cql, &self.keyspace, self.lock).await
    }

    /// The keyspace this store works in.
    #[must_use]
    pub fn keyspace(&self) -> &str {
        &self.keyspace
    }

    // ----- entities ------------------------------------------------------------------

    async fn read<T: Entity>(&self, id: &str) -> Result<Option<T>> {
        let what = format!("reading {} {id:?}", T::ENTITY);
        let row: Option<T::Row> = self.cql.one(T::SELECT, (id,), &what).await?;
        row.map(T::from_row).transpose()
    }

    /// Reads many entities concurrently; absent ones are left out.
    async fn read_many<'a, T: Entity>(&self, ids: impl Iterator<Item = &'a str>) -> Result<Vec<T>> {
        let ids: Vec<String> = ids.map(str::to_owned).collect();
        futures_util::stream::iter(ids)
            .map(|id| async move { self.read::<T>(&id).await })
            .buffer_unordered(FETCH_CONCURRENCY)
            .try_filter_map(|entity| async move { Ok(entity) })
            .try_collect()
            .await
    }

    /// Reads at serial consistency: sees every committed LWT, completes in-flight ones.
    async fn read_serial<T: Entity>(&self, id: &str) -> Result<Option<T>> {
        let what = format!("reading {} {id:?}", T::ENTITY);
        let row: Option<T::Row> = self
            .cql
            .one(self.cql.serial(T::SELECT), (id,), &what)
            .await?;
        row.map(T::from_row).transpose()
    }

    async fn insert<T: Entity>(&self, entity: &T) -> Result<()> {
        let what = format!("creating {} {:?}", T::ENTITY, entity.id());
        let mut uncertain = false;
        for _ in 0..CAS_ATTEMPTS {
            match self
                .cql
                .cas(T::INSERT, entity.insert_values(), &what)
                .await?
            {
                Cas::Applied => return Ok(()),
                Cas::NotApplied if !uncertain => {
                    return Err(Error::already_exists(T::ENTITY, "id", entity.id()));
                }
                Cas::NotApplied | Cas::Unknown(_) => {
                    uncertain = true;
                    match self.read_serial::<T>(entity.id()).await? {
                        Some(stored) if entity.same_write(&stored) => return Ok(()),
                        Some(_) => return Err(Error::already_exists(T::ENTITY, "id", entity.id())),
                        None => {}
                    }
                }
            }
        }
        Err(Error::unavailable(
            what,
            "no answer from the lightweight transaction",
        ))
    }

    async fn replace<T: Entity>(&self, entity: &T, expected: Timestamp) -> Result<Write<T>> {
        let what = format!("updating {} {:?}", T::ENTITY, entity.id());
        let mut uncertain = false;
        for _ in 0..CAS_ATTEMPTS {
            let answer = self
                .cql
                .cas(T::UPDATE, entity.update_values(expected), &what)
                .await?;
            match answer {
                Cas::Applied => return Ok(Write::Done),
                Cas::Unknown(_) => uncertain = true,
                Cas::NotApplied => {}
            }
            match self.read_serial::<T>(entity.id()).await? {
                None => return Ok(Write::Missing),
                Some(current) if uncertain && entity.same_write(&current) => {
                    return Ok(Write::Done);
                }
                Some(current) if current.version() == expected => {}
                Some(current) => return Ok(Write::Stale(current)),
            }
        }
        Err(Error::unavailable(
            what,
            "no answer from the lightweight transaction",
        ))
    }

    /// Deletes an entity whatever its version and returns what was deleted.
    async fn remove<T: Entity>(&self, id: &str) -> Result<T> {
        let what = format!("deleting {} {id:?}", T::ENTITY);
        let mut deleted_maybe: Option<T> = None;
        for attempt in 0..CAS_ATTEMPTS {
            let stored = if attempt == 0 {
                self.read::<T>(id).await?
            } else {
                self.read_serial::<T>(id).await?
            };
            let Some(stored) = stored else {
                // Gone: by our own earlier attempt whose answer was lost, or by another.
                return deleted_maybe.ok_or_else(|| Error::not_found(T::ENTITY, id));
            };
            match self
                .cql
                .cas(T::DELETE, (id, ts(stored.version())), &what)
                .await?
            {
                Cas::Applied => return Ok(stored),
                Cas::NotApplied => deleted_maybe = None,
                Cas::Unknown(_) => deleted_maybe = Some(stored),
            }
        }
        Err(Error::unavailable(
            what,
            "the entity kept changing while being deleted",
        ))
    }

    // ----- unique keys ---------------------------------------------------------------

    async fn reservation<T: Entity>(&self, key: &str) -> Result<Option<Reservation>> {
        self.cql
            .one(
                self.cql.serial(SELECT_RESERVATION),
                (T::KEY_SCOPE, key),
                &format!(
                    "reading the reservation of {} {} {key:?}",
                    T::ENTITY,
                    T::KEY_FIELD
                ),
            )
            .await
    }

    /// Reserves `key` for the entity `owner` and returns the claim that holds it. A key
    /// already reserved for the same entity (by a concurrent write of it, or left by an
    /// earlier failed one) is taken over under the new claim.
    async fn reserve<T: Entity>(&self, key: &str, owner: &str) -> Result<String> {
        let what = format!("reserving {} {} {key:?}", T::ENTITY, T::KEY_FIELD);
        let claim = new_claim();
        for _ in 0..CAS_ATTEMPTS {
            let values = (
                T::KEY_SCOPE,
                key,
                owner,
                claim.as_str(),
                ts(Timestamp::now()),
            );
            if let Cas::Applied = self.cql.cas(RESERVE, values, &what).await? {
                return Ok(claim);
            }
            let Some(found) = self.reservation::<T>(key).await? else {
                continue;
            };
            if found.claim.as_deref() == Some(claim.as_str()) {
                return Ok(claim);
            }
            if found.owner.as_deref() != Some(owner) {
                return Err(Error::already_exists(T::ENTITY, T::KEY_FIELD, key));
            }
            let values = (
                claim.as_str(),
                ts(Timestamp::now()),
                T::KEY_SCOPE,
                key,
                owner,
                found.claim.unwrap_or_default(),
            );
            if let Cas::Applied = self.cql.cas(TAKE_OVER, values, &what).await? {
                return Ok(claim);
            }
        }
        Err(Error::unavailable(what, "the reservation kept changing"))
    }

    /// Releases `key` if `owner` still holds it under `claim`; with no claim given, under
    /// whatever claim it has now. Failures are logged: the write they follow has already
    /// succeeded or failed on its own.
    async fn release<T: Entity>(&self, key: &str, owner: &str, claim: Option<&str>) {
        let claim = match claim {
            Some(c) => c.to_owned(),
            None => match self.reservation::<T>(key).await {
                Ok(Some(found)) if found.owner.as_deref() == Some(owner) => {
                    found.claim.unwrap_or_default()
                }
                Ok(_) => return,
                Err(err) => {
                    tracing::warn!(entity = T::ENTITY, key, error = %err, "could not release a unique key");
                    return;
                }
            },
        };
        let what = format!("releasing {} {} {key:?}", T::ENTITY, T::KEY_FIELD);
        let values = (T::KEY_SCOPE, key, owner, claim.as_str());
        match self.cql.cas(RELEASE, values, &what).await {
            Ok(Cas::Applied | Cas::NotApplied) => {}
            Ok(Cas::Unknown(err)) => {
                tracing::warn!(entity = T::ENTITY, key, error = %err, "could not release a unique key");
            }
            Err(err) => {
                tracing::warn!(entity = T::ENTITY, key, error = %err, "could not release a unique key");
            }
        }
    }

    /// After a write that did not land: releases the key it reserved, unless the entity
    /// holds that key now (another write of it landed and relies on the reservation).
    async fn release_unless_held<T: Entity>(&self, key: &str, owner: &str, claim: &str) {
        match self.read_serial::<T>(owner).await {
            Ok(Some(current)) if current.key() == key => {}
            Ok(_) => self.release::<T>(key, owner, Some(claim)).await,
            Err(err) => {
                tracing::warn!(entity = T::ENTITY, key, error = %err, "could not release a unique key");
            }
        }
    }

    /// The entity holding `key`, if its reservation points at an entity that has it.
    async fn by_key<T: Entity>(&self, key: &str) -> Result<T> {
        let what = format!("looking up {} {} {key:?}", T::ENTITY, T::KEY_FIELD);
        let found: Option<(Option<String>,)> = self
            .cql
            .one(SELECT_OWNER, (T::KEY_SCOPE, key), &what)
            .await?;
        let Some((Some(owner),)) = found else {
            return Err(Error::not_found(T::ENTITY, key));
        };
        match self.read::<T>(&owner).await? {
            Some(entity) if entity.key() == key => Ok(entity),
            _ => Err(Error::not_found(T::ENTITY, key)),
        }
    }

    /// Creates an entity: reserves its key, runs `before` (index rows that must exist
    /// before the entity), then inserts the entity.
    async fn create_keyed<T: Entity>(&self, entity: &T, before: Vec<Group>) -> Result<()> {
        let claim = self.reserve::<T>(entity.key(), entity.id()).await?;
        if let Some(existing) = self.read::<T>(entity.id()).await? {
            // Same order of checks as memdb: a key held by that entity is reported first.
            if existing.key() == entity.key() {
                return Err(Error::already_exists(T::ENTITY, T::KEY_FIELD, entity.key()));
            }
            self.release_unless_held::<T>(entity.key(), entity.id(), &claim)
                .await;
            return Err(Error::already_exists(T::ENTITY, "id", entity.id()));
        }
        let written = match self
            .write_batches(before, &format!("indexing {} {:?}", T::ENTITY, entity.id()))
            .await
        {
            Ok(()) => self.insert(entity).await,
            Err(err) => Err(err),
        };
        if written.is_err() {
            // Whether the entity was refused, never written, or its outcome is unknown,
            // the reservation goes only if the entity (read back) does not hold the key.
            self.release_unless_held::<T>(entity.key(), entity.id(), &claim)
                .await;
        }
        written
    }

    /// Updates an entity under the version check, moving its key reservation when the
    /// key changes. `stored` is the entity as read, with `stored.version() == expected`.
    async fn update_keyed<T: Entity>(
        &self,
        stored: &T,
        next: &T,
        expected: Timestamp,
    ) -> Result<Write<T>> {
        let key_changed = stored.key() != next.key();
        let (old_claim, new_claim) = if key_changed {
            // Read the old key's claim now: releasing it later under this claim cannot
            // undo a reservation a later write of the same entity takes meanwhile.
            let old = self.reservation::<T>(stored.key()).await?;
            let new = self.reserve::<T>(next.key(), next.id()).await?;
            (old, Some(new))
        } else {
            (None, None)
        };
        let outcome = self.replace(next, expected).await;
        match (&outcome, new_claim) {
            (Ok(Write::Done), Some(_)) => {
                if let Some(Reservation {
                    owner: Some(owner),
                    claim: Some(claim),
                }) = old_claim
                {
                    if owner == stored.id() {
                        self.release::<T>(stored.key(), stored.id(), Some(&claim))
                            .await;
                    }
                }
            }
            (Ok(Write::Stale(_) | Write::Missing) | Err(_), Some(claim)) => {
                self.release_unless_held::<T>(next.key(), next.id(), &claim)
                    .await;
            }
            _ => {}
        }
        outcome
    }

    // ----- indexes and membership ----------------------------------------------------

    /// Runs groups of statements in logged batches of about [`BATCH_STATEMENTS`]; a group
    /// (the two sides of one membership, the index rows of one product) is never split,
    /// so it applies all or nothing.
    async fn write_batches(&self, groups: Vec<Group>, what: &str) -> Result<()> {
        let mut batch: Vec<(&'static str, Values)> = Vec::new();
        for group in groups {
            if !batch.is_empty() && batch.len() + group.len() > BATCH_STATEMENTS {
                self.cql
                    .logged_batch(std::mem::take(&mut batch), what)
                    .await?;
            }
            batch.extend(group);
        }
        self.cql.logged_batch(batch, what).await
    }

    fn product_index_rows(&self, product: &Product) -> Group {
        let month = month_of(product.created_at);
        let id = product.id.as_str().to_owned();
        let mut rows = vec![
            (
                INSERT_MONTH_ROW,
                boxed((month, ts(product.created_at), id.clone())),
            ),
            (
                INSERT_CATEGORY_ROW,
                boxed((
                    product.category_id.as_str().to_owned(),
                    ts(product.created_at),
                    id,
                )),
            ),
        ];
        let known = self
            .known_months
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&month);
        if !known {
            rows.push((INSERT_MONTH, boxed((month,))));
        }
        rows
    }

    fn membership_insert(pid: &str, created_at: Timestamp, cid: &str) -> Group {
        vec![
            (INSERT_PRODUCT_SIDE, boxed((pid.to_owned(), cid.to_owned()))),
            (
                INSERT_COLLECTION_SIDE,
                boxed((cid.to_owned(), ts(created_at), pid.to_owned())),
            ),
        ]
    }

    fn membership_delete(pid: &str, created_at: Timestamp, cid: &str) -> Group {
        vec![
            (DELETE_PRODUCT_SIDE, boxed((pid.to_owned(), cid.to_owned()))),
            (
                DELETE_COLLECTION_SIDE,
                boxed((cid.to_owned(), ts(created_at), pid.to_owned())),
            ),
        ]
    }

    async fn collections_of(&self, id: &ProductId) -> Result<Vec<CollectionId>> {
        let rows: Vec<(String,)> = self
            .cql
            .all(
                SELECT_COLLECTIONS_OF,
                (id.as_str(),),
                &format!("reading the collections of product {id:?}"),
            )
            .await?;
        // Clustering order is ascending collection id: already sorted like memdb.
        Ok(rows
            .into_iter()
            .map(|(c,)| CollectionId::from_stored(c))
            .collect())
    }

    async fn members_of(&self, id: &CollectionId) -> Result<Vec<(Timestamp, String)>> {
        let rows: Vec<KeyRow> = self
            .cql
            .all(
                SELECT_MEMBERS,
                (id.as_str(),),
                &format!("reading the products of collection {id:?}"),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|(t, p)| (Timestamp::from_millis(t.0), p))
            .collect())
    }

    async fn with_collections(&self, mut product: Product) -> Result<Product> {
        product.collection_ids = self.collections_of(&product.id).await?;
        Ok(product)
    }

    async fn full_product(&self, id: &ProductId) -> Result<Option<Product>> {
        let (product, collections) = futures_util::future::try_join(
            self.read::<Product>(id.as_str()),
            self.collections_of(id),
        )
        .await?;
        Ok(product.map(|mut p| {
            p.collection_ids = collections;
            p
        }))
    }

    async fn product_conflict(&self, current: Product) -> Error {
        match self.with_collections(current).await {
            Ok(current) => Error::Conflict(current.into_current()),
            Err(err) => err,
        }
    }

    /// Makes `collections` exactly the collections of product `pid`.
    async fn set_product_collections(
        &self,
        pid: &ProductId,
        created_at: Timestamp,
        collections: &[CollectionId],
    ) -> Result<()> {
        let current: HashSet<CollectionId> = self.collections_of(pid).await?.into_iter().collect();
        let wanted: HashSet<&CollectionId> = collections.iter().collect();
        let mut statements = Vec::new();
        for cid in current.iter().filter(|c| !wanted.contains(c)) {
            statements.push(Self::membership_delete(
                pid.as_str(),
                created_at,
                cid.as_str(),
            ));
        }
        for cid in wanted.iter().filter(|c| !current.contains(**c)) {
            statements.push(Self::membership_insert(
                pid.as_str(),
                created_at,
                cid.as_str(),
            ));
        }
        self.write_batches(
            statements,
            &format!("writing the collections of product {pid:?}"),
        )
        .await
    }

    /// Makes `products` exactly the members of collection `cid`; ids of products that do
    /// not exist (any more) are skipped.
    async fn set_collection_members(
        &self,
        cid: &CollectionId,
        products: &[ProductId],
    ) -> Result<()> {
        let current = self.members_of(cid).await?;
        let wanted: HashSet<&str> = products.iter().map(ProductId::as_str).collect();
        let present: HashSet<&str> = current.iter().map(|(_, p)| p.as_str()).collect();
        let mut statements = Vec::new();
        for (created_at, pid) in current.iter().filter(|(_, p)| !wanted.contains(p.as_str())) {
            statements.push(Self::membership_delete(pid, *created_at, cid.as_str()));
        }
        let added: BTreeSet<&str> = products
            .iter()
            .map(ProductId::as_str)
            .filter(|p| !present.contains(p))
            .collect();
        let found: Vec<Product> = self.read_many(added.into_iter()).await?;
        for product in found {
            statements.push(Self::membership_insert(
                product.id.as_str(),
                product.created_at,
                cid.as_str(),
            ));
        }
        self.write_batches(
            statements,
            &format!("writing the products of collection {cid:?}"),
        )
        .await
    }

    // ----- scans ---------------------------------------------------------------------

    /// The listing months to visit for `page`, in scan order.
    async fn months(&self, page: &Page) -> Result<Vec<i32>> {
        let rows: Vec<(i32,)> = self
            .cql
            .all(SELECT_MONTHS, (), "reading the listing months")
            .await?;
        let low = page.after.as_ref().map(|k| month_of(k.created_at));
        let high = page.before.as_ref().map(|k| month_of(k.created_at));
        let mut months: Vec<i32> = rows
            .into_iter()
            .map(|(m,)| m)
            .filter(|m| low.is_none_or(|l| *m >= l) && high.is_none_or(|h| *m <= h))
            .collect();
        months.sort_unstable();
        if page.from_end {
            months.reverse();
        }
        Ok(months)
    }

    /// Visits, in keyset order (descending when `page.from_end`), every product inside
    /// the page bounds that passes `filter`, until `visit` returns `false`. Candidates
    /// come from the narrowest index; each is checked against its entity.
    async fn scan(
        &self,
        filter: &ProductFilter,
        page: &Page,
        page_size: i32,
        mut visit: impl FnMut(Product) -> bool + Send,
    ) -> Result<()> {
        let source = Source::for_filter(filter);
        let (table, partition_column, id_column, partitions): (&str, &str, &str, Vec<CqlValue>) =
            match &source {
                Source::Collection(c) => (
                    "collection_products",
                    "collection_id",
                    "product_id",
                    vec![CqlValue::Text(c.as_str().to_owned())],
                ),
                Source::Category(c) => (
                    "products_by_category",
                    "category_id",
                    "id",
                    vec![CqlValue::Text(c.as_str().to_owned())],
                ),
                Source::All => (
                    "products_by_month",
                    "month",
                    "id",
                    self.months(page)
                        .await?
                        .into_iter()
                        .map(CqlValue::Int)
                        .collect(),
                ),
            };
        let mut text =
            format!("SELECT created_at, {id_column} FROM {table} WHERE {partition_column} = ?");
        if page.after.is_some() {
            text.push_str(&format!(" AND (created_at, {id_column}) > (?, ?)"));
        }
        if page.before.is_some() {
            text.push_str(&format!(" AND (created_at, {id_column}) < (?, ?)"));
        }
        if page.from_end {
            text.push_str(&format!(" ORDER BY created_at DESC, {id_column} DESC"));
        }
        let hint = match &source {
            Source::Collection(c) => vec![(*c).clone()],
            _ => Vec::new(),
        };
        for partition in partitions {
            let mut values = vec![partition];
            for key in [&page.after, &page.before].into_iter().flatten() {
                values.push(CqlValue::Timestamp(ts(key.created_at)));
                values.push(CqlValue::Text(key.id.clone()));
            }
            let candidates = self
                .cql
                .stream::<KeyRow>(&text, page_size, values, "scanning products")
                .await?
                .map_ok(|(created_at, id)| async move {
                    let product = self.read::<Product>(&id).await?;
                    Ok(product.filter(|p| p.created_at.millis() == created_at.0))
                })
                .try_buffered(FETCH_CONCURRENCY);
            let mut candidates = std::pin::pin!(candidates);
            while let Some(product) = candidates.try_next().await? {
                let Some(mut product) = product else { continue };
                // Membership is proven by the collection index row itself (both sides
                // are written together); other filters never look at collections.
                product.collection_ids.clone_from(&hint);
                if filter.matches(&product) && !visit(product) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

// Plain `async fn`s: their state machines are large (several nested LWT round trips),
// but `AnyDatastore`'s `dispatch!` boxes the Scylla arm once, so the other backends'
// futures stay small without boxing each method here.
impl Datastore for ScyllaStore {
    fn backend(&self) -> &'static str {
        "scylla"
    }

    async fn create_product(&self, product: &Product) -> Result<()> {
        let mut rows = vec![self.product_index_rows(product)];
        let mut collections: Vec<&CollectionId> = product.collection_ids.iter().collect();
        collections.sort();
        collections.dedup();
        for cid in collections {
            rows.push(Self::membership_insert(
                product.id.as_str(),
                product.created_at,
                cid.as_str(),
            ));
        }
        let mut stored = product.clone();
        stored.collection_ids.clear();
        self.create_keyed(&stored, rows).await?;
        self.known_months
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(month_of(product.created_at));
        Ok(())
    }

    async fn get_product(&self, id: &ProductId) -> Result<Product> {
        self.full_product(id)
            .await?
            .ok_or_else(|| Error::not_found(ProductId::ENTITY, id.as_str()))
    }

    async fn get_product_by_sku(&self, sku: &str) -> Result<Product> {
        let product = self.by_key::<Product>(sku).await?;
        self.with_collections(product).await
    }

    async fn get_products(&self, ids: &[ProductId]) -> Result<Vec<Product>> {
        futures_util::stream::iter(ids.to_vec())
            .map(|id| async move { self.full_product(&id).await })
            .buffer_unordered(FETCH_CONCURRENCY)
            .try_filter_map(|p| async move { Ok(p) })
            .try_collect()
            .await
    }

    async fn update_product(
        &self,
        product: &Product,
        expected: Timestamp,
        collection_ids: Option<&[CollectionId]>,
    ) -> Result<()> {
        let Some(stored) = self.read::<Product>(product.id.as_str()).await? else {
            return Err(Error::not_found(ProductId::ENTITY, product.id.as_str()));
        };
        if stored.updated_at != expected {
            return Err(self.product_conflict(stored).await);
        }
        let mut next = product.clone();
        next.collection_ids.clear();
        // created_at is immutable: the index rows are keyed by the stored one.
        next.created_at = stored.created_at;
        let moved = next.category_id != stored.category_id;
        let pid = product.id.as_str();
        if moved {
            let row = (next.category_id.as_str(), ts(stored.created_at), pid);
            self.cql
                .execute(
                    INSERT_CATEGORY_ROW,
                    row,
                    &format!("indexing product {pid:?}"),
                )
                .await?;
        }
        // Which category index row is stale afterwards: the old one if the write
        // landed, the new one if it surely did not, neither if nobody knows.
        let (stale_category, result) = match self.update_keyed(&stored, &next, expected).await {
            Ok(Write::Done) => (Some(&stored.category_id), Ok(())),
            Ok(Write::Stale(current)) => (
                Some(&next.category_id),
                Err(self.product_conflict(current).await),
            ),
            Ok(Write::Missing) => (
                Some(&next.category_id),
                Err(Error::not_found(ProductId::ENTITY, pid)),
            ),
            Err(err @ Error::AlreadyExists { .. }) => (Some(&next.category_id), Err(err)),
            Err(err) => (None, Err(err)),
        };
        if let Some(stale_category) = stale_category.filter(|_| moved) {
            let row = (stale_category.as_str(), ts(stored.created_at), pid);
            if let Err(err) = self
                .cql
                .execute(DELETE_CATEGORY_ROW, row, "unindexing a product")
                .await
            {
                // Harmless: reads check the entity's category.
                tracing::warn!(product = pid, error = %err, "could not remove a stale category index row");
            }
        }
        result?;
        if let Some(ids) = collection_ids {
            self.set_product_collections(&product.id, stored.created_at, ids)
                .await?;
        }
        Ok(())
    }

    async fn delete_product(&self, id: &ProductId) -> Result<()> {
        let stored = self.remove::<Product>(id.as_str()).await?;
        self.release::<Product>(&stored.sku, id.as_str(), None)
            .await;
        let mut statements = vec![vec![
            (
                DELETE_MONTH_ROW,
                boxed((
                    month_of(stored.created_at),
                    ts(stored.created_at),
                    id.as_str().to_owned(),
                )),
            ),
            (
                DELETE_CATEGORY_ROW,
                boxed((
                    stored.category_id.as_str().to_owned(),
                    ts(stored.created_at),
                    id.as_str().to_owned(),
                )),
            ),
        ]];
        let cleanup = async {
            for cid in self.collections_of(id).await? {
                statements.push(Self::membership_delete(
                    id.as_str(),
                    stored.created_at,
                    cid.as_str(),
                ));
            }
            statements.push(vec![(
                DELETE_ALL_PRODUCT_SIDE,
                boxed((id.as_str().to_owned(),)),
            )]);
            self.write_batches(statements, &format!("unindexing product {id:?}"))
                .await
        };
        if let Err(err) = cleanup.await {
            // The product is gone; its leftover index rows are skipped by every read.
            tracing::warn!(product = id.as_str(), error = %err, "could not remove the index rows of a deleted product");
        }
        Ok(())
    }

    async fn list_products(&self, filter: &ProductFilter, page: &Page) -> Result<Vec<Product>> {
        if page.limit == 0 {
            return Ok(Vec::new());
        }
        let mut found = Vec::with_capacity(page.limit);
        let limit = page.limit;
        self.scan(filter, page, LISTING_PAGE_SIZE, |p| {
            found.push(p);
            found.len() < limit
        })
        .await?;
        if page.from_end {
            found.reverse();
        }
        futures_util::stream::iter(found)
            .map(|p| self.with_collections(p))
            .buffered(FETCH_CONCURRENCY)
            .try_collect()
            .await
    }

    async fn count_products(&self, filter: &ProductFilter) -> Result<u64> {
        let mut count = 0_u64;
        let everything = Page {
            limit: usize::MAX,
            ..Page::default()
        };
        self.scan(filter, &everything, SCAN_PAGE_SIZE, |_| {
            count += 1;
            true
        })
        .await?;
        Ok(count)
    }

    async fn create_category(&self, category: &Category) -> Result<()> {
        self.create_keyed(category, Vec::new()).await
    }

    async fn get_category(&self, id: &CategoryId) -> Result<Category> {
        self.read::<Category>(id.as_str())
            .await?
            .ok_or_else(|| Error::not_found(CategoryId::ENTITY, id.as_str()))
    }

    async fn get_category_by_slug(&self, slug: &str) -> Result<Category> {
        self.by_key::<Category>(slug).await
    }

    async fn get_categories(&self, ids: &[CategoryId]) -> Result<Vec<Category>> {
        self.read_many(ids.iter().map(CategoryId::as_str)).await
    }

    async fn list_categories(&self) -> Result<Vec<Category>> {
        let rows: Vec<rows::CategoryRow> = self
            .cql
            .all(SELECT_ALL_CATEGORIES, (), "listing categories")
            .await?;
        rows.into_iter().map(Category::from_row).collect()
    }

    async fn update_category(&self, category: &Category, expected: Timestamp) -> Result<()> {
        let Some(stored) = self.read::<Category>(category.id.as_str()).await? else {
            return Err(Error::not_found(CategoryId::ENTITY, category.id.as_str()));
        };
        if stored.updated_at != expected {
            return Err(Error::Conflict(stored.into_current()));
        }
        let mut next = category.clone();
        next.created_at = stored.created_at;
        match self.update_keyed(&stored, &next, expected).await? {
            Write::Done => Ok(()),
            Write::Stale(current) => Err(Error::Conflict(current.into_current())),
            Write::Missing => Err(Error::not_found(CategoryId::ENTITY, category.id.as_str())),
        }
    }

    async fn delete_category(&self, id: &CategoryId) -> Result<()> {
        let stored = self.remove::<Category>(id.as_str()).await?;
        self.release::<Category>(&stored.slug, id.as_str(), None)
            .await;
        Ok(())
    }

    async fn create_collection(
        &self,
        collection: &Collection,
        product_ids: &[ProductId],
    ) -> Result<()> {
        self.create_keyed(collection, Vec::new()).await?;
        self.set_collection_members(&collection.id, product_ids)
            .await
    }

    async fn get_collection(&self, id: &CollectionId) -> Result<Collection> {
        self.read::<Collection>(id.as_str())
            .await?
            .ok_or_else(|| Error::not_found(CollectionId::ENTITY, id.as_str()))
    }

    async fn get_collection_by_slug(&self, slug: &str) -> Result<Collection> {
        self.by_key::<Collection>(slug).await
    }

    async fn get_collections(&self, ids: &[CollectionId]) -> Result<Vec<Collection>> {
        self.read_many(ids.iter().map(CollectionId::as_str)).await
    }

    async fn list_collections(&self) -> Result<Vec<Collection>> {
        let rows: Vec<rows::CollectionRow> = self
            .cql
            .all(SELECT_ALL_COLLECTIONS, (), "listing collections")
            .await?;
        rows.into_iter().map(Collection::from_row).collect()
    }

    async fn update_collection(
        &self,
        collection: &Collection,
        expected: Timestamp,
        product_ids: Option<&[ProductId]>,
    ) -> Result<()> {
        let Some(stored) = self.read::<Collection>(collection.id.as_str()).await? else {
            return Err(Error::not_found(
                CollectionId::ENTITY,
                collection.id.as_str(),
            ));
        };
        if stored.updated_at != expected {
            return Err(Error::Conflict(stored.into_current()));
        }
        let mut next = collection.clone();
        next.created_at = stored.created_at;
        match self.update_keyed(&stored, &next, expected).await? {
            Write::Done => {}
            Write::Stale(current) => {
                return Err(Error::Conflict(current.into_current()));
            }
            Write::Missing => {
                return Err(Error::not_found(
                    CollectionId::ENTITY,
                    collection.id.as_str(),
                ));
            }
        }
        if let Some(ids) = product_ids {
            self.set_collection_members(&collection.id, ids).await?;
        }
        Ok(())
    }

    async fn delete_collection(&self, id: &CollectionId) -> Result<()> {
        if self.read::<Collection>(id.as_str()).await?.is_none() {
            return Err(Error::not_found(CollectionId::ENTITY, id.as_str()));
        }
        // Memberships first: if the entity delete then fails, a retry finishes the job,
        // whereas the other order could leave products listing a deleted collection.
        let mut statements = Vec::new();
        for (created_at, pid) in self.members_of(id).await? {
            statements.push(Self::membership_delete(&pid, created_at, id.as_str()));
        }
        statements.push(vec![(
            DELETE_ALL_COLLECTION_SIDE,
            boxed((id.as_str().to_owned(),)),
        )]);
        self.write_batches(
            statements,
            &format!("removing the products of collection {id:?}"),
        )
        .await?;
        let stored = self.remove::<Collection>(id.as_str()).await?;
        self.release::<Collection>(&stored.slug, id.as_str(), None)
            .await;
        Ok(())
    }

    async fn create_catalog_version(&self, version: &CatalogVersion) -> Result<()> {
        let what = format!("recording catalog version {:?}", version.tag);
        let mut uncertain = false;
        let mut done = false;
        for _ in 0..CAS_ATTEMPTS {
            match self
                .cql
                .cas(INSERT_VERSION, version_values(version), &what)
                .await?
            {
                Cas::Applied => {
                    done = true;
                    break;
                }
                Cas::NotApplied if !uncertain => {
                    return Err(Error::already_exists(
                        "catalog version",
                        "tag",
                        &version.tag,
                    ));
                }
                Cas::NotApplied | Cas::Unknown(_) => {
                    uncertain = true;
                    let row: Option<VersionRow> = self
                        .cql
                        .one(
                            self.cql.serial(SELECT_VERSION),
                            (version.tag.as_str(),),
                            &what,
                        )
                        .await?;
                    match row.map(VersionRow::into_version) {
                        Some(stored) if stored == *version => {
                            done = true;
                            break;
                        }
                        Some(_) => {
                            return Err(Error::already_exists(
                                "catalog version",
                                "tag",
                                &version.tag,
                            ));
                        }
                        None => {}
                    }
                }
            }
        }
        if !done {
            return Err(Error::unavailable(
                what,
                "no answer from the lightweight transaction",
            ));
        }
        if let Err(err) = self
            .cql
            .execute(INSERT_VERSION_BY_TIME, version_values(version), &what)
            .await
        {
            // Without its by-time row the version would never be the latest: undo it.
            let undo = (version.tag.as_str(), ts(version.published_at));
            if let Err(undo_err) = self.cql.cas(DELETE_VERSION, undo, &what).await {
                tracing::warn!(tag = %version.tag, error = %undo_err, "could not undo a half-recorded catalog version");
            }
            return Err(err);
        }
        Ok(())
    }

    async fn latest_catalog_version(&self) -> Result<Option<CatalogVersion>> {
        let row: Option<VersionRow> = self
            .cql
            .one(LATEST_VERSION, (), "reading the latest catalog version")
            .await?;
        Ok(row.map(VersionRow::into_version))
    }

    async fn ping(&self) -> Result<()> {
        self.cql.execute(PING, (), "pinging scylla").await.map(drop)
    }

    async fn close(&self) {
        // The driver closes its connections when the last session handle is dropped;
        // there is nothing to flush, so closing early would only fail in-flight calls.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consistency_names_parse_in_any_case() {
        assert_eq!(
            "LOCAL_QUORUM".parse::<ConsistencyLevel>().unwrap(),
            ConsistencyLevel::LocalQuorum
        );
        assert_eq!(
            "local_one".parse::<ConsistencyLevel>().unwrap(),
            ConsistencyLevel::LocalOne
        );
        assert_eq!(
            "quorum".parse::<ConsistencyLevel>().unwrap(),
            ConsistencyLevel::Quorum
        );
        assert!("LOCAL_SERIAL".parse::<ConsistencyLevel>().is_err());
        assert_eq!(ConsistencyLevel::EachQuorum.to_string(), "EACH_QUORUM");
        assert_eq!(
            "serial".parse::<SerialConsistencyLevel>().unwrap(),
            SerialConsistencyLevel::Serial
        );
        assert_eq!(
            SerialConsistencyLevel::default().to_string(),
            "LOCAL_SERIAL"
        );
        assert!("ONE".parse::<SerialConsistencyLevel>().is_err());
    }

    #[test]
    fn config_debug_hides_the_password() {
        let cfg = ScyllaConfig {
            password: Some("hunter2".to_owned()),
            ..ScyllaConfig::default()
        };
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn months_bucket_by_utc_calendar_month() {
        let t: Timestamp = "2026-01-31T23:59:59.999Z".parse().unwrap();
        assert_eq!(month_of(t), 202_601);
        let t: Timestamp = "2026-02-01T00:00:00.000Z".parse().unwrap();
        assert_eq!(month_of(t), 202_602);
        let t: Timestamp = "1969-12-31T23:59:59.999Z".parse().unwrap();
        assert_eq!(month_of(t), 196_912);
    }
}
