//! kube-prometheus-stack: Prometheus, Alertmanager and Grafana, from the
//! `kube-prometheus-stack` chart of <https://prometheus-community.github.io/helm-charts>, and
//! the Prometheus Operator's CRDs as a module of their own ([`PrometheusOperatorCrds`]).
//!
//! # Inputs
//! - the cluster, Argo CD and the ingress controller, in
//!   [`KubePrometheusStack::new`](KubePrometheusStack#method.new);
//! - optionally an OIDC provider ([`KubePrometheusStack::oidc`](KubePrometheusStack#method.oidc):
//!   its clients `grafana`, `prometheus` and `alertmanager`), a cluster issuer for TLS
//!   ([`KubePrometheusStack::issuer`](KubePrometheusStack#method.issuer)), and the CRDs module
//!   ([`KubePrometheusStack::service_monitors`]: the chart then skips its own copy of the CRDs);
//! - optionally a storage class
//!   ([`KubePrometheusStack::storage_class`](KubePrometheusStack#method.storage_class), the EBS CSI
//!   driver's on EKS) that the volumes name.
//!
//! # Outputs
//! [`MonitoringStack`], which implements `MonitoringProvider`: the namespace, in-cluster URLs,
//! the ServiceMonitor labels and Grafana's sidecar labels other modules use (Loki's datasource).
//!
//! # Defaults
//! Chart `kube-prometheus-stack` [`CHART_VERSION`], namespace `monitoring`, release
//! `kube-prometheus-stack` (also its `fullnameOverride`); Prometheus with 1 replica, 15 days of
//! retention and a 20Gi volume, selecting every ServiceMonitor, PodMonitor and rule of the cluster;
//! Alertmanager with 1 replica and a 2Gi volume; Grafana with a 5Gi volume, its admin password
//! generated into the Secret `<id>-grafana-admin`, on
//! `grafana.<subdomain>.<cluster>.<base_domain>`. The volumes name no storage class (the cluster's
//! default) unless the module is given one
//! ([`KubePrometheusStack::storage_class`](KubePrometheusStack#method.storage_class)) or a
//! [`Persistence`] names its own, which wins.
//!
//! # Login
//! With an OIDC provider, Grafana logs in natively (`auth.generic_oauth` with the `grafana`
//! client; the client secret comes from the Secret `<id>-grafana-oidc` through `envValueFrom`,
//! never inline; members of the admin group are Grafana admins, others viewers). Prometheus and
//! Alertmanager, which have no login, are published behind an oauth2-proxy each (chart
//! `oauth2-proxy` [`OAUTH2_PROXY_CHART_VERSION`], one more Application per app, arguments from
//! `Oidc::extra_proxy_args`, client and generated cookie secrets in `<id>-<app>-proxy`) on
//! `prometheus.…` and `alertmanager.…`. Without an OIDC provider they are not published at all.

mod crds;

use std::collections::BTreeMap;

use devops_stack_core::interfaces::{
    ArgoCdTarget, ClusterIssuer, ClusterRef, Ingress, Monitoring, MonitoringProvider, Oidc,
    OidcProvider, StorageClass,
};
use devops_stack_core::{Context, Handle, Input, Needs, Secret, Validation};
use serde::Serialize;
use serde_json::{Value, json};

pub use crds::{
    CRDS_CHART_VERSION, PROMETHEUS_COMMUNITY, PrometheusOperatorCrds, PrometheusOperatorCrdsSpec,
    ServiceMonitorCrds,
};

use crate::chart::{
    Chart, ChartSource, ChartSpec, Common, Env, Exposure, GeneratedSecret, IngressSettings,
    Rendered, Secrets, ValueKind,
};
use crate::error::Result;

/// The pinned chart version.
pub const CHART_VERSION: &str = crate::pins::KUBE_PROMETHEUS_STACK.version;
/// The pinned version of the `oauth2-proxy` chart in front of Prometheus and Alertmanager.
pub const OAUTH2_PROXY_CHART_VERSION: &str = crate::pins::OAUTH2_PROXY.version;
/// The Helm repository of the `oauth2-proxy` chart.
pub const OAUTH2_PROXY_REPOSITORY: &str = crate::pins::OAUTH2_PROXY.repository;

