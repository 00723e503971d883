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

mod final_phase;

use std::time::Duration;

use devops_stack_core::argocd::ApplicationDestination;
use devops_stack_core::interfaces::{ArgoCdProvider, ArgoCdTarget, ClusterRef};
use devops_stack_core::k8s::{Deployer, parse_bundle, unreachable_cause};
use devops_stack_core::plan::unknown;
use devops_stack_core::{
    Context, Input, Module, ModuleResult, Needs, Phase, Planned, Resource, Secret, Validation,
};
use k8s_openapi::api::core::v1::Secret as KubeSecret;
use kube::api::{Api, Patch, PatchParams};
use serde::Serialize;
use serde_json::{Value, json};

use crate::common::{ChartSource, Common, Env, Sizing, ValueKind, common_setters, sizing_setters};
use crate::error::{Error, Result};

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

/// The `argocd-cm` key of Argo CD's health check for CRDs, which the modules replace.
pub const CRD_HEALTH_KEY: &str =
    "resource.customizations.health.apiextensions.k8s.io_CustomResourceDefinition";

/// Argo CD's health check for CRDs, as the modules configure it: upstream's (3.4), except that a
/// CRD whose names the API server accepted is Healthy before its `Established` condition shows.
///
/// Upstream's check reports such a CRD Degraded ("CRD is not established"), and Argo CD's
/// cluster cache can keep that early copy of a CRD its Application just created: the
/// Application then stays Degraded although the CRD is established (argoproj/argo-cd#25084 and
/// #26346; seen here on a real Argo CD in the project's test environment, two CRDs of three
/// left Degraded for minutes by one sync). The API server sets `Established` right after
/// `NamesAccepted` unless the names conflict, which stays Degraded, as do a non-structural
/// schema and a CRD being deleted (Progressing).
pub const CRD_HEALTH: &str = r#"local hs = {}
if obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "CRD is terminating"
  return hs
end
local accepted = false
local established = false
if obj.status ~= nil and obj.status.conditions ~= nil then
  for _, c in pairs(obj.status.conditions) do
    if c.type == "Terminating" and c.status == "True" then
      hs.status = "Progressing"
      hs.message = "CRD is terminating: " .. (c.message or "")
      return hs
    end
    if c.type == "NamesAccepted" and c.status == "False" then
      hs.status = "Degraded"
      hs.message = "CRD names have not been accepted: " .. (c.message or "")
      return hs
    end
    if c.type == "NonStructuralSchema" and c.status == "True" then
      hs.status = "Degraded"
      hs.message = "Schema violations found: " .. (c.message or "")
      return hs
    end
    if c.type == "NamesAccepted" and c.status == "True" then accepted = true end
    if c.type == "Established" and c.status == "True" then established = true end
  end
end
if established then
  hs.status = "Healthy"
  hs.message = "CRD is established"
elseif accepted then
  hs.status = "Healthy"
  hs.message = "CRD names are accepted; the API server establishes it next"
else
  hs.status = "Progressing"
  hs.message = "Waiting for the API server to accept the CRD's names"
end
return hs
"#;

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
    /// service proxy (the default), else this URL ([`ArgoCd::api_url`]).
    pub api_url: Option<String>,
}

impl ArgoCdProvider for ArgoCdOutput {
    fn argocd(&self) -> ArgoCdTarget {
        self.target.clone()
    }
}

