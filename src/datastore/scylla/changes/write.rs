//! Writers of the change log: claims, commits and appends (see the parent module for
//! the protocol). [`Log`] holds only shared handles, so a commit that must outlive its
//! request (the cluster stopped answering) can go on in a background task.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use scylla::value::MaybeUnset;

use super::{
    ABORT, APPEND, BUCKET, CLAIM, COMMIT, COMMITTED, Claim, DELETE_ROW, Encoded, LogRow, PENDING,
    RECORDS_PER_ROW, SELECT_META, SELECT_ROW, SELECT_TAIL, SET_HINT, bucket_of, committed_by,
    encode, millis_from_now, new_token,
};
use crate::datastore::scylla::cql::{Cas, Cql};
use crate::datastore::scylla::lwt::CAS_ATTEMPTS;
use crate::datastore::{Change, Error, Result};

/// How long a commit that met an outage is retried in the background.
const REDELIVER_FOR: Duration = Duration::from_secs(600);
/// Sequence numbers a writer tries before giving up.
const CLAIM_ATTEMPTS: usize = 64;

/// Where the first chunk of a write's records went.
enum Placed {
    /// Into the claimed row, by this writer: it appends the rest.
    Mine,
    /// Into the claimed row, by a settler (from the write's stamp or tombstone), which
    /// appends the rest itself.
    Settled,
    /// Nowhere yet: the claim was aborted or lies below the floor.
    Not,
}

/// The writer's handles: the session, this process's next sequence number, the lease.
pub(super) struct Log {
    pub(super) cql: Arc<Cql>,
    pub(super) next: Arc<AtomicI64>,
    pub(super) lease_ttl: Duration,
}

impl Log {
    /// `(floor, pruned_through)`: the first `seq` retention kept and the highest
    /// position it removed.
    pub(super) async fn change_floor(&self) -> Result<(i64, u64)> {
        let row: Option<(Option<i64>, Option<i64>)> = self
            .cql
            .one(SELECT_META, ("pruned",), "reading the change log floor")
            .await?;
        let (seq, pos) = row.unwrap_or((None, None));
        let pruned = pos.and_then(|p| u64::try_from(p).ok()).unwrap_or(0);
        Ok((seq.unwrap_or(1).max(1), pruned))
    }

    /// Inserts a row at the first free `seq` from the hint: `pending` for a claim, or
    /// `committed` with `records` for an append.
    pub(super) async fn take_seq(
        &self,
        records: Option<&Encoded>,
        target: Option<&str>,
    ) -> Result<Claim> {
        let what = "claiming a change log position";
        let token = new_token();
        let mut seq = match self.next.load(Ordering::Acquire) {
            0 => {
                let hint: Option<(Option<i64>, Option<i64>)> =
                    self.cql.one(SELECT_META, ("sequencer",), what).await?;
                let hint = hint.and_then(|h| h.0).unwrap_or(1);
                hint.max(self.change_floor().await?.0)
            }
            next => next,
        };
        // The number an attempt whose answer was lost (and whose row was not found) was
        // sent for: that attempt may still land before the next one there.
        let mut lost_at = None;
        for _ in 0..CLAIM_ATTEMPTS {
            let since = Instant::now();
            let bucket = bucket_of(seq);
            let answer = match records {
                None => {
                    let lease = millis_from_now(self.lease_ttl);
                    let target = target.map_or(MaybeUnset::Unset, MaybeUnset::Set);
                    let values = (bucket, seq, lease, token.as_str(), target);
                    self.cql.cas(CLAIM, values, what).await?
                }
                Some((json, count, newest)) => {
                    let values = (bucket, seq, token.as_str(), json.as_str(), *count, *newest);
                    self.cql.cas(APPEND, values, what).await?
                }
            };
            let ours = match answer {
                Cas::Applied => true,
                // Refused after a lost attempt at the same number: perhaps by that
                // attempt's own row, landed late. The token tells.
                Cas::NotApplied if lost_at == Some(seq) => self
                    .log_row_serial(seq)
                    .await?
                    .is_some_and(|row| row.claim.as_deref() == Some(token.as_str())),
                Cas::NotApplied => false,
                Cas::Unknown(_) => match self.log_row_serial(seq).await? {
                    Some(row) => row.claim.as_deref() == Some(token.as_str()),
                    // Not there: try the same number again rather than leave a hole.
                    None => {
                        lost_at = Some(seq);
                        continue;
                    }
                },
            };
            if ours {
                self.next.fetch_max(seq + 1, Ordering::AcqRel);
                if seq % BUCKET == 0
                    && let Err(err) = self.cql.execute(SET_HINT, (seq,), what).await
                {
                    tracing::warn!(error = %err, "could not advance the change log sequencer hint");
                }
                return Ok(Claim {
                    seq,
                    token,
                    since,
                    targeted: target.is_some(),
                });
            }
            // Taken: go past the last row of its bucket (the end of the log, usually).
            let tail: Option<(i64,)> = self.cql.one(SELECT_TAIL, (bucket,), what).await?;
            seq = tail.map_or(seq + 1, |(t,)| t.max(seq) + 1);
        }
        Err(Error::unavailable(what, "every position tried was taken"))
    }

