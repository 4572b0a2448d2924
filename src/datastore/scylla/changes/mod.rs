//! The change log on Scylla: every successful write appends its records (built by
//! [`crate::datastore::changes`]) in the same step as the write, shared by every
//! instance on the keyspace, with no lock and no single row that every write updates.
//!
//! # Rows
//! `change_log` (migration `0004`) has one row per write, keyed by a sequence number
//! `seq` (from 1) and partitioned in buckets of [`BUCKET`] consecutive numbers, so a read
//! is a range scan inside one partition. A row's `status` moves once, always by a
//! lightweight transaction (LWT) conditional on `status = 'pending'`, from `pending` to
//! `committed` or `aborted` (a settler's commit also rewrites `claim`, below); nothing
//! else ever changes a row (retention only deletes
//! rows below the floor, see below). A record's position is `seq << 20 | i`, `i` its
//! index within the row: a row holds at most [`RECORDS_PER_ROW`] records, and a write
//! with more (a collection of thousands of products deleted) puts the rest in further
//! rows appended above its own, so no row grows past a few hundred kilobytes (a reader
//! may then see such a write's first thousand records one poll before the rest).
//!
//! # Writers: claim, write, commit
//! 1. *Claim*: `INSERT … (status 'pending', lease_until = now + t, a random claim token,
//!    the target) IF NOT EXISTS` at the first free `seq` from a hint (the next number
//!    this process knows of from its own claims and reads, or the `sequencer` meta row,
//!    written whenever a claim opens a bucket); a taken number sends the writer past the
//!    bucket's last row (one read), so a lagging hint costs one LWT per bucket, not per
//!    row. `t` is the store's lease TTL (one minute by default). The *target* names the
//!    row the write's linearizing LWT writes: `<table>/<id>` for a create or update of a
//!    product, category or collection, `catalog_versions/<tag>` for a publish, and
//!    `delete:<table>/<id>` for a delete.
//! 2. *Write*: the data write starts only after the claim is acknowledged, and every
//!    attempt of its linearizing LWT is sent less than `t / 2` after the claim
//!    (`ScyllaStore::fresh`, the lease assumption of `integrity.rs` and
//!    `unique_keys.rs`), so the commit normally lands long before any reader may give up
//!    on the row. Its records are computed before that LWT. A create, update or publish
//!    LWT *stamps* its row with the claim's token, `seq` and records (`change_claim`,
//!    `change_seq`, `change_records`; migrations `0005`, `0006`), in the same Paxos
//!    round as the row itself. A delete cannot stamp the row it removes: it first takes
//!    its target's *tombstone* with its claim and records (`tombstone.rs`).
//! 3. *Commit*: once the write has landed, `UPDATE … SET status = 'committed', records =
//!    … IF status = 'pending'`. A rejected write aborts its row the same way and so
//!    appends nothing; a write whose outcome is unknown leaves it `pending`. If the
//!    commit finds the row aborted (a reader gave up on it after its lease), the records
//!    are appended again as a new row inserted directly as `committed` at a higher, free
//!    `seq`: the change comes later, never not at all.
//!
//! # Readers: the watermark
//! A reader scans upwards from its cursor's `seq`: a `committed` row yields its records,
//! an `aborted` row nothing; a `pending` row whose lease is live is the *watermark*: the
//! reader stops there and returns nothing at or beyond it. A `pending` row whose lease
//! ran out is *settled* by the reader: from its target's stamp (below) when that shows
//! the write landed, else aborted (a stamp or tombstone whose records cannot be decoded
//! counts as not landed, logged as an error, rather than stop every reader there; a
//! committed row whose records cannot be decoded is skipped, logged as an error) (`IF status = 'pending'`; when that fails the row is
//! read back at serial consistency and taken as it is); a missing `seq` below one that
//! exists (a hole) is closed by inserting it `aborted` with `IF NOT EXISTS`, so no
//! writer can take it afterwards. [`Datastore::change_head`] is the last record
//! position below the watermark.
//!
//! # Settling from the entity (`settle.rs`)
//! A reader that meets an expired claim with a target reads the target's stamp at
//! serial consistency (which also completes a Paxos round of the writer still in
//! flight; no attempt of that writer's LWT is sent after `t / 2`, and the lease ran out
//! at `t`). If the stamp is this claim's (token and `seq`), the write landed: the reader
//! commits the row with the stamped records (`IF status = 'pending' AND claim = ?`).
//! Otherwise the write never landed and never will: the row is aborted as above. An
//! expired delete claim is settled from its target and tombstone instead: committed
//! exactly when the target row is gone and the tombstone is still the claim's
//! (`tombstone.rs` argues why that is exactly when its delete landed).
//!
//! A stamp or tombstone carries all of the write's records. A settler commits the first
//! [`RECORDS_PER_ROW`] into the claimed row, setting its `claim` to `<token>+<a token of
//! its own>`, and appends the rest as a writer does. Exactly one party's commit of the
//! row applies, and the row's `claim` afterwards names it, so exactly that party appends
//! the rest: a writer that finds its row committed under `<its token>+…` leaves them to
//! the settler, and a settler whose answer was lost recognises its own token. Should the
//! appending party die between its appends, the rest is missing, never doubled.
//!
//! A stamp is overwritten by the next write of the same entity, so that write settles it
//! first: an update (before each attempt of its `IF updated_at = ?` LWT) and a product,
//! collection or category delete (before its delete LWT) read the stamp at serial
//! consistency and, when it belongs to the very version they replace and its log row is
//! still `pending`, commit that row with the stamped records (an answer they cannot
//! learn fails the write as `Unavailable` rather than overwrite the evidence). A writer
//! whose commit then finds its row committed under `<its token>+…` takes it as its own
//! commit (the settler appends any rest). The records of such a write may thus show up while its trailing steps (the
//! membership rows of a product update) are still running.
//!
//! # Why readers see exactly the writes that happened, in one order
//! - *Only writes that happened*: records are read only from `committed` rows, and a row
//!   becomes `committed` only by its writer, after its data write was acknowledged, or
//!   by a reader or a later writer that found the claim's stamp on its entity, which
//!   only the claim's own applied LWT writes, or, for a delete, found the target gone
//!   under the claim's own tombstone, which only the claim's own delete removes.
//! - *Never out of order*: a reader passes a `seq` only once it has seen the row settled
//!   (`committed` or `aborted`, by a QUORUM read of a row only LWTs write, or by its own
//!   applied LWT) or has closed it; settled rows never change again and no writer can
//!   claim an existing `seq`. So once any reader returned position `p`, every `seq` at
//!   or below `p`'s is settled for good, a later claim lands above it, and no reader
//!   ever returns a position `≤ p` it did not return then.
//! - *Never missed*: a write's row is claimed before its data write, so it is `pending`
//!   while the write may land; readers stop at it instead of passing it. After its
//!   lease a reader aborts it only when the serial read of its target shows another
//!   stamp (or none): then the write's LWT did not land (its stamp would be there, or
//!   would have been settled by the write that overwrote it, which is conditional on
//!   the version the stamp came with) and, being past `t / 2`, never will. A write that
//!   landed is therefore committed, by its writer, a reader or the next writer of its
//!   entity, in its own row. A delete claim is aborted only when its target is present
//!   after its lease, or gone under another claim's tombstone (`tombstone.rs`). For a
//!   writer that outlives its lease anyway (writes of `log_changes_around` carry no
//!   target), the writer, finding its row aborted, appends the records anew above every
//!   reader: late (after records of writes that happened after them; each record
//!   carries its entity's `version`), never lost, never twice.
//!
//! Holes can only come from retention or a hand-edited table (writers never skip
//! numbers: each claim targets at most one past the highest row it knows of), but a
//! reader closes any it meets below an existing row; positions are therefore
//! increasing but not dense (an aborted row, or a row with fewer than 2^20 records,
//! leaves unused positions).
//!
//! # Unknown outcomes and crashes
//! - Every write but a test's names a target: a create, update, delete or publish whose
//!   writer dies after its data write, or whose outcome the writer could not learn (it
//!   answers `Unavailable` and leaves its claim `pending` instead of aborting it), is
//!   settled from its stamp or tombstone by the first reader (or the pruner) after its
//!   lease, or earlier by the next write of the same entity (an update's stamp; a
//!   delete's tombstone by the next delete of the entity): its change is in the log
//!   exactly when its data write landed, with the records computed before it. Those of
//!   a product or collection delete list the memberships read just before its delete
//!   LWT; its writer commits those it reads after (complete, see `integrity.rs`) and
//!   rewrites the tombstone when they differ, so only a delete whose writer died in the
//!   moment between those reads, or stalled past its lease before the rewrite (a reader
//!   then commits the row from the tombstone as first written), logs a membership
//!   change that raced it as it was then.
//! - A create whose key reservation was lost after its insert landed (`unique_keys`),
//!   and a publish whose by-time row failed (`versions.rs`), take their row back. They
//!   first abort their claim (`IF status = 'pending' AND claim = ?`), so no reader
//!   commits it from the stamp afterwards. A publish that finds its claim committed
//!   (the writer stalled past its lease and a reader settled it) keeps its tag; a create
//!   that does must still go (the key is another entity's), and the log then shows a
//!   create its undo reverted. A create's undo also deletes its row without a
//!   tombstone: a delete of that brand-new entity whose writer died between its
//!   tombstone and its delete LWT is then committed although the undo removed the row
//!   (both need a writer past its lease; the log's net effect, the entity gone, holds).
//! - A claim or append whose LWT answer is lost is read back at serial consistency and
//!   recognised by its claim token; if it is not there the writer tries the same `seq`
//!   again, and reads a refusal there back too (the lost request may have landed just
//!   before the retry), so neither is ever taken twice. Should a lost *claim* land when
//!   its writer has given up on it (its read-back failed), it is a `pending` row nobody
//!   commits, aborted by the first reader after its lease: it delays readers, it never
//!   shows a record. A lost append is not repeated when its read-back fails (below).
//! - A commit whose answer is lost is retried; the row read back tells whether it landed.
//!   When the cluster stops answering altogether, the write is answered `Unavailable`
//!   (it did land) and the commit goes on in a background task for ten minutes: once a
//!   reader has aborted the row, the records are appended instead. Only the claimed row
//!   is retried there, the one step whose repetition cannot record a change twice; an
//!   append whose answer and read-back both fail is not repeated (the change may then
//!   be missing, never doubled).
//! - Leases compare the writer's clock (`lease_until`) with the reader's: clocks must
//!   agree to well within `t / 2`, as for every lease here.
//!
//! # Retention
//! [`Datastore::prune_changes`] walks from the floor (the first `seq` kept) like a
//! reader, settling what it meets, and stops at the watermark or at the first row with a
//! record not older than the cut. It moves the floor in the `pruned` meta row by LWT
//! (`IF seq = <old floor>`, so racing pruners never move it back), then deletes the rows
//! below it (whole partitions where it can). A writer whose stale hint lands a claim in
//! the deleted range would be invisible, so writers read the floor after claiming (in
//! parallel with their data write) and append elsewhere when below it. Such a row is
//! the writer's alone: a settler that reaches it through a stamp or tombstone leaves it
//! alone (a delete waiting for the tombstone judges the claim from its target without
//! touching the row), and the writer aborts it by LWT and appends only when it is
//! aborted (an earlier commit of its own whose answer was lost is found instead), so
//! the records are logged once. A writer whose claimed row is gone when it commits
//! (settled, then pruned) takes it as committed by a settler when it names a target: a
//! settler never aborts a targeted write that landed. And readers read
//! the floor after their scan and drop what lies below it, so a row placed there and
//! then moved is never returned twice.
//!
//! # Cost
//! A successful write adds two LWTs (claim, commit) and one QUORUM read of the floor,
//! run alongside the data write; a rejected write adds its claim and its abort (the
//! claim is taken before the write's own checks, to keep one wrapper for every write:
//! [`ScyllaStore::logged`]). A `seq` taken by a racing writer costs one more LWT and one
//! read. All writers of the keyspace serialise through Paxos on the current bucket's
//! partition: plenty for a catalogue (the racing test's 200 creates from 8 tasks over 4
//! sessions take a few seconds on one Cassandra node), and the limit should the write
//! rate grow by orders of magnitude. A writer that crashes holding a claim, or a write
//! that answered `Unavailable`, holds every reader back for up to `t`.
//!
//! Stamps add: the target on the claim and three columns on the entity or tag row (its
//! records JSON stays there until the next write of the entity); for each update
//! attempt and each product, collection or category delete, one serial read of the
//! stamp and one QUORUM read of the stamp's log row (plus a commit LWT, rarely: only
//! when that row is still pending); for a reader, one serial read per expired claim it
//! settles. Tombstones add to each delete one LWT (taking it) and a read of what it
//! deletes before it (the entity, and a product's collections or a collection's
//! members), plus one LWT `2t` after its commit (removing it, in the background) or
//! right after a refused delete (releasing it), and a rewrite LWT when memberships
//! changed in between; to a reader, a second serial read per expired delete claim whose
//! target is gone. An undone create or publish adds one LWT (the abort of its claim).
//!
//! # Files
//! `write.rs`: claims, commits, appends ([`write::Log`]); `read.rs`: the walk that settles
//! rows, `read_changes`, `change_head` and retention; `settle.rs`: stamps, and settling a
//! claim from its entity; `tombstone.rs`: deletes, their tombstones, and settling a
//! delete claim; `crash.rs`: test hooks for writers that die mid-write.
//!
//! [`Datastore::change_head`]: crate::datastore::Datastore::change_head
//! [`Datastore::prune_changes`]: crate::datastore::Datastore::prune_changes

