//! The `Module` trait every component implements, and the type-erased adapter the stack keeps.

use std::future::Future;

use futures::future::BoxFuture;
use serde::Serialize;

use crate::context::Context;
use crate::error::BoxError;
use crate::handle::Needs;
use crate::output::{ErasedOutput, erase};
use crate::plan::Resource;
use crate::validate::Validation;

/// The result of a module step; each crate returns its own error type, boxed.
pub type ModuleResult<T> = Result<T, BoxError>;

pub use crate::step::{Phase, Step};

/// What a module's offline plan produces: the resources it would create and its output as far
/// as it is known (unknown parts are marked with [`unknown`](crate::plan::unknown)).
#[derive(Debug, Clone)]
pub struct Planned<O> {
    /// The output as far as it is known offline.
    pub output: O,
    /// What the module would create.
    pub resources: Vec<Resource>,
}

impl<O> Planned<O> {
    /// A plan with `output` and no resources yet.
    pub fn new(output: O) -> Self {
        Planned {
            output,
            resources: Vec::new(),
        }
    }

    /// Adds resources.
    #[must_use]
    pub fn with_resources(mut self, resources: impl IntoIterator<Item = Resource>) -> Self {
        self.resources.extend(resources);
        self
    }
}

/// A component of the stack.
///
/// A module has an id, declares what it needs (the handles and inputs it holds) and implements
/// four async steps. Its output is typed; other modules receive it through the
/// [`Handle`](crate::Handle) that [`Stack::add`](crate::Stack::add) returns.
///
/// ```
/// use devops_stack_core::{Context, Module, ModuleResult, Planned, Resource};
///
/// /// Says hello; its output is the greeting.
/// struct Hello { id: String }
///
/// impl Module for Hello {
///     type Output = String;
///     fn id(&self) -> &str { &self.id }
///     fn kind(&self) -> &'static str { "hello" }
///     async fn plan(&self, _ctx: &Context) -> ModuleResult<Planned<String>> {
///         Ok(Planned::new(format!("hello from {}", self.id)))
///     }
///     async fn apply(&self, _ctx: &Context) -> ModuleResult<String> {
///         Ok(format!("hello from {}", self.id))
///     }
///     async fn destroy(&self, _ctx: &Context) -> ModuleResult<()> { Ok(()) }
/// }
/// ```
pub trait Module: Send + Sync + 'static {
    /// The typed output other modules receive. `Serialize` is used for plans, reports and state;
    /// secrets in it must be [`Secret`](crate::Secret)s so that they serialize redacted.
    type Output: Serialize + Send + Sync + 'static;

    /// The module's id, unique in its stack and a DNS-1123 label (it names labels and state).
    fn id(&self) -> &str;

    /// The component kind, shown in plans and graphs (`argocd`, `traefik`).
    fn kind(&self) -> &'static str;

    /// Declares the handles and inputs this module holds. Reading an input that is not declared
    /// here fails with [`Error::UndeclaredDependency`](crate::Error::UndeclaredDependency).
    fn needs(&self, _needs: &mut Needs) {}

    /// When this module runs relative to the others.
    fn phase(&self) -> Phase {
        Phase::Main
    }

    /// Checks the configuration and declares capabilities, before anything runs.
    fn validate(&self, _v: &mut Validation) {}

    /// Renders offline, without network access, what the module would create.
    fn plan(
        &self,
        ctx: &Context,
    ) -> impl Future<Output = ModuleResult<Planned<Self::Output>>> + Send;

    /// Creates or updates what the module manages and returns its output. Must be idempotent: a
    /// second apply with the same inputs changes nothing, and an apply that died half-way can be
    /// run again.
    fn apply(&self, ctx: &Context) -> impl Future<Output = ModuleResult<Self::Output>> + Send;

    /// Looks up the live output without changing anything, before a destroy; `None` when the
    /// module's resources do not exist (then the modules that depend on it are not destroyed
    /// either: they went with it). The default is the offline plan's output, right for modules
    /// whose output follows from their configuration alone.
    fn read(
        &self,
        ctx: &Context,
    ) -> impl Future<Output = ModuleResult<Option<Self::Output>>> + Send {
        async move { Ok(Some(self.plan(ctx).await?.output)) }
    }

    /// Removes what the module created. Must be safe to run again after a partial destroy.
    fn destroy(&self, ctx: &Context) -> impl Future<Output = ModuleResult<()>> + Send;

    /// Checks, before any module of the stack is applied, what only the cloud or the cluster
    /// can say, and creates nothing (a DNS zone module looks its hosted zone up). Inputs cannot
    /// be read here. [`Stack::apply`](crate::BuiltStack::apply) runs every module's preflight
    /// at once and stops before the first apply when one fails. The default checks nothing.
    fn preflight(&self, _ctx: &Context) -> impl Future<Output = ModuleResult<()>> + Send {
        async { Ok(()) }
    }
}

