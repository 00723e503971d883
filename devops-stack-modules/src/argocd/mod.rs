//! Argo CD, in two modules: [`ArgoCd`] installs a plain Argo CD in the bootstrap phase, on a
//! cluster that has none; [`ArgoCdFinal`] re-applies it in the final phase as an Application
//! that manages itself, with OIDC login, RBAC, an ingress with TLS and metrics.
//!
//! # The handover
//! Both modules deploy the same chart ([`CHART_VERSION`] of `argo-cd`) with the same release
//! name and namespace, so the objects the bootstrap applied are the objects the self-managed
//! Application takes over, and nothing is recreated:
//! - the bootstrap renders `argocd-secret` once (it holds `server.secretkey`, which signs every
//!   session and API token, and the pipeline account's token list); the final phase sets
//!   `configs.secret.createSecret: false`, so the Application never renders, replaces or prunes
//!   it, and the pipeline token and sessions stay valid;
//! - Argo CD tracks resources by annotation (`application.resourceTrackingMethod: annotation`),
//!   so objects the bootstrap applied but the Application does not render (that secret) are not
//!   considered its own and are never pruned;
//! - the OIDC client secret lives in a Secret of its own (`argocd-oidc`, labelled
//!   `app.kubernetes.io/part-of: argocd`) that `oidc.config` references as
//!   `$argocd-oidc:clientSecret`: never inline, and `argocd-secret` is not touched;
//! - once the self-managed Application exists, the bootstrap's apply only reads its outputs and
//!   no longer re-applies the plain install (which would fight the self-managed one).
//!
//! # Argo CD 3
//! The pin is Argo CD 3 ([`APP_VERSION`]); what its upgrade notes from 2.x change here:
//! - **RBAC.** `logs, get` is enforced (`server.rbac.log.enforce.enable` is gone): the
//!   pipeline role gets it explicitly, admins have it through `role:admin`. `update` and
//!   `delete` no longer cascade to an Application's resources: the pipeline role has neither,
//!   so nothing changes for it.
//! - **Tracking.** Annotation tracking is Argo CD 3's default; the modules still set
//!   `application.resourceTrackingMethod: annotation`, because the handover depends on it
//!   whatever the chart's default or a user's `argocd-cm`.
//! - **Resource exclusions.** Argo CD 3 ignores Endpoints, EndpointSlices, Leases, the review
//!   kinds, CertificateSigningRequests and cert-manager's CertificateRequests by default; no
//!   module renders any of them (a test checks), so no Application waits on one.
//! - **Removed keys.** The modules set none of the removed `argocd-cm` keys (the log
//!   enforcement flag, repositories in `argocd-cm`). The chart (9.0.0) no longer lists
//!   `configs.params` defaults but still renders the keys given, so `server.insecure` stays.
//! - **CRD health.** Argo CD 3.4 can leave an Application Degraded on a CRD it saw before the
//!   API server established it; the modules configure the health check [`CRD_HEALTH`] instead.
//! - **Network policies.** The chart (10.0.0) creates NetworkPolicies by default; they admit
//!   the server from anywhere (the ingress and the API server's service proxy the bootstrap
//!   uses for the pipeline token) and metrics from any namespace.
//!
//! Destroy runs in reverse: the final module's Application carries no resources finalizer, and
//! its destroy deletes it itself, with any finalizer removed and `propagationPolicy: Orphan`,
//! before the engine deletes the rest of its objects (the engine gives every Application it
//! deletes the resources finalizer, which would make Argo CD delete itself). So the final phase
//! orphans, not cascades: Argo CD keeps running and keeps deleting the other modules'
//! Applications; the bootstrap's destroy, last, deletes everything it installed.

mod api;
mod crd_health;
mod credentials;
mod final_phase;
mod install;

use devops_stack_core::argocd::ApplicationDestination;
use devops_stack_core::interfaces::{ArgoCdProvider, ArgoCdTarget, ClusterRef};
use devops_stack_core::k8s::Deployer;
use devops_stack_core::plan::unknown;
use devops_stack_core::{
    Context, Input, Module, ModuleResult, Needs, Phase, Planned, Resource, Secret, Validation,
};
use serde::Serialize;
use serde_json::{Value, json};

