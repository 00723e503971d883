//! The fleet offline: one definition over several spokes plans each spoke's modules under its
//! own ids, with Applications on the hub that deploy to the spoke, the registrations and the
//! waves; bad definitions are build errors naming the field and the fix.

use devops_stack_core::clusters::Kind;
use devops_stack_core::{ConfigError, Error, Stack};
use devops_stack_modules::fleet::{Fleet, SpokeSpec};
use devops_stack_modules::{ArgoCd, CertManager, MetricsServer, Traefik};
use serde::Serialize;

#[derive(Clone)]
struct Settings {
    replicas: u32,
}

#[derive(Serialize)]
struct Values {
    region: String,
    tier: Tier,
}

#[derive(Serialize)]
struct Tier {
    name: &'static str,
    critical: bool,
}

fn errors(build: impl FnOnce(&mut Stack)) -> Vec<ConfigError> {
    let mut stack = Stack::new("fleet");
    build(&mut stack);
    match stack.build() {
        Ok(_) => Vec::new(),
        Err(Error::Invalid(e)) => e,
        Err(e) => panic!("{e}"),
    }
}

fn one(errors: &[ConfigError], field: &str, problem: &str) {
    let found: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert!(
        errors
            .iter()
            .any(|e| e.field == field && e.problem.contains(problem) && !e.fix.is_empty()),
        "no error for {field} containing {problem:?} in {found:#?}"
    );
    assert_eq!(errors.len(), 1, "{found:#?}");
}

