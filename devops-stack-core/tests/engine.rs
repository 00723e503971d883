//! Request-level tests of the Kubernetes engine's ownership, convergence, speed and destroy
//! rules, against `FakeApi`, an in-memory API server that models server-side apply, field
//! ownership (`managedFields`), preconditions, finalizers and namespace deletion as a
//! kube-apiserver 1.28 does (see `devops_stack_test::fake_api`).

use devops_stack_test::fake_api;

use devops_stack_core::k8s::{KubeEngine, KubeError};
use std::time::Duration;

use devops_stack_core::interfaces::{Cluster, ClusterRef};
use devops_stack_core::k8s::{
    Adopt, Deployer, DiffAction, KubeOptions, MODULE_LABEL, RemovedModules, Retry, STACK_LABEL,
    StuckApplications, diff_stack,
};
use devops_stack_core::{
    BoxError, Context, Input, Module, ModuleResult, Needs, Planned, Resource, RunOptions, Stack,
};
use fake_api::{FakeApi, NamespaceDeletion, writes};
use futures::future::BoxFuture;
use serde_json::{Value, json};

const APP: &str = "argoproj.io/v1alpha1";

fn options() -> KubeOptions {
    KubeOptions {
        wait: false,
        ..KubeOptions::default()
    }
}

fn deployer(fake: &FakeApi, stack: &str, module: &str, options: KubeOptions) -> Deployer {
    Deployer::new(fake.client(), stack, module, options).retry(
        Retry::default()
            .min_delay(Duration::from_millis(1))
            .max_delay(Duration::from_millis(2)),
    )
}

fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

fn config_map(ns: &str, name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": data})
}

fn application(ns: &str, name: &str, revision: &str) -> Value {
    json!({"apiVersion": APP, "kind": "Application", "metadata": {"name": name, "namespace": ns},
        "spec": {"project": "default",
            "destination": {"server": "https://kubernetes.default.svc", "namespace": name},
            "source": {"repoURL": "https://charts.example.com", "chart": name, "targetRevision": revision,
                "helm": {"valuesObject": {"replicas": 1}}}}})
}

/// A namespace `web`, an Application in `argocd` and `n` ConfigMaps.
fn bundle(n: usize, revision: &str) -> Vec<Value> {
    let mut v = vec![namespace("web"), application("argocd", "web", revision)];
    v.extend((0..n).map(|i| config_map("web", &format!("cm-{i}"), json!({"i": i.to_string()}))));
    v
}

fn fake() -> FakeApi {
    let fake = FakeApi::new().with_argocd_crds();
    fake.insert(namespace("argocd"));
    fake.take_log();
    fake
}

fn labels_of(o: &Value) -> (Option<&str>, Option<&str>) {
    (
        o["metadata"]["labels"][STACK_LABEL].as_str(),
        o["metadata"]["labels"][MODULE_LABEL].as_str(),
    )
}

#[tokio::test]
async fn an_unchanged_reapply_reads_one_list_per_kind_and_namespace_and_writes_nothing() {
    let fake = fake();
    let d = deployer(&fake, "s", "m", options());
    let first = d.apply(bundle(20, "1.0.0")).await.unwrap();
    assert_eq!(first.changed.len(), 22, "{first:?}");
    let log = fake.take_log();
    assert_eq!(
        log.iter()
            .filter(|l| l.starts_with("GET /api/v1/namespaces/web/configmaps/"))
            .count(),
        0,
        "no GET per object: {log:#?}"
    );

    let again = d.apply(bundle(20, "1.0.0")).await.unwrap();
    let log = fake.take_log();
    assert_eq!(writes(&log), Vec::<String>::new(), "{log:#?}");
    assert_eq!(again.unchanged.len(), 22);
    assert!(again.changed.is_empty() && again.reverted.is_empty());
    let object_reads: Vec<&String> = log
        .iter()
        .filter(|l| {
            l.contains("/namespaces/web/")
                || l.contains("/namespaces/argocd/applications")
                || l.contains("/namespaces/web")
        })
        .collect();
    assert_eq!(
        object_reads.len(),
        3,
        "one LIST of ConfigMaps in `web`, one GET of the Application and of the Namespace: {log:#?}"
    );
    assert!(
        log.len() <= 8,
        "lease, state, discovery and the reads: {log:#?}"
    );
}

