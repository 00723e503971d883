//! metrics-server, the resource metrics API (`kubectl top`, HorizontalPodAutoscalers), from the
//! `metrics-server` chart of <https://kubernetes-sigs.github.io/metrics-server/>.
//!
//! # Inputs
//! - the cluster and Argo CD, in [`MetricsServer::new`];
//! - optionally the ServiceMonitor CRDs ([`MetricsServer::service_monitors`]).
//!
//! # Outputs
//! [`ResourceMetrics`]: the namespace and the APIService it serves.
//!
//! # Defaults
//! Chart `metrics-server` [`CHART_VERSION`], namespace `kube-system` (never created nor deleted
//! by the module), 2 replicas with a PodDisruptionBudget, 100m CPU / 200Mi memory requested;
//! kubelet certificates verified (turn off with [`MetricsServer::kubelet_insecure_tls`] on kind
//! and other clusters with self-signed kubelet certificates).

use devops_stack_core::interfaces::{ArgoCdTarget, ClusterRef};
use devops_stack_core::{Context, Input, Validation};
use serde::Serialize;
use serde_json::json;

use crate::common::{
    ChartSource, Common, Component, Env, Rendered, Secrets, Sizing, ValueKind, common_setters,
    component_module, sizing_setters,
};
use crate::error::Result;

/// The pinned chart version.
pub const CHART_VERSION: &str = crate::pins::METRICS_SERVER.version;
/// The chart's Helm repository.
pub const CHART_REPOSITORY: &str = crate::pins::METRICS_SERVER.repository;

/// What metrics-server outputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourceMetrics {
    /// Its namespace.
    pub namespace: String,
    /// The APIService it serves.
    pub api_service: String,
}

/// Deploys metrics-server.
#[derive(Debug, Clone)]
pub struct MetricsServer {
    common: Common,
    sizing: Sizing,
    kubelet_insecure_tls: bool,
}

impl MetricsServer {
    /// metrics-server on `cluster`, deployed by `argocd`, with the id `metrics-server`.
    pub fn new(
        cluster: impl Into<Input<ClusterRef>>,
        argocd: impl Into<Input<ArgoCdTarget>>,
    ) -> Self {
        MetricsServer {
            common: Common::new(
                "metrics-server",
                cluster.into(),
                argocd.into(),
                ChartSource::new(CHART_REPOSITORY, "metrics-server", CHART_VERSION),
                "kube-system",
            ),
            sizing: Sizing::new(
                2,
                crate::Resources::new()
                    .request("cpu", "100m")
                    .request("memory", "200Mi"),
            ),
            kubelet_insecure_tls: false,
        }
    }

    /// Skip verifying kubelet certificates (kind, k3d; default false).
    #[must_use]
    pub fn kubelet_insecure_tls(mut self, on: bool) -> Self {
        self.kubelet_insecure_tls = on;
        self
    }
}

common_setters!(MetricsServer);
sizing_setters!(MetricsServer);
component_module!(MetricsServer, ResourceMetrics);

impl Component for MetricsServer {
    type Output = ResourceMetrics;
    const KIND: &'static str = "metrics-server";

    fn common(&self) -> &Common {
        &self.common
    }

    fn typed_values(&self) -> &'static [(&'static str, ValueKind)] {
        &[
            ("/replicas", ValueKind::Integer),
            ("/resources", ValueKind::Object),
        ]
    }

    fn validate_more(&self, v: &mut Validation) {
        self.sizing.validate(v);
    }

    fn render(
        &self,
        _ctx: &Context,
        env: &Env,
        _secrets: &Secrets,
    ) -> Result<Rendered<ResourceMetrics>> {
        let args: Vec<&str> = if self.kubelet_insecure_tls {
            vec!["--kubelet-insecure-tls"]
        } else {
            vec![]
        };
        let defaults = json!({
            "replicas": self.sizing.replicas,
            "resources": self.sizing.resources.to_value(),
            "podDisruptionBudget": {"enabled": self.sizing.replicas > 1, "minAvailable": 1},
            "args": args,
        });
        let values = self.common.values(env, defaults, |crds| {
            json!({"metrics": {"enabled": true}, "serviceMonitor": {"enabled": true, "additionalLabels": crds.labels}})
        });
        Ok(Rendered {
            output: ResourceMetrics {
                namespace: self.common.namespace.clone(),
                api_service: "v1beta1.metrics.k8s.io".into(),
            },
            objects: self.common.chart_objects(env, values),
        })
    }
}
