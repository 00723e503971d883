//! Polling with exponential backoff, bounded in time and ended by the run's cancellation.

use std::time::{Duration, Instant};

use devops_stack_core::Context;

use crate::error::{Error, Result};

/// How long to wait for AWS resources to change state, and how often to look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Polling {
    /// The first pause between two looks (doubled each time up to `max_interval`).
    pub initial_interval: Duration,
    /// The longest pause between two looks.
    pub max_interval: Duration,
    /// How long to wait in all before giving up.
    pub timeout: Duration,
}

impl Default for Polling {
    /// 5 s doubling to 30 s, for at most 40 minutes (EKS clusters take 10 to 15 minutes).
    fn default() -> Self {
        Polling {
            initial_interval: Duration::from_secs(5),
            max_interval: Duration::from_secs(30),
            timeout: Duration::from_secs(40 * 60),
        }
    }
}

/// One wait for `resource` to become `wanted`.
pub(crate) struct Backoff<'a> {
    ctx: &'a Context,
    resource: String,
    wanted: &'static str,
    next: Duration,
    max: Duration,
    timeout: Duration,
    start: Instant,
}

impl<'a> Backoff<'a> {
    pub(crate) fn new(
        ctx: &'a Context,
        polling: &Polling,
        resource: impl Into<String>,
        wanted: &'static str,
    ) -> Self {
        Backoff {
            ctx,
            resource: resource.into(),
            wanted,
            next: polling.initial_interval,
            max: polling.max_interval,
            timeout: polling.timeout,
            start: Instant::now(),
        }
    }

    /// Reports `status` and sleeps before the next look.
    ///
    /// # Errors
    /// [`Error::Timeout`] when the time is up; [`Error::Cancelled`] when the run is cancelled.
    pub(crate) async fn pause(&mut self, status: &str) -> Result<()> {
        let waited = self.start.elapsed();
        if waited >= self.timeout {
            return Err(Error::Timeout {
                resource: self.resource.clone(),
                wanted: self.wanted.into(),
                last: status.into(),
                waited,
            });
        }
        self.ctx.progress(format!(
            "{} is {status}, waiting for {} ({}s so far)",
            self.resource,
            self.wanted,
            waited.as_secs()
        ));
        let pause = self.next.min(self.timeout - waited);
        self.next = (self.next * 2).min(self.max);
        tokio::select! {
            () = tokio::time::sleep(pause) => Ok(()),
            () = self.ctx.cancellation().cancelled() => Err(Error::Cancelled { resource: self.resource.clone() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use devops_stack_core::{CancellationToken, Module, ModuleResult, Planned, RunOptions, Stack};

    /// Waits for something that never happens.
    struct Never(Polling);

    impl Module for Never {
        type Output = ();
        fn id(&self) -> &str {
            "never"
        }
        fn kind(&self) -> &'static str {
            "never"
        }
        async fn plan(&self, _ctx: &Context) -> ModuleResult<Planned<()>> {
            Ok(Planned::new(()))
        }
        async fn apply(&self, ctx: &Context) -> ModuleResult<()> {
            let mut backoff = Backoff::new(ctx, &self.0, "the thing", "ready");
            loop {
                backoff.pause("pending").await?;
            }
        }
        async fn destroy(&self, _ctx: &Context) -> ModuleResult<()> {
            Ok(())
        }
    }

    async fn run(polling: Polling, options: RunOptions) -> (String, Duration) {
        let mut stack = Stack::new("t");
        stack.add(Never(polling));
        let start = Instant::now();
        let err = stack.build().unwrap().apply(&options).await.unwrap_err();
        (err.to_string(), start.elapsed())
    }

    #[tokio::test]
    async fn waits_end_at_the_timeout() {
        let polling = Polling {
            initial_interval: Duration::from_millis(5),
            max_interval: Duration::from_millis(20),
            timeout: Duration::from_millis(100),
        };
        let (err, took) = run(polling, RunOptions::new()).await;
        assert!(
            err.contains("the thing did not become ready within"),
            "{err}"
        );
        assert!(err.contains("last status: pending"), "{err}");
        assert!(took < Duration::from_secs(2), "{took:?}");
    }

    #[tokio::test]
    async fn waits_end_on_cancellation() {
        let token = CancellationToken::new();
        let cancel = token.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            cancel.cancel();
        });
        let polling = Polling {
            initial_interval: Duration::from_secs(60),
            ..Polling::default()
        };
        let (err, took) = run(polling, RunOptions::new().cancel_token(token)).await;
        assert!(err.contains("cancel"), "{err}");
        assert!(took < Duration::from_secs(5), "{took:?}");
    }
}
