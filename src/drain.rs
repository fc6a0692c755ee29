//! Graceful shutdown as a handle, not a global. Listeners watch [`Drain::stopping`] to stop
//! accepting (and tunnel servers to send GOAWAY); every connection task is spawned on the
//! tracker so shutdown can wait for in-flight work; copy loops watch [`Drain::forced`] to give
//! up once the drain deadline has passed.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Shared by every task of one gateway; clones are cheap.
#[derive(Clone, Default)]
pub struct Drain {
    stop: CancellationToken,
    force: CancellationToken,
    tracker: TaskTracker,
}

/// What a drain did, for the shutdown log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainOutcome {
    /// Tasks still running at the deadline, closed by force.
    pub forced: usize,
}

impl Drain {
    pub fn new() -> Self {
        Self::default()
    }

    /// Spawns a connection task whose completion shutdown waits for.
    pub fn spawn<F>(&self, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tracker.spawn(fut)
    }

    /// Resolves once shutdown has begun: stop accepting new work.
    pub async fn stopping(&self) {
        self.stop.cancelled().await
    }

    pub fn is_stopping(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// Resolves once the drain deadline has passed: abandon in-flight work.
    pub async fn forced(&self) {
        self.force.cancelled().await
    }

    /// Stops accepting, waits up to `deadline` for tracked tasks, then forces the rest.
    pub async fn run(&self, deadline: Duration) -> DrainOutcome {
        self.stop.cancel();
        self.tracker.close();
        let finished = tokio::time::timeout(deadline, self.tracker.wait())
            .await
            .is_ok();
        let forced = if finished { 0 } else { self.tracker.len() };
        self.force.cancel();
        // Forced tasks observe `forced()` and return promptly; wait for them to unwind so
        // their metrics and logs are complete.
        let _ = tokio::time::timeout(Duration::from_secs(1), self.tracker.wait()).await;
        DrainOutcome { forced }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn waits_for_work_then_forces_at_deadline() {
        let drain = Drain::new();
        let d = drain.clone();
        drain.spawn(async move { tokio::time::sleep(Duration::from_millis(50)).await });
        drain.spawn(async move { d.forced().await });
        let outcome = drain.run(Duration::from_secs(5)).await;
        assert_eq!(outcome, DrainOutcome { forced: 1 });
        assert!(drain.is_stopping());
    }
}
