//! Kubernetes engine benchmarks.
//!
//! Offline (always run):
//! - `k8s/hash/500`: content hash of a 500-object bundle (what every apply computes).
//! - `k8s/diff/500`: field-by-field diff and text rendering of 500 changed objects.
//!
//! Live (only when `DEVOPS_STACK_TEST_KUBECONFIG` names a kubeconfig; otherwise skipped, saying
//! so): applies a 500-ConfigMap bundle in a fresh namespace and prints objects per second, then
//! re-applies it unchanged and prints the number of write requests it made (target 0), counted
//! from the apply report (each changed or pruned object is one write, plus one state write when
//! anything changed). Then destroys it.
//!
//! Run: `cargo bench --bench kube_apply`

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use devops_stack_core::clusters::LocalCluster;
use devops_stack_core::k8s::{Deployer, KubeOptions, ObjectDiff, content_hash};
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

fn live(path: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let cluster = LocalCluster {
            name: "bench".into(),
            base_domain: "example.com".into(),
            kubeconfig: path.into(),
            context: None,
        };
        let client = cluster
            .connect()
            .await
            .expect("a client for DEVOPS_STACK_TEST_KUBECONFIG");
        let id = format!("dst-bench-{:08x}", rand::random::<u32>());
        let options = KubeOptions {
            wait: false,
            // The state ConfigMap goes with the module's entry at destroy; no lock is taken.
            state_namespace: "default".into(),
            ..KubeOptions::default()
        };
        let deployer = Deployer::new(client, id.clone(), "bench", options);

        let t = Instant::now();
        let first = deployer
            .apply(bundle(&id, 500, "a"))
            .await
            .expect("first apply");
        let secs = t.elapsed().as_secs_f64();
        println!(
            "k8s/live/apply/500: {} objects in {secs:.2} s = {:.0} objects/s",
            first.changed.len(),
            500.0 / secs
        );

        let t = Instant::now();
        let again = deployer
            .apply(bundle(&id, 500, "a"))
            .await
            .expect("re-apply");
        let writes = again.changed.len()
            + again.pruned.len()
            + usize::from(!again.changed.is_empty() || !again.pruned.is_empty());
        println!(
            "k8s/live/reapply/500: {writes} write requests (target 0), {} unchanged, in {:.2} s",
            again.unchanged.len(),
            t.elapsed().as_secs_f64()
        );

        deployer.destroy().await.expect("destroy");
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
