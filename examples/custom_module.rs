//! An in-house Helm chart wrapped as a typed module with the public chart layer
//! (`devops_stack_modules::chart::HelmChart`), published through the stack's ingress with TLS.
//! Its settings are a typed struct, deep-merged with value overrides; the Application, the
//! waits, plan, diff and ownership come with it. (An application team onboarded through the team
//! layer is `examples/team.rs`.)
//!
//! ```sh
//! cargo run --example custom_module   # prints the offline plan; no cluster is contacted
//! ```

use devops_stack_core::Stack;
use devops_stack_core::clusters::Kind;
use devops_stack_core::interfaces::IssuerKind;
use devops_stack_modules::{ArgoCd, CertManager, ChartSource, HelmChart, Traefik};
use serde::Serialize;

/// The chart's settings, named as its `values.yaml` names them.
#[derive(Serialize, Clone)]
#[serde(rename_all = "camelCase")]
struct Billing {
    replica_count: u32,
    currency: String,
    image: Image,
}

#[derive(Serialize, Clone)]
struct Image {
    repository: String,
    tag: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut stack = Stack::new("shop");
    let cluster = stack.add(Kind::new("shop"));
    let argocd = stack.add(ArgoCd::new(&cluster));
    let traefik = stack.add(Traefik::new(&cluster, &argocd).service_type("NodePort"));
    let tls = stack.add(CertManager::new(&cluster, &argocd)).issuer(IssuerKind::SelfSignedCa);

    let image = Image { repository: "registry.example.com/billing".into(), tag: "2.3.1".into() };
    let settings = Billing { replica_count: 2, currency: "EUR".into(), image };
    let chart = ChartSource::new("https://charts.example.com", "billing", "1.4.2");
    stack.add(
        HelmChart::new("billing", &cluster, &argocd, chart, settings)
            .publish(&traefik, "billing", tls) // https://billing.apps.shop.<domain>
            .values(serde_json::json!({"podAnnotations": {"team": "payments"}}))
            .self_heal(true),
    );

    let plan = stack.build()?.plan().await?;
    println!("{}", plan.to_text());
    Ok(())
}
