//! Request-level tests of the Kubernetes engine: a `tower_test` mock service stands in for the
//! API server, and each test checks the requests the engine makes (method, path, query, body)
//! and answers them. Scripted tests expect an exact sequence; the multi-run tests (re-apply,
//! prune, resume) use a small in-memory API server and check the request log.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use devops_stack_core::Error;
use devops_stack_core::argocd::RESOURCES_FINALIZER;
use devops_stack_core::k8s::{
    Deployer, DiffAction, KubeOptions, MODULE_LABEL, Retry, STACK_LABEL, StackLock,
};
use http::{Request, Response};
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock;

const LEASE: &str =
    "/apis/coordination.k8s.io/v1/namespaces/devops-stack-system/leases/devops-stack-lock-s";
const STATE: &str = "/api/v1/namespaces/devops-stack-system/configmaps/devops-stack-state-s";
const CRDS: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";

type Handle = mock::Handle<Request<Body>, Response<Body>>;

fn client() -> (kube::Client, Server) {
    let (svc, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(svc, "default"), Server(handle))
}

fn deployer(client: kube::Client, options: KubeOptions) -> Deployer {
    Deployer::new(client, "s", "m", options).retry(
        Retry::default()
            .min_delay(Duration::from_millis(1))
            .max_delay(Duration::from_millis(5)),
    )
}

// ---------------------------------------------------------------------------------------------
// Scripted exchanges

struct Server(Handle);

/// One request received, to check and answer.
struct Exchange {
    method: String,
    path: String,
    query: HashMap<String, String>,
    content_type: String,
    body: Value,
    reply: mock::SendResponse<Response<Body>>,
}

impl Server {
    /// The next request, which must be `method path`.
    async fn expect(&mut self, method: &str, path: &str) -> Exchange {
        let (req, reply) = tokio::time::timeout(Duration::from_secs(10), self.0.next_request())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {method} {path}"))
            .unwrap_or_else(|| panic!("the client was dropped before {method} {path}"));
        let ex = exchange(req, reply).await;
        assert_eq!(
            (ex.method.as_str(), ex.path.as_str()),
            (method, path),
            "query {:?} body {}",
            ex.query,
            ex.body
        );
        ex
    }

    /// Asserts that the client makes no more requests (it must have been dropped).
    async fn done(mut self) {
        if let Some((req, _)) = self.0.next_request().await {
            panic!("unexpected request {} {}", req.method(), req.uri());
        }
    }
}

async fn exchange(req: Request<Body>, reply: mock::SendResponse<Response<Body>>) -> Exchange {
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(parse_query).unwrap_or_default();
    let content_type = req
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = req.into_body().collect_bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    Exchange {
        method,
        path,
        query,
        content_type,
        body,
        reply,
    }
}

fn parse_query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), decode(v)))
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(if b[i] == b'+' { b' ' } else { b[i] });
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

impl Exchange {
    fn respond(self, code: u16, body: Value) {
        let resp = Response::builder()
            .status(code)
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap();
        self.reply.send_response(resp);
    }

    fn ok(self, body: Value) {
        self.respond(200, body);
    }

    fn not_found(self) {
        let p = self.path.clone();
        self.respond(404, status(404, "NotFound", &format!("{p} not found")));
    }

    /// Answers a server-side apply with what was sent.
    fn echo(self) {
        let mut b = self.body.clone();
        b["metadata"]["resourceVersion"] = json!("1");
        self.ok(b);
    }

    fn q(&self, key: &str) -> Option<&str> {
        self.query.get(key).map(String::as_str)
    }
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code})
}

/// An `APIResourceList` for `gv` with `(plural, kind, namespaced)` resources.
fn resources(gv: &str, rs: &[(&str, &str, bool)]) -> Value {
    let verbs = [
        "create", "delete", "get", "list", "patch", "update", "watch",
    ];
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
        "resources": rs.iter().map(|(p, k, n)| json!({"name": p, "singularName": "", "namespaced": n, "kind": k, "verbs": verbs})).collect::<Vec<_>>()})
}

fn core_resources() -> Value {
    resources(
        "v1",
        &[
            ("configmaps", "ConfigMap", true),
            ("namespaces", "Namespace", false),
            ("secrets", "Secret", true),
        ],
    )
}

fn list(items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "10"}, "items": items})
}

fn config_map(ns: &str, name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": data})
}

fn state_entry(ex: &Exchange) -> Value {
    serde_json::from_str(
        ex.body["data"]["m"]
            .as_str()
            .expect("the module's state entry"),
    )
    .unwrap()
}

fn state_with(objects: Value) -> Value {
    config_map(
        "devops-stack-system",
        "devops-stack-state-s",
        json!({"m": json!({"objects": objects}).to_string()}),
    )
}

