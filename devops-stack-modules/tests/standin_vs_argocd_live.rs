//! The stand-in cannot drift from Argo CD: the same scenario (a Traefik module applied, then
//! destroyed) runs against the fast tier's Argo CD stand-in
//! (`devops_stack_test::argocd_standin`) and against the real Argo CD of the
//! test environment, and the test compares what the engine observes on each: the status fields
//! it reads, the finalizer it relies on, how deletion ends, and the timings.
//!
//! Needs both tiers (`scripts/test.sh` starts them): `DEVOPS_STACK_TEST_KUBECONFIG` (a cluster
//! without Argo CD, where the stand-in plays it) and `DEVOPS_STACK_TEST_ARGOCD_*` (the cluster
//! running the real Argo CD, with its chart repository).

use devops_stack_test::argocd_standin;
use devops_stack_test::fixture_charts;
use devops_stack_test::real_argocd;

use devops_stack_core::k8s::KubeEngine;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use argocd_standin::{ArgoCdStandIn, applications};
use devops_stack_core::argocd::RESOURCES_FINALIZER;
use devops_stack_core::clusters::LocalCluster;
use devops_stack_core::interfaces::{ArgoCdTarget, ClusterRef, IN_CLUSTER};
use devops_stack_core::k8s::KubeOptions;
use devops_stack_core::{Input, RunOptions, Stack};
use devops_stack_modules::Traefik;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use serde_json::Value;

/// What the engine sees of one run of the scenario.
#[derive(Debug)]
struct Observed {
    /// `status.sync.status` and `status.health.status` once the apply returned.
    ready: (String, String),
    /// `status.sync.revision`.
    revision: Option<String>,
    /// The top-level keys of `status`.
    status_keys: BTreeSet<String>,
    /// The Application's finalizers once applied.
    finalizers: Vec<String>,
    /// Whether the apply's wait saw an operation running when it returned.
    operation_running: bool,
    apply: Duration,
    destroy: Duration,
    /// The Application after the destroy (it must be gone).
    left: bool,
    /// The chart's Deployment after the destroy (`None`: the side deploys nothing).
    workload_left: Option<bool>,
}

fn cluster(kubeconfig: PathBuf, name: &str) -> LocalCluster {
    LocalCluster {
        name: name.into(),
        base_domain: "example.com".into(),
        kubeconfig,
        context: None,
    }
}

/// Applies a Traefik of chart repository `repo` through the Applications of `argocd_ns`, reads
/// what Argo CD (or the stand-in) reported, destroys it and reads again.
async fn scenario(cluster: LocalCluster, argocd_ns: &str, repo: &str, id: &str) -> Observed {
    let client = cluster.connect().await.unwrap();
    let cluster: ClusterRef = Arc::new(cluster);
    let target = Input::value(ArgoCdTarget {
        namespace: argocd_ns.into(),
        project: "default".into(),
        destination_server: IN_CLUSTER.into(),
    });
    let mut stack = Stack::new(id);
    stack.add(
        Traefik::new(Input::value(cluster), target)
            .id(id)
            .namespace(id)
            .class_name(id)
            .chart_repository(repo),
    );
    let stack = stack.build().unwrap();
    let opts = RunOptions::new().engine(KubeEngine::new(KubeOptions {
        wait_timeout: Duration::from_secs(120),
        state_namespace: format!("{id}-state"),
        ..KubeOptions::default()
    }));
    let t = Instant::now();
    let report = stack.apply(&opts).await.unwrap();
    let apply = t.elapsed();
    assert!(report.is_success(), "{}", report.to_text());
    let apps = applications(&client, argocd_ns);
    let app = apps.get(id).await.unwrap();
    let status = &app.data["status"];
    let text = |v: &Value| v.as_str().unwrap_or("-").to_owned();
    let observed_ready = (
        text(&status["sync"]["status"]),
        text(&status["health"]["status"]),
    );
    let revision = status["sync"]["revision"].as_str().map(str::to_owned);
    let status_keys = status
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    let finalizers = app.metadata.finalizers.clone().unwrap_or_default();
    let operation_running = status["operationState"]["phase"] == "Running";
    let t = Instant::now();
    let gone = stack.destroy(&opts).await.unwrap();
    let destroy = t.elapsed();
    assert!(gone.is_success(), "{}", gone.to_text());
    let left = apps.get_opt(id).await.unwrap().is_some();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), id);
    let workload = deployments
        .get_opt(&format!("{id}-traefik"))
        .await
        .ok()
        .flatten()
        .is_some();
    Observed {
        ready: observed_ready,
        revision,
        status_keys,
        finalizers,
        operation_running,
        apply,
        destroy,
        left,
        workload_left: Some(workload),
    }
}

