//! Why a cluster's API server cannot be reached, in plain words, with the fix.

use std::fmt;
use std::path::Path;
use std::time::Duration;

/// Why a cluster's API server cannot be reached, as [`unreachable_cause`](super::unreachable_cause) finds it in a client
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
pub(super) struct Ago(pub(super) Duration);

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
