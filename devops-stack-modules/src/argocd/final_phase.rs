//! Argo CD managing itself, in the final phase.

use devops_stack_core::interfaces::{
    ArgoCdProvider, ArgoCdTarget, ClusterIssuer, ClusterRef, Ingress, Monitoring, Oidc,
};
use devops_stack_core::{
    Context, Handle, Input, Module, ModuleResult, Needs, Phase, Planned, Validation,
};
use serde::Serialize;
use serde_json::{Value, json};

use super::{ArgoCdOutput, CHART_REPOSITORY, CHART_VERSION};
use crate::chart::{
    Chart, ChartSource, ChartSpec, Common, Env, Exposure, Rendered, Secrets, SyncSettings,
    merge_values,
};
use crate::error::{Error, Result};

/// The name of the Secret holding the OIDC client secret, referenced from `oidc.config`.
pub const OIDC_SECRET: &str = "argocd-oidc";

/// What the self-managed Argo CD outputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SelfManagedArgoCd {
    /// Where Applications go, as for the bootstrap.
    #[serde(flatten)]
    pub target: ArgoCdTarget,
    /// The URL of the UI and API.
    pub url: String,
    /// The group whose members are Argo CD admins.
    pub admin_group: String,
}

impl ArgoCdProvider for SelfManagedArgoCd {
    fn argocd(&self) -> ArgoCdTarget {
        self.target.clone()
    }
}

/// Re-applies the bootstrap's Argo CD as an Application that manages itself, in the final
/// phase, with OIDC login, RBAC, an ingress with TLS and, when monitoring is in the stack,
/// ServiceMonitors. See the [module documentation](super) for the handover.
///
/// # Inputs
/// - the cluster, the bootstrap [`ArgoCd`](super::ArgoCd)'s handle, the ingress controller and
///   the OIDC settings of client `argocd`, in [`ArgoCdFinal::new`];
/// - optionally a cluster issuer for TLS ([`ArgoCdFinal::issuer`]) and monitoring
///   ([`ArgoCdFinal::monitoring`]).
///
/// # Outputs
/// [`SelfManagedArgoCd`] (implements `ArgoCdProvider`).
///
/// # Defaults
/// The bootstrap's chart, release, namespace and values, plus: `configs.secret.createSecret:
/// false`; `oidc.config` with the provider's issuer, client id, scopes and the client secret as
/// `$argocd-oidc:clientSecret` (the Secret [`OIDC_SECRET`] holds it); RBAC `g, <admin group>,
/// role:admin` with scopes `[<groups claim>]`; the server ingress on `argocd.<subdomain>.<cluster>.<base_domain>`
/// with the ingress controller's class and annotations; the admin group
/// [`DEFAULT_ADMIN_GROUP`](crate::DEFAULT_ADMIN_GROUP). The
/// Application has no resources finalizer, and destroy deletes it without one: Argo CD is
/// orphaned, not deleted (the bootstrap's destroy removes it).
///
/// It deploys the bootstrap's chart, release and namespace, so it has only the shared setters
/// it honours (id, subdomain, values, sync), not those of other charts.
#[derive(Debug, Clone)]
pub struct ArgoCdFinal(Chart<SelfManaged>);

/// What the self-managed Argo CD has beyond the shared settings.
#[derive(Debug, Clone)]
struct SelfManaged {
    bootstrap: Input<ArgoCdOutput>,
    exposure: Exposure,
    oidc: Input<Oidc>,
    monitoring: Option<Input<Monitoring>>,
    hostname: Option<String>,
    admin_group: String,
}

impl ArgoCdFinal {
    /// The self-managed Argo CD of `bootstrap`, published through `ingress`, logging in with `oidc`.
    pub fn new(
        cluster: impl Into<Input<ClusterRef>>,
        bootstrap: &Handle<ArgoCdOutput>,
        ingress: impl Into<Input<Ingress>>,
        oidc: Input<Oidc>,
    ) -> Self {
        let mut common = Common::new(
            "argocd-final",
            cluster,
            bootstrap.map(|b| b.argocd()),
            // replaced by the bootstrap's chart when rendering
            ChartSource::new(CHART_REPOSITORY, "argo-cd", CHART_VERSION),
            "argocd",
        );
        common.cascade = false;
        common.owns_namespace = false;
        ArgoCdFinal(Chart::with_spec(
            common,
            SelfManaged {
                bootstrap: bootstrap.input(),
                exposure: Exposure::new(ingress.into()),
                oidc,
                monitoring: None,
                hostname: None,
                admin_group: crate::DEFAULT_ADMIN_GROUP.into(),
            },
        ))
    }

    /// Another module id (default `argocd-final`).
    #[must_use]
    pub fn id(self, id: impl Into<String>) -> Self {
        ArgoCdFinal(self.0.id(id))
    }

