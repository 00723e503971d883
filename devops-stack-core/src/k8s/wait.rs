//! Waits through watches: readiness of CRDs, Deployments and Argo CD Applications, and deletion.

use std::pin::pin;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::runtime::watcher;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::KubeError;
use super::object::ObjectRef;
use crate::argocd::ApplicationStatus;
use crate::error::{Error, Result};

/// The kinds whose readiness the engine waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Readiness {
    /// `Established` condition.
    Crd,
    /// `Available` condition, for the current generation.
    Deployment,
    /// Argo CD reports `Synced` and `Healthy`.
    Application,
}

impl Readiness {
    pub(crate) fn of(id: &ObjectRef) -> Option<Readiness> {
        match (id.group(), id.kind.as_str()) {
            ("apiextensions.k8s.io", "CustomResourceDefinition") => Some(Readiness::Crd),
            ("apps", "Deployment") => Some(Readiness::Deployment),
            ("argoproj.io", "Application") => Some(Readiness::Application),
            _ => None,
        }
    }

    pub(crate) fn is_ready(self, obj: &DynamicObject) -> bool {
        let status = &obj.data["status"];
        match self {
            Readiness::Crd => has_condition(status, "Established"),
            Readiness::Deployment => {
                let observed = status["observedGeneration"].as_i64();
                has_condition(status, "Available") && observed >= obj.metadata.generation
            }
            // Argo CD may report Synced and Healthy while its sync operation still runs (hooks,
            // waves, or resources it has yet to see settle), and the health can then change:
            // ready is also no operation requested or running
            Readiness::Application => {
                serde_json::from_value::<ApplicationStatus>(status.clone())
                    .is_ok_and(|s| s.is_synced_and_healthy())
                    && no_operation(obj)
            }
        }
    }
}

/// How often, and after how long, the wait for an Application asks Argo CD for a refresh.
const NUDGE_EVERY: Duration = Duration::from_secs(10);

/// Whether no sync operation of the Application `app` is requested or running.
fn no_operation(app: &DynamicObject) -> bool {
    app.data["operation"].is_null()
        && !matches!(
            app.data["status"]["operationState"]["phase"].as_str(),
            Some("Running" | "Terminating")
        )
}

/// Whether Argo CD should look at `app` again: synced, no operation running, but its health not
/// settled (a resource became ready by a status update Argo CD ignores); a sync that waits for
/// the health of resources (a wave of CRDs), which it learns of the same way; or a comparison
/// error that may clear.
pub(crate) fn needs_refresh(app: &DynamicObject) -> bool {
    let status = &app.data["status"];
    let asked = app
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(crate::argocd::REFRESH_ANNOTATION));
    // A comparison error that is not a refusal may clear (a repository's credentials the
    // controller has not seen yet, a repository server starting): Argo CD itself looks again
    // only at its periodic refresh.
    let comparison_error = status["conditions"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "ComparisonError"));
    if comparison_error {
        return !asked;
    }
    let operation = &status["operationState"];
    if operation["phase"] == "Running"
        && operation["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("waiting for healthy state"))
    {
        return !asked;
    }
    status["sync"]["status"] == "Synced"
        && no_operation(app)
        && matches!(
            status["health"]["status"].as_str(),
            Some("Progressing" | "Missing" | "Unknown")
        )
        && !asked
}

/// Every [`NUDGE_EVERY`], asks Argo CD to refresh the Application `name` when
/// [`needs_refresh`] says so (the annotation `argocd.argoproj.io/refresh: normal`, which the
/// controller removes once it refreshed; a merge patch of its own field manager, so the
/// engine's apply never owns it). Never returns: the caller drops it when the wait ends.
pub(crate) async fn nudge_refresh(api: &Api<DynamicObject>, name: &str) {
    let params = kube::api::PatchParams {
        field_manager: Some("devops-stack-refresh".into()),
        ..Default::default()
    };
    let patch = serde_json::json!({"metadata": {"annotations": {crate::argocd::REFRESH_ANNOTATION: "normal"}}});
    loop {
        tokio::time::sleep(NUDGE_EVERY).await;
        let Ok(Some(app)) = api.get_opt(name).await else {
            continue;
        };
        if needs_refresh(&app) {
            tracing::debug!("asking Argo CD to refresh Application {name}");
            let _ = api
                .patch(name, &params, &kube::api::Patch::Merge(&patch))
                .await;
        }
    }
}

