//! A fleet on three API servers of the test environment: the hub runs the real Argo CD, spokes
//! A and B are clusters of their own (kwok nodes, no Argo CD). Each client counts its requests.
//!
//! - One apply registers both spokes (a ServiceAccount token made on each, Argo CD's cluster
//!   Secret on the hub) and deploys each spoke's modules; the hub's Argo CD syncs them to the
//!   spokes, and every object it deploys lands on its own spoke only. Wave 1 (A) is checked
//!   Synced and Healthy before wave 2 (B) starts. A re-apply sends 0 writes to all three.
//! - Removing spoke B from the definition deletes B's Applications (Argo CD, still registered
//!   with B, deletes what they deployed there), then B's registration; spoke A gets 0 writes.
//! - A failure in wave 1 leaves wave 2's spoke untouched: nothing of the stack on its server.
//! - A spoke whose API server does not answer fails alone, `Unreachable` naming it; the hub
//!   and the other spoke complete.
//!
//! Needs `DEVOPS_STACK_TEST_ARGOCD_*` (the hub) and `DEVOPS_STACK_TEST_SPOKE_A_KUBECONFIG`,
//! `DEVOPS_STACK_TEST_SPOKE_B_KUBECONFIG` (two clusters without Argo CD): `scripts/test.sh`
//! starts them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use devops_stack_core::clusters::LocalCluster;
use devops_stack_core::interfaces::{ArgoCdTarget, Cluster, ClusterRef, IN_CLUSTER};
use devops_stack_core::k8s::{KubeEngine, KubeError, KubeOptions, STACK_LABEL, diff_stack};
use devops_stack_core::{
    BoxError, Capability, Context, Error, Input, Interface, Module, ModuleResult, Planned,
    RunOptions, Stack, Status, Validation,
};
use devops_stack_modules::fleet::{Fleet, FleetHandles, SpokeSpec};
use devops_stack_modules::{MetricsServer, Traefik};
use devops_stack_test::live::{Counting, delete_labelled, labelled_everywhere, required_var};
use devops_stack_test::{fixture_charts, real_argocd};
use futures::future::BoxFuture;
use kube::api::{Api, DynamicObject, ListParams};
use kube::discovery::ApiResource;
use serde::{Serialize, Serializer};

fn need(var: &str) -> String {
    required_var(
        var,
        "scripts/test.sh starts the hub (the real Argo CD tier) and the two spokes; or \
         `eval \"$(bash scripts/testenv.sh env --name HUB --argocd)\"` and \
         `eval \"$(bash scripts/testenv.sh env --name A --prefix SPOKE_A)\"` (and B)",
    )
}

/// A cluster of the test environment whose client counts its requests, under its own name.
#[derive(Clone, Debug)]
struct Counted {
    name: String,
    server: String,
    counting: Counting,
}

impl Serialize for Counted {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name)
    }
}

impl Cluster for Counted {
    fn name(&self) -> &str {
        &self.name
    }
    fn base_domain(&self) -> &str {
        "example.com"
    }
    fn server(&self) -> Option<String> {
        Some(self.server.clone())
    }
    fn client(&self) -> BoxFuture<'_, Result<kube::Client, BoxError>> {
        Box::pin(async move { Ok(self.counting.client.clone()) })
    }
}

impl Counted {
    async fn new(name: &str, kubeconfig: &Path) -> Counted {
        let local = LocalCluster {
            name: name.into(),
            base_domain: "example.com".into(),
            kubeconfig: kubeconfig.to_owned(),
            context: None,
        };
        Counted {
            name: name.into(),
            server: local.server().expect("the kubeconfig names its server"),
            counting: Counting::new(kubeconfig.to_owned()).await,
        }
    }

    fn writes(&self) -> Vec<String> {
        self.counting.take_writes()
    }
}

/// A cluster that exists already, as a module.
struct Given(Counted);

impl Module for Given {
    type Output = Counted;
    fn id(&self) -> &str {
        &self.0.name
    }
    fn kind(&self) -> &'static str {
        "cluster"
    }
    fn validate(&self, v: &mut Validation) {
        v.provides(Capability::Interface(Interface::Cluster));
    }
    async fn plan(&self, _: &Context) -> ModuleResult<Planned<Counted>> {
        Ok(Planned::new(self.0.clone()))
    }
    async fn apply(&self, _: &Context) -> ModuleResult<Counted> {
        Ok(self.0.clone())
    }
    async fn destroy(&self, _: &Context) -> ModuleResult<()> {
        Ok(())
    }
}

struct Env {
    hub: Counted,
    a: Counted,
    b: Counted,
    repo: String,
}

