//! The queue's heads in memory: what the delivery worker knows of the pending deliveries,
//! kept between refills so that a refill reads only what changed.
//!
//! # What is read, and when
//! - **New rows**, by id: the relay's fan-outs commit one after the other, so every pending
//!   row with an id above [`Heads::scanned`] is new, and one range read of the primary key
//!   ([`WebhookStore::pending_after`]) brings them in. Nothing below `scanned` is read again
//!   unless one of the two cases below asks for it.
//! - **One key**, when its memory ran out: each (subscription, ordering key) keeps its head
//!   and at most `per_key` rows after it, and all keys together at most `followers` rows
//!   beyond their heads; a row that does not fit is left in the database and its key marked
//!   incomplete. When an incomplete key has sent what it held, its next rows are read again
//!   ([`WebhookStore::pending_of_key`], the partial index on pending rows). Heads always fit,
//!   so a consumer that is down with many integrations holds one row per integration and
//!   never stops the scan for the others.
//! - **One subscription**, when the catalog says it changed (created, replaced, enabled,
//!   disabled, deleted, or one of its dead deliveries put back) and at start: once none of
//!   its deliveries is in flight, its keys are dropped and its heads read again
//!   ([`WebhookStore::subscription_queue`]). A requeued delivery is older than the rows of its
//!   key in memory; reading the heads again puts it first.
//! - **Everything**, now and then ([`Heads::resync`], every `resync_seconds`): every live
//!   subscription is read again as at start. The scan by id trusts that rows commit in id
//!   order; a row that breaks it (written by another process whose transaction took an id
//!   early and committed late, or put back to pending by hand) is below `scanned` when it
//!   becomes visible, and this re-read is what finds it. Its cost is one heads query per live
//!   subscription, and each subscription pauses until its attempts in flight have ended.
//!
//! # Order
//! A key's rows are held in id order and only sent from the front; a key with an attempt in
//! flight is busy and offers nothing else until its result is recorded. A batch takes, key by
//! key, a prefix of each key's rows, so order per key holds inside a batch and across them.
//!
//! # Cost
//! A refill with nothing new is one indexed range read that returns no row; the work of a
//! pass grows with what changed, not with the backlog. Memory: one row per key with pending
//! deliveries (about 150 bytes) plus at most `followers` rows.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::DbErr;
use uuid::Uuid;

use crate::store::webhooks::{Outcome, Pending, Target, WebhookStore};

/// Deliveries of one key go out one at a time, in queue order: (subscription, ordering key).
pub type Key = (Uuid, Uuid);

/// How much the heads keep in memory and read at once.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Rows held per key, its head included.
    pub per_key: usize,
    /// Rows held beyond the heads, over all keys.
    pub followers: usize,
    /// Rows read per scan query.
    pub page: u64,
    /// Scan queries per refill, so that a big backlog is read in steps between sends.
    pub pages: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            per_key: 512,
            followers: 100_000,
            page: 2_000,
            pages: 8,
        }
    }
}

/// A subscription's pending rows are known key by key, or are to be read again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Its keys in memory are all it has up to `scanned` (some of them incomplete).
    Active,
    /// Disabled, deleted or unknown: its rows wait in the database, unsent.
    Inactive,
    /// Changed: to be read again once nothing of it is in flight.
    Reload,
}

struct Sub {
    target: Option<Arc<Target>>,
    state: State,
    /// Idle keys with rows: (head's next attempt, head's id, ordering key).
    ready: BTreeSet<(DateTime<Utc>, i64, Uuid)>,
    /// Attempts (single or batched) in flight.
    in_flight: usize,
    /// Pending deliveries of the subscription up to `scanned`, in memory or not.
    pending: u64,
}

impl Sub {
    fn reload(target: Option<Arc<Target>>) -> Self {
        Self {
            target,
            state: State::Reload,
            ready: BTreeSet::new(),
            in_flight: 0,
            pending: 0,
        }
    }
}

struct KeyRows {
    rows: VecDeque<Pending>,
    /// Every pending row of the key up to `scanned` is in `rows`.
    complete: bool,
    busy: bool,
}

