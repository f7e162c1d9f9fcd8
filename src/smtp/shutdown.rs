//! The daemon's stop signal, as mini-redis has it: one [`Trigger`] held by the daemon, and a [`Shutdown`] for
//! every task that runs until `serve` stops (the accept loops, the sessions, the queue manager, the metrics
//! endpoint). Tasks own a clone and wait on it; nothing needs the daemon's types to learn that it is stopping.

use tokio::sync::watch;

/// Fires the stop signal (SIGTERM/SIGINT in the daemon, the end of a test).
#[derive(Debug)]
pub struct Trigger(watch::Sender<bool>);

/// A task's view of the stop signal. Cloning is cheap; a dropped [`Trigger`] counts as stopping.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// A fresh signal: the trigger and its first listener.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Shutdown(rx))
}

impl Trigger {
    /// Tells every [`Shutdown`] that the daemon is stopping.
    pub fn fire(&self) {
        let _ = self.0.send(true);
    }
}

impl Shutdown {
    /// True once the daemon is stopping.
    pub fn is_shutdown(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }

    /// Resolves once the daemon is stopping (at once if it already is, or if the trigger is gone). Cancel-safe:
    /// it holds no lock across an await, so it can sit in a `select!` with I/O.
    pub async fn recv(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fire_reaches_every_clone_and_a_dropped_trigger_counts_as_stopping() {
        let (trigger, mut a) = channel();
        let mut b = a.clone();
        assert!(!a.is_shutdown());
        trigger.fire();
        a.recv().await;
        b.recv().await;
        assert!(a.is_shutdown() && b.is_shutdown());

        let (trigger, mut c) = channel();
        drop(trigger);
        c.recv().await;
        assert!(c.is_shutdown());
    }
}
