//! Deletes in the change log: the tombstone a delete takes on its target before its
//! delete lightweight transaction, and settling an expired delete claim from it (see
//! "Deletes: tombstones" in the parent module for the protocol and why it is correct).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::read::Verdict;
use super::settle::{Settled, stamp_of};
use super::{ABORTED, COMMITTED, Claim, Failed, LogRow, Logged, PENDING, committed_by, encode};
use crate::datastore::scylla::ScyllaStore;
use crate::datastore::scylla::cql::Cas;
use crate::datastore::scylla::rows::ts;
use crate::datastore::{Change, Error, Result, Timestamp};

/// The target of a delete's claim is its entity row with this prefix.
pub(super) const DELETE_PREFIX: &str = "delete:";

const TAKE: &str = "INSERT INTO change_tombstones (target, claim, seq, records, at) \
     VALUES (?, ?, ?, ?, ?) IF NOT EXISTS";
const TAKE_OVER: &str = "UPDATE change_tombstones SET claim = ?, seq = ?, records = ?, at = ? \
     WHERE target = ? IF claim = ?";
const REWRITE: &str = "UPDATE change_tombstones SET records = ? WHERE target = ? IF claim = ?";
const SELECT: &str = "SELECT claim, seq, records FROM change_tombstones WHERE target = ?";
const RELEASE: &str = "DELETE FROM change_tombstones WHERE target = ? IF claim = ?";

/// Attempts at taking a tombstone another delete holds (each waits a little longer).
const TAKE_ATTEMPTS: u32 = 16;

/// A `change_tombstones` row.
#[derive(scylla::DeserializeRow)]
struct TombstoneRow {
    claim: Option<String>,
    seq: Option<i64>,
    records: Option<String>,
}

/// What a delete holds of its target's tombstone: the delete's claim, and whether the
/// tombstone is taken (the records it holds, when so).
pub(in crate::datastore::scylla) struct Grave {
    target: String,
    claim: String,
    seq: i64,
    /// When the claim was taken: the tombstone and every attempt of the delete LWT are
    /// sent before `t / 2` after it.
    pub(in crate::datastore::scylla) since: Instant,
    taken: AtomicBool,
    records: Mutex<Option<String>>,
    /// Tests: "crash" right after taking the tombstone.
    crash_after_take: bool,
}

impl Grave {
    pub(super) fn new(target: String, claim: &Claim, crash_after_take: bool) -> Self {
        Self {
            target,
            claim: claim.token.clone(),
            seq: claim.seq,
            since: claim.since,
            taken: AtomicBool::new(false),
            records: Mutex::new(None),
            crash_after_take,
        }
    }

    fn taken(&self) -> bool {
        self.taken.load(Ordering::Acquire)
    }

    fn hold(&self, records: Option<String>) {
        *self
            .records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = records;
        self.taken.store(true, Ordering::Release);
    }
}

/// The records JSON a tombstone carries: all of them.
fn records_json(records: &[Change]) -> Result<Option<String>> {
    Ok(Some(encode(records)?.0))
}

/// A short wait that grows with the attempt number, with jitter so racers spread out.
async fn backoff(attempt: u32) {
    let base = 10_u64 << attempt.min(5);
    let jitter = u64::from(ulid::Ulid::new().random() as u16 % 16);
    tokio::time::sleep(Duration::from_millis(base + jitter)).await;
}

/// How the claim holding a tombstone stands, for a delete that wants it.
enum Holder {
    /// Its delete landed (or the target is gone anyway): nothing left to delete.
    Landed,
    /// Its delete did not land and never will: the tombstone may be taken over.
    Aborted,
    /// Still running.
    Live,
}