#[tokio::test]
async fn writes_go_in_parallel_within_the_in_flight_bound() {
    let fake = fake().with_latency(Duration::from_millis(20));
    let d = deployer(&fake, "s", "m", options().max_in_flight(8));
    d.apply(bundle(40, "1.0.0")).await.unwrap();
    let most = fake.max_in_flight();
    assert!((2..=8).contains(&most), "{most} requests in flight at most");
}

#[tokio::test]
async fn a_hand_edit_of_a_managed_field_is_put_back_and_nothing_else_is_touched() {
    let fake = fake();
    let d = deployer(&fake, "s", "m", options());
    d.apply(bundle(2, "1.0.0")).await.unwrap();
    // By hand: a managed field changed, and a label of another tool added.
    fake.edit(
        APP,
        "Application",
        "argocd",
        "web",
        json!({"metadata": {"labels": {"team": "blue"}}, "spec": {"source": {"targetRevision": "6.6.6"}}}),
        "kubectl-edit",
    )
    .unwrap();
    // Argo CD writes its status into the main object: not drift.
    fake.mark_applications(true, true);

    let diff = d.diff(bundle(2, "1.0.0")).await.unwrap();
    let app = diff.object("Application", "web").unwrap();
    assert_eq!(app.action, DiffAction::Update, "{}", diff.to_text());
    let paths: Vec<&str> = app.changes.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(paths, ["spec.source.targetRevision"], "{}", diff.to_text());
    assert_eq!(app.changes[0].changed_by, ["kubectl-edit"]);
    assert!(
        diff.to_text()
            .contains("\"6.6.6\" -> \"1.0.0\" (changed by kubectl-edit; the apply puts it back)"),
        "{}",
        diff.to_text()
    );
    fake.take_log();

    let report = d.apply(bundle(2, "1.0.0")).await.unwrap();
    assert_eq!(report.reverted, ["Application argocd/web"]);
    let log = fake.take_log();
    assert_eq!(
        writes(&log),
        [
            "PATCH /apis/argoproj.io/v1alpha1/namespaces/argocd/applications/web?force=true&fieldManager=devops-stack"
        ],
        "one forced apply of the Application; its fields are the module's again, as recorded, so the state is not written"
    );
    let app = fake.get(APP, "Application", "argocd", "web").unwrap();
    assert_eq!(app["spec"]["source"]["targetRevision"], "1.0.0");
    assert_eq!(
        app["metadata"]["labels"]["team"], "blue",
        "another manager's field stays"
    );
    assert_eq!(
        app["status"]["health"]["status"], "Healthy",
        "Argo CD's status stays"
    );

    // Converged: nothing to write, even with Argo CD updating its status again.
    fake.mark_applications(true, false);
    d.apply(bundle(2, "1.0.0")).await.unwrap();
    assert_eq!(writes(&fake.take_log()), Vec::<String>::new());
}

#[tokio::test]
async fn a_field_the_module_stops_rendering_is_removed_and_a_changed_field_of_another_manager_conflicts()
 {
    let fake = fake();
    let d = deployer(&fake, "s", "m", options());
    let mut objects = vec![
        namespace("web"),
        config_map("web", "c", json!({"a": "1", "b": "2"})),
    ];
    d.apply(objects.clone()).await.unwrap();
    objects[1]["data"] = json!({"a": "1"});
    d.apply(objects.clone()).await.unwrap();
    let cm = fake.get("v1", "ConfigMap", "web", "c").unwrap();
    assert_eq!(cm["data"], json!({"a": "1"}));

    // Another tool takes a field the module never rendered; the module then renders it too:
    // a conflict on a field the engine never owned stays an error.
    fake.edit(
        "v1",
        "ConfigMap",
        "web",
        "c",
        json!({"data": {"z": "theirs"}}),
        "helm",
    )
    .unwrap();
    objects[1]["data"] = json!({"a": "1", "z": "mine"});
    let err = d.apply(objects).await.unwrap_err();
    assert!(
        matches!(err.kubernetes(), Some(KubeError::FieldConflict { managers, .. }) if managers == &["helm"]),
        "{err}"
    );
}