/// A persistent volume: its size and storage class (default: the class given to the module with
/// its `storage_class` setter, else the cluster's default class). A class named here wins over
/// the module's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Persistence {
    /// The size, like `20Gi`.
    pub size: String,
    /// The storage class; `None` for the cluster's default.
    pub storage_class: Option<String>,
}

impl Persistence {
    /// A volume of `size` in the default storage class.
    pub fn new(size: impl Into<String>) -> Self {
        Persistence {
            size: size.into(),
            storage_class: None,
        }
    }

    /// In storage class `class`.
    #[must_use]
    pub fn storage_class(mut self, class: impl Into<String>) -> Self {
        self.storage_class = Some(class.into());
        self
    }

    /// The class the volume names: its own, else `module_class` (the module's input), else
    /// none (the cluster's default).
    pub(crate) fn class_or<'a>(&'a self, module_class: Option<&'a str>) -> Option<&'a str> {
        self.storage_class.as_deref().or(module_class)
    }

    /// A `volumeClaimTemplate` for the Prometheus Operator's resources.
    fn claim_template(&self, module_class: Option<&str>) -> Value {
        let mut spec = json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": self.size}}});
        if let Some(c) = self.class_or(module_class) {
            spec["storageClassName"] = c.into();
        }
        json!({"volumeClaimTemplate": {"spec": spec}})
    }

    pub(crate) fn validate(&self, v: &mut Validation, field: &str) {
        let digits = self
            .size
            .trim_end_matches(|c: char| c.is_ascii_alphabetic());
        let unit = &self.size[digits.len()..];
        if digits.is_empty()
            || !digits.chars().all(|c| c.is_ascii_digit())
            || !["Mi", "Gi", "Ti", "M", "G", "T"].contains(&unit)
        {
            v.error(
                format!("{field}.size"),
                format!("`{}` is not a storage quantity", self.size),
                "use a whole number with a unit, like `20Gi`",
            );
        }
        if let Some(c) = &self.storage_class {
            v.dns_subdomain(&format!("{field}.storage_class"), c);
        }
    }
}

/// What kube-prometheus-stack outputs.
#[derive(Debug, Clone, Serialize)]
pub struct MonitoringStack {
    /// How other modules plug in.
    pub monitoring: Monitoring,
    /// Grafana's URL.
    pub grafana_url: String,
    /// Prometheus's public URL, when published (behind the OIDC proxy).
    pub prometheus_public_url: Option<String>,
    /// Alertmanager's public URL, when published (behind the OIDC proxy).
    pub alertmanager_public_url: Option<String>,
    /// Grafana's local admin password.
    pub grafana_admin_password: Secret,
}

impl MonitoringProvider for MonitoringStack {
    fn monitoring(&self) -> Monitoring {
        self.monitoring.clone()
    }
}

/// The apps this module publishes.
const APPS: [&str; 3] = ["grafana", "prometheus", "alertmanager"];

/// Deploys Prometheus, Alertmanager and Grafana.
///
/// Its own setters are below; the shared ones (`namespace`, `values`, `sync`...) are on
/// [`Chart`].
pub type KubePrometheusStack = Chart<KubePrometheusStackSpec>;

/// The spec of [`KubePrometheusStack`]: where its UIs are published and how they log in, its
/// volumes, retention, replicas and resources.
#[derive(Debug, Clone)]
pub struct KubePrometheusStackSpec {
    exposure: Exposure,
    oidc: Option<[Input<Oidc>; 3]>,
    hostnames: BTreeMap<String, String>,
    prometheus_storage: Persistence,
    alertmanager_storage: Persistence,
    grafana_storage: Persistence,
    storage_class: Option<Input<StorageClass>>,
    retention: String,
    prometheus_replicas: u32,
    alertmanager_replicas: u32,
    prometheus_resources: crate::Resources,
    admin_group: String,
    oauth2_proxy_chart: ChartSource,
}

