//! The whole platform of `eks_full` that is not AWS, on a kubeconfig cluster of the project's
//! test environment, delivered by a **real Argo CD** (its application-controller, repo-server,
//! ApplicationSet controller and API server of the pinned version, as local processes; kwok
//! plays the nodes, the cloud's load balancers and the ingress controllers' status):
//!
//! Argo CD bootstrap (`helm template` of the `argo-cd` chart), Prometheus Operator CRDs, Traefik,
//! cert-manager, Keycloak, kube-prometheus-stack, Loki with Alloy, metrics-server, a `Team` with
//! an App and an ApplicationSet, and Argo CD final (managing itself).
//!
//! What it shows: every Application Synced and Healthy as Argo CD reports it; the hand-over keeps
//! the bootstrap's Deployments (same UIDs), the pipeline token and the OIDC settings working
//! through Argo CD's API server; a re-apply makes 0 writes and no Application goes OutOfSync in
//! the minute after it; Argo CD's own conditions end an apply at once (a chart version the
//! repository lacks, values the chart's schema rejects); destroy leaves nothing of the stack.
//!
//! The charts are the fixtures of `devops_stack_test::fixture_charts`, published into the environment's
//! chart repository, unless `DEVOPS_STACK_TEST_PLATFORM_UPSTREAM=1` and the cluster was started
//! with upstream chart sources (`DEVOPS_STACK_TESTENV_CHART_SOURCES`): then the real charts at
//! the pins. Gated on `DEVOPS_STACK_TEST_PLATFORM_KUBECONFIG` (a cluster of its own: the stack
//! installs Argo CD into its namespace `argocd`):
//!
//! ```text
//! scripts/testenv.sh start --name platform --load-balancers
//! eval "$(scripts/testenv.sh env --name platform --prefix PLATFORM)"
//! cargo test -p devops-stack-modules --test platform_argocd_live -- --nocapture
//! ```

use devops_stack_test::live;
use devops_stack_test::platform;

use devops_stack_core::k8s::KubeEngine;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use devops_stack_core::interfaces::ClusterRef;
use devops_stack_core::k8s::{KubeOptions, STACK_LABEL};
use devops_stack_core::{Input, Report, RunOptions, Stack};
use devops_stack_modules::Traefik;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::api::{Api, ListParams};
use live::{Counting, labelled_everywhere};
use platform::{
    ARGOCD_NS, Platform, STACK, TestEnv, options, platform, play_cert_manager, shop_repository,
    statuses,
};
use serde_json::{Value, json};

/// The UIDs of Argo CD's Deployments and StatefulSets.
async fn workload_uids(client: &kube::Client) -> BTreeMap<String, String> {
    let mut uids = BTreeMap::new();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ARGOCD_NS);
    for d in deployments.list(&ListParams::default()).await.unwrap() {
        uids.insert(
            format!("Deployment/{}", d.metadata.name.unwrap()),
            d.metadata.uid.unwrap(),
        );
    }
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), ARGOCD_NS);
    for s in sets.list(&ListParams::default()).await.unwrap() {
        uids.insert(
            format!("StatefulSet/{}", s.metadata.name.unwrap()),
            s.metadata.uid.unwrap(),
        );
    }
    uids
}