/// Why Argo CD will not deploy an Application, when waiting cannot change it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// The condition's type.
    pub(crate) condition: String,
    /// Its message.
    pub(crate) message: String,
    /// The chart (or source) the Application names.
    pub(crate) chart: String,
    /// What to change.
    pub(crate) fix: String,
}

/// The Argo CD condition of `obj` (an Application) that waiting will not change: Helm's
/// repository index has no such chart or version, or the chart's `values.schema.json` rejects
/// the values. Other conditions (a repository server that is not up yet, a sync in progress)
/// may clear, and are only reported if the wait times out.
pub(crate) fn refusal(obj: &DynamicObject) -> Option<Refusal> {
    let source = &obj.data["spec"]["source"];
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    let (repo, chart, version) = (
        text(&source["repoURL"]),
        text(&source["chart"]),
        text(&source["targetRevision"]),
    );
    let described = if chart.is_empty() {
        format!("{repo} {}", text(&source["path"]))
    } else {
        format!("{repo} {chart} {version}")
    };
    let conditions = obj.data["status"]["conditions"].as_array()?;
    conditions.iter().find_map(|c| {
        let condition = text(&c["type"]);
        if !matches!(condition.as_str(), "ComparisonError" | "InvalidSpecError") {
            return None;
        }
        let message = text(&c["message"]);
        // Argo CD's own index lookup (a version constraint), or `helm pull` (an exact version)
        let version_missing = message.contains("version matching constraint not found")
            || message.contains(&format!("version \"{version}\" not found in"));
        let chart_missing = message.contains("not found in index")
            || message.contains(&format!("chart \"{chart}\" not found in"));
        let fix = if version_missing {
            format!("the repository {repo} has no version `{version}` of chart `{chart}`: give a version it serves (`chart_version`), or the repository that serves it (`chart_repository`)")
        } else if chart_missing {
            format!("the repository {repo} has no chart `{chart}`: give the repository that serves it (`chart_repository`)")
        } else if message.contains("values don't meet the specifications of the schema") {
            let keys = schema_keys(&message);
            format!(
                "the chart's values.schema.json rejects {}: correct or remove {} in the module's values",
                if keys.is_empty() { "the values".to_owned() } else { keys.join(", ") },
                if keys.len() == 1 { "that key" } else { "those keys" },
            )
        } else {
            return None;
        };
        Some(Refusal {
            condition,
            message,
            chart: described.clone(),
            fix,
        })
    })
}

/// The keys a Helm schema error names (`- at '/deployment/replicas': …` becomes
/// `deployment.replicas`), in order, once each.
fn schema_keys(message: &str) -> Vec<String> {
    let mut keys = Vec::new();
    for line in message.lines() {
        let Some(rest) = line.trim_start().strip_prefix("- at '") else {
            continue;
        };
        let Some(end) = rest.find('\'') else { continue };
        let pointer = &rest[..end];
        let key = if pointer.is_empty() || pointer == "/" {
            "(the root)".to_owned()
        } else {
            pointer.trim_start_matches('/').replace('/', ".")
        };
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys
}

fn has_condition(status: &serde_json::Value, type_: &str) -> bool {
    status["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == type_ && c["status"] == "True")
    })
}

/// A short text of what was last seen of an object, for errors.
pub(crate) fn describe(obj: Option<&DynamicObject>) -> String {
    let Some(obj) = obj else {
        return "not found".into();
    };
    let mut parts = Vec::new();
    if obj.metadata.deletion_timestamp.is_some() {
        let f = obj.metadata.finalizers.clone().unwrap_or_default();
        parts.push(format!(
            "being deleted, waiting for finalizers [{}]",
            f.join(", ")
        ));
    }
    match &obj.data["status"] {
        serde_json::Value::Null => parts.push("no status reported".into()),
        s => {
            let mut text = s.to_string();
            if text.len() > 600 {
                let cut = (0..=600)
                    .rev()
                    .find(|&i| text.is_char_boundary(i))
                    .unwrap_or(0);
                text.truncate(cut);
                text.push_str("...");
            }
            parts.push(format!("status {text}"));
        }
    }
    parts.join("; ")
}

