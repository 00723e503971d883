//! Every upstream release the modules deploy by default, in one table: [`PINS`].
//!
//! Each module's default chart comes from here (its `CHART_VERSION` constants are these pins),
//! and the README's table of versions is checked against this one by a test, so a version is
//! changed in one place. A pin records the chart, its Helm repository, the chart version, the
//! version of the software it deploys and the date upstream released that chart version.
//!
//! To move a pin: check the new chart's `values.yaml` for every key the module sets (the
//! snapshots in `tests/snapshots` show them), change the line here and the README's table,
//! and review the snapshot diff.
//!
//! ```
//! use devops_stack_modules::pins::{PINS, pin};
//! assert_eq!(pin("argo-cd").version, devops_stack_modules::argocd::CHART_VERSION);
//! assert!(PINS.iter().all(|p| p.released.len() == "2026-01-01".len()));
//! ```

use crate::chart::ChartSource;

/// An upstream Helm chart at a pinned version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pin {
    /// The chart's name.
    pub chart: &'static str,
    /// The Helm repository serving it.
    pub repository: &'static str,
    /// The chart version (semver; cert-manager's has a leading `v`).
    pub version: &'static str,
    /// The version of the software the chart deploys (its `appVersion`).
    pub app_version: &'static str,
    /// The date upstream released this chart version (`YYYY-MM-DD`).
    pub released: &'static str,
    /// The image tag deployed instead of the chart's `appVersion`, when a newer patch release
    /// of the software is out than the newest chart (set through the chart's own image-tag
    /// value); `None` deploys the `appVersion`.
    pub image_tag: Option<&'static str>,
}

impl Pin {
    /// The version of the software deployed: the image tag when one is pinned, else the
    /// chart's `appVersion`.
    ///
    /// ```
    /// use devops_stack_modules::pins::ARGO_CD;
    /// assert_eq!(ARGO_CD.deployed(), ARGO_CD.image_tag.unwrap_or(ARGO_CD.app_version));
    /// ```
    pub const fn deployed(&self) -> &'static str {
        match self.image_tag {
            Some(tag) => tag,
            None => self.app_version,
        }
    }

    /// The pin as a module's chart source.
    pub fn source(&self) -> ChartSource {
        ChartSource::new(self.repository, self.chart, self.version)
    }
}

/// Argo CD's charts.
pub const ARGO_HELM: &str = "https://argoproj.github.io/argo-helm";
/// Grafana's charts (Alloy).
pub const GRAFANA: &str = "https://grafana.github.io/helm-charts";
/// The community-maintained Grafana charts (Loki for OSS users since March 2026).
pub const GRAFANA_COMMUNITY: &str = "https://grafana-community.github.io/helm-charts";
/// The Prometheus community's charts.
pub const PROMETHEUS_COMMUNITY: &str = "https://prometheus-community.github.io/helm-charts";

