//! The typed settings of a run, and the small trait through which an engine (the Kubernetes
//! engine is one) takes part in it.
//!
//! The stack engine (graph, executor, plan and this module) knows nothing of Kubernetes: an
//! [`Engine`] the caller hands to [`RunOptions::engine`] is started with every run, its modules
//! reach its per-run state with [`Context::engine`](crate::Context::engine), and once every module
//! has run, the stack engine gives it the run's last word ([`EngineRun::end`]): the Kubernetes
//! engine destroys there the modules the stack no longer has and waits for the deletions still
//! finishing. An engine no caller configured starts with its defaults the first time a module
//! asks for it.

use std::any::Any;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use crate::error::{ConfigError, Error, Result};
use crate::events::{Event, EventSink};
use crate::handle::{Dependency, Handle, StackId};
use crate::step::Step;

/// An engine modules deploy with: its settings, given to the run with [`RunOptions::engine`].
/// Each run [starts](Engine::start) it afresh.
pub trait Engine: Any + Send + Sync {
    /// The engine's state for one run.
    fn start(&self) -> Arc<dyn EngineRun>;
}

/// An engine's state for one run: what its modules share, and its work at the run's end.
///
/// A type that is also `Default` can be asked for by modules whose caller configured no engine
/// of that kind ([`Context::engine`](crate::Context::engine)).
pub trait EngineRun: Any + Send + Sync {
    /// The engine's work once every module of an apply or a destroy succeeded: it returns the
    /// ids of the modules it removed (those the stack's state recorded and the stack no longer
    /// has).
    ///
    /// # Errors
    /// The engine's own, as [`Error`]s that keep their causes.
    fn end<'a>(&'a self, end: &'a RunEnd<'a>) -> BoxFuture<'a, Result<Vec<String>>>;
}

/// What an engine sees of the run at its end.
pub struct RunEnd<'a> {
    pub(crate) stack: &'a str,
    pub(crate) modules: &'a [Arc<str>],
    pub(crate) step: Step,
    pub(crate) cancel: &'a CancellationToken,
    pub(crate) events: &'a EventSink,
    pub(crate) start: tokio::time::Instant,
}

impl RunEnd<'_> {
    /// The stack's name.
    pub fn stack(&self) -> &str {
        self.stack
    }

    /// The ids of the stack's modules.
    pub fn modules(&self) -> impl Iterator<Item = &str> {
        self.modules.iter().map(|m| &**m)
    }

    /// [`Step::Apply`] or [`Step::Destroy`].
    pub fn step(&self) -> Step {
        self.step
    }

    /// The run's cancellation.
    pub fn cancellation(&self) -> &CancellationToken {
        self.cancel
    }

    /// Reports progress of work done for `module` (a removed module, for instance).
    pub fn progress(&self, module: &str, message: String) {
        tracing::info!(module, "{message}");
        self.events.send(Event::Progress {
            module: module.to_owned(),
            step: Step::Destroy,
            elapsed: self.start.elapsed(),
            message,
        });
    }
}

/// The engines of one run, started.
#[derive(Default)]
pub(crate) struct EngineRuns(Mutex<Vec<Arc<dyn EngineRun>>>);

impl EngineRuns {
    pub(crate) fn started(engines: &[Arc<dyn Engine>]) -> Self {
        EngineRuns(Mutex::new(engines.iter().map(|e| e.start()).collect()))
    }

    /// The run's state of the engine `R`, started with its defaults when no caller configured one.
    pub(crate) fn get_or_default<R: EngineRun + Default>(&self) -> Arc<R> {
        let mut runs = self.0.lock().expect("not poisoned");
        if let Some(r) = find::<R>(&runs) {
            return r;
        }
        let r = Arc::new(R::default());
        runs.push(r.clone());
        r
    }

    /// The run's state of the engine `R`, if one was started.
    pub(crate) fn get<R: EngineRun>(&self) -> Option<Arc<R>> {
        find(&self.0.lock().expect("not poisoned"))
    }

    pub(crate) fn all(&self) -> Vec<Arc<dyn EngineRun>> {
        self.0.lock().expect("not poisoned").clone()
    }
}

/// The started engine of type `R` among `runs`.
fn find<R: EngineRun>(runs: &[Arc<dyn EngineRun>]) -> Option<Arc<R>> {
    runs.iter().find_map(|run| {
        let any: Arc<dyn Any + Send + Sync> = run.clone();
        any.downcast::<R>().ok()
    })
}

/// What every module step of one run shares.
#[derive(Default)]
pub(crate) struct RunShared {
    pub(crate) engines: EngineRuns,
    pub(crate) abandon_in_cluster: bool,
}