    /// TLS for the ingress from `issuer`.
    #[must_use]
    pub fn issuer(mut self, issuer: Input<ClusterIssuer>) -> Self {
        self.0.spec.exposure.issuer = Some(issuer);
        self
    }

    /// Enables Argo CD's ServiceMonitors for this monitoring.
    #[must_use]
    pub fn monitoring(mut self, monitoring: impl Into<Input<Monitoring>>) -> Self {
        self.0.spec.monitoring = Some(monitoring.into());
        self
    }

    /// Another hostname (default `argocd.<subdomain>.<cluster>.<base_domain>`).
    #[must_use]
    pub fn hostname(mut self, host: impl Into<String>) -> Self {
        self.0.spec.hostname = Some(host.into());
        self
    }

    /// Another subdomain for the default hostname.
    #[must_use]
    pub fn subdomain(self, subdomain: impl Into<String>) -> Self {
        ArgoCdFinal(self.0.subdomain(subdomain))
    }

    /// The group whose members get `role:admin` (default [`DEFAULT_ADMIN_GROUP`](crate::DEFAULT_ADMIN_GROUP)).
    #[must_use]
    pub fn admin_group(mut self, group: impl Into<String>) -> Self {
        self.0.spec.admin_group = group.into();
        self
    }

    /// Helm value overrides, merged last.
    #[must_use]
    pub fn values(self, overrides: Value) -> Self {
        ArgoCdFinal(self.0.values(overrides))
    }

    /// Other automated sync settings.
    #[must_use]
    pub fn sync(self, sync: SyncSettings) -> Self {
        ArgoCdFinal(self.0.sync(sync))
    }
}

/// The module of the chart it wraps.
impl Module for ArgoCdFinal {
    type Output = SelfManagedArgoCd;

    fn id(&self) -> &str {
        Module::id(&self.0)
    }

    fn kind(&self) -> &'static str {
        self.0.kind()
    }

    fn phase(&self) -> Phase {
        self.0.phase()
    }

    fn needs(&self, n: &mut Needs) {
        self.0.needs(n);
    }

    fn validate(&self, v: &mut Validation) {
        self.0.validate(v);
    }

    async fn plan(&self, ctx: &Context) -> ModuleResult<Planned<SelfManagedArgoCd>> {
        self.0.plan(ctx).await
    }

    async fn apply(&self, ctx: &Context) -> ModuleResult<SelfManagedArgoCd> {
        self.0.apply(ctx).await
    }

    async fn destroy(&self, ctx: &Context) -> ModuleResult<()> {
        self.0.destroy(ctx).await
    }
}

impl ChartSpec for SelfManaged {
    type Output = SelfManagedArgoCd;
    const KIND: &'static str = "argocd-final";
    const PHASE: Phase = Phase::Final;

    fn needs_more(&self, n: &mut Needs) {
        n.add(&self.bootstrap).add(&self.oidc).add(&self.monitoring);
        self.exposure.needs(n);
    }

    fn validate_more(&self, _common: &Common, v: &mut Validation) {
        if let Some(h) = &self.hostname {
            v.dns_subdomain("hostname", h);
        }
        if self.admin_group.trim().is_empty() || self.admin_group.contains(',') {
            v.error(
                "admin_group",
                format!(
                    "`{}` cannot be used in an RBAC policy line",
                    self.admin_group
                ),
                "name a group without commas, like `argocd-admins`",
            );
        }
    }

    /// The engine deletes Applications with the resources finalizer (cascading); Argo CD's own
    /// Application must orphan instead, so it is deleted here first, without finalizers.
    async fn before_destroy(
        &self,
        _common: &Common,
        ctx: &Context,
        client: &kube::Client,
    ) -> Result<()> {
        let boot = ctx.get(&self.bootstrap)?;
        ctx.progress("deleting Argo CD's own Application, orphaning Argo CD");
        orphan_application(client, &boot.target.namespace, &boot.release_name).await
    }

