//! The provider endpoint's TLS certificate, read on the check's own connection: the client
//! keeps the peer certificate of every TLS response (`tls_info`), [`Outbound::send`] reads
//! its validity and leaves it in the response's extensions as a [`PeerCertificate`], and a
//! connector hands it to [`judge_certificate`] with its report. No extra request is made.
//!
//! A certificate already expired, or not yet valid, fails the handshake (`tls`) before any of
//! this runs; [`judge_certificate`] says the same should one get through.
//!
//! [`Outbound::send`]: super::Outbound::send

use chrono::{DateTime, Utc};

use crate::health::{HealthReport, Reason};

/// The validity of the certificate a provider endpoint presented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerCertificate {
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
}

impl PeerCertificate {
    /// The validity of a DER certificate; `None` when it does not parse.
    pub fn from_der(der: &[u8]) -> Option<Self> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let validity = cert.validity();
        Some(Self {
            not_before: DateTime::from_timestamp(validity.not_before.timestamp(), 0)?,
            not_after: DateTime::from_timestamp(validity.not_after.timestamp(), 0)?,
        })
    }

    /// The certificate a response came with, if it came over TLS.
    pub fn of(response: &reqwest::Response) -> Option<Self> {
        response.extensions().get::<Self>().copied()
    }
}

/// `report` with the certificate's expiry, warned `certificate_expiring` (if it was healthy)
/// when the certificate expires within `horizon`, unhealthy (`tls`) outside its validity.
/// A zero `horizon` reports the date without warning.
pub fn judge_certificate(
    report: HealthReport,
    certificate: Option<PeerCertificate>,
    horizon: chrono::Duration,
    now: DateTime<Utc>,
) -> HealthReport {
    let Some(cert) = certificate else {
        return report;
    };
    let mut report = report;
    report.certificate_expires_at = Some(cert.not_after);
    let day = cert.not_after.format("%Y-%m-%d %H:%M UTC");
    if cert.not_after <= now {
        return HealthReport {
            certificate_expires_at: Some(cert.not_after),
            quota: report.quota,
            credential_expires_at: report.credential_expires_at,
            ..HealthReport::unhealthy(
                Reason::Tls,
                format!("the provider's TLS certificate expired on {day}"),
            )
        };
    }
    if cert.not_before > now {
        return HealthReport {
            certificate_expires_at: Some(cert.not_after),
            quota: report.quota,
            credential_expires_at: report.credential_expires_at,
            ..HealthReport::unhealthy(
                Reason::Tls,
                "the provider's TLS certificate is not valid yet",
            )
        };
    }
    if horizon > chrono::Duration::zero() && cert.not_after - now <= horizon {
        let days = (cert.not_after - now).num_days();
        report = report.warn(
            Reason::CertificateExpiring,
            format!("the provider's TLS certificate expires on {day}, in {days} days"),
        );
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Health;

    fn cert(not_after_days: i64) -> (PeerCertificate, DateTime<Utc>) {
        let now = Utc::now();
        (
            PeerCertificate {
                not_before: now - chrono::Duration::days(30),
                not_after: now + chrono::Duration::days(not_after_days),
            },
            now,
        )
    }

    #[test]
    fn expiry_warns_at_the_horizon_and_not_before() {
        let horizon = chrono::Duration::days(14);
        let (c, now) = cert(15);
        let r = judge_certificate(HealthReport::healthy(), Some(c), horizon, now);
        assert_eq!(r.health, Health::Healthy);
        assert_eq!(r.certificate_expires_at, Some(c.not_after));
        let (c, now) = cert(14);
        let r = judge_certificate(HealthReport::healthy(), Some(c), horizon, now);
        assert_eq!(
            (r.health, r.reason),
            (Health::Degraded, Some(Reason::CertificateExpiring))
        );
        let date = c.not_after.format("%Y-%m-%d").to_string();
        assert!(r.message.unwrap().contains(&date));
        let r = judge_certificate(
            HealthReport::healthy(),
            Some(c),
            chrono::Duration::zero(),
            now,
        );
        assert_eq!(r.health, Health::Healthy, "a zero horizon never warns");
    }

    #[test]
    fn outside_its_validity_is_a_tls_failure() {
        let horizon = chrono::Duration::days(14);
        let (c, now) = cert(-1);
        let r = judge_certificate(HealthReport::healthy(), Some(c), horizon, now);
        assert_eq!((r.health, r.reason), (Health::Unhealthy, Some(Reason::Tls)));
        let now = Utc::now();
        let early = PeerCertificate {
            not_before: now + chrono::Duration::days(1),
            not_after: now + chrono::Duration::days(90),
        };
        let r = judge_certificate(HealthReport::healthy(), Some(early), horizon, now);
        assert_eq!(r.reason, Some(Reason::Tls));
        // plain HTTP: nothing to judge
        let r = judge_certificate(HealthReport::healthy(), None, horizon, now);
        assert_eq!(r, HealthReport::healthy());
    }

    #[test]
    fn a_failure_is_not_hidden_by_a_warning() {
        let (c, now) = cert(2);
        let failed = HealthReport::unhealthy(Reason::AuthFailed, "401");
        let r = judge_certificate(failed, Some(c), chrono::Duration::days(14), now);
        assert_eq!(r.reason, Some(Reason::AuthFailed));
        assert_eq!(r.certificate_expires_at, Some(c.not_after));
    }

    #[test]
    fn garbage_is_no_certificate() {
        assert_eq!(PeerCertificate::from_der(b"not a certificate"), None);
        assert_eq!(PeerCertificate::from_der(&[]), None);
    }
}