use crate::chart::{Chart, ChartSource, Common, Env, Sizable, Sizing, ValueKind, to_json};
use crate::error::Result;

pub use crd_health::{CRD_HEALTH, CRD_HEALTH_KEY};
pub(crate) use credentials::{TokenIssuer, read_key};
pub use final_phase::{ArgoCdFinal, OIDC_SECRET, SelfManagedArgoCd};

/// The pinned version of the `argo-cd` chart ([`pins::ARGO_CD`](crate::pins::ARGO_CD)).
pub const CHART_VERSION: &str = crate::pins::ARGO_CD.version;
/// The Argo CD version deployed (`v3.x`): the chart's image tag is set to it (the pin's newest
/// patch), and the install manifests fallback is of the same version.
pub const APP_VERSION: &str = crate::pins::ARGO_CD.deployed();
/// The chart's Helm repository.
pub const CHART_REPOSITORY: &str = crate::pins::ARGO_CD.repository;

/// The official install manifests of Argo CD `version` (with or without its leading `v`).
pub fn manifests_url(version: &str) -> String {
    let version = version.strip_prefix('v').unwrap_or(version);
    format!("https://raw.githubusercontent.com/argoproj/argo-cd/v{version}/manifests/install.yaml")
}

/// How the bootstrap installs Argo CD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum InstallMethod {
    /// The `helm` CLI when it is installed, else the install manifests (default).
    #[default]
    Auto,
    /// The chart, rendered by `helm template` with the module's values and applied by the engine.
    Helm,
    /// The official install manifests of [`APP_VERSION`] (or the configured URL), with the
    /// module's `configs.cm`, `configs.rbac` and `configs.params` values written into
    /// `argocd-cm`, `argocd-rbac-cm` and `argocd-cmd-params-cm`.
    Manifests,
}

/// What the bootstrap outputs: where Applications go, the admin password and a pipeline token.
#[derive(Debug, Clone, Serialize)]
pub struct ArgoCdOutput {
    /// Where Applications go: Argo CD's namespace, the stack's project, the destination server.
    #[serde(flatten)]
    pub target: ArgoCdTarget,
    /// The Helm release name (the final phase uses the same).
    pub release_name: String,
    /// The chart (the final phase deploys the same).
    pub chart: ChartSource,
    /// The Helm values of the install (the final phase starts from them).
    pub values: Value,
    /// The admin password, from `argocd-initial-admin-secret`.
    pub admin_password: Secret,
    /// The pipeline account's name.
    pub pipeline_account: String,
    /// An API token of the pipeline account (for CI to sync Applications).
    pub pipeline_token: Secret,
    /// Where the stack reaches Argo CD's API: `None` through the Kubernetes API server's
    /// service proxy (the default), else this URL ([`ArgoCd::api_url`](ArgoCd#method.api_url)).
    pub api_url: Option<String>,
}

impl ArgoCdProvider for ArgoCdOutput {
    fn argocd(&self) -> ArgoCdTarget {
        self.target.clone()
    }
}

/// Installs Argo CD on a cluster that has none, in the bootstrap phase.
///
/// Its own setters are below; the shared ones (`namespace`, `values`, `sync`..., and
/// `replicas`, `resources`) are on [`Chart`].
///
/// # Inputs
/// The cluster, in [`ArgoCd::new`](ArgoCd#method.new).
///
/// # Outputs
/// [`ArgoCdOutput`], which implements `ArgoCdProvider` (`handle.argocd()` is the
/// `Input<ArgoCdTarget>` every other module takes), with the admin password (read from
/// `argocd-initial-admin-secret`, and kept in the Secret `<id>-admin` because Argo CD advises
/// deleting the initial one) and a token of the `pipeline` account (created through Argo CD's
/// API, reached through the Kubernetes service proxy, and kept in the Secret
/// `<id>-pipeline-token` so that a re-apply returns the same token).
///
/// # Defaults
/// Chart `argo-cd` [`CHART_VERSION`] (Argo CD [`APP_VERSION`]), namespace `argocd`, release
/// `argocd`, project `default`, destination the cluster's `argocd_server()`; Dex off, the server
/// serving plain HTTP behind the ingress the final phase adds, resource tracking by annotation, an
/// `apiKey` account `pipeline` allowed to get and sync Applications and read their logs,
/// per-ApplicationSet `applicationsSync` policies honoured; one replica of the server and repo
/// server, the server with 100m CPU and 128Mi memory requested and a 256Mi limit. Installed with
/// [`InstallMethod::Auto`]: `helm template` of the chart with these values when the `helm` CLI is
/// installed (the engine applies the output through the cluster's client, so no kubeconfig is
/// needed), otherwise the official install manifests from [`manifests_url`]`(APP_VERSION)`;
/// [`ArgoCd::manifests_url`](ArgoCd#method.manifests_url) points at a mirror for air-gapped
/// clusters. The plan shows the install as a `helm` resource with its values.
pub type ArgoCd = Chart<ArgoCdSpec>;

