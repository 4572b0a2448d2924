//! Reservations of skus and slugs in `unique_keys`, `((scope, value))`.
//!
//! Reservation rows, like entity rows, are only written with lightweight transactions.
//! A write first reserves its key, then writes the entity, then confirms the
//! reservation; when the entity write definitely did not land it releases the
//! reservation again (`DELETE … IF owner = ? AND claim = ?`). Every reservation carries a
//! random `claim` so that one write can never release a reservation another write of the
//! same entity depends on. A lookup by key goes through the reservation to the entity
//! and checks that the entity still has that key.
//!
//! # Reclaiming the reservations of crashed writers
//! A reservation is taken *pending*: `INSERT … IF NOT EXISTS USING TTL t`, every cell
//! with the TTL `t` (the store's lease TTL). Once the entity write has landed it is
//! *confirmed*: `UPDATE … SET owner, claim, reserved_at … IF claim = ?` rewrites every
//! cell without a TTL, so the row lives on. A writer that crashes between reserving and
//! confirming leaves a pending row that simply expires after `t`, and the key is free
//! again with no manual step; a lookup ignores it meanwhile (its owner has no entity
//! with that key).
//!
//! Why this cannot let two entities hold one key: a key is only reused after the pending
//! row expired, i.e. `t` after it was written. The writer checks, right before its entity
//! write, that less than `t / 2` has passed since it reserved (`ScyllaStore::fresh`), and
//! otherwise releases and fails; so a live writer's entity write lands while its
//! reservation still stands, and the confirmation follows. Should a writer nevertheless
//! stall past `t` right there (the lease assumption every TTL lock makes), the
//! confirmation finds the key reserved for another entity, and the writer deletes the
//! entity it just created and answers `AlreadyExists`: the duplicate is never reachable
//! by key and is gone as soon as the writer resumes. A confirmation that finds the row
//! taken over by another write of the *same* entity confirms it under that claim, so the
//! entity's key never ends up pending behind a writer that gave up.

use super::ScyllaStore;
use super::changes::Stamp;
use super::cql::Cas;
use super::index::Group;
use super::integrity::Refs;
use super::lwt::{CAS_ATTEMPTS, Write};
use super::rows::{Entity, ts};
use super::statements::{
    CONFIRM, RELEASE, RESERVE, RESERVE_CONFIRMED, SELECT_OWNER, SELECT_RESERVATION, TAKE_OVER,
};
use crate::datastore::{Error, Result, Timestamp};
use std::time::Instant;

