//! Memory of the incident correlator (`actors::events::incidents::Correlator`) per tracked
//! integration and per failure domain, read from jemalloc's own statistics (the daemon's
//! allocator), and the CPU time of a storm through it.
//!
//! Integrations are given the domains the daemon derives (`domains_of` on an OCI registry
//! configuration with a vault AuthRef and a configured vault address), over `TENANTS`
//! tenants, in two shapes:
//! - **shared**: every integration of a tenant behind one provider host (a tenant's
//!   registry): two domains per tenant (its provider, the vault);
//! - **own host**: every integration behind a host of its own: a domain per integration,
//!   plus the vault per tenant.
//!
//! Then the storm, on the shared shape: every integration reports `degraded` with reason
//! `provider_degraded` one after the other within a minute (one incident opens per tenant
//! once `min_members` of its integrations have failed, every check failing; the rest join
//! it), and memory is read again with every
//! integration failing and a member of an open incident.
//!
//! Usage: `correlator-memory COUNT TENANTS`. Prints one JSON line (and the figures known so far
//! on standard error after each phase).

use std::sync::Arc;
use std::time::Instant;

use actors::events::incidents::domain::domains_of;
use actors::events::incidents::{Correlator, Effects, IncidentSettings, Observed};
use anyhow::{Context, bail};
use chrono::{Duration, Utc};
use serde_json::json;
use tikv_jemalloc_ctl::{epoch, stats};
use uuid::Uuid;

/// The daemon's allocator, whose statistics are read.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const VAULT: &str = "https://vault.internal:8200";
/// The `[health] interval_seconds` default.
const CHECKED_EVERY: std::time::Duration = std::time::Duration::from_secs(300);

fn allocated() -> anyhow::Result<i64> {
    epoch::advance().map_err(|e| anyhow::anyhow!("jemalloc epoch: {e}"))?;
    let bytes = stats::allocated::read().map_err(|e| anyhow::anyhow!("jemalloc stats: {e}"))?;
    Ok(bytes as i64)
}

/// The `[incidents]` defaults.
fn settings() -> IncidentSettings {
    IncidentSettings::default()
}

/// `count` integrations over `tenants` tenants: (id, tenant, index).
fn fleet(count: usize, tenants: usize) -> Vec<(Uuid, Arc<str>, usize)> {
    let names: Vec<Arc<str>> = (0..tenants)
        .map(|t| Arc::from(format!("t{t:03}")))
        .collect();
    (0..count)
        .map(|i| (Uuid::now_v7(), names[i % tenants].clone(), i))
        .collect()
}

/// Tracks the fleet with the domains the daemon derives; `own`: each integration behind a
/// host of its own.
fn track(c: &mut Correlator, fleet: &[(Uuid, Arc<str>, usize)], tenants: usize, own: bool) {
    for (id, tenant, i) in fleet {
        let host = if own {
            format!("https://registry-{i}.example.com")
        } else {
            format!("https://registry-{}.example.com", i % tenants)
        };
        let config = json!({"baseUrl": host});
        let auth_ref = format!("authref://vault/secret/tenants/{tenant}/ci/{i}#token");
        let domains = domains_of("oci_registry", &config, Some(&auth_ref), Some(VAULT));
        assert_eq!(domains.len(), 2, "a provider and the vault");
        c.upsert(*id, tenant.clone(), domains, CHECKED_EVERY);
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, count, tenants] = args.as_slice() else {
        bail!("usage: correlator-memory COUNT TENANTS");
    };
    let count: usize = count.parse().context("COUNT")?;
    let tenants: usize = tenants.parse().context("TENANTS")?;
    if count == 0 || tenants == 0 || tenants > count {
        bail!("COUNT and TENANTS must be positive, TENANTS at most COUNT");
    }
    let mut out = serde_json::Map::new();
    out.insert("count".into(), json!(count));
    out.insert("tenants".into(), json!(tenants));
    for own in [false, true] {
        let ids = fleet(count, tenants);
        let before = allocated()?;
        let started = Instant::now();
        let mut c = Correlator::new(settings());
        track(&mut c, &ids, tenants, own);
        let took = started.elapsed();
        let after = allocated()?;
        assert_eq!(c.known(), count);
        let shape = if own { "own_host" } else { "shared" };
        out.insert(
            format!("{shape}_bytes_per_integration"),
            json!(((after - before) as f64 / count as f64).round()),
        );
        out.insert(
            format!("{shape}_total_mb"),
            json!(round1((after - before) as f64 / 1e6)),
        );
        out.insert(
            format!("{shape}_track_s"),
            json!(round2(took.as_secs_f64())),
        );
        // What is known so far, in case a long storm is cut short.
        eprintln!("{}", serde_json::Value::Object(out.clone()));
        if own {
            drop(c);
            continue;
        }

        // The storm: every integration fails within a minute, in order.
        let t0 = Utc::now();
        let step = 60_000_000i64 / count as i64; // microseconds apart
        let mut fx = Effects::default();
        let mut tags = 0usize;
        let mut events = 0usize;
        let storm = Instant::now();
        for (n, (id, tenant, _)) in ids.iter().enumerate() {
            let time = t0 + Duration::microseconds(step * n as i64);
            let o = Observed {
                seq: n as i64 + 1,
                tenant: tenant.clone(),
                integration_id: *id,
                status: "degraded".into(),
                reason: Some("provider_degraded".into()),
                time,
            };
            c.observe(&o, time, &mut fx);
            if fx.tags.len() + fx.members.len() > 100_000 {
                tags += fx.tags.len();
                events += fx.events.len();
                fx = Effects::default();
            }
        }
        let end = t0 + Duration::seconds(61);
        c.tick(end, &mut fx);
        tags += fx.tags.len();
        events += fx.events.len();
        drop(fx);
        let storm_took = storm.elapsed();
        let failing = allocated()?;
        let open = c.open_counts();
        out.insert(
            "storm_observe_s".into(),
            json!(round2(storm_took.as_secs_f64())),
        );
        out.insert("storm_incidents_opened".into(), json!(events));
        out.insert(
            "storm_open_incidents".into(),
            json!(open.incidents.iter().sum::<usize>()),
        );
        out.insert(
            "storm_members".into(),
            json!(open.members.iter().sum::<usize>()),
        );
        out.insert("storm_tagged_events".into(), json!(tags));
        out.insert(
            "storm_extra_bytes_per_failing_member".into(),
            json!(((failing - after) as f64 / count as f64).round()),
        );
        out.insert(
            "storm_total_mb".into(),
            json!(round1((failing - before) as f64 / 1e6)),
        );
        // One tick with every incident open: what the driver pays each time it ticks.
        let mut fx = Effects::default();
        let tick = Instant::now();
        c.tick(end + Duration::seconds(1), &mut fx);
        out.insert(
            "tick_ms_all_open".into(),
            json!(round2(tick.elapsed().as_secs_f64() * 1e3)),
        );
        drop(c);
    }
    println!("{}", serde_json::Value::Object(out));
    Ok(())
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