/// `argo-cd`: Argo CD (bootstrap and self-managed), at the image of its newest 3.4 patch.
pub const ARGO_CD: Pin = Pin {
    chart: "argo-cd",
    repository: ARGO_HELM,
    version: "10.1.1",
    app_version: "v3.4.4",
    released: "2026-07-02",
    // The newest 3.4 patch (3.4.7 and later carry secret-masking fixes); no newer argo-cd chart
    // than 10.1.1 was released for 3.4, and 3.4 patches change no manifest the chart renders.
    image_tag: Some("v3.4.14"),
};
/// `cert-manager`.
pub const CERT_MANAGER: Pin = Pin {
    chart: "cert-manager",
    repository: "https://charts.jetstack.io",
    version: "v1.21.1",
    app_version: "v1.21.1",
    released: "2026-07-29",
    image_tag: None,
};
/// `traefik`: Traefik Proxy.
pub const TRAEFIK: Pin = Pin {
    chart: "traefik",
    repository: "https://traefik.github.io/charts",
    version: "41.3.0",
    app_version: "v3.7.11",
    released: "2026-08-21",
    image_tag: None,
};
/// `ingress-nginx`: its final release; the project is retired (no releases or security fixes
/// after March 2026).
pub const INGRESS_NGINX: Pin = Pin {
    chart: "ingress-nginx",
    repository: "https://kubernetes.github.io/ingress-nginx",
    version: "4.15.1",
    app_version: "1.15.1",
    released: "2026-03-19",
    image_tag: None,
};
/// `kube-prometheus-stack`: Prometheus Operator, Prometheus, Alertmanager, Grafana.
pub const KUBE_PROMETHEUS_STACK: Pin = Pin {
    chart: "kube-prometheus-stack",
    repository: PROMETHEUS_COMMUNITY,
    version: "88.5.3",
    app_version: "v0.93.1",
    released: "2026-08-21",
    image_tag: None,
};
/// `prometheus-operator-crds`: the monitoring CRDs of the same operator release.
pub const PROMETHEUS_OPERATOR_CRDS: Pin = Pin {
    chart: "prometheus-operator-crds",
    repository: PROMETHEUS_COMMUNITY,
    version: "31.0.1",
    app_version: "v0.93.1",
    released: "2026-08-10",
    image_tag: None,
};
/// `oauth2-proxy`: the OIDC proxy in front of Prometheus and Alertmanager.
pub const OAUTH2_PROXY: Pin = Pin {
    chart: "oauth2-proxy",
    repository: "https://oauth2-proxy.github.io/manifests",
    version: "10.7.0",
    app_version: "7.15.3",
    released: "2026-06-09",
    image_tag: None,
};
/// `keycloakx`: Keycloak (Quarkus).
pub const KEYCLOAKX: Pin = Pin {
    chart: "keycloakx",
    repository: "https://codecentric.github.io/helm-charts",
    version: "7.1.11",
    app_version: "26.5.6",
    released: "2026-04-21",
    image_tag: None,
};
/// `loki`: the community chart (the `grafana` repository's chart is for Enterprise Logs only
/// since 7.0.0).
pub const LOKI: Pin = Pin {
    chart: "loki",
    repository: GRAFANA_COMMUNITY,
    version: "18.11.0",
    app_version: "3.7.6",
    released: "2026-08-20",
    image_tag: None,
};
/// `alloy`: Grafana Alloy, shipping logs to Loki (Promtail's successor).
pub const ALLOY: Pin = Pin {
    chart: "alloy",
    repository: GRAFANA,
    version: "1.11.1",
    app_version: "v1.18.1",
    released: "2026-08-06",
    image_tag: None,
};
/// `metrics-server`.
pub const METRICS_SERVER: Pin = Pin {
    chart: "metrics-server",
    repository: "https://kubernetes-sigs.github.io/metrics-server/",
    version: "3.13.1",
    app_version: "0.8.1",
    released: "2026-06-11",
    image_tag: None,
};
/// `aws-ebs-csi-driver`: the Amazon EBS CSI driver (EKS volumes).
pub const AWS_EBS_CSI_DRIVER: Pin = Pin {
    chart: "aws-ebs-csi-driver",
    repository: "https://kubernetes-sigs.github.io/aws-ebs-csi-driver",
    version: "2.64.0",
    app_version: "1.64.0",
    released: "2026-08-18",
    image_tag: None,
};

/// Every pin, in the README's order.
pub const PINS: &[Pin] = &[
    ARGO_CD,
    CERT_MANAGER,
    TRAEFIK,
    INGRESS_NGINX,
    KUBE_PROMETHEUS_STACK,
    PROMETHEUS_OPERATOR_CRDS,
    OAUTH2_PROXY,
    KEYCLOAKX,
    LOKI,
    ALLOY,
    METRICS_SERVER,
    AWS_EBS_CSI_DRIVER,
];

/// The pin of `chart`.
///
/// # Panics
/// When no pin has that chart name (a programming error: the names are the constants above).
pub fn pin(chart: &str) -> &'static Pin {
    PINS.iter()
        .find(|p| p.chart == chart)
        .unwrap_or_else(|| panic!("no pin for chart `{chart}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pin_is_semver_with_a_release_date_and_a_unique_chart() {
        for p in PINS {
            for (what, v) in [("version", p.version), ("app_version", p.app_version)] {
                let v = v.strip_prefix('v').unwrap_or(v);
                assert!(
                    semver::Version::parse(v).is_ok(),
                    "{} {what} `{v}` is not semver",
                    p.chart
                );
            }
            let date: Vec<&str> = p.released.split('-').collect();
            assert!(
                matches!(date.as_slice(), [y, m, d] if y.len() == 4 && m.len() == 2 && d.len() == 2
                    && [y, m, d].iter().all(|s| s.chars().all(|c| c.is_ascii_digit()))),
                "{}: `{}` is not YYYY-MM-DD",
                p.chart,
                p.released
            );
            assert!(p.repository.starts_with("https://"), "{}", p.chart);
            assert_eq!(PINS.iter().filter(|q| q.chart == p.chart).count(), 1);
        }
    }
}
