//! The `[cluster]` settings.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Several replicas over one PostgreSQL database; see `docs/operations.md`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSettings {
    /// Share the fleet with the other replicas on the same database (PostgreSQL only).
    #[serde(default)]
    pub enabled: bool,
    /// This replica's name, unique in the cluster; default: the host name and a random suffix.
    #[serde(default)]
    pub replica_id: Option<String>,
    /// How the other replicas reach this one's API (for on-demand checks of the integrations
    /// it owns), e.g. `http://10.0.0.5:8080`.
    #[serde(default)]
    pub advertise_url: Option<String>,
    /// How many shards the fleet is split into: a shard is the unit a replica owns. Every
    /// replica of a cluster must use the same number.
    #[serde(default = "default_shards")]
    pub shards: u32,
    /// How long a lease lasts without renewal: a replica that dies has its shards taken over
    /// within this (plus one renewal period).
    #[serde(default = "default_lease_ttl_seconds")]
    pub lease_ttl_seconds: u64,
    /// How often leases are renewed and shares rebalanced.
    #[serde(default = "default_renew_seconds")]
    pub renew_seconds: u64,
}

fn default_shards() -> u32 {
    256
}
fn default_lease_ttl_seconds() -> u64 {
    15
}
fn default_renew_seconds() -> u64 {
    5
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            replica_id: None,
            advertise_url: None,
            shards: default_shards(),
            lease_ttl_seconds: default_lease_ttl_seconds(),
            renew_seconds: default_renew_seconds(),
        }
    }
}

/// Why the `[cluster]` settings were refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidClusterSettings {
    #[error("shards must be 1 to 65536")]
    Shards,
    #[error("renew_seconds must be at least 1 and at most a third of lease_ttl_seconds")]
    Renewal,
    #[error("replica_id must be 1 to 128 characters of letters, digits, '.', '_' or '-'")]
    ReplicaId,
    #[error("advertise_url must be an http or https URL")]
    AdvertiseUrl,
}

impl ClusterSettings {
    /// Checks the settings, whether the cluster is enabled or not.
    ///
    /// # Errors
    /// [`InvalidClusterSettings`].
    pub fn validate(&self) -> Result<(), InvalidClusterSettings> {
        if !(1..=65_536).contains(&self.shards) {
            return Err(InvalidClusterSettings::Shards);
        }
        if self.renew_seconds == 0 || self.renew_seconds * 3 > self.lease_ttl_seconds {
            return Err(InvalidClusterSettings::Renewal);
        }
        if let Some(id) = &self.replica_id
            && !valid_replica_id(id)
        {
            return Err(InvalidClusterSettings::ReplicaId);
        }
        if let Some(url) = &self.advertise_url {
            let parsed = url::Url::parse(url).map_err(|_| InvalidClusterSettings::AdvertiseUrl)?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                return Err(InvalidClusterSettings::AdvertiseUrl);
            }
        }
        Ok(())
    }

    pub fn lease_ttl(&self) -> Duration {
        Duration::from_secs(self.lease_ttl_seconds)
    }

    pub fn renew(&self) -> Duration {
        Duration::from_secs(self.renew_seconds)
    }

    /// This replica's name: the configured one, or the host name with a random suffix.
    pub fn replica_id(&self) -> String {
        if let Some(id) = &self.replica_id {
            return id.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| {
                h.trim()
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
                    .take(100)
                    .collect::<String>()
            })
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "replica".into());
        format!("{host}-{:08x}", rand::random::<u32>())
    }
}

fn valid_replica_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        assert_eq!(ClusterSettings::default().validate(), Ok(()));
        let bad = |change: fn(&mut ClusterSettings)| {
            let mut s = ClusterSettings::default();
            change(&mut s);
            s.validate().unwrap_err()
        };
        assert_eq!(bad(|s| s.shards = 0), InvalidClusterSettings::Shards);
        assert_eq!(
            bad(|s| s.renew_seconds = 6),
            InvalidClusterSettings::Renewal
        );
        assert_eq!(
            bad(|s| s.renew_seconds = 0),
            InvalidClusterSettings::Renewal
        );
        assert_eq!(
            bad(|s| s.replica_id = Some("a b".into())),
            InvalidClusterSettings::ReplicaId
        );
        assert_eq!(
            bad(|s| s.advertise_url = Some("ftp://x".into())),
            InvalidClusterSettings::AdvertiseUrl
        );
    }

    #[test]
    fn a_generated_replica_id_is_valid_and_unique() {
        let s = ClusterSettings::default();
        let (a, b) = (s.replica_id(), s.replica_id());
        assert!(valid_replica_id(&a), "{a}");
        assert_ne!(a, b);
    }
}