async fn env(id: &str) -> Env {
    let crds = PathBuf::from(need("DEVOPS_STACK_TEST_ARGOCD_CRD_DIR"));
    let repo = fixture_charts::publish(
        &PathBuf::from(need("DEVOPS_STACK_TEST_ARGOCD_HELM")),
        &crds,
        &PathBuf::from(need("DEVOPS_STACK_TEST_ARGOCD_HELM_ROOT")),
        &need("DEVOPS_STACK_TEST_ARGOCD_HELM_REPO"),
        "fixtures",
    );
    let hub = Counted::new(
        "hub",
        Path::new(&need("DEVOPS_STACK_TEST_ARGOCD_KUBECONFIG")),
    )
    .await;
    real_argocd::install(&crds, &hub.counting.client).await;
    let a = Counted::new(
        &format!("{id}a"),
        Path::new(&need("DEVOPS_STACK_TEST_SPOKE_A_KUBECONFIG")),
    )
    .await;
    let b = Counted::new(
        &format!("{id}b"),
        Path::new(&need("DEVOPS_STACK_TEST_SPOKE_B_KUBECONFIG")),
    )
    .await;
    Env { hub, a, b, repo }
}

struct Replicas(u32);

/// The fleet's stack: the hub and the spokes `with` (each `(cluster, wave)`), each spoke with
/// a Traefik (of `version`, when given) and a metrics-server.
fn fleet(
    name: &str,
    env: &Env,
    spokes: &[(&Counted, u32)],
    waves: bool,
    broken: Option<&str>,
) -> (devops_stack_core::BuiltStack, FleetHandles) {
    let mut stack = Stack::new(name);
    let hub = stack.add(Given(env.hub.clone()));
    let argocd = Input::value(ArgoCdTarget {
        namespace: real_argocd::ARGOCD_NS.into(),
        project: "default".into(),
        destination_server: IN_CLUSTER.into(),
    });
    let mut f = Fleet::new(&hub, argocd).unregister_timeout(Duration::from_secs(120));
    let mut wave_list: Vec<(String, Vec<String>)> = Vec::new();
    for (i, (cluster, replicas)) in spokes.iter().enumerate() {
        let handle = stack.add(Given((*cluster).clone()));
        f = f.spoke(
            SpokeSpec::new(cluster.name.clone(), &handle, Replicas(*replicas))
                .label("env", if i == 0 { "dev" } else { "prod" }),
        );
        wave_list.push((format!("w{}", i + 1), vec![cluster.name.clone()]));
    }
    if waves {
        for (w, s) in wave_list {
            f = f.wave(w, s);
        }
    }
    let repo = env.repo.clone();
    let broken = broken.map(str::to_owned);
    let handles = f.add_to(&mut stack, |spoke, settings| {
        let (cluster, argocd) = (spoke.cluster().clone(), spoke.argocd());
        // the fixture chart renders its `extraObjects`: a ConfigMap shows what each spoke got
        let mut traefik = Traefik::new(&cluster, argocd.clone())
            .chart_repository(&repo)
            .replicas(settings.0)
            .values(serde_json::json!({"extraObjects": [{
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "fleet-settings", "namespace": "traefik"},
                "data": {"replicas": settings.0.to_string()},
            }]}));
        if let Some(v) = broken.as_deref().filter(|_| spoke.name().ends_with('a')) {
            traefik = traefik.chart_version(v);
        }
        spoke.add(traefik);
        spoke.add(MetricsServer::new(&cluster, argocd).chart_repository(&repo));
    });
    (stack.build().unwrap(), handles)
}

fn run(state: &str) -> RunOptions {
    RunOptions::new().engine(KubeEngine::new(KubeOptions {
        wait_timeout: Duration::from_secs(180),
        state_namespace: state.into(),
        ..KubeOptions::default()
    }))
}

fn applications(client: &kube::Client) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        real_argocd::ARGOCD_NS,
        &ApiResource {
            group: "argoproj.io".into(),
            version: "v1alpha1".into(),
            api_version: "argoproj.io/v1alpha1".into(),
            kind: "Application".into(),
            plural: "applications".into(),
        },
    )
}

/// The Argo CD tracking ids of the Deployments on a cluster (`<application>:<group>/<kind>:..`).
async fn tracked(client: &kube::Client) -> Vec<String> {
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> = Api::all(client.clone());
    deployments
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|d| {
            d.metadata
                .annotations
                .and_then(|a| a.get("argocd.argoproj.io/tracking-id").cloned())
        })
        .collect()
}