#[tokio::test]
async fn one_definition_plans_every_spoke_under_its_own_ids_with_waves() {
    let mut stack = Stack::new("fleet");
    let hub = stack.add(Kind::new("hub"));
    let argocd = stack.add(ArgoCd::new(&hub));
    let dev = stack.add(Kind::new("dev"));
    let prod = stack.add(Kind::new("prod"));
    let fleet = Fleet::new(&hub, &argocd)
        .spoke(
            SpokeSpec::new("dev", &dev, Settings { replicas: 1 })
                .server("https://10.0.0.1:6443")
                .label("env", "dev")
                .values(&Values {
                    region: "eu-west-1".into(),
                    tier: Tier {
                        name: "dev",
                        critical: false,
                    },
                }),
        )
        .spoke(
            SpokeSpec::new("prod", &prod, Settings { replicas: 3 })
                .server("https://10.0.0.2:6443")
                .label("env", "prod"),
        )
        .wave("first", ["dev"])
        .wave("then", ["prod"])
        .add_to(&mut stack, |spoke, s| {
            let (cluster, argocd) = (spoke.cluster().clone(), spoke.argocd());
            let traefik = spoke.add(Traefik::new(&cluster, argocd.clone()).replicas(s.replicas));
            spoke.add(CertManager::new(&cluster, argocd.clone()));
            spoke.add(MetricsServer::new(&cluster, argocd));
            let _ = traefik;
        });
    assert_eq!(fleet.spokes.len(), 2);
    assert_eq!(fleet.waves.len(), 2);
    let built = stack.build().unwrap();
    let plan = built.plan().await.unwrap();
    for spoke in ["dev", "prod"] {
        let traefik = plan.module(&format!("{spoke}-traefik")).unwrap();
        let app = traefik
            .resources
            .iter()
            .map(|r| serde_json::to_value(r).unwrap())
            .find(|r| r["object"]["kind"] == "Application")
            .unwrap();
        // the Application is on the hub, named by the spoke's module, deploying to the spoke
        assert_eq!(app["cluster"], "hub");
        assert_eq!(
            app["object"]["metadata"]["name"],
            format!("{spoke}-traefik")
        );
        assert_eq!(app["object"]["metadata"]["namespace"], "argocd");
        let server = if spoke == "dev" {
            "https://10.0.0.1:6443"
        } else {
            "https://10.0.0.2:6443"
        };
        assert_eq!(app["object"]["spec"]["destination"]["server"], server);
        let replicas =
            app["object"]["spec"]["source"]["helm"]["valuesObject"]["deployment"]["replicas"]
                .clone();
        assert_eq!(replicas, if spoke == "dev" { 1 } else { 3 });
        // its namespace goes to the spoke itself
        let ns = traefik
            .resources
            .iter()
            .map(|r| serde_json::to_value(r).unwrap())
            .find(|r| r["object"]["kind"] == "Namespace")
            .unwrap();
        assert_eq!(ns["cluster"], spoke);
    }
    // the registration: Argo CD's cluster Secret on the hub, typed labels and values, no
    // credentials in the plan; the token objects on the spoke
    let reg = plan.module("dev-spoke").unwrap();
    let secret = reg
        .resources
        .iter()
        .map(|r| serde_json::to_value(r).unwrap())
        .find(|r| r["object"]["kind"] == "Secret" && r["cluster"] == "hub")
        .unwrap();
    let labels = &secret["object"]["metadata"]["labels"];
    assert_eq!(labels["argocd.argoproj.io/secret-type"], "cluster");
    assert_eq!(labels["env"], "dev");
    assert_eq!(labels["devops-stack.io/wave"], "first");
    let annotations = &secret["object"]["metadata"]["annotations"];
    assert_eq!(annotations["values.devops-stack.io/region"], "eu-west-1");
    assert_eq!(annotations["values.devops-stack.io/tier.critical"], "false");
    // a Secret's data is redacted in plans; the output says where the spoke is
    assert_eq!(secret["object"]["stringData"]["config"], "<redacted>");
    assert_eq!(reg.output["server"], "https://10.0.0.1:6443");
    assert_eq!(reg.output["wave"], "first");
    assert!(reg.resources.iter().any(|r| {
        let r = serde_json::to_value(r).unwrap();
        r["cluster"] == "dev" && r["object"]["kind"] == "ServiceAccount"
    }));
    // the waves, in order
    let waves: Vec<_> = ["wave-first", "wave-then"]
        .iter()
        .map(|w| plan.module(w).unwrap().output.clone())
        .collect();
    assert_eq!(waves[0]["spokes"][0], "dev");
    assert_eq!(waves[1]["order"], 2);
    // the fleet's view: spokes in wave order, and where they differ (their settings)
    let report = fleet.plan_report(&plan);
    let names: Vec<_> = report
        .spokes
        .iter()
        .map(|s| (s.spoke.as_str(), s.wave.as_deref()))
        .collect();
    assert_eq!(names, [("dev", Some("first")), ("prod", Some("then"))]);
    assert!(
        report.spokes[1].modules["traefik"]
            .iter()
            .any(|l| l.contains("Application argocd/prod-traefik"))
    );
    let replicas = report
        .differences
        .iter()
        .find(|d| d.module == "traefik" && d.path.ends_with("deployment.replicas"))
        .expect("the replicas differ");
    assert_eq!(
        replicas.object,
        "argoproj.io/v1alpha1 Application argocd/{spoke}-traefik"
    );
    assert_eq!(replicas.values["dev"], "1");
    assert_eq!(replicas.values["prod"], "3");
    assert!(!replicas.live);
    // what names the spoke (its server, its modules' labels) is not a difference
    assert!(
        !report
            .differences
            .iter()
            .any(|d| d.path.ends_with("destination.server"))
    );
    assert!(
        !report
            .differences
            .iter()
            .any(|d| d.module == "metrics-server"),
        "{}",
        report.to_text()
    );
    let text = report.to_text();
    assert!(text.starts_with("wave `first`:\n  spoke `dev`:"), "{text}");
    assert!(text.contains("differences between spokes:"), "{text}");
    // prod's modules come after the first wave's gate, which comes after dev's modules
    let order = built.order();
    let at = |id: &str| order.iter().position(|m| *m == id).unwrap();
    assert!(at("dev-traefik") < at("wave-first"));
    assert!(at("wave-first") < at("prod-spoke"));
    assert!(at("wave-first") < at("prod-traefik"));
    assert!(built.predecessors("prod-traefik").contains(&"wave-first"));
}

#[test]
fn two_spokes_of_one_name_or_server_are_refused() {
    let e = errors(|s| {
        let hub = s.add(Kind::new("hub"));
        let argocd = s.add(ArgoCd::new(&hub));
        let a = s.add(Kind::new("a"));
        let b = s.add(Kind::new("b"));
        Fleet::new(&hub, &argocd)
            .spoke(SpokeSpec::new("a", &a, ()).server("https://x:6443"))
            .spoke(SpokeSpec::new("b", &b, ()).server("https://x:6443"))
            .add_to(s, |_, _| {});
    });
    one(
        &e,
        "fleet.spokes.b.server",
        "same API server https://x:6443",
    );
    let e = errors(|s| {
        let hub = s.add(Kind::new("hub"));
        let argocd = s.add(ArgoCd::new(&hub));
        let a = s.add(Kind::new("a"));
        let b = s.add(Kind::new("b"));
        Fleet::new(&hub, &argocd)
            .spoke(SpokeSpec::new("a", &a, ()))
            .spoke(SpokeSpec::new("a", &b, ()))
            .add_to(s, |_, _| {});
    });
    assert!(
        e.iter()
            .any(|e| e.field == "fleet.spokes.a.name" && e.problem.contains("two spokes")),
        "{e:#?}"
    );
}

