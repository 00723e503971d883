//! Whether an API error says that a cluster's API server cannot be reached at all, why in plain
//! words, and what to do about it.
//!
//! A refused connection, a name that does not resolve, a connect timeout or a TLS failure (a
//! certificate authority the client does not trust, an expired certificate, a certificate for
//! another name) will not go away by retrying: the engine fails at once with
//! [`Error::Unreachable`], naming the cluster, its server, the kubeconfig file and context it was
//! reached through, the cause ([`UnreachableCause`]) and the fix for that cause. Modules that call
//! the API themselves classify their errors with [`unreachable_cause`] and build the same error
//! with [`Error::unreachable`].

use std::fmt;
use std::path::Path;
use std::time::Duration;

use crate::error::Error;
use crate::interfaces::{Cluster, KubeconfigSource};

/// Why a cluster's API server cannot be reached, as [`unreachable_cause`] finds it in a client
/// error. Its `Display` says it in plain words; [`UnreachableCause::fix`] says what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnreachableCause {
    /// The connection was refused: nothing listens at the server's address and port.
    Refused,
    /// The connection timed out.
    TimedOut,
    /// The server's host or its network cannot be reached.
    HostUnreachable,
    /// The server's host name does not resolve.
    NameNotResolved {
        /// The resolver's error.
        detail: String,
    },
    /// TLS: the server's certificate is not signed by a certificate authority the client trusts
    /// (for a kubeconfig cluster, the one in its `certificate-authority-data`).
    UnknownAuthority,
    /// TLS: the server's certificate has expired.
    CertificateExpired {
        /// How long ago, when the TLS library says.
        ago: Option<Duration>,
    },
    /// TLS: the server's certificate is not valid yet (a clock is wrong, or it was issued for
    /// later).
    CertificateNotYetValid,
    /// TLS: the server's certificate is not issued for the name the client connects to.
    WrongName {
        /// The name the client checked (the server URL's host, or its `tls-server-name`), when
        /// the TLS library says.
        name: Option<String>,
        /// The names the certificate is issued for (its subject alternative names).
        certificate_names: Vec<String>,
    },
    /// TLS: the server's certificate is not valid for another reason.
    BadCertificate {
        /// The TLS library's words.
        detail: String,
    },
    /// TLS: what answers at the server's address does not speak TLS.
    NotTls {
        /// The TLS library's words.
        detail: String,
    },
    /// TLS failed otherwise.
    Tls {
        /// The TLS library's words.
        detail: String,
    },
    /// The connection failed otherwise.
    Other {
        /// The client's chain of errors.
        detail: String,
    },
}

impl fmt::Display for UnreachableCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use UnreachableCause as C;
        match self {
            C::Refused => f.write_str("the connection was refused (nothing listens there)"),
            C::TimedOut => f.write_str("the connection timed out"),
            C::HostUnreachable => f.write_str("the host is unreachable"),
            C::NameNotResolved { detail } => {
                write!(f, "the server's name does not resolve ({detail})")
            }
            C::UnknownAuthority => f.write_str(
                "TLS failed: the server's certificate is signed by an unknown certificate authority (not one the client trusts)",
            ),
            C::CertificateExpired { ago } => {
                f.write_str("TLS failed: the server's certificate has expired")?;
                match ago {
                    Some(ago) => write!(f, " ({} ago)", Ago(*ago)),
                    None => Ok(()),
                }
            }
            C::CertificateNotYetValid => {
                f.write_str("TLS failed: the server's certificate is not valid yet")
            }
            C::WrongName {
                name,
                certificate_names,
            } => {
                match name {
                    Some(name) => write!(
                        f,
                        "TLS failed: the server's certificate is not valid for the name {name}"
                    )?,
                    None => f.write_str(
                        "TLS failed: the server's certificate is not valid for the server's name",
                    )?,
                }
                if certificate_names.is_empty() {
                    f.write_str(" (it has no subject alternative names)")
                } else {
                    write!(
                        f,
                        " (its subject alternative names do not include it: it is for {})",
                        certificate_names.join(", ")
                    )
                }
            }
            C::BadCertificate { detail } => {
                write!(f, "TLS failed: the server's certificate is not valid ({detail})")
            }
            C::NotTls { detail } => write!(
                f,
                "TLS failed: what answers there does not speak TLS ({detail})"
            ),
            C::Tls { detail } => write!(f, "TLS failed: {detail}"),
            C::Other { detail } => write!(f, "the connection failed ({detail})"),
        }
    }
}

impl UnreachableCause {
    /// Whether TLS failed (the server was reached, its certificate or protocol was not right).
    pub fn is_tls(&self) -> bool {
        use UnreachableCause as C;
        matches!(
            self,
            C::UnknownAuthority
                | C::CertificateExpired { .. }
                | C::CertificateNotYetValid
                | C::WrongName { .. }
                | C::BadCertificate { .. }
                | C::NotTls { .. }
                | C::Tls { .. }
        )
    }