impl KubePrometheusStack {
    /// kube-prometheus-stack on `cluster`, deployed by `argocd`, published through `ingress`,
    /// with the id `kube-prometheus-stack`.
    pub fn new(
        cluster: impl Into<Input<ClusterRef>>,
        argocd: impl Into<Input<ArgoCdTarget>>,
        ingress: impl Into<Input<Ingress>>,
    ) -> Self {
        Chart::with_spec(
            Common::new(
                "kube-prometheus-stack",
                cluster,
                argocd,
                ChartSource::new(PROMETHEUS_COMMUNITY, "kube-prometheus-stack", CHART_VERSION),
                "monitoring",
            ),
            KubePrometheusStackSpec {
                exposure: Exposure::new(ingress.into()),
                oidc: None,
                hostnames: BTreeMap::new(),
                prometheus_storage: Persistence::new("20Gi"),
                alertmanager_storage: Persistence::new("2Gi"),
                grafana_storage: Persistence::new("5Gi"),
                storage_class: None,
                retention: "15d".into(),
                prometheus_replicas: 1,
                alertmanager_replicas: 1,
                prometheus_resources: crate::Resources::new()
                    .request("cpu", "200m")
                    .request("memory", "1Gi")
                    .limit("memory", "2Gi"),
                admin_group: crate::DEFAULT_ADMIN_GROUP.into(),
                oauth2_proxy_chart: ChartSource::new(
                    OAUTH2_PROXY_REPOSITORY,
                    "oauth2-proxy",
                    OAUTH2_PROXY_CHART_VERSION,
                ),
            },
        )
    }

    /// Another source of the `oauth2-proxy` chart in front of Prometheus and Alertmanager
    /// (default [`OAUTH2_PROXY_CHART_VERSION`] from [`OAUTH2_PROXY_REPOSITORY`]): a mirror, or
    /// another version.
    #[must_use]
    pub fn oauth2_proxy_chart(mut self, chart: ChartSource) -> Self {
        self.spec.oauth2_proxy_chart = chart;
        self
    }

    /// Logs Grafana in with the provider's `grafana` client, and puts Prometheus and
    /// Alertmanager behind oauth2-proxy with its `prometheus` and `alertmanager` clients.
    #[must_use]
    pub fn oidc<T: OidcProvider + Send + Sync + 'static>(mut self, provider: &Handle<T>) -> Self {
        self.spec.oidc = Some(APPS.map(|app| provider.oidc(app)));
        self
    }

    /// TLS for the ingresses from `issuer`.
    #[must_use]
    pub fn issuer(mut self, issuer: Input<ClusterIssuer>) -> Self {
        self.spec.exposure.issuer = Some(issuer);
        self
    }

    /// Another hostname for `app` (`grafana`, `prometheus` or `alertmanager`).
    #[must_use]
    pub fn hostname(mut self, app: impl Into<String>, host: impl Into<String>) -> Self {
        self.spec.hostnames.insert(app.into(), host.into());
        self
    }

    /// Prometheus's volume (default 20Gi).
    #[must_use]
    pub fn prometheus_storage(mut self, p: Persistence) -> Self {
        self.spec.prometheus_storage = p;
        self
    }

    /// Alertmanager's volume (default 2Gi).
    #[must_use]
    pub fn alertmanager_storage(mut self, p: Persistence) -> Self {
        self.spec.alertmanager_storage = p;
        self
    }

    /// Grafana's volume (default 5Gi).
    #[must_use]
    pub fn grafana_storage(mut self, p: Persistence) -> Self {
        self.spec.grafana_storage = p;
        self
    }

    /// The storage class of the Prometheus, Alertmanager and Grafana volumes, from the module
    /// that provides it (the EBS CSI driver's `gp3`): the module then runs after it, and its
    /// claims name the class. A [`Persistence`] that names a class keeps its own. Without it,
    /// claims name no class (the cluster's default).
    #[must_use]
    pub fn storage_class(mut self, class: impl Into<Input<StorageClass>>) -> Self {
        self.spec.storage_class = Some(class.into());
        self
    }

    /// How long Prometheus keeps samples (default `15d`).
    #[must_use]
    pub fn retention(mut self, retention: impl Into<String>) -> Self {
        self.spec.retention = retention.into();
        self
    }

    /// Prometheus replicas (default 1).
    #[must_use]
    pub fn prometheus_replicas(mut self, n: u32) -> Self {
        self.spec.prometheus_replicas = n;
        self
    }

    /// Alertmanager replicas (default 1).
    #[must_use]
    pub fn alertmanager_replicas(mut self, n: u32) -> Self {
        self.spec.alertmanager_replicas = n;
        self
    }

    /// Prometheus's compute resources (default 200m CPU and 1Gi memory requested, 2Gi limit).
    #[must_use]
    pub fn prometheus_resources(mut self, resources: crate::Resources) -> Self {
        self.spec.prometheus_resources = resources;
        self
    }

    /// The group whose members are Grafana admins (default
    /// [`DEFAULT_ADMIN_GROUP`](crate::DEFAULT_ADMIN_GROUP)).
    #[must_use]
    pub fn admin_group(mut self, group: impl Into<String>) -> Self {
        self.spec.admin_group = group.into();
        self
    }
}

