//! Pull reads: one page of the log for a `changes` query.

use super::{ChangeFilter, FeedError, READ_BATCH};
use crate::datastore::{AnyDatastore, ChangeRecord, Datastore, Instrumented};

/// Most records one page scans past the filter before it stops (so a filter that
/// matches little never reads the whole log in one request); the page then ends early
/// and its `end` still advances past what was scanned.
pub const SCAN_LIMIT: usize = 10_000;

/// A page of the log.
#[derive(Debug, Default)]
pub struct ChangePage {
    /// Matching records, ascending.
    pub records: Vec<ChangeRecord>,
    /// Where the next page starts after: the last record scanned (matching or not),
    /// else the `after` asked for; `None` when nothing was scanned and no `after` given.
    pub end: Option<u64>,
    /// Whether records exist after `end`.
    pub has_next: bool,
}

/// Reads up to `first` matching records after `after`.
pub(super) async fn read(
    store: &Instrumented<AnyDatastore>,
    after: Option<u64>,
    first: usize,
    filter: &ChangeFilter,
) -> Result<ChangePage, FeedError> {
    let mut page = ChangePage {
        end: after,
        ..ChangePage::default()
    };
    let mut cursor = after.unwrap_or(0);
    let mut scanned = 0usize;
    let mut checked = after.is_none();
    loop {
        let want = if first == 0 { 1 } else { READ_BATCH };
        let read = store.read_changes(cursor, want).await?;
        if !checked {
            if read.pruned_through > cursor {
                return Err(FeedError::Expired {
                    after: cursor,
                    pruned_through: read.pruned_through,
                });
            }
            checked = true;
        }
        let short = read.records.len() < want;
        for record in read.records {
            if page.records.len() >= first || scanned >= SCAN_LIMIT {
                page.has_next = true;
                return Ok(page);
            }
            scanned += 1;
            cursor = record.position;
            page.end = Some(cursor);
            if filter.matches(&record.change) {
                page.records.push(record);
            }
        }
        if short {
            return Ok(page);
        }
    }
}
