//! Live tests of the Kubernetes engine against the cluster whose kubeconfig path is in
//! `DEVOPS_STACK_TEST_KUBECONFIG` (each test is skipped, saying so, when it is unset).
//!
//! They need only an API server with etcd and kube-controller-manager: no nodes and no Argo CD.
//! Argo CD's part is played by the stand-in of `devops_stack_test::argocd_standin`: it installs
//! Argo CD's CRDs only where absent (no status subresource, as Argo CD's own), writes
//! Applications' status into the main object as Argo CD's controller does, and removes their
//! resources finalizer on deletion, unless told that Argo CD is gone. Tests that need a real
//! Argo CD run only with `DEVOPS_STACK_TEST_ARGOCD=1`.
//!
//! Every test uses its own stack names and namespaces, and cleans up even when it fails.
//!
//! ```text
//! DEVOPS_STACK_TEST_KUBECONFIG=~/.kube/config cargo test -p devops-stack-core --test k8s_live -- --test-threads=2
//! # once, on a cluster without Argo CD's CRDs: create them as a real Argo CD install would
//! DEVOPS_STACK_TEST_ARGOCD_CRDS=preexisting DEVOPS_STACK_TEST_KUBECONFIG=... cargo test ...
//! ```

use devops_stack_test::argocd_standin;
use devops_stack_test::live;

use devops_stack_core::k8s::KubeEngine;
use std::sync::Arc;
use std::time::Duration;

use argocd_standin::{ArgoCdStandIn, CrdSetup, applications, crd_resource, ensure_argocd_crds};
use devops_stack_core::argocd::RESOURCES_FINALIZER;
use devops_stack_core::k8s::{
    Adopt, ApplyReport, Deployer, KubeOptions, STACK_LABEL, StackLock, StuckApplications,
};
use devops_stack_core::{
    Context, Error, Handle, Module, ModuleResult, Planned, RunOptions, Stack,
    interfaces::ClusterRef,
};
use kube::ResourceExt as _;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use live::{
    Counting, config_map_resource, create_namespace, delete_labelled, delete_namespace,
    helper_client, kubeconfig, namespace_resource, unique, wait_none_labelled, with_cleanup,
};
use serde_json::{Value, json};

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

fn options(state_namespace: &str) -> KubeOptions {
    KubeOptions {
        wait_timeout: Duration::from_secs(120),
        state_namespace: state_namespace.into(),
        ..KubeOptions::default()
    }
}

fn run(opts: &KubeOptions) -> RunOptions {
    RunOptions::new().engine(KubeEngine::new(opts.clone()))
}

fn selector(stack: &str) -> String {
    format!("{STACK_LABEL}={stack}")
}

/// Applies `objects` as the only module of `stack` and returns its report (panics on failure).
async fn apply(
    stack_name: &str,
    cluster: &Counting,
    objects: Vec<Value>,
    opts: &KubeOptions,
) -> ApplyReport {
    let (s, h) = stack(stack_name, cluster, objects);
    let report = s.apply(&run(opts)).await.unwrap();
    (*report.output(&h).unwrap()).clone()
}

async fn destroy(
    stack_name: &str,
    cluster: &Counting,
    opts: &KubeOptions,
) -> devops_stack_core::Result<()> {
    // Destroy reads only the state: the module renders nothing here.
    let (s, _) = stack(stack_name, cluster, Vec::new());
    s.destroy(&run(opts)).await.map(drop)
}

/// What every test does at the end, whatever happened: the stacks' objects (finalizers of
/// their Applications dropped) and the test's namespaces go.
async fn cleanup(client: &kube::Client, stacks: &[&str], namespaces: &[&str]) {
    for s in stacks {
        delete_labelled(client, &selector(s)).await;
    }
    for ns in namespaces {
        delete_namespace(client, ns).await;
    }
}

fn config_map(ns: &str, name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": {"k": "v"}})
}

fn namespace(ns: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
}

/// An Argo CD Application `app` in `ns` deploying a chart into `ns`.
fn application(ns: &str, revision: &str, with_image: bool) -> Value {
    let mut values = json!({"replicas": 1});
    if with_image {
        values["image"] = json!({"tag": "v1"});
    }
    json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "app", "namespace": ns},
        "spec": {"project": "default", "destination": {"server": "https://kubernetes.default.svc", "namespace": ns},
            "source": {"repoURL": "https://charts.example.com", "chart": "demo", "targetRevision": revision,
                "helm": {"valuesObject": values}}}})
}

