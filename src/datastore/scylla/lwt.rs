//! Entity rows under lightweight transactions (LWT).
//!
//! Entity rows are only ever written with LWTs, so racing writers resolve exactly as on
//! memdb: `INSERT … IF NOT EXISTS` lets one creator win, and `UPDATE … IF updated_at = ?`
//! lets one of several writers holding the same version win; the losers get
//! `AlreadyExists` or a `Conflict` carrying the entity read back at serial consistency.
//! When an LWT's answer is lost (a timeout), the row is read back at serial consistency
//! to learn whether it landed, instead of guessing: a stored row equal to the write
//! ([`Entity::same_write`]) means it landed.

use futures_util::{StreamExt as _, TryStreamExt as _};

use super::changes::{Grave, Stamp};
use super::cql::Cas;
use super::rows::{Entity, ts};
use super::{FETCH_CONCURRENCY, ScyllaStore};
use crate::datastore::{Error, Result, Timestamp};

/// How many times a lightweight transaction is retried after an unknown outcome.
pub(super) const CAS_ATTEMPTS: usize = 5;

/// How a conditional update of an entity ended.
pub(super) enum Write<T> {
    Done,
    Stale(T),
    Missing,
}

impl ScyllaStore {
    pub(super) async fn read<T: Entity>(&self, id: &str) -> Result<Option<T>> {
        let what = format!("reading {} {id:?}", T::ENTITY);
        let row: Option<T::Row> = self.cql.one(T::SELECT, (id,), &what).await?;
        row.map(T::from_row).transpose()
    }

    /// Reads many entities concurrently; absent ones are left out.
    pub(super) async fn read_many<'a, T: Entity>(
        &self,
        ids: impl Iterator<Item = &'a str>,
    ) -> Result<Vec<T>> {
        let ids: Vec<String> = ids.map(str::to_owned).collect();
        futures_util::stream::iter(ids)
            .map(|id| async move { self.read::<T>(&id).await })
            .buffer_unordered(FETCH_CONCURRENCY)
            .try_filter_map(|entity| async move { Ok(entity) })
            .try_collect()
            .await
    }

    /// Reads at serial consistency: sees every committed LWT, completes in-flight ones.
    pub(super) async fn read_serial<T: Entity>(&self, id: &str) -> Result<Option<T>> {
        let what = format!("reading {} {id:?}", T::ENTITY);
        let row: Option<T::Row> = self
            .cql
            .one(self.cql.serial(T::SELECT), (id,), &what)
            .await?;
        row.map(T::from_row).transpose()
    }

    /// Inserts an entity stamped with its write's claim (see `changes/`); every attempt
    /// is sent within the claim's freshness.
    pub(super) async fn insert<T: Entity>(&self, entity: &T, stamp: &Stamp) -> Result<()> {
        let what = format!("creating {} {:?}", T::ENTITY, entity.id());
        let mut uncertain = false;
        for _ in 0..CAS_ATTEMPTS {
            self.fresh(stamp.since, &what)?;
            match self
                .cql
                .cas(T::INSERT, entity.insert_values(stamp), &what)
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

    /// Updates an entity under its version, stamped with its write's claim; the stamp
    /// it overwrites is settled first (see `changes/settle.rs`), and every attempt is sent
    /// within the claim's freshness.
    pub(super) async fn replace<T: Entity>(
        &self,
        entity: &T,
        expected: Timestamp,
        stamp: &Stamp,
    ) -> Result<Write<T>> {
        let what = format!("updating {} {:?}", T::ENTITY, entity.id());
        let mut uncertain = false;
        for _ in 0..CAS_ATTEMPTS {
            self.settle_predecessor::<T>(entity.id(), Some(expected))
                .await?;
            self.fresh(stamp.since, &what)?;
            let answer = self
                .cql
                .cas(T::UPDATE, entity.update_values(expected, stamp), &what)
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

    /// Deletes an entity whatever its version and returns what was deleted; the stamp it
    /// deletes is settled first (see `changes/settle.rs`), and every attempt is sent
    /// before `t / 2` after the delete's claim (see `changes/tombstone.rs`).
    ///
    /// The delete holds the target's tombstone, so only its own delete LWT can remove
    /// the row (a create's undo aside): once an attempt's answer was lost, the row found
    /// gone means that attempt landed, even when a later attempt was refused (it came
    /// after the late landing).
    ///
    /// # Errors
    /// [`Error::NotFound`] when the row was gone before any attempt could land;
    /// [`Error::Unavailable`] when the answers stay lost, or when the stamp of the
    /// version to delete belongs to a write claimed after this delete (the grave is then
    /// marked overtaken, and the delete is retried under a fresh claim, see
    /// `changes/tombstone.rs`).
    pub(super) async fn remove<T: Entity>(&self, id: &str, grave: &Grave) -> Result<T> {
        let what = format!("deleting {} {id:?}", T::ENTITY);
        // The version an attempt whose answer was lost was sent for; never reset.
        let mut lost: Option<T> = None;
        for attempt in 0..CAS_ATTEMPTS {
            let stored = if attempt == 0 {
                self.read::<T>(id).await?
            } else {
                self.read_serial::<T>(id).await?
            };
            let Some(stored) = stored else {
                return lost.ok_or_else(|| Error::not_found(T::ENTITY, id));
            };
            let stamped = self
                .settle_predecessor::<T>(id, Some(stored.version()))
                .await?;
            if grave.overtaken_by(stamped) {
                return Err(Error::unavailable(
                    what,
                    "a write claimed after the delete landed before it",
                ));
            }
            self.fresh(grave.since, &what)?;
            match self
                .cql
                .cas(T::DELETE, (id, ts(stored.version())), &what)
                .await?
            {
                Cas::Applied => return Ok(stored),
                Cas::NotApplied => {}
                Cas::Unknown(_) => lost = Some(stored),
            }
        }
        Err(Error::unavailable(
            what,
            "the entity kept changing while being deleted",
        ))
    }
}
