//! The whole platform on the test environment's platform tier (a real Argo CD, kwok's nodes):
//! apply from nothing to every Application Synced and Healthy, a no-op re-apply (and its write
//! requests), and destroy, over `DEVOPS_STACK_BENCH_RUNS` rounds (default 5), with medians.
//!
//! ```text
//! scripts/testenv.sh start --name platform --load-balancers
//! eval "$(scripts/testenv.sh env --name platform --prefix PLATFORM)"
//! cargo bench --bench platform
//! ```
//!
//! Without `DEVOPS_STACK_TEST_PLATFORM_KUBECONFIG` it fails, saying how to set it. A round is
//! minutes of waiting on Argo CD, so this is a plain timed loop (as the live part of
//! `benches/kube_apply.rs`), not a criterion benchmark.

use devops_stack_test::live;
use devops_stack_test::platform;

use std::sync::Arc;
use std::time::Instant;

use devops_stack_core::interfaces::ClusterRef;
use devops_stack_test::stats::median;
use live::Counting;
use platform::{TestEnv, options, platform, play_cert_manager, shop_repository, statuses};

#[tokio::main]
async fn main() {
    let env = TestEnv::get();
    let runs: usize = std::env::var("DEVOPS_STACK_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let counting = Counting::new(env.kubeconfig.clone()).await;
    let client = counting.client.clone();
    let cluster: ClusterRef = Arc::new(counting.clone());
    let repo = env.charts();
    let shop = shop_repository(&env);
    let cert_manager = play_cert_manager(client.clone());
    let opts = options();
    let stack = platform(&env, cluster, &repo, &shop, false).stack;
    let leftovers = stack.destroy(&opts).await.expect("destroying leftovers");
    assert!(leftovers.is_success(), "{}", leftovers.to_text());
    let (mut apply, mut reapply, mut destroy) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=runs {
        let t = Instant::now();
        let first = stack.apply(&opts).await.expect("the platform applies");
        let a = t.elapsed().as_secs_f64();
        assert!(first.is_success(), "{}", first.to_text());
        let apps = statuses(&client).await;
        assert!(
            apps.values().all(|(s, h)| s == "Synced" && h == "Healthy"),
            "{apps:?}"
        );
        counting.take();
        let t = Instant::now();
        let again = stack.apply(&opts).await.expect("the platform re-applies");
        let r = t.elapsed().as_secs_f64();
        assert!(again.is_success(), "{}", again.to_text());
        let writes = counting.take_writes();
        let t = Instant::now();
        let gone = stack
            .destroy(&opts)
            .await
            .expect("the platform is destroyed");
        let d = t.elapsed().as_secs_f64();
        assert!(gone.is_success(), "{}", gone.to_text());
        println!(
            "round {round}: {} Applications; apply {a:.1} s, no-op re-apply {r:.2} s ({} writes), destroy {d:.1} s",
            apps.len(),
            writes.len()
        );
        assert!(writes.is_empty(), "a re-apply wrote: {writes:?}");
        apply.push(a);
        reapply.push(r);
        destroy.push(d);
    }
    cert_manager.abort();
    println!(
        "platform/{runs} rounds: apply median {:.1} s (min {:.1}, max {:.1}); no-op re-apply median {:.2} s; destroy median {:.1} s (min {:.1}, max {:.1})",
        median(&apply),
        apply.iter().copied().fold(f64::INFINITY, f64::min),
        apply.iter().copied().fold(0.0, f64::max),
        median(&reapply),
        median(&destroy),
        destroy.iter().copied().fold(f64::INFINITY, f64::min),
        destroy.iter().copied().fold(0.0, f64::max),
    );
}