mod crash;
mod read;
mod settle;
mod tombstone;
mod write;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use scylla::value::CqlTimestamp;
use serde::{Deserialize, Serialize};

pub(super) use self::settle::{Stamp, Ticket};
pub(super) use self::tombstone::Grave;
use self::write::Log;
use super::ScyllaStore;
use crate::datastore::{Change, Error, Result, Timestamp};

/// Consecutive sequence numbers per partition.
pub(super) const BUCKET: i64 = 4096;
/// Bits of a position that number the records of one row.
const INDEX_BITS: u32 = 20;
/// Records stored in one row (far below `2^INDEX_BITS`).
const RECORDS_PER_ROW: usize = 1000;

const PENDING: &str = "pending";
const COMMITTED: &str = "committed";
const ABORTED: &str = "aborted";

const CLAIM: &str = "INSERT INTO change_log (bucket, seq, status, lease_until, claim, \
     target) VALUES (?, ?, 'pending', ?, ?, ?) IF NOT EXISTS";
const APPEND: &str = "INSERT INTO change_log (bucket, seq, status, claim, records, \
     record_count, newest) VALUES (?, ?, 'committed', ?, ?, ?, ?) IF NOT EXISTS";
const COMMIT: &str = "UPDATE change_log SET status = 'committed', records = ?, \
     record_count = ?, newest = ? WHERE bucket = ? AND seq = ? IF status = 'pending'";
