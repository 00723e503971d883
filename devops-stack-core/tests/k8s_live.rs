//! Live tests of the Kubernetes engine against the cluster whose kubeconfig path is in
//! `DEVOPS_STACK_TEST_KUBECONFIG` (each test is skipped, saying so, when it is unset).
//!
//! They need only an API server with etcd and kube-controller-manager: no nodes and no Argo CD.
//! Where a test needs a healthy Argo CD Application, a helper task plays Argo CD's part (it
//! sets the Application's status and removes its finalizer on deletion). Tests that need a real
//! Argo CD run only with `DEVOPS_STACK_TEST_ARGOCD=1`.
//!
//! ```text
//! DEVOPS_STACK_TEST_KUBECONFIG=~/.kube/config cargo test -p devops-stack-core --test k8s_live
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use devops_stack_core::clusters::LocalCluster;
use devops_stack_core::interfaces::{Cluster, ClusterRef};
use devops_stack_core::k8s::{ApplyReport, Deployer, KubeOptions, STACK_LABEL, StackLock};
use devops_stack_core::{
    BoxError, Context, Error, Handle, Module, ModuleResult, Planned, RunOptions, Stack,
};
use futures::future::BoxFuture;
use http::Request;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::client::{Body, ClientBuilder};
use kube::discovery::ApiResource;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// The test cluster's kubeconfig, or `None` after printing why the test is skipped.
fn kubeconfig() -> Option<PathBuf> {
    match std::env::var_os("DEVOPS_STACK_TEST_KUBECONFIG") {
        Some(p) if !p.is_empty() => Some(p.into()),
        _ => {
            println!("skipped: DEVOPS_STACK_TEST_KUBECONFIG is not set");
            None
        }
    }
}

fn local(path: PathBuf) -> LocalCluster {
    LocalCluster {
        name: "test".into(),
        base_domain: "example.com".into(),
        kubeconfig: path,
        context: None,
    }
}

/// A cluster whose client counts the write requests (anything but GET) it sends.
#[derive(Clone)]
struct Counting {
    client: kube::Client,
    writes: Arc<AtomicUsize>,
}

impl Counting {
    async fn new(path: PathBuf) -> Counting {
        let config = local(path).config().await.unwrap();
        let writes = Arc::new(AtomicUsize::new(0));
        let w = Arc::clone(&writes);
        let count = tower::util::MapRequestLayer::new(move |req: Request<Body>| {
            if req.method() != http::Method::GET {
                w.fetch_add(1, Ordering::SeqCst);
            }
            req
        });
        devops_stack_core::k8s::install_tls_provider();
        let client = ClientBuilder::try_from(config)
            .unwrap()
            .with_layer(&count)
            .build();
        Counting { client, writes }
    }

    fn take_writes(&self) -> usize {
        self.writes.swap(0, Ordering::SeqCst)
    }
}

impl std::fmt::Debug for Counting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Counting")
    }
}

impl Cluster for Counting {
    fn name(&self) -> &str {
        "test"
    }
    fn base_domain(&self) -> &str {
        "example.com"
    }
    fn client(&self) -> BoxFuture<'_, Result<kube::Client, BoxError>> {
        Box::pin(async move { Ok(self.client.clone()) })
    }
}

/// A module that applies whatever objects the test gives it, through a [`Deployer`].
struct Objects {
    id: String,
    cluster: ClusterRef,
    objects: Vec<Value>,
}

impl Module for Objects {
    type Output = ApplyReport;
    fn id(&self) -> &str {
        &self.id
    }
    fn kind(&self) -> &'static str {
        "objects"
    }
    async fn plan(&self, _ctx: &Context) -> ModuleResult<Planned<ApplyReport>> {
        Ok(Planned::new(ApplyReport::default()))
    }
    async fn apply(&self, ctx: &Context) -> ModuleResult<ApplyReport> {
        Ok(Deployer::for_module(ctx, &self.cluster)
            .await?
            .apply(self.objects.clone())
            .await?)
    }
    async fn destroy(&self, ctx: &Context) -> ModuleResult<()> {
        Deployer::for_module(ctx, &self.cluster)
            .await?
            .destroy()
            .await?;
        Ok(())
    }
}

