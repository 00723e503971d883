//! What a chart module is beyond the shared settings: the [`ChartSpec`] trait, and what its
//! steps hand back ([`Rendered`], [`WantedRole`]).

use std::future::Future;

use devops_stack_core::interfaces::{ClusterRef, RoleRequest, WorkloadIdentityRef};
use devops_stack_core::{Context, Needs, Phase, Resource, Validation};
use serde::Serialize;
use serde_json::Value;

use super::common::Common;
use super::env::Env;
use super::secrets::{GeneratedSecret, Secrets};
use super::values::ValueKind;
use crate::error::Result;

/// What a chart module renders: its output and the objects the apply engine applies.
#[derive(Debug)]
pub struct Rendered<O> {
    /// The module's typed output.
    pub output: O,
    /// The Kubernetes objects, in the order they are applied.
    pub objects: Vec<Value>,
}

/// A workload role a chart module asks for: the workload identity that makes it, and what for.
#[derive(Debug, Clone)]
pub struct WantedRole {
    pub(crate) identity: WorkloadIdentityRef,
    pub(crate) request: RoleRequest,
}

impl WantedRole {
    /// The role `request` describes, made by `identity`.
    pub fn new(identity: WorkloadIdentityRef, request: RoleRequest) -> Self {
        WantedRole { identity, request }
    }
}

/// What a chart module has beyond the settings every one shares ([`Common`]): its own
/// settings, inputs and checks, and how it renders its objects and output from its resolved
/// inputs. A [`Chart`](super::Chart) of a spec is a [`Module`](devops_stack_core::Module)
/// with the shared setters; a spec with a [`Sizing`](super::Sizing) also gets `replicas` and
/// `resources` ([`Sizable`](super::Sizable)).
///
/// The render is the same for plan and apply, so the offline plan shows exactly what apply
/// sends. Each step hook gets the module's shared settings beside the spec; only
/// [`render`](ChartSpec::render) has no default. See the [module documentation](super) for an
/// example.
pub trait ChartSpec: Send + Sync + 'static {
    /// The module's typed output.
    type Output: Serialize + Send + Sync + 'static;
    /// The component kind, shown in plans and graphs.
    const KIND: &'static str;
    /// The phase the module runs in (default [`Phase::Main`]).
    const PHASE: Phase = Phase::Main;

    /// Declares the inputs beyond the shared ones (the cluster, Argo CD, the ServiceMonitor
    /// CRDs).
    fn needs_more(&self, _n: &mut Needs) {}

    /// Typed checks of Helm value overrides: JSON pointers and the type the chart expects there.
    fn typed_values(&self) -> &'static [(&'static str, ValueKind)] {
        &[]
    }

    /// Checks beyond the shared ones, and declares capabilities.
    fn validate_more(&self, _common: &Common, _v: &mut Validation) {}

    /// Secrets of generated values the module keeps in the cluster (default: none); their
    /// values reach [`render`](ChartSpec::render) in its [`Secrets`].
    fn generated_secrets(&self, _common: &Common, _env: &Env) -> Vec<GeneratedSecret> {
        Vec::new()
    }

    /// The cloud roles the module's workloads need (default: none). Plan shows them, apply
    /// makes them before the objects (their annotations are in
    /// [`Env::role_annotations`] for [`render`](ChartSpec::render)), destroy deletes them
    /// after the objects.
    ///
    /// # Errors
    /// When an input cannot be read.
    fn workload_roles(&self, _common: &Common, _ctx: &Context) -> Result<Vec<WantedRole>> {
        Ok(Vec::new())
    }

    /// Checks what only the resolved inputs can say (a hostname inside a DNS zone), before any
    /// side effect of plan or apply (default: nothing).
    ///
    /// # Errors
    /// When the inputs do not fit the settings.
    fn check(&self, _common: &Common, _ctx: &Context, _env: &Env) -> Result<()> {
        Ok(())
    }

    /// Cloud resources the module makes outside the engine besides its roles (a DNS record),
    /// for the offline plan (default: none).
    ///
    /// # Errors
    /// When an input cannot be read.
    fn planned_cloud(&self, _common: &Common, _ctx: &Context, _env: &Env) -> Result<Vec<Resource>> {
        Ok(Vec::new())
    }

    /// Runs after the engine applied the objects and they are ready, and may complete the
    /// output (default: the output as rendered).
    fn after_apply(
        &self,
        _common: &Common,
        _ctx: &Context,
        _env: &Env,
        _client: &kube::Client,
        output: Self::Output,
    ) -> impl Future<Output = Result<Self::Output>> + Send {
        async move { Ok(output) }
    }

    /// Deletes, before the module's objects, the cloud resources it made outside the engine
    /// (a DNS record). Runs even when the run abandons the cluster's objects: what it deletes
    /// is outside the cluster (default: nothing).
    fn release(
        &self,
        _common: &Common,
        _ctx: &Context,
        _cluster: &ClusterRef,
    ) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    /// Runs before the engine deletes the module's objects (default: nothing).
    fn before_destroy(
        &self,
        _common: &Common,
        _ctx: &Context,
        _client: &kube::Client,
    ) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    /// Renders the output and the objects, usually [`Common::chart_objects`] of the values
    /// [`Common::values`] merges over the spec's defaults.
    ///
    /// # Errors
    /// When an input cannot be read.
    fn render(
        &self,
        common: &Common,
        ctx: &Context,
        env: &Env,
        secrets: &Secrets,
    ) -> Result<Rendered<Self::Output>>;
}
