//! `[health] raw_history = "changes"`: a monitor stores the checks that change something and
//! one sample per hour, and folds every other check into that sample, so that summaries and
//! uptime still count each check exactly while the table holds a few rows per integration and
//! hour instead of one per check.
//!
//! A check is stored at once when its recorded status or reason differs from the previous
//! check's, when someone asked for it (an on-demand check is answered once it is readable), or
//! when it brings a credential expiry not seen before. Any other check is held back; the next
//! one of the same hour takes its place and folds it in (its latency, and whether it failed).
//! The held check is stored, carrying what it folded, as soon as the hour it belongs to is
//! over for this monitor: when the next scheduled check falls in a later hour, when a check
//! of a later hour arrives, when something changes, or when the monitor stops, pauses or
//! crashes on purpose.
//!
//! What is lost if the daemon is killed: the checks held in memory, at most one hour's per
//! integration. Until they are stored, [`ChangeFilter::pending`] tells the API what they add
//! to uptime.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::events::alerts::CredentialNotice;
use crate::store::health::{CheckRow, Folded, Pending, counts, start_of_hour};

/// Which check results are stored (the `[health] raw_history` setting).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RawHistory {
    /// Every check: 288 rows a day per integration on the 5-minute default.
    #[default]
    All,
    /// State changes plus one sample per integration and hour, the other checks folded into it.
    Changes,
}

/// A result to store, with the credential notice that came with it.
pub type Stored = (CheckRow, Option<Box<CredentialNotice>>);

/// One monitor's filter in `changes` mode.
#[derive(Debug, Default)]
pub struct ChangeFilter {
    /// The previous check's recorded status and reason.
    last: Option<(&'static str, Option<&'static str>)>,
    /// The latest credential expiry reported.
    last_expiry: Option<DateTime<Utc>>,
    /// The latest unchanged check of its hour, not stored yet, and what it folds.
    held: Option<Box<Held>>,
}

#[derive(Debug)]
struct Held {
    row: CheckRow,
    folded: Folded,
    credential: Option<Box<CredentialNotice>>,
}

impl Held {
    fn into_stored(self) -> Stored {
        let Held {
            mut row,
            folded,
            credential,
        } = self;
        row.folded = (!folded.is_empty()).then(|| Box::new(folded));
        (row, credential)
    }
}

impl ChangeFilter {
    /// Takes a finished check; returns the results to store now, oldest first (none, the
    /// previous hour's sample, this check, or both).
    pub fn admit(
        &mut self,
        row: CheckRow,
        credential: Option<Box<CredentialNotice>>,
        asked_for: bool,
    ) -> Vec<Stored> {
        let mut out = Vec::new();
        let hour = start_of_hour(row.checked_at);
        if self
            .held
            .as_ref()
            .is_some_and(|h| start_of_hour(h.row.checked_at) != hour)
        {
            out.extend(self.flush());
        }
        let expiry = credential.as_ref().map(|c| c.expires_at);
        let new_expiry = expiry.is_some() && expiry != self.last_expiry;
        self.last_expiry = expiry;
        let state = (row.status, row.reason);
        let changed = self.last != Some(state);
        self.last = Some(state);
        if changed || asked_for || new_expiry {
            out.extend(self.flush());
            out.push((row, credential));
            return out;
        }
        self.held = Some(Box::new(match self.held.take() {
            Some(held) => {
                let Held {
                    row: previous,
                    mut folded,
                    credential: previous_credential,
                } = *held;
                folded.add(previous.status, previous.latency_ms);
                if let Some(f) = previous.folded {
                    folded.merge(&f);
                }
                Held {
                    row,
                    folded,
                    credential: credential.or(previous_credential),
                }
            }
            None => Held {
                row,
                folded: Folded::default(),
                credential,
            },
        }));
        out
    }

    /// The next scheduled check is due at `next` (`None`: none is scheduled). Returns the held
    /// sample when its hour ends before then.
    pub fn before_next(&mut self, next: Option<DateTime<Utc>>) -> Option<Stored> {
        let held_hour = start_of_hour(self.held.as_ref()?.row.checked_at);
        match next {
            Some(next) if start_of_hour(next) == held_hour => None,
            _ => self.flush(),
        }
    }