fn stack(
    name: &str,
    cluster: &Counting,
    objects: Vec<Value>,
) -> (devops_stack_core::BuiltStack, Handle<ApplyReport>) {
    let mut s = Stack::new(name);
    let h = s.add(Objects {
        id: "objects".into(),
        cluster: Arc::new(cluster.clone()),
        objects,
    });
    (s.build().unwrap(), h)
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::random::<u32>())
}

fn options(state_namespace: &str) -> KubeOptions {
    KubeOptions {
        wait_timeout: Duration::from_secs(120),
        state_namespace: state_namespace.into(),
        ..KubeOptions::default()
    }
}

/// A minimal Argo CD Application CRD (any fields, with a status subresource). Shared by the
/// tests and left installed, since its name is cluster-wide.
async fn install_application_crd(client: &kube::Client) {
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "applications.argoproj.io"},
        "spec": {"group": "argoproj.io", "scope": "Namespaced",
            "names": {"plural": "applications", "singular": "application", "kind": "Application", "shortNames": ["app"]},
            "versions": [{"name": "v1alpha1", "served": true, "storage": true, "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}});
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ApiResource::erase::<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>(&()));
    if api
        .get_opt("applications.argoproj.io")
        .await
        .unwrap()
        .is_some()
    {
        return; // a real Argo CD's (or another test run's): never replace its schema
    }
    api.patch(
        "applications.argoproj.io",
        &PatchParams::apply("devops-stack-live-tests"),
        &Patch::Apply(&crd),
    )
    .await
    .unwrap();
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> = Api::all(client.clone());
    let established = kube::runtime::wait::await_condition(
        crds,
        "applications.argoproj.io",
        kube::runtime::wait::conditions::is_crd_established(),
    );
    tokio::time::timeout(Duration::from_secs(60), established)
        .await
        .unwrap()
        .unwrap();
}

fn applications(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application"),
        "applications",
    );
    Api::namespaced_with(client.clone(), ns, &ar)
}

