//! A fleet written once: a hub with Argo CD, and three spokes that get the same platform with
//! their own typed settings, rolled out dev → staging → prod. Each spoke is registered with the
//! hub's Argo CD (its cluster Secret carries typed labels and values); its modules' Applications
//! live on the hub and deploy to it. The offline plan shows each spoke's modules, the waves, and
//! where the spokes differ.
//!
//! ```sh
//! cargo run --example fleet   # the offline plan; no cluster is contacted
//! ```

use devops_stack_core::Stack;
use devops_stack_core::clusters::Kind;
use devops_stack_core::interfaces::IssuerKind;
use devops_stack_modules::fleet::{Fleet, SpokeSpec};
use devops_stack_modules::{ArgoCd, CertManager, ChartSource, HelmChart, MetricsServer, Traefik};
use serde::Serialize;

/// What differs between spokes, typed: the fleet's function reads it.
struct Settings {
    replicas: u32,
    tier: &'static str,
}

/// Values every spoke's registration carries (ApplicationSet templates read them).
#[derive(Serialize)]
struct Region {
    region: &'static str,
    zone_count: u32,
}

/// The in-house chart's values.
#[derive(Serialize, Clone)]
#[serde(rename_all = "camelCase")]
struct Shop {
    replica_count: u32,
    tier: &'static str,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut stack = Stack::new("fleet");
    let hub = stack.add(Kind::new("hub"));
    let argocd = stack.add(ArgoCd::new(&hub));

    let mut fleet = Fleet::new(&hub, &argocd);
    for (name, replicas, tier, region) in [
        ("eu-dev", 1, "dev", "eu-west-1"),
        ("eu-staging", 2, "staging", "eu-west-1"),
        ("eu-prod", 3, "prod", "eu-central-1"),
    ] {
        let cluster = stack.add(Kind::new(name));
        let server = format!("https://{name}.clusters.example.com:6443");
        fleet = fleet.spoke(
            SpokeSpec::new(name, &cluster, Settings { replicas, tier })
                .server(server)
                .label("tier", tier)
                .values(&Region { region, zone_count: 3 }),
        );
    }
    let fleet =
        fleet.wave("dev", ["eu-dev"]).wave("staging", ["eu-staging"]).wave("prod", ["eu-prod"]);

    // The platform of one spoke, from its settings: the same for every spoke.
    let handles = fleet.add_to(&mut stack, |spoke, s| {
        let (cluster, argocd) = (spoke.cluster().clone(), spoke.argocd());
        let traefik = spoke.add(Traefik::new(&cluster, argocd.clone()).replicas(s.replicas));
        let certs = spoke.add(CertManager::new(&cluster, argocd.clone()));
        spoke.add(MetricsServer::new(&cluster, argocd.clone()));
        let chart = ChartSource::new("https://charts.example.com", "shop", "2.1.0");
        let shop = Shop { replica_count: s.replicas, tier: s.tier };
        spoke.add(HelmChart::new("shop", &cluster, argocd, chart, shop).publish(
            &traefik,
            "shop",
            certs.issuer(IssuerKind::SelfSignedCa),
        ));
    });

    let stack = stack.build()?;
    let plan = stack.plan().await?;
    println!("{}", plan.to_text());
    println!("{}", handles.plan_report(&plan).to_text());
    Ok(())
}
