//! The Kubernetes engine's error type.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::cause::UnreachableCause;
use super::conflict::OwnershipConflict;

/// A boxed error, as the engine keeps a cluster's or a module's own error.
type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything the Kubernetes engine can fail with. It reaches callers inside the stack's
/// [`crate::Error::Kubernetes`]; [`crate::Error::kubernetes`] finds it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("Kubernetes API error while {action}: {source}")]
    Api {
        /// What was being done, naming the object.
        action: String,
        /// The client's error.
        #[source]
        source: Box<kube::Error>,
    },

    /// Server-side apply found fields of the object owned by another field manager.
    #[error("server-side apply of {object} conflicts with field manager {}: {detail}; fix: stop the other manager from setting these fields, or set `KubeOptions::force_conflicts` to take them over", .managers.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", "))]
    FieldConflict {
        /// The object, as `apiVersion Kind namespace/name`.
        object: String,
        /// The other field managers named by the API server.
        managers: Vec<String>,
        /// The API server's message (which fields conflict).
        detail: String,
    },

    /// An object did not become ready in time.
    #[error(
        "{object} was not ready after {timeout:?}; last observed status: {last_status}; fix: check the object, raise `KubeOptions::wait_timeout`, or set `KubeOptions::wait` to false"
    )]
    NotReady {
        /// The object, as `apiVersion Kind namespace/name`.
        object: String,
        /// The timeout that passed.
        timeout: Duration,
        /// The last status seen (or that the object was not found).
        last_status: String,
    },

    /// Argo CD reports a condition on an Application that waiting will not change (the chart
    /// or its version is not in the repository, or the chart's values schema rejects the
    /// values): the wait ends at once instead of at its timeout.
    #[error("{0}")]
    ApplicationRefused(Box<ApplicationRefusal>),

    /// An object was still present when the time to delete it ran out.
    #[error(
        "{object} was still present after {timeout:?}; last observed: {last_status}; fix: check what holds its finalizers (for an Argo CD Application, that Argo CD runs: it removes `resources-finalizer.argocd.argoproj.io` once it has deleted what the Application deployed); if Argo CD is gone or broken, set `KubeOptions::stuck_applications(StuckApplications::OrphanAfter(..))` to remove that finalizer and delete the Application without cascading (what it deployed is then left in place, and reported); or raise `KubeOptions::wait_timeout`"
    )]
    NotDeleted {
        /// The object, as `apiVersion Kind namespace/name`.
        object: String,
        /// The timeout that passed.
        timeout: Duration,
        /// The last state seen.
        last_status: String,
    },

    /// Namespaces were still terminating when the destroy's time ran out.
    #[error("namespace{} {} still terminating after {timeout:?}: {}; fix: remove what blocks the finalizers, or raise `KubeOptions::wait_timeout`", if .namespaces.len() == 1 { "" } else { "s" }, .namespaces.iter().map(|(n, _)| format!("`{n}`")).collect::<Vec<_>>().join(", "), .namespaces.iter().map(|(n, why)| format!("{n}: {why}")).collect::<Vec<_>>().join("; "))]
    NamespaceStuck {
        /// Each stuck namespace with what keeps it (its finalizers and conditions).
        namespaces: Vec<(String, String)>,
        /// The timeout that passed.
        timeout: Duration,
    },

    /// Objects a module renders already exist and are not this module's: taking them over needs
    /// an explicit adoption. Nothing was written.
    #[error("module `{module}` renders {} that already exist{} and belong{} to someone else; nothing was written:\n{}\nfix: give {} another name or namespace, or adopt {} explicitly with `KubeOptions::adopt(Adopt::object(\"{module}\", ..))` (or `Adopt::module(\"{module}\")` for all of its objects)", plural(.objects.len(), "object"), if .objects.len() == 1 { "s" } else { "" }, if .objects.len() == 1 { "s" } else { "" }, .objects.iter().map(|c| format!("  - {c}")).collect::<Vec<_>>().join("\n"), if .objects.len() == 1 { "it" } else { "them" }, if .objects.len() == 1 { "it" } else { "them" })]
    NotOwned {
        /// The module whose apply was refused.
        module: String,
        /// Each object, with who owns it now.
        objects: Vec<OwnershipConflict>,
    },

    /// The stack-wide preflight found objects that modules would take over; nothing was
    /// written. Each object is listed with its module and owner.
    #[error("{} of stack `{stack}` render{} objects that already exist and belong to someone else; nothing was written:\n{}\nfix: give them another name or namespace, or adopt them explicitly with `KubeOptions::adopt(Adopt::object(..))` or `Adopt::module(..)`", plural(.modules.len(), "module"), if .modules.len() == 1 { "s" } else { "" }, .objects.iter().map(|(m, c)| format!("  - module `{m}`: {c}")).collect::<Vec<_>>().join("\n"))]
    NotOwnedInStack {
        /// The stack.
        stack: String,
        /// The modules with conflicts.
        modules: Vec<String>,
        /// Each object with its module.
        objects: Vec<(String, OwnershipConflict)>,
    },

    /// The cluster's API server cannot be reached: the connection was refused, the name did not
    /// resolve, or TLS failed (an unknown certificate authority, an expired certificate, a
    /// certificate for another name). Not retried. Made by the engine, and by modules with
    /// [`crate::Error::unreachable`].
    #[error(
        "cannot reach the API server of cluster `{cluster}` at {server}{}: {cause}; fix: {}; in a destroy of a cluster that is going away, `RunOptions::abandon_in_cluster()` abandons the objects in it and goes on",
        Through(.kubeconfig.as_deref(), .context.as_deref()),
        .cause.fix(.kubeconfig.as_deref(), .context.as_deref())
    )]
    Unreachable {
        /// The cluster's name.
        cluster: String,
        /// The server URL (or `an address its client does not tell`).
        server: String,
        /// The kubeconfig file the cluster's client is made from, if it is.
        kubeconfig: Option<PathBuf>,
        /// The kubeconfig context (the file's current context when the cluster names none).
        context: Option<String>,
        /// What failed (boxed: it keeps the error small).
        cause: Box<UnreachableCause>,
        /// The client's error.
        #[source]
        source: Box<kube::Error>,
    },

    /// An object's kind is not served by the cluster.
    #[error(
        "{object}: the cluster serves no `{kind}` in `{api_version}`; fix: install its CustomResourceDefinition first (or put it in the same bundle), or correct `apiVersion`/`kind`"
    )]
    UnknownKind {
        /// The object, as `apiVersion Kind namespace/name`.
        object: String,
        /// Its `apiVersion`.
        api_version: String,
        /// Its `kind`.
        kind: String,
    },

    /// A kubeconfig could not be loaded.
    #[error(
        "kubeconfig `{path}` cannot be used: {reason}; fix: check the file and the context name (`kubectl config get-contexts --kubeconfig {path}`)"
    )]
    Kubeconfig {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },

    /// A rendered object or manifest is not a valid Kubernetes object.
    #[error("{what}: {problem}; fix: {fix}")]
    InvalidObject {
        /// The object or document (`apiVersion Kind namespace/name`, `YAML document #2`).
        what: String,
        /// What is wrong with it.
        problem: String,
        /// What to change.
        fix: String,
    },

    /// An object kept changing under a read-check-write loop (other writers raced every retry).
    #[error("{object} kept changing while {action}; fix: {fix}")]
    KeptChanging {
        /// The object, as `apiVersion Kind namespace/name`.
        object: String,
        /// What was being done.
        action: String,
        /// What to do (usually: run again).
        fix: String,
    },

    /// A watch failed for good (not a transient error), or ended while waited on.
    #[error("watching {object} failed: {reason}")]
    Watch {
        /// The object watched.
        object: String,
        /// Why.
        reason: String,
        /// The watcher's error, when it gave one.
        #[source]
        source: Option<Box<kube::runtime::watcher::Error>>,
    },

    /// The stack's state ConfigMap cannot be used.
    #[error("state ConfigMap {config_map}: {problem}; fix: {fix}")]
    State {
        /// The ConfigMap, as `namespace/name`.
        config_map: String,
        /// What is wrong with it.
        problem: String,
        /// What to do.
        fix: String,
        /// The decoding error, when there is one.
        #[source]
        source: Option<serde_json::Error>,
    },

    /// The client of a cluster could not be made.
    #[error("cannot connect to cluster `{cluster}`: {source}{}", .hint.as_deref().map(|h| format!("; {h}")).unwrap_or_default())]
    Client {
        /// The cluster's name.
        cluster: String,
        /// What to do, when there is something particular to do.
        hint: Option<String>,
        /// The cluster's error.
        #[source]
        source: BoxError,
    },

    /// Destroying a module the stack no longer has failed.
    #[error("destroying module `{module}`, which the stack no longer has, failed: {source}")]
    RemovedModule {
        /// The module's id, as the state recorded it.
        module: String,
        /// Why.
        #[source]
        source: BoxError,
    },
}