impl KubePrometheusStackSpec {
    /// The Secret of Grafana's admin of the module `id`.
    fn grafana_admin(id: &str) -> String {
        format!("{id}-grafana-admin")
    }

    /// The Secret of the OIDC proxy of `app` of the module `id`.
    fn proxy_secret(id: &str, app: &str) -> String {
        format!("{id}-{app}-proxy")
    }

    fn grafana_values(
        &self,
        id: &str,
        ing: &IngressSettings,
        host: &str,
        oidc: Option<&Oidc>,
        class: Option<&str>,
    ) -> Value {
        let mut persistence = json!({"enabled": true, "size": self.grafana_storage.size});
        if let Some(c) = self.grafana_storage.class_or(class) {
            persistence["storageClassName"] = c.into();
        }
        let mut grafana = json!({
            "admin": {"existingSecret": Self::grafana_admin(id), "userKey": "admin-user", "passwordKey": "admin-password"},
            "ingress": {
                "enabled": true,
                "ingressClassName": ing.class_name,
                "annotations": ing.annotations,
                "hosts": [host],
                "tls": ing.tls_list("grafana", host),
            },
            "persistence": persistence,
            "grafana.ini": {"server": {"root_url": ing.url(host)}},
            "sidecar": {
                "datasources": {"label": "grafana_datasource", "labelValue": "1"},
                "dashboards": {"label": "grafana_dashboard", "labelValue": "1"},
            },
        });
        if let Some(o) = oidc {
            grafana["envValueFrom"] = json!({"GF_AUTH_GENERIC_OAUTH_CLIENT_SECRET": {
                "secretKeyRef": {"name": format!("{id}-grafana-oidc"), "key": "client-secret"},
            }});
            grafana["grafana.ini"]["auth.generic_oauth"] = json!({
                "enabled": true,
                "name": "SSO",
                "client_id": o.client_id,
                "scopes": o.scopes.join(" "),
                "auth_url": o.authorization_url,
                "token_url": o.token_url,
                "api_url": o.userinfo_url,
                "allow_sign_up": true,
                "use_pkce": true,
                "groups_attribute_path": o.groups_claim,
                "role_attribute_path": format!("contains({}[*], '{}') && 'Admin' || 'Viewer'", o.groups_claim, self.admin_group),
            });
        }
        grafana
    }

