//! What a run reports: each module's [`Status`] and timing, the critical path, the typed
//! outputs.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::handle::Handle;
use crate::output::Outputs;
use crate::step::Step;

/// An error kept by a [`Report`] or [`Error::RunFailed`](crate::Error::RunFailed): shared, so
/// reports clone, with the whole error and its causes still there to match on
/// ([`Failure::error`], [`std::error::Error::source`]). It displays as the error; it serializes as
/// that text; two are equal when their texts are.
#[derive(Clone)]
pub struct Failure(pub(crate) Arc<dyn std::error::Error + Send + Sync>);

impl std::ops::Deref for Failure {
    type Target = dyn std::error::Error + Send + Sync;
    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&*self.0, f)
    }
}

impl std::fmt::Debug for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&*self.0, f)
    }
}

impl std::error::Error for Failure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

impl PartialEq for Failure {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.to_string() == other.0.to_string()
    }
}

impl Eq for Failure {}

impl Serialize for Failure {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&*self.0)
    }
}

/// How a module's step ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Status {
    /// It succeeded.
    Succeeded,
    /// Read found that the module's resources do not exist.
    Absent,
    /// It returned an error.
    Failed {
        /// The error, with its causes.
        error: Failure,
    },
    /// It exceeded its timeout.
    TimedOut {
        /// The error ([`Error::Timeout`](crate::Error::Timeout)).
        error: Failure,
    },
    /// The run was cancelled while it ran.
    Cancelled,
    /// It was not run.
    Skipped {
        /// Why.
        reason: String,
    },
}

impl Status {
    pub(crate) fn is_ok(&self) -> bool {
        matches!(self, Status::Succeeded | Status::Absent)
    }
}

/// One module's part of a [`Report`].
#[derive(Debug, Clone, Serialize)]
pub struct ModuleReport {
    /// The module's id.
    pub id: String,
    /// Its kind.
    pub kind: String,
    /// How its step ended.
    pub status: Status,
    /// When it started, since the run started.
    pub started: Option<Duration>,
    /// How long it ran.
    pub duration: Option<Duration>,
    /// Its output (secrets redacted), when it produced one.
    pub output: Option<serde_json::Value>,
}

/// The outcome of a run: every module's status and timing, and the critical path.
#[derive(Clone, Serialize)]
pub struct Report {
    /// The stack's name.
    pub stack: String,
    /// The step that was run.
    pub step: Step,
    /// From the start of the run to its end.
    pub wall_time: Duration,
    /// One entry per module, in stack order.
    pub modules: Vec<ModuleReport>,
    /// The chain of modules whose measured durations add up to the longest path.
    pub critical_path: Vec<String>,
    /// The sum of the measured durations along the critical path: the shortest wall time any
    /// schedule could reach. `wall_time - critical_path_time` is the executor's own overhead.
    pub critical_path_time: Duration,
    /// Modules the stack's state recorded that the stack no longer has, destroyed by this run
    /// (see [`RemovedModules`](crate::k8s::RemovedModules)).
    pub removed: Vec<String>,
    #[serde(skip)]
    pub(crate) outputs: Outputs,
}

impl std::fmt::Debug for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Report")
            .field("stack", &self.stack)
            .field("step", &self.step)
            .field("wall_time", &self.wall_time)
            .field("modules", &self.modules)
            .field("critical_path", &self.critical_path)
            .field("removed", &self.removed)
            .finish()
    }
}

impl Report {
    /// Whether every module succeeded (or, for a read, was found absent).
    pub fn is_success(&self) -> bool {
        self.modules.iter().all(|m| m.status.is_ok())
    }

    /// The report of module `id`.
    pub fn module(&self, id: &str) -> Option<&ModuleReport> {
        self.modules.iter().find(|m| m.id == id)
    }

    /// The typed output a module produced in this run.
    pub fn output<T: Send + Sync + 'static>(&self, handle: &Handle<T>) -> Option<Arc<T>> {
        let slot = self.outputs.get(handle.dep.index)?.get()?.as_ref()?;
        slot.value.clone().downcast::<T>().ok()
    }

    /// A table of modules with status and timings, and the critical path.
    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = format!(
            "{} of stack `{}` in {:.2?}\n",
            self.step, self.stack, self.wall_time
        );
        for m in &self.modules {
            let status = match &m.status {
                Status::Succeeded => "ok".to_owned(),
                Status::Absent => "absent".to_owned(),
                Status::Failed { error } => format!("FAILED: {error}"),
                Status::TimedOut { error } => format!("TIMED OUT: {error}"),
                Status::Cancelled => "cancelled".to_owned(),
                Status::Skipped { reason } => format!("skipped: {reason}"),
            };
            let d = m
                .duration
                .map(|d| format!("{d:.2?}"))
                .unwrap_or_else(|| "-".into());
            let _ = writeln!(out, "  {:<28} {:>10}  {status}", m.id, d);
        }
        if !self.removed.is_empty() {
            let _ = writeln!(
                out,
                "  removed from the stack, destroyed: {}",
                self.removed.join(", ")
            );
        }
        let _ = writeln!(
            out,
            "critical path ({:.2?}): {}",
            self.critical_path_time,
            self.critical_path.join(" -> ")
        );
        out
    }
}
