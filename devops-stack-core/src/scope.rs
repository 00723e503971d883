//! A module added under a [`Scope`](crate::Scope): its id prefixed with the scope's name.

use crate::context::Context;
use crate::handle::Needs;
use crate::module::{Module, ModuleResult, Phase, Planned};
use crate::validate::Validation;

/// A module under a scope: its id prefixed, everything else its own.
pub(crate) struct Scoped<M> {
    pub(crate) id: String,
    pub(crate) inner: M,
}

impl<M: Module> Module for Scoped<M> {
    type Output = M::Output;

    fn id(&self) -> &str {
        &self.id
    }

    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn needs(&self, needs: &mut Needs) {
        self.inner.needs(needs);
    }

    fn phase(&self) -> Phase {
        self.inner.phase()
    }

    fn validate(&self, v: &mut Validation) {
        self.inner.validate(v);
    }

    async fn plan(&self, ctx: &Context) -> ModuleResult<Planned<Self::Output>> {
        self.inner.plan(ctx).await
    }

    async fn apply(&self, ctx: &Context) -> ModuleResult<Self::Output> {
        self.inner.apply(ctx).await
    }

    async fn read(&self, ctx: &Context) -> ModuleResult<Option<Self::Output>> {
        self.inner.read(ctx).await
    }

    async fn destroy(&self, ctx: &Context) -> ModuleResult<()> {
        self.inner.destroy(ctx).await
    }

    async fn preflight(&self, ctx: &Context) -> ModuleResult<()> {
        self.inner.preflight(ctx).await
    }
}