/// Why Argo CD refuses an Application for good ([`KubeError::ApplicationRefused`](crate::k8s::KubeError::ApplicationRefused)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "Argo CD cannot deploy {application} of module `{module}` (chart {chart}): {condition}: {message}; fix: {fix}"
)]
#[non_exhaustive]
pub struct ApplicationRefusal {
    /// The module whose Application it is.
    pub module: String,
    /// The Application, as `apiVersion Kind namespace/name`.
    pub application: String,
    /// The chart, as `<repository> <chart> <version>` (or the source's repository and path).
    pub chart: String,
    /// Argo CD's condition type (`ComparisonError`, `InvalidSpecError`).
    pub condition: String,
    /// Argo CD's message.
    pub message: String,
    /// What to change: the version or repository, or the value at the key the schema names.
    pub fix: String,
}

/// ` (kubeconfig <file>, context `<context>`)`, or nothing for a cluster without a kubeconfig.
struct Through<'a>(Option<&'a Path>, Option<&'a str>);

impl fmt::Display for Through<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Through(Some(file), Some(context)) => {
                write!(f, " (kubeconfig {}, context `{context}`)", file.display())
            }
            Through(Some(file), None) => write!(f, " (kubeconfig {})", file.display()),
            Through(None, _) => Ok(()),
        }
    }
}

/// `1 module`, `2 modules`.
pub(crate) fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}