#[tokio::test]
async fn first_apply_is_server_side_apply_namespaces_first_with_inventory() {
    let (client, mut srv) = client();
    let server = tokio::spawn(async move {
        srv.expect("GET", LEASE).await.not_found();
        srv.expect("GET", STATE).await.not_found();
        srv.expect("GET", "/api/v1").await.ok(core_resources());
        srv.expect("GET", "/api/v1/namespaces/demo")
            .await
            .not_found();

        let intent = srv.expect("PATCH", STATE).await;
        assert_eq!(
            intent.q("fieldManager"),
            Some("devops-stack/m"),
            "the state is written by the module's own manager"
        );
        assert_eq!(intent.q("force"), Some("true"));
        let entry = state_entry(&intent);
        assert_eq!(
            entry["objects"].as_array().unwrap().len(),
            2,
            "both objects recorded before the first write: {entry}"
        );
        assert!(
            entry["objects"]
                .as_array()
                .unwrap()
                .iter()
                .all(|o| o.get("hash").is_none()),
            "{entry}"
        );
        intent.echo();

        let ns = srv.expect("PATCH", "/api/v1/namespaces/demo").await;
        assert_eq!(ns.content_type, "application/apply-patch+yaml");
        assert_eq!(ns.q("fieldManager"), Some("devops-stack"));
        assert_eq!(ns.q("force"), None, "conflicts are not forced by default");
        assert_eq!(ns.body["metadata"]["labels"][STACK_LABEL], "s");
        assert_eq!(ns.body["metadata"]["labels"][MODULE_LABEL], "m");
        assert!(ns.body["metadata"]["annotations"]["devops-stack.io/content-hash"].is_string());
        ns.echo();

        srv.expect("GET", "/api/v1/namespaces/demo/configmaps/cm")
            .await
            .not_found();
        let cm = srv
            .expect("PATCH", "/api/v1/namespaces/demo/configmaps/cm")
            .await;
        assert_eq!(cm.body["data"], json!({"k": "v"}));
        assert_eq!(
            cm.body["metadata"]["labels"]["keep"], "me",
            "the object's own labels are kept"
        );
        cm.echo();

        let fin = srv.expect("PATCH", STATE).await;
        let entry = state_entry(&fin);
        let objs = entry["objects"].as_array().unwrap();
        assert_eq!(objs[0]["kind"], "Namespace");
        assert_eq!(objs[1]["namespace"], "demo");
        assert!(
            objs.iter()
                .all(|o| o["hash"].as_str().is_some_and(|h| h.len() == 64)),
            "{entry}"
        );
        fin.echo();
        srv
    });
    let d = deployer(client, KubeOptions::default());
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "demo", "labels": {"keep": "me"}}, "data": {"k": "v"}});
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}});
    let report = d.apply(vec![cm, ns]).await.unwrap();
    assert_eq!(report.changed, ["Namespace demo", "ConfigMap demo/cm"]);
    assert!(report.unchanged.is_empty() && report.pruned.is_empty());
    drop(d);
    server.await.unwrap().done().await;
}

/// The requests of a first apply of one object: lock check, state, discovery, read, inventory,
/// apply, final state.
async fn first_apply(srv: &mut Server, group_version: &str, discovery: Value, object: &str) {
    srv.expect("GET", LEASE).await.not_found();
    srv.expect("GET", STATE).await.not_found();
    srv.expect("GET", group_version).await.ok(discovery);
    srv.expect("GET", object).await.not_found();
    srv.expect("PATCH", STATE).await.echo();
    srv.expect("PATCH", object).await.echo();
    srv.expect("PATCH", STATE).await.echo();
}

fn crd() -> Value {
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced", "names": {"plural": "widgets", "kind": "Widget"},
                 "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}})
}

#[tokio::test]
async fn crds_go_first_and_are_waited_for_until_established() {
    let (client, mut srv) = client();
    let server = tokio::spawn(async move {
        srv.expect("GET", LEASE).await.not_found();
        srv.expect("GET", STATE).await.not_found();
        srv.expect("GET", "/apis/apiextensions.k8s.io/v1")
            .await
            .ok(resources(
                "apiextensions.k8s.io/v1",
                &[(
                    "customresourcedefinitions",
                    "CustomResourceDefinition",
                    false,
                )],
            ));
        srv.expect("GET", &format!("{CRDS}/widgets.example.com"))
            .await
            .not_found();
        srv.expect("PATCH", STATE).await.echo();
        srv.expect("PATCH", &format!("{CRDS}/widgets.example.com"))
            .await
            .echo();

        // The wait: a list showing the CRD not yet established, then a watch event that does.
        let l = srv.expect("GET", CRDS).await;
        assert_eq!(
            l.q("fieldSelector"),
            Some("metadata.name=widgets.example.com")
        );
        let mut pending = crd();
        pending["metadata"]["resourceVersion"] = json!("5");
        pending["status"] = json!({"conditions": [{"type": "NamesAccepted", "status": "True"}]});
        l.ok(list(vec![pending.clone()]));
        let w = srv.expect("GET", CRDS).await;
        assert_eq!(w.q("watch"), Some("true"));
        let mut established = pending;
        established["status"]["conditions"] = json!([{"type": "Established", "status": "True"}]);
        let event = format!("{}\n", json!({"type": "MODIFIED", "object": established}));
        w.reply.send_response(
            Response::builder()
                .status(200)
                .body(Body::from(event.into_bytes()))
                .unwrap(),
        );

        // Only then is the custom resource's kind discovered and the object applied.
        srv.expect("GET", "/apis/example.com/v1")
            .await
            .ok(resources("example.com/v1", &[("widgets", "Widget", true)]));
        srv.expect("GET", "/apis/example.com/v1/namespaces/demo/widgets/w")
            .await
            .not_found();
        srv.expect("PATCH", "/apis/example.com/v1/namespaces/demo/widgets/w")
            .await
            .echo();
        srv.expect("PATCH", STATE).await.echo();
        srv
    });
    let d = deployer(client, KubeOptions::default());
    let widget = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "demo"}, "spec": {"size": 1}});
    let report = d.apply(vec![widget, crd()]).await.unwrap();
    assert_eq!(
        report.changed,
        [
            "CustomResourceDefinition widgets.example.com",
            "Widget demo/w"
        ]
    );
    drop(d);
    server.await.unwrap().done().await;
}

