//! The one error type of `devops-stack-core`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::report::{Failure, Report, Status};
use crate::step::Step;

/// A boxed error returned by a module's steps; each crate keeps its own error enum and boxes it here.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while building, planning, applying or destroying a stack.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The stack's configuration is invalid; nothing was run. Every problem found is listed.
    #[error("invalid stack configuration ({} problem{}):\n{}", .0.len(), if .0.len() == 1 { "" } else { "s" }, ConfigErrorList(.0))]
    Invalid(Vec<ConfigError>),

    /// The dependency graph has a cycle; the modules on each cycle are listed.
    #[error("dependency cycle between modules: {}", .cycles.iter().map(|c| c.join(" -> ")).collect::<Vec<_>>().join("; "))]
    Cycle {
        /// One list of module ids per strongly connected component, in stack order.
        cycles: Vec<Vec<String>>,
    },

    /// A module's step returned an error.
    #[error("module `{module}` failed to {step}: {source}")]
    Module {
        /// The module's id.
        module: String,
        /// The step that failed.
        step: Step,
        /// The module's own error.
        #[source]
        source: BoxError,
    },

    /// A module's step did not finish within its timeout.
    #[error(
        "module `{module}` did not {step} within {timeout:?}; raise it with `RunOptions::module_timeout`"
    )]
    Timeout {
        /// The module's id.
        module: String,
        /// The step that timed out.
        step: Step,
        /// The timeout that was exceeded.
        timeout: Duration,
    },

    /// The run was cancelled through its cancellation token.
    #[error("cancelled while module `{module}` was running")]
    Cancelled {
        /// The module that was interrupted.
        module: String,
    },

    /// A module read an input it did not declare in [`Module::needs`](crate::Module::needs).
    #[error(
        "module `{module}` read the output of `{dependency}` but did not declare it; add it in `Module::needs`"
    )]
    UndeclaredDependency {
        /// The reading module.
        module: String,
        /// The module whose output was read.
        dependency: String,
    },

    /// An input's value is not available (its module has not produced it, or it does not exist any more).
    #[error(
        "module `{module}` needs the output of `{dependency}`, which is not available: {reason}"
    )]
    OutputUnavailable {
        /// The reading module.
        module: String,
        /// The module whose output was read.
        dependency: String,
        /// Why the value is missing.
        reason: String,
    },

    /// A module was not run: what it needs did not succeed, or the run ended first.
    #[error("`{module}` skipped: {reason}")]
    Skipped {
        /// The module's id.
        module: String,
        /// Why.
        reason: String,
    },

    /// A run finished with failed, timed-out or skipped modules. The report has the details.
    #[error("{step} failed for {}: {}", plural(.failed.len(), "module"), .failed.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    RunFailed {
        /// The step that was run.
        step: Step,
        /// Each failure, with its cause: a module's error, its timeout, its cancellation, why it
        /// was skipped, or the engine's error at the end of the run.
        failed: Vec<Failure>,
        /// The full report of the run.
        report: Box<Report>,
    },

    /// A lock kept outside the cluster (in the cloud account) could not be read or written.
    #[error("{action} {location} failed: {source}")]
    Lock {
        /// What was being done (`taking the lock`).
        action: String,
        /// Where the lock is kept (`s3://bucket/key`).
        location: String,
        /// The store's error.
        #[source]
        source: BoxError,
    },

    /// A value could not be converted to or from JSON.
    #[error("serialization failed for {what}: {source}")]
    Serialize {
        /// What was being converted.
        what: String,
        /// The underlying serde error.
        #[source]
        source: serde_json::Error,
    },

    /// A Kubernetes API call failed.
    #[error("Kubernetes API error while {action}: {source}")]
    Kube {
        /// What was being done, naming the object.
        action: String,
        /// The client's error.
        #[source]
        source: Box<kube::Error>,
    },

    /// A Kubernetes step failed for a reason other than an API error.
    #[error("{0}")]
    Kubernetes(String),

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

    /// Another run holds the stack's lock.
    #[error(
        "stack `{stack}` is locked by `{holder}` (Lease {lease}, renewed {renewed_secs_ago}s ago, expires in {expires_in_secs}s); fix: wait for that run to finish, or if it died, retry after the lease expires"
    )]
    LockHeld {
        /// The stack.
        stack: String,
        /// The holder identity recorded in the Lease.
        holder: String,
        /// The Lease, as `namespace/name`.
        lease: String,
        /// Seconds since the holder last renewed the lease.
        renewed_secs_ago: u64,
        /// Seconds until the lease is stale and may be taken over.
        expires_in_secs: u64,
    },

    /// This run's stack lock was taken over by another holder (it could not be renewed in time).
    #[error(
        "the lock of stack `{stack}` was lost to `{holder}`; fix: make sure the run can reach the API server, then run again"
    )]
    LockLost {
        /// The stack.
        stack: String,
        /// Who holds it now (empty when the lease was deleted).
        holder: String,
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
        objects: Vec<crate::k8s::conflict::OwnershipConflict>,
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
        objects: Vec<(String, crate::k8s::conflict::OwnershipConflict)>,
    },

    /// The cluster's API server cannot be reached: the connection was refused, the name did not
    /// resolve, or TLS failed (an unknown certificate authority, an expired certificate, a
    /// certificate for another name). Not retried. Made by the engine, and by modules with
    /// [`Error::unreachable`].
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
        cause: Box<crate::k8s::cause::UnreachableCause>,
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

    /// A program the step needs is not installed.
    #[error("{program} is not installed or not on PATH (needed to {purpose}); fix: {fix}")]
    ToolMissing {
        /// The program (or programs) looked for.
        program: String,
        /// What it was needed for.
        purpose: String,
        /// How to install it.
        fix: String,
    },

    /// An external command failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// The end of its standard error.
        stderr: String,
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

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// One invalid piece of configuration: where it is, what is wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConfigError {
    /// The module the problem belongs to, if any.
    pub module: Option<String>,
    /// The offending field, as a dotted path (`ingress.hostname`).
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
    /// What to do about it.
    pub fix: String,
}

