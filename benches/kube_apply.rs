//! Kubernetes engine benchmarks.
//!
//! Offline (always run):
//! - `k8s/hash/500`: content hash of a 500-object bundle (what every apply computes).
//! - `k8s/diff/500`: field-by-field diff and text rendering of 500 changed objects.
//!
//! Live (only when `DEVOPS_STACK_TEST_KUBECONFIG` names a kubeconfig; otherwise skipped, saying
//! so), side by side in one run, each a median over `DEVOPS_STACK_BENCH_RUNS` rounds (default 5,
//! at least 5 for figures you quote), the three tools taking turns within each round:
//! - the 500-object bundle (1 Namespace, 499 ConfigMaps) into a fresh namespace: first apply and
//!   no-op re-apply with `kubectl apply --server-side` (the binary in `KUBECTL`, default
//!   `/root/.cache/kube-test/bin/kubectl`; its column is skipped, saying so, when absent), with
//!   raw server-side apply (kube-rs `Api::patch` with `Patch::Apply`, 32 requests in flight), and
//!   with a `Deployer` (requests counted by verb: single-object GETs, LISTs, writes);
//! - the seven-module stack of `tests/full_stack.rs` applied, re-applied and destroyed, with the
//!   Argo CD stand-in of `devops_stack_test::argocd_standin` playing Argo CD.
//!
//! Every namespace is deleted (and waited for) between rounds, so that each round starts from
//! the same empty cluster.
//!
//! Run: `DEVOPS_STACK_TEST_KUBECONFIG=<kubeconfig> cargo bench --bench kube_apply -- live`
//! (`-- live` filters out the offline benchmarks).

use devops_stack_test::argocd_standin;
use devops_stack_test::live;
use devops_stack_test::seven_modules;

use devops_stack_core::k8s::KubeEngine;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use devops_stack::RunOptions;
use devops_stack_core::k8s::{Deployer, KubeOptions, ObjectDiff, content_hash};
use devops_stack_test::stats::median;
use futures::{StreamExt as _, stream};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};

fn bundle(ns: &str, n: usize, value: &str) -> Vec<Value> {
    let mut v = vec![json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})];
    v.extend((0..n - 1).map(|i| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("cm-{i}"), "namespace": ns, "labels": {"app.kubernetes.io/name": "bench"}},
            "data": {"value": value, "index": i.to_string(), "config.yaml": "replicas: 2\nimage: {tag: v1}\n"}})
    }));
    v
}

