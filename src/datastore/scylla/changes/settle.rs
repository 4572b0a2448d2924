//! Settling a claim from the entity row its write targets (see "Settling from the
//! entity" in the parent module): the stamp a linearizing write leaves on its row, the
//! reader that commits an expired claim whose stamp it finds, and the writer that
//! settles the claim of the stamp it is about to overwrite. Claims of deletes are settled
//! from their tombstone instead (`tombstone.rs`).

use scylla::value::CqlTimestamp;

use super::tombstone::DELETE_PREFIX;
use super::{
    COMMITTED, LogRow, PENDING, RECORDS_PER_ROW, SELECT_ROW, Stored, bucket_of, committed_by,
    encode, encode_stored, new_token,
};
use crate::datastore::scylla::ScyllaStore;
use crate::datastore::scylla::cql::Cas;
use crate::datastore::scylla::lwt::CAS_ATTEMPTS;
use crate::datastore::scylla::rows::Entity;
use crate::datastore::{Category, Change, Collection, Error, Product, Result, Timestamp};

const COMMIT_CLAIM: &str = "UPDATE change_log SET status = 'committed', claim = ?, \
     records = ?, record_count = ?, newest = ? WHERE bucket = ? AND seq = ? \
     IF status = 'pending' AND claim = ?";
const WITHDRAW_CLAIM: &str = "UPDATE change_log SET status = 'aborted' WHERE bucket = ? \
     AND seq = ? IF status = 'pending' AND claim = ?";
/// The stamp of a catalogue version (its `published_at` is its version).
const VERSION_STAMP: &str = "SELECT published_at AS updated_at, change_claim, change_seq, \
     change_records FROM catalog_versions WHERE tag = ?";

/// What a write's linearizing LWT writes into its entity row besides the entity: its
/// claim and all its records (`None` only in stamps of older versions, which stored
/// none past one log row's worth).
pub(in crate::datastore::scylla) struct Stamp {
    pub(in crate::datastore::scylla) claim: String,
    pub(in crate::datastore::scylla) seq: i64,
    pub(in crate::datastore::scylla) records: Option<String>,
    /// When the claim was taken: every attempt of the linearizing LWT is sent before
    /// `t / 2` after it (`ScyllaStore::fresh`), so a reader settling the claim after `t`
    /// cannot be overtaken by it.
    pub(in crate::datastore::scylla) since: std::time::Instant,
}

/// What a logged write gets from its claim: the claim's time, token and `seq`.
pub(in crate::datastore::scylla) struct Ticket {
    pub(in crate::datastore::scylla) since: std::time::Instant,
    pub(super) claim: String,
    pub(super) seq: i64,
}

impl Ticket {
    /// The stamp of this write, given its records (known before its linearizing LWT).
    ///
    /// # Errors
    /// [`Error::Internal`] when the records cannot be encoded.
    pub(in crate::datastore::scylla) fn stamp(&self, records: &[Change]) -> Result<Stamp> {
        Ok(Stamp {
            claim: self.claim.clone(),
            seq: self.seq,
            records: Some(encode(records)?.0),
            since: self.since,
        })
    }
}

/// What settling a claim from its stamp came to.
pub(super) enum Settled {
    /// The row is committed (by this reader or another party).
    Committed(LogRow),
    /// Still pending: a commit whose answer was lost may yet land.
    Pending,
    /// The write did not land (or its records cannot be rebuilt): abort the row.
    NotLanded,
}

/// An entity row's stamp.
#[derive(scylla::DeserializeRow)]
pub(super) struct StampRow {
    updated_at: Option<CqlTimestamp>,
    change_claim: Option<String>,
    change_seq: Option<i64>,
    change_records: Option<String>,
}

/// The stamp statement of a target table (`target` is `<table>/<id>`).
pub(super) fn stamp_of(target: &str) -> Option<(&'static str, &str)> {
    let (table, id) = target.split_once('/')?;
    let statement = match table {
        "products" => Product::STAMP,
        "categories" => Category::STAMP,
        "collections" => Collection::STAMP,
        "catalog_versions" => VERSION_STAMP,
        _ => return None,
    };
    Some((statement, id))
}

impl ScyllaStore {
    pub(super) async fn read_stamp(&self, statement: &str, id: &str) -> Result<Option<StampRow>> {
        self.cql
            .one(
                self.cql.serial(statement),
                (id,),
                "reading the change stamp of an entity",
            )
            .await
    }

    /// Before a write overwrites or deletes the row of `T` `id` (at version `expected`,
    /// when it is conditional on one): commits the log row of the write that stamped it
    /// if that row is still pending, so that no write's evidence is lost while its claim
    /// may still need it. The row is read at serial consistency, so a stamp written by a
    /// committed or in-flight LWT is seen. Returns the stamp's `seq` when the stamp is
    /// that of the version the write replaces (a delete compares it with its own).
    ///
    /// A pending row below retention's floor is left alone: its writer aborts it and
    /// appends its records above the floor (`write.rs`), so a settler's commit there
    /// would log them twice.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when the stamp or the log row cannot be read or written.
    pub(in crate::datastore::scylla) async fn settle_predecessor<T: Entity>(
        &self,
        id: &str,
        expected: Option<Timestamp>,
    ) -> Result<Option<i64>> {
        let Some(stamp) = self.read_stamp(T::STAMP, id).await? else {
            return Ok(None);
        };
        if let Some(v) = expected
            && stamp.updated_at.map(|t| t.0) != Some(v.millis())
        {
            // The write's own condition fails: it overwrites nothing.
            return Ok(None);
        }
        let (Some(claim), Some(seq)) = (stamp.change_claim, stamp.change_seq) else {
            return Ok(None);
        };
        let row: Option<LogRow> = self
            .cql
            .one(
                SELECT_ROW,
                (bucket_of(seq), seq),
                "reading a change log row",
            )
            .await?;
        if row.is_some_and(|r| r.status.as_deref() == Some(PENDING))
            && seq >= self.log().change_floor().await?.0
            && matches!(
                self.commit_stamped(seq, &claim, stamp.change_records.as_deref())
                    .await?,
                Settled::Pending
            )
        {
            return Err(Error::unavailable(
                "settling the change of an earlier write",
                "no answer from the lightweight transaction",
            ));
        }
        Ok(Some(seq))
    }

