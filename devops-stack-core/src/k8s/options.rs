//! The Kubernetes engine's settings for a run: [`KubeOptions`], with what a destroy does with
//! stuck Applications and an apply with modules the stack no longer has.

use std::time::Duration;

use super::ownership::Adopt;

/// What to do with an Argo CD Application that is not gone when the time to wait for it runs
/// out: Argo CD deletes an Application that has its resources finalizer only after deleting
/// what it deployed, so when Argo CD is gone or broken, the Application stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum StuckApplications {
    /// Fail after [`KubeOptions::wait_timeout`], naming the Application and its finalizer (the
    /// default: nothing is left behind without the user knowing).
    #[default]
    Fail,
    /// After this long, say what the Application deployed (from its status), remove Argo CD's
    /// resources finalizer and delete the Application without cascading: what it deployed stays
    /// in place (a namespace the module owns still goes with the namespace). The orphaned
    /// Applications are listed in the [`DestroyReport`](super::DestroyReport).
    OrphanAfter(Duration),
}

/// What an apply does with modules the stack's state records but the stack no longer has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RemovedModules {
    /// Destroy their objects after every remaining module has applied, and drop their state
    /// entries (the default, as Terraform plans the removal of a module taken out of the code).
    #[default]
    Destroy,
    /// Leave their objects and state entries in place (orphan them on purpose).
    Orphan,
}

/// The Kubernetes engine's settings for a run, given with [`KubeEngine::new`](super::KubeEngine::new).
///
/// ```
/// use std::time::Duration;
/// use devops_stack_core::k8s::{Adopt, KubeOptions, StuckApplications};
/// let options = KubeOptions::default()
///     .max_in_flight(16)
///     .adopt(Adopt::module("legacy"))
///     .stuck_applications(StuckApplications::OrphanAfter(Duration::from_secs(60)));
/// assert_eq!(options.max_in_flight, 16);
/// ```
#[derive(Debug, Clone)]
pub struct KubeOptions {
    /// The server-side apply field manager (default `devops-stack`).
    pub field_manager: String,
    /// Take over fields another manager owns instead of reporting the conflict (default false).
    /// This is about fields of objects the module owns; taking over objects is [`Adopt`].
    pub force_conflicts: bool,
    /// How long to wait for objects to become ready (default 10 minutes). Also bounds a
    /// destroy's waits for deletions.
    pub wait_timeout: Duration,
    /// Whether to wait for readiness at all (default true). CRDs are waited for regardless,
    /// since the objects after them need them.
    pub wait: bool,
    /// The namespace of the stack's state and lock (default `devops-stack-system`).
    pub state_namespace: String,
    /// How many requests one module's apply, diff or destroy has in flight at once (default 32).
    pub max_in_flight: usize,
    /// Existing objects to take over explicitly (default none).
    pub adopt: Vec<Adopt>,
    /// What a destroy does with an Application Argo CD does not delete (default: fail).
    pub stuck_applications: StuckApplications,
    /// What an apply does with modules the state records and the stack no longer has.
    pub removed_modules: RemovedModules,
}

impl Default for KubeOptions {
    fn default() -> Self {
        KubeOptions {
            field_manager: "devops-stack".into(),
            force_conflicts: false,
            wait_timeout: Duration::from_secs(600),
            wait: true,
            state_namespace: "devops-stack-system".into(),
            max_in_flight: 32,
            adopt: Vec::new(),
            stuck_applications: StuckApplications::Fail,
            removed_modules: RemovedModules::Destroy,
        }
    }
}

impl KubeOptions {
    /// Takes over the existing objects `rule` covers (see [`Adopt`]).
    #[must_use]
    pub fn adopt(mut self, rule: Adopt) -> Self {
        self.adopt.push(rule);
        self
    }

    /// At most `n` requests in flight per module (at least 1).
    #[must_use]
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n.max(1);
        self
    }

    /// What a destroy does with an Application Argo CD does not delete.
    #[must_use]
    pub fn stuck_applications(mut self, policy: StuckApplications) -> Self {
        self.stuck_applications = policy;
        self
    }

    /// What an apply does with modules the state records and the stack no longer has.
    #[must_use]
    pub fn removed_modules(mut self, policy: RemovedModules) -> Self {
        self.removed_modules = policy;
        self
    }

    /// How long to wait for readiness and deletions.
    #[must_use]
    pub fn wait_timeout(mut self, timeout: Duration) -> Self {
        self.wait_timeout = timeout;
        self
    }

    /// Whether to wait for readiness at all.
    #[must_use]
    pub fn wait(mut self, wait: bool) -> Self {
        self.wait = wait;
        self
    }
}
