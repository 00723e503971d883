//! Whether an API error says that a cluster's API server cannot be reached at all, why in plain
//! words, and what to do about it.
//!
//! A refused connection, a name that does not resolve, a connect timeout or a TLS failure (a
//! certificate authority the client does not trust, an expired certificate, a certificate for
//! another name) will not go away by retrying: the engine fails at once with
//! [`KubeError::Unreachable`](crate::k8s::KubeError::Unreachable), naming the cluster, its server, the kubeconfig file and context it was
//! reached through, the cause ([`UnreachableCause`]) and the fix for that cause. Modules that call
//! the API themselves classify their errors with [`unreachable_cause`] and build the same error
//! with [`Error::unreachable`].

use std::time::Duration;

use super::KubeError;
use super::cause::UnreachableCause;
use crate::error::Error;
use crate::interfaces::{Cluster, KubeconfigSource};

/// Why the API server cannot be reached at all, when `e` says so: a refused connection, a name
/// that does not resolve, a connect timeout or a TLS failure. These are not transient, so the
/// engine does not retry them; a connection reset after connecting is, and is not reported here.
///
/// ```
/// use devops_stack_core::k8s::unreachable_cause;
/// let not_found = kube::Error::Api(kube::core::Status::failure("no", "NotFound").with_code(404).boxed());
/// assert_eq!(unreachable_cause(&not_found), None);
/// ```
pub fn unreachable_cause(e: &kube::Error) -> Option<UnreachableCause> {
    let kube::Error::Service(source) = e else {
        return None;
    };
    let mut connect = false;
    let mut cause: Option<UnreachableCause> = None;
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(source.as_ref());
    while let Some(err) = next {
        if let Some(h) = err.downcast_ref::<hyper_util::client::legacy::Error>() {
            connect |= h.is_connect();
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            cause = cause.or(match io.kind() {
                K::ConnectionRefused => Some(UnreachableCause::Refused),
                K::TimedOut => Some(UnreachableCause::TimedOut),
                K::HostUnreachable | K::NetworkUnreachable => {
                    Some(UnreachableCause::HostUnreachable)
                }
                _ => None,
            });
        }
        if let Some(tls) = rustls_error(err) {
            cause = Some(tls_cause(tls));
        }
        let text = err.to_string();
        if cause.is_none() && text.contains("dns error") {
            cause = Some(UnreachableCause::NameNotResolved {
                detail: text.clone(),
            });
        }
        if text.contains("timed out") && cause.is_none() {
            connect = true;
            cause = Some(UnreachableCause::TimedOut);
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
            UnreachableCause::Other {
                detail: chain.join(": "),
            }
        })
    })
}

/// A TLS error in plain words.
fn tls_cause(e: &rustls::Error) -> UnreachableCause {
    use UnreachableCause as C;
    use rustls::CertificateError as Cert;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            Cert::UnknownIssuer => C::UnknownAuthority,
            Cert::Expired => C::CertificateExpired { ago: None },
            Cert::ExpiredContext { time, not_after } => C::CertificateExpired {
                ago: Some(Duration::from_secs(
                    time.as_secs().saturating_sub(not_after.as_secs()),
                )),
            },
            Cert::NotValidYet | Cert::NotValidYetContext { .. } => C::CertificateNotYetValid,
            Cert::NotValidForName => C::WrongName {
                name: None,
                certificate_names: Vec::new(),
            },
            Cert::NotValidForNameContext {
                expected,
                presented,
            } => C::WrongName {
                name: Some(expected.to_str().into_owned()),
                certificate_names: presented.iter().map(|n| plain_name(n)).collect(),
            },
            other => C::BadCertificate {
                detail: other.to_string(),
            },
        },
        rustls::Error::InvalidMessage(_) => C::NotTls {
            detail: e.to_string(),
        },
        other => C::Tls {
            detail: other.to_string(),
        },
    }
}

/// A subject alternative name as webpki writes it (`DnsName("a.example")`, `IpAddress(10.0.0.1)`),
/// without the wrapping.
fn plain_name(presented: &str) -> String {
    presented
        .strip_prefix("DnsName(\"")
        .and_then(|n| n.strip_suffix("\")"))
        .or_else(|| {
            presented
                .strip_prefix("IpAddress(")
                .and_then(|n| n.strip_suffix(')'))
        })
        .unwrap_or(presented)
        .to_owned()
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

/// The address a client's errors name when its cluster does not tell its server URL.
const UNKNOWN_SERVER: &str = "an address its client does not tell";

/// Which cluster a deployer or a module talks to, for errors.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The cluster's name.
    pub(crate) cluster: String,
    /// Its server URL, or [`UNKNOWN_SERVER`].
    pub(crate) server: String,
    /// The kubeconfig file and context its client is made from.
    pub(crate) kubeconfig: Option<KubeconfigSource>,
}

