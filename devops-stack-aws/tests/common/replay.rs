//! A replaying HTTP client for the AWS SDK: it records each request the SDK sends and answers
//! with the next canned response, in order.
//!
//! The SDK ships one (`aws-smithy-http-client`'s `test-util` `StaticReplayClient`), but that
//! feature turns on `serde_json/preserve_order` for the whole workspace when the tests of every
//! crate build together, which changes the key order of every rendered plan and snapshot. This
//! is the same idea on the SDK's own `HttpClient` trait, without that side effect.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use serde_json::Value;

/// A canned response.
#[derive(Debug, Clone)]
pub struct Canned {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Canned {
    pub fn new(status: u16, body: impl Into<String>) -> Self {
        Canned {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    pub fn header(mut self, key: &str, value: &str) -> Self {
        self.headers.push((key.into(), value.into()));
        self
    }
}

/// A request as sent: method, URI, body.
#[derive(Debug, Clone)]
pub struct Sent {
    pub method: String,
    pub uri: String,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, Default)]
pub struct ReplayClient {
    responses: Arc<Mutex<VecDeque<Canned>>>,
    sent: Arc<Mutex<Vec<Sent>>>,
}

impl ReplayClient {
    pub fn new(responses: impl IntoIterator<Item = Canned>) -> Self {
        ReplayClient {
            responses: Arc::new(Mutex::new(responses.into_iter().collect())),
            sent: Arc::default(),
        }
    }

    pub fn sent(&self) -> Vec<Sent> {
        self.sent.lock().unwrap().clone()
    }

    /// How many canned responses were not used.
    pub fn unused(&self) -> usize {
        self.responses.lock().unwrap().len()
    }
}

impl HttpConnector for ReplayClient {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        self.sent.lock().unwrap().push(Sent {
            method: request.method().to_owned(),
            uri: request.uri().to_owned(),
            body: request.body().bytes().unwrap_or_default().to_vec(),
        });
        let Some(canned) = self.responses.lock().unwrap().pop_front() else {
            return HttpConnectorFuture::ready(Err(ConnectorError::other(
                format!(
                    "no canned response left for {} {}",
                    request.method(),
                    request.uri()
                )
                .into(),
                None,
            )));
        };
        let mut response = HttpResponse::new(
            StatusCode::try_from(canned.status).expect("a valid status"),
            SdkBody::from(canned.body),
        );
        for (k, v) in canned.headers {
            response.headers_mut().insert(k, v);
        }
        HttpConnectorFuture::ready(Ok(response))
    }
}

impl HttpClient for ReplayClient {
    fn http_connector(
        &self,
        _settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}

/// An EKS (JSON) answer.
pub fn eks_json(status: u16, body: Value) -> Canned {
    Canned::new(status, body.to_string()).header("content-type", "application/json")
}

/// EKS's answer for something that does not exist.
pub fn eks_not_found() -> Canned {
    eks_json(404, serde_json::json!({"message": "not found"}))
        .header("x-amzn-errortype", "ResourceNotFoundException")
}

/// The XML namespace of IAM's answers.
pub const IAM_NS: &str = "https://iam.amazonaws.com/doc/2010-05-08/";

/// An IAM answer to `action`, with `result` inside its `<ActionResult>` (none when empty).
pub fn iam(action: &str, result: &str) -> Canned {
    let result = if result.is_empty() {
        String::new()
    } else {
        format!("<{action}Result>{result}</{action}Result>")
    };
    Canned::new(
        200,
        format!(
            "<{action}Response xmlns=\"{IAM_NS}\">{result}<ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></{action}Response>"
        ),
    )
    .header("content-type", "text/xml")
}
