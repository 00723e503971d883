//! An in-house Helm chart wrapped as a typed module in a few lines ([`HelmChart`]), with what
//! the built-in components get: a pinned, overridable chart version; typed settings
//! deep-merged with value overrides; the Argo CD Application with its sync settings; ingress
//! and TLS wiring through handles; waits, plan, diff and ownership from the engine.
//!
//! ```
//! use devops_stack_core::Stack;
//! use devops_stack_core::clusters::Kind;
//! use devops_stack_core::interfaces::IssuerKind;
//! use devops_stack_modules::chart::HelmChart;
//! use devops_stack_modules::{ArgoCd, CertManager, ChartSource, Traefik};
//! use serde::Serialize;
//!
//! /// The settings of the in-house chart, as its `values.yaml` names them.
//! #[derive(Serialize, Clone)]
//! #[serde(rename_all = "camelCase")]
//! struct Billing { replica_count: u32, currency: String }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let mut stack = Stack::new("shop");
//! let cluster = stack.add(Kind::new("shop"));
//! let argocd = stack.add(ArgoCd::new(&cluster));
//! let traefik = stack.add(Traefik::new(&cluster, &argocd));
//! let certs = stack.add(CertManager::new(&cluster, &argocd));
//! let chart = ChartSource::new("https://charts.example.com", "billing", "1.4.2");
//! let settings = Billing { replica_count: 2, currency: "EUR".into() };
//! let billing = stack.add(
//!     HelmChart::new("billing", &cluster, &argocd, chart, settings)
//!         .publish(&traefik, "billing", certs.issuer(IssuerKind::SelfSignedCa)),
//! );
//! let plan = stack.build()?.plan().await?;
//! let billing = plan.module("billing").unwrap();
//! assert_eq!(billing.output["url"], "https://billing.apps.shop.127-0-0-1.nip.io");
//! # Ok::<_, devops_stack_core::Error>(())
//! # }).unwrap();
//! ```

use devops_stack_core::interfaces::{ArgoCdTarget, ClusterIssuer, ClusterRef, Ingress};
use devops_stack_core::{Context, Input, Needs, Validation};
use serde::Serialize;
use serde_json::{Value, json};

use super::{
    Chart, ChartSource, ChartSpec, Common, Env, Exposure, Rendered, Secrets, merge_values,
};
use crate::error::Result;

/// What a chart module outputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChartRelease {
    /// The namespace it is deployed to.
    pub namespace: String,
    /// The Helm release name.
    pub release: String,
    /// The Argo CD Application that deploys it.
    pub application: String,
    /// Where it is published, when it is.
    pub url: Option<String>,
}

/// Where and how the chart is published.
#[derive(Debug, Clone)]
struct Publish {
    exposure: Exposure,
    app: String,
    key: String,
}

/// An in-house Helm chart as a typed module: `settings` (any `Serialize` type, as the chart's
/// values name them) are the chart's values, deep-merged under [`values`](Chart::values)
/// overrides. The module id names its namespace, release and Argo CD Application.
///
/// Its own setters are below; the shared ones (`namespace`, `values`, `sync`...) are on
/// [`Chart`].
pub type HelmChart<S> = Chart<HelmChartSpec<S>>;

/// The spec of a [`HelmChart`]: its typed settings, and where it is published.
#[derive(Debug, Clone)]
pub struct HelmChartSpec<S> {
    settings: S,
    publish: Option<Publish>,
}

impl<S: Serialize + Clone + Send + Sync + 'static> HelmChart<S> {
    /// `chart` (its repository, name and pinned version) as module `id` on `cluster`,
    /// deployed by `argocd` into the namespace `id` with `settings` as its values.
    pub fn new(
        id: &str,
        cluster: impl Into<Input<ClusterRef>>,
        argocd: impl Into<Input<ArgoCdTarget>>,
        chart: ChartSource,
        settings: S,
    ) -> Self {
        let mut common = Common::new(id, cluster, argocd, chart, id);
        common.release_name = id.to_owned();
        Chart::with_spec(
            common,
            HelmChartSpec {
                settings,
                publish: None,
            },
        )
    }

    /// Publishes the chart through `ingress` at `<app>.<cluster's apps domain>`, with TLS from
    /// `issuer`: the chart's `ingress` values (the layout `helm create` gives: `enabled`,
    /// `className`, `annotations`, `hosts`, `tls`) are filled in.
    #[must_use]
    pub fn publish(
        mut self,
        ingress: impl Into<Input<Ingress>>,
        app: impl Into<String>,
        issuer: impl Into<Input<ClusterIssuer>>,
    ) -> Self {
        let mut exposure = Exposure::new(ingress.into());
        exposure.issuer = Some(issuer.into());
        self.spec.publish = Some(Publish {
            exposure,
            app: app.into(),
            key: "ingress".into(),
        });
        self
    }

    /// The values key the chart reads its ingress settings from (default `ingress`).
    #[must_use]
    pub fn ingress_key(mut self, key: impl Into<String>) -> Self {
        if let Some(p) = &mut self.spec.publish {
            p.key = key.into();
        }
        self
    }
}

impl<S: Serialize + Clone + Send + Sync + 'static> ChartSpec for HelmChartSpec<S> {
    type Output = ChartRelease;
    const KIND: &'static str = "helm-chart";

    fn needs_more(&self, n: &mut Needs) {
        if let Some(p) = &self.publish {
            p.exposure.needs(n);
        }
    }

    fn validate_more(&self, _common: &Common, v: &mut Validation) {
        match serde_json::to_value(&self.settings) {
            Ok(Value::Object(_)) => {}
            Ok(other) => {
                v.error(
                    "settings",
                    format!("serialize to `{other}`, not to an object of Helm values"),
                    "give the settings a struct (or map) type whose fields are the chart's values",
                );
            }
            Err(e) => {
                v.error(
                    "settings",
                    format!("do not serialize: {e}"),
                    "make the settings type serialize to JSON",
                );
            }
        }
        if let Some(p) = &self.publish {
            v.dns_label("publish.app", &p.app);
            if p.key.is_empty() {
                v.error(
                    "ingress_key",
                    "is empty",
                    "name the values key of the chart's ingress settings, like `ingress`",
                );
            }
        }
    }

    fn render(
        &self,
        common: &Common,
        ctx: &Context,
        env: &Env,
        _secrets: &Secrets,
    ) -> Result<Rendered<ChartRelease>> {
        let mut defaults = serde_json::to_value(&self.settings).unwrap_or_else(|_| json!({}));
        let mut url = None;
        if let Some(p) = &self.publish {
            let ingress = p.exposure.resolve(ctx)?;
            let host = env.hostnames.host(&p.app);
            url = Some(ingress.url(&host));
            let block = json!({
                "enabled": true,
                "className": ingress.class_name,
                "annotations": ingress.annotations,
                "hosts": [{"host": host, "paths": [{"path": "/", "pathType": "Prefix"}]}],
                "tls": ingress.tls_list(&p.app, &host),
            });
            merge_values(&mut defaults, &json!({ p.key.clone(): block }));
        }
        let values = common.values(env, defaults, |_| json!({}));
        Ok(Rendered {
            output: ChartRelease {
                namespace: common.namespace.clone(),
                release: common.release_name.clone(),
                application: common.id.clone(),
                url,
            },
            objects: common.chart_objects(env, values),
        })
    }
}
