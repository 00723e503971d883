//! A test cluster, a tiny OIDC provider, and whole stacks built from the built-in modules.
#![allow(dead_code, unreachable_pub)]

pub mod cloud;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use devops_stack_core::interfaces::{Cluster, IssuerKind, Oidc, OidcProvider};
use devops_stack_core::plan::{ModulePlan, Plan};
use devops_stack_core::{BoxError, Context, Handle, Module, ModuleResult, Planned, Secret, Stack};
use devops_stack_modules::*;
use serde::Serialize;
use serde_json::{Value, json};

/// A cluster that exists only in plans.
#[derive(Debug, Clone, Serialize)]
pub struct TestCluster {
    pub name: String,
    pub base_domain: String,
}

impl Cluster for TestCluster {
    fn name(&self) -> &str {
        &self.name
    }
    fn base_domain(&self) -> &str {
        &self.base_domain
    }
    fn client(&self) -> Pin<Box<dyn Future<Output = Result<kube::Client, BoxError>> + Send + '_>> {
        Box::pin(async { Err("tests have no cluster".into()) })
    }
}

/// Provides the [`TestCluster`].
pub struct ClusterModule(pub TestCluster);

impl ClusterModule {
    pub fn new(name: &str, base_domain: &str) -> Self {
        ClusterModule(TestCluster {
            name: name.into(),
            base_domain: base_domain.into(),
        })
    }
}

impl Module for ClusterModule {
    type Output = TestCluster;
    fn id(&self) -> &str {
        "cluster"
    }
    fn kind(&self) -> &'static str {
        "test-cluster"
    }
    async fn plan(&self, _: &Context) -> ModuleResult<Planned<TestCluster>> {
        Ok(Planned::new(self.0.clone()))
    }
    async fn apply(&self, _: &Context) -> ModuleResult<TestCluster> {
        Ok(self.0.clone())
    }
    async fn destroy(&self, _: &Context) -> ModuleResult<()> {
        Ok(())
    }
}

/// The output of [`TinyOidc`]: fixed settings for any client asked for.
#[derive(Debug, Clone, Serialize)]
pub struct TinyClients(pub BTreeMap<String, Oidc>);

impl OidcProvider for TinyClients {
    fn client(&self, name: &str) -> Option<Oidc> {
        self.0.get(name).cloned()
    }
    fn client_names(&self) -> Vec<String> {
        self.0.keys().cloned().collect()
    }
}

/// An OIDC provider that creates nothing: an external identity provider.
pub struct TinyOidc;

impl TinyOidc {
    fn clients() -> TinyClients {
        let issuer = "https://login.example.org";
        TinyClients(
            ["argocd", "grafana", "prometheus", "alertmanager"]
                .into_iter()
                .map(|c| {
                    (
                        c.to_owned(),
                        Oidc {
                            issuer_url: issuer.into(),
                            authorization_url: format!("{issuer}/authorize"),
                            token_url: format!("{issuer}/token"),
                            userinfo_url: format!("{issuer}/userinfo"),
                            logout_url: None,
                            client_id: format!("tiny-{c}"),
                            client_secret: Secret::new(format!("tiny-secret-{c}")),
                            scopes: vec!["openid".into(), "email".into()],
                            groups_claim: "roles".into(),
                            extra_proxy_args: vec![
                                "--provider=oidc".into(),
                                format!("--oidc-issuer-url={issuer}"),
                            ],
                        },
                    )
                })
                .collect(),
        )
    }
}

impl Module for TinyOidc {
    type Output = TinyClients;
    fn id(&self) -> &str {
        "tiny-oidc"
    }
    fn kind(&self) -> &'static str {
        "tiny-oidc"
    }
    async fn plan(&self, _: &Context) -> ModuleResult<Planned<TinyClients>> {
        Ok(Planned::new(TinyOidc::clients()))
    }
    async fn apply(&self, _: &Context) -> ModuleResult<TinyClients> {
        Ok(TinyOidc::clients())
    }
    async fn destroy(&self, _: &Context) -> ModuleResult<()> {
        Ok(())
    }
}

/// Which ingress controller a test stack uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngressChoice {
    Traefik,
    Nginx,
}

/// Which OIDC provider a test stack uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OidcChoice {
    Keycloak,
    Tiny,
}

