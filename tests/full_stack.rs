//! A whole stack of built-in modules applied through the Kubernetes engine to an in-memory API
//! server: a second apply with the same inputs makes no write request at all, and destroy
//! leaves no object behind.
//!
//! The server keeps objects by path and answers discovery for the kinds the modules render. Like
//! a real API server it composes an object from what each field manager applied (a manager that
//! stops applying a field removes it; the fields of other managers stay), which the per-module
//! entries of the stack's state rely on. It runs no controllers and deletes at once, so the run
//! does not wait for readiness (`KubeOptions::wait` is false);
//! Argo CD's own bootstrap (which needs `helm` or the network) is replaced by a constant target.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use devops_stack::interfaces::{ArgoCdTarget, Cluster, ClusterRef, IN_CLUSTER, IssuerKind};
use devops_stack::k8s::KubeOptions;
use devops_stack::modules::{
    CertManager, Keycloak, KubePrometheusStack, Loki, MetricsServer, PrometheusOperatorCrds,
    Traefik,
};
use devops_stack::{BoxError, Input, RunOptions, Stack};
use http::{Request, Response};
use kube::client::Body;
use serde_json::{Value, json};

/// Objects by path, the body each field manager last applied to them, and every request as
/// `METHOD path[ (dry run)]`.
#[derive(Clone, Default)]
struct ApiServer {
    objects: Arc<Mutex<BTreeMap<String, Value>>>,
    applied: Arc<Mutex<BTreeMap<String, BTreeMap<String, Value>>>>,
    log: Arc<Mutex<Vec<String>>>,
}

/// `(plural, kind, namespaced)`.
type Kind = (&'static str, &'static str, bool);

/// `(group/version path, kinds)` served by discovery.
const KINDS: &[(&str, &[Kind])] = &[
    (
        "/api/v1",
        &[
            ("namespaces", "Namespace", false),
            ("configmaps", "ConfigMap", true),
            ("secrets", "Secret", true),
            ("services", "Service", true),
            ("serviceaccounts", "ServiceAccount", true),
        ],
    ),
    (
        "/apis/argoproj.io/v1alpha1",
        &[
            ("applications", "Application", true),
            ("appprojects", "AppProject", true),
        ],
    ),
    (
        "/apis/apiextensions.k8s.io/v1",
        &[(
            "customresourcedefinitions",
            "CustomResourceDefinition",
            false,
        )],
    ),
    ("/apis/coordination.k8s.io/v1", &[("leases", "Lease", true)]),
];

impl ApiServer {
    fn client(&self) -> kube::Client {
        let me = self.clone();
        let service = tower::service_fn(move |req: Request<Body>| {
            let me = me.clone();
            async move { Ok::<_, Infallible>(me.serve(req).await) }
        });
        kube::Client::new(service, "default")
    }

    async fn serve(&self, req: Request<Body>) -> Response<Body> {
        let method = req.method().to_string();
        let path = req.uri().path().to_owned();
        let query: BTreeMap<String, String> =
            form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        let dry = query.contains_key("dryRun");
        let server_side_apply = req
            .headers()
            .get("content-type")
            .is_some_and(|c| c == "application/apply-patch+yaml");
        let manager = query.get("fieldManager").cloned().unwrap_or_default();
        self.log.lock().unwrap().push(format!(
            "{method} {path}{}",
            if dry { " (dry run)" } else { "" }
        ));
        let bytes = req.into_body().collect_bytes().await.unwrap();
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        let mut objects = self.objects.lock().unwrap();
        match method.as_str() {
            "GET" => {
                if let Some((gv, kinds)) = KINDS.iter().find(|(p, _)| *p == path) {
                    let resources: Vec<Value> = kinds
                        .iter()
                        .map(|(plural, kind, namespaced)| json!({"name": plural, "singularName": "", "kind": kind, "namespaced": namespaced,
                            "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]}))
                        .collect();
                    let group_version = gv.trim_start_matches("/api/").trim_start_matches("/apis/");
                    return reply(
                        200,
                        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}),
                    );
                }
                if path.starts_with("/api")
                    && path.matches('/').count() <= 3
                    && !objects.contains_key(&path)
                {
                    // An unknown group version, or a collection.
                    let items: Vec<Value> = objects
                        .iter()
                        .filter(|(p, _)| {
                            p.starts_with(&format!("{path}/"))
                                && p[path.len() + 1..].find('/').is_none()
                        })
                        .map(|(_, o)| o.clone())
                        .collect();
                    return reply(
                        200,
                        json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items}),
                    );
                }
                match objects.get(&path) {
                    Some(o) => reply(200, o.clone()),
                    None => not_found(&path),
                }
            }
            "PATCH" if server_side_apply => {
                // The object is what every manager applied, composed in turn.
                let mut managers = self
                    .applied
                    .lock()
                    .unwrap()
                    .get(&path)
                    .cloned()
                    .unwrap_or_default();
                managers.insert(manager, body);
                let mut composed = json!({});
                for applied in managers.values() {
                    json_merge(&mut composed, applied);
                }
                composed["metadata"]["resourceVersion"] = json!("1");
                fold_string_data(&mut composed);
                if !dry {
                    self.applied.lock().unwrap().insert(path.clone(), managers);
                    objects.insert(path, composed.clone());
                }
                reply(200, composed)
            }
            "PATCH" | "PUT" => {
                // A merge patch (finalizers) or a replacement, over the live object.
                let Some(live) = objects.get_mut(&path) else {
                    return not_found(&path);
                };
                if method == "PUT" {
                    *live = body;
                } else {
                    json_merge(live, &body);
                }
                live["metadata"]["resourceVersion"] = json!("1");
                reply(200, live.clone())
            }
            "POST" => {
                let mut stored = body;
                stored["metadata"]["resourceVersion"] = json!("1");
                let name = stored["metadata"]["name"].as_str().unwrap().to_owned();
                objects.insert(format!("{path}/{name}"), stored.clone());
                reply(201, stored)
            }
            "DELETE" => match objects.remove(&path).inspect(|_| {
                self.applied.lock().unwrap().remove(&path);
            }) {
                Some(o) => reply(200, o),
                None => not_found(&path),
            },
            other => panic!("the test API server does not handle {other} {path}"),
        }
    }

    fn take_log(&self) -> Vec<String> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