/// How a wait ended.
pub(crate) enum Waited {
    /// The condition held.
    Met,
    /// The deadline passed; the last object seen (`None`: not found).
    TimedOut(Option<Box<DynamicObject>>),
}

/// Watches `name` through `api` until `cond` holds for what is seen (`None`: the object does
/// not exist), the deadline passes, or `cancel` fires.
pub(crate) async fn until(
    api: Api<DynamicObject>,
    name: &str,
    deadline: Instant,
    cancel: &CancellationToken,
    module: &str,
    cond: impl Fn(Option<&DynamicObject>) -> bool,
) -> Result<Waited> {
    let mut stream = pin!(watcher::watch_object(api, name));
    let mut last = None;
    let mut backoff = Duration::from_millis(200);
    loop {
        let next = tokio::select! {
            () = cancel.cancelled() => return Err(Error::Cancelled { module: module.to_owned() }),
            () = tokio::time::sleep_until(deadline) => return Ok(Waited::TimedOut(last.map(Box::new))),
            next = stream.next() => next,
        };
        match next {
            Some(Ok(seen)) => {
                if cond(seen.as_ref()) {
                    return Ok(Waited::Met);
                }
                last = seen;
            }
            Some(Err(e)) => {
                let transient = match &e {
                    watcher::Error::InitialListFailed(k)
                    | watcher::Error::WatchStartFailed(k)
                    | watcher::Error::WatchFailed(k) => super::retry::is_transient(k, false),
                    watcher::Error::WatchError(s) => {
                        s.code == 410 || s.code == 429 || s.code >= 500
                    }
                    _ => false,
                };
                if !transient {
                    return Err(KubeError::Watch {
                        object: format!("`{name}`"),
                        reason: e.to_string(),
                        source: Some(Box::new(e)),
                    }
                    .into());
                }
                tracing::warn!("watching `{name}` failed, retrying in {backoff:?}: {e}");
                tokio::select! {
                    () = cancel.cancelled() => return Err(Error::Cancelled { module: module.to_owned() }),
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            None => {
                return Err(KubeError::Watch {
                    object: format!("`{name}`"),
                    reason: "the watch ended unexpectedly".into(),
                    source: None,
                }
                .into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: serde_json::Value) -> DynamicObject {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn refusals_name_the_version_or_the_key() {
        let app = |message: &str| -> DynamicObject {
            serde_json::from_value(json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
                "metadata": {"name": "traefik", "namespace": "argocd"},
                "spec": {"source": {"repoURL": "http://charts.example", "chart": "traefik", "targetRevision": "9.9.9"}},
                "status": {"conditions": [{"type": "ComparisonError", "message": message}]}}))
            .unwrap()
        };
        let missing = refusal(&app("Failed to load target state: failed to generate manifest for source 1 of 1: rpc error: code = Unknown desc = version matching constraint not found in 1 tags")).unwrap();
        assert_eq!(missing.chart, "http://charts.example traefik 9.9.9");
        assert!(
            missing
                .fix
                .contains("no version `9.9.9` of chart `traefik`"),
            "{}",
            missing.fix
        );
        let schema = refusal(&app("Failed to load target state: … values don't meet the specifications of the schema(s) in the following chart(s):\ntraefik:\n- at '/deployment/replicas': got string, want integer\n- at '/ports/web': additional properties 'bogus' not allowed\n")).unwrap();
        assert!(
            schema.fix.contains("deployment.replicas, ports.web"),
            "{}",
            schema.fix
        );
        assert!(refusal(&app("rpc error: connection refused")).is_none());
        let chart = refusal(&app("chart 'traefik' not found in index")).unwrap();
        assert!(chart.fix.contains("no chart `traefik`"));
        // what Argo CD 3.4 reports for an exact version, from `helm pull`
        let pulled = refusal(&app("Failed to load target state: failed to generate manifest for source 1 of 1: rpc error: code = Unknown desc = error fetching chart: failed to fetch chart: failed running helm: `helm pull --version 9.9.9 --repo http://charts.example traefik` failed exit status 1: Error: chart \"traefik\" version \"9.9.9\" not found in http://charts.example repository")).unwrap();
        assert!(pulled.fix.contains("no version `9.9.9`"), "{}", pulled.fix);
    }

    #[test]
    fn only_a_settled_sync_with_unsettled_health_is_refreshed() {
        let app = |status: serde_json::Value, annotations: serde_json::Value| {
            obj(
                json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
                "metadata": {"name": "a", "annotations": annotations}, "status": status}),
            )
        };
        let none = json!({});
        let progressing = json!({"sync": {"status": "Synced"}, "health": {"status": "Progressing"},
            "operationState": {"phase": "Succeeded"}});
        assert!(needs_refresh(&app(progressing.clone(), none.clone())));
        assert!(!needs_refresh(&app(
            progressing.clone(),
            json!({"argocd.argoproj.io/refresh": "normal"})
        )));
        let running = json!({"sync": {"status": "Synced"}, "health": {"status": "Progressing"},
            "operationState": {"phase": "Running"}});
        assert!(!needs_refresh(&app(running, none.clone())));
        let waiting = json!({"sync": {"status": "OutOfSync"}, "health": {"status": "Progressing"},
            "operationState": {"phase": "Running", "message": "waiting for healthy state of apiextensions.k8s.io/CustomResourceDefinition/certificates.cert-manager.io and 3 more resources"}});
        assert!(needs_refresh(&app(waiting, none.clone())));
        let credentials_not_seen = json!({"sync": {"status": "Unknown"}, "health": {"status": "Healthy"},
            "conditions": [{"type": "ComparisonError", "message": "failed to list refs: authentication required"}]});
        assert!(needs_refresh(&app(credentials_not_seen, none.clone())));
        let out_of_sync =
            json!({"sync": {"status": "OutOfSync"}, "health": {"status": "Progressing"}});
        assert!(!needs_refresh(&app(out_of_sync, none.clone())));
        let healthy = json!({"sync": {"status": "Synced"}, "health": {"status": "Healthy"}});
        assert!(!needs_refresh(&app(healthy, none)));
    }

    #[test]
    fn readiness_conditions() {
        let app = obj(
            json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "a"},
            "status": {"sync": {"status": "Synced"}, "health": {"status": "Healthy"}}}),
        );
        assert!(Readiness::Application.is_ready(&app));
        let app = obj(
            json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "a"},
            "status": {"sync": {"status": "OutOfSync"}, "health": {"status": "Healthy"}}}),
        );
        assert!(!Readiness::Application.is_ready(&app));
        assert!(describe(Some(&app)).contains("OutOfSync"));
        let syncing = obj(
            json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "a"},
            "status": {"sync": {"status": "Synced"}, "health": {"status": "Healthy"},
                "operationState": {"phase": "Running", "message": "one or more tasks are running"}}}),
        );
        assert!(
            !Readiness::Application.is_ready(&syncing),
            "a sync still running"
        );
        let requested = obj(
            json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "a"},
            "operation": {"sync": {}},
            "status": {"sync": {"status": "Synced"}, "health": {"status": "Healthy"},
                "operationState": {"phase": "Succeeded"}}}),
        );
        assert!(
            !Readiness::Application.is_ready(&requested),
            "a sync requested, not started"
        );
        let dep = obj(
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "generation": 2},
            "status": {"observedGeneration": 1, "conditions": [{"type": "Available", "status": "True"}]}}),
        );
        assert!(
            !Readiness::Deployment.is_ready(&dep),
            "status of an older generation"
        );
        let crd = obj(
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "c"},
            "status": {"conditions": [{"type": "Established", "status": "True"}]}}),
        );
        assert!(Readiness::Crd.is_ready(&crd));
        assert_eq!(describe(None), "not found");
    }
}
