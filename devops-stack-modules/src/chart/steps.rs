//! The [`Module`] every [`Chart`] of a [`ChartSpec`] is: its steps, render → plan / apply /
//! destroy, with the spec's hooks around the engine's work.

use crate::fleet::Deployers;
use devops_stack_core::interfaces::{ClusterRef, RoleOwner};
use devops_stack_core::{
    Context, Module, ModuleResult, Needs, Phase, Planned, Resource, Validation,
};

use super::Chart;
use super::env::Env;
use super::secrets::Secrets;
use super::spec::ChartSpec;
use crate::error::{Error, Result};

impl<C: ChartSpec> Module for Chart<C> {
    type Output = C::Output;

    fn id(&self) -> &str {
        &self.common.id
    }

    fn kind(&self) -> &'static str {
        C::KIND
    }

    fn phase(&self) -> Phase {
        C::PHASE
    }

    fn needs(&self, n: &mut Needs) {
        self.common.needs(n);
        self.spec.needs_more(n);
    }

    fn validate(&self, v: &mut Validation) {
        self.common.validate(v, self.spec.typed_values());
        self.spec.validate_more(&self.common, v);
    }

    async fn plan(&self, ctx: &Context) -> ModuleResult<Planned<C::Output>> {
        self.plan_offline(ctx).await
    }

    async fn apply(&self, ctx: &Context) -> ModuleResult<C::Output> {
        let env = self.common.env(ctx)?;
        let cluster = env.cluster.clone();
        Ok(self
            .apply_with(ctx, env)
            .await
            .map_err(|e| e.reach(&*cluster))?)
    }

    async fn destroy(&self, ctx: &Context) -> ModuleResult<()> {
        let cluster = ctx.get(&self.common.cluster)?;
        Ok(self
            .destroy_on(ctx, &cluster)
            .await
            .map_err(|e| e.reach(&*cluster))?)
    }
}

impl<C: ChartSpec> Chart<C> {
    /// The offline plan: the module's roles, its rendered objects (secrets as placeholders)
    /// and its other cloud resources.
    async fn plan_offline(&self, ctx: &Context) -> ModuleResult<Planned<C::Output>> {
        let (common, spec) = (&self.common, &self.spec);
        let mut env = common.env(ctx)?;
        spec.check(common, ctx, &env)?;
        let owner = RoleOwner::of(ctx);
        let mut resources = Vec::new();
        for w in spec.workload_roles(common, ctx)? {
            resources.push(w.identity.planned_resource(&owner, &w.request));
            env.roles.insert(
                w.request.service_account.clone(),
                w.identity.planned_role(&owner, &w.request),
            );
        }
        let secrets = Secrets::placeholders(ctx.module_id(), &spec.generated_secrets(common, &env));
        let r = spec.render(common, ctx, &env, &secrets)?;
        resources.extend(
            r.objects
                .iter()
                .map(|o| Resource::kubernetes(crate::fleet::cluster_of(&env.cluster, o), o)),
        );
        resources.extend(spec.planned_cloud(common, ctx, &env)?);
        Ok(Planned::new(r.output).with_resources(resources))
    }

    /// Applies with the module's resolved inputs: checks them, makes the workload roles, loads
    /// or generates the secrets, renders, hands the objects to the engine, then runs the
    /// spec's `after_apply`.
    async fn apply_with(&self, ctx: &Context, mut env: Env) -> Result<C::Output> {
        let (common, spec) = (&self.common, &self.spec);
        spec.check(common, ctx, &env)?;
        let wanted = spec.workload_roles(common, ctx)?;
        let deployer = Deployers::for_module(ctx, &env.cluster).await?;
        let secrets =
            Secrets::load(deployer.client(), &spec.generated_secrets(common, &env)).await?;
        let owner = RoleOwner::of(ctx);
        for w in &wanted {
            let sa = &w.request.service_account;
            ctx.progress(format!(
                "ensuring the workload role of service account {sa}"
            ));
            let role = w
                .identity
                .ensure_role(&owner, &w.request)
                .await
                .map_err(|e| {
                    Error::cloud(format!("ensuring the role of service account {sa}"), e)
                })?;
            env.roles.insert(sa.clone(), role);
        }
        let r = spec.render(common, ctx, &env, &secrets)?;
        ctx.progress(format!("applying {} objects", r.objects.len()));
        deployer.apply(r.objects).await?;
        spec.after_apply(common, ctx, &env, deployer.client(), r.output)
            .await
    }

    /// Destroys on the module's cluster: what the module made outside the engine first (even
    /// when the run abandons the cluster's objects), then the spec's own step, then the engine
    /// deletes its inventory (Applications with their resources finalizer, so that what they
    /// deployed goes too), then its workload roles (cloud resources: deleted whether or not
    /// the cluster's objects were abandoned).
    async fn destroy_on(&self, ctx: &Context, cluster: &ClusterRef) -> Result<()> {
        let (common, spec) = (&self.common, &self.spec);
        let wanted = spec.workload_roles(common, ctx)?;
        let deployer = Deployers::for_module(ctx, cluster).await?;
        spec.release(common, ctx, cluster).await?;
        if deployer.abandoned().is_none() {
            spec.before_destroy(common, ctx, deployer.client()).await?;
        }
        deployer.destroy().await?;
        let owner = RoleOwner::of(ctx);
        for w in wanted {
            let sa = &w.request.service_account;
            w.identity.delete_role(&owner, sa).await.map_err(|e| {
                Error::cloud(format!("deleting the role of service account {sa}"), e)
            })?;
        }
        Ok(())
    }
}