/// As the API server does with a Secret: `stringData` goes into `data`, base64-encoded.
fn fold_string_data(object: &mut Value) {
    use base64::Engine as _;
    let Some(string_data) = object.as_object_mut().and_then(|o| o.remove("stringData")) else {
        return;
    };
    for (k, v) in string_data.as_object().unwrap() {
        let encoded = base64::engine::general_purpose::STANDARD.encode(v.as_str().unwrap());
        object["data"][k] = json!(encoded);
    }
}

fn json_merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    json_merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn reply(code: u16, body: Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}

fn not_found(path: &str) -> Response<Body> {
    reply(
        404,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": format!("{path} not found")}),
    )
}

/// The cluster served by the in-memory API server.
#[derive(Clone)]
struct Memory(kube::Client);

impl std::fmt::Debug for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Memory")
    }
}

impl Cluster for Memory {
    fn name(&self) -> &str {
        "mem"
    }
    fn base_domain(&self) -> &str {
        "example.com"
    }
    fn client(&self) -> Pin<Box<dyn Future<Output = Result<kube::Client, BoxError>> + Send + '_>> {
        Box::pin(async move { Ok(self.0.clone()) })
    }
}

fn platform(server: &ApiServer) -> devops_stack::BuiltStack {
    let cluster: Input<ClusterRef> = Input::value(Arc::new(Memory(server.client())));
    let argocd = Input::value(ArgoCdTarget {
        namespace: "argocd".into(),
        project: "default".into(),
        destination_server: IN_CLUSTER.into(),
    });
    let mut stack = Stack::new("mem");
    let crds = stack.add(PrometheusOperatorCrds::new(cluster.clone(), argocd.clone()));
    let ingress = stack.add(Traefik::new(cluster.clone(), argocd.clone()).service_monitors(&crds));
    let certs = stack.add(
        CertManager::new(cluster.clone(), argocd.clone())
            .letsencrypt("ops@example.com")
            .http01_ingress(&ingress),
    );
    let tls = certs.issuer(IssuerKind::LetsEncryptProduction);
    let sso = stack.add(
        Keycloak::new(cluster.clone(), argocd.clone(), &ingress)
            .issuer(tls.clone())
            .user("jane", "jane@example.com"),
    );
    let monitoring = stack.add(
        KubePrometheusStack::new(cluster.clone(), argocd.clone(), &ingress)
            .oidc(&sso)
            .issuer(tls)
            .service_monitors(&crds),
    );
    stack.add(Loki::new(cluster.clone(), argocd.clone()).monitoring(&monitoring));
    stack.add(MetricsServer::new(cluster, argocd));
    stack.build().unwrap()
}

fn writes(log: &[String]) -> Vec<&String> {
    log.iter().filter(|l| !l.starts_with("GET ")).collect()
}

#[tokio::test]
async fn a_full_stack_reapplies_with_zero_writes_and_destroys_everything() {
    let server = ApiServer::default();
    let options = || {
        RunOptions::new().extension(KubeOptions {
            wait: false,
            ..KubeOptions::default()
        })
    };

    let first = platform(&server).apply(&options()).await.unwrap();
    assert!(first.is_success());
    let log = server.take_log();
    let written = writes(&log);
    assert!(written.len() > 20, "the first apply wrote only {written:?}");
    let applications = server
        .objects
        .lock()
        .unwrap()
        .keys()
        .filter(|p| p.contains("/applications/"))
        .count();
    assert!(applications >= 8, "{applications} Applications");

    // The same inputs again, with a stack built anew (generated secrets are read back).
    platform(&server).apply(&options()).await.unwrap();
    let log = server.take_log();
    assert_eq!(
        writes(&log),
        Vec::<&String>::new(),
        "write requests on a no-op re-apply of the whole stack"
    );
    assert!(
        log.len() > 20,
        "the re-apply read the live objects: {log:?}"
    );

    platform(&server).destroy(&options()).await.unwrap();
    let left: Vec<String> = server.objects.lock().unwrap().keys().cloned().collect();
    assert_eq!(left, Vec::<String>::new(), "objects left after destroy");
}
