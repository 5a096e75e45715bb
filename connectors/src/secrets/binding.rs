//! Credential–destination binding: the hosts a secret may be sent to, stored with the secret.
//!
//! The owner of a secret can say where it may go: `allowed_hosts` in the Vault KV v2 secret's
//! `custom_metadata`, or in a `<file>.meta.json` sidecar beside a file secret. Entries are
//! `host`, `host:port`, `*.domain` or `*.domain:port` (IPv6 in brackets), separated by commas
//! or white space. A secret with such a list is sent only to a matching host, whatever the
//! integration's configuration says; a secret without one may go wherever its tenant's
//! integrations point. A list that does not parse binds the secret to nothing (fail closed).

use std::fmt;
use std::sync::Arc;

use url::Url;

/// The metadata key holding the list, in Vault's `custom_metadata` and in a file's sidecar.
pub const ALLOWED_HOSTS_KEY: &str = "allowed_hosts";

/// One entry of an `allowed_hosts` list.
#[derive(Clone, Debug, PartialEq, Eq)]
struct HostPattern {
    /// Lower-case host, without the `*.` of a wildcard; IPv6 in brackets.
    host: String,
    wildcard: bool,
    port: Option<u16>,
}

impl HostPattern {
    fn parse(entry: &str) -> Option<Self> {
        let entry = entry.trim().to_ascii_lowercase();
        let (wildcard, rest) = match entry.strip_prefix("*.") {
            Some(rest) => (true, rest.to_owned()),
            None => (false, entry),
        };
        let (host, port) = if rest.starts_with('[') {
            let end = rest.find(']')?;
            let (host, tail) = rest.split_at(end + 1);
            let port = match tail.strip_prefix(':') {
                Some(p) => Some(p.parse().ok()?),
                None if tail.is_empty() => None,
                None => return None,
            };
            (host.to_owned(), port)
        } else {
            match rest.rsplit_once(':') {
                Some((host, port)) => (host.to_owned(), Some(port.parse().ok()?)),
                None => (rest, None),
            }
        };
        let valid = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'))
            && !(wildcard && host.starts_with('['));
        valid.then_some(Self {
            host,
            wildcard,
            port,
        })
    }

    fn matches(&self, host: &str, port: Option<u16>) -> bool {
        let host_ok = if self.wildcard {
            host.strip_suffix(self.host.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.'))
        } else {
            host == self.host
        };
        host_ok && self.port.is_none_or(|p| Some(p) == port)
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.wildcard {
            f.write_str("*.")?;
        }
        f.write_str(&self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

/// Where a resolved secret may be sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Binding(Option<Arc<[HostPattern]>>);

impl Binding {
    /// No list: the secret may go wherever its tenant's integrations point.
    pub const fn unbound() -> Self {
        Binding(None)
    }

    /// The binding of an `allowed_hosts` value; `None` if it does not parse (the caller then
    /// refuses the secret rather than sending it unbound).
    pub fn parse(list: &str) -> Option<Self> {
        let patterns = list
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|e| !e.is_empty())
            .map(HostPattern::parse)
            .collect::<Option<Vec<_>>>()?;
        Some(Binding(Some(patterns.into())))
    }

    /// Whether the list exists.
    pub fn is_bound(&self) -> bool {
        self.0.is_some()
    }

    /// Whether a request to `url` may carry the secret.
    pub fn permits(&self, url: &Url) -> bool {
        let Some(patterns) = &self.0 else {
            return true;
        };
        let Some(host) = url.host_str() else {
            return false;
        };
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let port = url.port_or_known_default();
        patterns.iter().any(|p| p.matches(&host, port))
    }

    /// The list, for messages (hosts are the secret owner's metadata, not secrets).
    pub fn describe(&self) -> String {
        match &self.0 {
            None => "any host".into(),
            Some(p) if p.is_empty() => "no host".into(),
            Some(p) => p
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn hosts_ports_and_wildcards() {
        let b = Binding::parse("gitlab.example.com, *.corp.example:8443 [::1]:9000").unwrap();
        assert!(b.permits(&url("https://gitlab.example.com/api/v4")));
        assert!(b.permits(&url("http://GITLAB.example.com./x")));
        assert!(b.permits(&url("https://a.corp.example:8443/")));
        assert!(b.permits(&url("https://a.b.corp.example:8443/")));
        assert!(b.permits(&url("http://[::1]:9000/")));
        for refused in [
            "https://gitlab.example.com.evil.test/",
            "https://evilgitlab.example.com/",
            "https://corp.example:8443/",
            "https://a.corp.example/",
            "https://xcorp.example:8443/",
            "http://[::1]:9001/",
            "https://127.0.0.1/",
        ] {
            assert!(!b.permits(&url(refused)), "{refused}");
        }
        assert!(Binding::unbound().permits(&url("https://anywhere.test/")));
        assert!(!Binding::parse("").unwrap().permits(&url("https://a.test/")));
    }

    #[test]
    fn a_list_that_does_not_parse_is_no_binding_at_all() {
        for bad in ["host:port", "a b/c", "*.[::1]", "h:99999", "[::1"] {
            assert!(Binding::parse(bad).is_none(), "{bad}");
        }
    }
}
