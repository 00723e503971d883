//! Snapshots of every module's rendered objects and output, with defaults and customised.

mod support;

use support::*;

const DEFAULT_MODULES: &[&str] = &[
    "argocd",
    "prometheus-operator-crds",
    "traefik",
    "cert-manager",
    "keycloak",
    "kube-prometheus-stack",
    "loki",
    "metrics-server",
    "argocd-final",
];

#[tokio::test]
async fn default_modules() {
    let plan = plan(default_stack(IngressChoice::Traefik, OidcChoice::Keycloak)).await;
    for id in DEFAULT_MODULES {
        insta::assert_yaml_snapshot!(format!("default_{id}"), module(&plan, id));
    }
}

#[tokio::test]
async fn default_ingress_nginx() {
    let plan = plan(default_stack(IngressChoice::Nginx, OidcChoice::Keycloak)).await;
    insta::assert_yaml_snapshot!("default_ingress-nginx", module(&plan, "ingress-nginx"));
}

#[tokio::test]
async fn custom_modules() {
    let plan = plan(custom_stack()).await;
    for m in &plan.modules {
        if m.id != "cluster" {
            insta::assert_yaml_snapshot!(format!("custom_{}", m.id), m);
        }
    }
}

#[tokio::test]
async fn plans_never_show_secrets() {
    let plan = plan(default_stack(IngressChoice::Traefik, OidcChoice::Tiny)).await;
    let text = plan.to_text();
    let json = plan.to_json();
    for c in ["argocd", "grafana", "prometheus", "alertmanager"] {
        let secret = format!("tiny-secret-{c}");
        assert!(
            !text.contains(&secret) && !json.contains(&secret),
            "{secret} leaked"
        );
    }
    // but the objects the engine receives carry them
    let objects = objects(&plan);
    assert_eq!(
        objects["v1 Secret argocd/argocd-oidc"]["stringData"]["clientSecret"],
        "tiny-secret-argocd"
    );
}

#[tokio::test]
async fn overrides_merge_over_defaults() {
    let plan = plan(custom_stack()).await;
    let traefik = &objects(&plan)["argoproj.io/v1alpha1 Application gitops/traefik"];
    let values = &traefik["spec"]["source"]["helm"]["valuesObject"];
    // replaced
    assert_eq!(values["service"]["spec"]["type"], "NodePort");
    // deleted by null
    assert!(values.get("metrics").is_none());
    // added
    assert_eq!(values["log"]["level"], "DEBUG");
    // kept
    assert_eq!(values["deployment"]["replicas"], 3);
    assert_eq!(values["ingressClass"]["name"], "public");
    assert_eq!(
        traefik["spec"]["syncPolicy"]["automated"]["allowEmpty"],
        true
    );
    assert_eq!(traefik["spec"]["syncPolicy"]["automated"]["prune"], false);
}

#[tokio::test]
async fn argocd_final_orphans_and_keeps_the_bootstrap_secret() {
    let plan = plan(default_stack(IngressChoice::Traefik, OidcChoice::Keycloak)).await;
    let objects = objects(&plan);
    let app = &objects["argoproj.io/v1alpha1 Application argocd/argocd"];
    assert!(
        app["metadata"].get("finalizers").is_none(),
        "the final phase must orphan on delete"
    );
    let values = &app["spec"]["source"]["helm"]["valuesObject"];
    assert_eq!(values["configs"]["secret"]["createSecret"], false);
    assert_eq!(app["spec"]["source"]["helm"]["releaseName"], "argocd");
    assert_eq!(app["spec"]["destination"]["namespace"], "argocd");
    let oidc = values["configs"]["cm"]["oidc.config"].as_str().unwrap();
    assert!(
        oidc.contains("clientSecret: $argocd-oidc:clientSecret"),
        "{oidc}"
    );
    assert!(
        oidc.contains("https://keycloak.apps.prod.example.com/realms/devops-stack"),
        "{oidc}"
    );
    assert!(
        values["configs"]["rbac"]["policy.csv"]
            .as_str()
            .unwrap()
            .contains("g, platform-admins, role:admin")
    );
    // every other Application cascades
    let traefik = &objects["argoproj.io/v1alpha1 Application argocd/traefik"];
    assert_eq!(
        traefik["metadata"]["finalizers"][0],
        "resources-finalizer.argocd.argoproj.io"
    );
    // the final phase runs after everything else
    assert_eq!(plan.modules.last().unwrap().id, "argocd-final");
}

