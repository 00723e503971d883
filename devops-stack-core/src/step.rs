//! The phases of a stack and the steps of a module's life.

use std::fmt;

use serde::Serialize;

/// When a module runs relative to the others, expressed as edges of the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Default)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Phase {
    /// Runs as soon as its inputs are ready and is started before ready `Main` modules when
    /// concurrency is bounded (a plain Argo CD on a fresh cluster).
    Bootstrap,
    /// Runs as soon as its inputs are ready.
    #[default]
    Main,
    /// Runs after every module of the other phases, through edges the stack adds (Argo CD
    /// re-applied to manage itself with OIDC and monitoring). A non-final module that depends on a
    /// final one is reported as a cycle.
    Final,
}

/// One step of a module's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Step {
    /// Render offline what would be created.
    Plan,
    /// Check, before anything is created, what only the cloud or the cluster can say (that a
    /// hosted zone exists). Inputs cannot be read: every module's preflight runs before the first
    /// module is applied.
    Preflight,
    /// Look up what exists, without changing it (before a destroy).
    Read,
    /// Create or update.
    Apply,
    /// Remove.
    Destroy,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Plan => "plan",
            Step::Preflight => "preflight",
            Step::Read => "read",
            Step::Apply => "apply",
            Step::Destroy => "destroy",
        })
    }
}
