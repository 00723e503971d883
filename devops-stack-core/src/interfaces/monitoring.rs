use serde::Serialize;

/// What modules need to plug into the stack's monitoring.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Monitoring {
    /// The monitoring namespace (Grafana datasources and dashboards are ConfigMaps there).
    pub namespace: String,
    /// Prometheus's in-cluster URL.
    pub prometheus_url: String,
    /// Alertmanager's in-cluster URL.
    pub alertmanager_url: String,
    /// Labels a `ServiceMonitor` needs to be picked up by this Prometheus.
    pub service_monitor_labels: std::collections::BTreeMap<String, String>,
    /// The label that makes Grafana's sidecar load a datasource ConfigMap.
    pub grafana_datasource_label: String,
    /// The label that makes Grafana's sidecar load a dashboard ConfigMap.
    pub grafana_dashboard_label: String,
}

/// A module output that provides monitoring (kube-prometheus-stack).
pub trait MonitoringProvider {
    /// How to plug in.
    fn monitoring(&self) -> Monitoring;
}
