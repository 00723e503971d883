//! The seven-module stack of `tests/full_stack.rs` for the live tier and the benchmarks:
//! PrometheusOperatorCrds, Traefik, CertManager, Keycloak, KubePrometheusStack, Loki and
//! MetricsServer, with Argo CD's own bootstrap replaced by a constant target (its namespace is
//! made by the caller, as Argo CD's install would have made it).
//!
//! The cluster is shared, so each module that owns a namespace gets one named after the stack
//! (`<stack>-traefik`, ...); the CRDs' Application goes to `default` and metrics-server to
//! `kube-system`, which no module creates nor deletes.

use devops_stack_core::interfaces::{ArgoCdTarget, ClusterRef, IN_CLUSTER, IssuerKind};
use devops_stack_core::{BuiltStack, Input, Stack};
use devops_stack_modules::{
    CertManager, Keycloak, KubePrometheusStack, Loki, MetricsServer, PrometheusOperatorCrds,
    Traefik,
};

/// The namespace of the stack's Argo CD (where its Applications go).
pub fn argocd_namespace(stack: &str) -> String {
    format!("{stack}-argocd")
}

/// The namespaces the stack's modules own, for clean-up.
pub fn module_namespaces(stack: &str) -> Vec<String> {
    ["traefik", "cert-manager", "keycloak", "monitoring", "loki"]
        .iter()
        .map(|m| format!("{stack}-{m}"))
        .collect()
}

/// The seven modules (six without `metrics_server`) of stack `name` on `cluster`.
pub fn seven_modules(name: &str, cluster: ClusterRef, metrics_server: bool) -> BuiltStack {
    let cluster: Input<ClusterRef> = Input::value(cluster);
    let argocd = Input::value(ArgoCdTarget {
        namespace: argocd_namespace(name),
        project: "default".into(),
        destination_server: IN_CLUSTER.into(),
    });
    let ns = |m: &str| format!("{name}-{m}");
    let mut stack = Stack::new(name);
    let crds = stack.add(PrometheusOperatorCrds::new(cluster.clone(), argocd.clone()));
    let ingress = stack.add(
        Traefik::new(cluster.clone(), argocd.clone())
            .namespace(ns("traefik"))
            .service_monitors(&crds),
    );
    let certs = stack.add(
        CertManager::new(cluster.clone(), argocd.clone())
            .namespace(ns("cert-manager"))
            .letsencrypt("ops@example.com")
            .http01_ingress(&ingress),
    );
    let tls = certs.issuer(IssuerKind::LetsEncryptProduction);
    let sso = stack.add(
        Keycloak::new(cluster.clone(), argocd.clone(), &ingress)
            .namespace(ns("keycloak"))
            .issuer(tls.clone())
            .user("jane", "jane@example.com"),
    );
    let monitoring = stack.add(
        KubePrometheusStack::new(cluster.clone(), argocd.clone(), &ingress)
            .namespace(ns("monitoring"))
            .oidc(&sso)
            .issuer(tls)
            .service_monitors(&crds),
    );
    stack.add(
        Loki::new(cluster.clone(), argocd.clone())
            .namespace(ns("loki"))
            .monitoring(&monitoring),
    );
    if metrics_server {
        stack.add(MetricsServer::new(cluster, argocd));
    }
    stack.build().expect("the seven-module stack is valid")
}