/// The whole platform with default settings.
pub fn default_stack(ingress_choice: IngressChoice, oidc_choice: OidcChoice) -> Stack {
    let mut stack = Stack::new("test");
    let cluster = stack.add(ClusterModule::new("prod", "example.com"));
    let argocd = stack.add(ArgoCd::new(&cluster));
    let crds = stack.add(PrometheusOperatorCrds::new(&cluster, &argocd));
    let ingress = match ingress_choice {
        IngressChoice::Traefik => {
            stack.add(Traefik::new(&cluster, &argocd).service_monitors(&crds))
        }
        IngressChoice::Nginx => {
            stack.add(IngressNginx::new(&cluster, &argocd).service_monitors(&crds))
        }
    };
    let certs = stack.add(
        CertManager::new(&cluster, &argocd)
            .letsencrypt("ops@example.com")
            .http01_ingress(&ingress)
            .service_monitors(&crds),
    );
    let wiring = Wiring {
        cluster,
        argocd,
        crds,
        ingress,
        certs,
    };
    match oidc_choice {
        OidcChoice::Keycloak => {
            let tls = wiring.certs.issuer(IssuerKind::LetsEncryptProduction);
            let sso = stack.add(
                Keycloak::new(&wiring.cluster, &wiring.argocd, &wiring.ingress)
                    .issuer(tls)
                    .user("jane", "jane@example.com"),
            );
            wiring.rest(&mut stack, &sso);
        }
        OidcChoice::Tiny => {
            let sso = stack.add(TinyOidc);
            wiring.rest(&mut stack, &sso);
        }
    }
    stack
}

struct Wiring {
    cluster: Handle<TestCluster>,
    argocd: Handle<ArgoCdOutput>,
    crds: Handle<ServiceMonitorCrds>,
    ingress: Handle<IngressController>,
    certs: Handle<ClusterIssuers>,
}

impl Wiring {
    fn rest<T: OidcProvider + Send + Sync + 'static>(&self, stack: &mut Stack, sso: &Handle<T>) {
        let Wiring {
            cluster,
            argocd,
            crds,
            ingress,
            certs,
        } = self;
        let tls = certs.issuer(IssuerKind::LetsEncryptProduction);
        let monitoring = stack.add(
            KubePrometheusStack::new(cluster, argocd, ingress)
                .oidc(sso)
                .issuer(tls.clone())
                .service_monitors(crds),
        );
        stack.add(
            Loki::new(cluster, argocd)
                .monitoring(&monitoring)
                .service_monitors(crds),
        );
        stack.add(MetricsServer::new(cluster, argocd).service_monitors(crds));
        stack.add(
            ArgoCdFinal::new(cluster, argocd, ingress, sso.oidc("argocd"))
                .issuer(tls)
                .monitoring(&monitoring),
        );
    }
}

