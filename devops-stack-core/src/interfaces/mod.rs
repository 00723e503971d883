//! The typed interfaces modules exchange: clusters, OIDC, ingress, cluster issuers, Argo CD,
//! monitoring, workload identity, storage classes, object stores and DNS zones. Implementations sit behind traits, so that swapping Traefik for ingress-nginx or
//! Keycloak for Cognito is a one-line change in user code.
//!
//! Each trait is implemented by a module's output type. A [`Handle`] to such an output turns
//! into the matching [`Input`] with a method (`cluster()`, `ingress()`, `oidc("grafana")`...) or
//! `From`, which is what module constructors accept.

mod abandon;
mod argocd;
mod cluster;
mod dns;
mod ingress;
mod issuer;
mod monitoring;
mod oidc;
mod spoke;
mod storage;
mod workload_identity;

pub use abandon::AbandonInCluster;
pub use argocd::{ArgoCdProvider, ArgoCdTarget};
pub use cluster::{Cluster, ClusterProvider, ClusterRef, Hostnames, IN_CLUSTER, KubeconfigSource};
pub use dns::{Dns01Solver, DnsRecord, DnsRecords, DnsZone, DnsZoneProvider, RecordKind};
pub use ingress::{Ingress, IngressProvider, LoadBalancerScheme};
pub use issuer::{ClusterIssuer, IssuerKind, IssuerProvider};
pub use monitoring::{Monitoring, MonitoringProvider};
pub use oidc::{
    App, ClusterOidc, ClusterOidcProvider, IdentityGroup, Oidc, OidcClient, OidcProvider,
};
pub use spoke::{SpokeAuth, SpokeAuthRef, SpokeCredentials};
pub use storage::{
    ObjectStore, ObjectStoreKind, ObjectStoreProvider, StorageClass, StorageClassProvider,
};
pub use workload_identity::{
    Effect, PolicyDocument, RoleOwner, RoleRequest, ServiceAccount, Statement, WorkloadIdentity,
    WorkloadIdentityProvider, WorkloadIdentityRef, WorkloadRole,
};

use crate::handle::{Handle, Input};

macro_rules! provider_inputs {
    ($($bound:ident => $method:ident -> $out:ty = $call:expr;)*) => {$(
        impl<T: $bound + Send + Sync + 'static> Handle<T> {
            #[doc = concat!("The [`", stringify!($out), "`] this module provides, as an input for other modules.")]
            pub fn $method(&self) -> Input<$out> {
                self.map($call)
            }
        }
        impl<T: $bound + Send + Sync + 'static> From<&Handle<T>> for Input<$out> {
            fn from(h: &Handle<T>) -> Self {
                h.$method()
            }
        }
    )*};
}

provider_inputs! {
    ClusterProvider => cluster -> ClusterRef = |t: &T| t.cluster();
    IngressProvider => ingress -> Ingress = |t: &T| t.ingress();
    ArgoCdProvider => argocd -> ArgoCdTarget = |t: &T| t.argocd();
    MonitoringProvider => monitoring -> Monitoring = |t: &T| t.monitoring();
    WorkloadIdentityProvider => workload_identity -> WorkloadIdentityRef = |t: &T| t.workload_identity();
    StorageClassProvider => storage_class -> StorageClass = |t: &T| t.storage_class();
    ObjectStoreProvider => object_store -> ObjectStore = |t: &T| t.object_store();
    DnsZoneProvider => dns_zone -> DnsZone = |t: &T| t.dns_zone();
    ClusterOidcProvider => cluster_oidc -> ClusterOidc = |t: &T| t.cluster_oidc();
}

impl<T: OidcProvider + Send + Sync + 'static> Handle<T> {
    /// The OIDC settings of client `client` (`argocd`, `grafana`...) of this provider, as an
    /// input. Reading it fails, naming the client, when the provider has no such client.
    pub fn oidc(&self, client: impl Into<String>) -> Input<Oidc> {
        let client = client.into();
        self.try_map(move |p: &T| {
            p.client(&client).ok_or_else(|| {
                format!(
                    "the OIDC provider has no client `{client}` (it has: {}); add it to the provider's clients",
                    p.client_names().join(", ")
                )
            })
        })
    }

    /// The group `name` of this provider's users, for access rules (a team's roles). Modules
    /// given it run after the provider, and the provider creates the group when it does not
    /// exist (its members are people, managed in the provider). A name the provider would
    /// refuse is an error of the stack's build, reported by the module using it.
    pub fn group(&self, name: impl Into<String>) -> IdentityGroup {
        let name = name.into();
        let problem = T::group_name_problem(&name);
        IdentityGroup::of(name, self.dependency(), problem)
    }
}

impl<T: IssuerProvider + Send + Sync + 'static> Handle<T> {
    /// The cluster issuer of `kind`, as an input. Reading it fails when there is none.
    pub fn issuer(&self, kind: IssuerKind) -> Input<ClusterIssuer> {
        self.try_map(move |p: &T| {
            p.issuer(kind).ok_or_else(|| {
                format!("no cluster issuer of kind {kind:?}; enable it on the issuer module")
            })
        })
    }
}
