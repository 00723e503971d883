//! The plain install of Argo CD by the bootstrap: the chart rendered by `helm template`, or the
//! official install manifests configured like it, unless Argo CD already manages itself.

use std::time::Duration;

use devops_stack_core::Context;
use devops_stack_core::k8s::parse_bundle;
use kube::api::Api;
use serde_json::{Value, json};

use super::{ArgoCd, InstallMethod};
use crate::chart::Env;
use crate::error::{Error, Result};

impl ArgoCd {
    /// Whether to install with `helm template` rather than the install manifests.
    async fn use_helm(&self) -> bool {
        match self.spec.install {
            InstallMethod::Helm => true,
            InstallMethod::Manifests => false,
            InstallMethod::Auto => tokio::process::Command::new(&self.spec.helm)
                .arg("version")
                .output()
                .await
                .is_ok_and(|o| o.status.success()),
        }
    }

    /// The objects of a plain install, by `helm template` or from the install manifests.
    pub(super) async fn install_objects(
        &self,
        ctx: &Context,
        env: &Env,
        values: &Value,
    ) -> Result<Vec<Value>> {
        let mut objects = if self.use_helm().await {
            ctx.progress(format!(
                "rendering chart argo-cd {} with helm",
                self.common.chart.version
            ));
            parse_bundle(&self.helm_template(values).await?)?
        } else {
            ctx.progress(format!("fetching {}", self.spec.manifests_url));
            let mut objects = parse_bundle(&fetch(&self.spec.manifests_url).await?)?;
            write_configs(&mut objects, values);
            rebind_subjects(&mut objects, &self.common.namespace);
            objects
        };
        set_namespace(&mut objects, &self.common.namespace);
        objects.insert(0, self.namespace_object(env));
        objects.extend(self.project_object(env));
        Ok(objects)
    }

    /// The chart rendered by `helm template` with `values`.
    async fn helm_template(&self, values: &Value) -> Result<String> {
        use tokio::io::AsyncWriteExt as _;
        let chart = &self.common.chart;
        let command = format!(
            "template {} {} --version {}",
            self.common.release_name, chart.chart, chart.version
        );
        let fail = |reason: String| Error::Helm {
            command: command.clone(),
            reason,
        };
        let mut child = tokio::process::Command::new(&self.spec.helm)
            .args(["template", &self.common.release_name, &chart.chart])
            .args(["--repo", &chart.repo_url, "--version", &chart.version])
            .args([
                "--namespace",
                &self.common.namespace,
                "--include-crds",
                "--values",
                "-",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| fail(e.to_string()))?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        // JSON is YAML: helm reads the values as they are.
        stdin
            .write_all(values.to_string().as_bytes())
            .await
            .map_err(|e| fail(e.to_string()))?;
        drop(stdin);
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| fail(e.to_string()))?;
        if !out.status.success() {
            return Err(fail(String::from_utf8_lossy(&out.stderr).trim().to_owned()));
        }
        String::from_utf8(out.stdout).map_err(|e| fail(format!("output is not UTF-8: {e}")))
    }

    /// Whether the final phase's self-managed Application exists (then the plain install is
    /// not re-applied).
    pub(super) async fn handed_over(&self, client: &kube::Client) -> Result<bool> {
        use devops_stack_core::argocd::Application;
        let api: Api<Application> = Api::namespaced(client.clone(), &self.common.namespace);
        match api.get_opt(&self.common.release_name).await {
            Ok(found) => Ok(found.is_some()),
            // no Application CRD yet: a fresh cluster
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
            Err(e) => Err(Error::kube(
                format!(
                    "reading Application {}/{}",
                    self.common.namespace, self.common.release_name
                ),
                e,
            )),
        }
    }
}

async fn fetch(url: &str) -> Result<String> {
    let fail = |e: reqwest::Error| Error::Fetch {
        url: url.to_owned(),
        reason: e.to_string(),
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(fail)?;
    client
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(fail)?
        .text()
        .await
        .map_err(fail)
}

/// Kinds without a namespace, among those install bundles carry.
const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "PriorityClass",
    "StorageClass",
    "IngressClass",
    "PersistentVolume",
    "APIService",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
];

