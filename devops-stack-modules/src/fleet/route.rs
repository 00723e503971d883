//! Where a module's objects go when its cluster is a spoke: its Argo CD objects
//! (Applications, ApplicationSets, AppProjects) to the hub, whose Argo CD deploys them to the
//! spoke; the rest (its namespace, generated Secrets) to the spoke itself. Each side keeps its
//! own inventory, in the stack's state on that cluster.

use devops_stack_core::Context;
use devops_stack_core::interfaces::ClusterRef;
use devops_stack_core::k8s::{ApplyReport, Deployer};
use serde_json::Value;

use crate::error::Result;

/// The engine's deployers of one module: on its cluster, and on the hub when the cluster is a
/// spoke.
pub(crate) struct Deployers {
    cluster: Deployer,
    hub: Option<Deployer>,
}

impl Deployers {
    /// The deployers of the running module on `cluster`.
    pub(crate) async fn for_module(ctx: &Context, cluster: &ClusterRef) -> Result<Self> {
        let hub = match cluster.hub() {
            Some(hub) => Some(Deployer::for_module(ctx, &hub).await?),
            None => None,
        };
        Ok(Deployers {
            cluster: Deployer::for_module(ctx, cluster).await?,
            hub,
        })
    }

    /// The client of the module's cluster.
    pub(crate) fn client(&self) -> &kube::Client {
        self.cluster.client()
    }

    /// Why the module's cluster's objects are abandoned (its API unreachable in a destroy that
    /// abandons them), if they are.
    pub(crate) fn abandoned(&self) -> Option<&str> {
        self.cluster.abandoned()
    }

    /// Applies `objects`, each where it goes (the spoke's objects first: the namespace the
    /// Applications deploy into exists before Argo CD syncs).
    pub(crate) async fn apply(&self, objects: Vec<Value>) -> Result<ApplyReport> {
        let Some(hub) = &self.hub else {
            return Ok(self.cluster.apply(objects).await?);
        };
        let (argocd, own): (Vec<Value>, Vec<Value>) =
            objects.into_iter().partition(is_argocd_object);
        let report = self.cluster.apply(own).await?;
        hub.apply(argocd).await?;
        Ok(report)
    }

    /// Destroys the module's objects: on the hub first (Argo CD deletes what the Applications
    /// deployed while it can still reach the spoke), then on the spoke.
    pub(crate) async fn destroy(&self) -> Result<()> {
        if let Some(hub) = &self.hub {
            hub.destroy().await?;
        }
        self.cluster.destroy().await?;
        Ok(())
    }
}

/// The name of the cluster `object` of a module on `cluster` goes to.
pub(crate) fn cluster_of(cluster: &ClusterRef, object: &Value) -> String {
    match cluster.hub() {
        Some(hub) if is_argocd_object(object) => hub.name().to_owned(),
        _ => cluster.name().to_owned(),
    }
}

/// Whether `object` is Argo CD's (it goes to the hub when the module's cluster is a spoke).
fn is_argocd_object(object: &Value) -> bool {
    object["apiVersion"]
        .as_str()
        .is_some_and(|v| v.starts_with("argoproj.io/"))
}
