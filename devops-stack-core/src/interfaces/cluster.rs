use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::Serialize;

use super::LoadBalancerScheme;
use crate::error::BoxError;

/// The Argo CD destination server of the cluster Argo CD itself runs in.
pub const IN_CLUSTER: &str = "https://kubernetes.default.svc";

/// How the stack's hostnames are made: `<app>.<subdomain>.<cluster>.<base_domain>`.
///
/// ```
/// use devops_stack_core::interfaces::Hostnames;
/// let hosts = Hostnames::new("prod", "example.com");
/// assert_eq!(hosts.host("grafana"), "grafana.apps.prod.example.com");
/// assert_eq!(hosts.subdomain("tools").host("argocd"), "argocd.tools.prod.example.com");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hostnames {
    /// The cluster's name.
    pub cluster: String,
    /// The base domain.
    pub base_domain: String,
    /// The subdomain between app and cluster (default `apps`); empty for none.
    pub subdomain: String,
}

impl Hostnames {
    /// Hostnames for `cluster` under `base_domain`, with the subdomain `apps`.
    pub fn new(cluster: impl Into<String>, base_domain: impl Into<String>) -> Self {
        Hostnames {
            cluster: cluster.into(),
            base_domain: base_domain.into(),
            subdomain: "apps".into(),
        }
    }

    /// Another subdomain (empty for none).
    #[must_use]
    pub fn subdomain(mut self, subdomain: impl Into<String>) -> Self {
        self.subdomain = subdomain.into();
        self
    }

    /// The hostname of `app`.
    pub fn host(&self, app: &str) -> String {
        if self.subdomain.is_empty() {
            format!("{app}.{}.{}", self.cluster, self.base_domain)
        } else {
            format!(
                "{app}.{}.{}.{}",
                self.subdomain, self.cluster, self.base_domain
            )
        }
    }

    /// The `https://` URL of `app`.
    pub fn url(&self, app: &str) -> String {
        format!("https://{}", self.host(app))
    }
}

/// Where a cluster's client settings come from: a kubeconfig file and one of its contexts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KubeconfigSource {
    /// The kubeconfig file.
    pub path: PathBuf,
    /// The context (the file's current context when the cluster names none); `None` when the
    /// file names no current context either.
    pub context: Option<String>,
}

/// A Kubernetes cluster the stack deploys to (EKS, kind, or an existing one from a kubeconfig).
pub trait Cluster: Send + Sync + fmt::Debug + 'static {
    /// The cluster's name.
    fn name(&self) -> &str;

    /// The base domain of the cluster's hostnames.
    fn base_domain(&self) -> &str;

    /// How hostnames are made on this cluster.
    fn hostnames(&self) -> Hostnames {
        Hostnames::new(self.name(), self.base_domain())
    }

    /// The issuer URL of the cluster's service-account tokens (EKS IRSA), if it has one.
    fn oidc_issuer_url(&self) -> Option<&str> {
        None
    }

    /// The Argo CD destination server of this cluster, as seen from the Argo CD that manages it.
    fn argocd_server(&self) -> &str {
        IN_CLUSTER
    }

    /// The annotations a `LoadBalancer` Service needs on this cluster to get a load balancer of
    /// `scheme` (a Network Load Balancer on EKS). Empty where the cluster has no cloud load
    /// balancers of its own (kind, a kubeconfig cluster), and then a controller's Service is left
    /// as its chart makes it.
    fn load_balancer_annotations(&self, _scheme: LoadBalancerScheme) -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    /// The URL of the cluster's API server, for errors that must name it (`None` when unknown).
    fn server(&self) -> Option<String> {
        None
    }

    /// The kubeconfig file and context the cluster's client is made from, for errors that must
    /// name them (`None` for a cluster whose client is made otherwise, the default).
    fn kubeconfig(&self) -> Option<KubeconfigSource> {
        None
    }

    /// The cluster whose Argo CD deploys to this one, when it is another one: a spoke of a
    /// fleet, registered to the hub. A module's Argo CD objects (Applications, ApplicationSets)
    /// then go to the hub, and its other objects here. `None` (the default) for a cluster with
    /// its own Argo CD.
    fn hub(&self) -> Option<ClusterRef> {
        None
    }

    /// A client for the cluster's API. Never called while planning offline.
    fn client(&self) -> BoxFuture<'_, Result<kube::Client, BoxError>>;
}

/// A shared cluster.
pub type ClusterRef = Arc<dyn Cluster>;

/// A module output that provides a cluster.
pub trait ClusterProvider {
    /// The cluster.
    fn cluster(&self) -> ClusterRef;
}

impl<T: Cluster + Clone> ClusterProvider for T {
    fn cluster(&self) -> ClusterRef {
        Arc::new(self.clone())
    }
}