fn bundle(id: &str, ns: &str, replicas: i64, with_config_map: bool) -> Vec<Value> {
    let group = format!("{id}.example.com");
    let mut app = application(ns, "1.0.0", true);
    app["spec"]["source"]["helm"]["valuesObject"]["replicas"] = json!(replicas);
    let mut v = vec![
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": format!("widgets.{group}")},
            "spec": {"group": group, "scope": "Namespaced", "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}}),
        // The custom resource comes before its namespace and CRD: the engine orders them.
        json!({"apiVersion": format!("{group}/v1"), "kind": "Widget", "metadata": {"name": "w", "namespace": ns}, "spec": {"size": 3}}),
        namespace(ns),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": format!("{id}-reader")},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]}),
        app,
    ];
    if with_config_map {
        v.push(config_map(ns, "cm"));
    }
    v
}

/// A merge patch of `object` by the field manager `manager` (as `kubectl edit`, `kubectl label`
/// or another tool would make it).
async fn edit(api: &Api<DynamicObject>, name: &str, manager: &str, patch: Value) -> DynamicObject {
    let params = PatchParams {
        field_manager: Some(manager.into()),
        ..PatchParams::default()
    };
    api.patch(name, &params, &Patch::Merge(&patch))
        .await
        .unwrap()
}

fn config_maps(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &config_map_resource())
}

fn namespaces(client: &kube::Client) -> Api<DynamicObject> {
    Api::all_with(client.clone(), &namespace_resource())
}

#[test]
fn the_request_counter_tells_gets_from_lists_and_discovery() {
    let get = http::Method::GET;
    assert_eq!(live::classify(&get, "/api/v1", ""), live::Verb::Discovery);
    assert_eq!(
        live::classify(&get, "/apis/argoproj.io/v1alpha1", ""),
        live::Verb::Discovery
    );
    assert_eq!(
        live::classify(&get, "/api/v1/namespaces", ""),
        live::Verb::List
    );
    assert_eq!(
        live::classify(&get, "/api/v1/namespaces/a", ""),
        live::Verb::Get
    );
    assert_eq!(
        live::classify(&get, "/api/v1/namespaces/a/configmaps", ""),
        live::Verb::List
    );
    assert_eq!(
        live::classify(&get, "/api/v1/namespaces/a/configmaps/b", ""),
        live::Verb::Get
    );
    assert_eq!(
        live::classify(
            &get,
            "/apis/argoproj.io/v1alpha1/namespaces/a/applications",
            "watch=true&x=1"
        ),
        live::Verb::Watch
    );
    assert_eq!(
        live::classify(
            &get,
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/x",
            ""
        ),
        live::Verb::Get
    );
    assert_eq!(
        live::classify(&http::Method::PATCH, "/api/v1/namespaces/a", ""),
        live::Verb::Write
    );
}

#[tokio::test]
#[ignore = "needs a cluster (DEVOPS_STACK_TEST_KUBECONFIG): scripts/test.sh starts it"]
async fn a_stack_applies_reapplies_without_writes_diffs_prunes_and_destroys() {
    let path = kubeconfig();
    let cluster = Counting::new(path.clone()).await;
    let helper = helper_client(path).await;
    let id = unique("dst");
    let ns = id.clone();
    let state_ns = format!("{id}-state");
    let argocd = ArgoCdStandIn::start(&helper, &[&ns]).await;
    let body = async {
        let opts = options(&state_ns);

        // 1. Apply: everything is created; the Application waits until "Argo CD" reports it healthy.
        let (s, h) = stack(&id, &cluster, bundle(&id, &ns, 1, true));
        let report = s.apply(&run(&opts)).await.unwrap();
        let first = report.output(&h).unwrap();
        assert_eq!(first.changed.len(), 6, "{first:?}");
        assert_eq!(
            first.changed[0],
            format!("CustomResourceDefinition widgets.{id}.example.com")
        );
        assert_eq!(first.changed[1], format!("Namespace {ns}"));
        assert!(cluster.take().write > 0);

        // 2. The same inputs again, under the stack's lock: no write request at all. (The lock's
        // own Lease writes go through the helper's client, which is not counted.)
        let report = StackLock::scope(helper.clone(), &id, &opts, async |lock| {
            s.apply(&RunOptions::new().engine(KubeEngine::new(opts.clone()).lock(lock)))
                .await
        })
        .await
        .unwrap();
        let again = report.output(&h).unwrap();
        assert_eq!(
            cluster.take_writes(),
            Vec::<String>::new(),
            "write requests on an unchanged re-apply"
        );
        assert_eq!(again.unchanged.len(), 6);
        assert!(again.changed.is_empty());

        // 3. One Helm value changed: the diff shows that one key (not the status Argo CD wrote).
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
        let writes = cluster.take_writes();
        assert!(
            writes.iter().all(|w| w.contains("dryRun=All")),
            "a diff writes nothing but dry runs: {writes:?}"
        );

        // 4. The ConfigMap is no longer rendered: it is pruned.
        let (s, h) = stack(&id, &cluster, bundle(&id, &ns, 1, false));
        let report = s.apply(&run(&opts)).await.unwrap();
        assert_eq!(
            report.output(&h).unwrap().pruned,
            [format!("ConfigMap {ns}/cm")]
        );
        assert!(
            config_maps(&helper, &ns)
                .get_opt("cm")
                .await
                .unwrap()
                .is_none()
        );

        // 5. Destroy: nothing labelled with the stack is left, and the state is gone.
        s.destroy(&run(&opts)).await.unwrap();
        // A CRD may take a moment to finish deleting.
        let left = wait_none_labelled(&helper, &selector(&id), Duration::from_secs(60)).await;
        assert_eq!(left, Vec::<String>::new(), "objects left after destroy");
        assert!(
            config_maps(&helper, &state_ns)
                .get_opt(&format!("devops-stack-state-{id}"))
                .await
                .unwrap()
                .is_none()
        );
        // Destroying again is fine.
        s.destroy(&run(&opts)).await.unwrap();
    };
    with_cleanup(body, cleanup(&helper, &[&id], &[&ns, &state_ns])).await;
    argocd.shutdown().await;
}

