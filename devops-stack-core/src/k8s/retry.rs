//! Retries of transient API faults with exponential backoff.

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

/// How transient API faults are retried: 429, 5xx, connection errors, and `409 Conflict` on
/// writes that are not server-side applies (a stale `resourceVersion`; the whole
/// read-modify-write is run again). Field-manager conflicts of an apply are never retried.
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
        kube::Error::HyperError(_) | kube::Error::Service(_) => unreachable(e).is_none(),
        _ => false,
    }
}

/// Why the API server cannot be reached at all, in plain words, when `e` says so: a refused
/// connection, a name that does not resolve, a TLS failure (an unknown certificate authority, an
/// expired certificate) or a connect timeout. These are not transient, so they are not retried;
/// a connection reset after connecting is, and is not reported here.
pub(crate) fn unreachable(e: &kube::Error) -> Option<String> {
    let kube::Error::Service(source) = e else {
        return None;
    };
    let mut connect = false;
    let mut cause: Option<String> = None;
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(source.as_ref());
    while let Some(err) = next {
        if let Some(h) = err.downcast_ref::<hyper_util::client::legacy::Error>() {
            connect |= h.is_connect();
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            cause = cause.or(match io.kind() {
                K::ConnectionRefused => {
                    Some("the connection was refused (nothing listens there)".into())
                }
                K::TimedOut => Some("the connection timed out".into()),
                K::HostUnreachable | K::NetworkUnreachable => {
                    Some("the host is unreachable".into())
                }
                _ => None,
            });
        }
        let tls = rustls_error(err);
        if let Some(tls) = tls {
            cause = Some(match tls {
                rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer) => {
                    "TLS failed: the server's certificate is signed by an unknown certificate authority (check `certificate-authority-data`)".into()
                }
                rustls::Error::InvalidCertificate(rustls::CertificateError::Expired) => {
                    "TLS failed: the server's certificate has expired".into()
                }
                rustls::Error::InvalidCertificate(c) => {
                    format!("TLS failed: the server's certificate is not valid ({c:?})")
                }
                other => format!("TLS failed: {other}"),
            });
        }
        let text = err.to_string();
        if cause.is_none() && text.contains("dns error") {
            cause = Some(format!("the server's name does not resolve ({text})"));
        }
        if text.contains("timed out") && cause.is_none() {
            connect = true;
            cause = Some("the connection timed out".into());
        }
        next = err.source();
    }
    connect.then(|| {
        cause.unwrap_or_else(|| {
            let mut chain = Vec::new();
            let mut next: Option<&(dyn std::error::Error + 'static)> = Some(source.as_ref());
            while let Some(err) = next {
                chain.push(err.to_string());
                next = err.source();
            }
            format!("the connection failed ({})", chain.join(": "))
        })
    })
}

/// The TLS error in `err`, looking through I/O errors wrapped in I/O errors (whose `source`
/// skips the error they wrap).
fn rustls_error<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut current: &(dyn std::error::Error + 'static) = err;
    loop {
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        let inner = current.downcast_ref::<std::io::Error>()?.get_ref()?;
        current = inner;
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