#[tokio::test]
async fn an_existing_namespace_is_used_not_owned_and_survives_destroy_with_its_content() {
    let fake = fake();
    fake.insert(namespace("loki"));
    fake.insert(config_map("loki", "precious", json!({"k": "v"})));
    let d = deployer(&fake, "s", "loki", options());
    let objects = vec![
        namespace("loki"),
        config_map("loki", "loki-config", json!({"a": "b"})),
    ];

    let diff = d.diff(objects.clone()).await.unwrap();
    assert_eq!(
        diff.object("Namespace", "loki").unwrap().action,
        DiffAction::NotManaged
    );
    assert!(
        diff.to_text()
            .contains("= v1 Namespace loki (exists, not managed by this stack)")
    );

    let report = d.apply(objects).await.unwrap();
    assert_eq!(report.not_managed, ["Namespace loki"]);
    let ns = fake.get("v1", "Namespace", None, "loki").unwrap();
    assert_eq!(labels_of(&ns), (None, None), "not labelled");
    let recorded = d.recorded().await.unwrap().unwrap();
    assert!(
        !recorded
            .objects
            .iter()
            .any(|e| e.object.kind == "Namespace"),
        "not recorded"
    );

    let destroyed = d.destroy().await.unwrap();
    assert_eq!(destroyed.deleted, ["ConfigMap loki/loki-config"]);
    assert!(fake.get("v1", "Namespace", None, "loki").is_some());
    assert!(fake.get("v1", "ConfigMap", "loki", "precious").is_some());
}

#[tokio::test]
async fn a_second_stack_fails_before_any_write_naming_the_first_as_owner() {
    let fake = fake();
    let a = deployer(&fake, "sa", "traefik", options());
    a.apply(bundle(1, "1.0.0")).await.unwrap();
    fake.take_log();

    let b = deployer(&fake, "sb", "traefik", options());
    let err = b.apply(bundle(1, "1.0.0")).await.unwrap_err();
    assert_eq!(
        writes(&fake.take_log()),
        Vec::<String>::new(),
        "no write at all"
    );
    let Some(KubeError::NotOwned { module, objects }) = err.kubernetes() else {
        panic!("{err}")
    };
    assert_eq!(module, "traefik");
    let names: Vec<&str> = objects.iter().map(|c| c.object.as_str()).collect();
    assert_eq!(
        names,
        [
            "argoproj.io/v1alpha1 Application argocd/web",
            "v1 ConfigMap web/cm-0"
        ],
        "the namespace is used, the rest conflicts: {err}"
    );
    assert!(
        objects[0].owner.contains("stack `sa`, module `traefik`"),
        "{err}"
    );
    assert!(
        objects[0]
            .managers
            .iter()
            .any(|m| m.starts_with("devops-stack")),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("Adopt::object(\"traefik\""), "{text}");
    assert!(text.contains("another name or namespace"), "{text}");
    // A is untouched.
    let app = fake.get(APP, "Application", "argocd", "web").unwrap();
    assert_eq!(labels_of(&app), (Some("sa"), Some("traefik")));

    // The diff shows the conflicts instead of failing.
    let diff = b.diff(bundle(1, "1.0.0")).await.unwrap();
    assert_eq!(
        diff.object("Application", "web").unwrap().action,
        DiffAction::Conflict
    );
}

#[tokio::test]
async fn an_adopted_object_changes_owner_and_the_old_owner_leaves_it_alone() {
    let fake = fake();
    let a = deployer(&fake, "sa", "traefik", options());
    a.apply(bundle(1, "1.0.0")).await.unwrap();

    let adopt = options()
        .adopt(Adopt::object(
            "traefik",
            APP,
            "Application",
            Some("argocd"),
            "web",
        ))
        .adopt(Adopt::object(
            "traefik",
            "v1",
            "ConfigMap",
            Some("web"),
            "cm-0",
        ));
    let b = deployer(&fake, "sb", "traefik", adopt);
    let diff = b.diff(bundle(1, "2.0.0")).await.unwrap();
    assert_eq!(
        diff.object("Application", "web").unwrap().action,
        DiffAction::Adopt
    );
    let report = b.apply(bundle(1, "2.0.0")).await.unwrap();
    assert_eq!(
        report.adopted,
        ["Application argocd/web", "ConfigMap web/cm-0"]
    );
    let app = fake.get(APP, "Application", "argocd", "web").unwrap();
    assert_eq!(labels_of(&app), (Some("sb"), Some("traefik")));
    assert_eq!(app["spec"]["source"]["targetRevision"], "2.0.0");

    let destroyed = a.destroy().await.unwrap();
    assert_eq!(
        destroyed.left_alone,
        ["Application argocd/web", "ConfigMap web/cm-0"],
        "{destroyed:?}"
    );
    assert_eq!(destroyed.deleted, ["Namespace web"]);
    assert!(fake.get(APP, "Application", "argocd", "web").is_some());
}