/// Installs Argo CD on a cluster that has none, in the bootstrap phase.
///
/// # Inputs
/// The cluster, in [`ArgoCd::new`].
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
/// serving plain HTTP behind the ingress the final phase adds, resource tracking by annotation,
/// an `apiKey` account `pipeline` allowed to get and sync Applications and read their logs,
/// per-ApplicationSet `applicationsSync` policies honoured; one replica of the server and
/// repo server, the server with 100m CPU and 128Mi memory requested and a 256Mi limit.
/// Installed with [`InstallMethod::Auto`]: `helm template` of the chart with these values when
/// the `helm` CLI is installed (the engine applies the output through the cluster's client, so
/// no kubeconfig is needed), otherwise the official install manifests from
/// [`manifests_url`]`(APP_VERSION)`; [`ArgoCd::manifests_url`] points at a mirror for
/// air-gapped clusters. The plan shows the install as a `helm` resource with its values.
#[derive(Debug, Clone)]
pub struct ArgoCd {
    common: Common,
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
            cluster.into(),
            Input::value(placeholder),
            ChartSource::new(CHART_REPOSITORY, "argo-cd", CHART_VERSION),
            "argocd",
        );
        common.release_name = "argocd".into();
        ArgoCd {
            common,
            install: InstallMethod::Auto,
            manifests_url: manifests_url(APP_VERSION),
            helm: "helm".into(),
            pipeline_account: "pipeline".into(),
            api_url: None,
            sizing: Sizing::new(1, crate::Resources::small(128)),
        }
    }

    /// How to install (default [`InstallMethod::Auto`]).
    #[must_use]
    pub fn install_method(mut self, method: InstallMethod) -> Self {
        self.install = method;
        self
    }

    /// Another URL for the install manifests (a mirror).
    #[must_use]
    pub fn manifests_url(mut self, url: impl Into<String>) -> Self {
        self.manifests_url = url.into();
        self
    }

    /// Another `helm` executable.
    #[must_use]
    pub fn helm_binary(mut self, path: impl Into<String>) -> Self {
        self.helm = path.into();
        self
    }

    /// Another name for the pipeline account (default `pipeline`).
    #[must_use]
    pub fn pipeline_account(mut self, name: impl Into<String>) -> Self {
        self.pipeline_account = name.into();
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
        self.api_url = Some(url.into().trim_end_matches('/').to_owned());
        self
    }

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
        let account = &self.pipeline_account;
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
            "server": {"replicas": self.sizing.replicas, "resources": self.sizing.resources.to_value()},
            "repoServer": {"replicas": self.sizing.replicas},
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
            pipeline_account: self.pipeline_account.clone(),
            pipeline_token,
            api_url: self.api_url.clone(),
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
        Some(crate::common::to_json(&project))
    }

    fn namespace_object(&self, env: &Env) -> Value {
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.common.namespace, "labels": env.labels}})
    }

    async fn use_helm(&self) -> bool {
        match self.install {
            InstallMethod::Helm => true,
            InstallMethod::Manifests => false,
            InstallMethod::Auto => tokio::process::Command::new(&self.helm)
                .arg("version")
                .output()
                .await
                .is_ok_and(|o| o.status.success()),
        }
    }

    /// The objects of a plain install, by `helm template` or from the install manifests.
    async fn install_objects(
        &self,
        ctx: &Context,
        env: &Env,
        values: &Value,
    ) -> Result<Vec<Value>> {
        let mut objects = if self.use_helm().await {
            ctx.progress(format!(
                "rendering chart argo-cd {} with helm",
                self.common.chart.version
            ));
            parse_bundle(&self.helm_template(values).await?)?
        } else {
            ctx.progress(format!("fetching {}", self.manifests_url));
            let mut objects = parse_bundle(&fetch(&self.manifests_url).await?)?;
            write_configs(&mut objects, values);
            rebind_subjects(&mut objects, &self.common.namespace);
            objects
        };
        set_namespace(&mut objects, &self.common.namespace);
        objects.insert(0, self.namespace_object(env));
        objects.extend(self.project_object(env));
        Ok(objects)
    }

    async fn helm_template(&self, values: &Value) -> Result<String> {
        use tokio::io::AsyncWriteExt as _;
        let chart = &self.common.chart;
        let command = format!(
            "template {} {} --version {}",
            self.common.release_name, chart.chart, chart.version
        );
        let fail = |reason: String| Error::Helm {
            command: command.clone(),
            reason,
        };
        let mut child = tokio::process::Command::new(&self.helm)
            .args(["template", &self.common.release_name, &chart.chart])
            .args(["--repo", &chart.repo_url, "--version", &chart.version])
            .args([
                "--namespace",
                &self.common.namespace,
                "--include-crds",
                "--values",
                "-",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| fail(e.to_string()))?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        // JSON is YAML: helm reads the values as they are.
        stdin
            .write_all(values.to_string().as_bytes())
            .await
            .map_err(|e| fail(e.to_string()))?;
        drop(stdin);
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| fail(e.to_string()))?;
        if !out.status.success() {
            return Err(fail(String::from_utf8_lossy(&out.stderr).trim().to_owned()));
        }
        String::from_utf8(out.stdout).map_err(|e| fail(format!("output is not UTF-8: {e}")))
    }

    /// Whether the final phase's self-managed Application exists (then the plain install is
    /// not re-applied).
    async fn handed_over(&self, client: &kube::Client) -> Result<bool> {
        use devops_stack_core::argocd::Application;
        let api: Api<Application> = Api::namespaced(client.clone(), &self.common.namespace);
        match api.get_opt(&self.common.release_name).await {
            Ok(found) => Ok(found.is_some()),
            // no Application CRD yet: a fresh cluster
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
            Err(e) => Err(Error::kube(
                format!(
                    "reading Application {}/{}",
                    self.common.namespace, self.common.release_name
                ),
                e,
            )),
        }
    }

    async fn admin_password(&self, client: &kube::Client, env: &Env) -> Result<Secret> {
        let ns = &self.common.namespace;
        let copy = format!("{}-admin", self.common.id);
        for attempt in 0..60 {
            let kept = read_key(client, ns, &copy, "password").await?;
            if let Some(p) = read_key(client, ns, "argocd-initial-admin-secret", "password").await?
            {
                // a re-apply finds the copy up to date and writes nothing
                if kept.as_ref().map(Secret::expose) != Some(p.expose()) {
                    keep_secret(client, env, ns, &copy, "password", &p).await?;
                }
                return Ok(p);
            }
            if let Some(p) = kept {
                return Ok(p);
            }
            if attempt == 0 {
                tracing::info!("waiting for argocd-initial-admin-secret");
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        Err(Error::Missing {
            object: format!("Secret {ns}/argocd-initial-admin-secret"),
            problem: format!(
                "neither it nor the copy {ns}/{copy} exists; set a new admin password in argocd-secret \
                 (`admin.password`, bcrypt) and store it under `password` in {ns}/{copy}"
            ),
        })
    }

    async fn pipeline_token(
        &self,
        client: &kube::Client,
        env: &Env,
        admin: &Secret,
    ) -> Result<Secret> {
        let ns = &self.common.namespace;
        let name = format!("{}-pipeline-token", self.common.id);
        if let Some(t) = read_key(client, ns, &name, "token").await? {
            return Ok(t);
        }
        let api = ArgoCdApi {
            client,
            namespace: ns,
            service: format!("{}-server", self.common.release_name),
            url: self.api_url.as_deref(),
        };
        let session = api.session(admin).await?;
        let path = format!("/api/v1/account/{}/token", self.pipeline_account);
        let token = api
            .post(
                &path,
                Some(&session),
                &json!({"name": self.pipeline_account, "id": "devops-stack"}),
            )
            .await?;
        let token = Secret::new(string_field(&token, "token", &format!("POST {path}"))?);
        keep_secret(client, env, ns, &name, "token", &token).await?;
        Ok(token)
    }
}

common_setters!(ArgoCd);
sizing_setters!(ArgoCd);

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
        v.dns_label("pipeline_account", &self.pipeline_account);
        if let Some(url) = &self.api_url {
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
        if !self.manifests_url.starts_with("https://") && !self.manifests_url.starts_with("http://")
        {
            v.error(
                "manifests_url",
                format!("`{}` is not an http(s) URL", self.manifests_url),
                "give the URL of Argo CD's install.yaml or of a mirror",
            );
        }
        self.sizing.validate(v);
    }

    async fn plan(&self, ctx: &Context) -> ModuleResult<Planned<ArgoCdOutput>> {
        let env = self.env(ctx)?;
        let values = self.helm_values(&env);
        let chart = &self.common.chart;
        let install = match self.install {
            InstallMethod::Manifests => json!({"method": "manifests", "url": self.manifests_url}),
            _ => json!({
                "method": "helm template, else the install manifests",
                "repository": chart.repo_url,
                "chart": chart.chart,
                "version": chart.version,
                "namespace": self.common.namespace,
                "values": values,
                "fallback_manifests": self.manifests_url,
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
            .apply_with(ctx, &env)
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
    async fn apply_with(&self, ctx: &Context, env: &Env) -> Result<ArgoCdOutput> {
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

/// Downloads `url` as text.
async fn fetch(url: &str) -> Result<String> {
    let fail = |e: reqwest::Error| Error::Fetch {
        url: url.to_owned(),
        reason: e.to_string(),
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(fail)?;
    client
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(fail)?
        .text()
        .await
        .map_err(fail)
}

/// Kinds without a namespace, among those install bundles carry.
const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "PriorityClass",
    "StorageClass",
    "IngressClass",
    "PersistentVolume",
    "APIService",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
];

/// Puts namespaced objects without a namespace into `namespace` (what `kubectl -n` does).
pub(crate) fn set_namespace(objects: &mut [Value], namespace: &str) {
    for o in objects {
        let kind = o["kind"].as_str().unwrap_or_default();
        if CLUSTER_SCOPED.contains(&kind) {
            continue;
        }
        if let Some(meta) = o.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.entry("namespace").or_insert_with(|| namespace.into());
        }
    }
}

/// Points the install manifests' (cluster) role bindings at service accounts in `namespace`:
/// the manifests name the namespace `argocd` in their subjects.
fn rebind_subjects(objects: &mut [Value], namespace: &str) {
    for o in objects {
        if !matches!(
            o["kind"].as_str(),
            Some("ClusterRoleBinding" | "RoleBinding")
        ) {
            continue;
        }
        for subject in o["subjects"].as_array_mut().into_iter().flatten() {
            if subject["kind"] == "ServiceAccount" && subject["namespace"] == "argocd" {
                subject["namespace"] = namespace.into();
            }
        }
    }
}

/// Writes the chart's `configs.cm`, `configs.rbac` and `configs.params` values into the
/// ConfigMaps of the install manifests, so that both install methods configure the same.
fn write_configs(objects: &mut [Value], values: &Value) {
    for (name, key) in [
        ("argocd-cm", "cm"),
        ("argocd-rbac-cm", "rbac"),
        ("argocd-cmd-params-cm", "params"),
    ] {
        let Some(settings) = values["configs"][key].as_object() else {
            continue;
        };
        let Some(cm) = objects
            .iter_mut()
            .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == name)
        else {
            continue;
        };
        if !cm["data"].is_object() {
            cm["data"] = json!({});
        }
        for (k, v) in settings {
            if k == "create" || k == "annotations" || v.is_null() {
                continue;
            }
            let text = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            cm["data"][k] = Value::String(text);
        }
    }
}

/// The value of `key` in the Secret `ns/name`, if the Secret exists and the key is not empty.
pub(crate) async fn read_key(
    client: &kube::Client,
    ns: &str,
    name: &str,
    key: &str,
) -> Result<Option<Secret>> {
    let api: Api<KubeSecret> = Api::namespaced(client.clone(), ns);
    let found = api
        .get_opt(name)
        .await
        .map_err(|e| Error::kube(format!("reading Secret {ns}/{name}"), e))?;
    Ok(found
        .and_then(|s| s.data)
        .and_then(|d| d.get(key).and_then(|b| String::from_utf8(b.0.clone()).ok()))
        .filter(|v| !v.is_empty())
        .map(Secret::new))
}

/// Stores `value` under `key` in the Secret `name` (server-side apply). These secrets live in
/// Argo CD's namespace and go with it on destroy.
async fn keep_secret(
    client: &kube::Client,
    env: &Env,
    ns: &str,
    name: &str,
    key: &str,
    value: &Secret,
) -> Result<()> {
    let api: Api<KubeSecret> = Api::namespaced(client.clone(), ns);
    let object = env.secret(name, ns, &[], [(key, value.expose())]);
    api.patch(
        name,
        &PatchParams::apply("devops-stack").force(),
        &Patch::Apply(&object),
    )
    .await
    .map_err(|e| Error::kube(format!("writing Secret {ns}/{name}"), e))?;
    Ok(())
}

fn string_field(v: &Value, field: &str, call: &str) -> Result<String> {
    v[field]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| Error::ArgoCdApi {
            call: call.to_owned(),
            reason: format!("the answer has no `{field}`"),
        })
}

/// Argo CD's API, reached through the Kubernetes API server's service proxy (no ingress, no
/// port-forward needed). The session token travels as Argo CD's cookie, because the proxy keeps
/// the `Authorization` header for the Kubernetes API itself.
/// Argo CD's REST API, through the Kubernetes API server's service proxy, or at `url`.
struct ArgoCdApi<'a> {
    client: &'a kube::Client,
    namespace: &'a str,
    service: String,
    url: Option<&'a str>,
}

impl ArgoCdApi<'_> {
    /// Logs in as `admin`: a session token.
    async fn session(&self, admin: &Secret) -> Result<Secret> {
        let session = self
            .post(
                "/api/v1/session",
                None,
                &json!({"username": "admin", "password": admin.expose()}),
            )
            .await?;
        Ok(Secret::new(string_field(
            &session,
            "token",
            "POST /api/v1/session",
        )?))
    }

    /// POSTs `body` to `path`, retrying for up to a minute while Argo CD's server is not up
    /// yet (connection refused, 502, 503, 504: its pod may be starting, or restarting after
    /// the install changed its configuration).
    async fn post(&self, path: &str, session: Option<&Secret>, body: &Value) -> Result<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut pause = Duration::from_millis(250);
        loop {
            match self.post_once(path, session, body).await {
                Err(Error::ArgoCdApi { reason, .. })
                    if tokio::time::Instant::now() < deadline && is_not_up(&reason) =>
                {
                    tracing::debug!("Argo CD's API is not up yet ({reason}); retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(4));
                }
                other => return other,
            }
        }
    }

    async fn post_once(&self, path: &str, session: Option<&Secret>, body: &Value) -> Result<Value> {
        let call = format!("POST {path}");
        let fail = |reason: String| Error::ArgoCdApi {
            call: call.clone(),
            reason,
        };
        let text = match self.url {
            Some(base) => {
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(30))
                    .build()
                    .map_err(|e| fail(e.to_string()))?;
                let mut req = client
                    .post(format!("{base}{path}"))
                    .header("Content-Type", "application/json")
                    .body(body.to_string());
                if let Some(s) = session {
                    req = req.bearer_auth(s.expose());
                }
                req.send()
                    .await
                    .and_then(reqwest::Response::error_for_status)
                    .map_err(|e| fail(format!("{base}: {}", e.without_url())))?
                    .text()
                    .await
                    .map_err(|e| fail(e.to_string()))?
            }
            None => {
                let uri = format!(
                    "/api/v1/namespaces/{}/services/{}:80/proxy{path}",
                    self.namespace, self.service
                );
                let mut req = http::Request::post(uri).header("Content-Type", "application/json");
                if let Some(s) = session {
                    req = req.header("Cookie", format!("argocd.token={}", s.expose()));
                }
                let req = req
                    .body(body.to_string().into_bytes())
                    .map_err(|e| fail(e.to_string()))?;
                self.client.request_text(req).await.map_err(|e| {
                    if unreachable_cause(&e).is_some() {
                        // The API server itself cannot be reached: the module's step reports
                        // it as such, and waiting for Argo CD would not help.
                        Error::kube(format!("calling Argo CD's API ({call})"), e)
                    } else {
                        fail(e.to_string())
                    }
                })?
            }
        };
        serde_json::from_str(&text).map_err(|e| fail(format!("the answer is not JSON: {e}")))
    }
}