const ABORT: &str =
    "UPDATE change_log SET status = 'aborted' WHERE bucket = ? AND seq = ? IF status = 'pending'";
const SELECT_ROW: &str = "SELECT seq, status, lease_until, claim, target, records, \
     record_count, newest FROM change_log WHERE bucket = ? AND seq = ?";
const SELECT_TAIL: &str = "SELECT seq FROM change_log WHERE bucket = ? ORDER BY seq DESC LIMIT 1";
const DELETE_ROW: &str = "DELETE FROM change_log WHERE bucket = ? AND seq = ?";
const SELECT_META: &str = "SELECT seq, position FROM change_log_meta WHERE name = ?";
const SET_HINT: &str = "UPDATE change_log_meta SET seq = ? WHERE name = 'sequencer'";

/// A row of `change_log`.
#[derive(scylla::DeserializeRow)]
pub(super) struct LogRow {
    seq: i64,
    status: Option<String>,
    lease_until: Option<CqlTimestamp>,
    claim: Option<String>,
    /// `<table>/<id>`: the entity row the claim's write stamps (see `settle.rs`).
    target: Option<String>,
    records: Option<String>,
    record_count: Option<i32>,
    newest: Option<CqlTimestamp>,
}

impl LogRow {
    fn count(&self) -> u64 {
        u64::try_from(self.record_count.unwrap_or(0)).unwrap_or(0)
    }
}

