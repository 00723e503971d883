//! Argo CD's install for tests that run against the test environment's real Argo CD without
//! the stack's bootstrap: the CRDs of the pinned version, the namespace, and the ConfigMaps and
//! Secret its processes read.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};

/// Argo CD's namespace in the test environment (its processes watch this one).
pub const ARGOCD_NS: &str = "argocd";

/// Argo CD as its chart would install it, minus the Deployments (the environment's processes
/// play them): the CRDs of the pinned version, the namespace and the ConfigMaps and Secret its
/// processes read; then waits (up to 60 s) for the `default` project, which argocd-server makes
/// once they are there (an Application of that project is refused until then). Idempotent
/// (server-side apply under the environment's own field manager).
pub async fn install(crd_dir: &Path, client: &kube::Client) {
    let ssa = PatchParams::apply("devops-stack-testenv").force();
    let crds: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
            "customresourcedefinitions",
        ),
    );
    for entry in std::fs::read_dir(crd_dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let crd: Value = serde_yaml_ng::from_str(&text).unwrap();
        let name = crd["metadata"]["name"].as_str().unwrap().to_owned();
        crds.patch(&name, &ssa, &Patch::Apply(&crd)).await.unwrap();
        let established = kube::runtime::wait::await_condition(
            Api::<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>::all(client.clone()),
            &name,
            kube::runtime::wait::conditions::is_crd_established(),
        );
        tokio::time::timeout(Duration::from_secs(60), established)
            .await
            .expect("the CRD is established in time")
            .unwrap();
    }
    let ns: Api<Namespace> = Api::all(client.clone());
    ns.patch(
        ARGOCD_NS,
        &ssa,
        &Patch::Apply(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ARGOCD_NS}}),
        ),
    )
    .await
    .unwrap();
    let part_of = json!({"app.kubernetes.io/part-of": "argocd"});
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ARGOCD_NS);
    for (name, data) in [
        (
            "argocd-cm",
            json!({"application.resourceTrackingMethod": "annotation", "timeout.reconciliation": "10s"}),
        ),
        ("argocd-rbac-cm", json!({})),
        ("argocd-cmd-params-cm", json!({})),
    ] {
        cms.patch(
            name,
            &ssa,
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "labels": part_of}, "data": data})),
        )
        .await
        .unwrap();
    }
    // argocd-secret: argocd-server adds `server.secretkey` at its first start; applying no
    // data keeps what it wrote.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(client.clone(), ARGOCD_NS);
    secrets
        .patch(
            "argocd-secret",
            &ssa,
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "argocd-secret", "labels": part_of}})),
        )
        .await
        .unwrap();
    let projects: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        ARGOCD_NS,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("argoproj.io", "v1alpha1", "AppProject"),
            "appprojects",
        ),
    );
    let t = std::time::Instant::now();
    while projects.get_opt("default").await.unwrap().is_none() {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "Argo CD made no `default` project"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
