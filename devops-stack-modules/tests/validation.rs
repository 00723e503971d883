//! Bad configuration is refused when the stack is built, naming the module, the field and the fix.

mod support;

use devops_stack_core::interfaces::IssuerKind;
use devops_stack_core::{ConfigError, Stack};
use devops_stack_modules::*;
use serde_json::json;
use support::cloud;
use support::*;

/// The single error, asserting its module, field and a part of its problem.
fn assert_one(errors: &[ConfigError], module: &str, field: &str, problem: &str) {
    let found: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert!(
        errors.iter().any(|e| e.module.as_deref() == Some(module)
            && e.field == field
            && e.problem.contains(problem)
            && !e.fix.is_empty()),
        "no error for {module}.{field} containing {problem:?} in {found:#?}"
    );
    assert_eq!(errors.len(), 1, "{found:#?}");
}

#[test]
fn letsencrypt_email_must_be_valid() {
    let e = errors(|s, c, a| {
        let traefik = s.add(Traefik::new(c, a));
        s.add(
            CertManager::new(c, a)
                .letsencrypt("ops.example.com")
                .http01_ingress(&traefik),
        );
    });
    assert_one(&e, "cert-manager", "letsencrypt_email", "no `@`");
}

#[test]
fn acme_issuers_need_an_ingress_controller() {
    let e = errors(|s, c, a| {
        s.add(CertManager::new(c, a).letsencrypt("ops@example.com"));
    });
    assert_one(&e, "cert-manager", "requires", "an ingress controller");
}

#[test]
fn chart_version_must_be_semver() {
    let e = errors(|s, c, a| {
        s.add(Traefik::new(c, a).chart_version("latest"));
    });
    assert_one(
        &e,
        "traefik",
        "chart_version",
        "`latest` is not a semantic version",
    );
    // cert-manager's leading `v` is fine
    assert!(
        errors(|s, c, a| {
            s.add(CertManager::new(c, a).chart_version("v1.17.0"));
        })
        .is_empty()
    );
}

#[test]
fn traefik_values_the_chart_moved_are_refused_with_their_new_place() {
    let e = errors(|s, c, a| {
        s.add(Traefik::new(c, a).values(json!({"service": {"type": "NodePort"}})));
    });
    assert_one(
        &e,
        "traefik",
        "values",
        "`/service/type` is no longer a value of the traefik chart",
    );
    assert!(e[0].to_string().contains("/service/spec/type"), "{}", e[0]);
    let e = errors(|s, c, a| {
        s.add(Traefik::new(c, a).values(json!({"logs": {"general": {"level": "DEBUG"}}})));
    });
    assert!(e[0].to_string().contains("`/log`"), "{}", e[0]);
    let e = errors(|s, c, a| {
        s.add(Traefik::new(c, a).values(json!({"ports": {"web": {"redirections": {}}}})));
    });
    assert!(
        e[0].to_string().contains("/ports/web/http/redirections"),
        "{}",
        e[0]
    );
    assert!(
        errors(|s, c, a| {
            s.add(Traefik::new(c, a).values(json!({"service": {"spec": {"type": "NodePort"}}})));
        })
        .is_empty()
    );
}

#[test]
fn replicas_override_must_be_an_integer() {
    let e = errors(|s, c, a| {
        s.add(Traefik::new(c, a).values(json!({"deployment": {"replicas": "two"}})));
    });
    assert_one(
        &e,
        "traefik",
        "values.deployment.replicas",
        "is a string (`\"two\"`), but the chart expects an integer",
    );
}

#[test]
fn resources_override_must_be_an_object() {
    let e = errors(|s, c, a| {
        s.add(IngressNginx::new(c, a).values(json!({"controller": {"resources": "large"}})));
    });
    assert_one(
        &e,
        "ingress-nginx",
        "values.controller.resources",
        "the chart expects an object",
    );
    // null deletes, and is fine
    assert!(
        errors(|s, c, a| {
            s.add(IngressNginx::new(c, a).values(json!({"controller": {"resources": null}})));
        })
        .is_empty()
    );
}