#[tokio::test]
async fn an_object_relabelled_by_hand_survives_prune_and_destroy() {
    let fake = fake();
    let d = deployer(&fake, "s", "m", options());
    d.apply(bundle(3, "1.0.0")).await.unwrap();
    for name in ["cm-1", "cm-2"] {
        fake.edit(
            "v1",
            "ConfigMap",
            "web",
            name,
            json!({"metadata": {"labels": {STACK_LABEL: "mine-now"}}}),
            "kubectl-edit",
        )
        .unwrap();
    }
    // cm-2 is no longer rendered: the prune leaves it alone.
    let mut objects = bundle(3, "1.0.0");
    objects.pop();
    let report = d.apply(objects).await;
    // cm-1 is still rendered, and no longer the module's: a conflict.
    let err = report.unwrap_err();
    assert!(err.to_string().contains("ConfigMap web/cm-1"), "{err}");

    let mut objects = bundle(3, "1.0.0");
    objects.truncate(3); // namespace, application, cm-0
    let report = d.apply(objects).await.unwrap();
    assert_eq!(
        report.left_alone,
        ["ConfigMap web/cm-1", "ConfigMap web/cm-2"]
    );
    assert!(report.pruned.is_empty());
    let destroyed = d.destroy().await.unwrap();
    assert!(
        destroyed.left_alone.is_empty(),
        "no longer recorded: {destroyed:?}"
    );
    // The namespace went, and its content with it: the engine deleted the namespace it owned,
    // as the user asked by destroying the module. What it did not own it did not delete itself.
    assert!(destroyed.deleted.contains(&"Namespace web".to_owned()));
}

#[tokio::test]
async fn a_state_configmap_of_someone_else_is_refused() {
    let fake = fake();
    fake.insert(namespace("devops-stack-system"));
    fake.insert(config_map(
        "devops-stack-system",
        "devops-stack-state-s",
        json!({"m": "{}"}),
    ));
    let err = deployer(&fake, "s", "m", options())
        .apply(bundle(0, "1.0.0"))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("is not the state of stack `s`"),
        "{err}"
    );
}

#[tokio::test]
async fn without_argo_cd_destroy_names_the_finalizer_and_the_option_that_orphans() {
    let fake = fake(); // no Argo CD controller: finalizers stay
    let d = deployer(
        &fake,
        "s",
        "m",
        KubeOptions {
            wait_timeout: Duration::from_millis(300),
            ..KubeOptions::default()
        },
    );
    let objects = vec![namespace("web"), application("argocd", "web", "1.0.0")];
    d.apply(objects.clone()).await.unwrap_err(); // not Healthy: no Argo CD
    let err = d.destroy().await.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err.kubernetes(), Some(KubeError::NotDeleted { .. })),
        "{text}"
    );
    assert!(text.contains("Application argocd/web"), "{text}");
    assert!(
        text.contains("resources-finalizer.argocd.argoproj.io"),
        "{text}"
    );
    assert!(text.contains("StuckApplications::OrphanAfter"), "{text}");

    let orphaning = deployer(
        &fake,
        "s",
        "m",
        KubeOptions {
            wait_timeout: Duration::from_secs(5),
            stuck_applications: StuckApplications::OrphanAfter(Duration::from_millis(200)),
            ..KubeOptions::default()
        },
    );
    let report = orphaning.destroy().await.unwrap();
    assert_eq!(report.orphaned.len(), 1, "{report:?}");
    assert!(
        report.orphaned[0].starts_with("Application argocd/web (left in place:"),
        "{report:?}"
    );
    assert!(fake.get(APP, "Application", "argocd", "web").is_none());
    assert!(fake.get("v1", "Namespace", None, "web").is_none());
}

// ---------------------------------------------------------------------------------------------
// Stacks: removed modules, deferred namespace deletion

#[derive(Clone)]
struct FakeCluster {
    client: kube::Client,
}