    /// The held sample, if any, to be stored now (the monitor stops, pauses or fails).
    pub fn flush(&mut self) -> Option<Stored> {
        self.held.take().map(|h| h.into_stored())
    }

    /// Checks made and not stored yet.
    pub fn pending(&self) -> Pending {
        let Some(h) = &self.held else {
            return Pending::default();
        };
        Pending {
            checks: i64::from(counts(h.row.status)) + h.folded.latencies.len() as i64,
            failures: i64::from(h.row.status == "unhealthy") + i64::from(h.folded.failures),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration as ChronoDuration;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use uuid::Uuid;

    use super::*;
    use crate::health::history::{self, HistoryPolicy};
    use crate::store::health::tests::row;
    use crate::store::{Store, testing};
    use crate::tenant::TenantId;

    fn at(h: i64, m: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + ChronoDuration::hours(h) + ChronoDuration::minutes(m)
    }

    #[test]
    fn stores_changes_and_one_sample_per_hour() {
        let id = Uuid::now_v7();
        let mut f = ChangeFilter::default();
        let mut stored = Vec::new();
        let check = |f: &mut ChangeFilter, m: i64, status: &'static str, next: i64| {
            let mut out = f.admit(row(id, "t", at(0, m), status, m), None, false);
            out.extend(f.before_next(Some(at(0, next))));
            out
        };
        // The first check is a change; four unchanged ones fold into the last of them.
        stored.extend(check(&mut f, 0, "healthy", 5));
        for m in [5, 10, 15, 20] {
            stored.extend(check(&mut f, m, "healthy", m + 5));
        }
        assert_eq!(stored.len(), 1);
        assert_eq!(
            f.pending(),
            Pending {
                checks: 4,
                failures: 0
            }
        );
        // A failure: the sample so far, then the change.
        stored.extend(check(&mut f, 25, "unhealthy", 30));
        assert_eq!(stored.len(), 3);
        let sample = &stored[1].0;
        assert_eq!(sample.checked_at, at(0, 20));
        assert_eq!(
            sample.folded.as_deref(),
            Some(&Folded {
                failures: 0,
                latencies: vec![5, 10, 15]
            })
        );
        // Unchanged to the end of the hour: the last check's successor is due in the next
        // hour, so the sample goes at once.
        stored.extend(check(&mut f, 30, "unhealthy", 35));
        stored.extend(check(&mut f, 35, "unhealthy", 62));
        assert_eq!(stored.len(), 4);
        assert_eq!(stored[3].0.checked_at, at(0, 35));
        assert_eq!(stored[3].0.folded.as_ref().unwrap().failures, 1);
        assert_eq!(f.pending(), Pending::default());
        // On-demand checks are stored as they are.
        let asked = f.admit(row(id, "t", at(1, 2), "unhealthy", 1), None, true);
        assert_eq!(asked.len(), 1);
        assert!(asked[0].0.folded.is_none());
    }

    const STATUSES: [&str; 4] = ["healthy", "degraded", "unhealthy", "rate_limited"];

    /// A run of checks like a monitor's: every `interval`, with jitter, the status sticking
    /// for a while; now and then one asked for.
    fn sequence(rng: &mut StdRng, start: DateTime<Utc>, n: usize) -> Vec<(CheckRow, bool)> {
        let id = Uuid::now_v7();
        let mut t = start;
        let mut status = "healthy";
        (0..n)
            .map(|_| {
                if rng.random_bool(0.1) {
                    status = STATUSES[rng.random_range(0..STATUSES.len())];
                }
                t += ChronoDuration::seconds(rng.random_range(240..360));
                let asked_for = rng.random_bool(0.02);
                (row(id, "t", t, status, rng.random_range(1..900)), asked_for)
            })
            .collect()
    }

    /// Stores a sequence through the filter (or not), as the monitor would, into `store`.
    async fn store_through(store: &Store, checks: &[(CheckRow, bool)], mode: RawHistory) {
        let mut rows = Vec::new();
        let mut f = ChangeFilter::default();
        for (i, (r, asked_for)) in checks.iter().enumerate() {
            if mode == RawHistory::All {
                rows.push(r.clone());
                continue;
            }
            rows.extend(
                f.admit(r.clone(), None, *asked_for)
                    .into_iter()
                    .map(|s| s.0),
            );
            let next = checks.get(i + 1).map(|(n, _)| n.checked_at);
            rows.extend(f.before_next(next).map(|s| s.0));
        }
        store.system().write_results(&rows, &[], &[]).await.unwrap();
    }

    #[tokio::test]
    async fn changes_mode_gives_the_same_summaries_and_uptime_as_all() {
        let mut rng = StdRng::seed_from_u64(5);
        let now = crate::store::health::start_of_day(Utc::now());
        let checks = sequence(&mut rng, now - ChronoDuration::days(2), 500);
        let (all, changes) = (testing::store().await, testing::store().await);
        store_through(&all, &checks, RawHistory::All).await;
        store_through(&changes, &checks, RawHistory::Changes).await;
        let id = checks[0].0.integration_id;
        let tenant = TenantId::new("t").unwrap();
        let count = |store: &Store| {
            let store = store.clone();
            async move {
                store
                    .tenant(TenantId::new("t").unwrap())
                    .health_history(
                        id,
                        &crate::store::health::HistoryQuery {
                            limit: 200,
                            ..Default::default()
                        },
                    )
                    .await
                    .unwrap()
                    .items
                    .len()
            }
        };
        let stored = count(&changes).await;
        assert!(stored < 200, "{stored} rows kept of 500");

        // Uptime from raw results alone, then from summaries.
        for round in 0..2 {
            let a = all.tenant(tenant.clone()).uptime(id, now).await.unwrap();
            let c = changes
                .tenant(tenant.clone())
                .uptime(id, now)
                .await
                .unwrap();
            assert_eq!(a, c, "round {round}");
            assert!(a.last_7d.unwrap() < 1.0);
            let policy = HistoryPolicy {
                retention: ChronoDuration::days(7),
                rollup_after: ChronoDuration::days(14),
                summary_retention: ChronoDuration::days(90),
                grace: ChronoDuration::minutes(2),
            };
            for store in [&all, &changes] {
                history::summarise(&store.system(), &policy, now)
                    .await
                    .unwrap();
            }
        }
        let summaries = |store: &Store| {
            let store = store.clone();
            async move {
                let txn = store.system().begin().await.unwrap();
                use sea_orm::{EntityTrait, QueryOrder};
                entity::health_summary::Entity::find()
                    .order_by_asc(entity::health_summary::Column::Hour)
                    .all(&txn)
                    .await
                    .unwrap()
            }
        };
        let (a, c) = (summaries(&all).await, summaries(&changes).await);
        assert!(a.len() > 30);
        assert_eq!(a, c, "every hourly summary is the same");
    }

    /// A connector that answers by a pattern of healthy (`h`) and unhealthy (`u`) checks, and
    /// keeps what it answered.
    struct Pattern {
        pattern: Vec<bool>,
        answered: std::sync::Mutex<Vec<bool>>,
    }

    #[async_trait::async_trait]
    impl connectors::Connector for Pattern {
        async fn check_health(&self) -> connectors::HealthReport {
            let mut answered = self.answered.lock().unwrap();
            let ok = self.pattern[answered.len() % self.pattern.len()];
            answered.push(ok);
            if ok {
                connectors::HealthReport::healthy()
            } else {
                connectors::HealthReport::unhealthy(connectors::Reason::Timeout, "down")
            }
        }
    }

    /// A monitor in `changes` mode for two hours of a paused clock: far fewer rows than checks,
    /// and uptime, with the held-back checks the monitor reports, exact before and after it
    /// stops.
    #[tokio::test]
    async fn a_monitor_in_changes_mode_stores_less_and_counts_every_check() {
        use std::sync::Arc;
        use std::time::Duration;

        use ractor::Actor;
        use ractor::rpc::CallResult;

        use crate::events::clock::Clock;
        use crate::health::monitor::{EngineContext, MonitorMsg, MonitorSpec};
        use crate::health::policy::Status;
        use crate::health::settings::HealthSettings;
        use crate::health::supervisor::{MonitorSupervisor, SupervisorMsg};
        use crate::health::writer::{ResultWriter, WriteOp, WriterOptions};

        let store = testing::store().await;
        tokio::time::pause();
        let clock = Clock::tokio(
            crate::store::health::start_of_day(Utc::now()) - ChronoDuration::days(2)
                + ChronoDuration::minutes(20),
        );
        let (writer, _task) = ResultWriter::spawn(
            store.clone(),
            // Nothing is written while the clock is paused (a pool waiting on a paused clock
            // times out, and may lose SQLite's one connection): the batch waits for the flush.
            WriterOptions {
                batch: 100_000,
                flush: Duration::from_secs(100_000),
                clock,
                ..WriterOptions::default()
            },
        );
        let settings = HealthSettings {
            interval_seconds: 60,
            raw_history: RawHistory::Changes,
            ..HealthSettings::default()
        };
        let ctx = Arc::new(EngineContext {
            schedule: settings.schedule().unwrap(),
            writer: writer.clone(),
            clock,
            timers: crate::health::timers::Timers::spawn(),
            egress: Default::default(),
        });
        let (supervisor, _) = Actor::spawn(None, MonitorSupervisor, ctx).await.unwrap();
        // Up for a while, a short outage, up again.
        let mut pattern = vec![true; 50];
        pattern.extend([false; 7]);
        pattern.extend([true; 40]);
        let connector = Arc::new(Pattern {
            pattern,
            answered: Default::default(),
        });
        let id = Uuid::now_v7();
        let spec = Arc::new(MonitorSpec::new(
            id,
            Arc::from("t"),
            Arc::from("pattern"),
            1,
            Duration::from_secs(60),
            false,
            Ok(connector.clone()),
            Status::Unknown,
        ));
        supervisor
            .send_message(SupervisorMsg::Upsert(spec))
            .unwrap();
        for _ in 0..2 * 3600 * 10 {
            tokio::time::advance(Duration::from_millis(100)).await;
            tokio::task::yield_now().await;
        }
        tokio::time::resume();
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        let flush = || async {
            let (tx, rx) = tokio::sync::oneshot::channel();
            writer.record(WriteOp::Flush(tx)).await;
            rx.await.unwrap();
        };
        flush().await;
        let monitor = match supervisor
            .call(|r| SupervisorMsg::Lookup(id, r), None)
            .await
            .unwrap()
        {
            CallResult::Success(Some(m)) => m,
            _ => panic!("no monitor"),
        };
        let CallResult::Success(status) = monitor.call(MonitorMsg::Status, None).await.unwrap()
        else {
            panic!()
        };
        let answered = connector.answered.lock().unwrap().clone();
        let expected = |answered: &[bool]| {
            let up = answered.iter().filter(|ok| **ok).count() as f64;
            Some(up / answered.len() as f64)
        };
        let now = clock.now();
        let tenant = store.tenant(TenantId::new("t").unwrap());
        let uptime = tenant.uptime_with(id, now, status.pending).await.unwrap();
        assert!(answered.len() > 60, "{} checks", answered.len());
        assert_eq!(uptime.last_24h, expected(&answered));
        let stored = tenant
            .health_history(
                id,
                &crate::store::health::HistoryQuery {
                    limit: 200,
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .items;
        assert!(
            stored.len() < 12,
            "{} rows for {} checks",
            stored.len(),
            answered.len()
        );

        // Stopped: what it held is stored, and nothing is pending any more.
        supervisor.send_message(SupervisorMsg::Remove(id)).unwrap();
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        flush().await;
        let answered = connector.answered.lock().unwrap().clone();
        let uptime = tenant.uptime(id, now).await.unwrap();
        assert_eq!(uptime.last_24h, expected(&answered));
    }
}
