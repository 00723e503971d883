//! The one error type of `devops-stack-core`.

use std::fmt;
use std::time::Duration;

use crate::executor::Report;
use crate::module::Step;

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
    #[error("module `{module}` did not {step} within {timeout:?}; raise it with `RunOptions::module_timeout`")]
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
    #[error("module `{module}` read the output of `{dependency}` but did not declare it; add it in `Module::needs`")]
    UndeclaredDependency {
        /// The reading module.
        module: String,
        /// The module whose output was read.
        dependency: String,
    },

    /// An input's value is not available (its module has not produced it, or it does not exist any more).
    #[error("module `{module}` needs the output of `{dependency}`, which is not available: {reason}")]
    OutputUnavailable {
        /// The reading module.
        module: String,
        /// The module whose output was read.
        dependency: String,
        /// Why the value is missing.
        reason: String,
    },

    /// A run finished with failed, timed-out or skipped modules. The report has the details.
    #[error("{step} failed for {}: {}", plural(.failed.len(), "module"), .failed.join("; "))]
    RunFailed {
        /// The step that was run.
        step: Step,
        /// One line per failed module: its id and error.
        failed: Vec<String>,
        /// The full report of the run.
        report: Box<Report>,
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
            Some(m) => write!(f, "module `{m}`, field `{}`: {}; fix: {}", self.field, self.problem, self.fix),
            None => write!(f, "field `{}`: {}; fix: {}", self.field, self.problem, self.fix),
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