/// Whether an Argo CD API error says the server is not up (yet), rather than refusing.
fn is_not_up(reason: &str) -> bool {
    [
        "error sending request",
        "Connect",
        "connection refused",
        "502",
        "503",
        "504",
    ]
    .iter()
    .any(|s| reason.contains(s))
}

pub(crate) struct TokenIssuer<'a> {
    client: &'a kube::Client,
    argocd: ArgoCdOutput,
}

impl<'a> TokenIssuer<'a> {
    pub(crate) fn new(client: &'a kube::Client, argocd: ArgoCdOutput) -> Self {
        TokenIssuer { client, argocd }
    }

    /// The token kept under `token` in the Secret `name` of Argo CD's namespace, if any.
    pub(crate) async fn read(&self, name: &str) -> Result<Option<Secret>> {
        read_key(self.client, &self.argocd.target.namespace, name, "token").await
    }

    /// A new token of the role `role` of `project` (never expiring; deleting the project or
    /// the role revokes it).
    pub(crate) async fn project_token(&self, project: &str, role: &str) -> Result<Secret> {
        let api = ArgoCdApi {
            client: self.client,
            namespace: &self.argocd.target.namespace,
            service: format!("{}-server", self.argocd.release_name),
            url: self.argocd.api_url.as_deref(),
        };
        let session = api.session(&self.argocd.admin_password).await?;
        let path = format!("/api/v1/projects/{project}/roles/{role}/token");
        let token = api
            .post(
                &path,
                Some(&session),
                &json!({"project": project, "role": role, "id": "devops-stack", "expiresIn": 0}),
            )
            .await?;
        Ok(Secret::new(string_field(
            &token,
            "token",
            &format!("POST {path}"),
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_manifests_get_namespace_and_configs() {
        let mut objects = parse_bundle(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: argocd-cm}\n---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: argocd-server}\n---\n\
             apiVersion: v1\nkind: ConfigMap\nmetadata: {name: argocd-cmd-params-cm}\ndata: {a: b}\n",
        )
        .unwrap();
        set_namespace(&mut objects, "argocd");
        write_configs(
            &mut objects,
            &json!({"configs": {"cm": {"accounts.pipeline": "apiKey", "admin.enabled": true}, "params": {"server.insecure": true}}}),
        );
        assert_eq!(objects[0]["metadata"]["namespace"], "argocd");
        assert!(objects[1]["metadata"].get("namespace").is_none());
        assert_eq!(objects[0]["data"]["accounts.pipeline"], "apiKey");
        assert_eq!(objects[0]["data"]["admin.enabled"], "true");
        assert_eq!(
            objects[2]["data"],
            json!({"a": "b", "server.insecure": "true"})
        );
    }

    #[test]
    fn install_manifests_bind_the_chosen_namespace() {
        let mut objects = parse_bundle(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: argocd-server}\n\
             roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: argocd-server}\n\
             subjects: [{kind: ServiceAccount, name: argocd-server, namespace: argocd}]\n",
        )
        .unwrap();
        rebind_subjects(&mut objects, "gitops");
        assert_eq!(objects[0]["subjects"][0]["namespace"], "gitops");
    }