#[tokio::test]
async fn a_live_lock_of_another_holder_stops_the_apply_naming_it() {
    let (client, mut srv) = client();
    let server = tokio::spawn(async move {
        let renewed = k8s_openapi::jiff::Timestamp::now()
            .checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(5))
            .unwrap();
        let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "devops-stack-lock-s", "namespace": "devops-stack-system", "resourceVersion": "3"},
            "spec": {"holderIdentity": "ci-runner-7/42/abc", "leaseDurationSeconds": 60, "renewTime": renewed.to_string()}});
        srv.expect("GET", LEASE).await.ok(lease.clone());
        srv.expect("GET", LEASE).await.ok(lease);
        srv
    });
    let d = deployer(client.clone(), KubeOptions::default());
    let e = d
        .apply(vec![config_map("demo", "cm", json!({}))])
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::LockHeld { holder, .. } if holder == "ci-runner-7/42/abc"),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("locked by `ci-runner-7/42/abc`"),
        "{e}"
    );
    let e = StackLock::builder(client, "s")
        .holder("me")
        .acquire()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("ci-runner-7/42/abc"), "{e}");
    drop(d);
    server.await.unwrap().done().await;
}

#[tokio::test]
async fn a_stale_lock_is_taken_over_and_released() {
    let (client, mut srv) = client();
    let server = tokio::spawn(async move {
        let stale = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "devops-stack-lock-s", "namespace": "devops-stack-system", "resourceVersion": "7"},
            "spec": {"holderIdentity": "dead", "leaseDurationSeconds": 60, "renewTime": "2020-01-01T00:00:00.000000Z", "leaseTransitions": 2}});
        srv.expect("GET", LEASE).await.ok(stale);
        let put = srv.expect("PUT", LEASE).await;
        assert_eq!(
            put.body["metadata"]["resourceVersion"], "7",
            "the takeover is conditional on what was read"
        );
        assert_eq!(put.body["spec"]["holderIdentity"], "me");
        assert_eq!(put.body["spec"]["leaseTransitions"], 3);
        assert_eq!(put.body["spec"]["leaseDurationSeconds"], 30);
        let mut held = put.body.clone();
        held["metadata"]["resourceVersion"] = json!("8");
        put.ok(held.clone());
        // Release: read, then delete on the condition that it is still ours.
        srv.expect("GET", LEASE).await.ok(held);
        let del = srv.expect("DELETE", LEASE).await;
        assert_eq!(del.body["preconditions"]["resourceVersion"], "8");
        del.ok(status(200, "", ""));
        srv
    });
    let lock = StackLock::builder(client, "s")
        .holder("me")
        .lease_duration(Duration::from_secs(30))
        .acquire()
        .await
        .unwrap();
    assert_eq!(lock.holder(), "me");
    lock.release().await.unwrap();
    server.await.unwrap().done().await;
}

#[tokio::test]
async fn a_field_manager_conflict_is_a_typed_error_unless_forced() {
    let (client, mut srv) = client();
    let server = tokio::spawn(async move {
        for force in [false, true] {
            srv.expect("GET", LEASE).await.not_found();
            srv.expect("GET", STATE).await.not_found();
            srv.expect("GET", "/api/v1").await.ok(core_resources());
            srv.expect("GET", "/api/v1/namespaces/demo/configmaps/cm")
                .await
                .ok(config_map("demo", "cm", json!({"k": "edited"})));
            srv.expect("PATCH", STATE).await.echo();
            let apply = srv
                .expect("PATCH", "/api/v1/namespaces/demo/configmaps/cm")
                .await;
            if force {
                assert_eq!(apply.q("force"), Some("true"));
                apply.echo();
                srv.expect("PATCH", STATE).await.echo();
            } else {
                assert_eq!(apply.q("force"), None);
                apply.respond(409, status(409, "Conflict", "Apply failed with 1 conflict: conflict with \"kubectl-edit\" using v1: .data.k"));
            }
        }
        srv
    });
    let cm = config_map("demo", "cm", json!({"k": "v"}));
    let e = deployer(client.clone(), KubeOptions::default())
        .apply(vec![cm.clone()])
        .await
        .unwrap_err();
    match &e {
        Error::FieldConflict {
            object,
            managers,
            detail,
        } => {
            assert_eq!(object, "v1 ConfigMap demo/cm");
            assert_eq!(managers, &["kubectl-edit"]);
            assert!(detail.contains(".data.k"));
        }
        other => panic!("expected a field conflict, got {other:?}"),
    }
    assert!(
        e.to_string().contains("force_conflicts"),
        "the message says how to fix it: {e}"
    );
    let forced = KubeOptions {
        force_conflicts: true,
        ..KubeOptions::default()
    };
    let report = deployer(client, forced).apply(vec![cm]).await.unwrap();
    assert_eq!(report.changed, ["ConfigMap demo/cm"]);
    server.await.unwrap().done().await;
}