/// The module of the drift tests: its namespace, an Application and a ConfigMap.
fn drift_bundle(ns: &str, revision: &str, with_image: bool) -> Vec<Value> {
    vec![
        namespace(ns),
        application(ns, revision, with_image),
        config_map(ns, "cm"),
    ]
}

#[tokio::test]
#[ignore = "needs a cluster (DEVOPS_STACK_TEST_KUBECONFIG): scripts/test.sh starts it"]
async fn a_hand_edited_managed_field_is_put_back_by_a_reapply() {
    let path = kubeconfig();
    let cluster = Counting::new(path.clone()).await;
    let helper = helper_client(path).await;
    let id = unique("dst-drift");
    let (ns, state_ns) = (id.clone(), format!("{id}-state"));
    let argocd = ArgoCdStandIn::start(&helper, &[&ns]).await;
    let body = async {
        let opts = options(&state_ns);
        apply(&id, &cluster, drift_bundle(&ns, "1.0.0", true), &opts).await;
        let apps = applications(&helper, &ns);
        edit(
            &apps,
            "app",
            "kubectl-edit",
            json!({"spec": {"source": {"targetRevision": "9.9.9"}}}),
        )
        .await;
        edit(
            &config_maps(&helper, &ns),
            "cm",
            "kubectl-edit",
            json!({"data": {"k": "edited"}}),
        )
        .await;

        cluster.take();
        apply(&id, &cluster, drift_bundle(&ns, "1.0.0", true), &opts).await;
        let app = apps.get("app").await.unwrap();
        assert_eq!(
            app.data["spec"]["source"]["targetRevision"], "1.0.0",
            "the hand edit of a field the stack manages is reverted"
        );
        let cm = config_maps(&helper, &ns).get("cm").await.unwrap();
        assert_eq!(cm.data["data"]["k"], "v");
        // Argo CD's status, written into the main object, is not drift and stays.
        assert_eq!(app.data["status"]["health"]["status"], "Healthy");
        let writes = cluster.take_writes();
        assert!(
            writes.len() <= 4,
            "only the two drifted objects (and the state) are written: {writes:?}"
        );

        // Converged: the next re-apply writes nothing.
        apply(&id, &cluster, drift_bundle(&ns, "1.0.0", true), &opts).await;
        assert_eq!(cluster.take_writes(), Vec::<String>::new());

        destroy(&id, &cluster, &opts).await.unwrap();
    };
    with_cleanup(body, cleanup(&helper, &[&id], &[&ns, &state_ns])).await;
    argocd.shutdown().await;
}