    pub(super) async fn log_row_serial(&self, seq: i64) -> Result<Option<LogRow>> {
        self.cql
            .one(
                self.cql.serial(SELECT_ROW),
                (bucket_of(seq), seq),
                "reading a change log row",
            )
            .await
    }

    /// Commits a write's records: the first chunk into its claimed row, the rest (and the
    /// first, when the claim was aborted or fell below the floor) appended above. When
    /// the claimed row's fate cannot be learnt now (the cluster does not answer), the
    /// commit goes on in the background ([`Log::redeliver_later`]) and the error is
    /// returned.
    pub(super) async fn deliver(
        self,
        claim: Claim,
        records: &[Change],
        floor: Result<i64>,
    ) -> Result<()> {
        let mut chunks = records.chunks(RECORDS_PER_ROW);
        let first = encode(chunks.next().unwrap_or_default())?;
        let rest = chunks.map(encode).collect::<Result<Vec<_>>>()?;
        match self.place_claim(&claim, &first, floor.ok(), false).await {
            Ok(Placed::Mine) => {}
            Ok(Placed::Settled) => return Ok(()),
            Ok(Placed::Not) => self.append(&first).await?,
            Err(err) => {
                self.redeliver_later(claim, first, rest);
                return Err(err);
            }
        }
        for chunk in &rest {
            self.append(chunk).await?;
        }
        Ok(())
    }

    /// Commits the first chunk into the claimed row: [`Placed::Not`] when it must be
    /// appended instead (the claim was aborted, or lies below the floor). Safe to call
    /// again after an error: every step reads back what an earlier one did.
    async fn place_claim(
        &self,
        claim: &Claim,
        first: &Encoded,
        floor: Option<i64>,
        again: bool,
    ) -> Result<Placed> {
        let floor = match floor {
            Some(f) => f,
            None => self.change_floor().await?.0,
        };
        if claim.seq >= floor {
            return self.commit_claim(claim, first).await;
        }
        // A stale hint put the claim below retention's floor, where nobody reads. Settlers
        // leave such a row alone (`settle.rs`, `tombstone.rs`), so this writer aborts it
        // and appends its records above; it is aborted by LWT, not deleted, so that a
        // commit of the row (an earlier attempt of ours whose answer was lost) is seen.
        let what = "aborting a change log claim below the floor";
        let values = (bucket_of(claim.seq), claim.seq);
        for _ in 0..CAS_ATTEMPTS {
            if let Cas::Applied = self.cql.cas(ABORT, values, what).await? {
                self.next.fetch_max(floor, Ordering::AcqRel);
                return Ok(Placed::Not);
            }
            match self.log_row_serial(claim.seq).await? {
                Some(row) if row.status.as_deref() == Some(COMMITTED) => {
                    return Ok(match committed_by(&row, &claim.token) {
                        Some(false) => Placed::Settled,
                        _ => Placed::Mine,
                    });
                }
                Some(row) if row.status.as_deref() == Some(PENDING) => {}
                // Aborted (by an attempt of ours whose answer was lost): nothing appended.
                Some(_) => {
                    self.next.fetch_max(floor, Ordering::AcqRel);
                    return Ok(Placed::Not);
                }
                None if again => {
                    return Err(Error::unavailable(
                        what,
                        "retention removed the claimed row before its fate was known",
                    ));
                }
                None => {
                    self.next.fetch_max(floor, Ordering::AcqRel);
                    return Ok(Placed::Not);
                }
            }
        }
        Err(Error::unavailable(
            what,
            "no answer from the lightweight transaction",
        ))
    }