/// The spec of [`ArgoCd`]: how it is installed, its pipeline account, where its API is
/// reached, its sizing.
#[derive(Debug, Clone)]
pub struct ArgoCdSpec {
    install: InstallMethod,
    manifests_url: String,
    helm: String,
    pipeline_account: String,
    api_url: Option<String>,
    sizing: Sizing,
}

impl ArgoCd {
    /// Argo CD on `cluster`, with the id `argocd`.
    pub fn new(cluster: impl Into<Input<ClusterRef>>) -> Self {
        let placeholder = ArgoCdTarget {
            namespace: String::new(),
            project: String::new(),
            destination_server: String::new(),
        };
        let mut common = Common::new(
            "argocd",
            cluster,
            Input::value(placeholder),
            ChartSource::new(CHART_REPOSITORY, "argo-cd", CHART_VERSION),
            "argocd",
        );
        common.release_name = "argocd".into();
        Chart::with_spec(
            common,
            ArgoCdSpec {
                install: InstallMethod::Auto,
                manifests_url: manifests_url(APP_VERSION),
                helm: "helm".into(),
                pipeline_account: "pipeline".into(),
                api_url: None,
                sizing: Sizing::new(1, crate::Resources::small(128)),
            },
        )
    }

    /// How to install (default [`InstallMethod::Auto`]).
    #[must_use]
    pub fn install_method(mut self, method: InstallMethod) -> Self {
        self.spec.install = method;
        self
    }

    /// Another URL for the install manifests (a mirror).
    #[must_use]
    pub fn manifests_url(mut self, url: impl Into<String>) -> Self {
        self.spec.manifests_url = url.into();
        self
    }

    /// Another `helm` executable.
    #[must_use]
    pub fn helm_binary(mut self, path: impl Into<String>) -> Self {
        self.spec.helm = path.into();
        self
    }

    /// Another name for the pipeline account (default `pipeline`).
    #[must_use]
    pub fn pipeline_account(mut self, name: impl Into<String>) -> Self {
        self.spec.pipeline_account = name.into();
        self
    }

    /// Reach Argo CD's API (for the pipeline token and the teams' project tokens) at `url`
    /// (`http(s)://host[:port]`, no path) instead of through the Kubernetes API server's
    /// service proxy to the `<release>-server` Service: for clusters whose API server cannot
    /// reach pods (a proxy disabled, or Argo CD's server running outside the cluster), or
    /// through an ingress once the final phase made one.
    ///
    /// ```
    /// # use devops_stack_modules::ArgoCd;
    /// # use devops_stack_core::{Input, interfaces::ClusterRef};
    /// # fn f(cluster: Input<ClusterRef>) -> ArgoCd {
    /// ArgoCd::new(cluster).api_url("https://argocd.internal.example.com")
    /// # }
    /// ```
    #[must_use]
    pub fn api_url(mut self, url: impl Into<String>) -> Self {
        self.spec.api_url = Some(url.into().trim_end_matches('/').to_owned());
        self
    }
}

impl Sizable for ArgoCdSpec {
    fn sizing(&mut self) -> &mut Sizing {
        &mut self.sizing
    }
}