/// The replicas the fleet's settings gave the spoke of cluster `c`, as its Traefik's chart
/// rendered them there.
async fn replicas(c: &Counted) -> Option<String> {
    let config_maps: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(c.counting.client.clone(), "traefik");
    config_maps
        .get_opt("fleet-settings")
        .await
        .unwrap()
        .and_then(|c| c.data?.get("replicas").cloned())
}

async fn clean(env: &Env, stack: &str) {
    let selector = format!("{STACK_LABEL}={stack}");
    for c in [&env.hub, &env.a, &env.b] {
        delete_labelled(&c.counting.client, &selector).await;
    }
}

/// One apply, drift, a quiet re-apply, removing spoke B.
async fn delivered_in_waves_quiet_and_removed() {
    let id = format!("f{:05x}", rand::random::<u32>() & 0xf_ffff);
    let env = env(&id).await;
    let (a, b) = (env.a.name.clone(), env.b.name.clone());
    let stack = format!("fleet-{id}");
    let state = format!("{id}-state");
    let opts = run(&state);
    let result = async {
        let (both, handles) = fleet(&stack, &env, &[(&env.a, 1), (&env.b, 2)], true, None);
        for c in [&env.hub, &env.a, &env.b] {
            c.writes();
        }
        let report = both.apply(&opts).await.unwrap();
        println!("{}", report.to_text());
        let (hub_w, a_w, b_w) = (env.hub.writes(), env.a.writes(), env.b.writes());
        println!(
            "apply: writes hub {}, spoke a {}, spoke b {}",
            hub_w.len(),
            a_w.len(),
            b_w.len()
        );
        assert!(!a_w.is_empty() && !b_w.is_empty() && !hub_w.is_empty());
        // the waves' gates saw each wave's Applications Synced and Healthy
        let w1 = report.output(&handles.waves[0]).unwrap();
        assert_eq!(
            w1.applications,
            [format!("{a}-metrics-server"), format!("{a}-traefik")]
        );
        let w2 = report.output(&handles.waves[1]).unwrap();
        assert_eq!(w2.spokes, std::slice::from_ref(&b));
        // the Applications are on the hub; what they deploy is on their own spoke only
        let apps = applications(&env.hub.counting.client);
        for s in [&a, &b] {
            for m in ["traefik", "metrics-server"] {
                let app = apps.get(&format!("{s}-{m}")).await.unwrap();
                assert_eq!(app.data["status"]["sync"]["status"], "Synced");
                assert_eq!(app.data["status"]["health"]["status"], "Healthy");
            }
        }
        let on = |ids: &[String], s: &str| {
            ids.iter()
                .filter(|t| t.starts_with(&format!("{s}-")))
                .count()
        };
        let (ta, tb, th) = (
            tracked(&env.a.counting.client).await,
            tracked(&env.b.counting.client).await,
            tracked(&env.hub.counting.client).await,
        );
        assert!(on(&ta, &a) >= 2 && on(&ta, &b) == 0, "spoke a: {ta:?}");
        assert!(on(&tb, &b) >= 2 && on(&tb, &a) == 0, "spoke b: {tb:?}");
        assert_eq!(on(&th, &a) + on(&th, &b), 0, "hub: {th:?}");
        // each spoke's settings reached its own spoke
        assert_eq!(replicas(&env.a).await.as_deref(), Some("1"));
        assert_eq!(replicas(&env.b).await.as_deref(), Some("2"));

        // drift on spoke a only: the rules of the hub's ClusterRole there narrowed by hand;
        // the fleet's diff shows it on a, nothing on b, and a's live value against b's
        let roles: Api<k8s_openapi::api::rbac::v1::ClusterRole> =
            Api::all(env.a.counting.client.clone());
        let edit = kube::api::PatchParams {
            field_manager: Some("kubectl-edit".into()),
            ..Default::default()
        };
        let narrowed = serde_json::json!({"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]});
        roles
            .patch(
                &format!("devops-stack-{stack}-argocd"),
                &edit,
                &kube::api::Patch::Merge(&narrowed),
            )
            .await
            .unwrap();
        let clusters: Vec<ClusterRef> = [&env.hub, &env.a, &env.b]
            .iter()
            .map(|c| Arc::new((*c).clone()) as ClusterRef)
            .collect();
        let live = both.read(&opts).await.unwrap();
        let kube = KubeOptions {
            state_namespace: state.clone(),
            ..KubeOptions::default()
        };
        let diff = diff_stack(&both, &live, &clusters, &kube).await.unwrap();
        let fleet_diff = handles.diff_report(&diff);
        println!("{}", fleet_diff.to_text());
        let by = |s: &str| fleet_diff.spokes.iter().find(|x| x.spoke == s).unwrap();
        assert!(
            by(&a).modules["spoke"]
                .iter()
                .any(|l| l.contains("ClusterRole") && l.contains("rules")),
            "{}",
            fleet_diff.to_text()
        );
        assert!(by(&b).modules.is_empty(), "{}", fleet_diff.to_text());
        let drift = fleet_diff
            .differences
            .iter()
            .find(|d| d.live && d.module == "spoke" && d.path.starts_with("rules"))
            .expect("the drift between the spokes");
        assert_eq!(drift.values[&b], "(as rendered)");
        assert_ne!(drift.values[&a], "(as rendered)");
        // the next apply puts it back (on a only)
        let repaired = both.apply(&opts).await.unwrap();
        assert!(repaired.is_success());
        let (hub_w, a_w, b_w) = (env.hub.writes(), env.a.writes(), env.b.writes());
        assert!(
            hub_w.is_empty() && b_w.is_empty() && !a_w.is_empty(),
            "{hub_w:?} {a_w:?} {b_w:?}"
        );

        // a re-apply writes nothing anywhere
        let again = both.apply(&opts).await.unwrap();
        assert!(again.is_success());
        let (hub_w, a_w, b_w) = (env.hub.writes(), env.a.writes(), env.b.writes());
        assert_eq!(
            (hub_w.len(), a_w.len(), b_w.len()),
            (0, 0, 0),
            "{hub_w:?} {a_w:?} {b_w:?}"
        );
        println!("re-apply: 0 writes on the hub and both spokes");

        // spoke b removed from the definition
        let (only_a, _) = fleet(&stack, &env, &[(&env.a, 1)], true, None);
        let removed = only_a.apply(&opts).await.unwrap();
        println!("{}", removed.to_text());
        let a_w = env.a.writes();
        assert!(a_w.is_empty(), "spoke a got writes: {a_w:?}");
        for m in ["traefik", "metrics-server"] {
            assert!(apps.get_opt(&format!("{b}-{m}")).await.unwrap().is_none());
        }
        let secrets: Api<k8s_openapi::api::core::v1::Secret> =
            Api::namespaced(env.hub.counting.client.clone(), real_argocd::ARGOCD_NS);
        assert!(
            secrets
                .get_opt(&format!("cluster-{b}"))
                .await
                .unwrap()
                .is_none()
        );
        // Argo CD deleted what b's Applications deployed: it could still reach b, so b's
        // registration went after them
        let tb = tracked(&env.b.counting.client).await;
        assert_eq!(on(&tb, &b), 0, "left on spoke b: {tb:?}");
        // and what the stack made on b itself (the namespaces, the hub's token): nothing left
        let left =
            labelled_everywhere(&env.b.counting.client, &format!("{STACK_LABEL}={stack}")).await;
        assert!(left.is_empty(), "left on spoke b: {left:?}");
        let swept = removed
            .module("fleet-removed-spokes")
            .unwrap()
            .output
            .clone();
        assert_eq!(swept, Some(serde_json::json!([b.clone()])));
        assert!(
            secrets
                .get_opt(&format!("cluster-{a}"))
                .await
                .unwrap()
                .is_some()
        );

        let gone = only_a.destroy(&opts).await.unwrap();
        assert!(gone.is_success(), "{}", gone.to_text());
        assert!(
            labelled_everywhere(&env.a.counting.client, &format!("{STACK_LABEL}={stack}"))
                .await
                .is_empty()
        );
    };
    let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(result)).await;
    clean(&env, &stack).await;
    if let Err(p) = outcome {
        std::panic::resume_unwind(p);
    }
}

/// A failed wave, a server registered twice, a dead spoke.
async fn failures_stay_where_they_are() {
    let id = format!("g{:05x}", rand::random::<u32>() & 0xf_ffff);
    let env = env(&id).await;
    let (a, b) = (env.a.name.clone(), env.b.name.clone());
    let stack = format!("fleet-{id}");
    let opts = run(&format!("{id}-state"));
    let result = async {
        // wave 1 (spoke a) asks for a chart version the repository does not have
        let (broken, _) = fleet(
            &stack,
            &env,
            &[(&env.a, 1), (&env.b, 1)],
            true,
            Some("0.0.1-missing"),
        );
        env.b.writes();
        let err = broken.apply(&opts).await.unwrap_err();
        let Error::RunFailed { report, .. } = &err else {
            panic!("{err}")
        };
        println!("{}", report.to_text());
        assert!(matches!(
            report.module(&format!("{a}-traefik")).unwrap().status,
            Status::Failed { .. }
        ));
        assert!(matches!(
            report.module("wave-w1").unwrap().status,
            Status::Skipped { .. }
        ));
        assert!(matches!(
            report.module(&format!("{b}-spoke")).unwrap().status,
            Status::Skipped { .. }
        ));
        let b_w = env.b.writes();
        assert!(b_w.is_empty(), "wave 2's spoke got writes: {b_w:?}");
        assert!(
            labelled_everywhere(&env.b.counting.client, &format!("{STACK_LABEL}={stack}"))
                .await
                .is_empty(),
            "wave 2's spoke has objects of the stack"
        );
        // another stack registering spoke a's API server under another name: refused before
        // anything is made on it
        let twin = Counted {
            name: format!("{id}c"),
            ..env.a.clone()
        };
        let dup_stack = format!("{stack}-dup");
        let (dup, _) = fleet(&dup_stack, &env, &[(&twin, 1)], false, None);
        env.a.writes();
        let err = dup.apply(&opts).await.unwrap_err();
        let Error::RunFailed { report, .. } = &err else {
            panic!("{err}")
        };
        let Status::Failed { error } = &report.module(&format!("{id}c-spoke")).unwrap().status
        else {
            panic!("{}", report.to_text())
        };
        let text = error.to_string();
        assert!(
            text.contains(&format!("fleet.spokes.{id}c.server"))
                && text.contains("already has the cluster at"),
            "{text}"
        );
        assert!(env.a.writes().is_empty(), "the twin wrote to spoke a");
        assert!(dup.destroy(&opts).await.unwrap().is_success());

        let gone = broken.destroy(&opts).await.unwrap();
        assert!(gone.is_success(), "{}", gone.to_text());

        // spoke b's API server does not answer (a port nothing listens on)
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dead = Counted {
            name: b.clone(),
            server: format!("https://127.0.0.1:{port}"),
            counting: Counting::new(dead_kubeconfig(&env, port)).await,
        };
        let (with_dead, _) = fleet(&stack, &env, &[(&env.a, 1), (&dead, 1)], false, None);
        let err = with_dead.apply(&opts).await.unwrap_err();
        let Error::RunFailed { report, .. } = &err else {
            panic!("{err}")
        };
        println!("{}", report.to_text());
        for m in ["spoke", "traefik", "metrics-server"] {
            assert!(
                matches!(
                    report.module(&format!("{a}-{m}")).unwrap().status,
                    Status::Succeeded
                ),
                "{a}-{m}"
            );
        }
        let Status::Failed { error } = &report.module(&format!("{b}-spoke")).unwrap().status else {
            panic!("{b}-spoke did not fail")
        };
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
        let mut named = None;
        while let Some(c) = cause {
            let core = c.downcast_ref::<Error>().or(match c.downcast_ref() {
                Some(devops_stack_modules::Error::Core(core)) => Some(core),
                _ => None,
            });
            if let Some(KubeError::Unreachable { cluster, .. }) = core.and_then(Error::kubernetes) {
                named = Some(cluster.clone());
            }
            cause = c.source();
        }
        assert_eq!(named.as_deref(), Some(b.as_str()), "{error}");
        let gone = fleet(&stack, &env, &[(&env.a, 1)], false, None)
            .0
            .destroy(&opts)
            .await
            .unwrap();
        assert!(gone.is_success(), "{}", gone.to_text());
    };
    let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(result)).await;
    clean(&env, &stack).await;
    if let Err(p) = outcome {
        std::panic::resume_unwind(p);
    }
}

/// The scenarios share the two spokes (a registration refuses a server another registration
/// holds), so they run one after the other.
#[tokio::test]
#[ignore = "needs the real Argo CD tier and two spoke clusters (DEVOPS_STACK_TEST_ARGOCD_*, DEVOPS_STACK_TEST_SPOKE_A_KUBECONFIG, DEVOPS_STACK_TEST_SPOKE_B_KUBECONFIG): scripts/test.sh starts them"]
async fn a_hub_delivers_each_spoke_its_own_modules_in_waves_and_failures_stay_where_they_are() {
    delivered_in_waves_quiet_and_removed().await;
    failures_stay_where_they_are().await;
}

/// Spoke B's kubeconfig with its server moved to `port`, where nothing listens.
fn dead_kubeconfig(_env: &Env, port: u16) -> PathBuf {
    let from = PathBuf::from(need("DEVOPS_STACK_TEST_SPOKE_B_KUBECONFIG"));
    let text = std::fs::read_to_string(&from).unwrap();
    let re_server = text
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("server:") {
                format!("    server: https://127.0.0.1:{port}")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let to = std::env::temp_dir().join(format!("dead-spoke-{port}.kubeconfig"));
    std::fs::write(&to, re_server).unwrap();
    to
}