impl Target {
    /// `cluster`, with the server and kubeconfig it tells.
    pub(crate) fn of(cluster: &dyn Cluster) -> Target {
        Target {
            cluster: cluster.name().to_owned(),
            server: cluster.server().unwrap_or_else(|| UNKNOWN_SERVER.into()),
            kubeconfig: cluster.kubeconfig(),
        }
    }

    /// A cluster known by its name and server only.
    pub(crate) fn named(cluster: impl Into<String>, server: Option<String>) -> Target {
        Target {
            cluster: cluster.into(),
            server: server.unwrap_or_else(|| UNKNOWN_SERVER.into()),
            kubeconfig: None,
        }
    }

    /// [`KubeError::Unreachable`](crate::k8s::KubeError::Unreachable) for this cluster.
    pub(crate) fn unreachable(&self, cause: UnreachableCause, source: Box<kube::Error>) -> Error {
        let (kubeconfig, context) = match &self.kubeconfig {
            Some(k) => (Some(k.path.clone()), k.context.clone()),
            None => (None, None),
        };
        Error::from(KubeError::Unreachable {
            cluster: self.cluster.clone(),
            server: self.server.clone(),
            kubeconfig,
            context,
            cause: Box::new(cause),
            source,
        })
    }
}

impl Error {
    /// [`KubeError::Unreachable`] for `cluster`, naming its server and the kubeconfig file and
    /// context it tells, from a client error `source` that [`unreachable_cause`] found to be
    /// `cause`. For modules that call the cluster's API themselves:
    ///
    /// ```
    /// use devops_stack_core::Error;
    /// use devops_stack_core::interfaces::Cluster;
    /// use devops_stack_core::k8s::unreachable_cause;
    ///
    /// fn reach(cluster: &dyn Cluster, action: &str, e: kube::Error) -> Error {
    ///     match unreachable_cause(&e) {
    ///         Some(cause) => Error::unreachable(cluster, cause, Box::new(e)),
    ///         None => Error::kube(action, e),
    ///     }
    /// }
    /// ```
    pub fn unreachable(
        cluster: &dyn Cluster,
        cause: UnreachableCause,
        source: Box<kube::Error>,
    ) -> Error {
        Target::of(cluster).unreachable(cause, source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::cause::Ago;
    use std::path::Path;

    #[test]
    fn names_webpki_subject_names_plainly() {
        assert_eq!(plain_name("DnsName(\"other.example\")"), "other.example");
        assert_eq!(plain_name("IpAddress(10.0.0.1)"), "10.0.0.1");
        assert_eq!(plain_name("DirectoryName"), "DirectoryName");
    }

    #[test]
    fn says_how_long_ago() {
        assert_eq!(Ago(Duration::from_secs(1)).to_string(), "1 second");
        assert_eq!(Ago(Duration::from_secs(7200)).to_string(), "2 hours");
        assert_eq!(
            Ago(Duration::from_secs(86400 * 400)).to_string(),
            "400 days"
        );
    }

    #[test]
    fn fixes_name_the_kubeconfig_and_context_or_the_cluster_settings() {
        let wrong = UnreachableCause::WrongName {
            name: Some("127.0.0.1".into()),
            certificate_names: vec!["other.example".into()],
        };
        let fix = wrong.fix(Some(Path::new("/k/c.yaml")), Some("lab"));
        assert!(
            fix.starts_with("make the `server` of context `lab` in /k/c.yaml a name the certificate is issued for (other.example), or set `tls-server-name`"),
            "{fix}"
        );
        assert!(
            fix.ends_with(
                "; `kubectl --kubeconfig /k/c.yaml --context lab cluster-info` fails the same way until it is fixed"
            ),
            "{fix}"
        );
        let fix = UnreachableCause::UnknownAuthority.fix(None, None);
        assert!(
            fix.starts_with(
                "the cluster's CA data is not the certificate authority that signed the server's certificate"
            ),
            "{fix}"
        );
        assert!(
            fix.contains("`kubectl cluster-info` with the same settings"),
            "{fix}"
        );
    }
}