impl ArgoCd {
    fn project_name(&self) -> String {
        self.common
            .project
            .clone()
            .unwrap_or_else(|| "default".into())
    }

    fn env(&self, ctx: &Context) -> Result<Env> {
        let cluster = ctx.get(&self.common.cluster)?;
        let target = ArgoCdTarget {
            namespace: self.common.namespace.clone(),
            project: self.project_name(),
            destination_server: self
                .common
                .destination_server
                .clone()
                .unwrap_or_else(|| cluster.argocd_server().to_owned()),
        };
        self.common.env_with(ctx, target)
    }

    fn helm_values(&self, env: &Env) -> Value {
        let account = &self.spec.pipeline_account;
        let defaults = json!({
            "global": {"image": {"tag": APP_VERSION}},
            "dex": {"enabled": false},
            "configs": {
                "cm": {
                    "application.resourceTrackingMethod": "annotation",
                    format!("accounts.{account}"): "apiKey",
                    "admin.enabled": true,
                    CRD_HEALTH_KEY: CRD_HEALTH,
                },
                "rbac": {
                    "policy.csv": format!(
                        "p, role:pipeline, applications, get, */*, allow\n\
                         p, role:pipeline, applications, sync, */*, allow\n\
                         p, role:pipeline, logs, get, */*, allow\n\
                         g, {account}, role:pipeline\n"
                    ),
                },
                "params": {
                    "server.insecure": true,
                    // honour each ApplicationSet's own `applicationsSync` policy (teams' sets
                    // use `create-update`, which never deletes an Application on an edit)
                    "applicationsetcontroller.enable.policy.override": true,
                },
            },
            "server": {"replicas": self.spec.sizing.replicas, "resources": self.spec.sizing.resources.to_value()},
            "repoServer": {"replicas": self.spec.sizing.replicas},
        });
        self.common.values(env, defaults, |_| json!({}))
    }

    fn output(
        &self,
        env: &Env,
        values: Value,
        admin_password: Secret,
        pipeline_token: Secret,
    ) -> ArgoCdOutput {
        ArgoCdOutput {
            target: env.argocd.clone(),
            release_name: self.common.release_name.clone(),
            chart: self.common.chart.clone(),
            values,
            admin_password,
            pipeline_account: self.spec.pipeline_account.clone(),
            pipeline_token,
            api_url: self.spec.api_url.clone(),
        }
    }

    /// The stack's AppProject, unless it is Argo CD's built-in `default`: any source, any
    /// destination, any kind (the stack's modules install cluster-wide components).
    fn project_object(&self, env: &Env) -> Option<Value> {
        use devops_stack_core::argocd::{AppProject, AppProjectSpec, GroupKind};
        let name = self.project_name();
        if name == "default" {
            return None;
        }
        let stack = env
            .labels
            .get(devops_stack_core::k8s::STACK_LABEL)
            .cloned()
            .unwrap_or_default();
        let mut project = AppProject::new(
            &name,
            AppProjectSpec {
                description: Some(format!("Applications of the stack `{stack}`")),
                source_repos: vec!["*".into()],
                destinations: vec![ApplicationDestination {
                    server: Some("*".into()),
                    namespace: Some("*".into()),
                    name: None,
                }],
                cluster_resource_whitelist: vec![GroupKind {
                    group: "*".into(),
                    kind: "*".into(),
                }],
                ..Default::default()
            },
        );
        project.metadata.namespace = Some(self.common.namespace.clone());
        project.metadata.labels = Some(env.labels.clone());
        Some(to_json(&project))
    }

    fn namespace_object(&self, env: &Env) -> Value {
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.common.namespace, "labels": env.labels}})
    }
}

impl Module for ArgoCd {
    type Output = ArgoCdOutput;

    fn id(&self) -> &str {
        &self.common.id
    }

