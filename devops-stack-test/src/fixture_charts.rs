//! Fixture Helm charts standing in for the upstream charts the modules pin, published into the
//! test environment's chart repository, so that a real Argo CD renders them (with Helm, and with
//! the values the modules give) when no upstream chart sources are at hand.
//!
//! Each fixture has the pin's name, version and appVersion, and renders what Argo CD's health
//! checks can judge on a kwok cluster: a Deployment (kwok makes its pods Ready), a Service, the
//! chart's `extraObjects` (cert-manager's ClusterIssuers come that way) and, for the charts that
//! ship CRDs, minimal CRDs of the same names. `argo-cd` renders what Argo CD's own processes read
//! (`argocd-cm`, `argocd-rbac-cm`, `argocd-cmd-params-cm` from `configs.*`, `argocd-secret` unless
//! `configs.secret.createSecret` is false, the CRDs of the pinned version) and the Deployments and
//! StatefulSet named as the upstream chart names them. `traefik` carries a `values.schema.json`
//! (a small part of upstream's), so that schema refusals can be tested.

use std::path::Path;
use std::process::Command;

use devops_stack_modules::pins::{PINS, Pin};

/// A chart's files, by path inside the chart.
struct Fixture {
    pin: Pin,
    files: Vec<(String, String)>,
}

const WORKLOAD: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-{{ .Chart.Name }}
  labels:
    app.kubernetes.io/name: {{ .Chart.Name }}
    app.kubernetes.io/instance: {{ .Release.Name }}
spec:
  replicas: 1
  selector:
    matchLabels:
      app.kubernetes.io/name: {{ .Chart.Name }}
      app.kubernetes.io/instance: {{ .Release.Name }}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: {{ .Chart.Name }}
        app.kubernetes.io/instance: {{ .Release.Name }}
    spec:
      containers:
      - name: main
        image: registry.invalid/{{ .Chart.Name }}:{{ .Chart.AppVersion }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ .Release.Name }}-{{ .Chart.Name }}
  labels:
    app.kubernetes.io/name: {{ .Chart.Name }}
    app.kubernetes.io/instance: {{ .Release.Name }}
spec:
  type: {{ (.Values.service).type | default "ClusterIP" }}
  selector:
    app.kubernetes.io/name: {{ .Chart.Name }}
    app.kubernetes.io/instance: {{ .Release.Name }}
  ports:
  - name: http
    port: 80
    targetPort: 8080
"#;

const EXTRA_OBJECTS: &str = r#"{{- range .Values.extraObjects }}
---
{{ if typeIs "string" . }}{{ tpl . $ }}{{ else }}{{ tpl (toYaml .) $ }}{{ end }}
{{- end }}
"#;

/// A CRD that keeps whatever it is given.
fn crd(group: &str, kind: &str, plural: &str, scope: &str) -> String {
    format!(
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: {plural}.{group}\n\
         spec:\n  group: {group}\n  scope: {scope}\n  names:\n    kind: {kind}\n    plural: {plural}\n    singular: {singular}\n\
         \x20   listKind: {kind}List\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    subresources:\n      status: {{}}\n\
         \x20   schema:\n      openAPIV3Schema:\n        type: object\n        x-kubernetes-preserve-unknown-fields: true\n",
        singular = kind.to_lowercase(),
    )
}

const ARGOCD_CONFIGS: &str = r#"{{- range $name, $key := dict "argocd-cm" "cm" "argocd-rbac-cm" "rbac" "argocd-cmd-params-cm" "params" }}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ $name }}
  labels:
    app.kubernetes.io/part-of: argocd
    app.kubernetes.io/instance: {{ $.Release.Name }}
data:
{{- range $k, $v := (index $.Values.configs $key) }}
{{- if and (ne $k "create") (ne $k "annotations") }}
  {{ $k }}: {{ $v | toString | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- if ((.Values.configs).secret).createSecret }}
---
apiVersion: v1
kind: Secret
metadata:
  name: argocd-secret
  labels:
    app.kubernetes.io/part-of: argocd
    app.kubernetes.io/instance: {{ .Release.Name }}
type: Opaque
{{- end }}
{{- range $component := list "server" "repo-server" "applicationset-controller" "redis" }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $.Release.Name }}-{{ $component }}
  labels:
    app.kubernetes.io/part-of: argocd
    app.kubernetes.io/name: argocd-{{ $component }}
    app.kubernetes.io/instance: {{ $.Release.Name }}
spec:
  replicas: 1
  selector:
    matchLabels:
      app.kubernetes.io/name: argocd-{{ $component }}
      app.kubernetes.io/instance: {{ $.Release.Name }}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: argocd-{{ $component }}
        app.kubernetes.io/instance: {{ $.Release.Name }}
    spec:
      containers:
      - name: {{ $component }}
        image: quay.io/argoproj/argocd:{{ $.Values.global.image.tag | default $.Chart.AppVersion }}
{{- end }}
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {{ .Release.Name }}-application-controller
  labels:
    app.kubernetes.io/part-of: argocd
    app.kubernetes.io/name: argocd-application-controller
    app.kubernetes.io/instance: {{ .Release.Name }}
spec:
  replicas: 1
  serviceName: {{ .Release.Name }}-application-controller
  selector:
    matchLabels:
      app.kubernetes.io/name: argocd-application-controller
      app.kubernetes.io/instance: {{ .Release.Name }}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: argocd-application-controller
        app.kubernetes.io/instance: {{ .Release.Name }}
    spec:
      containers:
      - name: application-controller
        image: quay.io/argoproj/argocd:{{ .Values.global.image.tag | default .Chart.AppVersion }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ .Release.Name }}-server
  labels:
    app.kubernetes.io/part-of: argocd
    app.kubernetes.io/instance: {{ .Release.Name }}