#[tokio::test]
#[ignore = "needs a cluster (DEVOPS_STACK_TEST_KUBECONFIG): scripts/test.sh starts it"]
async fn diff_shows_a_hand_edit_and_names_its_manager() {
    let path = kubeconfig();
    let cluster = Counting::new(path.clone()).await;
    let helper = helper_client(path).await;
    let id = unique("dst-ddiff");
    let (ns, state_ns) = (id.clone(), format!("{id}-state"));
    let argocd = ArgoCdStandIn::start(&helper, &[&ns]).await;
    let body = async {
        let opts = options(&state_ns);
        apply(&id, &cluster, drift_bundle(&ns, "1.0.0", true), &opts).await;
        let apps = applications(&helper, &ns);
        edit(
            &apps,
            "app",
            "kubectl-edit",
            json!({"spec": {"source": {"targetRevision": "9.9.9"}}}),
        )
        .await;
        let before = apps.get("app").await.unwrap();

        let deployer = Deployer::new(cluster.client.clone(), id.clone(), "objects", opts.clone());
        let diff = deployer
            .diff(drift_bundle(&ns, "1.0.0", true))
            .await
            .expect("a diff never fails because of the drift it exists to show");
        let text = diff.to_text();
        let app = diff.object("Application", "app").expect(&text);
        let paths: Vec<&str> = app.changes.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, ["spec.source.targetRevision"], "{text}");
        assert_eq!(app.changes[0].before, Some(json!("9.9.9")));
        assert_eq!(app.changes[0].after, Some(json!("1.0.0")));
        assert!(
            text.contains("kubectl-edit"),
            "the diff names who changed the field:\n{text}"
        );
        // A diff writes nothing: the hand edit is still there.
        let after = apps.get("app").await.unwrap();
        assert_eq!(
            after.metadata.resource_version,
            before.metadata.resource_version
        );

        destroy(&id, &cluster, &opts).await.unwrap();
    };
    with_cleanup(body, cleanup(&helper, &[&id], &[&ns, &state_ns])).await;
    argocd.shutdown().await;
}

#[tokio::test]
#[ignore = "needs a cluster (DEVOPS_STACK_TEST_KUBECONFIG): scripts/test.sh starts it"]
async fn fields_of_other_managers_are_kept_and_dropped_fields_are_removed() {
    let path = kubeconfig();
    let cluster = Counting::new(path.clone()).await;
    let helper = helper_client(path).await;
    let id = unique("dst-keep");
    let (ns, state_ns) = (id.clone(), format!("{id}-state"));
    let argocd = ArgoCdStandIn::start(&helper, &[&ns]).await;
    let body = async {
        let opts = options(&state_ns);
        apply(&id, &cluster, drift_bundle(&ns, "1.0.0", true), &opts).await;
        let apps = applications(&helper, &ns);
        edit(
            &apps,
            "app",
            "kubectl-annotate",
            json!({"metadata": {"labels": {"team": "platform"}, "annotations": {"example.com/note": "keep me"}}}),
        )
        .await;

        // The same inputs: the other manager's label and annotation stay.
        apply(&id, &cluster, drift_bundle(&ns, "1.0.0", true), &opts).await;
        let app = apps.get("app").await.unwrap();
        assert_eq!(
            app.labels().get("team").map(String::as_str),
            Some("platform")
        );
        assert_eq!(
            app.annotations()
                .get("example.com/note")
                .map(String::as_str),
            Some("keep me")
        );

        // The module stops rendering `valuesObject.image`: it is removed; the other manager's
        // fields and Argo CD's status stay.
        let report = apply(&id, &cluster, drift_bundle(&ns, "1.0.0", false), &opts).await;
        assert_eq!(
            report.changed,
            [format!("Application {ns}/app")],
            "{report:?}"
        );
        let app = apps.get("app").await.unwrap();
        let values = &app.data["spec"]["source"]["helm"]["valuesObject"];
        assert!(
            values.get("image").is_none(),
            "dropped field still there: {values}"
        );
        assert_eq!(values["replicas"], 1);
        assert_eq!(
            app.labels().get("team").map(String::as_str),
            Some("platform")
        );
        assert_eq!(
            app.annotations()
                .get("example.com/note")
                .map(String::as_str),
            Some("keep me")
        );
        assert_eq!(app.data["status"]["sync"]["status"], "Synced");

        destroy(&id, &cluster, &opts).await.unwrap();
    };
    with_cleanup(body, cleanup(&helper, &[&id], &[&ns, &state_ns])).await;
    argocd.shutdown().await;
}

