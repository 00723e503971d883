//! A spoke's registration: Argo CD's cluster Secret in the hub's Argo CD namespace, with the
//! spoke's typed metadata and the credentials its [`SpokeAuth`] makes on the spoke.

use std::collections::BTreeMap;
use std::time::Duration;

use devops_stack_core::interfaces::{
    ArgoCdTarget, Cluster, ClusterRef, Hostnames, KubeconfigSource, LoadBalancerScheme,
    SpokeAuthRef,
};
use devops_stack_core::k8s::{Deployer, MODULE_LABEL, STACK_LABEL, ownership_labels};
use devops_stack_core::plan::unknown;
use devops_stack_core::{
    BoxError, Capability, Context, Input, Interface, Module, ModuleResult, Needs, Planned,
    Resource, Validation,
};
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Secret as KubeSecret;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde::Serialize;
use serde_json::{Value, json};

use crate::error::{Error, Result};

/// The label Argo CD finds its cluster Secrets by.
pub const SECRET_TYPE_LABEL: &str = "argocd.argoproj.io/secret-type";
/// The label naming a spoke's rollout wave on its cluster Secret.
pub const WAVE_LABEL: &str = "devops-stack.io/wave";
/// The prefix of the annotations that carry a spoke's values.
pub const VALUE_PREFIX: &str = "values.devops-stack.io/";

/// A spoke as the modules deployed to it see it: a cluster whose Argo CD is the hub's.
/// [`argocd_server`](Cluster::argocd_server) is the spoke's API server as the hub's Argo CD
/// reaches it; Applications go to [`hub`](Cluster::hub), other objects to the spoke itself.
#[derive(Debug, Clone, Serialize)]
pub struct Spoke {
    /// The spoke's name (Argo CD's cluster name).
    pub name: String,
    /// Its API server, as registered.
    pub server: String,
    /// Its rollout wave, if the fleet has waves.
    pub wave: Option<String>,
    /// The labels of its cluster Secret (what generators select on).
    pub labels: BTreeMap<String, String>,
    /// Its values, as the annotations of its cluster Secret carry them.
    pub values: BTreeMap<String, String>,
    /// How the hub authenticates.
    pub auth: String,
    #[serde(skip)]
    cluster: ClusterRef,
    #[serde(skip)]
    hub: ClusterRef,
}

/// The spoke's own cluster, with Argo CD's view of it: the same cluster to the engine (its
/// name, client and hostnames are the cluster's), deployed to by the hub's Argo CD.
impl Cluster for Spoke {
    fn name(&self) -> &str {
        self.cluster.name()
    }
    fn base_domain(&self) -> &str {
        self.cluster.base_domain()
    }
    fn hostnames(&self) -> Hostnames {
        self.cluster.hostnames()
    }
    fn oidc_issuer_url(&self) -> Option<&str> {
        self.cluster.oidc_issuer_url()
    }
    fn argocd_server(&self) -> &str {
        &self.server
    }
    fn load_balancer_annotations(&self, scheme: LoadBalancerScheme) -> BTreeMap<String, String> {
        self.cluster.load_balancer_annotations(scheme)
    }
    fn server(&self) -> Option<String> {
        self.cluster.server()
    }
    fn kubeconfig(&self) -> Option<KubeconfigSource> {
        self.cluster.kubeconfig()
    }
    fn hub(&self) -> Option<ClusterRef> {
        Some(self.hub.clone())
    }
    fn client(&self) -> BoxFuture<'_, std::result::Result<kube::Client, BoxError>> {
        self.cluster.client()
    }
}

/// Registers one spoke with the hub's Argo CD; added by [`Fleet`](super::Fleet).
#[derive(Debug)]
pub(crate) struct Registration {
    pub(crate) name: String,
    pub(crate) hub: Input<ClusterRef>,
    pub(crate) argocd: Input<ArgoCdTarget>,
    pub(crate) spoke: Input<ClusterRef>,
    pub(crate) auth: SpokeAuthRef,
    pub(crate) server: Option<String>,
    pub(crate) wave: Option<String>,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) values: BTreeMap<String, String>,
    pub(crate) wait: Duration,
}

impl Registration {
    fn output(&self, ctx: &Context, server: String) -> Result<Spoke> {
        Ok(Spoke {
            name: self.name.clone(),
            server,
            wave: self.wave.clone(),
            labels: self.labels.clone(),
            values: self.values.clone(),
            auth: self.auth.describe(),
            cluster: ctx.get(&self.spoke)?,
            hub: ctx.get(&self.hub)?,
        })
    }

    /// The server Argo CD reaches the spoke at: as given, else as the spoke's client tells.
    fn server(&self, spoke: &ClusterRef) -> Option<String> {
        self.server.clone().or_else(|| spoke.server())
    }