impl std::fmt::Debug for FakeCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FakeCluster")
    }
}

impl Cluster for FakeCluster {
    fn name(&self) -> &str {
        "fake"
    }
    fn base_domain(&self) -> &str {
        "example.com"
    }
    fn client(&self) -> BoxFuture<'_, Result<kube::Client, BoxError>> {
        Box::pin(async { Ok(self.client.clone()) })
    }
}

/// Applies its objects to the fake cluster.
struct Objects {
    id: String,
    cluster: Input<ClusterRef>,
    after: Vec<Input<()>>,
    objects: Vec<Value>,
}

impl Module for Objects {
    type Output = ();
    fn id(&self) -> &str {
        &self.id
    }
    fn kind(&self) -> &'static str {
        "objects"
    }
    fn needs(&self, needs: &mut Needs) {
        needs.add(&self.cluster);
        needs.add(&self.after);
    }
    async fn plan(&self, _: &Context) -> ModuleResult<Planned<()>> {
        Ok(Planned::new(())
            .with_resources(self.objects.iter().map(|o| Resource::kubernetes("fake", o))))
    }
    async fn apply(&self, ctx: &Context) -> ModuleResult<()> {
        for a in &self.after {
            ctx.get(a)?;
        }
        let cluster = ctx.get(&self.cluster)?;
        Deployer::for_module(ctx, &cluster)
            .await?
            .apply(self.objects.clone())
            .await?;
        Ok(())
    }
    async fn destroy(&self, ctx: &Context) -> ModuleResult<()> {
        let cluster = ctx.get(&self.cluster)?;
        Deployer::for_module(ctx, &cluster).await?.destroy().await?;
        Ok(())
    }
}

/// The cluster as a constant input.
fn cluster_input(fake: &FakeApi) -> Input<ClusterRef> {
    Input::value(std::sync::Arc::new(FakeCluster {
        client: fake.client(),
    }) as ClusterRef)
}

/// A stack with module `base` (namespace `base`) and, when `with_extra`, module `extra`
/// (namespace `extra`, after `base`) and `leaf` (after `extra`).
fn stack(fake: &FakeApi, with_extra: bool) -> devops_stack_core::BuiltStack {
    let mut s = Stack::new("s");
    let cluster = cluster_input(fake);
    let base = s.add(Objects {
        id: "base".into(),
        cluster: cluster.clone(),
        after: Vec::new(),
        objects: vec![namespace("base"), config_map("base", "b", json!({}))],
    });
    if with_extra {
        let extra = s.add(Objects {
            id: "extra".into(),
            cluster: cluster.clone(),
            after: vec![base.input()],
            objects: vec![namespace("extra"), config_map("extra", "e", json!({}))],
        });
        s.add(Objects {
            id: "leaf".into(),
            cluster,
            after: vec![extra.input()],
            objects: vec![config_map("extra", "leaf", json!({}))],
        });
    }
    s.build().unwrap()
}

#[tokio::test]
async fn modules_taken_out_of_the_stack_are_shown_then_destroyed_dependents_first() {
    let fake = fake();
    let run = RunOptions::new().engine(KubeEngine::new(options()));
    stack(&fake, true).apply(&run).await.unwrap();
    assert!(fake.get("v1", "ConfigMap", "extra", "leaf").is_some());

    let smaller = stack(&fake, false);
    let live = smaller.read(&RunOptions::new()).await.unwrap();
    let cluster: ClusterRef = std::sync::Arc::new(FakeCluster {
        client: fake.client(),
    });
    let diff = diff_stack(&smaller, &live, &[cluster], &options())
        .await
        .unwrap();
    let removed: Vec<&str> = diff
        .modules
        .iter()
        .filter(|m| m.removed)
        .map(|m| m.module.as_str())
        .collect();
    assert_eq!(removed, ["extra", "leaf"]);
    assert!(
        diff.to_text()
            .contains("[leaf] on cluster `fake` (no longer in the stack: to be destroyed)")
    );

    // Orphaning on purpose keeps everything.
    let keep = RunOptions::new().engine(KubeEngine::new(
        options().removed_modules(RemovedModules::Orphan),
    ));
    let report = smaller.apply(&keep).await.unwrap();
    assert!(report.removed.is_empty());
    assert!(fake.get("v1", "ConfigMap", "extra", "leaf").is_some());

    fake.take_log();
    let report = smaller.apply(&run).await.unwrap();
    assert_eq!(report.removed, ["leaf", "extra"], "dependents first");
    let log = fake.take_log();
    let leaf = log
        .iter()
        .position(|l| l.starts_with("DELETE /api/v1/namespaces/extra/configmaps/leaf"))
        .unwrap();
    let ns = log
        .iter()
        .position(|l| l.starts_with("DELETE /api/v1/namespaces/extra"))
        .unwrap();
    assert!(leaf < ns || log[ns].contains("configmaps/leaf"), "{log:#?}");
    assert!(fake.get("v1", "Namespace", None, "extra").is_none());
    assert!(fake.get("v1", "ConfigMap", "base", "b").is_some());
    let state = fake
        .get(
            "v1",
            "ConfigMap",
            "devops-stack-system",
            "devops-stack-state-s",
        )
        .unwrap();
    let keys: Vec<&String> = state["data"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["base"]);
}