impl ConfigError {
    /// A problem with `field` of `module`.
    pub fn new(
        module: Option<&str>,
        field: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            module: module.map(str::to_owned),
            field: field.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.module {
            Some(m) => write!(
                f,
                "module `{m}`, field `{}`: {}; fix: {}",
                self.field, self.problem, self.fix
            ),
            None => write!(
                f,
                "field `{}`: {}; fix: {}",
                self.field, self.problem, self.fix
            ),
        }
    }
}

struct ConfigErrorList<'a>(&'a [ConfigError]);

impl fmt::Display for ConfigErrorList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl Error {
    /// The configuration problems, when this is [`Error::Invalid`].
    pub fn config_errors(&self) -> &[ConfigError] {
        match self {
            Error::Invalid(v) => v,
            _ => &[],
        }
    }

    /// Wraps a Kubernetes client error with what was being done.
    pub fn kube(action: impl Into<String>, source: kube::Error) -> Self {
        Error::Kube {
            action: action.into(),
            source: Box::new(source),
        }
    }
}

/// Why Argo CD refuses an Application for good ([`Error::ApplicationRefused`]).
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

impl Failure {
    /// The error, when it is this crate's [`Error`] (as every failure the stack engine records
    /// is).
    pub fn error(&self) -> Option<&Error> {
        self.0.downcast_ref::<Error>()
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure(std::sync::Arc::new(e))
    }
}

impl Report {
    /// `Ok(self)` when the run succeeded, otherwise [`Error::RunFailed`] naming each failure.
    ///
    /// # Errors
    /// As described.
    pub fn into_result(self) -> Result<Report> {
        if self.is_success() {
            return Ok(self);
        }
        let failed = self
            .modules
            .iter()
            .filter_map(|m| match &m.status {
                Status::Failed { error } | Status::TimedOut { error } => Some(error.clone()),
                Status::Cancelled => Some(Failure::from(Error::Cancelled {
                    module: m.id.clone(),
                })),
                Status::Skipped { reason } => Some(Failure::from(Error::Skipped {
                    module: m.id.clone(),
                    reason: reason.clone(),
                })),
                _ => None,
            })
            .collect();
        Err(Error::RunFailed {
            step: self.step,
            failed,
            report: Box::new(self),
        })
    }
}