    fn kind(&self) -> &'static str {
        "argocd"
    }

    fn phase(&self) -> Phase {
        Phase::Bootstrap
    }

    fn needs(&self, n: &mut Needs) {
        self.common.needs(n);
    }

    fn validate(&self, v: &mut Validation) {
        const TYPED: &[(&str, ValueKind)] = &[
            ("/server/replicas", ValueKind::Integer),
            ("/server/resources", ValueKind::Object),
            ("/repoServer/replicas", ValueKind::Integer),
            ("/controller/replicas", ValueKind::Integer),
            ("/configs/cm", ValueKind::Object),
            ("/configs/rbac", ValueKind::Object),
        ];
        self.common.validate(v, TYPED);
        v.dns_label("pipeline_account", &self.spec.pipeline_account);
        if let Some(url) = &self.spec.api_url {
            let rest = url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"));
            if rest.is_none_or(|r| r.is_empty() || r.contains('/')) {
                v.error(
                    "api_url",
                    format!("`{url}` is not an http(s) URL of a host"),
                    "give Argo CD's server as `https://host[:port]`, without a path",
                );
            }
        }
        if !self.spec.manifests_url.starts_with("https://")
            && !self.spec.manifests_url.starts_with("http://")
        {
            v.error(
                "manifests_url",
                format!("`{}` is not an http(s) URL", self.spec.manifests_url),
                "give the URL of Argo CD's install.yaml or of a mirror",
            );
        }
        self.spec.sizing.validate(v);
    }

    async fn plan(&self, ctx: &Context) -> ModuleResult<Planned<ArgoCdOutput>> {
        let env = self.env(ctx)?;
        let values = self.helm_values(&env);
        let chart = &self.common.chart;
        let install = match self.spec.install {
            InstallMethod::Manifests => {
                json!({"method": "manifests", "url": self.spec.manifests_url})
            }
            _ => json!({
                "method": "helm template, else the install manifests",
                "repository": chart.repo_url,
                "chart": chart.chart,
                "version": chart.version,
                "namespace": self.common.namespace,
                "values": values,
                "fallback_manifests": self.spec.manifests_url,
            }),
        };
        let id = &self.common.id;
        let output = self.output(
            &env,
            values,
            Secret::new(unknown(id, "admin_password")),
            Secret::new(unknown(id, "pipeline_token")),
        );
        let cluster = env.cluster.name().to_owned();
        let mut resources = vec![
            Resource::kubernetes(cluster.clone(), &self.namespace_object(&env)),
            Resource::cloud("helm", "argocd:Install", &self.common.release_name, install),
        ];
        resources.extend(
            self.project_object(&env)
                .map(|p| Resource::kubernetes(cluster, &p)),
        );
        Ok(Planned::new(output).with_resources(resources))
    }

    async fn apply(&self, ctx: &Context) -> ModuleResult<ArgoCdOutput> {
        let env = self.env(ctx)?;
        Ok(self
            .install(ctx, &env)
            .await
            .map_err(|e| e.reach(&*env.cluster))?)
    }

    async fn destroy(&self, ctx: &Context) -> ModuleResult<()> {
        let cluster = ctx.get(&self.common.cluster)?;
        Deployer::for_module(ctx, &cluster).await?.destroy().await?;
        Ok(())
    }
}

impl ArgoCd {
    /// Installs Argo CD unless it manages itself already, then reads or makes its outputs.
    async fn install(&self, ctx: &Context, env: &Env) -> Result<ArgoCdOutput> {
        let values = self.helm_values(env);
        let deployer = Deployer::for_module(ctx, &env.cluster).await?;
        let client = deployer.client().clone();
        if self.handed_over(&client).await? {
            ctx.progress("Argo CD manages itself: reading outputs only");
        } else {
            let objects = self.install_objects(ctx, env, &values).await?;
            ctx.progress(format!("applying {} objects", objects.len()));
            deployer.apply(objects).await?;
        }
        let admin = self.admin_password(&client, env).await?;
        let token = self.pipeline_token(&client, env, &admin).await?;
        Ok(self.output(env, values, admin, token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_are_pinned() {
        assert_eq!(
            manifests_url(APP_VERSION),
            "https://raw.githubusercontent.com/argoproj/argo-cd/v3.4.14/manifests/install.yaml"
        );
        assert_eq!(manifests_url("3.4.4"), manifests_url("v3.4.4"));
    }
}