spec:
  selector:
    app.kubernetes.io/name: argocd-server
    app.kubernetes.io/instance: {{ .Release.Name }}
  ports:
  - name: http
    port: 80
    targetPort: 8080
"#;

/// The chart's defaults the fixture keeps: its `argocd-cm` ignores status-only updates of every
/// resource, as upstream's does (Argo CD then refreshes an Application for them only when it
/// sees a health change).
const ARGOCD_VALUES: &str = "global:\n  image:\n    tag: \"\"\nconfigs:\n  cm:\n    resource.customizations.ignoreResourceUpdates.all: |\n      jsonPointers:\n        - /status\n  rbac: {}\n  params: {}\n  secret:\n    createSecret: true\n";

/// Part of the schema of Traefik's chart (41.3.0): typed keys the module sets, and the log
/// levels it accepts.
const TRAEFIK_SCHEMA: &str = r#"{
  "$schema": "http://json-schema.org/draft-07/schema#",
  "type": "object",
  "properties": {
    "deployment": {
      "type": "object",
      "properties": {"replicas": {"type": ["integer", "null"]}, "kind": {"type": "string"}}
    },
    "service": {"type": "object", "properties": {"type": {"type": "string"}}},
    "log": {
      "type": "object",
      "properties": {"level": {"type": "string", "enum": ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "PANIC"]}}
    }
  }
}
"#;

fn fixture(pin: Pin, crd_dir: &Path) -> Fixture {
    let mut files = vec![(
        "Chart.yaml".to_owned(),
        format!(
            "apiVersion: v2\nname: {}\nversion: {}\nappVersion: \"{}\"\ndescription: devops-stack test fixture of {}\n",
            pin.chart, pin.version, pin.app_version, pin.chart
        ),
    )];
    let mut values = String::from("extraObjects: []\n");
    match pin.chart {
        "argo-cd" => {
            files.push(("templates/argocd.yaml".into(), ARGOCD_CONFIGS.into()));
            values.push_str(ARGOCD_VALUES);
            for entry in std::fs::read_dir(crd_dir).expect("Argo CD's CRDs") {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                files.push((
                    format!("crds/{name}"),
                    std::fs::read_to_string(&path).unwrap(),
                ));
            }
        }
        chart => {
            files.push(("templates/workload.yaml".into(), WORKLOAD.into()));
            let crds: &[(&str, &str, &str, &str)] = match chart {
                "cert-manager" => &[
                    (
                        "cert-manager.io",
                        "ClusterIssuer",
                        "clusterissuers",
                        "Cluster",
                    ),
                    ("cert-manager.io", "Issuer", "issuers", "Namespaced"),
                    (
                        "cert-manager.io",
                        "Certificate",
                        "certificates",
                        "Namespaced",
                    ),
                ],
                "prometheus-operator-crds" => &[
                    (
                        "monitoring.coreos.com",
                        "ServiceMonitor",
                        "servicemonitors",
                        "Namespaced",
                    ),
                    (
                        "monitoring.coreos.com",
                        "PodMonitor",
                        "podmonitors",
                        "Namespaced",
                    ),
                    (
                        "monitoring.coreos.com",
                        "PrometheusRule",
                        "prometheusrules",
                        "Namespaced",
                    ),
                ],
                _ => &[],
            };
            for (group, kind, plural, scope) in crds {
                files.push((
                    format!("crds/{plural}.yaml"),
                    crd(group, kind, plural, scope),
                ));
            }
            if chart == "traefik" {
                files.push(("values.schema.json".into(), TRAEFIK_SCHEMA.into()));
                values.push_str("service:\n  type: LoadBalancer\n");
            }
        }
    }
    files.push(("templates/extra-objects.yaml".into(), EXTRA_OBJECTS.into()));
    files.push(("values.yaml".into(), values));
    Fixture { pin, files }
}

/// Publishes a fixture of every pin into `root/<sub>-<content hash>` (served at
/// `repo/<sub>-<content hash>`) with `helm package` and `helm repo index`, and returns the
/// repository's URL. The hash keeps a changed fixture from being served under a URL and version
/// Argo CD's repo-server has cached.
pub fn publish(helm: &Path, crd_dir: &Path, root: &Path, repo: &str, sub: &str) -> String {
    use std::hash::{Hash, Hasher};
    let fixtures: Vec<Fixture> = PINS.iter().map(|p| fixture(*p, crd_dir)).collect();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for f in &fixtures {
        f.files.hash(&mut hasher);
    }
    let sub = format!("{sub}-{:016x}", hasher.finish());
    let out = root.join(&sub);
    std::fs::create_dir_all(&out).unwrap();
    let work = std::env::temp_dir().join(format!("fixture-charts-{sub}"));
    for f in fixtures {
        let dir = work.join(f.pin.chart);
        for (path, text) in &f.files {
            let p = dir.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        run(
            helm,
            &[
                "package",
                dir.to_str().unwrap(),
                "-d",
                out.to_str().unwrap(),
            ],
        );
    }
    let url = format!("{}/{sub}", repo.trim_end_matches('/'));
    run(
        helm,
        &["repo", "index", out.to_str().unwrap(), "--url", &url],
    );
    let _ = std::fs::remove_dir_all(&work);
    url
}

fn run(helm: &Path, args: &[&str]) {
    let out = Command::new(helm).args(args).output().expect("helm runs");
    assert!(
        out.status.success(),
        "helm {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