#[tokio::test]
async fn a_stack_destroy_removes_recorded_modules_and_waits_for_namespaces_at_the_end() {
    let fake = fake().namespace_deletion(NamespaceDeletion::After(Duration::from_millis(300)));
    let run = RunOptions::new().engine(KubeEngine::new(KubeOptions {
        wait_timeout: Duration::from_secs(10),
        ..options().wait(true)
    }));
    stack(&fake, true)
        .apply(&RunOptions::new().engine(KubeEngine::new(options())))
        .await
        .unwrap();
    // The smaller stack's destroy also destroys `extra` and `leaf`, which it no longer has.
    let started = std::time::Instant::now();
    let report = stack(&fake, false).destroy(&run).await.unwrap();
    assert_eq!(report.removed, ["leaf", "extra"]);
    // The namespaces terminate together in the background (300 ms each), not one after another.
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    let left: Vec<String> = fake
        .names()
        .into_iter()
        .filter(|n| n.contains("base") || n.contains("extra"))
        .collect();
    assert_eq!(
        left,
        Vec::<String>::new(),
        "the run ends when everything is gone"
    );
    assert!(
        fake.get(
            "v1",
            "ConfigMap",
            "devops-stack-system",
            "devops-stack-state-s"
        )
        .is_none()
    );
}

#[tokio::test]
async fn secret_values_are_compared_not_hashed() {
    let fake = fake();
    let d = deployer(&fake, "s", "m", options());
    let secret = |v: &str| json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds", "namespace": "web"}, "stringData": {"password": v}});
    d.apply(vec![namespace("web"), secret("hunter2")])
        .await
        .unwrap();
    let live = fake.get("v1", "Secret", "web", "creds").unwrap();
    let state = serde_json::to_string(&d.recorded().await.unwrap().unwrap()).unwrap();
    let hash = live["metadata"]["annotations"]["devops-stack.io/content-hash"].clone();
    fake.take_log();

    // Unchanged: no write.
    d.apply(vec![namespace("web"), secret("hunter2")])
        .await
        .unwrap();
    assert_eq!(writes(&fake.take_log()), Vec::<String>::new());
    // A new value is applied, though the hash (which leaves values out) is the same.
    let report = d
        .apply(vec![namespace("web"), secret("new-one")])
        .await
        .unwrap();
    assert_eq!(report.changed, ["Secret web/creds"]);
    let live = fake.get("v1", "Secret", "web", "creds").unwrap();
    assert_eq!(live["data"]["password"], "bmV3LW9uZQ==");
    assert_eq!(
        live["metadata"]["annotations"]["devops-stack.io/content-hash"],
        hash
    );
    // A value changed by hand is put back.
    fake.edit(
        "v1",
        "Secret",
        "web",
        "creds",
        json!({"data": {"password": "eA=="}}),
        "kubectl-edit",
    )
    .unwrap();
    d.apply(vec![namespace("web"), secret("new-one")])
        .await
        .unwrap();
    let live = fake.get("v1", "Secret", "web", "creds").unwrap();
    assert_eq!(live["data"]["password"], "bmV3LW9uZQ==");
    // Neither the values nor anything derived from them alone is in the state.
    assert!(
        !state.contains("hunter2") && !state.contains("aHVudGVyMg=="),
        "{state}"
    );
}