    /// What to do about it, naming the kubeconfig file and context the cluster is reached
    /// through when there is one, and the `kubectl` command that shows when it is fixed.
    ///
    /// ```
    /// use std::path::Path;
    /// use devops_stack_core::k8s::UnreachableCause;
    /// let fix = UnreachableCause::UnknownAuthority.fix(Some(Path::new("/k/prod.yaml")), Some("admin"));
    /// assert!(fix.contains("the `certificate-authority-data` of context `admin` in /k/prod.yaml"));
    /// assert!(fix.contains("`kubectl --kubeconfig /k/prod.yaml --context admin cluster-info`"));
    /// ```
    pub fn fix(&self, kubeconfig: Option<&Path>, context: Option<&str>) -> String {
        use UnreachableCause as C;
        let (server, ca) = match kubeconfig {
            Some(file) => {
                let of = match context {
                    Some(context) => format!("of context `{context}` in {}", file.display()),
                    None => format!("of the current context in {}", file.display()),
                };
                (
                    format!("the `server` {of}"),
                    format!("the `certificate-authority-data` {of}"),
                )
            }
            None => (
                "the cluster's server address".to_owned(),
                "the cluster's CA data".to_owned(),
            ),
        };
        let check = match kubeconfig {
            Some(file) => format!(
                "`kubectl --kubeconfig {}{} cluster-info` fails the same way until it is fixed",
                file.display(),
                context
                    .map(|c| format!(" --context {c}"))
                    .unwrap_or_default()
            ),
            None => {
                "`kubectl cluster-info` with the same settings fails the same way until it is fixed"
                    .to_owned()
            }
        };
        let what = match self {
            C::Refused => format!(
                "check that the API server is running, and that {server} is its address and port"
            ),
            C::TimedOut | C::HostUnreachable => format!(
                "check {server} and the network path to it (VPN, firewall, the addresses the API server accepts)"
            ),
            C::NameNotResolved { .. } => {
                format!("check the host name in {server}, and this machine's DNS")
            }
            C::UnknownAuthority => format!(
                "{ca} is not the certificate authority that signed the server's certificate: put that server's CA there (or point the context at the cluster the CA belongs to)"
            ),
            C::CertificateExpired { .. } => format!(
                "renew the API server's certificate (`kubeadm certs renew apiserver` on a kubeadm cluster; a kind cluster is recreated), and check this machine's clock; {server} may also name an old server"
            ),
            C::CertificateNotYetValid => {
                "check the clocks of this machine and of the API server".to_owned()
            }
            C::WrongName {
                name,
                certificate_names,
            } => {
                let name = name.as_deref().unwrap_or("the server's name");
                if certificate_names.is_empty() {
                    format!(
                        "reissue the API server's certificate with {name} among its subject alternative names, or check that {server} is the right server"
                    )
                } else {
                    format!(
                        "make {server} a name the certificate is issued for ({}){}, or reissue the API server's certificate with {name} among its subject alternative names",
                        certificate_names.join(", "),
                        if kubeconfig.is_some() {
                            ", or set `tls-server-name` to one of them in the same cluster entry"
                        } else {
                            ""
                        }
                    )
                }
            }
            C::NotTls { .. } => format!(
                "make {server} the API server's `https://` address and port (something else answers there)"
            ),
            C::BadCertificate { .. } | C::Tls { .. } | C::Other { .. } => {
                format!("check {server} and {ca}")
            }
        };
        format!("{what}; {check}")
    }
}

/// A duration in the largest whole unit that fits (`3 days`, `1 hour`).
struct Ago(Duration);

impl fmt::Display for Ago {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.as_secs();
        let (n, unit) = match s {
            0..60 => (s, "second"),
            60..3600 => (s / 60, "minute"),
            3600..86400 => (s / 3600, "hour"),
            _ => (s / 86400, "day"),
        };
        write!(f, "{n} {unit}{}", if n == 1 { "" } else { "s" })
    }
}

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

    /// [`Error::Unreachable`] for this cluster.
    pub(crate) fn unreachable(&self, cause: UnreachableCause, source: Box<kube::Error>) -> Error {
        let (kubeconfig, context) = match &self.kubeconfig {
            Some(k) => (Some(k.path.clone()), k.context.clone()),
            None => (None, None),
        };
        Error::Unreachable {
            cluster: self.cluster.clone(),
            server: self.server.clone(),
            kubeconfig,
            context,
            cause: Box::new(cause),
            source,
        }
    }
}

impl Error {
    /// [`Error::Unreachable`] for `cluster`, naming its server and the kubeconfig file and
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