/// A claimed, still pending row.
pub(super) struct Claim {
    seq: i64,
    token: String,
    /// When the claim was sent: the data write must happen before `t / 2` after it.
    pub(super) since: Instant,
    /// Whether the claim names a target (its write is settled from a stamp or tombstone).
    targeted: bool,
}

impl Claim {
    fn ticket(&self) -> Ticket {
        Ticket {
            since: self.since,
            claim: self.token.clone(),
            seq: self.seq,
        }
    }
}

/// A write that failed; `landed` holds its records when part of it landed all the same
/// (a product write whose membership write failed afterwards), so they are committed.
pub(super) struct Failed {
    pub(super) error: Error,
    pub(super) landed: Option<Vec<Change>>,
}

impl From<Error> for Failed {
    fn from(error: Error) -> Self {
        Self {
            error,
            landed: None,
        }
    }
}

/// What a logged write returns: its change records, or why it failed.
pub(super) type Logged = std::result::Result<Vec<Change>, Failed>;

/// One change record as stored in the JSON of a row.
#[derive(Serialize, Deserialize)]
struct Stored {
    kind: String,
    entity: String,
    id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version: Option<i64>,
    at: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    fields: String,
}

/// A chunk of records ready to bind: JSON, count, newest `at`.
type Encoded = (String, i32, CqlTimestamp);