pub(crate) struct ErasedPlanned {
    pub(crate) output: ErasedOutput,
    pub(crate) resources: Vec<Resource>,
}

/// The one type-erased adapter through which the stack keeps modules as trait objects.
pub(crate) trait ErasedModule: Send + Sync {
    fn id(&self) -> &str;
    fn kind(&self) -> &'static str;
    fn needs(&self) -> Vec<crate::handle::Dependency>;
    fn phase(&self) -> Phase;
    fn validate(&self, v: &mut Validation);
    fn plan<'a>(&'a self, ctx: &'a Context) -> BoxFuture<'a, ModuleResult<ErasedPlanned>>;
    fn apply<'a>(&'a self, ctx: &'a Context) -> BoxFuture<'a, ModuleResult<Option<ErasedOutput>>>;
    fn read<'a>(&'a self, ctx: &'a Context) -> BoxFuture<'a, ModuleResult<Option<ErasedOutput>>>;
    fn preflight<'a>(&'a self, ctx: &'a Context) -> BoxFuture<'a, ModuleResult<()>>;
    fn destroy<'a>(&'a self, ctx: &'a Context)
    -> BoxFuture<'a, ModuleResult<Option<ErasedOutput>>>;
}

impl<M: Module> ErasedModule for M {
    fn id(&self) -> &str {
        Module::id(self)
    }
    fn kind(&self) -> &'static str {
        Module::kind(self)
    }
    fn needs(&self) -> Vec<crate::handle::Dependency> {
        let mut n = Needs::default();
        Module::needs(self, &mut n);
        n.0
    }
    fn phase(&self) -> Phase {
        Module::phase(self)
    }
    fn validate(&self, v: &mut Validation) {
        Module::validate(self, v)
    }
    fn plan<'a>(&'a self, ctx: &'a Context) -> BoxFuture<'a, ModuleResult<ErasedPlanned>> {
        Box::pin(async move {
            let p = Module::plan(self, ctx).await?;
            Ok(ErasedPlanned {
                output: erase(p.output),
                resources: p.resources,
            })
        })
    }
    fn apply<'a>(&'a self, ctx: &'a Context) -> BoxFuture<'a, ModuleResult<Option<ErasedOutput>>> {
        Box::pin(async move { Ok(Some(erase(Module::apply(self, ctx).await?))) })
    }
    fn read<'a>(&'a self, ctx: &'a Context) -> BoxFuture<'a, ModuleResult<Option<ErasedOutput>>> {
        Box::pin(async move { Ok(Module::read(self, ctx).await?.map(erase)) })
    }
    fn preflight<'a>(&'a self, ctx: &'a Context) -> BoxFuture<'a, ModuleResult<()>> {
        Box::pin(Module::preflight(self, ctx))
    }
    fn destroy<'a>(
        &'a self,
        ctx: &'a Context,
    ) -> BoxFuture<'a, ModuleResult<Option<ErasedOutput>>> {
        Box::pin(async move {
            Module::destroy(self, ctx).await?;
            Ok(None)
        })
    }
}
