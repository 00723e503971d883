//! Loki and its log shipper: the `loki` chart in single-binary mode and the `promtail` chart, both
//! from <https://grafana.github.io/helm-charts>.
//!
//! # Inputs
//! - the cluster and Argo CD, in [`Loki::new`];
//! - optionally monitoring ([`Loki::monitoring`]): a Grafana datasource ConfigMap is then
//!   created in the monitoring namespace, with Grafana's datasource label;
//! - optionally the ServiceMonitor CRDs ([`Loki::service_monitors`]).
//!
//! # Outputs
//! [`Logs`]: the namespace and Loki's in-cluster URL.
//!
//! # Defaults
//! Chart `loki` [`CHART_VERSION`] in `SingleBinary` mode (1 replica, filesystem storage on a
//! 10Gi volume, TSDB schema v13, no auth, caches, canary, gateway and MinIO off), chart
//! `promtail` [`PROMTAIL_CHART_VERSION`] on every node pushing to it, namespace `loki`.

use devops_stack_core::interfaces::{ArgoCdTarget, ClusterRef, Monitoring};
use devops_stack_core::{Context, Input, Needs, Validation};
use serde::Serialize;
use serde_json::json;

use crate::common::{
    ChartSource, Common, Component, Env, Rendered, Secrets, ValueKind, common_setters,
    component_module,
};
use crate::error::Result;
use crate::kube_prometheus_stack::Persistence;

/// The pinned version of the `loki` chart.
pub const CHART_VERSION: &str = "6.37.0";
/// The pinned version of the `promtail` chart.
pub const PROMTAIL_CHART_VERSION: &str = "6.17.0";
/// Grafana's Helm repository.
pub const GRAFANA_CHARTS: &str = "https://grafana.github.io/helm-charts";

/// What Loki outputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Logs {
    /// Loki's namespace.
    pub namespace: String,
    /// Loki's in-cluster URL (push at `/loki/api/v1/push`).
    pub url: String,
}

/// Deploys Loki and Promtail.
#[derive(Debug, Clone)]
pub struct Loki {
    common: Common,
    monitoring: Option<Input<Monitoring>>,
    storage: Persistence,
    retention: String,
    resources: crate::Resources,
}

impl Loki {
    /// Loki on `cluster`, deployed by `argocd`, with the id `loki`.
    pub fn new(
        cluster: impl Into<Input<ClusterRef>>,
        argocd: impl Into<Input<ArgoCdTarget>>,
    ) -> Self {
        Loki {
            common: Common::new(
                "loki",
                cluster.into(),
                argocd.into(),
                ChartSource::new(GRAFANA_CHARTS, "loki", CHART_VERSION),
                "loki",
            ),
            monitoring: None,
            storage: Persistence::new("10Gi"),
            retention: "744h".into(),
            resources: crate::Resources::small(256),
        }
    }

    /// Adds Loki as a Grafana datasource of this monitoring.
    #[must_use]
    pub fn monitoring(mut self, monitoring: impl Into<Input<Monitoring>>) -> Self {
        self.monitoring = Some(monitoring.into());
        self
    }

    /// Loki's volume (default 10Gi in the default storage class).
    #[must_use]
    pub fn storage(mut self, p: Persistence) -> Self {
        self.storage = p;
        self
    }

    /// How long logs are kept (default `744h`, 31 days).
    #[must_use]
    pub fn retention(mut self, retention: impl Into<String>) -> Self {
        self.retention = retention.into();
        self
    }

    /// Loki's compute resources.
    #[must_use]
    pub fn resources(mut self, resources: crate::Resources) -> Self {
        self.resources = resources;
        self
    }
}

common_setters!(Loki);
component_module!(Loki, Logs);

impl Component for Loki {
    type Output = Logs;
    const KIND: &'static str = "loki";

    fn common(&self) -> &Common {
        &self.common
    }

    fn needs_more(&self, n: &mut Needs) {
        n.add(&self.monitoring);
    }

    fn typed_values(&self) -> &'static [(&'static str, ValueKind)] {
        &[
            ("/singleBinary/replicas", ValueKind::Integer),
            ("/singleBinary/resources", ValueKind::Object),
            ("/singleBinary/persistence", ValueKind::Object),
            ("/loki/auth_enabled", ValueKind::Bool),
        ]
    }

    fn validate_more(&self, v: &mut Validation) {
        self.storage.validate(v, "storage");
        if !self.retention.ends_with('h')
            || self.retention[..self.retention.len() - 1]
                .parse::<u32>()
                .is_err()
        {
            v.error(
                "retention",
                format!("`{}` is not a number of hours", self.retention),
                "give the retention in hours, like `744h`",
            );
        }
    }

    fn render(&self, ctx: &Context, env: &Env, _secrets: &Secrets) -> Result<Rendered<Logs>> {
        let ns = &self.common.namespace;
        let release = &self.common.release_name;
        let url = format!("http://{release}.{ns}.svc:3100");
        let mut persistence = json!({"enabled": true, "size": self.storage.size});
        if let Some(c) = &self.storage.storage_class {
            persistence["storageClass"] = c.clone().into();
        }
        let defaults = json!({
            "deploymentMode": "SingleBinary",
            "loki": {
                "auth_enabled": false,
                "commonConfig": {"replication_factor": 1},
                "storage": {"type": "filesystem"},
                "schemaConfig": {"configs": [{
                    "from": "2024-04-01",
                    "store": "tsdb",
                    "object_store": "filesystem",
                    "schema": "v13",
                    "index": {"prefix": "loki_index_", "period": "24h"},
                }]},
                "limits_config": {"retention_period": self.retention},
                "compactor": {"retention_enabled": true, "delete_request_store": "filesystem"},
            },
            "singleBinary": {"replicas": 1, "persistence": persistence, "resources": self.resources.to_value()},
            "read": {"replicas": 0},
            "write": {"replicas": 0},
            "backend": {"replicas": 0},
            "gateway": {"enabled": false},
            "chunksCache": {"enabled": false},
            "resultsCache": {"enabled": false},
            "lokiCanary": {"enabled": false},
            "test": {"enabled": false},
            "minio": {"enabled": false},
        });
        let values = self.common.values(env, defaults, |crds| {
            json!({"monitoring": {"serviceMonitor": {"enabled": true, "labels": crds.labels}}})
        });
        let mut objects = self.common.chart_objects(env, values);

        let mut promtail =
            json!({"config": {"clients": [{"url": format!("{url}/loki/api/v1/push")}]}});
        if let Some(crds) = &env.monitors {
            promtail["serviceMonitor"] = json!({"enabled": true, "labels": crds.labels});
        }
        objects.push(self.common.application_of(
            env,
            &format!("{}-promtail", self.common.id),
            &ChartSource::new(GRAFANA_CHARTS, "promtail", PROMTAIL_CHART_VERSION),
            "promtail",
            promtail,
        ));

        if let Some(m) = &self.monitoring {
            let m = ctx.get(m)?;
            let datasource = format!(
                "apiVersion: 1\ndatasources:\n  - name: Loki\n    type: loki\n    uid: loki\n    access: proxy\n    url: {url}\n"
            );
            objects.push(env.config_map(
                &format!("{}-datasource", self.common.id),
                &m.namespace,
                &[(m.grafana_datasource_label.as_str(), "1")],
                json!({"loki-datasource.yaml": datasource}),
            ));
        }
        Ok(Rendered {
            output: Logs {
                namespace: ns.clone(),
                url,
            },
            objects,
        })
    }
}
