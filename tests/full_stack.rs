//! A whole stack of built-in modules applied through the Kubernetes engine to `FakeApi`, the
//! in-memory API server of `devops-stack-core`'s tests (server-side apply per field manager,
//! `managedFields`, LISTs, preconditions, finalizers, namespace deletion): a second apply with
//! the same inputs makes no write request at all, and destroy leaves nothing labelled with the
//! stack.
//!
//! Argo CD is played by the fake: its CRDs and namespace exist (as its bootstrap leaves them)
//! and its controller marks Applications Synced and Healthy and lets them go once deleted.
//! Argo CD's own bootstrap (which needs `helm` or the network) is replaced by a constant target.
//! No other controller runs, so the apply does not wait for readiness (`KubeOptions::wait` is
//! false).

use devops_stack_test::fake_api;

use devops_stack::k8s::KubeEngine;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use devops_stack::interfaces::{ArgoCdTarget, Cluster, ClusterRef, IN_CLUSTER, IssuerKind};
use devops_stack::k8s::{KubeOptions, STACK_LABEL};
use devops_stack::modules::{
    CertManager, Keycloak, KubePrometheusStack, Loki, MetricsServer, PrometheusOperatorCrds,
    Traefik,
};
use devops_stack::{BoxError, Input, RunOptions, Stack};
use fake_api::{BUILTIN_KINDS, FakeApi, count, writes};
use serde_json::json;

/// The cluster served by the fake API server.
#[derive(Clone)]
struct Memory(kube::Client);

impl std::fmt::Debug for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Memory")
    }
}

impl Cluster for Memory {
    fn name(&self) -> &str {
        "mem"
    }
    fn base_domain(&self) -> &str {
        "example.com"
    }
    fn client(&self) -> Pin<Box<dyn Future<Output = Result<kube::Client, BoxError>> + Send + '_>> {
        Box::pin(async move { Ok(self.0.clone()) })
    }
}

fn platform(fake: &FakeApi) -> devops_stack::BuiltStack {
    let cluster: Input<ClusterRef> = Input::value(Arc::new(Memory(fake.client())));
    let argocd = Input::value(ArgoCdTarget {
        namespace: "argocd".into(),
        project: "default".into(),
        destination_server: IN_CLUSTER.into(),
    });
    let mut stack = Stack::new("mem");
    let crds = stack.add(PrometheusOperatorCrds::new(cluster.clone(), argocd.clone()));
    let ingress = stack.add(Traefik::new(cluster.clone(), argocd.clone()).service_monitors(&crds));
    let certs = stack.add(
        CertManager::new(cluster.clone(), argocd.clone())
            .letsencrypt("ops@example.com")
            .http01_ingress(&ingress),
    );
    let tls = certs.issuer(IssuerKind::LetsEncryptProduction);
    let sso = stack.add(
        Keycloak::new(cluster.clone(), argocd.clone(), &ingress)
            .issuer(tls.clone())
            .user("jane", "jane@example.com"),
    );
    let monitoring = stack.add(
        KubePrometheusStack::new(cluster.clone(), argocd.clone(), &ingress)
            .oidc(&sso)
            .issuer(tls)
            .service_monitors(&crds),
    );
    stack.add(Loki::new(cluster.clone(), argocd.clone()).monitoring(&monitoring));
    stack.add(MetricsServer::new(cluster, argocd));
    stack.build().unwrap()
}

/// Every live object carrying the stack's label, as `apiVersion Kind namespace/name`.
fn labelled(fake: &FakeApi, stack: &str) -> Vec<String> {
    let builtin = BUILTIN_KINDS.iter().map(|&(group, version, kind, ..)| {
        let api_version = if group.is_empty() {
            version.to_owned()
        } else {
            format!("{group}/{version}")
        };
        (api_version, kind)
    });
    let argocd = ["Application", "AppProject", "ApplicationSet"]
        .map(|kind| ("argoproj.io/v1alpha1".to_owned(), kind));
    builtin
        .chain(argocd)
        .flat_map(|(api_version, kind)| {
            fake.list(&api_version, kind, None)
                .into_iter()
                .filter(|o| o["metadata"]["labels"][STACK_LABEL] == stack)
                .map(move |o| {
                    let meta = &o["metadata"];
                    format!(
                        "{api_version} {kind} {}/{}",
                        meta["namespace"].as_str().unwrap_or(""),
                        meta["name"].as_str().unwrap_or("")
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test]
async fn a_full_stack_reapplies_with_zero_writes_and_destroys_everything() {
    let fake = FakeApi::new().with_argocd_crds().with_argocd_controller();
    fake.insert(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "argocd"}}));
    let before = fake.names();
    fake.take_log();
    let options = || {
        RunOptions::new().engine(KubeEngine::new(KubeOptions {
            wait: false,
            wait_timeout: Duration::from_secs(30),
            ..KubeOptions::default()
        }))
    };

    let first = platform(&fake).apply(&options()).await.unwrap();
    assert!(first.is_success());
    let log = fake.take_log();
    let written = writes(&log);
    eprintln!(
        "first apply: {} requests, {} writes",
        log.len(),
        written.len()
    );
    assert!(written.len() > 20, "the first apply wrote only {written:?}");
    let applications = fake.list("argoproj.io/v1alpha1", "Application", "argocd");
    assert!(
        applications.len() >= 8,
        "{} Applications",
        applications.len()
    );
    let objects = labelled(&fake, "mem");

    // The same inputs again, with a stack built anew (generated secrets are read back).
    platform(&fake).apply(&options()).await.unwrap();
    let log = fake.take_log();
    eprintln!(
        "no-op re-apply: {} requests ({} LISTs and GETs), {} writes, for {} objects",
        log.len(),
        count(&log, "GET"),
        writes(&log).len(),
        objects.len()
    );
    assert_eq!(
        writes(&log),
        Vec::<String>::new(),
        "write requests on a no-op re-apply of the whole stack"
    );
    assert!(
        log.len() > 20,
        "the re-apply read the live objects: {log:?}"
    );
    assert_eq!(labelled(&fake, "mem"), objects, "nothing changed hands");

    platform(&fake).destroy(&options()).await.unwrap();
    assert_eq!(
        labelled(&fake, "mem"),
        Vec::<String>::new(),
        "objects of the stack left after destroy"
    );
    let left: Vec<String> = fake
        .names()
        .into_iter()
        .filter(|n| !before.contains(n))
        .collect();
    assert_eq!(
        left,
        ["Namespace devops-stack-system"],
        "only the shared state namespace stays"
    );
}