    /// The cluster Secret, with `config` (redacted in plans).
    fn secret(&self, ctx: &Context, server: &str, config: Value) -> Value {
        let mut labels = ownership_labels(ctx.stack_name(), ctx.module_id());
        labels.insert(SECRET_TYPE_LABEL.into(), "cluster".into());
        labels.extend(self.labels.clone());
        if let Some(w) = &self.wave {
            labels.insert(WAVE_LABEL.into(), w.clone());
        }
        let annotations: BTreeMap<String, String> = self
            .values
            .iter()
            .map(|(k, v)| (format!("{VALUE_PREFIX}{k}"), v.clone()))
            .collect();
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": secret_name(&self.name),
                "namespace": ctx.get(&self.argocd).map(|a| a.namespace).unwrap_or_default(),
                "labels": labels,
                "annotations": annotations,
            },
            "stringData": {
                "name": self.name,
                "server": server,
                "config": match config {
                    Value::String(s) => s,
                    other => other.to_string(),
                },
            },
        })
    }

    /// Waits until no Application of the hub deploys to the spoke any more (the ApplicationSets
    /// that selected it have deleted theirs), within the registration's wait.
    async fn await_no_applications(&self, hub: &kube::Client, server: &str) -> Result<()> {
        let api = super::applications(hub.clone(), None);
        let deadline = tokio::time::Instant::now() + self.wait;
        loop {
            let left: Vec<String> = api
                .list(&ListParams::default())
                .await
                .map_err(|e| Error::kube("listing the hub's Applications", e))?
                .items
                .into_iter()
                .filter(|a| {
                    let d = &a.data["spec"]["destination"];
                    d["server"] == server || d["name"] == self.name.as_str()
                })
                .map(|a| {
                    format!(
                        "Application {}/{}",
                        a.metadata.namespace.unwrap_or_default(),
                        a.metadata.name.unwrap_or_default()
                    )
                })
                .collect();
            if left.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::NotRemoved {
                    what: format!("unregistering spoke `{}`", self.name),
                    left,
                    fix: "delete the ApplicationSets or Applications that still deploy to it (its registration is kept until they are gone), then destroy again".into(),
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

impl Registration {
    /// Refuses, before anything is made, a server the hub's Argo CD knows under another cluster
    /// Secret (another spoke of this fleet whose server was not declared, or another tool's).
    async fn refuse_registered_elsewhere(
        &self,
        ctx: &Context,
        hub: &ClusterRef,
        server: &str,
    ) -> Result<()> {
        let namespace = ctx.get(&self.argocd)?.namespace;
        let client = hub
            .client()
            .await
            .map_err(|e| Error::cloud(format!("connecting to the hub `{}`", hub.name()), e))?;
        let api: Api<KubeSecret> = Api::namespaced(client, &namespace);
        let clusters = api
            .list(&ListParams::default().labels(&format!("{SECRET_TYPE_LABEL}=cluster")))
            .await
            .map_err(|e| Error::kube(format!("listing the cluster Secrets of {namespace}"), e))?;
        let ours = secret_name(&self.name);
        for secret in clusters.items {
            let name = secret.metadata.name.clone().unwrap_or_default();
            let registered = ClusterSecret::of(&secret).server;
            if name != ours && registered.as_deref() == Some(server) {
                return Err(Error::input(
                    format!("fleet.spokes.{}.server", self.name),
                    format!(
                        "the hub's Argo CD already has the cluster at {server}, registered by Secret {namespace}/{name}"
                    ),
                    "register each cluster once: remove the other registration, or give this spoke the server of its own cluster",
                ));
            }
        }
        Ok(())
    }
}

/// What an Argo CD cluster Secret says (its `name`, `server` and `config` keys), as
/// [`Registration`] writes them and the fleet reads them back.
pub(crate) struct ClusterSecret {
    pub(crate) name: Option<String>,
    pub(crate) server: Option<String>,
    /// `Null` when it has none, or none that is JSON.
    pub(crate) config: Value,
}

impl ClusterSecret {
    pub(crate) fn of(secret: &KubeSecret) -> Self {
        let text = |k: &str| {
            secret
                .data
                .as_ref()
                .and_then(|d| d.get(k))
                .map(|v| String::from_utf8_lossy(&v.0).into_owned())
        };
        ClusterSecret {
            name: text("name"),
            server: text("server"),
            config: text("config")
                .and_then(|c| serde_json::from_str(&c).ok())
                .unwrap_or_default(),
        }
    }
}

/// Drops the labels of a cluster Secret that generators select on (all but its ownership and
/// Argo CD's type), so that no ApplicationSet makes Applications for its cluster any more. No
/// request when there are none.
pub(crate) async fn unselect(api: &Api<KubeSecret>, secret: &KubeSecret) -> Result<()> {
    let selectable: serde_json::Map<String, Value> = secret
        .metadata
        .labels
        .iter()
        .flatten()
        .filter(|(k, _)| ![STACK_LABEL, MODULE_LABEL, SECRET_TYPE_LABEL].contains(&k.as_str()))
        .map(|(k, _)| (k.clone(), Value::Null))
        .collect();
    if selectable.is_empty() {
        return Ok(());
    }
    let name = secret.metadata.name.clone().unwrap_or_default();
    let patch = json!({"metadata": {"labels": selectable}});
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| Error::kube(format!("unlabelling the cluster Secret {name}"), e))?;
    Ok(())
}

/// The name of a spoke's cluster Secret.
pub(crate) fn secret_name(spoke: &str) -> String {
    format!("cluster-{spoke}")
}

impl Module for Registration {
    type Output = Spoke;

    fn id(&self) -> &str {
        "spoke"
    }

    fn kind(&self) -> &'static str {
        "spoke"
    }

    fn needs(&self, n: &mut Needs) {
        n.add(&self.hub).add(&self.argocd).add(&self.spoke);
        self.auth.needs(n);
    }

    fn validate(&self, v: &mut Validation) {
        v.provides(Capability::Interface(Interface::Cluster));
    }

    async fn plan(&self, ctx: &Context) -> ModuleResult<Planned<Spoke>> {
        let spoke = ctx.get(&self.spoke)?;
        let hub = ctx.get(&self.hub)?;
        let server = self
            .server(&spoke)
            .unwrap_or_else(|| unknown(ctx.module_id(), "server"));
        let secret = self.secret(
            ctx,
            &server,
            // the credentials are made on the spoke by the apply; a diff takes them as live
            json!(unknown(ctx.module_id(), "credentials")),
        );
        let mut resources = vec![Resource::kubernetes(hub.name(), &secret)];
        resources.extend(self.auth.planned_resources(ctx, &spoke));
        Ok(Planned::new(self.output(ctx, server)?).with_resources(resources))
    }

    async fn apply(&self, ctx: &Context) -> ModuleResult<Spoke> {
        let spoke = ctx.get(&self.spoke)?;
        let hub = ctx.get(&self.hub)?;
        let server = self.server(&spoke).ok_or_else(|| {
            Error::input(
                "server",
                format!("the API server of spoke `{}` is not known", self.name),
                "give it with `SpokeSpec::server`",
            )
        })?;
        self.refuse_registered_elsewhere(ctx, &hub, &server).await?;
        ctx.progress(format!(
            "making the hub's credentials on spoke `{}`",
            self.name
        ));
        let credentials =
            self.auth.credentials(ctx, &spoke).await.map_err(|e| {
                Error::cloud(format!("making credentials on spoke `{}`", self.name), e)
            })?;
        let secret = self.secret(ctx, &server, credentials.argocd_config());
        Deployer::for_module(ctx, &hub)
            .await?
            .apply(vec![secret])
            .await?;
        Ok(self.output(ctx, server)?)
    }

    async fn read(&self, ctx: &Context) -> ModuleResult<Option<Spoke>> {
        let spoke = ctx.get(&self.spoke)?;
        let server = self
            .server(&spoke)
            .unwrap_or_else(|| unknown(ctx.module_id(), "server"));
        Ok(Some(self.output(ctx, server)?))
    }

    /// Unregisters in order: the Secret loses its fleet labels (no generator selects the
    /// spoke any more); the Applications that deploy to it are awaited until gone (Argo CD,
    /// still able to reach the spoke, deletes what they deployed); then the Secret goes, and
    /// what the authentication made on the spoke.
    async fn destroy(&self, ctx: &Context) -> ModuleResult<()> {
        let spoke = ctx.get(&self.spoke)?;
        let hub = ctx.get(&self.hub)?;
        let deployer = Deployer::for_module(ctx, &hub).await?;
        if deployer.abandoned().is_none()
            && let Some(server) = self.server(&spoke)
        {
            let namespace = ctx.get(&self.argocd)?.namespace;
            let secrets: Api<KubeSecret> = Api::namespaced(deployer.client().clone(), &namespace);
            let name = secret_name(&self.name);
            let live = secrets
                .get_opt(&name)
                .await
                .map_err(|e| Error::kube(format!("reading Secret {namespace}/{name}"), e))?;
            if let Some(live) = live {
                ctx.progress(format!(
                    "unregistering spoke `{}`: no generator selects it any more",
                    self.name
                ));
                unselect(&secrets, &live).await?;
                ctx.progress(format!(
                    "unregistering spoke `{}`: waiting for the Applications that deploy to it",
                    self.name
                ));
                self.await_no_applications(deployer.client(), &server)
                    .await?;
            }
        }
        deployer.destroy().await?;
        self.auth.revoke(ctx, &spoke).await.map_err(|e| {
            Error::cloud(format!("revoking the hub's access to `{}`", self.name), e)
        })?;
        Ok(())
    }
}
