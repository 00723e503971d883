//! The README's table of pinned versions says what `PINS` says, and the modules deploy them.

use devops_stack_modules::pins::{PINS, pin};

/// The rows between the README's `pins:begin` and `pins:end` markers, split into cells.
fn readme_rows() -> Vec<Vec<String>> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("the workspace README");
    let start = readme
        .find("<!-- pins:begin -->")
        .expect("pins:begin marker");
    let end = readme.find("<!-- pins:end -->").expect("pins:end marker");
    readme[start..end]
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| {
                    let c = c.trim().trim_matches('`');
                    // Links are written `<https://...>` (rustdoc refuses bare URLs).
                    c.strip_prefix('<')
                        .and_then(|c| c.strip_suffix('>'))
                        .unwrap_or(c)
                        .to_owned()
                })
                .collect()
        })
        .collect()
}

#[test]
fn the_readme_table_lists_every_pin_as_pins_does() {
    let rows = readme_rows();
    assert_eq!(rows.len(), PINS.len(), "one README row per pin");
    for (row, p) in rows.iter().zip(PINS) {
        assert_eq!(row[0], p.chart);
        assert_eq!(row[1], p.version, "{}", p.chart);
        assert!(
            row[2].ends_with(&format!(" {}", p.deployed())),
            "{}: README says `{}`, the pin `{}`",
            p.chart,
            row[2],
            p.deployed()
        );
        assert_eq!(row[3], p.released, "{}", p.chart);
        assert_eq!(row[4], p.repository, "{}", p.chart);
    }
}

#[test]
fn modules_default_to_their_pins() {
    use devops_stack_modules::*;
    assert_eq!(argocd::CHART_VERSION, pin("argo-cd").version);
    assert!(argocd::manifests_url(argocd::APP_VERSION).contains("/v3.4.14/"));
    assert_eq!(cert_manager::CHART_VERSION, pin("cert-manager").version);
    assert_eq!(traefik::CHART_VERSION, pin("traefik").version);
    assert_eq!(ingress_nginx::CHART_VERSION, pin("ingress-nginx").version);
    assert_eq!(
        kube_prometheus_stack::CHART_VERSION,
        pin("kube-prometheus-stack").version
    );
    assert_eq!(
        kube_prometheus_stack::CRDS_CHART_VERSION,
        pin("prometheus-operator-crds").version
    );
    assert_eq!(
        kube_prometheus_stack::OAUTH2_PROXY_CHART_VERSION,
        pin("oauth2-proxy").version
    );
    assert_eq!(keycloak::CHART_VERSION, pin("keycloakx").version);
    assert_eq!(loki::CHART_VERSION, pin("loki").version);
    assert_eq!(loki::ALLOY_CHART_VERSION, pin("alloy").version);
    assert_eq!(metrics_server::CHART_VERSION, pin("metrics-server").version);
    assert_eq!(ebs_csi::CHART_VERSION, pin("aws-ebs-csi-driver").version);
}

/// Versions that were pinned before and must not be mentioned as current anywhere.
const RETIRED: &[&str] = &[
    "7.7.14", "2.13.3", "v1.18.2", "6.17.0", "6.37.0", "37.1.1", "79.5.0", "24.0.2", "4.13.0",
    "3.13.0", "7.1.7", "7.7.1", "promtail", "Promtail",
];

#[test]
fn docs_mention_no_retired_version() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    for file in ["README.md", "BENCHMARKS.md"] {
        let text = std::fs::read_to_string(format!("{root}/{file}")).unwrap();
        for old in RETIRED {
            assert!(!text.contains(old), "{file} mentions `{old}`");
        }
    }
}