#[tokio::test]
async fn transient_faults_are_retried() {
    let (client, mut srv) = client();
    let server = tokio::spawn(async move {
        srv.expect("GET", LEASE).await.respond(
            503,
            status(503, "ServiceUnavailable", "etcd leader changed"),
        );
        srv.expect("GET", LEASE)
            .await
            .respond(429, status(429, "TooManyRequests", "slow down"));
        srv.expect("GET", LEASE).await.not_found();
        srv.expect("GET", STATE).await.not_found();
        srv.expect("GET", "/api/v1")
            .await
            .respond(500, status(500, "InternalError", "oops"));
        srv.expect("GET", "/api/v1").await.ok(core_resources());
        srv.expect("GET", "/api/v1/namespaces/demo/configmaps/cm")
            .await
            .not_found();
        // A missing state namespace is created, then the state written.
        srv.expect("PATCH", STATE).await.not_found();
        let ns = srv
            .expect("PATCH", "/api/v1/namespaces/devops-stack-system")
            .await;
        assert!(
            ns.body["metadata"].get("labels").is_none(),
            "the shared state namespace carries no stack label"
        );
        ns.echo();
        srv.expect("PATCH", STATE).await.echo();
        srv.expect("PATCH", "/api/v1/namespaces/demo/configmaps/cm")
            .await
            .respond(503, status(503, "ServiceUnavailable", "x"));
        srv.expect("PATCH", "/api/v1/namespaces/demo/configmaps/cm")
            .await
            .echo();
        srv.expect("PATCH", STATE).await.echo();
        srv
    });
    let d = deployer(client, KubeOptions::default());
    let report = d
        .apply(vec![config_map("demo", "cm", json!({}))])
        .await
        .unwrap();
    assert_eq!(report.changed, ["ConfigMap demo/cm"]);
    drop(d);
    server.await.unwrap().done().await;
}

#[tokio::test]
async fn destroy_deletes_in_reverse_with_the_application_finalizer() {
    let (client, mut srv) = client();
    let server = tokio::spawn(async move {
        srv.expect("GET", LEASE).await.not_found();
        srv.expect("GET", STATE).await.ok(state_with(json!([
            {"apiVersion": "v1", "kind": "Namespace", "name": "demo", "hash": "h1"},
            {"apiVersion": "v1", "kind": "ConfigMap", "namespace": "demo", "name": "cm", "hash": "h2"},
            {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "namespace": "argocd", "name": "app", "hash": "h3"},
        ])));
        srv.expect("GET", "/api/v1").await.ok(core_resources());
        srv.expect("GET", "/apis/argoproj.io/v1alpha1")
            .await
            .ok(resources(
                "argoproj.io/v1alpha1",
                &[("applications", "Application", true)],
            ));
        let apps = "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications";
        srv.expect("GET", &format!("{apps}/app")).await.ok(json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": "app", "namespace": "argocd", "resourceVersion": "5"}, "spec": {}}));
        let fin = srv.expect("PATCH", &format!("{apps}/app")).await;
        assert_eq!(fin.content_type, "application/merge-patch+json");
        assert_eq!(
            fin.body,
            json!({"metadata": {"finalizers": [RESOURCES_FINALIZER], "resourceVersion": "5"}})
        );
        fin.echo();
        srv.expect("DELETE", &format!("{apps}/app"))
            .await
            .ok(status(200, "", ""));
        let gone = srv.expect("GET", apps).await;
        assert_eq!(gone.q("fieldSelector"), Some("metadata.name=app"));
        gone.ok(list(vec![]));
        srv.expect("DELETE", "/api/v1/namespaces/demo/configmaps/cm")
            .await
            .not_found(); // already gone: fine
        srv.expect("DELETE", "/api/v1/namespaces/demo")
            .await
            .ok(status(200, "", ""));
        srv.expect("GET", "/api/v1/namespaces")
            .await
            .ok(list(vec![]));
        let rm = srv.expect("PATCH", STATE).await;
        assert!(
            rm.body.get("data").is_none(),
            "the module's entry is removed: {}",
            rm.body
        );
        rm.ok(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "devops-stack-state-s", "namespace": "devops-stack-system", "resourceVersion": "9"}}));
        let del = srv.expect("DELETE", STATE).await;
        assert_eq!(
            del.body["preconditions"]["resourceVersion"], "9",
            "the empty state goes, unless another module wrote meanwhile"
        );
        del.ok(status(200, "", ""));
        srv
    });
    let d = deployer(client, KubeOptions::default());
    d.destroy().await.unwrap();
    drop(d);
    server.await.unwrap().done().await;
}