    #[test]
    fn a_server_not_up_is_retried_a_refusal_is_not() {
        assert!(is_not_up("http://127.0.0.1:1: error sending request"));
        assert!(is_not_up(
            "ApiError: no endpoints available for service \"argocd-server:80\" (ServiceUnavailable, code 503)"
        ));
        assert!(!is_not_up("HTTP status client error (401 Unauthorized)"));
    }

    #[test]
    fn manifests_are_pinned() {
        assert_eq!(
            manifests_url(APP_VERSION),
            "https://raw.githubusercontent.com/argoproj/argo-cd/v3.4.14/manifests/install.yaml"
        );
        assert_eq!(manifests_url("3.4.4"), manifests_url("v3.4.4"));
    }
}

#[cfg(test)]
mod api_tests {
    use std::collections::BTreeMap;
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Arc;

    use devops_stack_core::BoxError;
    use devops_stack_core::interfaces::{Cluster, Hostnames};

    use super::*;
    use crate::mock;

    #[derive(Debug)]
    struct Offline;

    impl Cluster for Offline {
        fn name(&self) -> &str {
            "c"
        }
        fn base_domain(&self) -> &str {
            "example.com"
        }
        fn client(
            &self,
        ) -> Pin<Box<dyn Future<Output = std::result::Result<kube::Client, BoxError>> + Send + '_>>
        {
            Box::pin(async { Err("offline".into()) })
        }
    }

