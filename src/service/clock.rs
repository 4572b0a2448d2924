//! Write timestamps that never repeat, so versions never repeat.

use std::sync::atomic::{AtomicI64, Ordering};

use crate::datastore::Timestamp;

/// Hands out millisecond timestamps that never repeat and never go backwards in this
/// process, so two writes in the same millisecond still get distinct versions.
#[derive(Debug, Default)]
pub struct Clock {
    last: AtomicI64,
}

impl Clock {
    /// The next timestamp: at least now, after every earlier one of this clock, and
    /// after `floor` (the version being replaced, so an entity's `updatedAt` strictly
    /// increases even when it was written by a process whose clock ran ahead).
    ///
    /// `floor` raises only the timestamp returned, not the clock: an entity stored with
    /// a far-future version (a skewed instance, a hand-edited row) must not drag every
    /// later write of this process into the future with it. Versions only need to be
    /// unique per entity, which `floor` already guarantees.
    pub fn next(&self, floor: Option<Timestamp>) -> Timestamp {
        let now = Timestamp::now().millis();
        let mut prev = self.last.load(Ordering::Relaxed);
        let own = loop {
            let next = now.max(prev + 1);
            match self
                .last
                .compare_exchange_weak(prev, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => break next,
                Err(seen) => prev = seen,
            }
        };
        let min = floor.map_or(i64::MIN, |f| f.millis().saturating_add(1));
        Timestamp::from_millis(own.max(min))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;

    use super::*;

    #[test]
    fn strictly_increasing_within_one_millisecond() {
        let clock = Clock::default();
        let mut last = clock.next(None);
        for _ in 0..10_000 {
            let next = clock.next(None);
            assert!(next > last, "{next:?} after {last:?}");
            last = next;
        }
    }

    #[test]
    fn unique_across_threads() {
        let clock = Arc::new(Clock::default());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let clock = clock.clone();
                std::thread::spawn(move || {
                    (0..2_000)
                        .map(|_| clock.next(None).millis())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut seen = HashSet::new();
        for handle in handles {
            for t in handle.join().expect("thread") {
                assert!(seen.insert(t), "timestamp {t} handed out twice");
            }
        }
    }

    #[test]
    fn floor_is_exceeded_without_moving_the_clock() {
        let clock = Clock::default();
        let now = Timestamp::now().millis();
        let future = Timestamp::from_millis(now + 3_600_000);
        assert_eq!(clock.next(Some(future)).millis(), future.millis() + 1);
        let after = clock.next(None).millis();
        assert!(
            after < now + 60_000,
            "a stored version pushed the clock to {after}"
        );
    }

    #[test]
    fn floor_in_the_past_changes_nothing() {
        let clock = Clock::default();
        let t = clock.next(Some(Timestamp::from_millis(0)));
        assert!(t.millis() >= Timestamp::now().millis() - 1_000);
    }
}