/// How a run behaves: concurrency, timeouts, cancellation, events, the engines modules deploy
/// with and whether a destroy may abandon what is in an unreachable cluster. Every setting is a
/// typed setter; what contradicts the stack is refused before anything runs
/// ([`BuiltStack::check`](crate::BuiltStack::check)).
///
/// ```
/// use std::time::Duration;
/// use devops_stack_core::{RunOptions, Stack};
/// use devops_stack_core::clusters::Kind;
/// use devops_stack_core::k8s::{KubeEngine, KubeOptions};
/// let mut stack = Stack::new("demo");
/// let cluster = stack.add(Kind::new("dev"));
/// let (tx, _events) = tokio::sync::mpsc::unbounded_channel();
/// let options = RunOptions::new()
///     .concurrency(4)
///     .timeout(Duration::from_secs(600))
///     .module_timeout(&cluster, Duration::from_secs(1800))
///     .engine(KubeEngine::new(KubeOptions::default().max_in_flight(16)))
///     .events(tx);
/// let stack = stack.build()?;
/// stack.check(&options)?;
///
/// // a handle of another stack is refused before anything runs, naming the setting
/// let mut other = Stack::new("other");
/// let elsewhere = other.add(Kind::new("elsewhere"));
/// let wrong = RunOptions::new().module_timeout(&elsewhere, Duration::from_secs(60));
/// let err = stack.check(&wrong).unwrap_err();
/// assert!(err.to_string().contains("run.module_timeout"), "{err}");
/// # Ok::<_, devops_stack_core::Error>(())
/// ```
#[derive(Default, Clone)]
pub struct RunOptions {
    pub(crate) concurrency: Option<usize>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) timeouts: Vec<(Dependency, Duration)>,
    pub(crate) cancel: CancellationToken,
    pub(crate) events: EventSink,
    pub(crate) engines: Vec<Arc<dyn Engine>>,
    pub(crate) abandon_in_cluster: bool,
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("concurrency", &self.concurrency)
            .field("timeout", &self.timeout)
            .field(
                "module_timeouts",
                &self
                    .timeouts
                    .iter()
                    .map(|(d, t)| (&*d.module, t))
                    .collect::<Vec<_>>(),
            )
            .field("engines", &self.engines.len())
            .field("abandon_in_cluster", &self.abandon_in_cluster)
            .finish_non_exhaustive()
    }
}

impl RunOptions {
    /// Unbounded concurrency, no timeout, a fresh cancellation token, no events, every engine
    /// with its defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs at most `n` module steps at once (at least 1).
    #[must_use]
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = Some(n.max(1));
        self
    }

    /// The timeout of every module step that has no timeout of its own.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The timeout of the steps of the module behind `handle` (a handle of the stack that runs:
    /// one of another stack is refused before the run starts).
    #[must_use]
    pub fn module_timeout<T>(mut self, handle: &Handle<T>, timeout: Duration) -> Self {
        self.timeouts.retain(|(d, _)| d != &handle.dep);
        self.timeouts.push((handle.dep.clone(), timeout));
        self
    }

    /// Cancels the run when `token` fires: no new module starts and running ones are interrupted.
    #[must_use]
    pub fn cancel_token(mut self, token: CancellationToken) -> Self {
        self.cancel = token;
        self
    }

    /// The run's cancellation token.
    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Sends every [`Event`] of the run to `tx`.
    #[must_use]
    pub fn events(mut self, tx: UnboundedSender<Event>) -> Self {
        self.events = EventSink::to(tx);
        self
    }

    /// Runs the stack's modules with `engine`'s settings (for example
    /// [`KubeEngine`](crate::k8s::KubeEngine) with the Kubernetes engine's options and the
    /// stack's lock). One engine of each kind: a second replaces the first.
    #[must_use]
    pub fn engine<E: Engine>(mut self, engine: E) -> Self {
        let same = std::any::TypeId::of::<E>();
        self.engines.retain(|e| {
            let any: &dyn Any = &**e;
            any.type_id() != same
        });
        self.engines.push(Arc::new(engine));
        self
    }

    /// Said on purpose by the user, for a destroy of a cluster that is going away: when the
    /// cluster's API cannot be reached, the objects inside it are abandoned and the cloud
    /// resources are still removed. Without it, such a destroy stops and leaves everything in
    /// place, since deleting the cluster under objects that hold cloud resources (load
    /// balancers, volumes) would leave those behind. Refused for a stack with no cluster module.
    #[must_use]
    pub fn abandon_in_cluster(mut self) -> Self {
        self.abandon_in_cluster = true;
        self
    }

    /// Whether [`abandon_in_cluster`](RunOptions::abandon_in_cluster) was said.
    pub fn abandons_in_cluster(&self) -> bool {
        self.abandon_in_cluster
    }

    /// The timeout of the module at `index` of the stack.
    pub(crate) fn timeout_of(&self, index: usize) -> Option<Duration> {
        self.timeouts
            .iter()
            .find(|(d, _)| d.index == index)
            .map(|(_, t)| *t)
            .or(self.timeout)
    }

    /// The settings that contradict a stack `stack` with `has_cluster` (a module providing a
    /// cluster): a module timeout for a handle of another stack, abandoning with no cluster.
    pub(crate) fn contradictions(&self, stack: StackId, has_cluster: bool) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        for (d, _) in &self.timeouts {
            if d.stack != stack {
                errors.push(ConfigError::new(
                    Some(&d.module),
                    "run.module_timeout",
                    format!(
                        "is a handle of module `{}` of another stack: this stack would never use it",
                        d.module
                    ),
                    "pass the handle this stack's `add` returned for the module",
                ));
            }
        }
        if self.abandon_in_cluster && !has_cluster {
            errors.push(ConfigError::new(
                None,
                "run.abandon_in_cluster",
                "is set for a stack with no cluster module: there is no cluster going away whose objects could be abandoned",
                "leave `abandon_in_cluster` out, or destroy the stack that has the cluster module",
            ));
        }
        errors
    }

    pub(crate) fn shared(&self) -> Arc<RunShared> {
        Arc::new(RunShared {
            engines: EngineRuns::started(&self.engines),
            abandon_in_cluster: self.abandon_in_cluster,
        })
    }
}

/// `Error::Invalid` for run settings that contradict the stack.
pub(crate) fn refuse(errors: Vec<ConfigError>) -> Result<()> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::Invalid(errors))
    }
}
