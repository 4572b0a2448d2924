//! Published catalogue versions: `catalog_versions` (unique tags) and
//! `catalog_versions_by_time` (newest first).
//!
//! A tag is claimed with a lightweight transaction (`INSERT … IF NOT EXISTS`), retried
//! and read back at serial consistency when its answer is lost, like an entity's (see
//! `lwt.rs`); the insert carries the publish's change stamp, so a publish whose writer
//! dies after it is still logged (see `changes/`). Only then is the by-time row written;
//! if that write fails, the tag is deleted again, since a version without its by-time
//! row could never be the latest. The undo first aborts the publish's change log row
//! (`IF status = 'pending' AND claim = ?`), so a reader can never commit it from the
//! stamp of a tag that was taken back; when a reader committed it first (the writer
//! stalled past its lease), the tag stays and the by-time row is written once more.

use super::ScyllaStore;
use super::changes::{Logged, Stamp, Ticket};
use super::cql::Cas;
use super::lwt::CAS_ATTEMPTS;
use super::rows::{VersionRow, ts, version_insert_values, version_values};
use super::statements::{
    DELETE_VERSION, INSERT_VERSION, INSERT_VERSION_BY_TIME, LATEST_VERSION, SELECT_VERSION_CLAIM,
};
use crate::datastore::{CatalogVersion, Error, Result, changes as records};

impl ScyllaStore {
    /// `create_catalog_version`: records the version under the write's claim and returns
    /// its change record.
    pub(super) async fn publish_version(&self, version: &CatalogVersion, ticket: Ticket) -> Logged {
        let changes = records::catalog_published(version);
        let stamp = ticket.stamp(&changes)?;
        self.record_version(version, &stamp).await?;
        Ok(changes)
    }

    /// Records a published version: the unique tag first (stamped), then its by-time row.
    async fn record_version(&self, version: &CatalogVersion, stamp: &Stamp) -> Result<()> {
        let what = format!("recording catalog version {:?}", version.tag);
        let taken = || Error::already_exists("catalog version", "tag", &version.tag);
        let mut uncertain = false;
        let mut done = false;
        for _ in 0..CAS_ATTEMPTS {
            // Every attempt within the claim's freshness (see `changes/`).
            self.fresh(stamp.since, &what)?;
            match self
                .cql
                .cas(INSERT_VERSION, version_insert_values(version, stamp), &what)
                .await?
            {
                Cas::Applied => {
                    done = true;
                    break;
                }
                Cas::NotApplied if !uncertain => return Err(taken()),
                Cas::NotApplied | Cas::Unknown(_) => {
                    uncertain = true;
                    let row: Option<(Option<String>,)> = self
                        .cql
                        .one(
                            self.cql.serial(SELECT_VERSION_CLAIM),
                            (version.tag.as_str(),),
                            &what,
                        )
                        .await?;
                    match row {
                        Some((Some(claim),)) if claim == stamp.claim => {
                            done = true;
                            break;
                        }
                        Some(_) => return Err(taken()),
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
        let Err(err) = self
            .cql
            .execute(INSERT_VERSION_BY_TIME, version_values(version), &what)
            .await
        else {
            return Ok(());
        };
        // Without its by-time row the version would never be the latest: undo it, but
        // only once its change can no longer be committed from the stamp.
        match self.take_back(version, stamp).await {
            Ok(true) => Err(err),
            Ok(false) => {
                // A reader committed the publish already: it stays, so complete it.
                self.cql
                    .execute(INSERT_VERSION_BY_TIME, version_values(version), &what)
                    .await
                    .map(drop)
            }
            Err(withdraw_err) => {
                // Unknown: the claim stays pending and is settled from the stamp.
                tracing::warn!(tag = %version.tag, error = %withdraw_err, "could not withdraw a half-recorded catalog version; it stays");
                Err(err)
            }
        }
    }

    /// Deletes a recorded tag again once its claim is aborted: `Ok(false)` (and the tag
    /// stays) when the claim was committed first.
    async fn take_back(&self, version: &CatalogVersion, stamp: &Stamp) -> Result<bool> {
        if !self.withdraw(stamp).await? {
            return Ok(false);
        }
        let what = format!("undoing catalog version {:?}", version.tag);
        let undo = (version.tag.as_str(), ts(version.published_at));
        if let Err(err) = self.cql.cas_idempotent(DELETE_VERSION, undo, &what).await {
            tracing::warn!(tag = %version.tag, error = %err, "could not undo a half-recorded catalog version");
        }
        Ok(true)
    }

    /// Records a version under `ticket` (whose writer then "crashes" before committing),
    /// or, with `undone`, records it and takes it back as when its by-time row fails:
    /// for the change log's tests.
    pub(super) async fn record_version_for_test(
        &self,
        version: &CatalogVersion,
        ticket: Ticket,
        undone: bool,
    ) -> Result<()> {
        let changes = records::catalog_published(version);
        let stamp = ticket.stamp(&changes)?;
        if !undone {
            return self.record_version(version, &stamp).await;
        }
        let what = "recording a catalog version that is undone";
        self.cql
            .cas(INSERT_VERSION, version_insert_values(version, &stamp), what)
            .await?;
        self.take_back(version, &stamp).await.map(drop)
    }

    /// The newest version by publication time, if any.
    pub(super) async fn latest_version(&self) -> Result<Option<CatalogVersion>> {
        let row: Option<VersionRow> = self
            .cql
            .one(LATEST_VERSION, (), "reading the latest catalog version")
            .await?;
        Ok(row.map(VersionRow::into_version))
    }
}