    fn render(
        &self,
        common: &Common,
        ctx: &Context,
        env: &Env,
        _secrets: &Secrets,
    ) -> Result<Rendered<SelfManagedArgoCd>> {
        let boot = ctx.get(&self.bootstrap)?;
        let oidc = ctx.get(&self.oidc)?;
        let ing = self.exposure.resolve(ctx)?;
        let host = env.host("argocd", self.hostname.as_deref());
        let url = ing.url(&host);
        let oidc_config = json!({
            "name": "SSO",
            "issuer": oidc.issuer_url,
            "clientID": oidc.client_id,
            "clientSecret": format!("${OIDC_SECRET}:clientSecret"),
            "requestedScopes": oidc.scopes,
            "requestedIDTokenClaims": {oidc.groups_claim.clone(): {"essential": true}},
        });
        let policy = boot.values["configs"]["rbac"]["policy.csv"]
            .as_str()
            .unwrap_or_default();
        let mut values = boot.values.clone();
        merge_values(
            &mut values,
            &json!({
                "global": {"domain": host},
                "configs": {
                    "secret": {"createSecret": false},
                    "cm": {
                        "url": url,
                        "oidc.config": serde_yaml_ng::to_string(&oidc_config).expect("JSON values serialize to YAML"),
                    },
                    "rbac": {
                        "policy.csv": format!("{policy}g, {}, role:admin\n", self.admin_group),
                        "scopes": format!("[{}]", oidc.groups_claim),
                    },
                },
                "server": {"ingress": {
                    "enabled": true,
                    "ingressClassName": ing.class_name,
                    "annotations": ing.annotations,
                    "hostname": host,
                    "tls": ing.tls,
                }},
            }),
        );
        if let Some(m) = &self.monitoring {
            let m = ctx.get(m)?;
            let monitor = json!({"enabled": true, "serviceMonitor": {"enabled": true, "additionalLabels": m.service_monitor_labels}});
            merge_values(
                &mut values,
                &json!({
                    "controller": {"metrics": monitor},
                    "server": {"metrics": monitor},
                    "repoServer": {"metrics": monitor},
                    "applicationSet": {"metrics": monitor},
                }),
            );
        }
        for patch in &common.values {
            merge_values(&mut values, patch);
        }
        // the same chart, release and namespace as the bootstrap: the Application takes over
        // the objects the bootstrap applied
        let mut common = common.clone();
        common.application = Some(boot.release_name.clone());
        common.chart = boot.chart.clone();
        common.release_name = boot.release_name.clone();
        common.namespace = boot.target.namespace.clone();
        let secret = env.secret(
            OIDC_SECRET,
            &boot.target.namespace,
            &[("app.kubernetes.io/part-of", "argocd")],
            [("clientSecret", oidc.client_secret.expose())],
        );
        let mut objects = vec![secret];
        objects.extend(common.chart_objects(env, values));
        Ok(Rendered {
            output: SelfManagedArgoCd {
                target: boot.target.clone(),
                url,
                admin_group: self.admin_group.clone(),
            },
            objects,
        })
    }
}

/// Deletes the Application `namespace/name` without deleting what it deployed: its finalizers
/// are removed first (Argo CD cascades only through the resources finalizer), then it is
/// deleted and waited for.
pub(crate) async fn orphan_application(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<()> {
    use devops_stack_core::argocd::Application;
    use kube::api::{Api, DeleteParams, Patch, PatchParams};

    let api: Api<Application> = Api::namespaced(client.clone(), namespace);
    let what = format!("Application {namespace}/{name}");
    let fail = |action: &str, e| Error::kube(format!("{action} {what}"), e);
    let app = match api.get_opt(name).await {
        Ok(Some(app)) => app,
        Ok(None) => return Ok(()),
        // no Application CRD: Argo CD was never installed, or is gone already
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
        Err(e) => return Err(fail("reading", e)),
    };
    if app
        .metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| !f.is_empty())
    {
        api.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .map_err(|e| fail("removing the finalizers of", e))?;
    }
    match api.delete(name, &DeleteParams::orphan()).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
        Err(e) => return Err(fail("deleting", e)),
    }
    for _ in 0..60 {
        if api
            .get_opt(name)
            .await
            .map_err(|e| fail("reading", e))?
            .is_none()
        {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    Err(Error::Missing {
        object: what,
        problem: "is still there a minute after it was deleted without finalizers".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock;

    #[tokio::test]
    async fn argo_cd_is_orphaned_not_cascaded() {
        let (client, mut server) = mock::client();
        let run = tokio::spawn(async move {
            orphan_application(&client, "argocd", "argocd")
                .await
                .unwrap()
        });
        let path = "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications/argocd";
        let app = json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": "argocd", "namespace": "argocd", "finalizers": ["resources-finalizer.argocd.argoproj.io"]},
            "spec": {"project": "default", "destination": {}},
        });
        server.expect("GET", path, 200, app.clone()).await;
        let patch = server.expect("PATCH", path, 200, app.clone()).await;
        assert_eq!(patch, json!({"metadata": {"finalizers": null}}));
        let delete = server.expect("DELETE", path, 200, app).await;
        assert_eq!(delete["propagationPolicy"], "Orphan");
        server.expect("GET", path, 404, mock::not_found()).await;
        run.await.unwrap();
    }

    #[tokio::test]
    async fn a_cluster_without_argo_cds_crds_has_nothing_to_orphan() {
        let (client, mut server) = mock::client();
        let run =
            tokio::spawn(async move { orphan_application(&client, "argocd", "argocd").await });
        let path = "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications/argocd";
        // what the API server answers for a group it does not serve: plain text, no Status
        server
            .expect("GET", path, 404, json!("404 page not found"))
            .await;
        run.await.unwrap().unwrap();
    }
}
