use std::collections::BTreeMap;

use serde::Serialize;

use super::ClusterIssuer;

/// What modules need to publish an ingress through the stack's ingress controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ingress {
    /// The controller's namespace: where its traffic comes from, for NetworkPolicies that let
    /// it in.
    pub namespace: String,
    /// The `ingressClassName` to use.
    pub class_name: String,
    /// The controller (`traefik.io/ingress-controller`, `k8s.io/ingress-nginx`).
    pub controller: String,
    /// Whether the class is the cluster's default.
    pub default_class: bool,
    /// Annotations every ingress of this controller gets.
    pub annotations: BTreeMap<String, String>,
    /// Annotations an ingress with TLS gets in addition (redirects, TLS router settings).
    pub tls_annotations: BTreeMap<String, String>,
    /// The hostname of the controller's load balancer, once the cloud has given it one (when the
    /// controller waits for it: on a cluster with load balancers and a DNS zone to publish in).
    pub load_balancer_hostname: Option<String>,
}

impl Ingress {
    /// The annotations of an ingress, with TLS from `issuer` when given (cert-manager's
    /// `cert-manager.io/cluster-issuer`).
    pub fn annotations_for(&self, issuer: Option<&ClusterIssuer>) -> BTreeMap<String, String> {
        let mut a = self.annotations.clone();
        if let Some(issuer) = issuer {
            a.extend(self.tls_annotations.clone());
            a.insert("cert-manager.io/cluster-issuer".into(), issuer.name.clone());
        }
        a
    }
}

/// Whether a load balancer is reachable from the internet or only from inside the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum LoadBalancerScheme {
    /// Reachable from the internet (public subnets).
    #[default]
    InternetFacing,
    /// Reachable only from inside the network (private subnets).
    Internal,
}

/// A module output that provides an ingress controller (Traefik, ingress-nginx).
pub trait IngressProvider {
    /// How to publish through it.
    fn ingress(&self) -> Ingress;
}