    /// Keeps committing a claim in the background, with growing pauses, for
    /// [`REDELIVER_FOR`]; then appends the rest once. Only the claimed row is retried:
    /// it is the one step whose repetition cannot record a change twice.
    fn redeliver_later(self, claim: Claim, first: Encoded, rest: Vec<Encoded>) {
        tokio::spawn(async move {
            let until = Instant::now() + REDELIVER_FOR;
            let mut pause = Duration::from_secs(1);
            let placed = loop {
                tokio::time::sleep(pause).await;
                match self.place_claim(&claim, &first, None, true).await {
                    Ok(placed) => break placed,
                    Err(err) if Instant::now() >= until => {
                        tracing::error!(seq = claim.seq, error = %err, "gave up committing change records: the change is missing from the log");
                        return;
                    }
                    Err(_) => pause = (pause * 2).min(Duration::from_secs(30)),
                }
            };
            let appended = async {
                match placed {
                    Placed::Mine => {}
                    Placed::Settled => return Ok(()),
                    Placed::Not => self.append(&first).await?,
                }
                for chunk in &rest {
                    self.append(chunk).await?;
                }
                Ok::<(), Error>(())
            };
            match appended.await {
                Ok(()) => {
                    tracing::info!(seq = claim.seq, "committed change records after an outage");
                }
                Err(err) => {
                    tracing::error!(seq = claim.seq, error = %err, "could not append change records: the change is missing from the log");
                }
            }
        });
    }

    /// [`Placed::Not`] when the claimed row was aborted by a reader (or is gone, for a
    /// write without a target).
    async fn commit_claim(&self, claim: &Claim, chunk: &Encoded) -> Result<Placed> {
        let what = "committing change records";
        let bucket = bucket_of(claim.seq);
        for _ in 0..CAS_ATTEMPTS {
            let values = (chunk.0.as_str(), chunk.1, chunk.2, bucket, claim.seq);
            if let Cas::Applied = self.cql.cas(COMMIT, values, what).await? {
                return Ok(Placed::Mine);
            }
            match self.log_row_serial(claim.seq).await? {
                Some(row) if row.status.as_deref() == Some(COMMITTED) => {
                    // An earlier attempt whose answer was lost, or a settler's commit.
                    return Ok(match committed_by(&row, &claim.token) {
                        Some(true) => Placed::Mine,
                        Some(false) => Placed::Settled,
                        None => Placed::Not,
                    });
                }
                Some(row) if row.status.as_deref() == Some(PENDING) => {}
                Some(_) => return Ok(Placed::Not),
                // Gone although it lay above the floor when this commit began: retention
                // removed it, and retention removes only settled rows. A write with a
                // target that landed is never aborted by a settler (its stamp or
                // tombstone shows it), so a settler committed it and appended the rest.
                None if claim.targeted => {
                    tracing::warn!(
                        seq = claim.seq,
                        "a claimed change log row was settled and pruned before its writer committed it"
                    );
                    return Ok(Placed::Settled);
                }
                None => return Ok(Placed::Not),
            }
        }
        Err(Error::unavailable(
            what,
            "no answer from the lightweight transaction",
        ))
    }

    /// Appends records as a new `committed` row above the floor.
    pub(super) async fn append(&self, chunk: &Encoded) -> Result<()> {
        for _ in 0..CAS_ATTEMPTS {
            let row = self.take_seq(Some(chunk), None).await?;
            let (floor, _) = self.change_floor().await?;
            if row.seq >= floor {
                return Ok(());
            }
            self.drop_row(row.seq).await;
            self.next.fetch_max(floor, Ordering::AcqRel);
        }
        Err(Error::unavailable(
            "appending change records",
            "retention kept moving past them",
        ))
    }

    /// Deletes a row below the floor (invisible to readers); failures leave garbage only.
    async fn drop_row(&self, seq: i64) {
        let values = (bucket_of(seq), seq);
        if let Err(err) = self
            .cql
            .execute(DELETE_ROW, values, "dropping a change log row")
            .await
        {
            tracing::warn!(seq, error = %err, "could not drop a change log row below the floor");
        }
    }

    /// Aborts the claim of a write that did not happen; failures are logged, the lease
    /// runs out and a reader aborts it.
    pub(super) async fn abort_claim(&self, claim: &Claim) {
        let values = (bucket_of(claim.seq), claim.seq);
        if let Err(err) = self
            .cql
            .cas(ABORT, values, "aborting a change log claim")
            .await
        {
            tracing::warn!(seq = claim.seq, error = %err, "could not abort a change log claim; readers abort it when its lease runs out");
        }
    }
}