#[tokio::test]
async fn a_namespace_stuck_in_finalizers_is_reported_by_name() {
    let (client, mut srv) = client();
    let server = tokio::spawn(async move {
        srv.expect("GET", LEASE).await.not_found();
        srv.expect("GET", STATE).await.ok(state_with(
            json!([{"apiVersion": "v1", "kind": "Namespace", "name": "demo", "hash": "h"}]),
        ));
        srv.expect("GET", "/api/v1").await.ok(core_resources());
        srv.expect("DELETE", "/api/v1/namespaces/demo")
            .await
            .ok(status(200, "", ""));
        srv.expect("GET", "/api/v1/namespaces").await.ok(list(vec![json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "demo", "deletionTimestamp": "2026-01-01T00:00:00Z", "resourceVersion": "4"},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Terminating", "conditions": [{"type": "NamespaceContentRemaining", "status": "True", "message": "Some resources are remaining: widgets.example.com has 1 resource instances"}]}})]));
        // The watch gets no events: the deadline passes.
        let watch = srv.expect("GET", "/api/v1/namespaces").await;
        assert_eq!(watch.q("watch"), Some("true"));
        (srv, watch)
    });
    let options = KubeOptions {
        wait_timeout: Duration::from_millis(300),
        ..KubeOptions::default()
    };
    let d = deployer(client, options);
    let e = d.destroy().await.unwrap_err();
    match &e {
        Error::NamespaceStuck { namespaces, .. } => {
            assert_eq!(namespaces[0].0, "demo");
            assert!(
                namespaces[0].1.contains("finalizers [kubernetes]")
                    && namespaces[0].1.contains("widgets.example.com has 1"),
                "{e}"
            );
        }
        other => panic!("expected a stuck namespace, got {other:?}"),
    }
    drop(d);
    let (srv, _watch) = server.await.unwrap();
    srv.done().await;
}

#[tokio::test]
async fn a_wait_timeout_names_the_object_and_its_last_status() {
    let (client, mut srv) = client();
    let server = tokio::spawn(async move {
        let path = "/apis/apps/v1/namespaces/demo/deployments";
        let discovery = resources("apps/v1", &[("deployments", "Deployment", true)]);
        first_apply(&mut srv, "/apis/apps/v1", discovery, &format!("{path}/web")).await;
        srv.expect("GET", path).await.ok(list(vec![json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "demo", "generation": 1, "resourceVersion": "2"},
            "status": {"observedGeneration": 1, "conditions": [{"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"}]}})]));
        let watch = srv.expect("GET", path).await;
        (srv, watch)
    });
    let options = KubeOptions {
        wait_timeout: Duration::from_millis(300),
        ..KubeOptions::default()
    };
    let d = deployer(client, options);
    let dep = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "demo"}, "spec": {"replicas": 1}});
    let e = d.apply(vec![dep]).await.unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, Error::NotReady { .. }), "{e:?}");
    assert!(
        text.starts_with("apps/v1 Deployment demo/web was not ready after 300ms"),
        "{text}"
    );
    assert!(text.contains("MinimumReplicasUnavailable"), "{text}");
    drop(d);
    let (srv, _watch) = server.await.unwrap();
    srv.done().await;
}

#[tokio::test]
async fn diff_is_a_dry_run_shown_field_by_field_with_secrets_redacted() {
    let (client, mut srv) = client();
    let app = |replicas: i64| {
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "traefik", "namespace": "argocd"},
            "spec": {"project": "default", "source": {"repoURL": "https://traefik.github.io/charts", "chart": "traefik",
                "helm": {"valuesObject": {"deployment": {"replicas": replicas}, "logs": {"level": "INFO"}}}}}})
    };
    let live_app = {
        let mut a = app(1);
        a["metadata"]["resourceVersion"] = json!("12");
        a["metadata"]["managedFields"] = json!([{"manager": "devops-stack"}]);
        a["metadata"]["labels"] =
            serde_json::to_value(devops_stack_core::k8s::ownership_labels("s", "m")).unwrap();
        a["status"] = json!({"sync": {"status": "Synced"}});
        a
    };
    let server = tokio::spawn(async move {
        srv.expect("GET", STATE).await.ok(state_with(json!([{"apiVersion": "v1", "kind": "ConfigMap", "namespace": "argocd", "name": "old", "hash": "h"}])));
        srv.expect("GET", "/api/v1").await.ok(core_resources());
        srv.expect("GET", "/api/v1/namespaces/argocd/secrets/creds")
            .await
            .ok(json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "creds", "namespace": "argocd"}, "data": {"password": "b2xk"}}));
        let dry = srv
            .expect("PATCH", "/api/v1/namespaces/argocd/secrets/creds")
            .await;
        assert_eq!(dry.q("dryRun"), Some("All"));
        let mut after = dry.body.clone();
        after["data"] = json!({"password": "bmV3"});
        after.as_object_mut().unwrap().remove("stringData");
        dry.ok(after);
        srv.expect("GET", "/apis/argoproj.io/v1alpha1")
            .await
            .ok(resources(
                "argoproj.io/v1alpha1",
                &[("applications", "Application", true)],
            ));
        let path = "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications/traefik";
        srv.expect("GET", path).await.ok(live_app.clone());
        let dry = srv.expect("PATCH", path).await;
        assert_eq!(dry.q("dryRun"), Some("All"));
        assert_eq!(dry.q("fieldManager"), Some("devops-stack"));
        // The server's answer: the live object with the applied fields merged in.
        let mut merged = live_app.clone();
        merged["spec"] = dry.body["spec"].clone();
        merged["metadata"]["labels"] = dry.body["metadata"]["labels"].clone();
        merged["metadata"]["annotations"] = dry.body["metadata"]["annotations"].clone();
        merged["metadata"]["resourceVersion"] = json!("13");
        dry.ok(merged);
        srv.expect("GET", "/api/v1/namespaces/argocd/configmaps/old")
            .await
            .ok(config_map("argocd", "old", json!({})));
        srv
    });
    let d = deployer(client, KubeOptions::default());
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds", "namespace": "argocd"}, "stringData": {"password": "new"}});
    let diff = d.diff(vec![secret, app(3)]).await.unwrap();
    let text = diff.to_text();
    let app_diff = diff.object("Application", "traefik").unwrap();
    assert_eq!(app_diff.action, DiffAction::Update);
    let paths: Vec<&str> = app_diff.changes.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(
        paths,
        ["spec.source.helm.valuesObject.deployment.replicas"],
        "one Helm value, one change: {text}"
    );
    assert!(
        text.contains("    spec.source.helm.valuesObject.deployment.replicas: 1 -> 3\n"),
        "{text}"
    );
    assert!(
        !text.contains("logs"),
        "unchanged values are not shown: {text}"
    );
    assert!(
        text.contains(
            "~ v1 Secret argocd/creds\n    data.password: \"<redacted>\" -> \"<redacted>\"\n"
        ),
        "{text}"
    );
    assert!(
        !text.contains("bmV3") && !text.contains("b2xk") && !text.contains("new\""),
        "{text}"
    );
    assert!(text.contains("- v1 ConfigMap argocd/old\n"), "{text}");
    assert!(
        text.ends_with("0 to create, 2 to update, 1 to delete, 0 unchanged\n"),
        "{text}"
    );
    drop(d);
    server.await.unwrap().done().await;
}

