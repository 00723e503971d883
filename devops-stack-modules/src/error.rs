//! The one error type of `devops-stack-modules`.

use devops_stack_core::interfaces::Cluster;
use devops_stack_core::k8s::unreachable_cause;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong while a built-in module plans, applies or destroys its component.
///
/// Configuration mistakes are not here: they are reported by `Module::validate` before anything
/// runs, as [`ConfigError`](devops_stack_core::ConfigError)s naming the field and the fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An error of the core (reading an input, the apply engine). A module's own API call that
    /// cannot reach the cluster at all is reported here too, as the engine's are:
    /// [`Unreachable`](devops_stack_core::k8s::KubeError::Unreachable), naming the cluster, its server,
    /// kubeconfig and context, the cause and the fix.
    #[error(transparent)]
    Core(#[from] devops_stack_core::Error),

    /// A Kubernetes API call made by the module itself failed (the API server answered, or the
    /// connection broke after it was made).
    #[error("Kubernetes API error while {action}: {source}")]
    Kube {
        /// What was being done, naming the object.
        action: String,
        /// The client's error.
        #[source]
        source: Box<kube::Error>,
    },

    /// Install manifests could not be downloaded.
    #[error("cannot fetch {url}: {reason}; check the network, or point the module at a mirror")]
    Fetch {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },

    /// The `helm` CLI failed.
    #[error("`helm {command}` failed: {reason}")]
    Helm {
        /// The sub-command and its main arguments.
        command: String,
        /// Its standard error, or why it could not run.
        reason: String,
    },

    /// A call to the Argo CD API (through the Kubernetes service proxy) failed.
    #[error("Argo CD API call {call} failed: {reason}")]
    ArgoCdApi {
        /// The call (`POST /api/v1/session`).
        call: String,
        /// Why.
        reason: String,
    },

    /// A call to the cloud through one of core's interfaces (a workload role, a DNS record)
    /// failed.
    #[error("{action}: {source}")]
    Cloud {
        /// What was being done, naming the resource.
        action: String,
        /// The implementation's error.
        #[source]
        source: devops_stack_core::BoxError,
    },

    /// The module's inputs do not fit together (a hostname outside the DNS zone it is to be
    /// published in). Reported before any side effect.
    #[error("{field}: {problem}; fix: {fix}")]
    Input {
        /// The setting or input at fault.
        field: String,
        /// What is wrong, naming the values.
        problem: String,
        /// How to fix it.
        fix: String,
    },

    /// Something the module waits for in the cluster did not happen in time.
    #[error("{object}: still waiting for {what} after {waited:?} ({state}); {fix}")]
    Wait {
        /// The object, as `Kind namespace/name`.
        object: String,
        /// What was waited for.
        what: String,
        /// How long.
        waited: std::time::Duration,
        /// What the object looked like at the end.
        state: String,
        /// What to check, and how to wait longer.
        fix: String,
    },

    /// Objects the module waited for Argo CD to remove are still there: the bounded wait ran
    /// out, or the run was cancelled. Nothing after them was deleted; destroying again resumes.
    #[error("{what}: Argo CD has not removed {}; {fix}", .left.join(", "))]
    NotRemoved {
        /// What was being removed.
        what: String,
        /// What is left, each with what Argo CD says of it.
        left: Vec<String>,
        /// How to go on.
        fix: String,
    },

    /// A value the module reads from the cluster is missing or malformed.
    #[error("{object}: {problem}")]
    Missing {
        /// The object, as `Kind namespace/name`.
        object: String,
        /// What is missing.
        problem: String,
    },
}

impl Error {
    /// Wraps an error of a cloud interface with what was being done.
    pub(crate) fn cloud(action: impl Into<String>, source: devops_stack_core::BoxError) -> Self {
        Error::Cloud {
            action: action.into(),
            source,
        }
    }

    /// An input error.
    pub(crate) fn input(
        field: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Error::Input {
            field: field.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    /// This error, or, when it is a Kubernetes API error that says the API server of `cluster`
    /// cannot be reached at all (a refused connection, a name that does not resolve, a TLS
    /// failure), the core's [`Unreachable`](devops_stack_core::k8s::KubeError::Unreachable) for
    /// `cluster`, as the engine reports it. The steps of modules that call the API themselves
    /// pass their errors through it.
    pub(crate) fn reach(self, cluster: &dyn Cluster) -> Self {
        match self {
            Error::Kube { action, source } => match unreachable_cause(&source) {
                Some(cause) => Error::Core(devops_stack_core::Error::unreachable(
                    cluster, cause, source,
                )),
                None => Error::Kube { action, source },
            },
            e => e,
        }
    }

    /// Wraps a Kubernetes client error with what was being done.
    pub(crate) fn kube(action: impl Into<String>, source: kube::Error) -> Self {
        Error::Kube {
            action: action.into(),
            source: Box::new(source),
        }
    }
}

#[cfg(test)]
mod tests {
    use devops_stack_core::clusters::LocalCluster;
    use devops_stack_core::k8s::{KubeError, UnreachableCause};
    use devops_stack_test::tls::{TestCa, kubeconfig};

    use super::*;

    /// A module's own API error that says the cluster cannot be reached becomes the core's
    /// typed `Unreachable` (cause, kubeconfig, context); others stay what they were.
    #[tokio::test]
    async fn an_unreachable_cluster_becomes_the_cores_typed_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let file = kubeconfig(
            &format!("https://127.0.0.1:{port}"),
            &TestCa::new("CA").pem(),
            &["lab-admin"],
        );
        let cluster = LocalCluster {
            name: "lab".into(),
            base_domain: "example.com".into(),
            kubeconfig: file.path().to_owned(),
            context: None,
        };
        let e = cluster
            .connect()
            .await
            .unwrap()
            .apiserver_version()
            .await
            .unwrap_err();
        let err = Error::kube("reading Secret argocd/x", e).reach(&cluster);
        let Error::Core(core) = &err else {
            panic!("{err}")
        };
        let Some(KubeError::Unreachable {
            cluster: name,
            kubeconfig,
            context,
            cause,
            ..
        }) = core.kubernetes()
        else {
            panic!("{err}")
        };
        assert_eq!(name, "lab");
        assert_eq!(kubeconfig.as_deref(), Some(file.path()));
        assert_eq!(context.as_deref(), Some("lab-admin"));
        assert_eq!(**cause, UnreachableCause::Refused);

        let not_found = kube::Error::Api(
            kube::core::Status::failure("no", "NotFound")
                .with_code(404)
                .boxed(),
        );
        let err = Error::kube("reading Secret argocd/x", not_found).reach(&cluster);
        assert!(matches!(err, Error::Kube { .. }), "{err}");
    }
}
