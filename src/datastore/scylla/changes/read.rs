//! Readers of the change log: settling rows up to the watermark, `read_changes`,
//! `change_head` and retention (see the parent module for the protocol and why it is
//! correct).

use std::ops::ControlFlow;
use std::sync::atomic::Ordering;

use futures_util::StreamExt as _;

use super::settle::Settled;
use super::{
    ABORT, ABORTED, BUCKET, COMMITTED, LogRow, PENDING, SELECT_META, Stored, bucket_of, position,
    seq_of,
};
use crate::datastore::scylla::ScyllaStore;
use crate::datastore::scylla::cql::{Cas, LISTING_PAGE_SIZE};
use crate::datastore::{
    Change, ChangeEntity, ChangeKind, ChangeRead, ChangeRecord, Error, Result, Timestamp,
};

const CLOSE_HOLE: &str =
    "INSERT INTO change_log (bucket, seq, status) VALUES (?, ?, 'aborted') IF NOT EXISTS";
const SELECT_FROM: &str = "SELECT seq, status, lease_until, claim, target, records, \
     record_count, newest FROM change_log WHERE bucket = ? AND seq >= ?";
const SELECT_FIRST: &str = "SELECT seq FROM change_log WHERE bucket = ? LIMIT 1";
const DELETE_RANGE: &str = "DELETE FROM change_log WHERE bucket = ? AND seq >= ? AND seq < ?";
const DELETE_BUCKET: &str = "DELETE FROM change_log WHERE bucket = ?";
const INIT_PRUNED: &str = "INSERT INTO change_log_meta (name, seq, position) \
     VALUES ('pruned', ?, ?) IF NOT EXISTS";
const MOVE_PRUNED: &str =
    "UPDATE change_log_meta SET seq = ?, position = ? WHERE name = 'pruned' IF seq = ?";

/// What a reader makes of a row.
pub(super) enum Verdict {
    Committed(LogRow),
    Aborted,
    /// Pending with a live lease (or unknown for now): the watermark.
    Wait,
}

pub(super) fn decode(row: &LogRow) -> Result<Vec<Change>> {
    let bad = |e: String| Error::internal(format!("change log row {}", row.seq), e);
    let stored: Vec<Stored> = serde_json::from_str(row.records.as_deref().unwrap_or("[]"))
        .map_err(|e| bad(e.to_string()))?;
    stored
        .into_iter()
        .map(|s| {
            Ok(Change {
                kind: ChangeKind::parse(&s.kind).ok_or_else(|| bad(format!("kind {}", s.kind)))?,
                entity: ChangeEntity::parse(&s.entity)
                    .ok_or_else(|| bad(format!("entity {}", s.entity)))?,
                id: s.id,
                version: s.version.map(Timestamp::from_millis),
                at: Timestamp::from_millis(s.at),
                changed_fields: Change::split_fields(&s.fields),
            })
        })
        .collect()
}

impl ScyllaStore {
    /// What a reader makes of `row`, aborting it when it is pending past its lease.
    pub(super) async fn settle(&self, row: LogRow) -> Result<Verdict> {
        let what = "settling a change log row";
        match row.status.as_deref() {
            Some(COMMITTED) => Ok(Verdict::Committed(row)),
            Some(ABORTED) => Ok(Verdict::Aborted),
            Some(PENDING) => {
                let now = Timestamp::now().millis();
                if row.lease_until.is_some_and(|t| t.0 > now) {
                    return Ok(Verdict::Wait);
                }
                // The write may have landed all the same: its entity's stamp tells.
                match self.settle_from_entity(&row).await? {
                    Settled::Committed(row) => return Ok(Verdict::Committed(row)),
                    Settled::Pending => return Ok(Verdict::Wait),
                    Settled::NotLanded => {}
                }
                let values = (bucket_of(row.seq), row.seq);
                match self.cql.cas(ABORT, values, what).await? {
                    Cas::Applied => Ok(Verdict::Aborted),
                    Cas::NotApplied => self.settle_serial(row.seq).await,
                    Cas::Unknown(_) => Ok(Verdict::Wait),
                }
            }
            other => Err(Error::internal(
                format!("change log row {}", row.seq),
                format!("unknown status {other:?}"),
            )),
        }
    }

