//! Settings of the scylla backend: contact points, keyspace, credentials, consistency
//! levels and timeouts.
//!
//! The consistency levels are spelled as CQL spells them (`LOCAL_QUORUM`,
//! `LOCAL_SERIAL`) and parse in any case, through [`FromStr`] for code and through
//! [`clap::ValueEnum`] for the command line (with `ignore_case`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::tls::TlsSettings;

/// A consistency level for reads and writes.
///
/// On the command line ([`clap::ValueEnum`]) the values are the CQL names; declare the
/// argument with `ignore_case` to accept them in lower case too, as [`FromStr`] does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ConsistencyLevel {
    /// `ANY` (writes only).
    #[value(name = "ANY")]
    Any,
    /// `ONE`.
    #[value(name = "ONE")]
    One,
    /// `TWO`.
    #[value(name = "TWO")]
    Two,
    /// `THREE`.
    #[value(name = "THREE")]
    Three,
    /// `QUORUM`.
    #[value(name = "QUORUM")]
    Quorum,
    /// `ALL`.
    #[value(name = "ALL")]
    All,
    /// `LOCAL_QUORUM`, the default.
    #[default]
    #[value(name = "LOCAL_QUORUM")]
    LocalQuorum,
    /// `EACH_QUORUM` (writes only).
    #[value(name = "EACH_QUORUM")]
    EachQuorum,
    /// `LOCAL_ONE`.
    #[value(name = "LOCAL_ONE")]
    LocalOne,
}

impl ConsistencyLevel {
    const NAMES: [(&'static str, Self); 9] = [
        ("ANY", Self::Any),
        ("ONE", Self::One),
        ("TWO", Self::Two),
        ("THREE", Self::Three),
        ("QUORUM", Self::Quorum),
        ("ALL", Self::All),
        ("LOCAL_QUORUM", Self::LocalQuorum),
        ("EACH_QUORUM", Self::EachQuorum),
        ("LOCAL_ONE", Self::LocalOne),
    ];

    pub(super) const fn driver(self) -> scylla::statement::Consistency {
        use scylla::statement::Consistency as C;
        match self {
            Self::Any => C::Any,
            Self::One => C::One,
            Self::Two => C::Two,
            Self::Three => C::Three,
            Self::Quorum => C::Quorum,
            Self::All => C::All,
            Self::LocalQuorum => C::LocalQuorum,
            Self::EachQuorum => C::EachQuorum,
            Self::LocalOne => C::LocalOne,
        }
    }
}

impl FromStr for ConsistencyLevel {
    type Err = String;

    /// Accepts the CQL names in any case, e.g. `LOCAL_QUORUM` or `local_quorum`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let upper = s.trim().to_ascii_uppercase().replace('-', "_");
        Self::NAMES
            .iter()
            .find(|(name, _)| *name == upper)
            .map(|(_, level)| *level)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::NAMES.iter().map(|(n, _)| *n).collect();
                format!(
                    "unknown consistency {s:?}; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

impl fmt::Display for ConsistencyLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = Self::NAMES
            .iter()
            .find(|(_, level)| level == self)
            .map_or("?", |(n, _)| *n);
        f.write_str(name)
    }
}

/// The consistency of the Paxos phase of lightweight transactions and of serial reads.
///
/// On the command line ([`clap::ValueEnum`]) the values are the CQL names, like
/// [`ConsistencyLevel`]'s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SerialConsistencyLevel {
    /// `SERIAL`: linearizable across all data centres.
    #[value(name = "SERIAL")]
    Serial,
    /// `LOCAL_SERIAL`, the default: linearizable within the local data centre.
    #[default]
    #[value(name = "LOCAL_SERIAL")]
    LocalSerial,
}

impl SerialConsistencyLevel {
    pub(super) const fn driver(self) -> scylla::statement::SerialConsistency {
        match self {
            Self::Serial => scylla::statement::SerialConsistency::Serial,
            Self::LocalSerial => scylla::statement::SerialConsistency::LocalSerial,
        }
    }

    pub(super) const fn read_consistency(self) -> scylla::statement::Consistency {
        match self {
            Self::Serial => scylla::statement::Consistency::Serial,
            Self::LocalSerial => scylla::statement::Consistency::LocalSerial,
        }
    }
}

impl FromStr for SerialConsistencyLevel {
    type Err = String;

    /// Accepts `SERIAL` or `LOCAL_SERIAL` in any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().replace('-', "_").as_str() {
            "SERIAL" => Ok(Self::Serial),
            "LOCAL_SERIAL" => Ok(Self::LocalSerial),
            _ => Err(format!(
                "unknown serial consistency {s:?}; expected SERIAL or LOCAL_SERIAL"
            )),
        }
    }
}

impl fmt::Display for SerialConsistencyLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Serial => "SERIAL",
            Self::LocalSerial => "LOCAL_SERIAL",
        })
    }
}

