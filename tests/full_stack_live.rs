//! The seven-module stack of `tests/full_stack.rs` on a real API server (the cluster whose
//! kubeconfig path is in `DEVOPS_STACK_TEST_KUBECONFIG`; each test is skipped, saying so, when
//! it is unset): applied, re-applied with zero writes, and destroyed with nothing labelled left,
//! with the Argo CD stand-in of `devops_stack_test::argocd_standin` playing
//! Argo CD. Each phase's time is printed (the benchmark of record is `benches/kube_apply.rs`).
//!
//! ```text
//! DEVOPS_STACK_TEST_KUBECONFIG=~/.kube/config cargo test -p devops-stack --test full_stack_live -- --nocapture --test-threads=1
//! ```

use devops_stack_test::argocd_standin;
use devops_stack_test::live;
use devops_stack_test::seven_modules;

use devops_stack::k8s::KubeEngine;
use std::sync::Arc;
use std::time::{Duration, Instant};

use argocd_standin::{ArgoCdStandIn, applications};
use devops_stack::k8s::{KubeOptions, STACK_LABEL, state_name};
use devops_stack::{Report, RunOptions};
use kube::api::{Api, DynamicObject};
use live::{
    Counting, config_map_resource, create_namespace, delete_labelled, delete_namespace,
    helper_client, kubeconfig, labelled_everywhere, unique, with_cleanup,
};
use seven_modules::{argocd_namespace, module_namespaces, seven_modules};

fn options(stack: &str) -> RunOptions {
    RunOptions::new().engine(KubeEngine::new(KubeOptions {
        wait_timeout: Duration::from_secs(180),
        state_namespace: format!("{stack}-state"),
        ..KubeOptions::default()
    }))
}

async fn cleanup(client: &kube::Client, stack: &str) {
    delete_labelled(client, &format!("{STACK_LABEL}={stack}")).await;
    for ns in module_namespaces(stack)
        .into_iter()
        .chain([argocd_namespace(stack), format!("{stack}-state")])
    {
        delete_namespace(client, &ns).await;
    }
}

fn timed(phase: &str, started: Instant) {
    println!("{phase}: {:.2} s", started.elapsed().as_secs_f64());
}

fn assert_success(report: &Report) {
    assert!(report.is_success(), "{}", report.to_text());
}

#[tokio::test]
#[ignore = "needs a cluster (DEVOPS_STACK_TEST_KUBECONFIG): scripts/test.sh starts it"]
async fn the_seven_module_stack_applies_reapplies_without_writes_and_destroys_everything() {
    let path = kubeconfig();
    let cluster = Counting::new(path.clone()).await;
    let helper = helper_client(path).await;
    let id = unique("dst-full");
    let argocd_ns = argocd_namespace(&id);
    // Argo CD's install made its namespace; the stand-in plays its controller there.
    create_namespace(&helper, &argocd_ns).await;
    let argocd = ArgoCdStandIn::start(&helper, &[&argocd_ns]).await;
    let body = async {
        let opts = options(&id);
        let t = Instant::now();
        let first = seven_modules(&id, Arc::new(cluster.clone()), true)
            .apply(&opts)
            .await
            .unwrap();
        timed("first apply", t);
        assert_success(&first);
        let counts = cluster.take();
        println!("first apply requests: {counts:?}");
        let apps = applications(&helper, &argocd_ns)
            .list(&Default::default())
            .await
            .unwrap()
            .items;
        assert!(apps.len() >= 7, "{} Applications", apps.len());
        assert!(
            apps.iter()
                .all(|a| a.data["status"]["health"]["status"] == "Healthy"),
            "every Application was waited for until healthy"
        );

        // The same inputs again, with a stack built anew (generated secrets are read back).
        let t = Instant::now();
        let again = seven_modules(&id, Arc::new(cluster.clone()), true)
            .apply(&opts)
            .await
            .unwrap();
        timed("no-op re-apply", t);
        assert_success(&again);
        let counts = cluster.take();
        println!("no-op re-apply requests: {counts:?}");
        assert_eq!(
            counts.write, 0,
            "write requests on a no-op re-apply of the whole stack"
        );

        let t = Instant::now();
        let destroyed = seven_modules(&id, Arc::new(cluster.clone()), true)
            .destroy(&opts)
            .await
            .unwrap();
        timed("destroy", t);
        assert_success(&destroyed);
        // The run ends only when everything is gone: nothing is left, not even terminating.
        let left = labelled_everywhere(&helper, &format!("{STACK_LABEL}={id}")).await;
        assert_eq!(left, Vec::<String>::new(), "objects left after destroy");
        let state: Api<DynamicObject> = Api::namespaced_with(
            helper.clone(),
            &format!("{id}-state"),
            &config_map_resource(),
        );
        assert!(state.get_opt(&state_name(&id)).await.unwrap().is_none());
    };
    with_cleanup(body, cleanup(&helper, &id)).await;
    argocd.shutdown().await;
}

/// Apply seven modules, then the same stack without MetricsServer: its Application and its
/// state entry go; a destroy of the smaller stack then leaves nothing labelled.
#[tokio::test]
#[ignore = "needs a cluster (DEVOPS_STACK_TEST_KUBECONFIG): scripts/test.sh starts it"]
async fn a_module_removed_from_the_stack_is_destroyed() {
    let path = kubeconfig();
    let cluster = Counting::new(path.clone()).await;
    let helper = helper_client(path).await;
    let id = unique("dst-rm");
    let argocd_ns = argocd_namespace(&id);
    create_namespace(&helper, &argocd_ns).await;
    let argocd = ArgoCdStandIn::start(&helper, &[&argocd_ns]).await;
    let body = async {
        let opts = options(&id);
        let seven = seven_modules(&id, Arc::new(cluster.clone()), true)
            .apply(&opts)
            .await
            .unwrap();
        assert_success(&seven);
        let apps = applications(&helper, &argocd_ns);
        assert!(apps.get_opt("metrics-server").await.unwrap().is_some());

        let six = seven_modules(&id, Arc::new(cluster.clone()), false)
            .apply(&opts)
            .await
            .unwrap();
        assert_success(&six);
        assert_eq!(six.removed, ["metrics-server"]);
        assert!(
            apps.get_opt("metrics-server").await.unwrap().is_none(),
            "the removed module's Application is still there"
        );
        let state: Api<DynamicObject> = Api::namespaced_with(
            helper.clone(),
            &format!("{id}-state"),
            &config_map_resource(),
        );
        let entry = state.get(&state_name(&id)).await.unwrap();
        assert!(
            entry.data["data"].get("metrics-server").is_none(),
            "the removed module's state entry is still there: {:?}",
            entry.data["data"]
                .as_object()
                .map(|d| d.keys().collect::<Vec<_>>())
        );

        let destroyed = seven_modules(&id, Arc::new(cluster.clone()), false)
            .destroy(&opts)
            .await
            .unwrap();
        assert_success(&destroyed);
        let left = labelled_everywhere(&helper, &format!("{STACK_LABEL}={id}")).await;
        assert_eq!(left, Vec::<String>::new(), "objects left after destroy");
    };
    with_cleanup(body, cleanup(&helper, &id)).await;
    argocd.shutdown().await;
}