    /// The row as a serial read finds it, without acting on it.
    async fn settle_serial(&self, seq: i64) -> Result<Verdict> {
        Ok(match self.log().log_row_serial(seq).await? {
            Some(row) if row.status.as_deref() == Some(COMMITTED) => Verdict::Committed(row),
            Some(row) if row.status.as_deref() == Some(PENDING) => Verdict::Wait,
            // Aborted, or deleted by retention (it lies below the floor then).
            _ => Verdict::Aborted,
        })
    }

    /// Closes a hole at `seq` so that no writer can claim it, or settles what is there.
    async fn close_hole(&self, seq: i64) -> Result<Verdict> {
        let what = "closing a hole in the change log";
        match self
            .cql
            .cas(CLOSE_HOLE, (bucket_of(seq), seq), what)
            .await?
        {
            Cas::Applied => Ok(Verdict::Aborted),
            Cas::NotApplied => match self.log().log_row_serial(seq).await? {
                Some(row) => self.settle(row).await,
                None => Ok(Verdict::Aborted),
            },
            Cas::Unknown(_) => Ok(Verdict::Wait),
        }
    }

    /// Walks the log from `from` upwards, settling rows and closing holes, and hands each
    /// settled `seq` to `visit` (with its row when committed) until `visit` breaks or the
    /// watermark is reached. Returns the `seq` it stopped at.
    async fn walk<F>(&self, from: i64, mut visit: F) -> Result<i64>
    where
        F: FnMut(i64, Option<&LogRow>) -> ControlFlow<()> + Send,
    {
        let what = "reading the change log";
        let start = from.max(1);
        let mut next = start;
        // Only a walk that met rows tells writers where the log ends: `from` alone may
        // lie anywhere (a reader's cursor from the future).
        let reached = |stop: i64| {
            if stop > start {
                self.change_next.fetch_max(stop, Ordering::AcqRel);
            }
            Ok(stop)
        };
        loop {
            let bucket = bucket_of(next);
            let end = (bucket + 1) * BUCKET;
            let mut rows = self
                .cql
                .stream::<LogRow>(SELECT_FROM, LISTING_PAGE_SIZE, (bucket, next), what)
                .await?;
            while let Some(row) = rows.next().await {
                let row = row?;
                let seq = row.seq;
                while next < seq {
                    if self.visit(next, self.close_hole(next).await?, &mut visit) {
                        return reached(next);
                    }
                    next += 1;
                }
                if self.visit(seq, self.settle(row).await?, &mut visit) {
                    return reached(seq);
                }
                next = seq + 1;
            }
            drop(rows);
            if next < end {
                let later: Option<(i64,)> = self.cql.one(SELECT_FIRST, (bucket + 1,), what).await?;
                if later.is_none() {
                    return reached(next);
                }
                while next < end {
                    if self.visit(next, self.close_hole(next).await?, &mut visit) {
                        return reached(next);
                    }
                    next += 1;
                }
            }
        }
    }

    /// Hands a verdict to the visitor; `true` to stop.
    fn visit<F>(&self, seq: i64, verdict: Verdict, visit: &mut F) -> bool
    where
        F: FnMut(i64, Option<&LogRow>) -> ControlFlow<()>,
    {
        match verdict {
            Verdict::Wait => true,
            Verdict::Aborted => visit(seq, None).is_break(),
            Verdict::Committed(row) => visit(seq, Some(&row)).is_break(),
        }
    }

