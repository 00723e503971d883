//! The whole platform of `eks_full` that is not AWS, for the platform tier of the test
//! environment (`platform_argocd_live` and `benches/platform.rs`): the environment's variables
//! (`DEVOPS_STACK_TEST_PLATFORM_*`), the team's git repository, the stack, and what plays the
//! controllers no container runs for on kwok's nodes (cert-manager's).

use devops_stack_core::k8s::KubeEngine;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use devops_stack_core::interfaces::{ClusterRef, IssuerKind};
use devops_stack_core::k8s::KubeOptions;
use devops_stack_core::{Handle, Input, RunOptions, Stack};
use devops_stack_modules::team::{App, AppSet, RepoAccess, Repository, Team, TeamNamespace};
use devops_stack_modules::{
    ArgoCd, ArgoCdFinal, ArgoCdOutput, CertManager, ChartSource, InstallMethod, Keycloak,
    KeycloakOidc, KubePrometheusStack, Loki, MetricsServer, PrometheusOperatorCrds, Traefik, pins,
};
use kube::api::{Api, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};

use crate::fixture_charts;

/// The namespace of the platform's Argo CD.
pub const ARGOCD_NS: &str = "argocd";
/// The platform's stack name.
pub const STACK: &str = "platform";

/// What the test environment gives for this tier.
pub struct TestEnv {
    /// The cluster's kubeconfig file.
    pub kubeconfig: PathBuf,
    /// Argo CD's API server, `host:port`.
    pub argocd_server: String,
    /// The `helm` binary.
    pub helm: PathBuf,
    /// The directory the chart repository serves.
    pub helm_root: PathBuf,
    /// The chart repository's URL.
    pub helm_repo: String,
    /// The git server's HTTPS URL.
    pub git_url: String,
    /// The directory of the git server's repositories.
    pub git_root: PathBuf,
    /// Argo CD's CRDs of the pinned version.
    pub crds: PathBuf,
    /// The upstream charts' repository, when the run uses them.
    pub upstream: Option<String>,
}

impl TestEnv {
    /// The platform tier's variables (`DEVOPS_STACK_TEST_PLATFORM_*`).
    ///
    /// # Panics
    /// When one is unset, saying how to set it (see [`crate::live::required_var`]).
    pub fn get() -> TestEnv {
        let need = |k: &str| {
            crate::live::required_var(
                &format!("DEVOPS_STACK_TEST_PLATFORM_{k}"),
                "scripts/test.sh starts the platform tier when the test environment is built; or \
                 `bash scripts/testenv.sh start --name platform --load-balancers` and \
                 `eval \"$(bash scripts/testenv.sh env --name platform --prefix PLATFORM)\"`",
            )
        };
        let kubeconfig = need("KUBECONFIG");
        let upstream = std::env::var("DEVOPS_STACK_TEST_PLATFORM_UPSTREAM")
            .is_ok_and(|v| v == "1")
            .then(|| need("UPSTREAM_CHARTS"));
        TestEnv {
            kubeconfig: kubeconfig.into(),
            argocd_server: need("ARGOCD_SERVER"),
            helm: need("HELM").into(),
            helm_root: need("HELM_ROOT").into(),
            helm_repo: need("HELM_REPO"),
            git_url: need("GIT_HTTPS_URL"),
            git_root: need("GIT_ROOT").into(),
            crds: need("CRD_DIR").into(),
            upstream,
        }
    }

    /// The chart repository of this run: the upstream charts, or freshly published fixtures.
    pub fn charts(&self) -> String {
        match &self.upstream {
            Some(url) => url.clone(),
            None => fixture_charts::publish(
                &self.helm,
                &self.crds,
                &self.helm_root,
                &self.helm_repo,
                "fixtures",
            ),
        }
    }
}

fn git(dir: &Path, args: &[&str]) {
    let ca = std::env::var_os("DEVOPS_STACK_TEST_PLATFORM_OIDC_CA").map(PathBuf::from);
    crate::git::run(dir, args, ca.as_deref());
}

