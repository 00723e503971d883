//! Waits through watches: readiness of CRDs, Deployments and Argo CD Applications, and deletion.

use std::pin::pin;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::runtime::watcher;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

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
            Readiness::Application => serde_json::from_value::<ApplicationStatus>(status.clone())
                .is_ok_and(|s| s.is_synced_and_healthy()),
        }
    }
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
                    return Err(Error::Kubernetes(format!("watching `{name}` failed: {e}")));
                }
                tracing::warn!("watching `{name}` failed, retrying in {backoff:?}: {e}");
                tokio::select! {
                    () = cancel.cancelled() => return Err(Error::Cancelled { module: module.to_owned() }),
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            None => {
                return Err(Error::Kubernetes(format!(
                    "the watch of `{name}` ended unexpectedly"
                )));
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