#[test]
fn waves_must_name_known_spokes_once_and_cover_every_spoke() {
    let fleet = |waves: &[(&str, &[&str])]| {
        let waves: Vec<(String, Vec<String>)> = waves
            .iter()
            .map(|(w, s)| (w.to_string(), s.iter().map(|s| s.to_string()).collect()))
            .collect();
        errors(move |s| {
            let hub = s.add(Kind::new("hub"));
            let argocd = s.add(ArgoCd::new(&hub));
            let a = s.add(Kind::new("a"));
            let b = s.add(Kind::new("b"));
            let mut f = Fleet::new(&hub, &argocd)
                .spoke(SpokeSpec::new("a", &a, ()))
                .spoke(SpokeSpec::new("b", &b, ()));
            for (w, spokes) in waves {
                f = f.wave(w, spokes);
            }
            f.add_to(s, |_, _| {});
        })
    };
    one(
        &fleet(&[("one", &["a", "c"]), ("two", &["b"])]),
        "fleet.waves.one",
        "unknown spoke `c`",
    );
    one(
        &fleet(&[("one", &["a", "b"]), ("two", &["b"])]),
        "fleet.waves.two",
        "also in wave `one`",
    );
    one(&fleet(&[("one", &["a"])]), "fleet.spokes.b", "in no wave");
    assert!(fleet(&[("one", &["a"]), ("two", &["b"])]).is_empty());
}

#[test]
fn a_spoke_given_another_spokes_handle_or_an_unregistered_cluster_is_refused() {
    // spoke b's Traefik given spoke a's cluster
    let e = errors(|s| {
        let hub = s.add(Kind::new("hub"));
        let argocd = s.add(ArgoCd::new(&hub));
        let a = s.add(Kind::new("a"));
        let b = s.add(Kind::new("b"));
        let mut a_cluster = None;
        Fleet::new(&hub, &argocd)
            .spoke(SpokeSpec::new("a", &a, ()))
            .spoke(SpokeSpec::new("b", &b, ()))
            .add_to(s, |spoke, _| {
                let cluster = a_cluster
                    .get_or_insert_with(|| spoke.cluster().clone())
                    .clone();
                spoke.add(MetricsServer::new(&cluster, spoke.argocd()));
            });
    });
    one(&e, "needs", "uses the output of `a-spoke` of `a`");
    assert_eq!(e[0].module.as_deref(), Some("b-metrics-server"));
    // a spoke's module given a cluster that is no registered spoke
    let e = errors(|s| {
        let hub = s.add(Kind::new("hub"));
        let argocd = s.add(ArgoCd::new(&hub));
        let a = s.add(Kind::new("a"));
        let stray = s.add(Kind::new("stray"));
        Fleet::new(&hub, &argocd)
            .spoke(SpokeSpec::new("a", &a, ()))
            .add_to(s, |spoke, _| {
                spoke.add(MetricsServer::new(&stray, spoke.argocd()));
            });
    });
    one(
        &e,
        "needs",
        "targets the cluster of `stray`, which is not registered",
    );
    // a hub module given a spoke's own cluster
    let e = errors(|s| {
        let hub = s.add(Kind::new("hub"));
        let argocd = s.add(ArgoCd::new(&hub));
        let a = s.add(Kind::new("a"));
        Fleet::new(&hub, &argocd)
            .spoke(SpokeSpec::new("a", &a, ()))
            .add_to(s, |_, _| {});
        let other = s.scope("z").add(MetricsServer::new(&a, &argocd));
        let _ = other;
    });
    one(&e, "needs", "uses the output of `a` of `a`");
}

#[test]
fn labels_and_values_that_cannot_be_carried_are_refused_naming_the_field() {
    #[derive(Serialize)]
    struct Bad {
        zones: Vec<&'static str>,
    }
    let e = errors(|s| {
        let hub = s.add(Kind::new("hub"));
        let argocd = s.add(ArgoCd::new(&hub));
        let a = s.add(Kind::new("a"));
        Fleet::new(&hub, &argocd)
            .spoke(SpokeSpec::new("a", &a, ()).values(&Bad { zones: vec!["x"] }))
            .add_to(s, |_, _| {});
    });
    one(&e, "fleet.spokes.a.values.zones", "is a list");
    let e = errors(|s| {
        let hub = s.add(Kind::new("hub"));
        let argocd = s.add(ArgoCd::new(&hub));
        let a = s.add(Kind::new("a"));
        Fleet::new(&hub, &argocd)
            .spoke(SpokeSpec::new("a", &a, ()).label("env", "not a label value!"))
            .add_to(s, |_, _| {});
    });
    one(&e, "fleet.spokes.a.labels.env", "is not a label value");
}