/// A public repository of the environment's git server holding `files`; its URL.
pub fn repository(env: &TestEnv, name: &str, files: &[(&str, String)]) -> String {
    let bare = env.git_root.join(format!("{name}.git"));
    let _ = std::fs::remove_dir_all(&bare);
    git(
        &env.git_root,
        &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
    );
    let work = std::env::temp_dir().join(format!("{name}-work"));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    for (path, content) in files {
        let p = work.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    let url = format!("{}/{name}.git", env.git_url.trim_end_matches('/'));
    git(&work, &["init", "-q", "-b", "main"]);
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "shop"]);
    git(&work, &["push", "-q", &url, "main"]);
    let _ = std::fs::remove_dir_all(&work);
    url
}

/// A ConfigMap `name`, as YAML.
pub fn config_map(name: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  k: v\n")
}

/// A Deployment and Service `web`, as YAML.
pub fn web() -> String {
    "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: web\n        image: registry.invalid/web:1\n        ports:\n        - {name: http, containerPort: 8080}\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector: {app: web}\n  ports:\n  - {name: http, port: 80, targetPort: http}\n".into()
}

/// Fast reconciliation for a test (the chart's default is 120 s).
fn quick_argocd() -> Value {
    json!({"configs": {"cm": {"timeout.reconciliation": "10s"}}})
}

/// The built platform and the handles the test reads outputs of.
pub struct Platform {
    /// The stack.
    pub stack: devops_stack_core::BuiltStack,
    /// Argo CD's output.
    pub argocd: Handle<ArgoCdOutput>,
    /// Keycloak's OIDC client for Argo CD (absent with `bootstrap_only`).
    pub sso: Option<Handle<KeycloakOidc>>,
}

/// The platform: everything of `eks_full` that is not AWS, from the chart repository `repo`.
/// `bootstrap_only` builds the stack with Argo CD's bootstrap alone.
pub fn platform(
    env: &TestEnv,
    cluster: ClusterRef,
    repo: &str,
    shop: &str,
    bootstrap_only: bool,
) -> Platform {
    let c: Input<ClusterRef> = Input::value(cluster);
    let mut stack = Stack::new(STACK);
    let argocd = stack.add(
        ArgoCd::new(c.clone())
            .install_method(InstallMethod::Helm)
            .helm_binary(env.helm.to_string_lossy())
            .chart_repository(repo)
            .api_url(format!("http://{}", env.argocd_server))
            .values(quick_argocd()),
    );
    if bootstrap_only {
        return Platform {
            stack: stack.build().expect("the bootstrap stack is valid"),
            argocd,
            sso: None,
        };
    }
    let crds = stack.add(PrometheusOperatorCrds::new(c.clone(), &argocd).chart_repository(repo));
    let traefik = stack.add(
        Traefik::new(c.clone(), &argocd)
            .service_monitors(&crds)
            .chart_repository(repo),
    );
    let certs = stack.add(
        CertManager::new(c.clone(), &argocd)
            .letsencrypt("ops@example.com")
            .http01_ingress(&traefik)
            .service_monitors(&crds)
            .chart_repository(repo),
    );
    // With the upstream charts nothing takes cert-manager's issuers: its admission webhook has
    // no backend on kwok's nodes, so its ClusterIssuers are refused (recorded, not hidden), and
    // the modules that would wait on them still deploy.
    let tls = env
        .upstream
        .is_none()
        .then(|| certs.issuer(IssuerKind::LetsEncryptProduction));
    let with_tls = |m: Keycloak| match &tls {
        Some(t) => m.issuer(t.clone()),
        None => m,
    };
    let sso = stack.add(with_tls(
        Keycloak::new(c.clone(), &argocd, &traefik)
            .user("jane", "jane@example.com")
            .chart_repository(repo),
    ));
    let mut monitoring = KubePrometheusStack::new(c.clone(), &argocd, &traefik);
    if let Some(t) = &tls {
        monitoring = monitoring.issuer(t.clone());
    }
    let monitoring = stack.add(
        monitoring
            .oidc(&sso)
            .service_monitors(&crds)
            .chart_repository(repo)
            .oauth2_proxy_chart(ChartSource::new(
                repo,
                "oauth2-proxy",
                pins::OAUTH2_PROXY.version,
            )),
    );
    stack.add(
        Loki::new(c.clone(), &argocd)
            .monitoring(&monitoring)
            .chart_repository(repo)
            .alloy_chart(ChartSource::new(repo, "alloy", pins::ALLOY.version)),
    );
    stack.add(MetricsServer::new(c.clone(), &argocd).chart_repository(repo));
    let mut team = Team::new("shop", c.clone(), &argocd);
    if let Some(t) = &tls {
        team = team.issuer(t.clone());
    }
    stack.add(
        team.namespace(TeamNamespace::new("shop"))
            .namespace(TeamNamespace::new("shop-staging"))
            .access(
                devops_stack_modules::team::AccessRole::Deployer,
                sso.group("shop-deployers"),
            )
            .repository(Repository::new(shop, RepoAccess::Public))
            .app(
                App::new("web", shop, "shop")
                    .path("web")
                    .publish("shop", "web", "http"),
            )
            .application_set(
                AppSet::directories("apps", shop, "shop-staging", ["apps/*"]).prune_removed(true),
            )
            .ingress(&traefik),
    );
    let mut last = ArgoCdFinal::new(c, &argocd, &traefik, sso.oidc("argocd"));
    if let Some(t) = tls {
        last = last.issuer(t);
    }
    stack.add(last.monitoring(&monitoring));
    Platform {
        stack: stack.build().expect("the platform is valid"),
        argocd,
        sso: Some(sso),
    }
}