// ---------------------------------------------------------------------------------------------
// An in-memory API server for multi-run tests

/// Objects by path; every request logged as `METHOD path`.
#[derive(Clone, Default)]
struct Fake {
    objects: Arc<Mutex<BTreeMap<String, Value>>>,
    log: Arc<Mutex<Vec<String>>>,
    /// Paths whose next apply fails with 422.
    reject: Arc<Mutex<Vec<String>>>,
}

impl Fake {
    fn start() -> (kube::Client, Fake) {
        let (client, Server(mut handle)) = client();
        let fake = Fake::default();
        let f = fake.clone();
        tokio::spawn(async move {
            while let Some((req, reply)) = handle.next_request().await {
                let ex = exchange(req, reply).await;
                f.serve(ex);
            }
        });
        (client, fake)
    }

    fn take_log(&self) -> Vec<String> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }

    fn writes(log: &[String]) -> Vec<&String> {
        log.iter().filter(|l| !l.starts_with("GET ")).collect()
    }

    fn serve(&self, ex: Exchange) {
        let dry = if ex.q("dryRun").is_some() {
            " (dry run)"
        } else {
            ""
        };
        self.log
            .lock()
            .unwrap()
            .push(format!("{} {}{dry}", ex.method, ex.path));
        let mut objects = self.objects.lock().unwrap();
        match (ex.method.as_str(), ex.path.as_str()) {
            ("GET", "/api/v1") => ex.ok(core_resources()),
            ("GET", LEASE) => ex.not_found(),
            ("GET", p) if ex.q("fieldSelector").is_some() => {
                let name = ex
                    .q("fieldSelector")
                    .unwrap()
                    .trim_start_matches("metadata.name=");
                let items = objects
                    .get(&format!("{p}/{name}"))
                    .cloned()
                    .into_iter()
                    .collect();
                ex.ok(list(items));
            }
            ("GET", p) => match objects.get(p) {
                Some(o) => ex.ok(o.clone()),
                None => ex.not_found(),
            },
            ("PATCH", _) if ex.q("dryRun").is_some() => {
                // A dry run answers what the object would become, and stores nothing.
                let mut body = ex.body.clone();
                body["metadata"]["resourceVersion"] = json!("1");
                ex.ok(body);
            }
            ("PATCH", p) => {
                let rejected = {
                    let mut reject = self.reject.lock().unwrap();
                    let i = reject.iter().position(|r| r == p);
                    i.map(|i| reject.remove(i)).is_some()
                };
                if rejected {
                    return ex.respond(422, status(422, "Invalid", "rejected by the test"));
                }
                let mut body = ex.body.clone();
                body["metadata"]["resourceVersion"] = json!("1");
                objects.insert(p.to_owned(), body.clone());
                ex.ok(body);
            }
            ("DELETE", p) => match objects.remove(p) {
                Some(_) => ex.ok(status(200, "", "")),
                None => ex.not_found(),
            },
            (m, p) => panic!("the fake API server does not handle {m} {p}"),
        }
    }

    fn state(&self) -> Value {
        let cm = self
            .objects
            .lock()
            .unwrap()
            .get(STATE)
            .cloned()
            .expect("a state ConfigMap");
        serde_json::from_str(cm["data"]["m"].as_str().unwrap()).unwrap()
    }

    fn has(&self, path: &str) -> bool {
        self.objects.lock().unwrap().contains_key(path)
    }
}

fn objects(names: &[&str], value: &str) -> Vec<Value> {
    let mut v =
        vec![json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}})];
    v.extend(
        names
            .iter()
            .map(|n| config_map("demo", n, json!({"v": value}))),
    );
    v
}

#[tokio::test]
async fn an_unchanged_reapply_makes_no_write_request() {
    let (client, fake) = Fake::start();
    let d = deployer(client, KubeOptions::default());
    let first = d.apply(objects(&["a", "b"], "1")).await.unwrap();
    assert_eq!(first.changed.len(), 3);
    assert_eq!(
        Fake::writes(&fake.take_log()).len(),
        5,
        "intent + 3 objects + final state"
    );

    let again = d.apply(objects(&["a", "b"], "1")).await.unwrap();
    let log = fake.take_log();
    assert!(
        Fake::writes(&log).is_empty(),
        "writes on an unchanged re-apply: {log:?}"
    );
    assert_eq!(
        again.unchanged,
        ["Namespace demo", "ConfigMap demo/a", "ConfigMap demo/b"]
    );
    assert!(again.changed.is_empty());

    // One changed object: one object write, and the state's hash for it.
    let mut changed = objects(&["a", "b"], "1");
    changed[2]["data"]["v"] = json!("2");
    let third = d.apply(changed).await.unwrap();
    let log = fake.take_log();
    assert_eq!(
        Fake::writes(&log),
        [
            &"PATCH /api/v1/namespaces/demo/configmaps/b".to_owned(),
            &format!("PATCH {STATE}")
        ],
        "{log:?}"
    );
    assert_eq!(third.changed, ["ConfigMap demo/b"]);
}

