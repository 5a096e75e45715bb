//! The SSRF guard: a target that is, or resolves to, an address no provider lives at is
//! refused unless its network is listed in
//! [`OutboundSettings::allow_private_networks`](crate::settings::OutboundSettings). It is
//! checked before sending ([`SsrfGuard::check_target`], for address literals) and again inside
//! the client's resolver ([`GuardedResolver`], for host names), so DNS rebinding between the
//! two gains nothing. Refused are:
//! - IPv4: "this network" 0.0.0.0/8, private 10/8, 172.16/12 and 192.168/16, shared
//!   100.64.0.0/10, loopback 127/8, link-local 169.254/16 (cloud metadata), IETF protocol
//!   assignments 192.0.0.0/24, benchmarking 198.18.0.0/15, documentation 192.0.2.0/24,
//!   198.51.100.0/24 and 203.0.113.0/24, multicast 224/4, and reserved 240/4 (with the
//!   broadcast address).
//! - IPv6: unspecified, loopback, multicast, unique local fc00::/7, link-local fe80::/10,
//!   site-local fec0::/10, documentation 2001:db8::/32, and the tunnel and translation
//!   prefixes that lead to addresses the guard cannot see: 6to4 2002::/16, Teredo
//!   2001::/32 and local-use NAT64 64:ff9b:1::/48, each as a whole.
//! - IPv6 forms that carry an IPv4 address, judged as that address: IPv4-mapped
//!   (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`) and well-known NAT64
//!   (`64:ff9b::a.b.c.d`, kept open for public addresses so IPv6-only deployments behind
//!   DNS64 still reach providers).
//!
//! A listed network lets through what it contains, written either way: `127.0.0.0/8` also
//! allows `::ffff:127.0.0.1`, and an IPv6 network allows its own addresses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;

use crate::error::{Error, Refused};

/// Decides which addresses providers may be reached at.
#[derive(Clone, Debug, Default)]
pub struct SsrfGuard {
    allowed: Vec<IpNet>,
}

impl SsrfGuard {
    /// A guard allowing these networks on top of public addresses.
    pub fn new(allowed: Vec<IpNet>) -> Self {
        Self { allowed }
    }

    /// Whether a request may go to `ip`: a public address, or one inside an allowed network
    /// (an IPv6 form that carries an IPv4 address is also allowed by a network holding that
    /// IPv4 address).
    pub fn permits(&self, ip: IpAddr) -> bool {
        if !is_internal(ip) {
            return true;
        }
        let carried = match ip {
            IpAddr::V6(v6) => embedded_v4(v6).map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        self.allowed
            .iter()
            .any(|net| net.contains(&ip) || carried.is_some_and(|v4| net.contains(&v4)))
    }

    /// Refuses a URL whose host is a guarded address literal. Host names are left to
    /// [`GuardedResolver`], when a connection is opened.
    pub(super) fn check_target(&self, url: &url::Url) -> Result<(), Error> {
        match url.host() {
            Some(url::Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip)),
            Some(url::Host::Domain(_)) => Ok(()),
            None => Err(Error::BadResponse("a URL without a host".into())),
        }
    }

    fn check_ip(&self, ip: IpAddr) -> Result<(), Error> {
        if self.permits(ip) {
            Ok(())
        } else {
            Err(Error::TargetRefused(ip.to_string()))
        }
    }
}

/// IPv4 networks no provider is reached at, as (network, prefix length).
const INTERNAL_V4: [(Ipv4Addr, u8); 14] = [
    // "this network" (RFC 791), where 0.0.0.0 connects to the local host
    (Ipv4Addr::new(0, 0, 0, 0), 8),
    // private (RFC 1918)
    (Ipv4Addr::new(10, 0, 0, 0), 8),
    // shared address space, carrier-grade NAT (RFC 6598)
    (Ipv4Addr::new(100, 64, 0, 0), 10),
    // loopback
    (Ipv4Addr::new(127, 0, 0, 0), 8),
    // link-local, where cloud metadata services answer (169.254.169.254)
    (Ipv4Addr::new(169, 254, 0, 0), 16),
    // private (RFC 1918)
    (Ipv4Addr::new(172, 16, 0, 0), 12),
    // IETF protocol assignments (RFC 6890), such as NAT64 discovery's 192.0.0.170
    (Ipv4Addr::new(192, 0, 0, 0), 24),
    // documentation, TEST-NET-1 (RFC 5737)
    (Ipv4Addr::new(192, 0, 2, 0), 24),
    // private (RFC 1918)
    (Ipv4Addr::new(192, 168, 0, 0), 16),
    // benchmarking (RFC 2544), used inside some private networks
    (Ipv4Addr::new(198, 18, 0, 0), 15),
    // documentation, TEST-NET-2
    (Ipv4Addr::new(198, 51, 100, 0), 24),
    // documentation, TEST-NET-3
    (Ipv4Addr::new(203, 0, 113, 0), 24),
    // multicast
    (Ipv4Addr::new(224, 0, 0, 0), 4),
    // reserved (RFC 1112), with the limited broadcast address 255.255.255.255
    (Ipv4Addr::new(240, 0, 0, 0), 4),
];