#[tokio::test]
#[ignore = "needs a cluster (DEVOPS_STACK_TEST_KUBECONFIG): scripts/test.sh starts it"]
async fn nothing_drifted_means_zero_writes_despite_argocd_status() {
    let path = kubeconfig();
    let cluster = Counting::new(path.clone()).await;
    let helper = helper_client(path).await;
    let id = unique("dst-noop");
    let (ns, state_ns) = (id.clone(), format!("{id}-state"));
    let argocd = ArgoCdStandIn::start(&helper, &[&ns]).await;
    let body = async {
        let opts = options(&state_ns);
        apply(&id, &cluster, drift_bundle(&ns, "1.0.0", true), &opts).await;
        // Argo CD's controller wrote the status into the main object, with its own manager.
        let app = applications(&helper, &ns).get("app").await.unwrap();
        let managers: Vec<&str> = app
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .filter_map(|m| m.manager.as_deref())
            .collect();
        assert!(
            managers.contains(&argocd_standin::CONTROLLER_MANAGER),
            "{managers:?}"
        );
        assert_eq!(app.data["status"]["health"]["status"], "Healthy");

        cluster.take();
        for _ in 0..2 {
            let report = apply(&id, &cluster, drift_bundle(&ns, "1.0.0", true), &opts).await;
            assert_eq!(report.unchanged.len(), 3, "{report:?}");
            assert!(
                report.changed.is_empty() && report.pruned.is_empty(),
                "{report:?}"
            );
            assert_eq!(
                cluster.take_writes(),
                Vec::<String>::new(),
                "writes on a no-op re-apply"
            );
        }
        destroy(&id, &cluster, &opts).await.unwrap();
    };
    with_cleanup(body, cleanup(&helper, &[&id], &[&ns, &state_ns])).await;
    argocd.shutdown().await;
}

#[tokio::test]
#[ignore = "needs a cluster (DEVOPS_STACK_TEST_KUBECONFIG): scripts/test.sh starts it"]
async fn a_pre_existing_namespace_and_its_contents_survive_apply_and_destroy() {
    let path = kubeconfig();
    let cluster = Counting::new(path.clone()).await;
    let helper = helper_client(path).await;
    let id = unique("dst-userns");
    let (ns, state_ns) = (id.clone(), format!("{id}-state"));
    let body = async {
        let opts = options(&state_ns);
        // The user's namespace, with the user's data in it.
        create_namespace(&helper, &ns).await;
        let precious: DynamicObject = serde_json::from_value(config_map(&ns, "precious")).unwrap();
        config_maps(&helper, &ns)
            .create(&kube::api::PostParams::default(), &precious)
            .await
            .unwrap();

        // A module that renders that namespace (and a ConfigMap of its own in it).
        let objects = vec![namespace(&ns), config_map(&ns, "mine")];
        apply(&id, &cluster, objects, &opts).await;
        let live_ns = namespaces(&helper).get(&ns).await.unwrap();
        assert!(
            !live_ns.labels().contains_key(STACK_LABEL),
            "an existing namespace is used, not taken over: {:?}",
            live_ns.labels()
        );

        destroy(&id, &cluster, &opts).await.unwrap();
        let live_ns = namespaces(&helper).get_opt(&ns).await.unwrap();
        assert!(
            live_ns
                .as_ref()
                .is_some_and(|n| n.metadata.deletion_timestamp.is_none()),
            "the user's namespace was deleted: {live_ns:?}"
        );
        assert!(
            config_maps(&helper, &ns)
                .get_opt("precious")
                .await
                .unwrap()
                .is_some()
        );
        // What the stack did create in it is gone.
        assert!(
            config_maps(&helper, &ns)
                .get_opt("mine")
                .await
                .unwrap()
                .is_none()
        );
    };
    with_cleanup(body, cleanup(&helper, &[&id], &[&ns, &state_ns])).await;
}

