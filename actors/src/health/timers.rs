//! The monitors' timers: one task and one timer wheel for every scheduled check.
//!
//! A monitor arms its next check here instead of spawning a sleeping task per check: an entry
//! in a [`DelayQueue`] is a few dozen bytes where a task with its sleep is several hundred, and
//! arming one is a channel send instead of a spawn. When an entry falls due the timer task
//! sends the monitor `Tick(generation)`. Entries are never cancelled: a monitor that
//! rescheduled, paused or stopped has moved on to a newer generation (or gone), so a stale tick
//! is ignored on arrival or dropped with the mailbox.

use futures::StreamExt;
use ractor::ActorRef;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::time::DelayQueue;

use super::monitor::MonitorMsg;

struct Arm {
    at: Instant,
    monitor: ActorRef<MonitorMsg>,
    generation: u32,
}

/// Where monitors arm their next check. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Timers {
    tx: mpsc::UnboundedSender<Arm>,
}

impl Timers {
    /// Starts the timer task. It ends once every `Timers` clone is dropped: the monitors are
    /// gone, so nothing left in the queue is wanted.
    pub fn spawn() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(rx));
        Self { tx }
    }

    /// Sends `monitor` `Tick(generation)` at `at`.
    pub fn arm(&self, at: Instant, monitor: ActorRef<MonitorMsg>, generation: u32) {
        // The task only ends after every sender is gone, so this cannot fail while `self` lives.
        let _ = self.tx.send(Arm {
            at,
            monitor,
            generation,
        });
    }
}

async fn run(mut rx: mpsc::UnboundedReceiver<Arm>) {
    let mut queue: DelayQueue<(ActorRef<MonitorMsg>, u32)> = DelayQueue::new();
    loop {
        tokio::select! {
            arm = rx.recv() => match arm {
                Some(arm) => {
                    queue.insert_at((arm.monitor, arm.generation), arm.at);
                }
                None => return,
            },
            Some(due) = queue.next(), if !queue.is_empty() => {
                let (monitor, generation) = due.into_inner();
                // A stopped monitor no longer wants its tick.
                let _ = monitor.send_message(MonitorMsg::Tick(generation));
            }
        }
    }
}
