//! The public chart layer: an in-house chart's typed settings become its values, merged under
//! overrides; publishing fills the chart's ingress block from the ingress controller's and the
//! issuer's handles; settings that are not an object of values are refused at build; a spec of
//! one's own gets the shared settings, setters and checks.

use devops_stack_core::clusters::Kind;
use devops_stack_core::interfaces::IssuerKind;
use devops_stack_core::{Context, Error, Stack, Validation};
use devops_stack_modules::chart::{
    Chart, ChartSpec, Common, Env, Rendered, Secrets, Sizable, Sizing,
};
use devops_stack_modules::{
    ArgoCd, CertManager, ChartSource, HelmChart, IngressNginx, PrometheusOperatorCrds, Resources,
};
use serde::Serialize;
use serde_json::json;

#[derive(Serialize, Clone)]
#[serde(rename_all = "camelCase")]
struct Settings {
    replica_count: u32,
    feature: Feature,
}

#[derive(Serialize, Clone)]
struct Feature {
    enabled: bool,
    level: u8,
}

fn chart() -> ChartSource {
    ChartSource::new("https://charts.example.com", "ledger", "0.9.0")
}

#[tokio::test]
async fn settings_overrides_and_ingress_become_the_charts_values() {
    let mut stack = Stack::new("acme");
    let cluster = stack.add(Kind::new("acme"));
    let argocd = stack.add(ArgoCd::new(&cluster));
    let nginx = stack.add(IngressNginx::new(&cluster, &argocd));
    let tls = stack
        .add(CertManager::new(&cluster, &argocd))
        .issuer(IssuerKind::SelfSignedCa);
    let settings = Settings {
        replica_count: 3,
        feature: Feature {
            enabled: true,
            level: 2,
        },
    };
    stack.add(
        HelmChart::new("ledger", &cluster, &argocd, chart(), settings)
            .chart_version("0.9.1")
            .namespace("finance")
            .publish(&nginx, "ledger", tls)
            .values(json!({"feature": {"level": 5}, "extra": "x"})),
    );
    let plan = stack.build().unwrap().plan().await.unwrap();
    let module = plan.module("ledger").expect("planned");
    assert_eq!(
        module.needs,
        ["acme", "argocd", "ingress-nginx", "cert-manager"]
    );
    let app = module
        .resources
        .iter()
        .find_map(|r| {
            serde_json::to_value(r)
                .ok()
                .filter(|v| v["object"]["kind"] == "Application")
        })
        .expect("an Application");
    let source = &app["object"]["spec"]["source"];
    assert_eq!(source["targetRevision"], "0.9.1");
    assert_eq!(app["object"]["spec"]["destination"]["namespace"], "finance");
    let values = &source["helm"]["valuesObject"];
    // typed settings, deep-merged under the override (a sibling key survives)
    assert_eq!(values["replicaCount"], 3);
    assert_eq!(values["feature"], json!({"enabled": true, "level": 5}));
    assert_eq!(values["extra"], "x");
    // the ingress block from the controller's and the issuer's outputs
    let host = "ledger.apps.acme.127-0-0-1.nip.io";
    assert_eq!(values["ingress"]["className"], "nginx");
    assert_eq!(values["ingress"]["hosts"][0]["host"], host);
    assert_eq!(values["ingress"]["tls"][0]["secretName"], "ledger-tls");
    assert_eq!(
        values["ingress"]["annotations"]["cert-manager.io/cluster-issuer"],
        "self-signed-ca"
    );
    assert_eq!(module.output["url"], format!("https://{host}"));
    assert_eq!(module.output["namespace"], "finance");
}

#[test]
fn settings_that_are_not_an_object_of_values_are_refused() {
    let mut stack = Stack::new("acme");
    let cluster = stack.add(Kind::new("acme"));
    let argocd = stack.add(ArgoCd::new(&cluster));
    stack.add(HelmChart::new(
        "ledger",
        &cluster,
        &argocd,
        chart(),
        vec![1, 2, 3],
    ));
    let Err(Error::Invalid(errors)) = stack.build() else {
        panic!("expected the settings refused")
    };
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].field, "settings");
    assert_eq!(errors[0].module.as_deref(), Some("ledger"));
    assert!(errors[0].fix.contains("struct"), "{}", errors[0].fix);
}

/// A platform team's own chart spec: sized, with no output.
#[derive(Debug, Clone)]
struct Ledger {
    sizing: Sizing,
}

impl ChartSpec for Ledger {
    type Output = ();
    const KIND: &'static str = "ledger";

    fn validate_more(&self, _common: &Common, v: &mut Validation) {
        self.sizing.validate(v);
    }

    fn render(
        &self,
        common: &Common,
        _ctx: &Context,
        env: &Env,
        _secrets: &Secrets,
    ) -> devops_stack_modules::Result<Rendered<()>> {
        let defaults = json!({"replicaCount": self.sizing.replicas});
        let values = common.values(
            env,
            defaults,
            |crds| json!({"serviceMonitor": {"enabled": true, "labels": crds.labels}}),
        );
        Ok(Rendered {
            output: (),
            objects: common.chart_objects(env, values),
        })
    }
}

impl Sizable for Ledger {
    fn sizing(&mut self) -> &mut Sizing {
        &mut self.sizing
    }
}

/// The chart `ledger` of [`Ledger`] with one replica.
fn ledger(common: Common) -> Chart<Ledger> {
    Chart::with_spec(
        common,
        Ledger {
            sizing: Sizing::new(1, Resources::new()),
        },
    )
}

#[tokio::test]
async fn an_own_spec_gets_the_shared_settings_and_setters() {
    let mut stack = Stack::new("acme");
    let cluster = stack.add(Kind::new("acme"));
    let argocd = stack.add(ArgoCd::new(&cluster));
    let crds = stack.add(PrometheusOperatorCrds::new(&cluster, &argocd));
    let common = Common::new("ledger", &cluster, &argocd, chart(), "finance");
    stack.add(
        ledger(common)
            .replicas(3)
            .namespace("books")
            .self_heal(false)
            .service_monitors(&crds)
            .values(json!({"extra": "x"})),
    );
    let plan = stack.build().unwrap().plan().await.unwrap();
    let module = plan.module("ledger").expect("planned");
    assert_eq!(module.kind, "ledger");
    assert_eq!(module.needs, ["acme", "argocd", "prometheus-operator-crds"]);
    let app = module
        .resources
        .iter()
        .filter_map(|r| r.as_kubernetes())
        .find(|o| o["kind"] == "Application")
        .expect("an Application");
    assert_eq!(app["spec"]["destination"]["namespace"], "books");
    assert_eq!(app["spec"]["syncPolicy"]["automated"]["selfHeal"], false);
    assert_eq!(
        app["spec"]["source"]["helm"]["valuesObject"],
        json!({
            "replicaCount": 3,
            "serviceMonitor": {"enabled": true, "labels": {"devops-stack.io/monitoring": "true"}},
            "extra": "x",
        })
    );
}

#[test]
fn an_own_spec_gets_the_shared_checks() {
    let mut stack = Stack::new("acme");
    let cluster = stack.add(Kind::new("acme"));
    let argocd = stack.add(ArgoCd::new(&cluster));
    let common = Common::new("ledger", &cluster, &argocd, chart(), "finance");
    stack.add(ledger(common).replicas(0).chart_version("latest"));
    let Err(Error::Invalid(errors)) = stack.build() else {
        panic!("expected the settings refused")
    };
    let mut fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["chart_version", "replicas"], "{errors:?}");
}