#[test]
fn overrides_must_be_objects() {
    let e = errors(|s, c, a| {
        s.add(MetricsServer::new(c, a).values(json!(["replicas", 3])));
    });
    assert_one(&e, "metrics-server", "values", "an array, not an object");
}

#[test]
fn hostnames_must_be_dns_names() {
    let e = errors(|s, c, a| {
        let traefik = s.add(Traefik::new(c, a));
        s.add(Keycloak::new(c, a, &traefik).hostname("Login_Page.example.com"));
    });
    assert_one(&e, "keycloak", "hostname", "`L`");
    let e = errors(|s, c, a| {
        let traefik = s.add(Traefik::new(c, a));
        s.add(KubePrometheusStack::new(c, a, &traefik).hostname("grafana", "grafana..example.com"));
    });
    assert_one(
        &e,
        "kube-prometheus-stack",
        "hostnames.grafana",
        "empty label",
    );
}

#[test]
fn namespaces_must_be_dns_labels() {
    let e = errors(|s, c, a| {
        s.add(Loki::new(c, a).namespace("Logs_NS"));
    });
    assert_one(&e, "loki", "namespace", "`L`");
}

#[test]
fn user_emails_must_be_valid() {
    let e = errors(|s, c, a| {
        let traefik = s.add(Traefik::new(c, a));
        s.add(Keycloak::new(c, a, &traefik).user("jane", "jane@localhost"));
    });
    assert_one(&e, "keycloak", "users.jane.email", "without a dot");
}

#[test]
fn storage_sizes_must_be_quantities() {
    let e = errors(|s, c, a| {
        let traefik = s.add(Traefik::new(c, a));
        s.add(
            KubePrometheusStack::new(c, a, &traefik).prometheus_storage(Persistence::new("lots")),
        );
    });
    assert_one(
        &e,
        "kube-prometheus-stack",
        "prometheus_storage.size",
        "not a storage quantity",
    );
}

#[test]
fn service_types_are_checked() {
    let e = errors(|s, c, a| {
        s.add(Traefik::new(c, a).service_type("Loadbalancer"));
    });
    assert_one(
        &e,
        "traefik",
        "service_type",
        "`Loadbalancer` is not a Service type",
    );
}

#[test]
fn only_one_default_ingress_class() {
    let e = errors(|s, c, a| {
        s.add(Traefik::new(c, a));
        s.add(IngressNginx::new(c, a));
    });
    assert_one(
        &e,
        "ingress-nginx",
        "default_class",
        "2 ingress controllers claim the default",
    );
    assert!(
        errors(|s, c, a| {
            s.add(Traefik::new(c, a));
            s.add(IngressNginx::new(c, a).default_class(false));
        })
        .is_empty()
    );
}

#[test]
fn missing_issuer_is_reported_when_read() {
    // the self-signed CA only: asking for Let's Encrypt fails at plan time, naming the kind
    let mut stack = Stack::new("t");
    let cluster = stack.add(ClusterModule::new("prod", "example.com"));
    let argocd = stack.add(ArgoCd::new(&cluster));
    let traefik = stack.add(Traefik::new(&cluster, &argocd));
    let certs = stack.add(CertManager::new(&cluster, &argocd));
    stack.add(
        Keycloak::new(&cluster, &argocd, &traefik)
            .issuer(certs.issuer(IssuerKind::LetsEncryptProduction)),
    );
    let err = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async { stack.build().unwrap().plan().await.unwrap_err() });
    assert!(err.to_string().contains("LetsEncryptProduction"), "{err}");
}

#[test]
fn storage_class_names_must_be_dns_1123_subdomains() {
    let identity = cloud::RecordingIdentity::new();
    let e = errors(|s, c, a| {
        s.add(EbsCsiDriver::new(c, a, identity.input()).storage_class_name("Fast_GP3"));
    });
    assert_one(&e, "aws-ebs-csi-driver", "storage_class_name", "`F`");
    assert!(e[0].fix.contains("DNS-1123"), "{}", e[0]);
}