/// A pending reservation, held under `claim` since `since`.
pub(super) struct Reserved {
    claim: String,
    since: Instant,
}

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
    pub(super) async fn reserve<T: Entity>(&self, key: &str, owner: &str) -> Result<Reserved> {
        let what = format!("reserving {} {} {key:?}", T::ENTITY, T::KEY_FIELD);
        let claim = new_claim();
        let since = Instant::now();
        let held = |claim: String| Reserved { claim, since };
        for _ in 0..CAS_ATTEMPTS {
            let values = (
                T::KEY_SCOPE,
                key,
                owner,
                claim.as_str(),
                ts(Timestamp::now()),
                self.ttl_seconds(),
            );
            if let Cas::Applied = self.cql.cas(RESERVE, values, &what).await? {
                return Ok(held(claim));
            }
            let Some(found) = self.reservation::<T>(key).await? else {
                continue;
            };
            if found.claim.as_deref() == Some(claim.as_str()) {
                return Ok(held(claim));
            }
            if found.owner.as_deref() != Some(owner) {
                return Err(Error::already_exists(T::ENTITY, T::KEY_FIELD, key));
            }
            let values = (
                self.ttl_seconds(),
                claim.as_str(),
                ts(Timestamp::now()),
                T::KEY_SCOPE,
                key,
                owner,
                found.claim.unwrap_or_default(),
            );
            if let Cas::Applied = self.cql.cas(TAKE_OVER, values, &what).await? {
                return Ok(held(claim));
            }
        }
        Err(Error::unavailable(what, "the reservation kept changing"))
    }

    /// Takes a pending reservation for a test that stands in for a writer crashing right
    /// after it (it never writes the entity): the key stays taken until the lease TTL
    /// expires, then any writer gets it.
    ///
    /// # Errors
    /// As a create: [`Error::AlreadyExists`] when another entity holds the key.
    #[doc(hidden)]
    pub async fn reserve_product_sku_and_crash(&self, sku: &str, owner: &str) -> Result<()> {
        self.reserve::<crate::datastore::Product>(sku, owner)
            .await
            .map(drop)
    }

    /// Confirms a pending reservation after the entity write landed (see the module
    /// docs): `Ok(false)` when another entity holds the key now.
    async fn confirm<T: Entity>(
        &self,
        key: &str,
        owner: &str,
        reserved: &Reserved,
    ) -> Result<bool> {
        let what = format!("confirming {} {} {key:?}", T::ENTITY, T::KEY_FIELD);
        let mut expected = reserved.claim.clone();
        for _ in 0..CAS_ATTEMPTS {
            let values = (
                owner,
                reserved.claim.as_str(),
                ts(Timestamp::now()),
                T::KEY_SCOPE,
                key,
                expected.as_str(),
            );
            if let Cas::Applied = self.cql.cas(CONFIRM, values, &what).await? {
                return Ok(true);
            }
            match self.reservation::<T>(key).await? {
                Some(found) if found.claim.as_deref() == Some(reserved.claim.as_str()) => {
                    if found.owner.as_deref() == Some(owner) {
                        // Our confirmation landed but its answer was lost.
                        return Ok(true);
                    }
                    return Ok(false);
                }
                // Another write of the same entity took it over: confirm under its claim.
                Some(found) if found.owner.as_deref() == Some(owner) => {
                    expected = found.claim.unwrap_or_default();
                }
                Some(_) => return Ok(false),
                None => {
                    let values = (
                        T::KEY_SCOPE,
                        key,
                        owner,
                        reserved.claim.as_str(),
                        ts(Timestamp::now()),
                    );
                    if let Cas::Applied = self.cql.cas(RESERVE_CONFIRMED, values, &what).await? {
                        return Ok(true);
                    }
                }
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
    /// before the entity), checks `refs` (the references the entity makes; see
    /// `integrity.rs`), inserts the entity and confirms the reservation.
    pub(super) async fn create_keyed<T: Entity>(
        &self,
        entity: &T,
        before: Vec<Group>,
        refs: Refs<'_>,
        stamp: &Stamp,
    ) -> Result<()> {
        let reserved = self.reserve::<T>(entity.key(), entity.id()).await?;
        if let Some(existing) = self.read::<T>(entity.id()).await? {
            // Same order of checks as memdb: a key held by that entity is reported first.
            if existing.key() == entity.key() {
                return Err(Error::already_exists(T::ENTITY, T::KEY_FIELD, entity.key()));
            }
            self.release_unless_held::<T>(entity.key(), entity.id(), &reserved.claim)
                .await;
            return Err(Error::already_exists(T::ENTITY, "id", entity.id()));
        }
        let what = format!("creating {} {:?}", T::ENTITY, entity.id());
        let since = refs.since.map_or(reserved.since, |s| s.min(reserved.since));
        let written = async {
            self.write_batches(before, &format!("indexing {} {:?}", T::ENTITY, entity.id()))
                .await?;
            self.verify_refs(&refs).await?;
            self.fresh(since, &what)?;
            self.insert(entity, stamp).await
        }
        .await;
        if written.is_err() {
            // Whether the entity was refused, never written, or its outcome is unknown,
            // the reservation goes only if the entity (read back) does not hold the key.
            self.release_unless_held::<T>(entity.key(), entity.id(), &reserved.claim)
                .await;
            if !matches!(written, Err(Error::Unavailable { .. }))
                && let Err(err) = self.write_batches(refs.undo, &what).await
            {
                // Harmless: memberships are only shown when both ends exist.
                tracing::warn!(entity = T::ENTITY, id = entity.id(), error = %err, "could not remove the memberships of a failed create");
            }
            return written;
        }
        match self
            .confirm::<T>(entity.key(), entity.id(), &reserved)
            .await
        {
            Ok(true) => Ok(()),
            Ok(false) => {
                self.undo_insert(entity, stamp).await;
                Err(Error::already_exists(T::ENTITY, T::KEY_FIELD, entity.key()))
            }
            Err(err) => {
                // Unconfirmed, the reservation would expire under a live entity.
                self.undo_insert(entity, stamp).await;
                Err(err)
            }
        }
    }

    /// Deletes an entity this write has just created, when its key turned out not to be
    /// its own after all. Its change log claim is aborted first, so that no reader
    /// commits the create from its stamp afterwards (when a reader did so already, the
    /// writer having stalled past its lease, the log shows a create the undo reverted).
    async fn undo_insert<T: Entity>(&self, entity: &T, stamp: &Stamp) {
        let what = format!("undoing the creation of {} {:?}", T::ENTITY, entity.id());
        match self.withdraw(stamp).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::error!(
                    entity = T::ENTITY,
                    id = entity.id(),
                    "a create whose key was lost was logged before its undo"
                );
            }
            Err(err) => {
                tracing::warn!(entity = T::ENTITY, id = entity.id(), error = %err, "could not withdraw the change of a create being undone");
            }
        }
        let values = (entity.id(), ts(entity.version()));
        if let Err(err) = self.cql.cas_idempotent(T::DELETE, values, &what).await {
            tracing::error!(entity = T::ENTITY, id = entity.id(), error = %err, "could not undo a create whose key was lost");
        }
    }

    /// Updates an entity under the version check, moving its key reservation when the
    /// key changes. `stored` is the entity as read, with `stored.version() == expected`.
    pub(super) async fn update_keyed<T: Entity>(
        &self,
        stored: &T,
        next: &T,
        expected: Timestamp,
        since: Option<Instant>,
        stamp: &Stamp,
    ) -> Result<Write<T>> {
        let key_changed = stored.key() != next.key();
        let what = format!("updating {} {:?}", T::ENTITY, next.id());
        let (old_claim, new_claim) = if key_changed {
            // Read the old key's claim now: releasing it later under this claim cannot
            // undo a reservation a later write of the same entity takes meanwhile.
            let old = self.reservation::<T>(stored.key()).await?;
            let new = self.reserve::<T>(next.key(), next.id()).await?;
            (old, Some(new))
        } else {
            (None, None)
        };
        let outcome = match (&new_claim, since) {
            (Some(reserved), Some(s)) => self.fresh(s.min(reserved.since), &what),
            (Some(reserved), None) => self.fresh(reserved.since, &what),
            (None, Some(s)) => self.fresh(s, &what),
            (None, None) => Ok(()),
        };
        let outcome = match outcome {
            Ok(()) => self.replace(next, expected, stamp).await,
            Err(err) => Err(err),
        };
        match (&outcome, new_claim) {
            (Ok(Write::Done), Some(reserved)) => {
                match self.confirm::<T>(next.key(), next.id(), &reserved).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::error!(
                            entity = T::ENTITY,
                            id = next.id(),
                            key = next.key(),
                            "an update outlived its key reservation and another entity took the key"
                        );
                    }
                    Err(err) => {
                        tracing::error!(entity = T::ENTITY, id = next.id(), error = %err, "could not confirm a key reservation; it may expire");
                    }
                }
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
            (Ok(Write::Stale(_) | Write::Missing) | Err(_), Some(reserved)) => {
                self.release_unless_held::<T>(next.key(), next.id(), &reserved.claim)
                    .await;
            }
            _ => {}
        }
        outcome
    }
}