/// IPv6 networks no provider is reached at, as (network, prefix length). The prefixes that
/// embed an IPv4 address the guard can judge are handled by [`embedded_v4`] instead.
const INTERNAL_V6: [(Ipv6Addr, u8); 10] = [
    // unspecified
    (Ipv6Addr::UNSPECIFIED, 128),
    // loopback
    (Ipv6Addr::LOCALHOST, 128),
    // local-use NAT64 (RFC 8215): translated into networks the guard cannot see
    (Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48),
    // Teredo (RFC 4380): tunnelled to an IPv4 address hidden in the client part
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 32),
    // documentation (RFC 3849)
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32),
    // 6to4 (RFC 3056): relayed to the embedded IPv4 address's network
    (Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16),
    // unique local (includes AWS's fd00:ec2::254 metadata address)
    (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7),
    // link-local
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10),
    // site-local (deprecated by RFC 3879, still routed inside some sites)
    (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10),
    // multicast
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8),
];

fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => is_internal_v6(v6),
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let ip = u32::from(ip);
    INTERNAL_V4.iter().any(|&(net, len)| {
        let mask = u32::MAX << (32 - u32::from(len));
        ip & mask == u32::from(net)
    })
}

fn is_internal_v6(ip: Ipv6Addr) -> bool {
    let bits = u128::from(ip);
    let listed = INTERNAL_V6.iter().any(|&(net, len)| {
        let mask = u128::MAX << (128 - u32::from(len));
        bits & mask == u128::from(net)
    });
    listed || embedded_v4(ip).is_some_and(is_internal_v4)
}

/// The IPv4 address an IPv6 address stands for, in the forms that carry one in their last 32
/// bits: IPv4-mapped `::ffff:0:0/96`, IPv4-compatible `::/96` (but `::` and `::1`, which are
/// IPv6's own unspecified and loopback addresses) and well-known NAT64 `64:ff9b::/96`.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let carried = Ipv4Addr::from(u128::from(ip) as u32);
    match s[..6] {
        [0, 0, 0, 0, 0, 0xffff] => Some(carried),
        [0, 0, 0, 0, 0, 0] if u32::from(carried) > 1 => Some(carried),
        [0x64, 0xff9b, 0, 0, 0, 0] => Some(carried),
        _ => None,
    }
}

