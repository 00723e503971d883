//! The Prometheus Operator's CRDs as a bootstrap-phase module, which solves the ServiceMonitor
//! chicken-and-egg in the graph.

use std::collections::BTreeMap;

use devops_stack_core::interfaces::{ArgoCdTarget, ClusterRef};
use devops_stack_core::{Context, Input, Phase};
use serde::Serialize;
use serde_json::json;

use crate::chart::{Chart, ChartSource, ChartSpec, Common, Env, Rendered, Secrets};
use crate::error::Result;

/// The pinned version of the `prometheus-operator-crds` chart.
pub const CRDS_CHART_VERSION: &str = crate::pins::PROMETHEUS_OPERATOR_CRDS.version;
/// The Helm repository of the Prometheus community charts.
pub const PROMETHEUS_COMMUNITY: &str = crate::pins::PROMETHEUS_COMMUNITY;

/// The output of [`PrometheusOperatorCrds`]: the monitoring CRDs exist, and ServiceMonitors need
/// these labels to be picked up by the stack's Prometheus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceMonitorCrds {
    /// Labels every ServiceMonitor and PodMonitor of the stack carries.
    pub labels: BTreeMap<String, String>,
}

/// Installs the Prometheus Operator's CRDs (`ServiceMonitor`, `PodMonitor`, `PrometheusRule`...)
/// in the bootstrap phase, from the `prometheus-operator-crds` chart.
///
/// Its own setters are below; the shared ones (`namespace`, `values`, `sync`...) are on
/// [`Chart`].
///
/// # Why a module of its own
/// Modules deployed before monitoring (ingress controllers, cert-manager) cannot create
/// ServiceMonitors until these CRDs exist, and cannot depend on kube-prometheus-stack, which
/// comes after them (Grafana needs the ingress, the OIDC provider...). This module runs first;
/// its handle, given to a module's `service_monitors(..)` setter, makes the edge that guarantees
/// the CRDs are Established (the engine waits for the Application to be synced and healthy)
/// before that module's chart renders its ServiceMonitor, so monitors are on from the first run.
/// [`KubePrometheusStack::service_monitors`](crate::KubePrometheusStack::service_monitors) takes
/// the same handle and then skips its own copy of the CRDs; its Prometheus selects every
/// ServiceMonitor of the cluster, and the stack's carry [`ServiceMonitorCrds::labels`] so that
/// they can be told apart.
///
/// # Inputs
/// The cluster and Argo CD.
///
/// # Outputs
/// [`ServiceMonitorCrds`].
///
/// # Defaults
/// Chart `prometheus-operator-crds` [`CRDS_CHART_VERSION`], id `prometheus-operator-crds`,
/// labels `devops-stack.io/monitoring: "true"`, bootstrap phase, prune off (pruning a CRD
/// deletes every object of its kind).
pub type PrometheusOperatorCrds = Chart<PrometheusOperatorCrdsSpec>;

/// The spec of [`PrometheusOperatorCrds`]: the labels of the stack's ServiceMonitors.
#[derive(Debug, Clone)]
pub struct PrometheusOperatorCrdsSpec {
    labels: BTreeMap<String, String>,
}

impl PrometheusOperatorCrds {
    /// The CRDs on `cluster`, deployed by `argocd`.
    pub fn new(
        cluster: impl Into<Input<ClusterRef>>,
        argocd: impl Into<Input<ArgoCdTarget>>,
    ) -> Self {
        let mut common = Common::new(
            "prometheus-operator-crds",
            cluster,
            argocd,
            ChartSource::new(
                PROMETHEUS_COMMUNITY,
                "prometheus-operator-crds",
                CRDS_CHART_VERSION,
            ),
            "default",
        );
        common.sync.prune = false;
        Chart::with_spec(
            common,
            PrometheusOperatorCrdsSpec {
                labels: BTreeMap::from([(
                    "devops-stack.io/monitoring".to_owned(),
                    "true".to_owned(),
                )]),
            },
        )
    }

    /// Other labels for the stack's ServiceMonitors (replaces the default).
    #[must_use]
    pub fn labels(mut self, labels: BTreeMap<String, String>) -> Self {
        self.spec.labels = labels;
        self
    }
}

impl ChartSpec for PrometheusOperatorCrdsSpec {
    type Output = ServiceMonitorCrds;
    const KIND: &'static str = "prometheus-operator-crds";
    const PHASE: Phase = Phase::Bootstrap;

    fn render(
        &self,
        common: &Common,
        _ctx: &Context,
        env: &Env,
        _secrets: &Secrets,
    ) -> Result<Rendered<ServiceMonitorCrds>> {
        let values = common.values(env, json!({}), |_| json!({}));
        Ok(Rendered {
            output: ServiceMonitorCrds {
                labels: self.labels.clone(),
            },
            objects: common.chart_objects(env, values),
        })
    }
}