/// Plays Argo CD's part for the Applications of `ns` (there is no Argo CD in the test
/// cluster): THIS SETS THEIR STATUS TO Synced/Healthy itself, through the status subresource,
/// and removes the resources finalizer of those being deleted. Runs until `stop` fires.
fn play_argocd(
    client: kube::Client,
    ns: String,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let api = applications(&client, &ns);
        while !stop.is_cancelled() {
            for app in api
                .list(&ListParams::default())
                .await
                .map(|l| l.items)
                .unwrap_or_default()
            {
                let name = app.metadata.name.clone().unwrap();
                if app.metadata.deletion_timestamp.is_some() {
                    let _ = api
                        .patch(
                            &name,
                            &PatchParams::default(),
                            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
                        )
                        .await;
                } else if app.data["status"]["health"]["status"] != "Healthy" {
                    let status = json!({"status": {"sync": {"status": "Synced"}, "health": {"status": "Healthy"}}});
                    // Argo CD's own CRD has no status subresource: its controller writes the
                    // main object. Patch both, for CRDs made either way.
                    let _ = api
                        .patch(
                            &name,
                            &PatchParams::default(),
                            &Patch::Merge(status.clone()),
                        )
                        .await;
                    let _ = api
                        .patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
                        .await;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

fn bundle(id: &str, ns: &str, replicas: i64, with_config_map: bool) -> Vec<Value> {
    let group = format!("{id}.example.com");
    let mut v = vec![
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": format!("widgets.{group}")},
            "spec": {"group": group, "scope": "Namespaced", "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}}),
        // The custom resource comes before its namespace and CRD: the engine orders them.
        json!({"apiVersion": format!("{group}/v1"), "kind": "Widget", "metadata": {"name": "w", "namespace": ns}, "spec": {"size": 3}}),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": format!("{id}-reader")},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]}),
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "app", "namespace": ns},
            "spec": {"project": "default", "destination": {"server": "https://kubernetes.default.svc", "namespace": ns},
                "source": {"repoURL": "https://charts.example.com", "chart": "demo", "targetRevision": "1.0.0",
                    "helm": {"valuesObject": {"replicas": replicas, "image": {"tag": "v1"}}}}}}),
    ];
    if with_config_map {
        v.push(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": ns}, "data": {"k": "v"}}));
    }
    v
}

/// Every object labelled with `stack` among the kinds the tests use.
async fn labelled(client: &kube::Client, stack: &str, id: &str) -> Vec<String> {
    let lp = ListParams::default().labels(&format!("{STACK_LABEL}={stack}"));
    let mut found = Vec::new();
    let kinds = [
        ApiResource::erase::<k8s_openapi::api::core::v1::Namespace>(&()),
        ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&()),
        ApiResource::erase::<k8s_openapi::api::rbac::v1::ClusterRole>(&()),
        ApiResource::erase::<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>(&()),
        ApiResource::from_gvk_with_plural(&kube::api::GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application"), "applications"),
        ApiResource::from_gvk_with_plural(&kube::api::GroupVersionKind::gvk(&format!("{id}.example.com"), "v1", "Widget"), "widgets"),
    ];
    for ar in kinds {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        match api.list(&lp).await {
            Ok(list) => found.extend(list.items.into_iter().map(|o| {
                format!(
                    "{} {}/{}",
                    ar.kind,
                    o.metadata.namespace.unwrap_or_default(),
                    o.metadata.name.unwrap_or_default()
                )
            })),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => panic!("listing {}: {e}", ar.kind),
        }
    }
    found
}

async fn delete_namespace(client: &kube::Client, ns: &str) {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let _ = api.delete(ns, &DeleteParams::default()).await;
}

#[tokio::test]
async fn a_stack_applies_reapplies_without_writes_diffs_prunes_and_destroys() {
    let Some(path) = kubeconfig() else { return };
    let cluster = Counting::new(path.clone()).await;
    let helper = local(path).connect().await.unwrap();
    install_application_crd(&helper).await;

    let id = unique("dst");
    let ns = id.clone();
    let state_ns = format!("{id}-state");
    let opts = options(&state_ns);
    let stop = CancellationToken::new();
    let argocd = play_argocd(helper.clone(), ns.clone(), stop.clone());

    // 1. Apply: everything is created; the Application waits until "Argo CD" reports it healthy.
    let (s, h) = stack(&id, &cluster, bundle(&id, &ns, 1, true));
    let report = s
        .apply(&RunOptions::new().extension(opts.clone()))
        .await
        .unwrap();
    let first = report.output(&h).unwrap();
    assert_eq!(first.changed.len(), 6, "{first:?}");
    assert_eq!(
        first.changed[0],
        format!("CustomResourceDefinition widgets.{id}.example.com")
    );
    assert_eq!(first.changed[1], format!("Namespace {ns}"));
    assert!(cluster.take_writes() > 0);

    // 2. The same inputs again, under the stack's lock: no write request at all. (The lock's
    // own Lease writes go through the helper's client, which is not counted.)
    let report = StackLock::scope(helper.clone(), &id, &opts, async |lock| {
        s.apply(&RunOptions::new().extension(opts.clone()).extension(lock))
            .await
    })
    .await
    .unwrap();
    let again = report.output(&h).unwrap();
    assert_eq!(
        cluster.take_writes(),
        0,
        "write requests on an unchanged re-apply"
    );
    assert_eq!(again.unchanged.len(), 6);
    assert!(again.changed.is_empty());

    // 3. One Helm value changed: the diff shows that one key.
    let deployer = Deployer::new(cluster.client.clone(), id.clone(), "objects", opts.clone());
    let diff = deployer.diff(bundle(&id, &ns, 2, true)).await.unwrap();
    let app = diff.object("Application", "app").unwrap();
    let paths: Vec<&str> = app.changes.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(
        paths,
        ["spec.source.helm.valuesObject.replicas"],
        "{}",
        diff.to_text()
    );
    assert_eq!(app.changes[0].before, Some(json!(1)));
    assert_eq!(app.changes[0].after, Some(json!(2)));
    assert_eq!(diff.objects.len(), 6, "{}", diff.to_text());
    assert_eq!(
        cluster.take_writes(),
        1,
        "the dry-run apply of the one changed object is the diff's only non-GET request"
    );

    // 4. The ConfigMap is no longer rendered: it is pruned.
    let (s, h) = stack(&id, &cluster, bundle(&id, &ns, 1, false));
    let report = s
        .apply(&RunOptions::new().extension(opts.clone()))
        .await
        .unwrap();
    assert_eq!(
        report.output(&h).unwrap().pruned,
        [format!("ConfigMap {ns}/cm")]
    );
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(helper.clone(), &ns);
    assert!(cms.get_opt("cm").await.unwrap().is_none());

    // 5. Destroy: nothing labelled with the stack is left, and the state is gone.
    s.destroy(&RunOptions::new().extension(opts.clone()))
        .await
        .unwrap();
    // Applications and namespaces were waited for; a CRD may take a moment to finish deleting.
    let mut left = labelled(&helper, &id, &id).await;
    for _ in 0..60 {
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        left = labelled(&helper, &id, &id).await;
    }
    assert_eq!(left, Vec::<String>::new(), "objects left after destroy");
    let state: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(helper.clone(), &state_ns);
    assert!(
        state
            .get_opt(&format!("devops-stack-state-{id}"))
            .await
            .unwrap()
            .is_none()
    );
    // Destroying again is fine.
    s.destroy(&RunOptions::new().extension(opts)).await.unwrap();

    stop.cancel();
    argocd.await.unwrap();
    delete_namespace(&helper, &state_ns).await;
}

#[tokio::test]
async fn the_lock_refuses_a_second_concurrent_apply() {
    let Some(path) = kubeconfig() else { return };
    let cluster = Counting::new(path).await;
    let id = unique("dst-lock");
    let state_ns = format!("{id}-state");
    let opts = options(&state_ns);
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": id, "namespace": "default"}, "data": {"k": "v"}});
    let (s, _) = stack(&id, &cluster, vec![cm]);

    let first = StackLock::builder(cluster.client.clone(), &id)
        .namespace(&state_ns)
        .holder("first-run")
        .acquire()
        .await
        .unwrap();
    let second = StackLock::builder(cluster.client.clone(), &id)
        .namespace(&state_ns)
        .holder("second-run")
        .acquire()
        .await;
    match second {
        Err(Error::LockHeld { holder, .. }) => assert_eq!(holder, "first-run"),
        other => panic!("expected the lock to be held, got {other:?}"),
    }
    // A run without the lock is refused too, naming the holder.
    let e = s
        .apply(&RunOptions::new().extension(opts.clone()))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("locked by `first-run`"), "{e}");
    // The run holding the lock goes through.
    let locked = RunOptions::new().extension(opts).extension(first.clone());
    s.apply(&locked).await.unwrap();
    s.destroy(&locked).await.unwrap();
    drop(locked);
    first.release().await.unwrap();
    let again = StackLock::builder(cluster.client.clone(), &id)
        .namespace(&state_ns)
        .holder("second-run")
        .acquire()
        .await
        .unwrap();
    again.release().await.unwrap();
    delete_namespace(&cluster.client, &state_ns).await;
}

/// Needs a real Argo CD (and nodes): an Application of a small chart is synced and healthy,
/// and destroying it deletes what Argo CD deployed.
#[tokio::test]
async fn argocd_syncs_and_deletes_an_application() {
    let Some(path) = kubeconfig() else { return };
    if std::env::var("DEVOPS_STACK_TEST_ARGOCD").as_deref() != Ok("1") {
        println!("skipped: DEVOPS_STACK_TEST_ARGOCD is not 1 (this test needs a real Argo CD)");
        return;
    }
    let cluster = Counting::new(path).await;
    let id = unique("dst-argo");
    let opts = options(&format!("{id}-state"));
    let app = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": id, "namespace": "argocd", "finalizers": [devops_stack_core::argocd::RESOURCES_FINALIZER]},
        "spec": {"project": "default", "destination": {"server": "https://kubernetes.default.svc", "namespace": id},
            "source": {"repoURL": "https://stefanprodan.github.io/podinfo", "chart": "podinfo", "targetRevision": "6.9.2",
                "helm": {"valuesObject": {"replicaCount": 1}}},
            "syncPolicy": {"automated": {"prune": true, "selfHeal": true}, "syncOptions": ["CreateNamespace=true"]}}});
    let (s, _) = stack(&id, &cluster, vec![app]);
    s.apply(&RunOptions::new().extension(opts.clone()))
        .await
        .unwrap();
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(cluster.client.clone(), &id);
    assert!(
        !deployments
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    s.destroy(&RunOptions::new().extension(opts)).await.unwrap();
    assert!(
        deployments
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    delete_namespace(&cluster.client, &id).await;
    delete_namespace(&cluster.client, &format!("{id}-state")).await;
}