#[test]
fn loki_retention_of_zero_is_refused() {
    let e = errors(|s, c, a| {
        s.add(Loki::new(c, a).retention("0h"));
    });
    assert_one(&e, "loki", "retention", "keep logs forever");
    assert!(e[0].fix.contains("744h"), "{}", e[0]);
}

#[test]
fn dns01_without_letsencrypt_or_with_an_http01_ingress_is_refused() {
    let identity = cloud::RecordingIdentity::new();
    let records = cloud::RecordingRecords::new();
    let dns01 = || {
        AcmeChallenge::dns01(
            devops_stack_core::Input::value(cloud::zone("example.com", &records)),
            identity.input(),
        )
    };
    let e = errors(|s, c, a| {
        s.add(CertManager::new(c, a).acme_challenge(dns01()));
    });
    assert_one(&e, "cert-manager", "acme_challenge", "no ACME issuer");
    let e = errors(|s, c, a| {
        let traefik = s.add(Traefik::new(c, a));
        s.add(
            CertManager::new(c, a)
                .letsencrypt("ops@example.com")
                .http01_ingress(&traefik)
                .acme_challenge(dns01()),
        );
    });
    assert_one(
        &e,
        "cert-manager",
        "http01_ingress",
        "the challenge is DNS-01",
    );
}

#[test]
fn a_wildcard_record_needs_a_load_balancer_service() {
    let records = cloud::RecordingRecords::new();
    let e = errors(|s, c, a| {
        s.add(Traefik::new(c, a).service_type("NodePort").dns_zone(
            devops_stack_core::Input::value(cloud::zone("example.com", &records)),
        ));
    });
    assert_one(&e, "traefik", "service_type", "gets no load balancer");
}

/// The error of planning a stack with a cluster `prod.example.com` and what `add` adds.
fn plan_error(
    add: impl FnOnce(
        &mut Stack,
        &devops_stack_core::Handle<TestCluster>,
        &devops_stack_core::Handle<ArgoCdOutput>,
    ),
) -> String {
    let mut stack = Stack::new("t");
    let cluster = stack.add(ClusterModule::new("prod", "example.com"));
    let argocd = stack.add(ArgoCd::new(&cluster));
    add(&mut stack, &cluster, &argocd);
    let stack = stack.build().expect("valid until planned");
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async { stack.plan().await.unwrap_err() })
        .to_string()
}

#[test]
fn a_wildcard_record_outside_the_zone_is_refused_naming_both() {
    let records = cloud::RecordingRecords::new();
    let e = plan_error(|s, c, a| {
        s.add(
            Traefik::new(c, a).dns_zone(devops_stack_core::Input::value(cloud::zone(
                "example.org",
                &records,
            ))),
        );
    });
    assert!(
        e.contains("dns_zone")
            && e.contains("`*.apps.prod.example.com`")
            && e.contains("`example.org`")
            && e.contains("wildcard_record(false)"),
        "{e}"
    );
    // a parent domain is fine
    let mut stack = Stack::new("t");
    let cluster = stack.add(ClusterModule::new("prod", "example.com"));
    let argocd = stack.add(ArgoCd::new(&cluster));
    stack.add(
        Traefik::new(&cluster, &argocd).dns_zone(devops_stack_core::Input::value(cloud::zone(
            "example.com",
            &records,
        ))),
    );
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async { stack.build().unwrap().plan().await.unwrap() });
    assert!(records.calls().is_empty());
}

#[test]
fn dns01_hostnames_outside_the_zone_are_refused_naming_both() {
    let identity = cloud::RecordingIdentity::new();
    let records = cloud::RecordingRecords::new();
    let e = plan_error(|s, c, a| {
        s.add(
            CertManager::new(c, a)
                .letsencrypt("ops@example.com")
                .acme_challenge(AcmeChallenge::dns01(
                    devops_stack_core::Input::value(cloud::zone("prod.example.org", &records)),
                    identity.input(),
                )),
        );
    });
    assert!(
        e.contains("acme_challenge")
            && e.contains("`*.apps.prod.example.com`")
            && e.contains("`prod.example.org`"),
        "{e}"
    );
}
