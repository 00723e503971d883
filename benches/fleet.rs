//! A large fleet, offline: one hub (kind, Argo CD) and 100 spokes of 12 modules each (the
//! Prometheus Operator CRDs, Traefik with ServiceMonitors, ingress-nginx, cert-manager,
//! metrics-server and seven in-house charts published through Traefik with TLS), in four waves.
//!
//! - `fleet/build_plan/100x12`: build (validation included) and offline plan of the whole fleet
//!   (1,406 modules: 100 clusters, 100 registrations, 1,200 spoke modules, 4 wave gates, the
//!   hub and its Argo CD). Target: median under 150 ms. The peak heap of one run is printed
//!   (target: under 200 MiB).
//! - `fleet/plan_report/100x12`: the fleet's view of that plan (waves, spokes, the fields
//!   spokes differ in).
//!
//! Run: `cargo bench --bench fleet`

use criterion::{Criterion, criterion_group, criterion_main};
use devops_stack_core::clusters::Kind;
use devops_stack_core::interfaces::IssuerKind;
use devops_stack_core::{BuiltStack, Stack};
use devops_stack_modules::fleet::{Fleet, FleetHandles, SpokeSpec};
use devops_stack_modules::{
    ArgoCd, CertManager, ChartSource, HelmChart, IngressNginx, MetricsServer,
    PrometheusOperatorCrds, Traefik,
};
use peak_alloc::PeakAlloc;
use serde::Serialize;

#[global_allocator]
static PEAK: PeakAlloc = PeakAlloc;

const SPOKES: usize = 100;
const APPS: [&str; 7] = [
    "billing", "orders", "catalog", "search", "cart", "users", "mail",
];

/// What differs between spokes.
struct Settings {
    replicas: u32,
}

/// An in-house chart's values.
#[derive(Serialize, Clone)]
#[serde(rename_all = "camelCase")]
struct App {
    replica_count: u32,
}

fn fleet() -> (BuiltStack, FleetHandles) {
    let mut stack = Stack::new("fleet");
    let hub = stack.add(Kind::new("hub"));
    let argocd = stack.add(ArgoCd::new(&hub));
    let mut fleet = Fleet::new(&hub, &argocd);
    let names: Vec<String> = (0..SPOKES).map(|i| format!("s{i:03}")).collect();
    for (i, name) in names.iter().enumerate() {
        let cluster = stack.add(Kind::new(name));
        let settings = Settings {
            replicas: 1 + (i % 3) as u32,
        };
        let spec = SpokeSpec::new(name, &cluster, settings)
            .server(format!("https://10.0.{}.{}:6443", i / 250, i % 250))
            .label("env", if i < 10 { "staging" } else { "prod" });
        fleet = fleet.spoke(spec);
    }
    for (w, chunk) in names.chunks(SPOKES / 4).enumerate() {
        fleet = fleet.wave(format!("w{w}"), chunk.iter().cloned());
    }
    let handles = fleet.add_to(&mut stack, |spoke, s| {
        let (cluster, argocd) = (spoke.cluster().clone(), spoke.argocd());
        let crds = spoke.add(PrometheusOperatorCrds::new(&cluster, argocd.clone()));
        let traefik = spoke.add(
            Traefik::new(&cluster, argocd.clone())
                .replicas(s.replicas)
                .service_monitors(&crds),
        );
        spoke.add(IngressNginx::new(&cluster, argocd.clone()).default_class(false));
        let certs = spoke.add(CertManager::new(&cluster, argocd.clone()));
        spoke.add(MetricsServer::new(&cluster, argocd.clone()));
        for app in APPS {
            let chart = ChartSource::new("https://charts.example.com", app, "1.0.0");
            let values = App {
                replica_count: s.replicas,
            };
            spoke.add(
                HelmChart::new(app, &cluster, argocd.clone(), chart, values).publish(
                    &traefik,
                    app,
                    certs.issuer(IssuerKind::SelfSignedCa),
                ),
            );
        }
    });
    (stack.build().expect("the fleet builds"), handles)
}

fn build_plan(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    PEAK.reset_peak_usage();
    let before = PEAK.current_usage();
    let (stack, handles) = fleet();
    let plan = rt.block_on(stack.plan()).unwrap();
    println!(
        "fleet/build_plan/100x12: {} modules planned; peak heap {:.1} MiB above the {:.1} MiB baseline",
        plan.modules.len(),
        (PEAK.peak_usage() - before) as f64 / 1048576.0,
        before as f64 / 1048576.0
    );
    let report = handles.plan_report(&plan);
    println!(
        "fleet/plan_report/100x12: {} spokes, {} fields that differ between spokes",
        report.spokes.len(),
        report.differences.len()
    );
    let mut group = c.benchmark_group("fleet");
    group.sample_size(20);
    group.bench_function("build_plan/100x12", |b| {
        b.to_async(&rt).iter(|| async {
            let (stack, _) = fleet();
            stack.plan().await.unwrap()
        });
    });
    group.bench_function("plan_report/100x12", |b| {
        b.iter(|| handles.plan_report(&plan));
    });
    group.finish();
}

criterion_group!(benches, build_plan);
criterion_main!(benches);
