//! The outbox-sink contract: what every channel that carries events out of the outbox shares.
//!
//! A sink knows how to move one batch of the outbox past its own cursor ([`OutboxSink::pass`]):
//! the webhook relay fans events out into deliveries, the NATS relay publishes them. The
//! [`spawn`]ed loop around it is written once: run passes back to back while there is more,
//! otherwise wait until the hub announces a commit or the poll interval passes (a missed
//! wake-up costs at most one interval), back off after a failure, and stop promptly when told
//! to (an unfinished pass is abandoned; a sink's cursor moves only with what it finished, so
//! the next start repeats at most that pass).
//!
//! Adding a channel (Kafka, Slack) is a module with a type implementing [`OutboxSink`] and a
//! `start(&Context, settings)` that [`spawn`]s it and returns a [`Started`], plus one line in
//! the daemon's list of sinks.
//!
//! # Layout
//! - This file: the contract and its driver.
//! - [`webhooks`]: the relay (outbox → deliveries) and the delivery worker (signed POSTs).
//! - [`nats`]: publishing to NATS JetStream.
//! - [`incidents`]: the incident correlator, which follows the outbox like a sink and gates
//!   the two channels above until it has decided what is part of an incident.
//!
//! Sinks sit above the store (they read the outbox and move their cursors through it) and
//! above the event model in [`crate::events`]; nothing below imports them.

pub mod incidents;
pub mod nats;
pub mod webhooks;

use std::future::Future;
use std::time::Duration;

use connectors::ConnectorEnv;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::backoff::Backoff;
use crate::catalog::ChangeFeed;
use crate::events::hub::EventHub;
use crate::store::Store;

/// What every sink is started with.
#[derive(Clone)]
pub struct Context {
    /// The outbox, the sink's cursor, and whatever else the sink stores.
    pub store: Store,
    /// Outbound HTTP through the SSRF guard, and the secret resolver.
    pub env: ConnectorEnv,
    /// Announces each committed outbox sequence: the sink's wake-up.
    pub hub: EventHub,
    /// The catalog's committed changes (subscriptions, for instance).
    pub changes: ChangeFeed,
}

/// A running sink, as the daemon holds it until shutdown.
#[async_trait::async_trait]
pub trait Started: Send {
    /// Stops the sink; what it had not finished goes out after the next start.
    async fn stop(self: Box<Self>);
}

/// The sinks a daemon runs, stopped together at shutdown.
#[derive(Default)]
pub struct Sinks(Vec<Box<dyn Started>>);

impl Sinks {
    /// Keeps a started sink; `None` (a sink turned off by its settings) is skipped.
    pub fn add(&mut self, sink: Option<impl Started + 'static>) {
        self.0.extend(sink.map(|s| Box::new(s) as Box<dyn Started>));
    }

    /// How many sinks run.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no sink runs.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Stops every sink, in the order they were started.
    pub async fn stop(self) {
        for sink in self.0 {
            sink.stop().await;
        }
    }

    /// In a cluster: the sinks `start` makes run on the leader only. They start when this
    /// replica becomes the leader and stop when it is not any more; a new leader resumes from
    /// each sink's cursor, where the old one stopped.
    pub fn while_leader(
        ownership: watch::Receiver<crate::cluster::Ownership>,
        start: impl Fn() -> Sinks + Send + Sync + 'static,
    ) -> OnLeader {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut ownership = ownership;
            loop {
                tokio::select! {
                    leader = async { ownership.wait_for(crate::cluster::Ownership::is_leader).await.map(|_| ()) } => if leader.is_err() { return },
                    _ = async { stopped.wait_for(|s| *s).await.map(|_| ()) } => return,
                }
                let running = start();
                tracing::info!(
                    message = "Event sinks started on the leader.",
                    sinks = running.len()
                );
                tokio::select! {
                    _ = async { ownership.wait_for(|o| !o.is_leader()).await.map(|_| ()) } => {
                        tracing::info!(message = "Not the leader any more: event sinks stopped.");
                        running.stop().await;
                    }
                    _ = async { stopped.wait_for(|s| *s).await.map(|_| ()) } => {
                        running.stop().await;
                        return;
                    }
                }
            }
        });
        OnLeader { stop, task }
    }
}

/// Sinks that run while this replica is the cluster's leader ([`Sinks::while_leader`]).
pub struct OnLeader {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

#[async_trait::async_trait]
impl Started for OnLeader {
    async fn stop(self: Box<Self>) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// What a pass achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// A full batch went: more may be waiting, so the next pass runs at once.
    More,
    /// The outbox is drained up to the last commit: wait for the next.
    Idle,
}

/// One channel out of the outbox.
#[async_trait::async_trait]
pub trait OutboxSink: Send + 'static {
    /// Why a pass failed; logged with its sources, then the pass is retried after a backoff.
    type Error: std::error::Error + Send;

    /// The channel's name, for logs (`webhooks`, `nats`).
    fn name(&self) -> &'static str;

    /// Moves the next batch of the outbox after the sink's cursor, and the cursor with it.
    ///
    /// # Errors
    /// Whatever stopped the pass; the events it did not finish go out on a later pass.
    async fn pass(&mut self) -> Result<Progress, Self::Error>;
}