/// Settings of the scylla backend.
#[derive(Clone)]
pub struct ScyllaConfig {
    /// Contact points, `host:port` each.
    pub hosts: Vec<String>,
    /// The keyspace; it must exist already (the operator creates it).
    pub keyspace: String,
    /// User name for password authentication, if the cluster requires it.
    pub username: Option<String>,
    /// Password for `username`.
    pub password: Option<String>,
    /// Consistency of reads and writes.
    pub consistency: ConsistencyLevel,
    /// Consistency of the Paxos phase of lightweight transactions.
    pub serial_consistency: SerialConsistencyLevel,
    /// Client-side timeout of each request (also used to connect).
    pub request_timeout: Duration,
    /// How long the migration lock lives without a heartbeat.
    pub migration_lock_ttl: Duration,
    /// How long an instance waits for another instance's migration lock.
    pub migration_wait_timeout: Duration,
    /// Client TLS to every node; plain TCP when `None`.
    pub tls: Option<TlsSettings>,
    /// Connect only to the CQL port, not to ScyllaDB's shard-aware port (for networks
    /// that let only the CQL port through, e.g. behind NAT or a load balancer).
    pub disable_shard_aware_port: bool,
}

impl Default for ScyllaConfig {
    fn default() -> Self {
        Self {
            hosts: vec!["localhost:9042".to_owned()],
            keyspace: "gitstore".to_owned(),
            username: None,
            password: None,
            consistency: ConsistencyLevel::LocalQuorum,
            serial_consistency: SerialConsistencyLevel::LocalSerial,
            request_timeout: Duration::from_secs(10),
            migration_lock_ttl: Duration::from_secs(30),
            migration_wait_timeout: Duration::from_secs(300),
            tls: None,
            disable_shard_aware_port: false,
        }
    }
}

impl fmt::Debug for ScyllaConfig {
    /// Never prints the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScyllaConfig")
            .field("hosts", &self.hosts)
            .field("keyspace", &self.keyspace)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("consistency", &self.consistency)
            .field("serial_consistency", &self.serial_consistency)
            .field("request_timeout", &self.request_timeout)
            .field("migration_lock_ttl", &self.migration_lock_ttl)
            .field("migration_wait_timeout", &self.migration_wait_timeout)
            .field("tls", &self.tls)
            .field("disable_shard_aware_port", &self.disable_shard_aware_port)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consistency_names_parse_in_any_case() {
        assert_eq!(
            "LOCAL_QUORUM".parse::<ConsistencyLevel>().unwrap(),
            ConsistencyLevel::LocalQuorum
        );
        assert_eq!(
            "local_one".parse::<ConsistencyLevel>().unwrap(),
            ConsistencyLevel::LocalOne
        );
        assert_eq!(
            "quorum".parse::<ConsistencyLevel>().unwrap(),
            ConsistencyLevel::Quorum
        );
        assert!("LOCAL_SERIAL".parse::<ConsistencyLevel>().is_err());
        assert_eq!(ConsistencyLevel::EachQuorum.to_string(), "EACH_QUORUM");
        assert_eq!(
            "serial".parse::<SerialConsistencyLevel>().unwrap(),
            SerialConsistencyLevel::Serial
        );
        assert_eq!(
            SerialConsistencyLevel::default().to_string(),
            "LOCAL_SERIAL"
        );
        assert!("ONE".parse::<SerialConsistencyLevel>().is_err());
    }

    #[test]
    fn command_line_values_are_the_cql_names() {
        use clap::ValueEnum;
        for level in ConsistencyLevel::value_variants() {
            let value = level.to_possible_value().unwrap();
            assert_eq!(value.get_name(), level.to_string());
            let lower = level.to_string().to_lowercase();
            assert_eq!(
                <ConsistencyLevel as ValueEnum>::from_str(&lower, true).as_ref(),
                Ok(level)
            );
        }
        for level in SerialConsistencyLevel::value_variants() {
            let value = level.to_possible_value().unwrap();
            assert_eq!(value.get_name(), level.to_string());
            let lower = level.to_string().to_lowercase();
            assert_eq!(
                <SerialConsistencyLevel as ValueEnum>::from_str(&lower, true).as_ref(),
                Ok(level)
            );
        }
        assert_eq!(
            ConsistencyLevel::value_variants().len(),
            ConsistencyLevel::NAMES.len()
        );
        assert!(<ConsistencyLevel as ValueEnum>::from_str("LOCAL_QUORUMM", true).is_err());
    }

    #[test]
    fn a_typo_on_the_command_line_is_a_usage_error_listing_the_choices() {
        use clap::Parser as _;

        #[derive(clap::Parser)]
        struct Cli {
            #[arg(long, ignore_case = true)]
            consistency: ConsistencyLevel,
            #[arg(long, ignore_case = true)]
            serial: SerialConsistencyLevel,
        }

        let cli =
            Cli::try_parse_from(["x", "--consistency", "local_one", "--serial", "SERIAL"]).unwrap();
        assert_eq!(cli.consistency, ConsistencyLevel::LocalOne);
        assert_eq!(cli.serial, SerialConsistencyLevel::Serial);
        let err = Cli::try_parse_from(["x", "--consistency", "LOCAL_QUOROM", "--serial", "SERIAL"])
            .err()
            .unwrap();
        assert_eq!(err.kind(), clap::error::ErrorKind::InvalidValue);
        let shown = err.to_string();
        assert!(
            shown.contains("LOCAL_QUORUM") && shown.contains("EACH_QUORUM"),
            "{shown}"
        );
    }

    #[test]
    fn config_debug_hides_the_password() {
        let cfg = ScyllaConfig {
            password: Some("hunter2".to_owned()),
            ..ScyllaConfig::default()
        };
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