/// Something to send: one delivery, or a batch of a batched subscription's deliveries.
#[derive(Clone, Debug)]
pub struct Job {
    pub target: Arc<Target>,
    /// In id order; several keys' prefixes for a batch.
    pub rows: Vec<Pending>,
}

impl Job {
    pub fn keys(&self) -> impl Iterator<Item = Key> + '_ {
        self.rows
            .iter()
            .map(|r| (r.subscription_id, r.ordering_key))
    }
}

/// A subscription's backlog, for the metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct Backlog {
    pub subscription_id: Uuid,
    pub pending: u64,
    /// When the oldest pending delivery was queued.
    pub oldest: Option<DateTime<Utc>>,
}

/// The pending deliveries the worker knows, by subscription and key.
pub struct Heads {
    limits: Limits,
    subs: HashMap<Uuid, Sub>,
    keys: HashMap<Key, KeyRows>,
    /// Every pending row up to here has been seen by the scan.
    scanned: i64,
    /// Rows held beyond the heads.
    followers: usize,
    /// Incomplete keys that sent all they held, to read again.
    reread: HashSet<Key>,
    /// The scan's last page was full: read on at the next refill.
    more: bool,
    /// Rows read from the database, for tests and logs.
    read: u64,
    started: bool,
    /// Every live subscription is to be read again at the next refill.
    resync: bool,
}

// === impl Heads ===