impl ScyllaStore {
    /// Runs a delete of `target` (`<table>/<id>`) between a claim and its commit, like
    /// [`ScyllaStore::logged`]; the delete takes the target's tombstone through its
    /// [`Grave`] before its delete LWT (see the module docs).
    pub(in crate::datastore::scylla) async fn logged_delete<Fut>(
        &self,
        target: String,
        write: impl FnOnce(Arc<Grave>) -> Fut,
    ) -> Result<()>
    where
        Fut: Future<Output = Logged>,
    {
        let log = self.log();
        let claimed = format!("{DELETE_PREFIX}{target}");
        let claim = log.take_seq(None, Some(&claimed)).await?;
        let grave = Arc::new(Grave::new(target, &claim, false));
        let (outcome, floor) =
            futures_util::future::join(Box::pin(write(Arc::clone(&grave))), log.change_floor())
                .await;
        match outcome {
            Ok(records) => {
                self.rewrite_tombstone(&grave, &records).await;
                let delivered = log.deliver(claim, &records, floor.map(|f| f.0)).await;
                if delivered.is_ok() {
                    self.bury_later(&grave);
                }
                delivered
            }
            // The delete may have landed: the claim stays pending with its tombstone, and
            // a reader settles it once its lease has run out.
            Err(Failed {
                error: error @ Error::Unavailable { .. },
                ..
            }) if grave.taken() => Err(error),
            Err(Failed { error, .. }) => {
                // The delete surely did not land: abort, then let the tombstone go.
                log.abort_claim(&claim).await;
                if grave.taken() {
                    self.release_tombstone(&grave).await;
                }
                Err(error)
            }
        }
    }

    /// Takes the tombstone of the grave's target with the delete's `records`, before the
    /// delete LWT: `Ok(false)` when another delete's landed first (the target is gone).
    ///
    /// # Errors
    /// [`Error::Unavailable`] when the tombstone cannot be written, when the claim is no
    /// longer fresh, or when another delete keeps holding it.
    pub(in crate::datastore::scylla) async fn take_tombstone(
        &self,
        grave: &Grave,
        records: &[Change],
    ) -> Result<bool> {
        let what = format!("taking the change tombstone of {}", grave.target);
        let json = records_json(records)?;
        let at = ts(Timestamp::now());
        let mut taken = false;
        for attempt in 0..TAKE_ATTEMPTS {
            self.fresh(grave.since, &what)?;
            let values = (
                grave.target.as_str(),
                grave.claim.as_str(),
                grave.seq,
                json.as_deref(),
                at,
            );
            if let Cas::Applied = self.cql.cas(TAKE, values, &what).await? {
                taken = true;
                break;
            }
            let Some(found) = self.tombstone(&grave.target).await? else {
                // Released meanwhile, or our own insert whose answer was lost did not land.
                continue;
            };
            if found.claim.as_deref() == Some(grave.claim.as_str()) {
                taken = true;
                break;
            }
            match self.holder(&grave.target, &found).await? {
                Holder::Landed => return Ok(false),
                Holder::Live => backoff(attempt).await,
                Holder::Aborted => {
                    self.fresh(grave.since, &what)?;
                    let values = (
                        grave.claim.as_str(),
                        grave.seq,
                        json.as_deref(),
                        at,
                        grave.target.as_str(),
                        found.claim.as_deref(),
                    );
                    let answer = self.cql.cas(TAKE_OVER, values, &what).await?;
                    if matches!(answer, Cas::Applied)
                        || (matches!(answer, Cas::Unknown(_))
                            && self.tombstone(&grave.target).await?.and_then(|t| t.claim)
                                == Some(grave.claim.clone()))
                    {
                        taken = true;
                        break;
                    }
                }
            }
        }
        if !taken {
            return Err(Error::unavailable(
                what,
                "another delete of the same entity kept its tombstone",
            ));
        }
        grave.hold(json);
        if grave.crash_after_take {
            return Err(Error::unavailable(what, "the writer crashed (test)"));
        }
        Ok(true)
    }

    async fn tombstone(&self, target: &str) -> Result<Option<TombstoneRow>> {
        self.cql
            .one(
                self.cql.serial(SELECT),
                (target,),
                "reading a change tombstone",
            )
            .await
    }