fn encode(chunk: &[Change]) -> Result<Encoded> {
    let stored: Vec<Stored> = chunk
        .iter()
        .map(|c| Stored {
            kind: c.kind.as_str().to_owned(),
            entity: c.entity.as_str().to_owned(),
            id: c.id.clone(),
            version: c.version.map(Timestamp::millis),
            at: c.at.millis(),
            fields: c.fields_joined(),
        })
        .collect();
    encode_stored(&stored)
}

fn encode_stored(stored: &[Stored]) -> Result<Encoded> {
    let json =
        serde_json::to_string(stored).map_err(|e| Error::internal("encoding change records", e))?;
    let newest = stored.iter().map(|c| c.at).max().unwrap_or(0);
    let count = i32::try_from(stored.len()).unwrap_or(i32::MAX);
    Ok((json, count, CqlTimestamp(newest)))
}

/// Who committed a row claimed under `token`: `Some(true)` its writer (the claim kept),
/// `Some(false)` a settler (which commits it as `<token>+<its own token>`, see
/// `settle.rs`), `None` neither.
fn committed_by(row: &LogRow, token: &str) -> Option<bool> {
    let claim = row.claim.as_deref()?;
    if claim == token {
        Some(true)
    } else if claim
        .strip_prefix(token)
        .is_some_and(|rest| rest.starts_with('+'))
    {
        Some(false)
    } else {
        None
    }
}

/// The position of record `index` of row `seq`.
fn position(seq: i64, index: u64) -> u64 {
    (u64::try_from(seq).unwrap_or(0) << INDEX_BITS) | index
}