#[tokio::test]
#[ignore = "needs a cluster (DEVOPS_STACK_TEST_KUBECONFIG): scripts/test.sh starts it"]
async fn a_colliding_stack_fails_before_any_write_and_names_the_owner() {
    let path = kubeconfig();
    let cluster_a = Counting::new(path.clone()).await;
    let cluster_b = Counting::new(path.clone()).await;
    let helper = helper_client(path).await;
    let a = unique("dst-sa");
    let b = unique("dst-sb");
    let ns = a.clone();
    let (state_a, state_b) = (format!("{a}-state"), format!("{b}-state"));
    let body = async {
        let (opts_a, opts_b) = (options(&state_a), options(&state_b));
        apply(
            &a,
            &cluster_a,
            vec![namespace(&ns), config_map(&ns, "shared")],
            &opts_a,
        )
        .await;
        let owned_before = config_maps(&helper, &ns).get("shared").await.unwrap();

        // Stack B renders A's ConfigMap (and one of its own, which must not be created).
        cluster_b.take();
        let (s, _) = stack(
            &b,
            &cluster_b,
            vec![config_map(&ns, "shared"), config_map(&ns, "b-only")],
        );
        let e = s
            .apply(&run(&opts_b))
            .await
            .expect_err("B must not take over A's ConfigMap");
        let text = e.to_string();
        assert!(
            text.contains(&a),
            "the error names the owner stack `{a}`: {text}"
        );
        assert!(
            text.contains("shared"),
            "the error names the object: {text}"
        );
        assert_eq!(
            cluster_b.take_writes(),
            Vec::<String>::new(),
            "B wrote before failing"
        );
        assert!(
            config_maps(&helper, &ns)
                .get_opt("b-only")
                .await
                .unwrap()
                .is_none()
        );
        let owned_after = config_maps(&helper, &ns).get("shared").await.unwrap();
        assert_eq!(owned_after.labels().get(STACK_LABEL), Some(&a));
        assert_eq!(
            owned_after.metadata.resource_version, owned_before.metadata.resource_version,
            "A's object is untouched"
        );
        destroy(&b, &cluster_b, &opts_b).await.unwrap();
        destroy(&a, &cluster_a, &opts_a).await.unwrap();
    };
    with_cleanup(
        body,
        cleanup(&helper, &[&a, &b], &[&ns, &state_a, &state_b]),
    )
    .await;
}

#[tokio::test]
#[ignore = "needs a cluster (DEVOPS_STACK_TEST_KUBECONFIG): scripts/test.sh starts it"]
async fn an_explicitly_adopted_object_moves_to_the_adopting_stack() {
    let path = kubeconfig();
    let cluster_a = Counting::new(path.clone()).await;
    let cluster_b = Counting::new(path.clone()).await;
    let helper = helper_client(path).await;
    let a = unique("dst-adopt-a");
    let b = unique("dst-adopt-b");
    let ns = a.clone();
    let (state_a, state_b) = (format!("{a}-state"), format!("{b}-state"));
    let body = async {
        let (opts_a, opts_b) = (options(&state_a), options(&state_b));
        // A namespace neither stack owns, so that nothing goes with it.
        create_namespace(&helper, &ns).await;
        apply(&a, &cluster_a, vec![config_map(&ns, "shared")], &opts_a).await;

        // Explicit, per object: B adopts `ConfigMap <ns>/shared` (without it B's apply fails,
        // see the collision test).
        let opts_b = opts_b.adopt(Adopt::object(
            "objects",
            "v1",
            "ConfigMap",
            Some(&ns),
            "shared",
        ));
        let report = apply(&b, &cluster_b, vec![config_map(&ns, "shared")], &opts_b).await;
        assert_eq!(report.adopted, [format!("ConfigMap {ns}/shared")]);
        let cms = config_maps(&helper, &ns);
        let shared = cms.get("shared").await.unwrap();
        assert_eq!(shared.labels().get(STACK_LABEL), Some(&b), "B adopted it");

        // A's destroy leaves B's object alone; B's destroy deletes it.
        destroy(&a, &cluster_a, &opts_a).await.unwrap();
        assert!(
            cms.get_opt("shared").await.unwrap().is_some(),
            "A deleted B's object"
        );
        destroy(&b, &cluster_b, &opts_b).await.unwrap();
        assert!(cms.get_opt("shared").await.unwrap().is_none());
    };
    with_cleanup(
        body,
        cleanup(&helper, &[&a, &b], &[&ns, &state_a, &state_b]),
    )
    .await;
}