#[tokio::test]
#[ignore = "needs a cluster and the test environment's real Argo CD (DEVOPS_STACK_TEST_KUBECONFIG, DEVOPS_STACK_TEST_ARGOCD_*): scripts/test.sh starts them"]
async fn the_stand_in_and_the_real_argo_cd_look_the_same_to_the_engine() {
    let need = |k: &str| {
        devops_stack_test::live::required_var(
            k,
            "scripts/test.sh starts the fast and the real Argo CD tiers when the test environment \
             is built; or `eval \"$(bash scripts/testenv.sh env --name NAME)\"` for a cluster \
             without Argo CD and `eval \"$(bash scripts/testenv.sh env --name OTHER --argocd)\"` \
             for one with",
        )
    };
    let (fast, real) = (
        need("DEVOPS_STACK_TEST_KUBECONFIG"),
        need("DEVOPS_STACK_TEST_ARGOCD_KUBECONFIG"),
    );
    let crds = PathBuf::from(need("DEVOPS_STACK_TEST_ARGOCD_CRD_DIR"));
    let repo = fixture_charts::publish(
        &PathBuf::from(need("DEVOPS_STACK_TEST_ARGOCD_HELM")),
        &crds,
        &PathBuf::from(need("DEVOPS_STACK_TEST_ARGOCD_HELM_ROOT")),
        &need("DEVOPS_STACK_TEST_ARGOCD_HELM_REPO"),
        "fixtures",
    );
    let id = format!("cmp{:06x}", rand::random::<u32>() & 0xff_ffff);

    // The real Argo CD.
    let real_cluster = cluster(PathBuf::from(real), "real");
    let real_client = real_cluster.connect().await.unwrap();
    // it waits for the `default` project argocd-server makes
    real_argocd::install(&crds, &real_client).await;
    let real = scenario(
        real_cluster,
        real_argocd::ARGOCD_NS,
        &repo,
        &format!("{id}r"),
    )
    .await;

    // The stand-in, on the fast tier's cluster (no Argo CD there).
    let fast_cluster = cluster(PathBuf::from(fast), "fast");
    let fast_client = fast_cluster.connect().await.unwrap();
    let ns = format!("{id}-argocd");
    let namespaces: Api<Namespace> = Api::all(fast_client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await
        .unwrap();
    let standin = ArgoCdStandIn::start(&fast_client, &[&ns]).await;
    let mut stand = scenario(fast_cluster, &ns, &repo, &format!("{id}s")).await;
    standin.shutdown().await;
    let _ = namespaces.delete(&ns, &Default::default()).await;
    // The stand-in deploys nothing: there is no workload to compare.
    stand.workload_left = None;

    println!("real Argo CD: {real:#?}\nstand-in:     {stand:#?}");
    let real_only: Vec<_> = real.status_keys.difference(&stand.status_keys).collect();
    println!("status fields only the real Argo CD writes: {real_only:?}");

    // What the engine waits on: the same values.
    let ready = ("Synced".to_owned(), "Healthy".to_owned());
    assert_eq!(
        real.ready, ready,
        "the real Argo CD when the apply returned"
    );
    assert_eq!(stand.ready, ready, "the stand-in when the apply returned");
    assert!(
        !real.operation_running,
        "the apply returned while Argo CD's sync still ran"
    );
    // The fields the engine reads exist on both, and the revision is the chart version.
    for side in [&real, &stand] {
        assert!(side.status_keys.contains("sync") && side.status_keys.contains("health"));
        assert_eq!(
            side.revision.as_deref(),
            Some(devops_stack_modules::pins::TRAEFIK.version)
        );
    }
    // The stand-in writes nothing the real one does not.
    assert!(
        stand.status_keys.is_subset(&real.status_keys),
        "the stand-in writes status fields Argo CD does not: {:?}",
        stand
            .status_keys
            .difference(&real.status_keys)
            .collect::<Vec<_>>()
    );
    // The finalizer the engine's destroy relies on, processed by both.
    assert_eq!(real.finalizers, vec![RESOURCES_FINALIZER.to_owned()]);
    assert_eq!(stand.finalizers, real.finalizers);
    assert!(
        !real.left && !stand.left,
        "an Application outlived its destroy"
    );
    assert_eq!(
        real.workload_left,
        Some(false),
        "the real Argo CD deleted what it deployed before its finalizer went"
    );
    // Timings within reason: each side well inside the wait's timeout, and the stand-in not
    // hiding a delay the real one has by more than half a minute.
    for (what, real_t, stand_t) in [
        ("apply", real.apply, stand.apply),
        ("destroy", real.destroy, stand.destroy),
    ] {
        assert!(
            real_t < Duration::from_secs(60),
            "{what} on the real Argo CD: {real_t:?}"
        );
        assert!(
            real_t.abs_diff(stand_t) < Duration::from_secs(30),
            "{what}: real {real_t:?}, stand-in {stand_t:?}"
        );
    }
}
