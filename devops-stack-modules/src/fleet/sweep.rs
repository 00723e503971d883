//! Spokes taken out of the fleet's definition: their registration's cluster Secret is still on
//! the hub, and with it the way to reach them. Each such spoke is removed in order: its cluster
//! Secret loses the labels generators select on (so no ApplicationSet re-creates its
//! Applications); its Applications on the hub (Argo CD, still registered with the spoke,
//! deletes what they deployed), its modules' objects on the spoke (with the registration's
//! credentials), the registration's own objects on the spoke (the hub's token) last, then its
//! cluster Secret. Each module's state entry goes with its objects, so the engine's
//! removed-modules pass finds nothing left of it. Spokes registered with other than a bearer
//! token (EKS IAM) are left to that pass, which removes their hub-side objects.

use std::collections::BTreeSet;

use devops_stack_core::interfaces::{ArgoCdTarget, Cluster, ClusterRef};
use devops_stack_core::k8s::{Deployer, KubeRun, MODULE_LABEL, STACK_LABEL, read_state};
use devops_stack_core::{BoxError, Context, Input, Module, ModuleResult, Needs, Planned};
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Secret as KubeSecret;
use kube::api::{Api, ListParams};

use super::spoke::{ClusterSecret, SECRET_TYPE_LABEL, unselect};
use crate::error::{Error, Result};

/// Removes the spokes the definition no longer has; added by [`Fleet`](super::Fleet).
pub(crate) struct Sweep {
    pub(crate) hub: Input<ClusterRef>,
    pub(crate) argocd: Input<ArgoCdTarget>,
    /// The registration module ids of the definition's spokes.
    pub(crate) registrations: BTreeSet<String>,
}

/// A spoke known only from its cluster Secret on the hub.
#[derive(Debug, Clone)]
struct Registered {
    name: String,
    server: String,
    token: String,
    ca: Option<String>,
}

impl Cluster for Registered {
    fn name(&self) -> &str {
        &self.name
    }
    fn base_domain(&self) -> &str {
        ""
    }
    fn server(&self) -> Option<String> {
        Some(self.server.clone())
    }
    fn client(&self) -> BoxFuture<'_, std::result::Result<kube::Client, BoxError>> {
        Box::pin(async move {
            let mut kubeconfig = serde_json::json!({
                "apiVersion": "v1", "kind": "Config", "current-context": "spoke",
                "clusters": [{"name": "spoke", "cluster": {"server": self.server}}],
                "users": [{"name": "hub", "user": {"token": self.token}}],
                "contexts": [{"name": "spoke", "context": {"cluster": "spoke", "user": "hub"}}],
            });
            if let Some(ca) = &self.ca {
                kubeconfig["clusters"][0]["cluster"]["certificate-authority-data"] =
                    ca.clone().into();
            }
            let kubeconfig: kube::config::Kubeconfig = serde_json::from_value(kubeconfig)?;
            let config =
                kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
            Ok(kube::Client::try_from(config)?)
        })
    }
}

/// Where the sweep deletes: the hub (in the run), or a spoke that left (outside it).
enum On<'a> {
    Hub(&'a ClusterRef),
    Spoke { name: String, client: kube::Client },
}

impl On<'_> {
    fn name(&self) -> &str {
        match self {
            On::Hub(c) => c.name(),
            On::Spoke { name, .. } => name,
        }
    }

    async fn deployer(&self, ctx: &Context, module: &str) -> Result<Deployer> {
        Ok(match self {
            On::Hub(c) => Deployer::for_named_module(ctx, c, module).await?,
            On::Spoke { client, .. } => Deployer::new(
                client.clone(),
                ctx.stack_name(),
                module,
                ctx.engine::<KubeRun>().options().clone(),
            )
            .cancellation(ctx.cancellation().clone()),
        })
    }
}