    /// For a reader: the claim `row` (pending, lease expired) as its target's stamp
    /// tells: committed when the stamp is this claim's (the write landed), `NotLanded`
    /// when it is not (or the claim names no target), so the reader aborts it.
    pub(super) async fn settle_from_entity(&self, row: &LogRow) -> Result<Settled> {
        let (Some(target), Some(claim)) = (row.target.as_deref(), row.claim.as_deref()) else {
            return Ok(Settled::NotLanded);
        };
        if let Some(deleted) = target.strip_prefix(DELETE_PREFIX) {
            return self.settle_delete(row, deleted, claim).await;
        }
        let Some((statement, id)) = stamp_of(target) else {
            return Ok(Settled::NotLanded);
        };
        let stamp = self.read_stamp(statement, id).await?;
        match stamp {
            Some(StampRow {
                change_claim: Some(c),
                change_seq: Some(s),
                change_records,
                ..
            }) if c == claim && s == row.seq => {
                self.commit_stamped(row.seq, claim, change_records.as_deref())
                    .await
            }
            _ => Ok(Settled::NotLanded),
        }
    }

    /// Aborts the still pending claim of a write that is about to take back what its
    /// stamp shows (an undone create or publish), so that no reader commits it from the
    /// stamp afterwards: `Ok(true)` when the claim is aborted, `Ok(false)` when it was
    /// committed first (a reader or a later writer settled it from the stamp).
    ///
    /// # Errors
    /// [`Error::Unavailable`] when the claim's fate cannot be learnt.
    pub(in crate::datastore::scylla) async fn withdraw(&self, stamp: &Stamp) -> Result<bool> {
        let what = "withdrawing a change log claim";
        for _ in 0..CAS_ATTEMPTS {
            let values = (bucket_of(stamp.seq), stamp.seq, stamp.claim.as_str());
            if let Cas::Applied = self.cql.cas(WITHDRAW_CLAIM, values, what).await? {
                return Ok(true);
            }
            match self.log().log_row_serial(stamp.seq).await? {
                Some(r)
                    if r.status.as_deref() == Some(COMMITTED)
                        && committed_by(&r, &stamp.claim).is_some() =>
                {
                    return Ok(false);
                }
                Some(r) if r.status.as_deref() == Some(PENDING) => {}
                // Aborted (or gone: then it lies below retention's floor, unread).
                _ => return Ok(true),
            }
        }
        Err(Error::unavailable(
            what,
            "no answer from the lightweight transaction",
        ))
    }

    /// Commits pending row `seq` of claim `claim` with the stamped `records` (JSON).
    pub(super) async fn commit_stamped(
        &self,
        seq: i64,
        claim: &str,
        records: Option<&str>,
    ) -> Result<Settled> {
        let what = "committing a change log row from its entity";
        let Some(json) = records else {
            // Only a stamp written before stamps carried every record lacks them.
            tracing::error!(
                seq,
                "a write whose stamp lacks its records landed but never committed; its records are lost"
            );
            return Ok(Settled::NotLanded);
        };
        let stored: Vec<Stored> = match serde_json::from_str(json) {
            Ok(stored) => stored,
            Err(err) => {
                // One corrupt stamp must not stop every reader at this row: settled as
                // not landed, like a stamp without records.
                tracing::error!(seq, error = %err, "the records of a write's stamp or tombstone cannot be read; its change is dropped from the log");
                return Ok(Settled::NotLanded);
            }
        };
        let mut chunks = stored.chunks(RECORDS_PER_ROW);
        let first = encode_stored(chunks.next().unwrap_or_default())?;
        // Committed under a token of this settler's own, so that exactly the party whose
        // commit applied appends the rest (see `write.rs`, `Placed::Settled`).
        let settler = format!("{claim}+{}", new_token());
        let values = (
            settler.as_str(),
            first.0.as_str(),
            first.1,
            first.2,
            bucket_of(seq),
            seq,
            claim,
        );
        let mine = match self.cql.cas(COMMIT_CLAIM, values, what).await? {
            Cas::Applied => None,
            Cas::NotApplied | Cas::Unknown(_) => match self.log().log_row_serial(seq).await? {
                Some(r)
                    if r.status.as_deref() == Some(COMMITTED)
                        && r.claim.as_deref() == Some(settler.as_str()) =>
                {
                    Some(r)
                }
                Some(r) if r.status.as_deref() == Some(COMMITTED) => {
                    return Ok(Settled::Committed(r));
                }
                Some(r) if r.status.as_deref() == Some(PENDING) => return Ok(Settled::Pending),
                _ => return Ok(Settled::NotLanded),
            },
        };
        let log = self.log();
        for chunk in chunks {
            let appended = async { log.append(&encode_stored(chunk)?).await };
            if let Err(err) = appended.await {
                tracing::error!(seq, error = %err, "could not append the rest of a settled write's records: they are missing from the log");
                break;
            }
        }
        Ok(Settled::Committed(mine.unwrap_or(LogRow {
            seq,
            status: Some(COMMITTED.to_owned()),
            lease_until: None,
            claim: Some(settler),
            target: None,
            records: Some(first.0),
            record_count: Some(first.1),
            newest: Some(first.2),
        })))
    }
}