impl Heads {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            subs: HashMap::new(),
            keys: HashMap::new(),
            scanned: 0,
            followers: 0,
            reread: HashSet::new(),
            more: false,
            read: 0,
            started: false,
            resync: false,
        }
    }

    /// The highest delivery id the scan has seen.
    pub fn scanned(&self) -> i64 {
        self.scanned
    }

    /// Rows read from the database so far.
    pub fn rows_read(&self) -> u64 {
        self.read
    }

    /// Whether the scan stopped at its page budget with more to read.
    pub fn more(&self) -> bool {
        self.more
    }

    /// The subscription changed, or one of its deliveries was put back: read it again once
    /// nothing of it is in flight. Until then nothing of it is sent.
    pub fn invalidate(&mut self, subscription: Uuid) {
        let sub = self
            .subs
            .entry(subscription)
            .or_insert_with(|| Sub::reload(None));
        sub.state = State::Reload;
        sub.ready.clear();
    }

    /// Reads every live subscription again at the next refill, as at start, so that a pending
    /// row below [`Heads::scanned`] that the scan by id could not see is found.
    pub fn resync(&mut self) {
        self.resync = true;
    }

    /// Brings memory up to date: at the first call every live subscription is read (and the
    /// scan starts after the last row there is); then subscriptions that changed (all of them
    /// after [`Heads::resync`]) and keys that ran out are read again, and the rows queued
    /// since the last scan are read.
    ///
    /// # Errors
    /// [`DbErr`]; what was read before the error is kept, and the next call goes on.
    pub async fn refill(&mut self, store: &WebhookStore) -> Result<(), DbErr> {
        if !self.started {
            let last = store.last_delivery_id().await?;
            for target in store.active_targets().await? {
                self.subs
                    .entry(target.id)
                    .or_insert_with(|| Sub::reload(None));
                self.invalidate(target.id);
            }
            self.scanned = last;
            self.started = true;
            self.resync = false;
        }
        if self.resync {
            let known: Vec<Uuid> = self.subs.keys().copied().collect();
            let live = store.active_targets().await?;
            // Known ones too: one disabled or deleted meanwhile drops out at its reload.
            for id in known.into_iter().chain(live.into_iter().map(|t| t.id)) {
                self.invalidate(id);
            }
            self.resync = false;
        }
        self.reload(store).await?;
        self.read_keys_again(store).await?;
        self.scan(store).await
    }

    async fn reload(&mut self, store: &WebhookStore) -> Result<(), DbErr> {
        let due: Vec<Uuid> = self
            .subs
            .iter()
            .filter(|(_, s)| s.state == State::Reload && s.in_flight == 0)
            .map(|(id, _)| *id)
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        let targets: HashMap<Uuid, Target> = store
            .targets(&due)
            .await?
            .into_iter()
            .map(|t| (t.id, t))
            .collect();
        let due_set: HashSet<Uuid> = due.iter().copied().collect();
        let mut dropped = 0;
        self.keys.retain(|(sub, _), k| {
            let keep = !due_set.contains(sub);
            if !keep {
                dropped += k.rows.len().saturating_sub(1);
            }
            keep
        });
        self.followers -= dropped;
        self.reread.retain(|(sub, _)| !due_set.contains(sub));
        for id in due {
            let Some(target) = targets.get(&id) else {
                self.subs.remove(&id);
                continue;
            };
            let sub = self.subs.get_mut(&id).expect("listed above");
            sub.target = Some(Arc::new(target.clone()));
            sub.ready.clear();
            if !target.active {
                sub.state = State::Inactive;
                sub.pending = 0;
                continue;
            }
            let queue = store.subscription_queue(id, self.scanned).await?;
            self.read += queue.heads.len() as u64;
            // Every key holds exactly one row when there are as many heads as rows.
            let complete = queue.pending == queue.heads.len() as u64;
            let sub = self.subs.get_mut(&id).expect("listed above");
            sub.state = State::Active;
            sub.pending = queue.pending;
            for head in queue.heads {
                let key = (head.subscription_id, head.ordering_key);
                sub.ready.insert((head.next_attempt_at, head.id, key.1));
                self.keys.insert(
                    key,
                    KeyRows {
                        rows: VecDeque::from([head]),
                        complete,
                        busy: false,
                    },
                );
            }
        }
        Ok(())
    }

    async fn read_keys_again(&mut self, store: &WebhookStore) -> Result<(), DbErr> {
        let keys: Vec<Key> = self
            .reread
            .iter()
            .copied()
            .filter(|k| {
                self.keys.get(k).is_some_and(|k| !k.busy)
                    && self
                        .subs
                        .get(&k.0)
                        .is_some_and(|s| s.state == State::Active)
            })
            .collect();
        for key in keys {
            let room = self.limits.followers.saturating_sub(self.followers) + 1;
            let limit = self.limits.per_key.min(room).max(1);
            let rows = store
                .pending_of_key(key.0, key.1, self.scanned, limit as u64)
                .await?;
            self.read += rows.len() as u64;
            self.reread.remove(&key);
            if rows.is_empty() {
                self.keys.remove(&key);
                continue;
            }
            let complete = rows.len() < limit;
            self.followers += rows.len() - 1;
            let head = &rows[0];
            if let Some(sub) = self.subs.get_mut(&key.0) {
                sub.ready.insert((head.next_attempt_at, head.id, key.1));
            }
            self.keys.insert(
                key,
                KeyRows {
                    rows: rows.into(),
                    complete,
                    busy: false,
                },
            );
        }
        Ok(())
    }

    async fn scan(&mut self, store: &WebhookStore) -> Result<(), DbErr> {
        self.more = false;
        for _ in 0..self.limits.pages {
            let rows = store.pending_after(self.scanned, self.limits.page).await?;
            self.read += rows.len() as u64;
            let full = rows.len() as u64 >= self.limits.page;
            let unknown: Vec<Uuid> = rows
                .iter()
                .map(|r| r.subscription_id)
                .filter(|s| !self.subs.contains_key(s))
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            if !unknown.is_empty() {
                // New subscriptions: all their rows are above `scanned`, so none was missed.
                let found: HashMap<Uuid, Target> = store
                    .targets(&unknown)
                    .await?
                    .into_iter()
                    .map(|t| (t.id, t))
                    .collect();
                for id in unknown {
                    let target = found.get(&id).cloned();
                    let state = match &target {
                        Some(t) if t.active => State::Active,
                        _ => State::Inactive,
                    };
                    let mut sub = Sub::reload(target.map(Arc::new));
                    sub.state = state;
                    self.subs.insert(id, sub);
                }
            }
            for row in rows {
                self.scanned = self.scanned.max(row.id);
                self.add(row);
            }
            if !full {
                return Ok(());
            }
        }
        self.more = true;
        Ok(())
    }

    /// One row from the scan, in id order.
    fn add(&mut self, row: Pending) {
        let key = (row.subscription_id, row.ordering_key);
        let Some(sub) = self.subs.get_mut(&key.0) else {
            return;
        };
        if sub.state != State::Active {
            // Inactive: it waits in the database. Reloading: the reload reads it.
            return;
        }
        sub.pending += 1;
        match self.keys.get_mut(&key) {
            None => {
                sub.ready.insert((row.next_attempt_at, row.id, key.1));
                self.keys.insert(
                    key,
                    KeyRows {
                        rows: VecDeque::from([row]),
                        complete: true,
                        busy: false,
                    },
                );
            }
            Some(k) => {
                let fits = k.complete
                    && !k.rows.is_empty()
                    && k.rows.len() < self.limits.per_key
                    && self.followers < self.limits.followers;
                if fits {
                    k.rows.push_back(row);
                    self.followers += 1;
                } else {
                    // Left in the database; read again once the key has sent what it holds.
                    k.complete = false;
                }
            }
        }
    }

    /// Takes what is due now, at most `slots` jobs and `per_subscription` in flight per
    /// subscription, soonest due first; returns them and when something next falls due.
    pub fn take(
        &mut self,
        now: DateTime<Utc>,
        slots: usize,
        per_subscription: usize,
    ) -> (Vec<Job>, Option<DateTime<Utc>>) {
        let mut jobs = Vec::new();
        let mut fronts: BinaryHeap<Reverse<(DateTime<Utc>, i64, Uuid)>> = self
            .subs
            .iter()
            .filter(|(_, s)| s.state == State::Active && s.in_flight < per_subscription)
            .filter_map(|(id, s)| s.ready.first().map(|f| Reverse((f.0, f.1, *id))))
            .collect();
        while jobs.len() < slots {
            let Some(Reverse((due, _, sub_id))) = fronts.pop() else {
                break;
            };
            if due > now {
                break;
            }
            let Some(job) = self.job(sub_id, now) else {
                continue;
            };
            for key in job.keys() {
                if let Some(k) = self.keys.get_mut(&key) {
                    k.busy = true;
                }
            }
            jobs.push(job);
            let sub = self.subs.get_mut(&sub_id).expect("a job's subscription");
            sub.in_flight += 1;
            if sub.in_flight < per_subscription
                && let Some(f) = sub.ready.first()
            {
                fronts.push(Reverse((f.0, f.1, sub_id)));
            }
        }
        (jobs, self.next_due(now, per_subscription))
    }

    /// The next job of a subscription whose front is due, if it has one to send now.
    fn job(&mut self, sub_id: Uuid, now: DateTime<Utc>) -> Option<Job> {
        let sub = self.subs.get_mut(&sub_id)?;
        let target = sub.target.clone()?;
        let Some(batch) = target.batch else {
            let (_, _, okey) = sub.ready.pop_first()?;
            let head = self.keys.get(&(sub_id, okey))?.rows.front()?.clone();
            return Some(Job {
                target,
                rows: vec![head],
            });
        };
        let max = batch.max_events.max(1) as usize;
        let oldest = sub.ready.first()?.0;
        let waited = now - oldest >= chrono::Duration::milliseconds(i64::from(batch.max_delay_ms));
        if !waited && !batch_ready(&self.keys, sub_id, &sub.ready, now, max) {
            return None;
        }
        let mut rows = Vec::new();
        while rows.len() < max {
            let Some(&(at, id, okey)) = sub.ready.first() else {
                break;
            };
            if at > now {
                break;
            }
            sub.ready.remove(&(at, id, okey));
            let k = self.keys.get(&(sub_id, okey))?;
            let take = (max - rows.len()).min(k.rows.len());
            rows.extend(k.rows.iter().take(take).cloned());
        }
        rows.sort_by_key(|r| r.id);
        Some(Job { target, rows })
    }

    /// When the next job falls due: the soonest front of a subscription with a free slot
    /// (plus a batch's delay when it is not full).
    fn next_due(&self, now: DateTime<Utc>, per_subscription: usize) -> Option<DateTime<Utc>> {
        self.subs
            .iter()
            .filter(|(_, s)| s.state == State::Active && s.in_flight < per_subscription)
            .filter_map(|(id, s)| {
                let front = s.ready.first()?;
                let at = match s.target.as_ref().and_then(|t| t.batch) {
                    None => front.0,
                    Some(b) => {
                        if batch_ready(&self.keys, *id, &s.ready, now, b.max_events as usize) {
                            front.0
                        } else {
                            front.0 + chrono::Duration::milliseconds(i64::from(b.max_delay_ms))
                        }
                    }
                };
                Some(at)
            })
            .min()
    }

    /// A job ended and its outcomes are recorded (`None`: it ended without any, such as a
    /// panic, and its rows are still pending as they were): applies them and frees its keys.
    pub fn finish(&mut self, job: &Job, outcomes: Option<&[Outcome]>) {
        let sub_id = job.target.id;
        let key_of: HashMap<i64, Key> = job
            .rows
            .iter()
            .map(|r| (r.id, (r.subscription_id, r.ordering_key)))
            .collect();
        for outcome in outcomes.unwrap_or_default() {
            let (id, done) = match outcome {
                Outcome::Delivered { id, .. } | Outcome::Dead { id, .. } => (*id, true),
                Outcome::Retry { id, .. } => (*id, false),
            };
            let Some(key) = key_of.get(&id) else {
                continue;
            };
            let Some(k) = self.keys.get_mut(key) else {
                continue;
            };
            let Some(at) = k.rows.iter().position(|r| r.id == id) else {
                continue;
            };
            if done {
                let before = k.rows.len();
                k.rows.remove(at);
                if before > 1 {
                    self.followers -= 1;
                }
                if let Some(sub) = self.subs.get_mut(&sub_id) {
                    sub.pending = sub.pending.saturating_sub(1);
                }
            } else if let Outcome::Retry {
                next_attempt_at, ..
            } = outcome
            {
                let row = &mut k.rows[at];
                row.attempts += 1;
                row.next_attempt_at = *next_attempt_at;
            }
        }
        let keys: HashSet<Key> = key_of.into_values().collect();
        let sub = self.subs.get_mut(&sub_id);
        let active = sub.as_ref().is_some_and(|s| s.state == State::Active);
        let mut ready = Vec::new();
        for key in keys {
            let Some(k) = self.keys.get_mut(&key) else {
                continue;
            };
            k.busy = false;
            match k.rows.front() {
                Some(head) => ready.push((head.next_attempt_at, head.id, key.1)),
                None if k.complete => {
                    self.keys.remove(&key);
                }
                None => {
                    self.reread.insert(key);
                }
            }
        }
        if let Some(sub) = sub {
            sub.in_flight = sub.in_flight.saturating_sub(1);
            if active {
                sub.ready.extend(ready);
            }
        }
    }

    /// Whether there are keys to read again (a refill has work without new rows).
    pub fn wants_refill(&self) -> bool {
        self.more
            || self.resync
            || !self.reread.is_empty()
            || self
                .subs
                .values()
                .any(|s| s.state == State::Reload && s.in_flight == 0)
    }

    /// Each active subscription's pending deliveries and its oldest one's queue time.
    pub fn backlog(&self) -> Vec<Backlog> {
        let mut oldest: HashMap<Uuid, DateTime<Utc>> = HashMap::new();
        for ((sub, _), k) in &self.keys {
            if let Some(head) = k.rows.front() {
                let o = oldest.entry(*sub).or_insert(head.queued_at);
                *o = (*o).min(head.queued_at);
            }
        }
        self.subs
            .iter()
            .filter(|(_, s)| s.state == State::Active)
            .map(|(id, s)| Backlog {
                subscription_id: *id,
                pending: s.pending,
                oldest: oldest.get(id).copied(),
            })
            .collect()
    }
}

/// Whether a batched subscription's due rows make a batch now, without waiting for its
/// delay: `max` of them are due, or a due key holds fewer rows than it has (waiting adds
/// nothing to it: its next rows are read once it has sent these).
fn batch_ready(
    keys: &HashMap<Key, KeyRows>,
    sub_id: Uuid,
    ready: &BTreeSet<(DateTime<Utc>, i64, Uuid)>,
    now: DateTime<Utc>,
    max: usize,
) -> bool {
    let mut due_rows = 0;
    for (at, _, okey) in ready {
        if *at > now {
            break;
        }
        let Some(k) = keys.get(&(sub_id, *okey)) else {
            continue;
        };
        due_rows += k.rows.len();
        if due_rows >= max || !k.complete {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests;
