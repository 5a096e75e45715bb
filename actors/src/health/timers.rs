//! The monitors' timers: one task and one timer wheel for every scheduled check.
//!
//! A monitor arms its next check here instead of spawning a sleeping task per check: an entry
//! in a [`DelayQueue`] is a few dozen bytes where a task with its sleep is several hundred, and
//! arming one is a channel send instead of a spawn. When an entry falls due the timer task
//! sends the monitor a [`Tick`] of the entry's generation. Entries are never cancelled: a monitor that
//! rescheduled, paused or stopped has moved on to a newer generation (or gone), so a stale tick
//! is ignored on arrival or dropped with the mailbox.
//!
//! While entries fall due within [`RESOLUTION`], the task wakes once per period and handles
//! everything that arrived or fell due since, instead of waking for each arm and each expiry:
//! a fleet checked thousands of times a second costs a hundred wake-ups a second here, and a
//! tick is at most one period late. A quiet queue sleeps until its next entry or the next arm.

use std::task::{Context, Poll};
use std::time::Duration;

use ractor::ActorRef;
use tokio::sync::mpsc::{self, error::TryRecvError};
use tokio::time::Instant;
use tokio_util::time::DelayQueue;

/// How often the timer task looks for arms and due entries while any are pending.
pub const RESOLUTION: Duration = Duration::from_millis(10);

/// A scheduled check of the given generation is due; the actor's message type says how it
/// takes one (`From<Tick>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tick(pub u32);

struct Arm<M> {
    at: Instant,
    monitor: ActorRef<M>,
    generation: u32,
}

/// Where monitors arm their next check. Cheap to clone.
pub struct Timers<M> {
    tx: mpsc::UnboundedSender<Arm<M>>,
}

impl<M> Clone for Timers<M> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
        }
    }
}

impl<M> std::fmt::Debug for Timers<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timers").finish_non_exhaustive()
    }
}

impl<M: ractor::Message + From<Tick>> Timers<M> {
    /// Starts the timer task. It ends once every `Timers` clone is dropped: the monitors are
    /// gone, so nothing left in the queue is wanted.
    pub fn spawn() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(rx));
        Self { tx }
    }

    /// Sends `monitor` `Tick(generation)` at `at` (at most [`RESOLUTION`] later).
    pub fn arm(&self, at: Instant, monitor: ActorRef<M>, generation: u32) {
        // The task only ends after every sender is gone, so this cannot fail while `self` lives.
        let _ = self.tx.send(Arm {
            at,
            monitor,
            generation,
        });
    }
}

async fn run<M: ractor::Message + From<Tick>>(mut rx: mpsc::UnboundedReceiver<Arm<M>>) {
    let mut queue: DelayQueue<(ActorRef<M>, u32)> = DelayQueue::new();
    loop {
        let next = queue.peek().map(|key| queue.deadline(&key));
        match next {
            None => match rx.recv().await {
                Some(arm) => {
                    queue.insert_at((arm.monitor, arm.generation), arm.at);
                }
                None => return,
            },
            // Busy: take what comes in batches.
            Some(at) if at <= Instant::now() + RESOLUTION => tokio::time::sleep(RESOLUTION).await,
            // Quiet: sleep until the next entry falls due or an arm arrives.
            Some(at) => tokio::select! {
                arm = rx.recv() => match arm {
                    Some(arm) => {
                        queue.insert_at((arm.monitor, arm.generation), arm.at);
                    }
                    None => return,
                },
                () = tokio::time::sleep_until(at) => {}
            },
        }
        loop {
            match rx.try_recv() {
                Ok(arm) => {
                    queue.insert_at((arm.monitor, arm.generation), arm.at);
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
        fire_due(&mut queue);
    }
}

/// Sends every entry that fell due its tick.
fn fire_due<M: ractor::Message + From<Tick>>(queue: &mut DelayQueue<(ActorRef<M>, u32)>) {
    // The queue is polled on the task's own schedule, never woken by it.
    let mut cx = Context::from_waker(std::task::Waker::noop());
    while let Poll::Ready(Some(due)) = queue.poll_expired(&mut cx) {
        let (monitor, generation) = due.into_inner();
        // A stopped monitor no longer wants its tick.
        let _ = monitor.send_message(M::from(Tick(generation)));
    }
}
