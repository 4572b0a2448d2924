//! Published catalogue versions: `catalog_versions` (unique tags) and
//! `catalog_versions_by_time` (newest first).
//!
//! A tag is claimed with a lightweight transaction (`INSERT … IF NOT EXISTS`), retried
//! and read back at serial consistency when its answer is lost, like an entity's (see
//! `lwt.rs`). Only then is the by-time row written; if that write fails, the tag is
//! deleted again, since a version without its by-time row could never be the latest.

use super::ScyllaStore;
use super::cql::Cas;
use super::lwt::CAS_ATTEMPTS;
use super::rows::{VersionRow, ts, version_values};
use super::statements::{
    DELETE_VERSION, INSERT_VERSION, INSERT_VERSION_BY_TIME, LATEST_VERSION, SELECT_VERSION,
};
use crate::datastore::{CatalogVersion, Error, Result};

impl ScyllaStore {
    /// Records a published version: the unique tag first, then its by-time row.
    pub(super) async fn record_version(&self, version: &CatalogVersion) -> Result<()> {
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

    /// The newest version by publication time, if any.
    pub(super) async fn latest_version(&self) -> Result<Option<CatalogVersion>> {
        let row: Option<VersionRow> = self
            .cql
            .one(LATEST_VERSION, (), "reading the latest catalog version")
            .await?;
        Ok(row.map(VersionRow::into_version))
    }
}