/// The platform with every module customised.
pub fn custom_stack() -> Stack {
    let mut stack = Stack::new("custom");
    let cluster = stack.add(ClusterModule::new("staging", "corp.example.net"));
    let argocd = stack.add(
        ArgoCd::new(&cluster)
            .namespace("gitops")
            .project("platform")
            .install_method(InstallMethod::Manifests)
            .manifests_url("https://mirror.corp.example.net/argo-cd/install.yaml")
            .pipeline_account("ci")
            .replicas(2),
    );
    let crds = stack.add(
        PrometheusOperatorCrds::new(&cluster, &argocd)
            .labels(BTreeMap::from([("team".to_owned(), "platform".to_owned())]))
            .chart_version("21.0.0"),
    );
    let ingress = stack.add(
        Traefik::new(&cluster, &argocd)
            .class_name("public")
            .replicas(3)
            .resources(Resources::new().request("cpu", "500m").limit("memory", "1Gi"))
            .chart_version("41.2.0")
            .sync(SyncSettings {
                prune: false,
                self_heal: true,
                allow_empty: true,
            })
            .values(json!({"service": {"spec": {"type": "NodePort"}}, "metrics": null, "log": {"level": "DEBUG"}}))
            .service_monitors(&crds),
    );
    stack.add(
        IngressNginx::new(&cluster, &argocd)
            .class_name("internal")
            .default_class(false)
            .namespace("nginx-internal")
            .destination_server("https://staging.corp.example.net:6443")
            .values(json!({"controller": {"service": {"type": "ClusterIP"}}})),
    );
    let certs = stack.add(
        CertManager::new(&cluster, &argocd)
            .replicas(2)
            .project("infra")
            .chart_repository("https://charts.corp.example.net/jetstack"),
    );
    let tls = certs.issuer(IssuerKind::SelfSignedCa);
    let sso = stack.add(
        Keycloak::new(&cluster, &argocd, &ingress)
            .issuer(tls.clone())
            .hostname("login.corp.example.net")
            .realm("corp")
            .admin_group("ops")
            .user("jane", "jane@corp.example.net")
            .users(BTreeMap::from([(
                "bob".to_owned(),
                KeycloakUser {
                    email: "bob@corp.example.net".into(),
                    admin: false,
                },
            )]))
            .client(devops_stack_core::interfaces::OidcClient::new(
                "wiki",
                ["https://wiki.corp.example.net/callback"],
            ))
            .values(json!({"replicas": 1})),
    );
    let monitoring = stack.add(
        KubePrometheusStack::new(&cluster, &argocd, &ingress)
            .oidc(&sso)
            .issuer(tls.clone())
            .subdomain("ops")
            .hostname("grafana", "dashboards.corp.example.net")
            .prometheus_storage(Persistence::new("100Gi").storage_class("fast-ssd"))
            .alertmanager_storage(Persistence::new("5Gi").storage_class("fast-ssd"))
            .grafana_storage(Persistence::new("10Gi"))
            .retention("30d")
            .prometheus_replicas(2)
            .alertmanager_replicas(3)
            .admin_group("ops")
            .service_monitors(&crds),
    );
    stack.add(
        Loki::new(&cluster, &argocd)
            .monitoring(&monitoring)
            .storage(Persistence::new("50Gi").storage_class("standard"))
            .retention("168h"),
    );
    stack.add(
        MetricsServer::new(&cluster, &argocd)
            .replicas(1)
            .kubelet_insecure_tls(true),
    );
    stack.add(
        ArgoCdFinal::new(&cluster, &argocd, &ingress, sso.oidc("argocd"))
            .issuer(tls)
            .hostname("deploy.corp.example.net")
            .admin_group("ops")
            .values(json!({"server": {"replicas": 2}})),
    );
    stack
}

/// Plans a stack offline.
pub async fn plan(stack: Stack) -> Plan {
    stack
        .build()
        .expect("the stack is valid")
        .plan()
        .await
        .expect("the plan succeeds")
}

/// The plan of module `id`.
pub fn module<'a>(plan: &'a Plan, id: &str) -> &'a ModulePlan {
    plan.module(id)
        .unwrap_or_else(|| panic!("no module `{id}` in the plan"))
}

/// Every Kubernetes object of a plan by title, unredacted (what apply would send).
pub fn objects(plan: &Plan) -> BTreeMap<String, Value> {
    plan.modules
        .iter()
        .flat_map(|m| &m.resources)
        .filter_map(|r| r.as_kubernetes().map(|o| (r.title(), o.clone())))
        .collect()
}

/// The titles of objects only in `a`, only in `b`, and in both but different.
pub fn diff(a: &Plan, b: &Plan) -> (Vec<String>, Vec<String>, Vec<String>) {
    let (a, b) = (objects(a), objects(b));
    let only_a = a.keys().filter(|k| !b.contains_key(*k)).cloned().collect();
    let only_b = b.keys().filter(|k| !a.contains_key(*k)).cloned().collect();
    let changed = a
        .iter()
        .filter(|(k, v)| b.get(*k).is_some_and(|w| w != *v))
        .map(|(k, _)| k.clone())
        .collect();
    (only_a, only_b, changed)
}

/// Builds a stack with a cluster and Argo CD, plus what `add` adds, and returns its errors.
pub fn errors(
    add: impl FnOnce(
        &mut Stack,
        &devops_stack_core::Handle<TestCluster>,
        &devops_stack_core::Handle<ArgoCdOutput>,
    ),
) -> Vec<devops_stack_core::ConfigError> {
    let mut stack = Stack::new("bad");
    let cluster = stack.add(ClusterModule::new("prod", "example.com"));
    let argocd = stack.add(ArgoCd::new(&cluster));
    add(&mut stack, &cluster, &argocd);
    match stack.build() {
        Ok(_) => Vec::new(),
        Err(e) => e.config_errors().to_vec(),
    }
}
