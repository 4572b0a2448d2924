//! Reservations of skus and slugs in `unique_keys`, `((scope, value))`.
//!
//! Reservation rows, like entity rows, are only written with lightweight transactions.
//! A write first reserves its key (`INSERT … IF NOT EXISTS`), then writes the entity;
//! when the entity write definitely did not land it releases the reservation again
//! (`DELETE … IF owner = ? AND claim = ?`). Every reservation carries a random `claim` so
//! that one write can never release a reservation another write of the same entity
//! depends on. A lookup by key goes through the reservation to the entity and checks
//! that the entity still has that key.
//!
//! A crash between reserving a key and writing the entity (or between deleting an entity
//! and releasing its key) leaves a reservation without an entity: lookups ignore it, but
//! it keeps the key taken until the row is deleted by hand. Reclaiming it automatically
//! would need to tell it apart from a write still in flight, which no timeout can do
//! safely, and uniqueness matters more than the rare lost key.

use super::ScyllaStore;
use super::cql::Cas;
use super::index::Group;
use super::lwt::{CAS_ATTEMPTS, Write};
use super::rows::{Entity, ts};
use super::statements::{RELEASE, RESERVE, SELECT_OWNER, SELECT_RESERVATION, TAKE_OVER};
use crate::datastore::{Error, Result, Timestamp};

/// A reservation row as read back.
#[derive(scylla::DeserializeRow)]
struct Reservation {
    owner: Option<String>,
    claim: Option<String>,
}

fn new_claim() -> String {
    ulid::Ulid::new().to_string().to_lowercase()
}

impl ScyllaStore {
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
    pub(super) async fn release<T: Entity>(&self, key: &str, owner: &str, claim: Option<&str>) {
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
    pub(super) async fn by_key<T: Entity>(&self, key: &str) -> Result<T> {
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
    pub(super) async fn create_keyed<T: Entity>(
        &self,
        entity: &T,
        before: Vec<Group>,
    ) -> Result<()> {
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
    pub(super) async fn update_keyed<T: Entity>(
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
                    && owner == stored.id()
                {
                    self.release::<T>(stored.key(), stored.id(), Some(&claim))
                        .await;
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
}
