//! Change-feed settings (`GITSTORE_CHANGES_*`, `GITSTORE_SUBSCRIPTIONS_*`): how long the
//! change log keeps records, how often other instances' writes are looked for, and the
//! limits of WebSocket subscribers (see `crate::feed`).

use std::time::Duration;

use clap::Args;

use super::parse_duration;

/// Change log and subscription settings.
#[derive(Args, Debug, Clone)]
pub struct ChangesConfig {
    /// How long change records are kept (e.g. `7d`, `12h`); older ones are pruned in the
    /// background, and a cursor into pruned history is refused with an error saying where
    /// the retained history starts.
    #[arg(long = "changes-retention", env = "GITSTORE_CHANGES_RETENTION", default_value = "7d", value_parser = parse_positive_duration, global = true)]
    pub retention: Duration,
    /// How often the change log is read for writes made through other instances sharing
    /// the datastore (writes through this instance wake subscribers at once).
    #[arg(long = "changes-poll-interval", env = "GITSTORE_CHANGES_POLL_INTERVAL", default_value = "200ms", value_parser = parse_positive_duration, global = true)]
    pub poll_interval: Duration,
    /// Events one subscription may have waiting to be sent; a subscriber that falls
    /// further behind is dropped (its connection closed with the position to resume
    /// from), so a slow client never slows writers or other subscribers.
    #[arg(
        long = "subscriptions-buffer",
        env = "GITSTORE_SUBSCRIPTIONS_BUFFER",
        default_value_t = 1024,
        value_parser = clap::value_parser!(u32).range(1..),
        global = true
    )]
    pub subscriptions_buffer: u32,
    /// Most WebSocket connections open at once on `/graphql`; further upgrades are
    /// answered 503.
    #[arg(
        long = "subscriptions-max-connections",
        env = "GITSTORE_SUBSCRIPTIONS_MAX_CONNECTIONS",
        default_value_t = 256,
        global = true
    )]
    pub subscriptions_max_connections: u32,
}

/// A duration that is not zero.
fn parse_positive_duration(raw: &str) -> Result<Duration, String> {
    let duration = parse_duration(raw)?;
    if duration.is_zero() {
        return Err(format!("duration {raw:?} must be more than zero"));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::super::{Cli, Config};

    #[test]
    fn defaults_and_days() {
        let config = Config::defaults();
        assert_eq!(
            config.changes.retention,
            std::time::Duration::from_secs(7 * 86_400)
        );
        assert_eq!(
            config.changes.poll_interval,
            std::time::Duration::from_millis(200)
        );
        assert_eq!(config.changes.subscriptions_buffer, 1024);
        assert_eq!(config.changes.subscriptions_max_connections, 256);
        let cli =
            Cli::try_parse_from(["gitstore-api", "--changes-retention", "36h"]).expect("parses");
        assert_eq!(
            cli.config.changes.retention,
            std::time::Duration::from_secs(36 * 3600)
        );
        assert!(Cli::try_parse_from(["gitstore-api", "--changes-poll-interval", "0s"]).is_err());
        assert!(Cli::try_parse_from(["gitstore-api", "--subscriptions-buffer", "0"]).is_err());
    }
}