    /// `read_changes` (see the module docs).
    pub(in crate::datastore::scylla) async fn read_change_log(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<ChangeRead> {
        let (floor, _) = self.log().change_floor().await?;
        let mut records = Vec::new();
        if limit > 0 {
            self.walk(seq_of(after).max(floor), |seq, row| {
                let Some(row) = row else {
                    return ControlFlow::Continue(());
                };
                match decode(row) {
                    Ok(changes) => {
                        for (i, change) in (0_u64..).zip(changes) {
                            let position = position(seq, i);
                            if position > after {
                                records.push(ChangeRecord { position, change });
                                if records.len() >= limit {
                                    return ControlFlow::Break(());
                                }
                            }
                        }
                    }
                    Err(err) => {
                        // Skipped, not fatal: one bad row must not stop every reader
                        // (and `change_head`, and retention) at it for good.
                        tracing::error!(seq, error = %err, "skipping a committed change log row whose records cannot be read");
                    }
                }
                ControlFlow::Continue(())
            })
            .await?;
        }
        // Rows retention removed meanwhile (and any placed there since) are not returned.
        let (floor, pruned_through) = self.log().change_floor().await?;
        records.retain(|r| seq_of(r.position) >= floor);
        Ok(ChangeRead {
            records,
            pruned_through,
        })
    }

    /// `change_head`: the last record position below the watermark.
    pub(in crate::datastore::scylla) async fn change_log_head(&self) -> Result<u64> {
        let (floor, pruned) = self.log().change_floor().await?;
        let (cached_next, cached_last) = *self
            .change_head
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (from, mut last) = if cached_next >= floor {
            (cached_next, cached_last)
        } else {
            (floor, cached_last.max(pruned))
        };
        let stop = self
            .walk(from, |seq, row| {
                if let Some(count) = row.map(LogRow::count).filter(|c| *c > 0) {
                    last = position(seq, count - 1);
                }
                ControlFlow::Continue(())
            })
            .await?;
        let mut cache = self
            .change_head
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if stop > cache.0 {
            *cache = (stop, last);
        }
        Ok(last)
    }

    /// `prune_changes` (see the module docs).
    pub(in crate::datastore::scylla) async fn prune_change_log(
        &self,
        before: Timestamp,
    ) -> Result<u64> {
        let what = "pruning the change log";
        let (floor, pruned) = self.log().change_floor().await?;
        let (mut removed, mut through, mut new_floor) = (0_u64, pruned, floor);
        self.walk(floor, |seq, row| {
            if let Some(row) = row {
                if row.newest.is_some_and(|t| t.0 >= before.millis()) {
                    return ControlFlow::Break(());
                }
                if row.count() > 0 {
                    removed += row.count();
                    through = position(seq, row.count() - 1);
                }
            }
            new_floor = seq + 1;
            ControlFlow::Continue(())
        })
        .await?;
        if new_floor == floor {
            return Ok(0);
        }
        let through_i64 = i64::try_from(through).unwrap_or(i64::MAX);
        let applied = match self
            .cql
            .cas(MOVE_PRUNED, (new_floor, through_i64, floor), what)
            .await?
        {
            Cas::Applied => true,
            Cas::NotApplied if floor == 1 => matches!(
                self.cql
                    .cas(INIT_PRUNED, (new_floor, through_i64), what)
                    .await?,
                Cas::Applied
            ),
            Cas::NotApplied | Cas::Unknown(_) => false,
        };
        // An answer lost on the way: the meta row, read at serial consistency, tells.
        // (Another pruner that set the very same floor deletes the very same rows.)
        let moved = applied || {
            let found: Option<(Option<i64>, Option<i64>)> = self
                .cql
                .one(self.cql.serial(SELECT_META), ("pruned",), what)
                .await?;
            found == Some((Some(new_floor), Some(through_i64)))
        };
        if !moved {
            // Another pruner moved the floor first; its deletes cover these rows.
            return Ok(0);
        }
        let mut seq = floor;
        while seq < new_floor {
            let bucket = bucket_of(seq);
            let end = ((bucket + 1) * BUCKET).min(new_floor);
            if seq == bucket * BUCKET && end == (bucket + 1) * BUCKET {
                self.cql.execute(DELETE_BUCKET, (bucket,), what).await?;
            } else {
                self.cql
                    .execute(DELETE_RANGE, (bucket, seq, end), what)
                    .await?;
            }
            seq = end;
        }
        Ok(removed)
    }
}