/// GET `path` of Argo CD's API server, with `token` as bearer when given.
async fn argocd_get(env: &TestEnv, path: &str, token: Option<&str>) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut req = client.get(format!("http://{}{path}", env.argocd_server));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.expect("Argo CD's API server answers");
    let code = res.status().as_u16();
    let text = res.text().await.unwrap_or_default();
    (code, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn assert_success(what: &str, report: &Report) {
    assert!(report.is_success(), "{what}: {}", report.to_text());
}

fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

#[tokio::test]
#[ignore = "needs the test environment's platform tier (DEVOPS_STACK_TEST_PLATFORM_*): scripts/test.sh starts it"]
async fn the_platform_is_delivered_by_a_real_argo_cd_handed_over_reapplied_quietly_and_destroyed() {
    let env = TestEnv::get();
    let counting = Counting::new(env.kubeconfig.clone()).await;
    let client = counting.client.clone();
    let cluster: ClusterRef = Arc::new(counting.clone());
    let repo = env.charts();
    println!("charts: {repo}");
    let shop = shop_repository(&env);
    let cert_manager = play_cert_manager(client.clone());
    let opts = options();
    // What an earlier run that failed half-way left is destroyed first.
    for case in REFUSED {
        let (stack, _) = refused(&cluster, &repo, case);
        assert_success(case, &stack.destroy(&refused_options(case)).await.unwrap());
    }
    let leftovers = platform(&env, cluster.clone(), &repo, &shop, false);
    assert_success("clean-up", &leftovers.stack.destroy(&opts).await.unwrap());

    // 1. The bootstrap alone: Argo CD installed plain, by `helm template`.
    let t = Instant::now();
    let boot = platform(&env, cluster.clone(), &repo, &shop, true)
        .stack
        .apply(&opts)
        .await
        .unwrap();
    assert_success("bootstrap", &boot);
    println!("bootstrap apply: {:.1} s", secs(t));
    let before = workload_uids(&client).await;
    assert!(
        before.contains_key("Deployment/argocd-server")
            && before.contains_key("StatefulSet/argocd-application-controller"),
        "the chart's workloads: {before:?}"
    );

    // 2. The whole platform, Argo CD final taking over.
    let Platform { stack, argocd, sso } = platform(&env, cluster.clone(), &repo, &shop, false);
    let t = Instant::now();
    let first = match stack.apply(&opts).await {
        Ok(report) => report,
        Err(e) => {
            // what each Application looked like, for the record (the upstream charts' run)
            for (name, (sync, health)) in statuses(&client).await {
                println!("  {name}: {sync} {health}");
            }
            panic!("the platform's apply failed after {:.1} s: {e}", secs(t));
        }
    };
    let apply_time = secs(t);
    assert_success("platform apply", &first);
    println!("platform apply: {apply_time:.1} s");
    let apps = statuses(&client).await;
    println!("Applications: {apps:?}");
    for name in [
        "argocd",
        "prometheus-operator-crds",
        "traefik",
        "cert-manager",
        "keycloak",
        "kube-prometheus-stack",
        "loki",
        "loki-alloy",
        "metrics-server",
        "shop-web",
        "shop-one",
        "shop-two",
    ] {
        let status = apps.get(name);
        assert_eq!(
            status.map(|(s, h)| (s.as_str(), h.as_str())),
            Some(("Synced", "Healthy")),
            "Application {name} as Argo CD reports it; all: {apps:?}"
        );
    }
    assert!(
        apps.values().all(|(s, h)| s == "Synced" && h == "Healthy"),
        "{apps:?}"
    );

    // 3. The hand-over recreated nothing, and Argo CD's API still takes the pipeline token and
    //    has the OIDC settings the final phase gave it.
    let after = workload_uids(&client).await;
    for (what, uid) in &before {
        assert_eq!(
            after.get(what),
            Some(uid),
            "{what} was recreated by the hand-over"
        );
    }
    let argocd_out = first.output(&argocd).expect("the bootstrap's output");
    let keycloak = first
        .output(sso.as_ref().expect("the platform has Keycloak"))
        .expect("Keycloak's output");
    let (code, listed) = argocd_get(
        &env,
        "/api/v1/applications",
        Some(argocd_out.pipeline_token.expose()),
    )
    .await;
    assert_eq!(
        code, 200,
        "the pipeline token after the hand-over: {listed}"
    );
    assert!(
        listed["items"]
            .as_array()
            .is_some_and(|i| i.len() >= apps.len()),
        "the pipeline account reads every Application: {listed}"
    );
    let (code, settings) = argocd_get(&env, "/api/v1/settings", None).await;
    assert_eq!(code, 200);
    assert_eq!(
        settings["oidcConfig"]["issuer"].as_str(),
        Some(keycloak.issuer_url.as_str()),
        "Argo CD's API serves Keycloak's issuer from the final phase: {settings}"
    );

    // 4. A re-apply writes nothing, and Argo CD finds nothing out of sync for a minute.
    counting.take();
    let t = Instant::now();
    let again = stack.apply(&opts).await.unwrap();
    let reapply_time = secs(t);
    assert_success("re-apply", &again);
    let writes = counting.take_writes();
    println!("no-op re-apply: {reapply_time:.2} s, writes: {writes:?}");
    assert!(writes.is_empty(), "a re-apply wrote: {writes:?}");
    let quiet = Instant::now();
    while quiet.elapsed() < Duration::from_secs(60) {
        let now = statuses(&client).await;
        let moved: Vec<_> = now
            .iter()
            .filter(|(_, (s, h))| s != "Synced" || h != "Healthy")
            .collect();
        assert!(
            moved.is_empty(),
            "after the re-apply, Argo CD reports {moved:?}"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    // 5. Argo CD's own conditions end an apply at once: a chart version the repository lacks,
    //    and values the chart's schema rejects.
    refused_at_once(&cluster, &repo).await;

    // 6. Destroy: Argo CD processes the resources finalizers; nothing of the stack is left.
    let t = Instant::now();
    let gone = stack.destroy(&opts).await.unwrap();
    let destroy_time = secs(t);
    assert_success("destroy", &gone);
    println!("platform destroy: {destroy_time:.1} s");
    cert_manager.abort();
    let left = labelled_everywhere(&client, &format!("{STACK_LABEL}={STACK}")).await;
    assert!(left.is_empty(), "left after destroy: {left:?}");
    let apps = statuses(&client).await;
    assert!(apps.is_empty(), "Applications left: {apps:?}");
    let system: Api<Deployment> = Api::namespaced(client.clone(), "kube-system");
    let leftover: Vec<String> = system
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|d| d.metadata.name)
        .filter(|n| n.contains("metrics-server"))
        .collect();
    assert!(
        leftover.is_empty(),
        "what metrics-server's Application deployed into kube-system: {leftover:?}"
    );
    println!(
        "SUMMARY platform apply {apply_time:.1} s, no-op re-apply {reapply_time:.2} s (0 writes), destroy {destroy_time:.1} s"
    );
}

/// A stack of one Traefik that Argo CD refuses (`case`: a missing chart version, or values the
/// chart's schema rejects), with the text its error must contain.
fn refused(
    cluster: &ClusterRef,
    repo: &str,
    case: &str,
) -> (devops_stack_core::BuiltStack, &'static str) {
    let argocd = Input::value(devops_stack_core::interfaces::ArgoCdTarget {
        namespace: ARGOCD_NS.into(),
        project: "default".into(),
        destination_server: devops_stack_core::interfaces::IN_CLUSTER.into(),
    });
    let traefik = Traefik::new(Input::value(cluster.clone()), argocd).chart_repository(repo);
    let (traefik, expected) = match case {
        "refused-version" => (
            traefik.chart_version("0.0.1-missing"),
            "no version `0.0.1-missing` of chart `traefik`",
        ),
        _ => (
            // the chart's schema has the levels; the module's own checks do not
            traefik.values(json!({"log": {"level": "LOUD"}})),
            "log.level",
        ),
    };
    let mut stack = Stack::new(case);
    stack.add(traefik.id(case).namespace(case).class_name(case));
    (stack.build().unwrap(), expected)
}

const REFUSED: [&str; 2] = ["refused-version", "refused-values"];

fn refused_options(case: &str) -> RunOptions {
    RunOptions::new().engine(KubeEngine::new(KubeOptions {
        wait_timeout: Duration::from_secs(240),
        state_namespace: format!("{case}-state"),
        ..KubeOptions::default()
    }))
}

/// Two stacks Argo CD refuses: the apply fails within seconds with the module, the chart and the
/// key, not at the wait's timeout; each is then destroyed.
async fn refused_at_once(cluster: &ClusterRef, repo: &str) {
    for case in REFUSED {
        let (stack, expected) = refused(cluster, repo, case);
        let opts = refused_options(case);
        let t = Instant::now();
        let text = match stack.apply(&opts).await {
            Ok(report) => panic!(
                "{case}: Argo CD refused, the apply must fail: {}",
                report.to_text()
            ),
            Err(e) => e.to_string(),
        };
        let took = secs(t);
        println!("{case}: failed after {took:.1} s: {text}");
        assert!(
            took < 60.0,
            "{case}: the refusal ends the wait, not its 240 s timeout ({took:.1} s)"
        );
        assert!(text.contains("Argo CD cannot deploy"), "{case}: {text}");
        assert!(text.contains(expected), "{case}: {text}");
        assert!(text.contains(&format!("module `{case}`")), "{case}: {text}");
        let gone = stack.destroy(&opts).await.unwrap();
        assert_success(case, &gone);
    }
}
