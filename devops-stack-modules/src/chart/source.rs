//! Where a chart comes from and how Argo CD keeps it in sync: the pinned chart, the automated
//! sync settings, and the names Helm gives a release's objects.

use devops_stack_core::Validation;
use devops_stack_core::argocd::{ApplicationSource, HelmSource};
use serde::Serialize;
use serde_json::Value;

/// A Helm chart at a pinned version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChartSource {
    /// The Helm repository URL (or an OCI registry).
    pub repo_url: String,
    /// The chart's name.
    pub chart: String,
    /// The chart version: semver, with an optional leading `v` (cert-manager's charts have one).
    pub version: String,
}

impl ChartSource {
    /// The chart `chart` of the repository `repo_url` at `version`.
    pub fn new(
        repo_url: impl Into<String>,
        chart: impl Into<String>,
        version: impl Into<String>,
    ) -> Self {
        ChartSource {
            repo_url: repo_url.into(),
            chart: chart.into(),
            version: version.into(),
        }
    }

    pub(crate) fn validate(&self, v: &mut Validation) {
        let version = self.version.strip_prefix('v').unwrap_or(&self.version);
        if let Err(e) = semver::Version::parse(version) {
            v.error(
                "chart_version",
                format!("`{}` is not a semantic version ({e})", self.version),
                format!(
                    "pin an exact chart version of `{}` such as `1.2.3`",
                    self.chart
                ),
            );
        }
        if self.repo_url.is_empty() {
            v.error(
                "chart_repository",
                "is empty",
                "give the Helm repository URL of the chart (or of a mirror)",
            );
        }
    }

    /// An Argo CD source for this chart, with `release` and `values`.
    pub(crate) fn source(&self, release: &str, values: Value) -> ApplicationSource {
        ApplicationSource {
            repo_url: self.repo_url.clone(),
            chart: Some(self.chart.clone()),
            target_revision: Some(self.version.clone()),
            helm: Some(HelmSource {
                release_name: Some(release.to_owned()),
                values_object: Some(values),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// Argo CD's automated sync settings of a module's Applications.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SyncSettings {
    /// Delete resources the chart no longer renders (default true).
    pub prune: bool,
    /// Revert changes made outside Argo CD (default true).
    pub self_heal: bool,
    /// Allow syncing to an empty set of resources (default false).
    pub allow_empty: bool,
}

impl Default for SyncSettings {
    fn default() -> Self {
        SyncSettings {
            prune: true,
            self_heal: true,
            allow_empty: false,
        }
    }
}

/// The name Helm charts give their main objects by default (`<chart>.fullname`): the release
/// name when it contains the chart's name, else `<release>-<chart>`, cut to 63 characters.
pub(crate) fn helm_fullname(release: &str, chart: &str) -> String {
    let name = if release.contains(chart) {
        release.to_owned()
    } else {
        format!("{release}-{chart}")
    };
    name.chars()
        .take(63)
        .collect::<String>()
        .trim_end_matches('-')
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helm_fullname_is_the_charts_default_name() {
        assert_eq!(helm_fullname("traefik", "traefik"), "traefik");
        assert_eq!(helm_fullname("edge-traefik", "traefik"), "edge-traefik");
        assert_eq!(helm_fullname("edge", "traefik"), "edge-traefik");
        assert_eq!(helm_fullname("cm", "cert-manager"), "cm-cert-manager");
        let long = "a".repeat(60);
        assert_eq!(helm_fullname(&long, "traefik").len(), 63);
        assert_eq!(helm_fullname(&"b".repeat(62), "x"), "b".repeat(62));
    }
}
