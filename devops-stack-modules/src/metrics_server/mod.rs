//! metrics-server, the resource metrics API (`kubectl top`, HorizontalPodAutoscalers), from the
//! `metrics-server` chart of <https://kubernetes-sigs.github.io/metrics-server/>.
//!
//! # Inputs
//! - the cluster and Argo CD, in [`MetricsServer::new`](MetricsServer#method.new);
//! - optionally the ServiceMonitor CRDs ([`MetricsServer::service_monitors`]).
//!
//! # Outputs
//! [`ResourceMetrics`]: the namespace and the APIService it serves.
//!
//! # Defaults
//! Chart `metrics-server` [`CHART_VERSION`], namespace `kube-system` (never created nor deleted by
//! the module), 2 replicas with a PodDisruptionBudget, 100m CPU / 200Mi memory requested; kubelet
//! certificates verified (turn off with
//! [`MetricsServer::kubelet_insecure_tls`](MetricsServer#method.kubelet_insecure_tls) on kind and
//! other clusters with self-signed kubelet certificates).

use devops_stack_core::interfaces::{ArgoCdTarget, ClusterRef};
use devops_stack_core::{Context, Input, Validation};
use serde::Serialize;
use serde_json::json;

use crate::chart::{
    Chart, ChartSource, ChartSpec, Common, Env, Rendered, Secrets, Sizable, Sizing, ValueKind,
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
///
/// Its own setters are below; the shared ones (`namespace`, `values`, `sync`..., and
/// `replicas`, `resources`) are on [`Chart`].
pub type MetricsServer = Chart<MetricsServerSpec>;

/// The spec of [`MetricsServer`]: its sizing and kubelet TLS setting.
#[derive(Debug, Clone)]
pub struct MetricsServerSpec {
    sizing: Sizing,
    kubelet_insecure_tls: bool,
}

impl MetricsServer {
    /// metrics-server on `cluster`, deployed by `argocd`, with the id `metrics-server`.
    pub fn new(
        cluster: impl Into<Input<ClusterRef>>,
        argocd: impl Into<Input<ArgoCdTarget>>,
    ) -> Self {
        Chart::with_spec(
            Common::new(
                "metrics-server",
                cluster,
                argocd,
                ChartSource::new(CHART_REPOSITORY, "metrics-server", CHART_VERSION),
                "kube-system",
            ),
            MetricsServerSpec {
                sizing: Sizing::new(
                    2,
                    crate::Resources::new()
                        .request("cpu", "100m")
                        .request("memory", "200Mi"),
                ),
                kubelet_insecure_tls: false,
            },
        )
    }

    /// Skip verifying kubelet certificates (kind, k3d; default false).
    #[must_use]
    pub fn kubelet_insecure_tls(mut self, on: bool) -> Self {
        self.spec.kubelet_insecure_tls = on;
        self
    }
}

impl Sizable for MetricsServerSpec {
    fn sizing(&mut self) -> &mut Sizing {
        &mut self.sizing
    }
}

impl ChartSpec for MetricsServerSpec {
    type Output = ResourceMetrics;
    const KIND: &'static str = "metrics-server";

    fn typed_values(&self) -> &'static [(&'static str, ValueKind)] {
        &[
            ("/replicas", ValueKind::Integer),
            ("/resources", ValueKind::Object),
        ]
    }

    fn validate_more(&self, _common: &Common, v: &mut Validation) {
        self.sizing.validate(v);
    }

    fn render(
        &self,
        common: &Common,
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
        let values = common.values(env, defaults, |crds| {
            json!({"metrics": {"enabled": true}, "serviceMonitor": {"enabled": true, "additionalLabels": crds.labels}})
        });
        Ok(Rendered {
            output: ResourceMetrics {
                namespace: common.namespace.clone(),
                api_service: "v1beta1.metrics.k8s.io".into(),
            },
            objects: common.chart_objects(env, values),
        })
    }
}