/// reqwest's resolver, filtered by the guard: the last word on where a connection goes. A
/// host name is checked here, when a connection is opened, and only here: a pooled connection
/// needs no lookup at all.
pub(super) struct GuardedResolver {
    pub(super) guard: SsrfGuard,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.guard.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| guard.permits(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(Box::new(Refused { host }) as _);
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::Outbound;
    use crate::outbound::tests::loopback;
    use crate::settings::OutboundSettings;

    #[test]
    fn guard_refuses_internal_targets_unless_allowed() {
        let strict = SsrfGuard::default();
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "224.0.0.1",
        ] {
            assert!(!strict.permits(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["140.82.112.6", "2606:50c0:8000::154", "64:ff9b::8c52:7006"] {
            assert!(strict.permits(ip.parse().unwrap()), "{ip}");
        }
        let loopback = SsrfGuard::new(vec!["127.0.0.0/8".parse().unwrap()]);
        assert!(loopback.permits("127.0.0.1".parse().unwrap()));
        assert!(loopback.permits("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!loopback.permits("169.254.169.254".parse().unwrap()));
    }

    /// Each added range: addresses inside it refused, a public neighbour permitted.
    #[test]
    fn guard_refuses_reserved_documentation_and_tunnel_ranges() {
        let strict = SsrfGuard::default();
        for (denied, permitted) in [
            // "this network" 0.0.0.0/8
            (
                &["0.0.0.0", "0.1.2.3", "0.255.255.255"][..],
                &["1.0.0.1"][..],
            ),
            // IETF protocol assignments 192.0.0.0/24
            (&["192.0.0.1", "192.0.0.170", "192.0.0.255"], &["192.0.1.1"]),
            // benchmarking 198.18.0.0/15
            (
                &["198.18.0.1", "198.19.255.255"],
                &["198.17.255.255", "198.20.0.1"],
            ),
            // documentation
            (&["192.0.2.1", "192.0.2.255"], &["192.0.3.1"]),
            (&["198.51.100.7"], &["198.51.101.7", "198.51.99.7"]),
            (&["203.0.113.9"], &["203.0.112.9", "203.0.114.9"]),
            // reserved 240.0.0.0/4, with broadcast
            (
                &["240.0.0.1", "250.1.2.3", "255.255.255.255"],
                &["223.255.255.254"],
            ),
            // IPv6 documentation 2001:db8::/32
            (&["2001:db8::1", "2001:db8:ffff::1"], &["2001:db9::1"]),
            // 6to4 2002::/16, whatever the IPv4 address it embeds
            (
                &["2002::1", "2002:c000:0201::1", "2002:8c52:7006::1"],
                &["2003::1", "2001:4860:4860::8888"],
            ),
            // Teredo 2001::/32
            (
                &["2001::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2"],
                &["2001:200::1"],
            ),
            // local-use NAT64 64:ff9b:1::/48
            (
                &["64:ff9b:1::a00:1", "64:ff9b:1:ffff::8c52:7006"],
                &["64:ff9b:2::1"],
            ),
            // well-known NAT64 64:ff9b::/96 of a denied IPv4 address
            (
                &["64:ff9b::7f00:1", "64:ff9b::c612:1", "64:ff9b::f000:1"],
                &["64:ff9b::8c52:7006"],
            ),
            // site-local fec0::/10
            (&["fec0::1"], &["2606:50c0:8000::154"]),
        ] {
            for ip in denied {
                assert!(!strict.permits(ip.parse().unwrap()), "{ip} permitted");
            }
            for ip in permitted {
                assert!(strict.permits(ip.parse().unwrap()), "{ip} refused");
            }
        }
    }

    /// An IPv4 address cannot be smuggled in as an IPv4-mapped or IPv4-compatible IPv6
    /// address.
    #[test]
    fn mapped_and_compatible_forms_are_judged_as_their_ipv4_address() {
        let strict = SsrfGuard::default();
        for v4 in [
            "127.0.0.1",
            "10.0.0.1",
            "10.255.1.2",
            "169.254.169.254",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "0.0.0.1",
            "192.0.0.170",
            "192.0.2.1",
            "198.18.0.1",
            "198.51.100.1",
            "203.0.113.1",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            for form in [format!("::ffff:{v4}"), format!("::{v4}")] {
                let ip: IpAddr = form.parse().unwrap();
                assert!(!strict.permits(ip), "{form} permitted");
            }
        }
        for v4 in ["140.82.112.6", "8.8.8.8", "11.0.0.1", "169.255.0.1"] {
            for form in [format!("::ffff:{v4}"), format!("::{v4}")] {
                let ip: IpAddr = form.parse().unwrap();
                assert!(strict.permits(ip), "{form} refused");
            }
        }
        // IPv6's own unspecified and loopback addresses are not IPv4-compatible forms.
        assert!(!strict.permits("::".parse().unwrap()));
        assert!(!strict.permits("::1".parse().unwrap()));
    }

    /// An allowed network lets through what it lists, in every form, and nothing else.
    #[test]
    fn allowed_networks_open_exactly_what_they_list() {
        let guard = SsrfGuard::new(vec![
            "10.0.0.0/8".parse().unwrap(),
            "198.18.0.0/15".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
            "2002::/16".parse().unwrap(),
        ]);
        for ip in [
            "10.1.2.3",
            "::ffff:10.1.2.3",
            "::10.1.2.3",
            "64:ff9b::a01:203",
            "198.19.0.1",
            "::ffff:198.18.0.1",
            "2001:db8::1",
            "2002:c000:0201::1",
        ] {
            assert!(guard.permits(ip.parse().unwrap()), "{ip} refused");
        }
        for ip in [
            "127.0.0.1",
            "::ffff:127.0.0.1",
            "169.254.169.254",
            "::169.254.169.254",
            "192.0.2.1",
            "2001::1",
            "64:ff9b:1::a01:203",
        ] {
            assert!(!guard.permits(ip.parse().unwrap()), "{ip} permitted");
        }
        // A mapped network written in IPv6 allows its mapped addresses.
        let mapped = SsrfGuard::new(vec!["::ffff:127.0.0.0/104".parse().unwrap()]);
        assert!(mapped.permits("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!mapped.permits("::ffff:10.0.0.1".parse().unwrap()));
    }

    #[tokio::test]
    async fn literal_and_resolved_internal_targets_are_refused_before_sending() {
        let outbound = Outbound::new(&OutboundSettings::default()).unwrap();
        for url in [
            "http://127.0.0.1:9/x",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]:9/",
            "http://localhost:9/",
        ] {
            let req = outbound.request(reqwest::Method::GET, url).unwrap();
            let err = outbound.send(req).await.unwrap_err();
            assert!(matches!(err, Error::TargetRefused(_)), "{url}: {err:?}");
            assert_eq!(err.reason(), crate::Reason::Network);
        }
        // A name is refused by the resolver, which names it.
        let req = outbound
            .request(reqwest::Method::GET, "http://localhost:9/")
            .unwrap();
        match outbound.send(req).await {
            Err(Error::TargetRefused(host)) => assert_eq!(host, "localhost"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_permitted_host_name_is_resolved_when_connecting_and_reached() {
        use wiremock::{Mock, MockServer, ResponseTemplate};
        let server = MockServer::start().await;
        Mock::given(wiremock::matchers::any())
            .respond_with(ResponseTemplate::new(204))
            .expect(2)
            .mount(&server)
            .await;
        let outbound = loopback(|_| {});
        let port = server.address().port();
        for url in [
            format!("http://localhost:{port}/v2/"),
            format!("http://127.0.0.1:{port}/v2/"),
        ] {
            let req = outbound.request(reqwest::Method::GET, &url).unwrap();
            let response = outbound.send(req).await.unwrap();
            assert_eq!(response.status().as_u16(), 204, "{url}");
        }
    }
}