#[tokio::test]
async fn objects_no_longer_rendered_are_pruned() {
    let (client, fake) = Fake::start();
    let d = deployer(client, KubeOptions::default());
    d.apply(objects(&["a", "b"], "1")).await.unwrap();
    assert!(fake.has("/api/v1/namespaces/demo/configmaps/b"));
    fake.take_log();
    let report = d.apply(objects(&["a"], "1")).await.unwrap();
    assert_eq!(report.pruned, ["ConfigMap demo/b"]);
    assert!(!fake.has("/api/v1/namespaces/demo/configmaps/b"));
    assert!(fake.has("/api/v1/namespaces/demo/configmaps/a"));
    let names: Vec<String> = fake.state()["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["demo", "a"]);
    assert_eq!(
        Fake::writes(&fake.take_log()),
        [
            &"DELETE /api/v1/namespaces/demo/configmaps/b".to_owned(),
            &format!("PATCH {STATE}")
        ]
    );
}

#[tokio::test]
async fn a_run_that_died_half_way_resumes() {
    let (client, fake) = Fake::start();
    let d = deployer(client, KubeOptions::default());
    fake.reject
        .lock()
        .unwrap()
        .push("/api/v1/namespaces/demo/configmaps/b".into());
    d.apply(objects(&["a", "b"], "1")).await.unwrap_err();
    // The inventory already names b, so nothing it might have created is untracked.
    let recorded: Vec<Value> = fake.state()["objects"].as_array().unwrap().clone();
    assert!(
        recorded
            .iter()
            .any(|o| o["name"] == "b" && o.get("hash").is_none()),
        "{recorded:?}"
    );
    fake.take_log();
    let report = d.apply(objects(&["a", "b"], "1")).await.unwrap();
    assert_eq!(
        report.unchanged,
        ["Namespace demo", "ConfigMap demo/a"],
        "already applied with the same hash"
    );
    assert_eq!(report.changed, ["ConfigMap demo/b"]);
    assert!(
        fake.state()["objects"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["hash"].is_string())
    );
    // Destroy removes everything, then the state.
    d.destroy().await.unwrap();
    assert!(
        !fake.has("/api/v1/namespaces/demo/configmaps/a") && !fake.has("/api/v1/namespaces/demo")
    );
    assert!(!fake.has(STATE));
    d.destroy().await.unwrap();
}

#[tokio::test]
async fn waits_end_when_the_run_is_cancelled_and_applications_wait_for_synced_and_healthy() {
    let (client, mut srv) = client();
    let apps = "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications";
    let app = |sync: &str, health: &str| {
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": "a", "namespace": "argocd", "resourceVersion": "3"},
            "status": {"sync": {"status": sync}, "health": {"status": health}}})
    };
    let server = tokio::spawn(async move {
        let discovery = resources(
            "argoproj.io/v1alpha1",
            &[("applications", "Application", true)],
        );
        first_apply(
            &mut srv,
            "/apis/argoproj.io/v1alpha1",
            discovery.clone(),
            &format!("{apps}/a"),
        )
        .await;
        // Synced but not yet healthy: the wait goes on until the run is cancelled.
        srv.expect("GET", apps)
            .await
            .ok(list(vec![app("Synced", "Progressing")]));
        let _watch = srv.expect("GET", apps).await;
        // Second run (answered as a fresh cluster): the Application is now healthy.
        first_apply(
            &mut srv,
            "/apis/argoproj.io/v1alpha1",
            discovery,
            &format!("{apps}/a"),
        )
        .await;
        srv.expect("GET", apps)
            .await
            .ok(list(vec![app("Synced", "Healthy")]));
        srv
    });
    let desired = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "a", "namespace": "argocd"}, "spec": {"project": "default"}});
    let cancel = tokio_util::sync::CancellationToken::new();
    let d = deployer(client.clone(), KubeOptions::default()).cancellation(cancel.clone());
    let c = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        c.cancel();
    });
    let e = d.apply(vec![desired.clone()]).await.unwrap_err();
    assert!(matches!(e, Error::Cancelled { .. }), "{e:?}");
    drop(d);
    let report = deployer(client, KubeOptions::default())
        .apply(vec![desired])
        .await
        .unwrap();
    assert_eq!(report.changed, ["Application argocd/a"]);
    server.await.unwrap().done().await;
}

#[tokio::test]
async fn a_scoped_lock_is_created_held_during_the_run_and_released() {
    let (client, mut srv) = client();
    let leases = LEASE.rsplit_once('/').unwrap().0;
    let server = tokio::spawn(async move {
        srv.expect("GET", LEASE).await.not_found();
        let create = srv.expect("POST", leases).await;
        assert_eq!(create.body["metadata"]["name"], "devops-stack-lock-s");
        assert_eq!(create.body["spec"]["leaseDurationSeconds"], 60);
        let holder = create.body["spec"]["holderIdentity"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut held = create.body.clone();
        held["metadata"]["resourceVersion"] = json!("1");
        create.ok(held.clone());
        srv.expect("GET", LEASE).await.ok(held);
        srv.expect("DELETE", LEASE).await.ok(status(200, "", ""));
        (srv, holder)
    });
    let seen = StackLock::scope(client, "s", &KubeOptions::default(), async |lock| {
        Ok(lock.holder().to_owned())
    })
    .await
    .unwrap();
    let (srv, holder) = server.await.unwrap();
    assert_eq!(seen, holder);
    srv.done().await;
}

// ---------------------------------------------------------------------------------------------
// A whole stack's diff against what is live

/// A cluster served by the fake API server.
#[derive(Clone)]
struct FakeCluster(kube::Client, &'static str);

impl std::fmt::Debug for FakeCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FakeCluster({})", self.1)
    }
}

