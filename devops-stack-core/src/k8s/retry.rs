//! Retries of transient API faults with exponential backoff.

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

/// How transient API faults are retried: 429, 5xx, connection errors (not those that say the
/// server cannot be reached at all, see [`unreachable_cause`](super::unreachable_cause)), and
/// `409 Conflict` on writes that are not server-side applies (a stale `resourceVersion`; the
/// whole read-modify-write is run again). Field-manager conflicts of an apply are never retried.
///
/// ```
/// use std::time::Duration;
/// use devops_stack_core::k8s::Retry;
/// let r = Retry::default().min_delay(Duration::from_millis(50)).max_retries(3);
/// assert_eq!(r, Retry::default().max_retries(3).min_delay(Duration::from_millis(50)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    min_delay: Duration,
    max_delay: Duration,
    max_retries: usize,
}

impl Default for Retry {
    /// 250 ms doubling up to 10 s, at most 6 retries (about 30 s in all).
    fn default() -> Self {
        Retry {
            min_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(10),
            max_retries: 6,
        }
    }
}

impl Retry {
    /// The first delay.
    #[must_use]
    pub fn min_delay(mut self, d: Duration) -> Self {
        self.min_delay = d;
        self
    }

    /// The largest delay.
    #[must_use]
    pub fn max_delay(mut self, d: Duration) -> Self {
        self.max_delay = d;
        self
    }

    /// How many times a call is retried (0: never).
    #[must_use]
    pub fn max_retries(mut self, n: usize) -> Self {
        self.max_retries = n;
        self
    }

    /// Runs `op` until it succeeds, fails with a permanent error or runs out of retries.
    /// `apply` tells whether `op` is a server-side apply (whose 409s are never retried).
    pub(crate) async fn run<T, F, Fut>(&self, apply: bool, what: &str, op: F) -> kube::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = kube::Result<T>>,
    {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_retries)
            .with_jitter();
        op.retry(backoff)
            .sleep(tokio::time::sleep)
            .when(|e| is_transient(e, apply))
            .notify(|e, after| {
                tracing::warn!("{what}: transient error, retrying in {after:?}: {e}")
            })
            .await
    }
}

/// Whether `e` is worth retrying.
pub(crate) fn is_transient(e: &kube::Error, apply: bool) -> bool {
    match e {
        kube::Error::Api(s) => {
            s.code == 429 || s.code >= 500 || (!apply && s.code == 409 && s.reason == "Conflict")
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) => {
            super::reach::unreachable_cause(e).is_none()
        }
        _ => false,
    }
}

/// The HTTP status code of an API error.
pub(crate) fn code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16, reason: &str) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure("x", reason)
                .with_code(code)
                .boxed(),
        )
    }

    #[test]
    fn classifies_faults() {
        assert!(is_transient(&api(503, "ServiceUnavailable"), true));
        assert!(is_transient(&api(429, "TooManyRequests"), false));
        assert!(is_transient(&api(409, "Conflict"), false));
        assert!(
            !is_transient(&api(409, "Conflict"), true),
            "apply conflicts are field-manager conflicts"
        );
        assert!(!is_transient(&api(409, "AlreadyExists"), false));
        assert!(!is_transient(&api(404, "NotFound"), false));
        assert_eq!(code(&api(404, "NotFound")), Some(404));
    }
}