#[tokio::test]
#[ignore = "needs a cluster (DEVOPS_STACK_TEST_KUBECONFIG): scripts/test.sh starts it"]
async fn an_object_relabelled_by_hand_survives_prune_and_destroy() {
    let path = kubeconfig();
    let cluster = Counting::new(path.clone()).await;
    let helper = helper_client(path).await;
    let id = unique("dst-relabel");
    let (ns, state_ns) = (id.clone(), format!("{id}-state"));
    let body = async {
        let opts = options(&state_ns);
        // A namespace the stack does not own, so that nothing goes with it.
        create_namespace(&helper, &ns).await;
        apply(
            &id,
            &cluster,
            vec![config_map(&ns, "a"), config_map(&ns, "b")],
            &opts,
        )
        .await;
        let cms = config_maps(&helper, &ns);
        // Someone takes `a` away from the stack (drops its label) and gives `b` to another stack.
        edit(
            &cms,
            "a",
            "kubectl-label",
            json!({"metadata": {"labels": {STACK_LABEL: null}}}),
        )
        .await;
        edit(
            &cms,
            "b",
            "kubectl-label",
            json!({"metadata": {"labels": {STACK_LABEL: "someone-else"}}}),
        )
        .await;

        // `a` is no longer rendered: prune leaves it alone, and says so. `b`, still rendered,
        // is no longer the module's: the apply refuses to take it back.
        let (s, _) = stack(&id, &cluster, vec![config_map(&ns, "b")]);
        let err = s.apply(&run(&opts)).await.unwrap_err().to_string();
        assert!(err.contains(&format!("v1 ConfigMap {ns}/b")), "{err}");
        let report = apply(&id, &cluster, Vec::new(), &opts).await;
        assert!(
            report.pruned.is_empty(),
            "pruned a relabelled object: {report:?}"
        );
        assert_eq!(
            report.left_alone,
            [format!("ConfigMap {ns}/a"), format!("ConfigMap {ns}/b")]
        );
        assert!(
            cms.get_opt("a").await.unwrap().is_some(),
            "prune deleted `a`"
        );

        destroy(&id, &cluster, &opts).await.unwrap();
        assert!(
            cms.get_opt("b").await.unwrap().is_some(),
            "destroy deleted `b`"
        );
    };
    with_cleanup(body, cleanup(&helper, &[&id], &[&ns, &state_ns])).await;
}

/// Applies an Application, then stops the stand-in ("Argo CD is gone") and destroys.
#[tokio::test]
#[ignore = "needs a cluster (DEVOPS_STACK_TEST_KUBECONFIG): scripts/test.sh starts it"]
async fn destroy_with_argocd_gone_fails_naming_the_application_and_its_finalizer() {
    let path = kubeconfig();
    let cluster = Counting::new(path.clone()).await;
    let helper = helper_client(path).await;
    let id = unique("dst-gone");
    let (ns, state_ns) = (id.clone(), format!("{id}-state"));
    let argocd = ArgoCdStandIn::start(&helper, &[&ns]).await;
    let body = async {
        let opts = options(&state_ns);
        apply(
            &id,
            &cluster,
            vec![namespace(&ns), application(&ns, "1.0.0", true)],
            &opts,
        )
        .await;
        argocd.stop_acting();
        let short = KubeOptions {
            wait_timeout: Duration::from_secs(8),
            ..opts.clone()
        };
        let e = destroy(&id, &cluster, &short)
            .await
            .expect_err("the Application keeps its finalizer while Argo CD is gone");
        let text = e.to_string();
        assert!(text.contains(&format!("Application {ns}/app")), "{text}");
        assert!(text.contains(RESOURCES_FINALIZER), "{text}");
        assert!(text.contains("StuckApplications::OrphanAfter"), "{text}");

        // Argo CD is back: the destroy goes through.
        argocd.resume();
        destroy(&id, &cluster, &opts).await.unwrap();
        assert_eq!(
            wait_none_labelled(&helper, &selector(&id), Duration::from_secs(30)).await,
            Vec::<String>::new()
        );
    };
    with_cleanup(body, cleanup(&helper, &[&id], &[&ns, &state_ns])).await;
    argocd.shutdown().await;
}

#[tokio::test]
#[ignore = "needs a cluster (DEVOPS_STACK_TEST_KUBECONFIG): scripts/test.sh starts it"]
async fn destroy_with_argocd_gone_can_orphan_the_application() {
    let path = kubeconfig();
    let cluster = Counting::new(path.clone()).await;
    let helper = helper_client(path).await;
    let id = unique("dst-orphan");
    let (ns, state_ns, dest) = (id.clone(), format!("{id}-state"), format!("{id}-dest"));
    let argocd = ArgoCdStandIn::start(&helper, &[&ns]).await;
    let body = async {
        let opts = options(&state_ns);
        apply(
            &id,
            &cluster,
            vec![namespace(&ns), application(&ns, "1.0.0", true)],
            &opts,
        )
        .await;
        // What "Argo CD" deployed for the Application, in its destination namespace.
        create_namespace(&helper, &dest).await;
        let mut deployed = config_map(&dest, "deployed");
        deployed["metadata"]["labels"] = json!({"app.kubernetes.io/instance": "app"});
        let deployed: DynamicObject = serde_json::from_value(deployed).unwrap();
        config_maps(&helper, &dest)
            .create(&kube::api::PostParams::default(), &deployed)
            .await
            .unwrap();
        argocd.stop_acting();

        // With Argo CD gone, the typed option removes the Application's resources finalizer
        // after a grace period and deletes it without cascading.
        let orphaning = KubeOptions {
            wait_timeout: Duration::from_secs(20),
            ..opts.clone()
        }
        .stuck_applications(StuckApplications::OrphanAfter(Duration::from_secs(2)));
        destroy(&id, &cluster, &orphaning).await.unwrap();
        assert!(
            applications(&helper, &ns)
                .get_opt("app")
                .await
                .unwrap()
                .is_none()
        );
        // Not cascaded: what it deployed is still there.
        assert!(
            config_maps(&helper, &dest)
                .get_opt("deployed")
                .await
                .unwrap()
                .is_some()
        );
        assert_eq!(
            wait_none_labelled(&helper, &selector(&id), Duration::from_secs(30)).await,
            Vec::<String>::new()
        );
    };
    with_cleanup(body, cleanup(&helper, &[&id], &[&ns, &state_ns, &dest])).await;
    argocd.shutdown().await;
}