    /// Whether the entity row `target` exists, read at serial consistency (which also
    /// completes an LWT on it still in flight).
    async fn target_exists(&self, target: &str) -> Result<bool> {
        let Some((statement, id)) = stamp_of(target) else {
            return Err(Error::internal(
                "settling a change log claim",
                format!("unknown target {target:?}"),
            ));
        };
        Ok(self.read_stamp(statement, id).await?.is_some())
    }

    /// Settles the claim holding a tombstone as a reader would (see the module docs).
    async fn holder(&self, target: &str, found: &TombstoneRow) -> Result<Holder> {
        let owned = |row: &LogRow| {
            found
                .claim
                .as_deref()
                .is_some_and(|c| committed_by(row, c).is_some())
        };
        let row = match found.seq {
            Some(seq) => self.log().log_row_serial(seq).await?.filter(owned),
            None => None,
        };
        let Some(row) = row else {
            // Its row is gone (retention deletes only settled rows): its delete landed
            // exactly when the target is gone, as ids never come back.
            return Ok(if self.target_exists(target).await? {
                Holder::Aborted
            } else {
                Holder::Landed
            });
        };
        let verdict = match row.status.as_deref() {
            Some(COMMITTED) => Verdict::Committed(row),
            Some(ABORTED) => Verdict::Aborted,
            Some(PENDING) => self.settle(row).await?,
            _ => Verdict::Wait,
        };
        Ok(match verdict {
            Verdict::Committed(_) => Holder::Landed,
            Verdict::Aborted => Holder::Aborted,
            Verdict::Wait => Holder::Live,
        })
    }

    /// For a reader: the expired claim `row` of a delete of `target`. The target row
    /// present means the delete never landed; gone, the delete landed exactly when the
    /// tombstone is still this claim's.
    pub(super) async fn settle_delete(
        &self,
        row: &LogRow,
        target: &str,
        claim: &str,
    ) -> Result<Settled> {
        if self.target_exists(target).await? {
            return Ok(Settled::NotLanded);
        }
        match self.tombstone(target).await? {
            Some(TombstoneRow {
                claim: Some(c),
                seq: Some(s),
                records,
            }) if c == claim && s == row.seq => {
                self.commit_stamped(row.seq, claim, records.as_deref())
                    .await
            }
            _ => Ok(Settled::NotLanded),
        }
    }

    /// The writer's records can differ from those in the tombstone when memberships
    /// changed between the two reads of them: the tombstone then gets the writer's.
    async fn rewrite_tombstone(&self, grave: &Grave, records: &[Change]) {
        let Ok(json) = records_json(records) else {
            return;
        };
        let held = grave
            .records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if !grave.taken() || held == json {
            return;
        }
        let values = (json.as_deref(), grave.target.as_str(), grave.claim.as_str());
        if let Err(err) = self
            .cql
            .cas(REWRITE, values, "rewriting a change tombstone")
            .await
        {
            tracing::warn!(target = %grave.target, error = %err, "could not rewrite a change tombstone");
        }
    }

    /// Lets the tombstone of a delete that did not land go; failures leave a tombstone
    /// whose aborted claim the next delete takes over.
    async fn release_tombstone(&self, grave: &Grave) {
        let values = (grave.target.as_str(), grave.claim.as_str());
        if let Err(err) = self
            .cql
            .cas(RELEASE, values, "releasing a change tombstone")
            .await
        {
            tracing::warn!(target = %grave.target, error = %err, "could not release a change tombstone");
        }
    }

    /// Deletes the tombstone of a committed delete once no delete that read the target
    /// before it vanished can still be taking the tombstone (twice the lease); until
    /// then it answers such a delete `NotFound`. Best effort: one left behind is a small
    /// row that only ever answers later deletes `NotFound`.
    fn bury_later(&self, grave: &Grave) {
        let cql = Arc::clone(&self.cql);
        let wait = self.lease_ttl * 2;
        let (target, claim) = (grave.target.clone(), grave.claim.clone());
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let values = (target.as_str(), claim.as_str());
            if let Err(err) = cql
                .cas(RELEASE, values, "removing a change tombstone")
                .await
            {
                tracing::debug!(target = %target, error = %err, "could not remove a change tombstone");
            }
        });
    }
}
