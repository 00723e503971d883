//! The one error type of `devops-stack-core`.

use std::fmt;
use std::time::Duration;

use crate::k8s::error::{Error as KubeError, plural};

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

    /// The Kubernetes engine failed (an API error, an object that is not ready or not deleted
    /// in time, an unreachable cluster, an object owned by someone else, ...).
    #[error(transparent)]
    Kubernetes(Box<KubeError>),

    /// A local file could not be read or written.
    #[error("cannot {action} {}: {source}", .path.display())]
    Io {
        /// What was being done (`write the kind configuration`).
        action: String,
        /// The file.
        path: std::path::PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
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
        KubeError::Api {
            action: action.into(),
            source: Box::new(source),
        }
        .into()
    }

    /// The Kubernetes engine's error, when this is one.
    pub fn kubernetes(&self) -> Option<&KubeError> {
        match self {
            Error::Kubernetes(e) => Some(e),
            _ => None,
        }
    }
}

impl From<KubeError> for Error {
    fn from(e: KubeError) -> Self {
        Error::Kubernetes(Box::new(e))
    }
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
