//! memdb's change log: a queue of records behind one mutex, appended by each write while
//! it holds the store's `integrity` lock, so positions follow the order of the writes and
//! a record exists exactly when its write happened (see [`crate::datastore::changes`]).

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use crate::datastore::{Change, ChangeRead, ChangeRecord, Timestamp};

/// The records still retained, with dense positions.
#[derive(Default)]
pub(super) struct ChangeLog {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Retained records; `records[i].position == pruned_through + 1 + i`.
    records: VecDeque<ChangeRecord>,
    /// The position of the newest record ever appended.
    last: u64,
    /// The highest position removed by retention.
    pruned_through: u64,
}

impl ChangeLog {
    fn state(&self) -> MutexGuard<'_, State> {
        // Every mutation below completes before anything can panic.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends the records of one write (call with `integrity` held, after the write).
    pub(super) fn append(&self, changes: Vec<Change>) {
        let mut state = self.state();
        for change in changes {
            state.last += 1;
            let position = state.last;
            state.records.push_back(ChangeRecord { position, change });
        }
    }

    pub(super) fn read(&self, after: u64, limit: usize) -> ChangeRead {
        let state = self.state();
        let skip = after.saturating_sub(state.pruned_through);
        let skip = usize::try_from(skip).unwrap_or(usize::MAX);
        ChangeRead {
            records: state
                .records
                .iter()
                .skip(skip)
                .take(limit)
                .cloned()
                .collect(),
            pruned_through: state.pruned_through,
        }
    }

    pub(super) fn head(&self) -> u64 {
        self.state().last
    }

    pub(super) fn prune(&self, before: Timestamp) -> u64 {
        let mut state = self.state();
        let mut removed = 0;
        while state.records.front().is_some_and(|r| r.change.at < before) {
            if let Some(record) = state.records.pop_front() {
                state.pruned_through = record.position;
                removed += 1;
            }
        }
        removed
    }
}