/// The row a position lies in.
fn seq_of(position: u64) -> i64 {
    i64::try_from(position >> INDEX_BITS).unwrap_or(i64::MAX)
}

const fn bucket_of(seq: i64) -> i64 {
    seq / BUCKET
}

fn millis_from_now(d: std::time::Duration) -> CqlTimestamp {
    let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    CqlTimestamp(Timestamp::now().millis().saturating_add(ms))
}

fn new_token() -> String {
    ulid::Ulid::new().to_string().to_lowercase()
}

impl ScyllaStore {
    /// The change log's writer handles.
    fn log(&self) -> Log {
        Log {
            cql: Arc::clone(&self.cql),
            next: Arc::clone(&self.change_next),
            lease_ttl: self.lease_ttl,
        }
    }

    /// Runs a write between a claim and its commit (see the module docs): `write` gets
    /// the claim's ticket (its time, for freshness checks, and what to stamp the entity
    /// row with) and returns the write's records. `target` is the entity row (`<table>/
    /// <id>`) whose linearizing LWT carries the stamp, when the write stamps one.
    pub(super) async fn logged<Fut>(
        &self,
        target: Option<String>,
        write: impl FnOnce(Ticket) -> Fut,
    ) -> Result<()>
    where
        Fut: Future<Output = Logged>,
    {
        let log = self.log();
        let claim = log.take_seq(None, target.as_deref()).await?;
        let ticket = claim.ticket();
        let (outcome, floor) =
            futures_util::future::join(Box::pin(write(ticket)), log.change_floor()).await;
        match outcome {
            Ok(records) => log.deliver(claim, &records, floor.map(|f| f.0)).await,
            Err(Failed {
                error,
                landed: Some(records),
            }) => {
                if let Err(err) = log.deliver(claim, &records, floor.map(|f| f.0)).await {
                    tracing::error!(error = %err, "could not record the changes of a partly landed write");
                }
                Err(error)
            }
            Err(Failed {
                error: error @ Error::Unavailable { .. },
                ..
            }) if target.is_some() => {
                // The outcome is unknown: the claim stays pending, and a reader settles it
                // from the entity's stamp once its lease has run out.
                Err(error)
            }
            Err(Failed { error, .. }) => {
                log.abort_claim(&claim).await;
                Err(error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datastore::{ChangeEntity, ChangeKind};

    #[test]
    fn positions_number_rows_then_records() {
        assert_eq!(position(1, 0), 1 << 20);
        assert_eq!(position(3, 7), (3 << 20) | 7);
        assert_eq!(seq_of(position(42, 999)), 42);
        assert!(position(2, 0) > position(1, (RECORDS_PER_ROW - 1) as u64));
        assert_eq!(bucket_of(4095), 0);
        assert_eq!(bucket_of(4096), 1);
    }

    #[test]
    fn records_round_trip_through_their_stored_form() {
        let changes = vec![
            Change {
                kind: ChangeKind::Updated,
                entity: ChangeEntity::Product,
                id: "p1".into(),
                version: Some(Timestamp::from_millis(5)),
                at: Timestamp::from_millis(5),
                changed_fields: vec!["title".into(), "price".into()],
            },
            Change {
                kind: ChangeKind::Deleted,
                entity: ChangeEntity::Collection,
                id: "c\"1".into(),
                version: None,
                at: Timestamp::from_millis(9),
                changed_fields: Vec::new(),
            },
        ];
        let (json, count, newest) = encode(&changes).unwrap();
        assert_eq!((count, newest.0), (2, 9));
        let row = LogRow {
            seq: 1,
            status: Some(COMMITTED.into()),
            lease_until: None,
            claim: None,
            target: None,
            records: Some(json),
            record_count: Some(count),
            newest: Some(newest),
        };
        assert_eq!(read::decode(&row).unwrap(), changes);
    }
}