impl Sweep {
    /// The spokes whose registration is on the hub and not in the definition.
    async fn retired(
        &self,
        ctx: &Context,
        hub: &kube::Client,
    ) -> Result<Vec<(String, Option<Registered>)>> {
        let namespace = ctx.get(&self.argocd)?.namespace;
        let api: Api<KubeSecret> = Api::namespaced(hub.clone(), &namespace);
        let selector = format!(
            "{SECRET_TYPE_LABEL}=cluster,{STACK_LABEL}={}",
            ctx.stack_name()
        );
        let secrets = api
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| Error::kube(format!("listing the cluster Secrets of {namespace}"), e))?;
        let mut out = Vec::new();
        for s in secrets.items {
            let Some(module) = s
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(MODULE_LABEL))
                .cloned()
            else {
                continue;
            };
            if self.registrations.contains(&module) {
                continue;
            }
            // first, no generator selects the spoke any more
            ctx.progress(format!(
                "spoke of `{module}` left the fleet: no generator selects it any more"
            ));
            unselect(&api, &s).await?;
            let ClusterSecret {
                name,
                server,
                config,
            } = ClusterSecret::of(&s);
            let reach = match (name, server, config["bearerToken"].as_str()) {
                (Some(name), Some(server), Some(token)) => Some(Registered {
                    name,
                    server,
                    token: token.to_owned(),
                    ca: config["tlsClientConfig"]["caData"]
                        .as_str()
                        .map(str::to_owned),
                }),
                _ => None,
            };
            out.push((module, reach));
        }
        Ok(out)
    }

    /// Destroys, on `on`, the inventories the state there records for the modules of
    /// `prefix` (all but `last` first, then `last`), each as its own module.
    async fn destroy_modules(
        &self,
        ctx: &Context,
        on: &On<'_>,
        prefix: &str,
        last: &str,
        keep_last: bool,
    ) -> Result<()> {
        let probe = on.deployer(ctx, last).await?;
        let engine = ctx.engine::<KubeRun>();
        let state = read_state(probe.client(), ctx.stack_name(), engine.options()).await?;
        let mut ids: Vec<&String> = state
            .iter()
            .map(|(id, _)| id)
            .filter(|id| id.starts_with(prefix) && id.as_str() != last)
            .collect();
        // a module before what it needed: fewest dependents first
        ids.sort_by_key(|id| {
            state
                .iter()
                .filter(|(_, s)| s.needs.iter().any(|n| n == *id))
                .count()
        });
        for id in ids {
            ctx.progress(format!(
                "removing `{id}` from `{}`: its spoke left the fleet",
                on.name()
            ));
            on.deployer(ctx, id).await?.destroy().await?;
        }
        if !keep_last && state.iter().any(|(id, _)| id == last) {
            // the hub's own token: forgotten first (the state write needs its rights), then its
            // ClusterRoleBinding deleted, the one request it can still make, which takes the
            // ServiceAccount, its token and the ClusterRole with it (they are owned by it)
            let token = on.deployer(ctx, last).await?;
            token.forget().await?;
            let client = token.client().clone();
            let name = super::token::binding_name(ctx.stack_name());
            let bindings: Api<k8s_openapi::api::rbac::v1::ClusterRoleBinding> = Api::all(client);
            match bindings.delete(&name, &Default::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => {
                    return Err(Error::kube(
                        format!("deleting ClusterRoleBinding {name}"),
                        e,
                    ));
                }
            }
        }
        Ok(())
    }

    async fn sweep(&self, ctx: &Context) -> Result<Vec<String>> {
        let hub = ctx.get(&self.hub)?;
        let client = hub
            .client()
            .await
            .map_err(|e| Error::cloud(format!("connecting to the hub `{}`", hub.name()), e))?;
        let mut removed = Vec::new();
        for (registration, reach) in self.retired(ctx, &client).await? {
            let Some(spoke) = reach else { continue };
            let prefix = registration.trim_end_matches("spoke").to_owned();
            ctx.progress(format!(
                "spoke `{}` left the fleet: removing it",
                spoke.name
            ));
            // 1. its Applications on the hub: Argo CD can still reach the spoke
            let on_hub = On::Hub(&hub);
            self.destroy_modules(ctx, &on_hub, &prefix, &registration, true)
                .await?;
            // 2. its modules' objects on the spoke, the hub's token last; outside the run's
            // engine, which no longer knows that cluster
            let on_spoke = On::Spoke {
                name: spoke.name.clone(),
                client: spoke.client().await.map_err(|e| {
                    Error::cloud(format!("connecting to spoke `{}`", spoke.name), e)
                })?,
            };
            self.destroy_modules(ctx, &on_spoke, &prefix, &registration, false)
                .await?;
            // 3. its registration on the hub
            Deployer::for_named_module(ctx, &hub, &registration)
                .await?
                .destroy()
                .await?;
            removed.push(spoke.name);
        }
        Ok(removed)
    }
}

impl Module for Sweep {
    type Output = Vec<String>;

    fn id(&self) -> &str {
        "fleet-removed-spokes"
    }

    fn kind(&self) -> &'static str {
        "fleet"
    }

    fn needs(&self, n: &mut Needs) {
        n.add(&self.hub).add(&self.argocd);
    }

    async fn plan(&self, _ctx: &Context) -> ModuleResult<Planned<Vec<String>>> {
        Ok(Planned::new(Vec::new()))
    }

    async fn apply(&self, ctx: &Context) -> ModuleResult<Vec<String>> {
        Ok(self.sweep(ctx).await?)
    }

    async fn destroy(&self, _ctx: &Context) -> ModuleResult<()> {
        Ok(())
    }
}