fn offline(c: &mut Criterion) {
    let objects = bundle("bench", 500, "a");
    c.bench_function("k8s/hash/500", |b| {
        b.iter(|| objects.iter().map(content_hash).collect::<Vec<_>>())
    });
    let changed = bundle("bench", 500, "b");
    c.bench_function("k8s/diff/500", |b| {
        b.iter(|| {
            objects
                .iter()
                .zip(&changed)
                .map(|(before, after)| {
                    ObjectDiff::between(Some(before), after)
                        .unwrap()
                        .to_string()
                })
                .map(|s| s.len())
                .sum::<usize>()
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = offline
}

/// The median of `v` (which must not be empty).
fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

/// Deletes namespace `ns` and waits until it is gone (so the next round starts clean).
async fn delete_and_wait(client: &kube::Client, ns: &str) {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &live::namespace_resource());
    let _ = api.delete(ns, &DeleteParams::background()).await;
    let deadline = Instant::now() + Duration::from_secs(180);
    while api.get_opt(ns).await.unwrap().is_some() {
        assert!(
            Instant::now() < deadline,
            "namespace {ns} still there after 180 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// One `kubectl apply --server-side` of `file`: seconds, and the PATCH and GET requests it
/// logged (`-v=6` logs one line per request).
fn kubectl_apply(kubectl: &Path, kubeconfig: &str, file: &Path) -> (f64, usize, usize) {
    let t = Instant::now();
    let out = Command::new(kubectl)
        .args(["--kubeconfig", kubeconfig, "apply", "--server-side"])
        .args(["--field-manager", "kubectl-bench", "-v=6", "-f"])
        .arg(file)
        .output()
        .expect("running kubectl");
    let elapsed = secs(t);
    assert!(
        out.status.success(),
        "kubectl apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = String::from_utf8_lossy(&out.stderr);
    let count = |verb: &str| {
        log.lines()
            .filter(|l| l.contains(&format!("] {verb} http")))
            .count()
    };
    (elapsed, count("PATCH"), count("GET"))
}

/// Raw server-side apply of `objects` (a Namespace, then ConfigMaps of that namespace), with up
/// to 32 requests in flight.
async fn raw_apply(client: &kube::Client, objects: &[Value]) {
    let params = PatchParams::apply("raw-bench").force();
    let ns = objects[0]["metadata"]["name"].as_str().unwrap();
    let namespaces: Api<DynamicObject> = Api::all_with(client.clone(), &live::namespace_resource());
    namespaces
        .patch(ns, &params, &Patch::Apply(&objects[0]))
        .await
        .expect("raw apply of the namespace");
    let cms: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), ns, &live::config_map_resource());
    let written = stream::iter(&objects[1..])
        .map(|o| {
            let (cms, params) = (&cms, &params);
            async move {
                let name = o["metadata"]["name"].as_str().unwrap();
                cms.patch(name, params, &Patch::Apply(o))
                    .await
                    .expect("raw apply of a ConfigMap");
            }
        })
        .buffer_unordered(32)
        .count()
        .await;
    assert_eq!(written, objects.len() - 1);
}

/// Timings of one tool, one entry per round.
#[derive(Default)]
struct Column {
    first: Vec<f64>,
    again: Vec<f64>,
    destroy: Vec<f64>,
}

fn live(path: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let runs: usize = std::env::var("DEVOPS_STACK_BENCH_RUNS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(5);
        let kubectl = PathBuf::from(
            std::env::var("KUBECTL").unwrap_or_else(|_| "/root/.cache/kube-test/bin/kubectl".into()),
        );
        let kubectl = kubectl.is_file().then_some(kubectl);
        if kubectl.is_none() {
            println!("k8s/live: kubectl column skipped: no kubectl binary (set KUBECTL)");
        }
        let helper = live::helper_client(path.into()).await;
        let counting = live::Counting::new(path.into()).await;
        let id = live::unique("dst-bench");
        let state_ns = format!("{id}-state");
        let options = KubeOptions {
            wait: false,
            state_namespace: state_ns.clone(),
            ..KubeOptions::default()
        };
        let (mut k, mut raw, mut ds) = (Column::default(), Column::default(), Column::default());
        let (mut kubectl_writes, mut kubectl_gets) = (Vec::new(), Vec::new());
        let mut first_counts = Vec::new();
        let mut again_counts = Vec::new();

        for round in 0..runs {
            // kubectl
            if let Some(kubectl) = &kubectl {
                let ns = format!("{id}-k{round}");
                let file = std::env::temp_dir().join(format!("{ns}.json"));
                let list = json!({"apiVersion": "v1", "kind": "List", "items": bundle(&ns, 500, "a")});
                std::fs::write(&file, serde_json::to_vec(&list).unwrap()).unwrap();
                let (t, _, _) = kubectl_apply(kubectl, path, &file);
                k.first.push(t);
                let (t, writes, gets) = kubectl_apply(kubectl, path, &file);
                k.again.push(t);
                kubectl_writes.push(writes);
                kubectl_gets.push(gets);
                let _ = std::fs::remove_file(&file);
                delete_and_wait(&helper, &ns).await;
            }

            // raw server-side apply, 32 in flight
            let ns = format!("{id}-r{round}");
            let objects = bundle(&ns, 500, "a");
            let t = Instant::now();
            raw_apply(&helper, &objects).await;
            raw.first.push(secs(t));
            let t = Instant::now();
            raw_apply(&helper, &objects).await;
            raw.again.push(secs(t));
            delete_and_wait(&helper, &ns).await;

            // devops-stack
            let ns = format!("{id}-d{round}");
            let deployer = Deployer::new(counting.client.clone(), ns.clone(), "bench", options.clone());
            counting.take();
            let t = Instant::now();
            let first = deployer.apply(bundle(&ns, 500, "a")).await.expect("first apply");
            ds.first.push(secs(t));
            first_counts.push(counting.take());
            assert_eq!(first.changed.len(), 500);
            let t = Instant::now();
            let again = deployer.apply(bundle(&ns, 500, "a")).await.expect("re-apply");
            ds.again.push(secs(t));
            again_counts.push(counting.take());
            assert_eq!(again.unchanged.len(), 500);
            let t = Instant::now();
            deployer.destroy().await.expect("destroy");
            ds.destroy.push(secs(t));
            delete_and_wait(&helper, &ns).await;
            println!("k8s/live: round {} of {runs} done", round + 1);
        }

        // The seven-module stack with the Argo CD stand-in.
        let mut seven = Column::default();
        let mut seven_again_counts = Vec::new();
        for round in 0..runs {
            let stack = format!("{id}-s{round}");
            let argocd_ns = seven_modules::argocd_namespace(&stack);
            live::create_namespace(&helper, &argocd_ns).await;
            let standin = argocd_standin::ArgoCdStandIn::start(&helper, &[&argocd_ns]).await;
            let opts = RunOptions::new().engine(KubeEngine::new(KubeOptions {
                wait_timeout: Duration::from_secs(180),
                state_namespace: state_ns.clone(),
                ..KubeOptions::default()
            }));
            let build = || seven_modules::seven_modules(&stack, Arc::new(counting.clone()), true);
            let t = Instant::now();
            build().apply(&opts).await.expect("seven-module apply").into_result().unwrap();
            seven.first.push(secs(t));
            counting.take();
            let t = Instant::now();
            build().apply(&opts).await.expect("seven-module re-apply").into_result().unwrap();
            seven.again.push(secs(t));
            seven_again_counts.push(counting.take());
            let t = Instant::now();
            build().destroy(&opts).await.expect("seven-module destroy").into_result().unwrap();
            seven.destroy.push(secs(t));
            standin.shutdown().await;
            delete_and_wait(&helper, &argocd_ns).await;
            println!("k8s/live: seven-module round {} of {runs} done", round + 1);
        }
        delete_and_wait(&helper, &state_ns).await;

        // The table.
        let m = |v: &[f64]| if v.is_empty() { f64::NAN } else { median(v) };
        let kcol = |v: &[f64]| {
            if kubectl.is_some() { format!("{:.2} s", m(v)) } else { "skipped (no kubectl)".into() }
        };
        let last = |c: &[live::Counts]| c.last().copied().unwrap_or_default();
        let (f, a) = (last(&first_counts), last(&again_counts));
        println!();
        println!("k8s/live: medians over {runs} rounds");
        println!("| what | kubectl `apply --server-side` | raw server-side apply, 32 in flight | devops-stack |");
        println!("|---|---|---|---|");
        println!(
            "| first apply, 500 objects | {} | {:.2} s | {:.2} s (kubectl time / this = {:.2}, {:+.0}% over raw); requests: {} GET, {} LIST, {} writes |",
            kcol(&k.first), m(&raw.first), m(&ds.first),
            m(&k.first) / m(&ds.first), (m(&ds.first) / m(&raw.first) - 1.0) * 100.0,
            f.get, f.list, f.write,
        );
        println!(
            "| no-op re-apply, 500 objects | {}{} | {:.2} s (500 writes) | {:.2} s (kubectl time / this = {:.1}); requests: {} GET, {} LIST, {} writes |",
            kcol(&k.again),
            kubectl_writes.last().map(|w| format!(" ({w} PATCH, {} GET)", kubectl_gets.last().unwrap())).unwrap_or_default(),
            m(&raw.again), m(&ds.again), m(&k.again) / m(&ds.again), a.get, a.list, a.write,
        );
        println!("| destroy, 500 objects (waits for the namespace) | | | {:.2} s |", m(&ds.destroy));
        let s = last(&seven_again_counts);
        println!(
            "| seven-module stack (stand-in Argo CD): apply / no-op re-apply / destroy | | | {:.2} s / {:.2} s ({} GET, {} LIST, {} writes) / **{:.2} s** |",
            m(&seven.first), m(&seven.again), s.get, s.list, s.write, m(&seven.destroy),
        );
        println!(
            "k8s/live: raw per-round seconds: kubectl first {:?} again {:?}; raw first {:?} again {:?}; devops-stack first {:?} again {:?} destroy {:?}; seven apply {:?} again {:?} destroy {:?}",
            k.first, k.again, raw.first, raw.again, ds.first, ds.again, ds.destroy, seven.first, seven.again, seven.destroy
        );
    });
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    match std::env::var("DEVOPS_STACK_TEST_KUBECONFIG") {
        Ok(path) if !path.is_empty() => live(&path),
        _ => println!("k8s/live: skipped: DEVOPS_STACK_TEST_KUBECONFIG is not set"),
    }
}
