//! What a module step sees: its inputs, the run's options, cancellation and progress reporting.

use std::sync::Arc;
use tokio::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::events::{Event, EventSink};
use crate::handle::{Handle, Input};
use crate::output::{ErasedOutput, Outputs};
use crate::run::{EngineRun, RunShared};
use crate::step::Step;

/// The context of one module step.
#[derive(Clone)]
pub struct Context {
    pub(crate) module: Arc<str>,
    pub(crate) stack: Arc<str>,
    pub(crate) step: Step,
    pub(crate) outputs: Outputs,
    pub(crate) declared: Arc<[usize]>,
    pub(crate) names: Arc<[Arc<str>]>,
    pub(crate) groups: Arc<[String]>,
    pub(crate) cancel: CancellationToken,
    pub(crate) events: EventSink,
    pub(crate) run: Arc<RunShared>,
    pub(crate) start: Instant,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("stack", &self.stack)
            .field("module", &self.module)
            .field("step", &self.step)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// The running module's id.
    pub fn module_id(&self) -> &str {
        &self.module
    }

    /// The stack's name (labels and state are keyed by it).
    pub fn stack_name(&self) -> &str {
        &self.stack
    }

    /// The identity groups that other modules of the stack name from this module's output
    /// (`handle.group(..)`, declared with [`Validation::uses_group`](crate::Validation::uses_group)),
    /// sorted and without duplicates: what an OIDC provider module creates.
    pub fn requested_groups(&self) -> &[String] {
        &self.groups
    }

    /// `first` (a provider's own group, such as its admin group), then the
    /// [requested groups](Context::requested_groups) other than it: the groups an OIDC
    /// provider module ensures.
    pub fn groups_with(&self, first: &str) -> Vec<String> {
        std::iter::once(first.to_owned())
            .chain(self.groups.iter().filter(|g| *g != first).cloned())
            .collect()
    }

    /// The step being run.
    pub fn step(&self) -> Step {
        self.step
    }

    /// Reads an input: a constant, or a projection of a declared dependency's output.
    ///
    /// # Errors
    /// [`Error::UndeclaredDependency`] when the input's module is not in this module's
    /// [`Module::needs`](crate::Module::needs); [`Error::OutputUnavailable`] when that module has
    /// produced no output (it failed, or does not exist during a destroy) or the projection failed.
    pub fn get<U: Clone + Send + Sync + 'static>(&self, input: &Input<U>) -> Result<U> {
        let output = match input.dependency() {
            None => None,
            Some(dep) => Some(self.slot(dep.index, &dep.module)?),
        };
        input
            .resolve(output.map(|o| &*o.value))
            .map_err(|reason| Error::OutputUnavailable {
                module: self.module.to_string(),
                dependency: input
                    .dependency()
                    .map_or_else(|| "a constant".into(), |d| d.module.to_string()),
                reason,
            })
    }

    /// The whole output behind a handle, shared.
    ///
    /// # Errors
    /// As [`Context::get`].
    pub fn output<T: Send + Sync + 'static>(&self, handle: &Handle<T>) -> Result<Arc<T>> {
        let slot = self.slot(handle.dep.index, &handle.dep.module)?;
        slot.value
            .clone()
            .downcast::<T>()
            .map_err(|_| Error::OutputUnavailable {
                module: self.module.to_string(),
                dependency: handle.dep.module.to_string(),
                reason: format!("it is not a {}", std::any::type_name::<T>()),
            })
    }

    fn slot(&self, index: usize, name: &str) -> Result<&ErasedOutput> {
        if self.declared.binary_search(&index).is_err()
            || self.names.get(index).map(|n| &**n) != Some(name)
        {
            return Err(Error::UndeclaredDependency {
                module: self.module.to_string(),
                dependency: name.to_owned(),
            });
        }
        match self.outputs[index].get() {
            Some(Some(o)) => Ok(o),
            Some(None) => Err(Error::OutputUnavailable {
                module: self.module.to_string(),
                dependency: name.to_owned(),
                reason: "its resources do not exist".into(),
            }),
            None => Err(Error::OutputUnavailable {
                module: self.module.to_string(),
                dependency: name.to_owned(),
                reason: "it has not finished".into(),
            }),
        }
    }

    /// The ids of the modules this module declared it reads, in stack order.
    pub fn dependencies(&self) -> Vec<String> {
        self.declared
            .iter()
            .filter_map(|&i| self.names.get(i).map(|n| n.to_string()))
            .collect()
    }

    /// The run's cancellation token; long waits should end when it fires.
    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Reports progress (shown by progress displays and logs).
    pub fn progress(&self, message: impl Into<String>) {
        let message = message.into();
        tracing::info!(module = %self.module, step = %self.step, "{message}");
        self.events.send(Event::Progress {
            module: self.module.to_string(),
            step: self.step,
            elapsed: self.start.elapsed(),
            message,
        });
    }

    /// The run's state of the engine `R` (the Kubernetes engine's is
    /// [`KubeRun`](crate::k8s::KubeRun)): the one the caller configured with
    /// [`RunOptions::engine`](crate::RunOptions::engine), or one with its defaults, started the
    /// first time a module asks and given the run's last word like the others.
    pub fn engine<R: EngineRun + Default>(&self) -> Arc<R> {
        self.run.engines.get_or_default::<R>()
    }

    /// The run's state of the engine `R` if the run has one (configured, or asked for by a
    /// module already).
    pub fn started_engine<R: EngineRun>(&self) -> Option<Arc<R>> {
        self.run.engines.get::<R>()
    }

    /// Whether the user said [`RunOptions::abandon_in_cluster`](crate::RunOptions::abandon_in_cluster):
    /// a destroy may abandon the objects of a cluster whose API cannot be reached.
    pub fn abandon_in_cluster(&self) -> bool {
        self.run.abandon_in_cluster
    }
}