#[tokio::test]
async fn service_monitors_are_on_from_the_first_run() {
    let plan = plan(default_stack(IngressChoice::Traefik, OidcChoice::Keycloak)).await;
    let objects = objects(&plan);
    let values = |app: &str| {
        objects[&format!("argoproj.io/v1alpha1 Application argocd/{app}")]["spec"]["source"]["helm"]
            ["valuesObject"]
            .clone()
    };
    assert_eq!(
        values("traefik")["metrics"]["prometheus"]["serviceMonitor"]["enabled"],
        true
    );
    assert_eq!(
        values("cert-manager")["prometheus"]["servicemonitor"]["enabled"],
        true
    );
    assert_eq!(values("metrics-server")["serviceMonitor"]["enabled"], true);
    assert_eq!(values("kube-prometheus-stack")["crds"]["enabled"], false);
    // the CRDs module runs in the bootstrap phase, before the modules that use it
    let crds = module(&plan, "prometheus-operator-crds");
    assert_eq!(serde_json::to_value(crds.phase).unwrap(), "bootstrap");
    assert!(
        module(&plan, "traefik")
            .needs
            .contains(&"prometheus-operator-crds".to_owned())
    );
}

#[tokio::test]
async fn loki_adds_its_datasource_to_grafana() {
    let plan = plan(default_stack(IngressChoice::Traefik, OidcChoice::Keycloak)).await;
    let cm = &objects(&plan)["v1 ConfigMap monitoring/loki-datasource"];
    assert_eq!(cm["metadata"]["labels"]["grafana_datasource"], "1");
    assert!(
        cm["data"]["loki-datasource.yaml"]
            .as_str()
            .unwrap()
            .contains("url: http://loki.loki.svc:3100")
    );
}

#[tokio::test]
async fn alloy_ships_every_node_s_pod_logs_to_loki_with_promtail_s_labels() {
    let plan = plan(default_stack(IngressChoice::Traefik, OidcChoice::Keycloak)).await;
    let objects = objects(&plan);
    assert!(
        !objects.keys().any(|k| k.contains("promtail")),
        "Promtail is gone"
    );
    let app = &objects["argoproj.io/v1alpha1 Application argocd/loki-alloy"];
    let source = &app["spec"]["source"];
    assert_eq!(source["chart"], "alloy");
    assert_eq!(source["repoURL"], "https://grafana.github.io/helm-charts");
    let values = &source["helm"]["valuesObject"];
    assert_eq!(values["controller"]["type"], "daemonset");
    assert_eq!(values["rbac"]["create"], true);
    assert_eq!(values["alloy"]["mounts"]["varlog"], true);
    // positions on the node, under the storage path
    assert_eq!(
        values["controller"]["volumes"]["extra"][0]["hostPath"]["path"],
        "/var/lib/alloy"
    );
    assert_eq!(
        values["alloy"]["mounts"]["extra"][0]["mountPath"],
        "/var/lib/alloy"
    );
    assert_eq!(values["alloy"]["storagePath"], "/var/lib/alloy/data");
    let config = values["alloy"]["configMap"]["content"].as_str().unwrap();
    // the push URL Promtail had, and no tenant header (Loki runs without auth)
    assert!(config.contains("url = \"http://loki.loki.svc:3100/loki/api/v1/push\""));
    assert!(!config.contains("tenant_id"));
    for label in [
        "namespace",
        "pod",
        "container",
        "app",
        "instance",
        "component",
        "node_name",
        "job",
    ] {
        assert!(
            config.contains(&format!("target_label  = \"{label}\"")),
            "{label}"
        );
    }
    // `stream` comes from the CRI stage, `filename` from reading the files
    assert!(config.contains("stage.cri {}"));
    assert!(config.contains("loki.source.file"));
    assert!(config.contains("\"spec.nodeName=\" + sys.env(\"HOSTNAME\")"));
    assert_eq!(
        config.matches('{').count(),
        config.matches('}').count(),
        "{config}"
    );
    // Loki's chart: the community one, in the mode that replaced `SingleBinary`
    let loki = &objects["argoproj.io/v1alpha1 Application argocd/loki"]["spec"]["source"];
    assert_eq!(
        loki["repoURL"],
        "https://grafana-community.github.io/helm-charts"
    );
    assert_eq!(loki["helm"]["valuesObject"]["deploymentMode"], "Monolithic");
}