    fn env() -> Env {
        Env {
            module: "argocd".into(),
            cluster: Arc::new(Offline),
            argocd: ArgoCdTarget {
                namespace: "argocd".into(),
                project: "default".into(),
                destination_server: "https://kubernetes.default.svc".into(),
            },
            labels: BTreeMap::new(),
            hostnames: Hostnames::new("c", "example.com"),
            monitors: None,
            roles: BTreeMap::new(),
        }
    }

    const SECRETS: &str = "/api/v1/namespaces/argocd/secrets";
    const PROXY: &str = "/api/v1/namespaces/argocd/services/argocd-server:80/proxy";

    #[tokio::test]
    async fn reads_the_admin_password_and_creates_a_pipeline_token_once() {
        let (client, mut server) = mock::client();
        let module = ArgoCd::new(Input::value(Arc::new(Offline) as ClusterRef));
        let run = tokio::spawn(async move {
            let env = env();
            let admin = module.admin_password(&client, &env).await.unwrap();
            let token = module.pipeline_token(&client, &env, &admin).await.unwrap();
            let again = module.pipeline_token(&client, &env, &admin).await.unwrap();
            (
                admin.expose().to_owned(),
                token.expose().to_owned(),
                again.expose().to_owned(),
            )
        });
        let initial = mock::secret(
            "argocd",
            "argocd-initial-admin-secret",
            &[("password", "pw")],
        );
        server
            .expect(
                "GET",
                &format!("{SECRETS}/argocd-admin"),
                404,
                mock::not_found(),
            )
            .await;
        server
            .expect(
                "GET",
                &format!("{SECRETS}/argocd-initial-admin-secret"),
                200,
                initial,
            )
            .await;
        let copy = server
            .expect("PATCH", &format!("{SECRETS}/argocd-admin"), 200, json!({}))
            .await;
        assert_eq!(copy["stringData"]["password"], "pw");
        server
            .expect(
                "GET",
                &format!("{SECRETS}/argocd-pipeline-token"),
                404,
                mock::not_found(),
            )
            .await;
        let login = server
            .expect(
                "POST",
                &format!("{PROXY}/api/v1/session"),
                200,
                json!({"token": "session"}),
            )
            .await;
        assert_eq!(login, json!({"username": "admin", "password": "pw"}));
        let create = server
            .expect(
                "POST",
                &format!("{PROXY}/api/v1/account/pipeline/token"),
                200,
                json!({"token": "pipeline-jwt"}),
            )
            .await;
        assert_eq!(create["__cookie"], "argocd.token=session");
        assert_eq!(create["name"], "pipeline");
        let kept = server
            .expect(
                "PATCH",
                &format!("{SECRETS}/argocd-pipeline-token"),
                200,
                json!({}),
            )
            .await;
        assert_eq!(kept["stringData"]["token"], "pipeline-jwt");
        // a re-apply reads the kept token and makes no API call
        let stored = mock::secret(
            "argocd",
            "argocd-pipeline-token",
            &[("token", "pipeline-jwt")],
        );
        server
            .expect(
                "GET",
                &format!("{SECRETS}/argocd-pipeline-token"),
                200,
                stored,
            )
            .await;
        let (admin, token, again) = run.await.unwrap();
        assert_eq!(
            (admin.as_str(), token.as_str(), again.as_str()),
            ("pw", "pipeline-jwt", "pipeline-jwt")
        );
    }

