//! A scripted stand-in for the Kubernetes API server, for request-level unit tests.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use devops_stack_core::interfaces::{Cluster, ClusterRef};
use devops_stack_core::{BoxError, Input};
use http::{Request, Response};
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock;

/// A client whose requests the returned [`Server`] answers.
pub(crate) fn client() -> (kube::Client, Server) {
    let (svc, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(svc, "default"), Server(handle))
}

pub(crate) struct Server(mock::Handle<Request<Body>, Response<Body>>);

impl Server {
    /// Expects `method path`, returns its JSON body (null when empty) and answers `status` `reply`.
    pub(crate) async fn expect(
        &mut self,
        method: &str,
        path: &str,
        status: u16,
        reply: Value,
    ) -> Value {
        let (req, send) = tokio::time::timeout(Duration::from_secs(10), self.0.next_request())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {method} {path}"))
            .unwrap_or_else(|| panic!("no request {method} {path}"));
        assert_eq!((req.method().as_str(), req.uri().path()), (method, path));
        let headers = req.headers().clone();
        let bytes = req.into_body().collect_bytes().await.unwrap();
        let mut body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        if let Some(cookie) = headers.get("cookie") {
            body["__cookie"] = cookie.to_str().unwrap().into();
        }
        send.send_response(
            Response::builder()
                .status(status)
                .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                .unwrap(),
        );
        body
    }
}

/// A `Secret` as the API server returns it.
pub(crate) fn secret(ns: &str, name: &str, data: &[(&str, &str)]) -> Value {
    let data: serde_json::Map<String, Value> = data
        .iter()
        .map(|(k, v)| {
            (
                (*k).to_owned(),
                base64::engine::general_purpose::STANDARD.encode(v).into(),
            )
        })
        .collect();
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns}, "data": data})
}

/// A 404 `Status`.
pub(crate) fn not_found() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"})
}

/// A cluster no step reaches: its client cannot be made.
#[derive(Debug)]
pub(crate) struct Offline;

impl Cluster for Offline {
    fn name(&self) -> &str {
        "c"
    }
    fn base_domain(&self) -> &str {
        "example.com"
    }
    fn client(&self) -> Pin<Box<dyn Future<Output = Result<kube::Client, BoxError>> + Send + '_>> {
        Box::pin(async { Err("offline".into()) })
    }
}

/// [`Offline`] as a module's input.
pub(crate) fn offline_cluster() -> Input<ClusterRef> {
    Input::value(Arc::new(Offline) as ClusterRef)
}