    /// The oauth2-proxy Application in front of `app`, listening on `upstream`.
    fn proxy_application(
        &self,
        common: &Common,
        env: &Env,
        ing: &IngressSettings,
        app: &str,
        upstream: &str,
        oidc: &Oidc,
    ) -> Value {
        let host = env.host(app, self.hostnames.get(app).map(String::as_str));
        let mut args = serde_json::Map::new();
        for a in &oidc.extra_proxy_args {
            let a = a.trim_start_matches('-');
            let (k, v) = a.split_once('=').unwrap_or((a, "true"));
            args.insert(k.to_owned(), v.into());
        }
        args.insert("upstream".into(), upstream.into());
        args.insert(
            "redirect-url".into(),
            format!("{}/oauth2/callback", ing.url(&host)).into(),
        );
        args.insert("reverse-proxy".into(), "true".into());
        let values = json!({
            "config": {"existingSecret": Self::proxy_secret(&common.id, app)},
            "extraArgs": args,
            "ingress": {
                "enabled": true,
                "className": ing.class_name,
                "annotations": ing.annotations,
                "hosts": [host],
                "path": "/",
                "pathType": "Prefix",
                "tls": ing.tls_list(app, &host),
            },
        });
        common.application_of(
            env,
            &format!("{}-{app}-proxy", env.module),
            &self.oauth2_proxy_chart,
            &format!("{app}-oauth2-proxy"),
            values,
        )
    }
}

impl ChartSpec for KubePrometheusStackSpec {
    type Output = MonitoringStack;
    const KIND: &'static str = "kube-prometheus-stack";

    fn needs_more(&self, n: &mut Needs) {
        self.exposure.needs(n);
        n.add(&self.storage_class);
        for o in self.oidc.iter().flatten() {
            n.add(o);
        }
    }