    #[tokio::test]
    async fn an_up_to_date_copy_of_the_admin_password_is_not_written_again() {
        let (client, mut server) = mock::client();
        let module = ArgoCd::new(Input::value(Arc::new(Offline) as ClusterRef));
        let run = tokio::spawn(async move {
            let admin = module.admin_password(&client, &env()).await.unwrap();
            admin.expose().to_owned()
        });
        let copy = mock::secret("argocd", "argocd-admin", &[("password", "pw")]);
        server
            .expect("GET", &format!("{SECRETS}/argocd-admin"), 200, copy)
            .await;
        let initial = mock::secret(
            "argocd",
            "argocd-initial-admin-secret",
            &[("password", "pw")],
        );
        server
            .expect(
                "GET",
                &format!("{SECRETS}/argocd-initial-admin-secret"),
                200,
                initial,
            )
            .await;
        // a PATCH of the copy would wait for an answer that never comes
        let admin = tokio::time::timeout(Duration::from_secs(5), run)
            .await
            .expect("no write request after the two reads")
            .unwrap();
        assert_eq!(admin, "pw");
    }

    #[tokio::test]
    async fn an_application_named_like_the_release_means_handed_over() {
        let (client, mut server) = mock::client();
        let module = ArgoCd::new(Input::value(Arc::new(Offline) as ClusterRef));
        let run = tokio::spawn(async move { module.handed_over(&client).await.unwrap() });
        let app = json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": "argocd", "namespace": "argocd"},
            "spec": {"project": "default", "destination": {}},
        });
        server
            .expect(
                "GET",
                "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications/argocd",
                200,
                app,
            )
            .await;
        assert!(run.await.unwrap());
    }

    #[tokio::test]
    async fn issues_a_project_role_token_as_admin() {
        let (client, mut server) = mock::client();
        let argocd = ArgoCdOutput {
            target: env().argocd,
            release_name: "argocd".into(),
            chart: ChartSource::new(CHART_REPOSITORY, "argo-cd", CHART_VERSION),
            values: json!({}),
            admin_password: Secret::new("pw"),
            pipeline_account: "pipeline".into(),
            pipeline_token: Secret::new("pipeline-jwt"),
            api_url: None,
        };
        let run = tokio::spawn(async move {
            let issuer = TokenIssuer::new(&client, argocd);
            let kept = issuer.read("shop-ci-token").await.unwrap();
            let token = issuer.project_token("shop", "ci").await.unwrap();
            (kept.is_none(), token.expose().to_owned())
        });
        server
            .expect(
                "GET",
                &format!("{SECRETS}/shop-ci-token"),
                404,
                mock::not_found(),
            )
            .await;
        let login = server
            .expect(
                "POST",
                &format!("{PROXY}/api/v1/session"),
                200,
                json!({"token": "session"}),
            )
            .await;
        assert_eq!(login["password"], "pw");
        let create = server
            .expect(
                "POST",
                &format!("{PROXY}/api/v1/projects/shop/roles/ci/token"),
                200,
                json!({"token": "project-jwt"}),
            )
            .await;
        assert_eq!(create["__cookie"], "argocd.token=session");
        assert_eq!(
            (create["project"].as_str(), create["role"].as_str()),
            (Some("shop"), Some("ci"))
        );
        assert_eq!(run.await.unwrap(), (true, "project-jwt".to_owned()));
    }
}