/// Argo CD 3 excludes these kinds from every Application by default (`resource.exclusions`):
/// an Application rendering one would never see it synced.
const ARGO_CD_3_EXCLUDED_KINDS: &[&str] = &[
    "Endpoints",
    "EndpointSlice",
    "Lease",
    "SelfSubjectReview",
    "TokenReview",
    "LocalSubjectAccessReview",
    "SelfSubjectAccessReview",
    "SelfSubjectRulesReview",
    "SubjectAccessReview",
    "CertificateSigningRequest",
    "CertificateRequest",
    "PolicyReport",
    "ClusterPolicyReport",
];

#[tokio::test]
async fn no_module_renders_a_kind_argo_cd_3_excludes() {
    for stack in [
        default_stack(IngressChoice::Traefik, OidcChoice::Keycloak),
        default_stack(IngressChoice::Nginx, OidcChoice::Keycloak),
        custom_stack(),
    ] {
        let text = plan(stack).await.to_text();
        for kind in ARGO_CD_3_EXCLUDED_KINDS {
            // objects are titled `<apiVersion> <Kind> ...`; extra objects inside Helm values
            // (cert-manager's issuers) carry `kind: <Kind>`
            assert!(!text.contains(&format!(" {kind} ")), "{kind}");
            assert!(!text.contains(&format!("kind: {kind}")), "{kind}");
        }
        assert!(
            text.contains("ClusterIssuer"),
            "the check sees extra objects"
        );
    }
}

#[tokio::test]
async fn monitoring_without_oidc_publishes_grafana_only() {
    use devops_stack_core::Stack;
    use devops_stack_modules::*;
    let mut stack = Stack::new("plain");
    let cluster = stack.add(ClusterModule::new("dev", "example.com"));
    let argocd = stack.add(ArgoCd::new(&cluster));
    let ingress = stack.add(IngressNginx::new(&cluster, &argocd));
    stack.add(KubePrometheusStack::new(&cluster, &argocd, &ingress));
    let plan = plan(stack).await;
    let titles: Vec<String> = module(&plan, "kube-prometheus-stack")
        .resources
        .iter()
        .map(|r| r.title())
        .collect();
    assert_eq!(
        titles,
        [
            "v1 Namespace monitoring",
            "v1 Secret monitoring/kube-prometheus-stack-grafana-admin",
            "argoproj.io/v1alpha1 Application argocd/kube-prometheus-stack",
        ]
    );
    let output = &module(&plan, "kube-prometheus-stack").output;
    assert_eq!(output["grafana_url"], "http://grafana.apps.dev.example.com");
    assert!(output["prometheus_public_url"].is_null());
    // without the CRDs module, the chart installs its own CRDs
    let objects = objects(&plan);
    let values = &objects["argoproj.io/v1alpha1 Application argocd/kube-prometheus-stack"]["spec"]
        ["source"]["helm"]["valuesObject"];
    assert_eq!(values["crds"]["enabled"], true);
    assert!(
        values["grafana"]["grafana.ini"]
            .get("auth.generic_oauth")
            .is_none()
    );
}
