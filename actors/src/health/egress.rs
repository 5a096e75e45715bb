//! The egress self-check: can the hub reach anything at all? A set of `host:port` probes is
//! tried with a TCP connection every `interval_seconds`; when none answers, the hub's own
//! egress is down ([`EgressFlag`]). Monitors then hold the failures it explains (network,
//! timeout, TLS): the results are stored with their reason, but no status changes and nothing
//! is alerted; the incident correlator raises one platform incident per tenant instead.
//!
//! Probes must not be loopback, private or otherwise guarded addresses (a probe that always
//! answers proves nothing about the way out) unless `[connectors.outbound]
//! allow_private_networks` lists them, as for every other outbound address.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use connectors::outbound::SsrfGuard;
use tokio::task::JoinHandle;

use crate::events::incidents::{EgressFlag, EgressSettings};

/// A probe that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidProbe {
    #[error("incidents.egress.probes[{index}]: not host:port")]
    Shape { index: usize },
    #[error(
        "incidents.egress.probes[{index}]: a loopback, private or reserved address (allow it in [connectors.outbound] allow_private_networks)"
    )]
    Guarded { index: usize },
}

/// Checks every probe's shape, and that an address given literally (or `localhost`) is one the
/// outbound guard permits.
///
/// # Errors
/// [`InvalidProbe`] for the first probe that cannot be used.
pub fn validate(settings: &EgressSettings, guard: &SsrfGuard) -> Result<(), InvalidProbe> {
    for (index, probe) in settings.probes.iter().enumerate() {
        let (host, port) = probe
            .rsplit_once(':')
            .ok_or(InvalidProbe::Shape { index })?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(InvalidProbe::Shape { index });
        }
        let ip = if host.eq_ignore_ascii_case("localhost") {
            Some(IpAddr::from([127, 0, 0, 1]))
        } else {
            host.parse::<IpAddr>().ok()
        };
        if let Some(ip) = ip
            && !guard.permits(ip)
        {
            return Err(InvalidProbe::Guarded { index });
        }
    }
    Ok(())
}

/// One round: whether any probe accepted a connection within the timeout. Names are resolved
/// each round, and a resolved address the guard does not permit counts as no answer.
async fn any_reachable(probes: &[String], timeout: Duration, guard: &SsrfGuard) -> bool {
    for probe in probes {
        let attempt = async {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host(probe.as_str())
                .await
                .map(|a| a.filter(|a| guard.permits(a.ip())).collect())
                .unwrap_or_default();
            for addr in addrs {
                if tokio::net::TcpStream::connect(addr).await.is_ok() {
                    return true;
                }
            }
            false
        };
        if tokio::time::timeout(timeout, attempt).await == Ok(true) {
            return true;
        }
    }
    false
}

/// Starts probing; `None` when no probe is configured (the check is off).
pub fn spawn(
    settings: &EgressSettings,
    guard: SsrfGuard,
    flag: EgressFlag,
) -> Option<JoinHandle<()>> {
    if settings.probes.is_empty() {
        return None;
    }
    let probes = settings.probes.clone();
    let interval = Duration::from_secs(settings.interval_seconds.max(1));
    let timeout = Duration::from_millis(settings.timeout_ms.max(1));
    Some(tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let down = !any_reachable(&probes, timeout, &guard).await;
            if flag.set_down(down) {
                if down {
                    tracing::warn!(
                        message = "No egress probe answers: the hub's own connectivity is down; failures it explains are held.",
                        probes = probes.len(),
                    );
                } else {
                    tracing::info!(
                        message = "An egress probe answers again: the hub's connectivity is back."
                    );
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A guard allowing loopback, as `allow_private_networks = ["127.0.0.0/8"]` does.
    fn loopback_allowed() -> SsrfGuard {
        let settings = connectors::settings::OutboundSettings {
            allow_private_networks: vec!["127.0.0.0/8".into()],
            ..Default::default()
        };
        connectors::outbound::Outbound::new(&settings)
            .unwrap()
            .guard()
            .clone()
    }

    fn settings(probes: &[&str]) -> EgressSettings {
        EgressSettings {
            probes: probes.iter().map(|p| p.to_string()).collect(),
            ..EgressSettings::default()
        }
    }

    #[test]
    fn loopback_and_private_probes_are_refused_unless_allowed() {
        let strict = SsrfGuard::new(Vec::new());
        assert!(validate(&settings(&["1.1.1.1:443", "example.com:443"]), &strict).is_ok());
        for bad in ["127.0.0.1:80", "localhost:443", "[::1]:443", "10.0.0.1:443"] {
            assert_eq!(
                validate(&settings(&["1.1.1.1:443", bad]), &strict),
                Err(InvalidProbe::Guarded { index: 1 }),
                "{bad}"
            );
        }
        assert_eq!(
            validate(&settings(&["nope"]), &strict),
            Err(InvalidProbe::Shape { index: 0 })
        );
        let allowed = loopback_allowed();
        assert!(validate(&settings(&["127.0.0.1:80"]), &allowed).is_ok());
    }

    #[tokio::test]
    async fn the_flag_follows_whether_a_probe_answers() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let guard = loopback_allowed();
        let timeout = Duration::from_millis(500);
        assert!(any_reachable(std::slice::from_ref(&addr), timeout, &guard).await);
        drop(listener);
        assert!(!any_reachable(std::slice::from_ref(&addr), timeout, &guard).await);
        // A guarded address is never tried.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let strict = SsrfGuard::new(Vec::new());
        assert!(!any_reachable(&[addr], timeout, &strict).await);
    }
}
