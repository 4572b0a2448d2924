//! Failed-login rate limiting: at most [`MAX_FAILURES`] failures per [`WINDOW`] for one
//! username and, separately, for one client address.
//!
//! The window slides: each key keeps the instants of its recent failures. The state is
//! per process (an attacker spreading attempts over N instances gets N times the
//! budget, which bcrypt's cost still makes slow); a successful login clears the
//! username's failures. A std `Mutex` is right here: it is held for a few map operations
//! and never across an `.await`.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures allowed per key within [`WINDOW`].
pub const MAX_FAILURES: usize = 5;
/// The sliding window of [`MAX_FAILURES`].
pub const WINDOW: Duration = Duration::from_secs(60);
/// Keys kept before stale ones are swept (bounds memory under a spray of usernames).
const SWEEP_AT: usize = 10_000;

/// Recent failures by key (`user:NAME`, `addr:IP`).
#[derive(Default)]
pub struct Limiter {
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Limiter {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, VecDeque<Instant>>> {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `Err(retry_after)` when any of `keys` has used up its failures.
    pub fn check(&self, keys: &[String]) -> Result<(), Duration> {
        let now = Instant::now();
        let mut map = self.map();
        let mut wait = None::<Duration>;
        for key in keys {
            if let Some(times) = map.get_mut(key) {
                prune(times, now);
                if times.len() >= MAX_FAILURES
                    && let Some(oldest) = times.front()
                {
                    let retry = WINDOW.saturating_sub(now.duration_since(*oldest));
                    wait = Some(wait.map_or(retry, |w| w.max(retry)));
                }
            }
        }
        wait.map_or(Ok(()), Err)
    }

    /// Records one failure against each of `keys`.
    pub fn fail(&self, keys: &[String]) {
        let now = Instant::now();
        let mut map = self.map();
        if map.len() >= SWEEP_AT {
            map.retain(|_, times| {
                prune(times, now);
                !times.is_empty()
            });
        }
        for key in keys {
            let times = map.entry(key.clone()).or_default();
            prune(times, now);
            times.push_back(now);
            // Only the newest MAX_FAILURES matter for the decision.
            while times.len() > MAX_FAILURES {
                times.pop_front();
            }
        }
    }

    /// Forgets the failures of `key` (after a successful login).
    pub fn clear(&self, key: &str) {
        self.map().remove(key);
    }
}

fn prune(times: &mut VecDeque<Instant>, now: Instant) {
    while times
        .front()
        .is_some_and(|t| now.duration_since(*t) >= WINDOW)
    {
        times.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_then_refused() {
        let limiter = Limiter::default();
        let keys = ["user:a".to_owned(), "addr:1".to_owned()];
        for _ in 0..MAX_FAILURES {
            assert!(limiter.check(&keys).is_ok());
            limiter.fail(&keys);
        }
        let wait = limiter.check(&keys).unwrap_err();
        assert!(wait <= WINDOW && wait > Duration::from_secs(50));
        // Another user from the same address is refused too; the same user elsewhere too.
        assert!(
            limiter
                .check(&["user:b".to_owned(), "addr:1".to_owned()])
                .is_err()
        );
        assert!(
            limiter
                .check(&["user:a".to_owned(), "addr:2".to_owned()])
                .is_err()
        );
        assert!(
            limiter
                .check(&["user:b".to_owned(), "addr:2".to_owned()])
                .is_ok()
        );
        limiter.clear("user:a");
        assert!(limiter.check(&["user:a".to_owned()]).is_ok());
    }
}