/// Puts namespaced objects without a namespace into `namespace` (what `kubectl -n` does).
fn set_namespace(objects: &mut [Value], namespace: &str) {
    for o in objects {
        let kind = o["kind"].as_str().unwrap_or_default();
        if CLUSTER_SCOPED.contains(&kind) {
            continue;
        }
        if let Some(meta) = o.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.entry("namespace").or_insert_with(|| namespace.into());
        }
    }
}

/// Points the install manifests' (cluster) role bindings at service accounts in `namespace`:
/// the manifests name the namespace `argocd` in their subjects.
fn rebind_subjects(objects: &mut [Value], namespace: &str) {
    for o in objects {
        if !matches!(
            o["kind"].as_str(),
            Some("ClusterRoleBinding" | "RoleBinding")
        ) {
            continue;
        }
        for subject in o["subjects"].as_array_mut().into_iter().flatten() {
            if subject["kind"] == "ServiceAccount" && subject["namespace"] == "argocd" {
                subject["namespace"] = namespace.into();
            }
        }
    }
}

/// Writes the chart's `configs.cm`, `configs.rbac` and `configs.params` values into the
/// ConfigMaps of the install manifests, so that both install methods configure the same.
fn write_configs(objects: &mut [Value], values: &Value) {
    for (name, key) in [
        ("argocd-cm", "cm"),
        ("argocd-rbac-cm", "rbac"),
        ("argocd-cmd-params-cm", "params"),
    ] {
        let Some(settings) = values["configs"][key].as_object() else {
            continue;
        };
        let Some(cm) = objects
            .iter_mut()
            .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == name)
        else {
            continue;
        };
        if !cm["data"].is_object() {
            cm["data"] = json!({});
        }
        for (k, v) in settings {
            if k == "create" || k == "annotations" || v.is_null() {
                continue;
            }
            let text = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            cm["data"][k] = Value::String(text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock;

    #[test]
    fn install_manifests_get_namespace_and_configs() {
        let mut objects = parse_bundle(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: argocd-cm}\n---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: argocd-server}\n---\n\
             apiVersion: v1\nkind: ConfigMap\nmetadata: {name: argocd-cmd-params-cm}\ndata: {a: b}\n",
        )
        .unwrap();
        set_namespace(&mut objects, "argocd");
        write_configs(
            &mut objects,
            &json!({"configs": {"cm": {"accounts.pipeline": "apiKey", "admin.enabled": true}, "params": {"server.insecure": true}}}),
        );
        assert_eq!(objects[0]["metadata"]["namespace"], "argocd");
        assert!(objects[1]["metadata"].get("namespace").is_none());
        assert_eq!(objects[0]["data"]["accounts.pipeline"], "apiKey");
        assert_eq!(objects[0]["data"]["admin.enabled"], "true");
        assert_eq!(
            objects[2]["data"],
            json!({"a": "b", "server.insecure": "true"})
        );
    }

    #[test]
    fn install_manifests_bind_the_chosen_namespace() {
        let mut objects = parse_bundle(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: argocd-server}\n\
             roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: argocd-server}\n\
             subjects: [{kind: ServiceAccount, name: argocd-server, namespace: argocd}]\n",
        )
        .unwrap();
        rebind_subjects(&mut objects, "gitops");
        assert_eq!(objects[0]["subjects"][0]["namespace"], "gitops");
    }

    #[tokio::test]
    async fn an_application_named_like_the_release_means_handed_over() {
        let (client, mut server) = mock::client();
        let module = ArgoCd::new(mock::offline_cluster());
        let run = tokio::spawn(async move { module.handed_over(&client).await.unwrap() });
        let app = json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": "argocd", "namespace": "argocd"},
            "spec": {"project": "default", "destination": {}},
        });
        server
            .expect(
                "GET",
                "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications/argocd",
                200,
                app,
            )
            .await;
        assert!(run.await.unwrap());
    }
}