/// Argo CD's CRDs that exist (whoever created them) are never written by the stand-in: their
/// resourceVersion and field managers do not change, and the Application CRD stays without a
/// status subresource when the tests created it.
#[tokio::test]
#[ignore = "needs a cluster (DEVOPS_STACK_TEST_KUBECONFIG): scripts/test.sh starts it"]
async fn argocd_crds_that_exist_are_left_alone() {
    let path = kubeconfig();
    let helper = helper_client(path).await;
    let first = ensure_argocd_crds(&helper, CrdSetup::from_env()).await;
    let crds: Api<DynamicObject> = Api::all_with(helper.clone(), &crd_resource());
    let snapshot = |list: Vec<DynamicObject>| -> Vec<(String, String, Vec<String>)> {
        list.into_iter()
            .filter(|c| {
                c.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.ends_with(".argoproj.io"))
            })
            .map(|c| {
                let managers = c
                    .metadata
                    .managed_fields
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|m| m.manager)
                    .collect();
                (
                    c.metadata.name.unwrap(),
                    c.metadata.resource_version.unwrap(),
                    managers,
                )
            })
            .collect()
    };
    let before = snapshot(crds.list(&ListParams::default()).await.unwrap().items);
    assert_eq!(before.len(), 3, "{before:?}");
    // Both setups, as a test of either mode would run them next.
    for setup in [CrdSetup::Minimal, CrdSetup::PreExisting] {
        let again = ensure_argocd_crds(&helper, setup).await;
        assert!(again.created.is_empty(), "{again:?}");
    }
    let standin = ArgoCdStandIn::start(&helper, &[]).await;
    standin.shutdown().await;
    let after = snapshot(crds.list(&ListParams::default()).await.unwrap().items);
    assert_eq!(before, after, "an existing Argo CD CRD was written");
    if !first.created.is_empty() {
        assert!(
            !first.status_subresource,
            "Argo CD's Application CRD has no status subresource"
        );
    }
    println!("Argo CD CRDs and their managers: {after:?}");
}

#[tokio::test]
#[ignore = "needs a cluster (DEVOPS_STACK_TEST_KUBECONFIG): scripts/test.sh starts it"]
async fn the_lock_refuses_a_second_concurrent_apply() {
    let path = kubeconfig();
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
        .apply(&RunOptions::new().engine(KubeEngine::new(opts.clone())))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("locked by `first-run`"), "{e}");
    // The run holding the lock goes through.
    let locked = RunOptions::new().engine(KubeEngine::new(opts).lock(first.clone()));
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
#[ignore = "needs a real Argo CD with nodes and the internet on the cluster (DEVOPS_STACK_TEST_ARGOCD=1): run by hand"]
async fn argocd_syncs_and_deletes_an_application() {
    let path = kubeconfig();
    assert_eq!(
        std::env::var("DEVOPS_STACK_TEST_ARGOCD").as_deref(),
        Ok("1"),
        "DEVOPS_STACK_TEST_ARGOCD is not 1: this test needs a real Argo CD with nodes and the \
         internet on the cluster of DEVOPS_STACK_TEST_KUBECONFIG; set it to 1 when it has them"
    );
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
    s.apply(&RunOptions::new().engine(KubeEngine::new(opts.clone())))
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
    s.destroy(&RunOptions::new().engine(KubeEngine::new(opts)))
        .await
        .unwrap();
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