impl devops_stack_core::interfaces::Cluster for FakeCluster {
    fn name(&self) -> &str {
        self.1
    }
    fn base_domain(&self) -> &str {
        "example.com"
    }
    fn client(
        &self,
    ) -> futures::future::BoxFuture<'_, Result<kube::Client, devops_stack_core::BoxError>> {
        Box::pin(async move { Ok(self.0.clone()) })
    }
}

/// Renders the given objects for its cluster and applies them through a `Deployer`.
struct Objects {
    id: &'static str,
    cluster: devops_stack_core::interfaces::ClusterRef,
    objects: Vec<Value>,
}

impl devops_stack_core::Module for Objects {
    type Output = ();
    fn id(&self) -> &str {
        self.id
    }
    fn kind(&self) -> &'static str {
        "objects"
    }
    async fn plan(
        &self,
        _: &devops_stack_core::Context,
    ) -> devops_stack_core::ModuleResult<devops_stack_core::Planned<()>> {
        let name = self.cluster.name().to_owned();
        Ok(devops_stack_core::Planned::new(()).with_resources(
            self.objects
                .iter()
                .map(|o| devops_stack_core::Resource::kubernetes(&name, o)),
        ))
    }
    async fn apply(&self, ctx: &devops_stack_core::Context) -> devops_stack_core::ModuleResult<()> {
        Deployer::for_module(ctx, &self.cluster)
            .await?
            .apply(self.objects.clone())
            .await?;
        Ok(())
    }
    async fn destroy(
        &self,
        ctx: &devops_stack_core::Context,
    ) -> devops_stack_core::ModuleResult<()> {
        Deployer::for_module(ctx, &self.cluster)
            .await?
            .destroy()
            .await?;
        Ok(())
    }
}

fn two_module_stack(client: &kube::Client, web_value: &str) -> devops_stack_core::BuiltStack {
    use std::sync::Arc;
    let here: devops_stack_core::interfaces::ClusterRef =
        Arc::new(FakeCluster(client.clone(), "here"));
    let elsewhere: devops_stack_core::interfaces::ClusterRef =
        Arc::new(FakeCluster(client.clone(), "elsewhere"));
    let mut s = devops_stack_core::Stack::new("s");
    s.add(Objects {
        id: "web",
        cluster: here.clone(),
        objects: objects(&["a", "b"], web_value),
    });
    s.add(Objects {
        id: "db",
        cluster: here,
        objects: vec![config_map("demo", "db", json!({"v": "1"}))],
    });
    s.add(Objects {
        id: "remote",
        cluster: elsewhere,
        objects: vec![config_map("demo", "r", json!({"v": "1"}))],
    });
    s.build().unwrap()
}

#[tokio::test]
async fn a_stack_diff_shows_what_an_apply_would_change_and_writes_nothing() {
    use devops_stack_core::RunOptions;
    let (client, fake) = Fake::start();
    let options = KubeOptions {
        wait: false,
        ..KubeOptions::default()
    };
    let here: devops_stack_core::interfaces::ClusterRef =
        std::sync::Arc::new(FakeCluster(client.clone(), "here"));

    // Apply web and db for real on "here" (the remote module's cluster is not reachable).
    let first = two_module_stack(&client, "1");
    for id in ["web", "db"] {
        let d = Deployer::new(client.clone(), "s", id, options.clone());
        let plan = first.plan().await.unwrap();
        let objects = plan
            .module(id)
            .unwrap()
            .resources
            .iter()
            .map(|r| r.as_kubernetes().unwrap().clone())
            .collect();
        d.apply(objects).await.unwrap();
    }
    fake.take_log();

    // One value of one ConfigMap of web changes.
    let next = two_module_stack(&client, "2");
    let live = next.read(&RunOptions::new()).await.unwrap();
    let diff = devops_stack_core::k8s::diff_stack(&next, &live, &[here], &options)
        .await
        .unwrap();

    let web = diff.module("web").unwrap();
    let changed: Vec<String> = web
        .objects
        .iter()
        .filter(|o| o.action != DiffAction::Unchanged)
        .map(|o| o.object.to_string())
        .collect();
    assert_eq!(changed, ["v1 ConfigMap demo/a", "v1 ConfigMap demo/b"]);
    let a = web.object("ConfigMap", "a").unwrap();
    assert_eq!(
        a.changes
            .iter()
            .map(|c| c.path.as_str())
            .collect::<Vec<_>>(),
        ["data.v"]
    );
    assert!(diff.module("db").unwrap().is_empty());
    assert_eq!(diff.not_compared.len(), 1);
    assert_eq!(
        (
            diff.not_compared[0].module.as_str(),
            diff.not_compared[0].objects
        ),
        ("remote", 1)
    );
    assert!(!diff.is_empty());
    let text = diff.to_text();
    assert!(text.contains("[web] on cluster `here`"), "{text}");
    assert!(text.contains("data.v: \"1\" -> \"2\""), "{text}");
    assert!(text.contains("unchanged: db"), "{text}");

    let log = fake.take_log();
    let writes = Fake::writes(&log);
    assert!(
        !writes.is_empty() && writes.iter().all(|w| w.ends_with("(dry run)")),
        "{log:?}"
    );
    assert!(
        fake.objects
            .lock()
            .unwrap()
            .values()
            .all(|o| o["data"]["v"] != "2"),
        "a dry run stored something"
    );
}