/// The run options of the platform tier: a long wait, its own state namespace.
pub fn options() -> RunOptions {
    RunOptions::new().engine(KubeEngine::new(KubeOptions {
        wait_timeout: Duration::from_secs(240),
        state_namespace: format!("{STACK}-state"),
        ..KubeOptions::default()
    }))
}

fn application_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application"),
        "applications",
    )
}

/// The Applications of Argo CD's namespace.
pub fn applications(client: &kube::Client) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ARGOCD_NS, &application_resource())
}

/// Every Application with Argo CD's sync and health status, by name.
pub async fn statuses(client: &kube::Client) -> BTreeMap<String, (String, String)> {
    applications(client)
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .map(|a| {
            let s = &a.data["status"];
            (
                a.metadata.name.clone().unwrap_or_default(),
                (
                    s["sync"]["status"].as_str().unwrap_or("-").to_owned(),
                    s["health"]["status"].as_str().unwrap_or("-").to_owned(),
                ),
            )
        })
        .collect()
}

/// The team's repository: an app (`web`) and two directories for its ApplicationSet.
pub fn shop_repository(env: &TestEnv) -> String {
    repository(
        env,
        "platform-shop",
        &[
            ("web/app.yaml", web()),
            ("apps/one/cm.yaml", config_map("one")),
            ("apps/two/cm.yaml", config_map("two")),
        ],
    )
}

/// Plays cert-manager's controller (no container runs on kwok's nodes): marks each ClusterIssuer,
/// Issuer and Certificate Ready, as cert-manager does once an ACME account is registered or a
/// certificate issued. Argo CD's health checks of those kinds wait for that condition.
pub fn play_cert_manager(client: kube::Client) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let kinds = [
            ("ClusterIssuer", "clusterissuers"),
            ("Issuer", "issuers"),
            ("Certificate", "certificates"),
        ];
        loop {
            for (kind, plural) in kinds {
                let api: Api<DynamicObject> = Api::all_with(
                    client.clone(),
                    &ApiResource::from_gvk_with_plural(
                        &GroupVersionKind::gvk("cert-manager.io", "v1", kind),
                        plural,
                    ),
                );
                for o in api
                    .list(&ListParams::default())
                    .await
                    .map(|l| l.items)
                    .unwrap_or_default()
                {
                    if o.data["status"]["conditions"].is_array() {
                        continue;
                    }
                    let status = json!({"status": {"conditions": [{"type": "Ready", "status": "True",
                        "reason": "Ready", "message": "played by the test"}]}});
                    let name = o.metadata.name.clone().unwrap_or_default();
                    let api: Api<DynamicObject> = match &o.metadata.namespace {
                        Some(ns) => Api::namespaced_with(
                            client.clone(),
                            ns,
                            &ApiResource::from_gvk_with_plural(
                                &GroupVersionKind::gvk("cert-manager.io", "v1", kind),
                                plural,
                            ),
                        ),
                        None => api.clone(),
                    };
                    let _ = api
                        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                        .await;
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}