/// How a sink is driven.
#[derive(Clone, Debug)]
pub struct Drive {
    /// The highest committed outbox `seq`, announced by the result writer; `None` to poll only.
    pub latest: Option<watch::Receiver<i64>>,
    /// Longest wait between passes when no commit is announced.
    pub poll: Duration,
    /// Delays after consecutive failed passes.
    pub backoff: Backoff,
    /// `true` once the sink must stop.
    pub stop: watch::Receiver<bool>,
}

/// Runs `work` unless told to stop first; `None` means stop.
pub async fn unless_stopped<T>(
    stopped: &mut watch::Receiver<bool>,
    work: impl Future<Output = T>,
) -> Option<T> {
    if *stopped.borrow() {
        return None;
    }
    tokio::select! {
        biased;
        _ = stopped.wait_for(|s| *s) => None,
        out = work => Some(out),
    }
}

/// Spawns the loop that drives `sink` until [`Drive::stop`] turns `true`.
pub fn spawn<S: OutboxSink>(sink: S, drive: Drive) -> JoinHandle<()> {
    tokio::spawn(run(sink, drive))
}

async fn run<S: OutboxSink>(mut sink: S, mut drive: Drive) {
    let mut failures: u32 = 0;
    let mut stopped = drive.stop.clone();
    loop {
        let pass = unless_stopped(&mut stopped, sink.pass()).await;
        let wait = match pass {
            None => return,
            Some(Ok(Progress::More)) => {
                failures = 0;
                continue;
            }
            Some(Ok(Progress::Idle)) => {
                failures = 0;
                None
            }
            Some(Err(error)) => {
                let delay = drive.backoff.delay(failures, rand::random::<f64>());
                failures = failures.saturating_add(1);
                tracing::warn!(
                    message = "An event channel failed; retrying.",
                    channel = sink.name(),
                    error = %error_chain(&error),
                    retry_in_ms = delay.as_millis() as u64,
                    failures,
                );
                Some(delay)
            }
        };
        let waited = match wait {
            Some(delay) => unless_stopped(&mut stopped, tokio::time::sleep(delay)).await,
            None => unless_stopped(&mut stopped, next_commit(&mut drive)).await,
        };
        if waited.is_none() {
            return;
        }
    }
}

/// The error and its sources, `: `-separated, for one log field.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// Until a commit is announced or the poll interval passes.
async fn next_commit(drive: &mut Drive) {
    let poll = tokio::time::sleep(drive.poll);
    match &mut drive.latest {
        Some(latest) => {
            tokio::select! {
                changed = latest.changed() => {
                    if changed.is_err() {
                        // The hub is gone: poll from now on.
                        drive.latest = None;
                    }
                }
                _ = poll => {}
            }
        }
        None => poll.await,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("down")]
    struct Down;

    /// A sink that plays a script of pass results and records when each pass ran.
    struct Scripted {
        script: VecDeque<Result<Progress, Down>>,
        ran: Arc<Mutex<Vec<tokio::time::Instant>>>,
    }

    #[async_trait::async_trait]
    impl OutboxSink for Scripted {
        type Error = Down;

        fn name(&self) -> &'static str {
            "scripted"
        }

        async fn pass(&mut self) -> Result<Progress, Self::Error> {
            self.ran.lock().unwrap().push(tokio::time::Instant::now());
            self.script.pop_front().unwrap_or(Ok(Progress::Idle))
        }
    }

    fn drive(latest: Option<watch::Receiver<i64>>) -> (Drive, watch::Sender<bool>) {
        let (stop, stopped) = watch::channel(false);
        let backoff =
            Backoff::try_new(Duration::from_secs(1), Duration::from_secs(8), 0.0).unwrap();
        (
            Drive {
                latest,
                poll: Duration::from_secs(10),
                backoff,
                stop: stopped,
            },
            stop,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn more_runs_at_once_failures_back_off_idle_waits_for_a_commit_or_the_poll() {
        let ran = Arc::new(Mutex::new(Vec::new()));
        let (commits, latest) = watch::channel(0_i64);
        let sink = Scripted {
            script: VecDeque::from([
                Ok(Progress::More),
                Err(Down),
                Err(Down),
                Ok(Progress::Idle),
                Ok(Progress::Idle),
            ]),
            ran: ran.clone(),
        };
        let (drive, stop) = drive(Some(latest));
        let start = tokio::time::Instant::now();
        let task = spawn(sink, drive);
        // More → at once; two failures → 1 s then 2 s; then idle until a commit.
        tokio::time::sleep(Duration::from_secs(5)).await;
        commits.send(1).unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
        // Idle again: the poll interval brings the next pass.
        tokio::time::sleep(Duration::from_secs(11)).await;
        stop.send(true).unwrap();
        task.await.unwrap();
        let at: Vec<u64> = ran
            .lock()
            .unwrap()
            .iter()
            .map(|t| (*t - start).as_millis() as u64)
            .collect();
        assert_eq!(at, [0, 0, 1_000, 3_000, 5_000, 15_000]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_ends_a_pass_in_progress_and_a_wait() {
        struct Hanging;
        #[async_trait::async_trait]
        impl OutboxSink for Hanging {
            type Error = Down;
            fn name(&self) -> &'static str {
                "hanging"
            }
            async fn pass(&mut self) -> Result<Progress, Self::Error> {
                std::future::pending().await
            }
        }
        let (drive, stop) = drive(None);
        let task = spawn(Hanging, drive);
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .expect("the driver stops")
            .unwrap();
    }
}