    fn typed_values(&self) -> &'static [(&'static str, ValueKind)] {
        &[
            ("/prometheus/prometheusSpec/replicas", ValueKind::Integer),
            ("/prometheus/prometheusSpec/resources", ValueKind::Object),
            ("/prometheus/prometheusSpec/retention", ValueKind::String),
            (
                "/alertmanager/alertmanagerSpec/replicas",
                ValueKind::Integer,
            ),
            ("/grafana/replicas", ValueKind::Integer),
            ("/grafana/resources", ValueKind::Object),
            ("/grafana/persistence", ValueKind::Object),
        ]
    }

    fn validate_more(&self, _common: &Common, v: &mut Validation) {
        for (app, host) in &self.hostnames {
            if !APPS.contains(&app.as_str()) {
                v.error(
                    format!("hostnames.{app}"),
                    format!("`{app}` is not an app of this module"),
                    "set the hostname of `grafana`, `prometheus` or `alertmanager`",
                );
            }
            v.dns_subdomain(&format!("hostnames.{app}"), host);
        }
        self.prometheus_storage.validate(v, "prometheus_storage");
        self.alertmanager_storage
            .validate(v, "alertmanager_storage");
        self.grafana_storage.validate(v, "grafana_storage");
        let digits = self
            .retention
            .trim_end_matches(['s', 'm', 'h', 'd', 'w', 'y']);
        if digits.is_empty()
            || digits.len() == self.retention.len()
            || !digits.chars().all(|c| c.is_ascii_digit())
        {
            v.error(
                "retention",
                format!("`{}` is not a Prometheus duration", self.retention),
                "use a number with a unit, like `15d` or `12h`",
            );
        }
        if self.prometheus_replicas == 0 || self.alertmanager_replicas == 0 {
            v.error(
                "replicas",
                "is 0",
                "run at least one replica of Prometheus and Alertmanager",
            );
        }
    }

    fn generated_secrets(&self, common: &Common, _env: &Env) -> Vec<GeneratedSecret> {
        let mut g = vec![GeneratedSecret {
            name: Self::grafana_admin(&common.id),
            namespace: common.namespace.clone(),
            keys: vec!["admin-password".into()],
        }];
        if self.oidc.is_some() {
            for app in &APPS[1..] {
                g.push(GeneratedSecret {
                    name: Self::proxy_secret(&common.id, app),
                    namespace: common.namespace.clone(),
                    keys: vec!["cookie-secret".into()],
                });
            }
        }
        g
    }

    fn render(
        &self,
        common: &Common,
        ctx: &Context,
        env: &Env,
        secrets: &Secrets,
    ) -> Result<Rendered<MonitoringStack>> {
        let ing = self.exposure.resolve(ctx)?;
        let ns = &common.namespace;
        let release = &common.release_name;
        let id = &common.id;
        let oidc: Option<Vec<Oidc>> = match &self.oidc {
            Some(inputs) => Some(
                inputs
                    .iter()
                    .map(|i| ctx.get(i))
                    .collect::<Result<_, _>>()?,
            ),
            None => None,
        };
        let class = match &self.storage_class {
            Some(c) => Some(ctx.get(c)?.name),
            None => None,
        };
        let class = class.as_deref();
        let grafana_host = env.host("grafana", self.hostnames.get("grafana").map(String::as_str));
        let prometheus_url = format!("http://{release}-prometheus.{ns}.svc:9090");
        let alertmanager_url = format!("http://{release}-alertmanager.{ns}.svc:9093");
        let defaults = json!({
            "fullnameOverride": release,
            "crds": {"enabled": env.monitors.is_none()},
            "grafana": self.grafana_values(id, &ing, &grafana_host, oidc.as_ref().map(|o| &o[0]), class),
            "prometheus": {"prometheusSpec": {
                "replicas": self.prometheus_replicas,
                "retention": self.retention,
                "resources": self.prometheus_resources.to_value(),
                "serviceMonitorSelectorNilUsesHelmValues": false,
                "podMonitorSelectorNilUsesHelmValues": false,
                "ruleSelectorNilUsesHelmValues": false,
                "probeSelectorNilUsesHelmValues": false,
                "storageSpec": self.prometheus_storage.claim_template(class),
            }},
            "alertmanager": {"alertmanagerSpec": {
                "replicas": self.alertmanager_replicas,
                "storage": self.alertmanager_storage.claim_template(class),
            }},
        });
        let values = common.values(env, defaults, |crds| json!({"commonLabels": crds.labels}));

        let admin_password = secrets
            .get(&Self::grafana_admin(id), "admin-password")
            .clone();
        // secrets first, so that the pods the Application creates find them
        let mut objects = common.chart_objects(env, values);
        let application = objects
            .pop()
            .expect("chart_objects ends with the Application");
        objects.push(env.secret(
            &Self::grafana_admin(id),
            ns,
            &[],
            [
                ("admin-user", "admin"),
                ("admin-password", admin_password.expose()),
            ],
        ));
        let mut public = [None, None];
        let mut proxies = Vec::new();
        if let Some(oidc) = &oidc {
            objects.push(env.secret(
                &format!("{id}-grafana-oidc"),
                ns,
                &[],
                [("client-secret", oidc[0].client_secret.expose())],
            ));
            for (i, (app, upstream)) in [
                ("prometheus", &prometheus_url),
                ("alertmanager", &alertmanager_url),
            ]
            .into_iter()
            .enumerate()
            {
                let o = &oidc[i + 1];
                let secret = Self::proxy_secret(id, app);
                objects.push(env.secret(
                    &secret,
                    ns,
                    &[],
                    [
                        ("client-id", o.client_id.as_str()),
                        ("client-secret", o.client_secret.expose()),
                        (
                            "cookie-secret",
                            secrets.get(&secret, "cookie-secret").expose(),
                        ),
                    ],
                ));
                proxies.push(self.proxy_application(common, env, &ing, app, upstream, o));
                public[i] =
                    Some(ing.url(&env.host(app, self.hostnames.get(app).map(String::as_str))));
            }
        }
        objects.push(application);
        objects.extend(proxies);
        let [prometheus_public_url, alertmanager_public_url] = public;
        Ok(Rendered {
            output: MonitoringStack {
                monitoring: Monitoring {
                    namespace: ns.clone(),
                    prometheus_url,
                    alertmanager_url,
                    service_monitor_labels: env
                        .monitors
                        .as_ref()
                        .map(|c| c.labels.clone())
                        .unwrap_or_default(),
                    grafana_datasource_label: "grafana_datasource".into(),
                    grafana_dashboard_label: "grafana_dashboard".into(),
                },
                grafana_url: ing.url(&grafana_host),
                prometheus_public_url,
                alertmanager_public_url,
                grafana_admin_password: admin_password,
            },
            objects,
        })
    }
}
