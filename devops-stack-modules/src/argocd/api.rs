//! Argo CD's REST API: logging in as the admin and creating tokens.

use std::time::Duration;

use devops_stack_core::Secret;
use devops_stack_core::k8s::unreachable_cause;
use serde_json::{Value, json};

use crate::error::{Error, Result};

/// Argo CD's REST API, reached through the Kubernetes API server's service proxy (no ingress,
/// no port-forward needed), or at `url`. Through the proxy, the session token travels as Argo
/// CD's cookie, because the proxy keeps the `Authorization` header for the Kubernetes API
/// itself.
pub(super) struct ArgoCdApi<'a> {
    client: &'a kube::Client,
    namespace: &'a str,
    service: String,
    url: Option<&'a str>,
}

impl<'a> ArgoCdApi<'a> {
    /// The API of the Argo CD release `release` in `namespace`, at `url` when given, else
    /// through its `<release>-server` Service.
    pub(super) fn new(
        client: &'a kube::Client,
        namespace: &'a str,
        release: &str,
        url: Option<&'a str>,
    ) -> Self {
        ArgoCdApi {
            client,
            namespace,
            service: format!("{release}-server"),
            url,
        }
    }

    /// Logs in as `admin` and POSTs `body` to `path`, which creates a token: the token.
    pub(super) async fn create_token(
        &self,
        admin: &Secret,
        path: &str,
        body: &Value,
    ) -> Result<Secret> {
        let session = self.session(admin).await?;
        let token = self.post(path, Some(&session), body).await?;
        Ok(Secret::new(string_field(
            &token,
            "token",
            &format!("POST {path}"),
        )?))
    }

    /// Logs in as `admin`: a session token.
    async fn session(&self, admin: &Secret) -> Result<Secret> {
        let session = self
            .post(
                "/api/v1/session",
                None,
                &json!({"username": "admin", "password": admin.expose()}),
            )
            .await?;
        Ok(Secret::new(string_field(
            &session,
            "token",
            "POST /api/v1/session",
        )?))
    }

    /// POSTs `body` to `path`, retrying for up to a minute while Argo CD's server is not up
    /// yet (connection refused, 502, 503, 504: its pod may be starting, or restarting after
    /// the install changed its configuration).
    async fn post(&self, path: &str, session: Option<&Secret>, body: &Value) -> Result<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut pause = Duration::from_millis(250);
        loop {
            match self.post_once(path, session, body).await {
                Err(Error::ArgoCdApi { reason, .. })
                    if tokio::time::Instant::now() < deadline && is_not_up(&reason) =>
                {
                    tracing::debug!("Argo CD's API is not up yet ({reason}); retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(4));
                }
                other => return other,
            }
        }
    }

    async fn post_once(&self, path: &str, session: Option<&Secret>, body: &Value) -> Result<Value> {
        let call = format!("POST {path}");
        let fail = |reason: String| Error::ArgoCdApi {
            call: call.clone(),
            reason,
        };
        let text = match self.url {
            Some(base) => {
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(30))
                    .build()
                    .map_err(|e| fail(e.to_string()))?;
                let mut req = client
                    .post(format!("{base}{path}"))
                    .header("Content-Type", "application/json")
                    .body(body.to_string());
                if let Some(s) = session {
                    req = req.bearer_auth(s.expose());
                }
                req.send()
                    .await
                    .and_then(reqwest::Response::error_for_status)
                    .map_err(|e| fail(format!("{base}: {}", e.without_url())))?
                    .text()
                    .await
                    .map_err(|e| fail(e.to_string()))?
            }
            None => {
                let uri = format!(
                    "/api/v1/namespaces/{}/services/{}:80/proxy{path}",
                    self.namespace, self.service
                );
                let mut req = http::Request::post(uri).header("Content-Type", "application/json");
                if let Some(s) = session {
                    req = req.header("Cookie", format!("argocd.token={}", s.expose()));
                }
                let req = req
                    .body(body.to_string().into_bytes())
                    .map_err(|e| fail(e.to_string()))?;
                self.client.request_text(req).await.map_err(|e| {
                    if unreachable_cause(&e).is_some() {
                        // The API server itself cannot be reached: the module's step reports
                        // it as such, and waiting for Argo CD would not help.
                        Error::kube(format!("calling Argo CD's API ({call})"), e)
                    } else {
                        fail(e.to_string())
                    }
                })?
            }
        };
        serde_json::from_str(&text).map_err(|e| fail(format!("the answer is not JSON: {e}")))
    }
}

/// Whether an Argo CD API error says the server is not up (yet), rather than refusing.
fn is_not_up(reason: &str) -> bool {
    [
        "error sending request",
        "Connect",
        "connection refused",
        "502",
        "503",
        "504",
    ]
    .iter()
    .any(|s| reason.contains(s))
}

/// The string `field` of the answer `v` to `call`.
fn string_field(v: &Value, field: &str, call: &str) -> Result<String> {
    v[field]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| Error::ArgoCdApi {
            call: call.to_owned(),
            reason: format!("the answer has no `{field}`"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_not_up_is_retried_a_refusal_is_not() {
        assert!(is_not_up("http://127.0.0.1:1: error sending request"));
        assert!(is_not_up(
            "ApiError: no endpoints available for service \"argocd-server:80\" (ServiceUnavailable, code 503)"
        ));
        assert!(!is_not_up("HTTP status client error (401 Unauthorized)"));
    }
}
