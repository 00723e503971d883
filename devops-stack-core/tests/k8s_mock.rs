//! Request-level tests of the Kubernetes engine.
//!
//! Most run against `FakeApi` (`devops_stack_test::fake_api`), an in-memory API server that models
//! server-side apply, field ownership (`managedFields`), preconditions, finalizers and namespace
//! deletion as a kube-apiserver 1.28 does. The engine reads and writes in parallel, so these
//! tests check what its requests did, and the order of requests only where the engine promises
//! one (the inventory before the first write; CRDs, then Namespaces, then the rest;
//! Applications before what they deployed). A few scripted exchanges (`tower_test`) check what
//! an in-memory server does not play: a lock held by another run, retried transient faults, and
//! waits that time out or are cancelled.

use devops_stack_test::fake_api;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use devops_stack_core::Error;
use devops_stack_core::argocd::RESOURCES_FINALIZER;
use devops_stack_core::k8s::{
    Deployer, DiffAction, HASH_ANNOTATION, KubeError, KubeOptions, MODULE_LABEL, Retry,
    STACK_LABEL, StackLock,
};
use fake_api::{FakeApi, NamespaceDeletion, writes};
use http::{Request, Response};
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock;

// ---------------------------------------------------------------------------------------------
// Scripted exchanges

const LEASE: &str =
    "/apis/coordination.k8s.io/v1/namespaces/devops-stack-system/leases/devops-stack-lock-s";
const STATE: &str = "/api/v1/namespaces/devops-stack-system/configmaps/devops-stack-state-s";

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
    assert!(
        matches!(e.kubernetes(), Some(KubeError::NotReady { .. })),
        "{e:?}"
    );
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
// Against FakeApi

const APP: &str = "argoproj.io/v1alpha1";
const CRDS: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";

fn no_wait() -> KubeOptions {
    KubeOptions {
        wait: false,
        ..KubeOptions::default()
    }
}

/// A request as the engine sent it.
#[derive(Debug, Clone)]
struct Sent {
    method: String,
    path: String,
    query: HashMap<String, String>,
    content_type: String,
    body: Value,
}

impl Sent {
    fn q(&self, key: &str) -> Option<&str> {
        self.query.get(key).map(String::as_str)
    }

    fn is(&self, method: &str, path: &str) -> bool {
        self.method == method && self.path == path
    }

    /// A write that changes something (not a dry run, not a read).
    fn writes(&self) -> bool {
        self.method != "GET" && self.q("dryRun").is_none()
    }
}

/// The requests a [`recording`] client sent so far.
type SentLog = Arc<Mutex<Vec<Sent>>>;

/// A client of `fake` that also keeps every request it sends, body and headers included.
fn recording(fake: &FakeApi) -> (kube::Client, SentLog) {
    let sent: SentLog = Arc::default();
    let (fake, log) = (fake.clone(), sent.clone());
    let service = tower::service_fn(move |req: Request<Body>| {
        let (fake, log) = (fake.clone(), log.clone());
        async move {
            let (parts, body) = req.into_parts();
            let bytes = body.collect_bytes().await?;
            log.lock().unwrap().push(Sent {
                method: parts.method.to_string(),
                path: parts.uri.path().to_owned(),
                query: parts.uri.query().map(parse_query).unwrap_or_default(),
                content_type: parts
                    .headers
                    .get("content-type")
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default(),
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            });
            fake.serve(Request::from_parts(parts, Body::from(bytes.to_vec())))
                .await
        }
    });
    (kube::Client::new(service, "default"), sent)
}

fn taken(sent: &SentLog) -> Vec<Sent> {
    std::mem::take(&mut *sent.lock().unwrap())
}

/// Where the first request matching `f` is in `sent`.
fn index(sent: &[Sent], what: &str, f: impl Fn(&Sent) -> bool) -> usize {
    sent.iter()
        .position(f)
        .unwrap_or_else(|| panic!("no {what} in {:#?}", lines(sent)))
}

fn lines(sent: &[Sent]) -> Vec<String> {
    sent.iter()
        .map(|s| format!("{} {} {:?}", s.method, s.path, s.query))
        .collect()
}

/// The write requests of a FakeApi log, without their queries.
fn written(log: &[String]) -> Vec<String> {
    writes(log)
        .into_iter()
        .map(|l| l.split('?').next().unwrap().to_owned())
        .collect()
}

fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

/// The stack's state ConfigMap, if there is one.
fn state_of(fake: &FakeApi) -> Option<Value> {
    fake.get(
        "v1",
        "ConfigMap",
        "devops-stack-system",
        "devops-stack-state-s",
    )
}

/// The names of the objects the module's inventory records, in order.
async fn recorded_names(d: &Deployer) -> Vec<String> {
    d.recorded()
        .await
        .unwrap()
        .unwrap()
        .objects
        .into_iter()
        .map(|e| e.object.name)
        .collect()
}

#[tokio::test]
async fn first_apply_is_server_side_apply_namespaces_first_with_inventory() {
    let fake = FakeApi::new();
    let (client, sent) = recording(&fake);
    let d = deployer(client, KubeOptions::default());
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "demo", "labels": {"keep": "me"}}, "data": {"k": "v"}});
    let report = d.apply(vec![cm, namespace("demo")]).await.unwrap();
    assert_eq!(report.changed, ["Namespace demo", "ConfigMap demo/cm"]);
    assert!(report.unchanged.is_empty() && report.pruned.is_empty());

    let sent = taken(&sent);
    let ns_path = "/api/v1/namespaces/demo";
    let cm_path = "/api/v1/namespaces/demo/configmaps/cm";
    for path in [ns_path, cm_path] {
        let apply = &sent[index(&sent, path, |s| s.is("PATCH", path))];
        assert_eq!(apply.content_type, "application/apply-patch+yaml");
        assert_eq!(apply.q("fieldManager"), Some("devops-stack"));
        assert_eq!(
            apply.q("force"),
            None,
            "conflicts are not forced by default"
        );
        let meta = &apply.body["metadata"];
        assert_eq!(meta["labels"][STACK_LABEL], "s");
        assert_eq!(meta["labels"][MODULE_LABEL], "m");
        assert!(
            meta["annotations"][HASH_ANNOTATION]
                .as_str()
                .is_some_and(|h| h.len() == 64),
            "{meta}"
        );
    }
    let ns_at = index(&sent, "namespace apply", |s| s.is("PATCH", ns_path));
    let cm_at = index(&sent, "configmap apply", |s| s.is("PATCH", cm_path));
    assert!(ns_at < cm_at, "namespaces first: {:#?}", lines(&sent));

    // The inventory is recorded, by the module's own manager, before the first object is written.
    let intent_at = index(&sent, "state write", |s| s.is("PATCH", STATE));
    assert!(intent_at < ns_at, "{:#?}", lines(&sent));
    let intent = &sent[intent_at];
    assert_eq!(intent.q("fieldManager"), Some("devops-stack/m"));
    assert_eq!(intent.q("force"), Some("true"));
    let entry: Value = serde_json::from_str(intent.body["data"]["m"].as_str().unwrap()).unwrap();
    let objects = entry["objects"].as_array().unwrap();
    assert_eq!(
        objects.len(),
        2,
        "both objects before the first write: {entry}"
    );
    assert!(objects.iter().all(|o| o.get("hash").is_none()), "{entry}");

    // At the end: each object with the hash of what was applied and its fields' fingerprint.
    let state = d.recorded().await.unwrap().unwrap();
    let kinds: Vec<&str> = state
        .objects
        .iter()
        .map(|e| e.object.kind.as_str())
        .collect();
    assert_eq!(kinds, ["Namespace", "ConfigMap"]);
    let live = fake.get("v1", "ConfigMap", "demo", "cm").unwrap();
    assert_eq!(live["data"], json!({"k": "v"}));
    assert_eq!(
        live["metadata"]["labels"]["keep"], "me",
        "the object's own labels are kept"
    );
    assert_eq!(
        state.objects[1].hash.as_deref(),
        live["metadata"]["annotations"][HASH_ANNOTATION].as_str()
    );
    assert!(
        state.objects.iter().all(|e| e.fields.is_some()),
        "{state:?}"
    );
    let managers: Vec<(&str, &str)> = live["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["manager"].as_str().unwrap(),
                m["operation"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(managers, [("devops-stack", "Apply")]);
}

fn crd() -> Value {
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced", "names": {"plural": "widgets", "kind": "Widget"},
                 "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}})
}

#[tokio::test]
async fn crds_go_first_then_namespaces_and_are_waited_for_until_established() {
    // The CRD is Established only at the third read of CRDs after its creation.
    let fake = FakeApi::new().crds_established_after_reads(3);
    let (client, sent) = recording(&fake);
    let widget = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "demo"}, "spec": {"size": 1}});
    let report = deployer(client, no_wait())
        .apply(vec![
            widget,
            config_map("demo", "cm", json!({})),
            namespace("demo"),
            crd(),
        ])
        .await
        .unwrap();
    assert_eq!(report.changed.len(), 4, "{report:?}");
    assert!(fake.get("example.com/v1", "Widget", "demo", "w").is_some());

    let sent = taken(&sent);
    let patch = |path: &str| index(&sent, path, |s| s.is("PATCH", path) && s.writes());
    let crd_at = patch(&format!("{CRDS}/widgets.example.com"));
    let ns_at = patch("/api/v1/namespaces/demo");
    let widget_at = patch("/apis/example.com/v1/namespaces/demo/widgets/w");
    let cm_at = patch("/api/v1/namespaces/demo/configmaps/cm");
    assert!(
        crd_at < ns_at && ns_at < widget_at && ns_at < cm_at,
        "CRDs, then namespaces, then the rest: {:#?}",
        lines(&sent)
    );
    // Between the CRD's apply and the first custom resource: the wait (reads of the CRD until
    // it is Established), then the discovery of its kind.
    let between = &sent[crd_at + 1..widget_at];
    let crd_reads = between
        .iter()
        .filter(|s| s.method == "GET" && s.path.starts_with(CRDS))
        .count();
    assert!(crd_reads >= 3, "{:#?}", lines(&sent));
    assert!(
        between.iter().any(|s| s.is("GET", "/apis/example.com/v1")),
        "the new kind is discovered once the CRD is Established: {:#?}",
        lines(&sent)
    );
    let established = fake
        .get(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            None,
            "widgets.example.com",
        )
        .unwrap();
    assert!(
        established["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Established" && c["status"] == "True")
    );
}

#[tokio::test]
async fn a_field_manager_conflict_is_a_typed_error_unless_forced() {
    let fake = FakeApi::new();
    let cm = |v: &str| vec![namespace("demo"), config_map("demo", "cm", json!({"k": v}))];
    deployer(fake.client(), no_wait())
        .apply(cm("v"))
        .await
        .unwrap();
    fake.edit(
        "v1",
        "ConfigMap",
        "demo",
        "cm",
        json!({"data": {"k": "edited"}}),
        "kubectl-edit",
    )
    .unwrap();

    // The module now renders another value for the field another manager took: a conflict,
    // not a silent takeover (only an unchanged rendering is put back by force, as drift).
    let e = deployer(fake.client(), no_wait())
        .apply(cm("v2"))
        .await
        .unwrap_err();
    match e.kubernetes() {
        Some(KubeError::FieldConflict {
            object,
            managers,
            detail,
        }) => {
            assert_eq!(object, "v1 ConfigMap demo/cm");
            assert_eq!(managers, &["kubectl-edit"]);
            assert!(detail.contains(".data.k"), "{detail}");
        }
        other => panic!("expected a field conflict, got {other:?}"),
    }
    assert!(
        e.to_string().contains("force_conflicts"),
        "the message says how to fix it: {e}"
    );
    let live = fake.get("v1", "ConfigMap", "demo", "cm").unwrap();
    assert_eq!(live["data"]["k"], "edited");

    fake.take_log();
    let forced = KubeOptions {
        force_conflicts: true,
        ..no_wait()
    };
    let report = deployer(fake.client(), forced)
        .apply(cm("v2"))
        .await
        .unwrap();
    assert_eq!(report.changed, ["ConfigMap demo/cm"]);
    let log = fake.take_log();
    assert!(
        log.iter().any(
            |l| l.starts_with("PATCH /api/v1/namespaces/demo/configmaps/cm?")
                && l.contains("force=true")
        ),
        "{log:#?}"
    );
    let live = fake.get("v1", "ConfigMap", "demo", "cm").unwrap();
    assert_eq!(live["data"]["k"], "v2");
    let owners: Vec<&str> = live["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["fieldsV1"]["f:data"]["f:k"].is_object())
        .map(|m| m["manager"].as_str().unwrap())
        .collect();
    assert_eq!(owners, ["devops-stack"], "the field was taken over");
}

/// A fake with Argo CD's CRDs, its `argocd` namespace and its controller.
fn argocd() -> FakeApi {
    let fake = FakeApi::new().with_argocd_crds().with_argocd_controller();
    fake.insert(namespace("argocd"));
    fake.take_log();
    fake
}

#[tokio::test]
async fn destroy_deletes_applications_first_with_the_argo_cd_finalizer_then_the_rest() {
    let fake = argocd();
    let app = json!({"apiVersion": APP, "kind": "Application", "metadata": {"name": "app", "namespace": "argocd"},
        "spec": {"project": "default", "destination": {"server": "https://kubernetes.default.svc", "namespace": "demo"}}});
    let objects = vec![namespace("demo"), config_map("demo", "cm", json!({})), app];
    let options = KubeOptions::default().wait_timeout(Duration::from_secs(10));
    deployer(fake.client(), options.clone())
        .apply(objects)
        .await
        .unwrap();

    let (client, sent) = recording(&fake);
    let d = deployer(client, options);
    let mut report = d.destroy().await.unwrap();
    report.deleted.sort();
    assert_eq!(
        report.deleted,
        [
            "Application argocd/app",
            "ConfigMap demo/cm",
            "Namespace demo"
        ]
    );
    let sent = taken(&sent);
    let app_path = "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications/app";
    let fin_at = index(&sent, "the finalizer", |s| s.is("PATCH", app_path));
    let fin = &sent[fin_at];
    assert_eq!(fin.content_type, "application/merge-patch+json");
    assert_eq!(
        fin.body["metadata"]["finalizers"],
        json!([RESOURCES_FINALIZER])
    );
    assert!(
        fin.body["metadata"]["resourceVersion"].is_string(),
        "conditional on what was read: {}",
        fin.body
    );
    let app_at = index(&sent, "the Application's delete", |s| {
        s.is("DELETE", app_path)
    });
    let cm_at = index(&sent, "the ConfigMap's delete", |s| {
        s.is("DELETE", "/api/v1/namespaces/demo/configmaps/cm")
    });
    let ns_at = index(&sent, "the namespace's delete", |s| {
        s.is("DELETE", "/api/v1/namespaces/demo")
    });
    assert!(
        fin_at < app_at && app_at < cm_at && app_at < ns_at,
        "the finalizer, the Application, then what it deployed: {:#?}",
        lines(&sent)
    );
    assert!(
        sent[app_at + 1..cm_at.min(ns_at)]
            .iter()
            .any(|s| s.method == "GET" && s.path.starts_with("/apis/argoproj.io/")),
        "the Application is waited for until gone: {:#?}",
        lines(&sent)
    );
    for del in sent
        .iter()
        .filter(|s| s.method == "DELETE" && s.path != STATE)
    {
        let pre = &del.body["preconditions"];
        assert!(
            pre["uid"].is_string() && pre["resourceVersion"].is_string(),
            "{} {}: {}",
            del.method,
            del.path,
            del.body
        );
    }
    assert!(fake.get(APP, "Application", "argocd", "app").is_none());
    assert!(fake.get("v1", "Namespace", None, "demo").is_none());
    assert!(
        state_of(&fake).is_none(),
        "the state goes with its last module"
    );
    // Safe to run again.
    assert_eq!(d.destroy().await.unwrap(), Default::default());
}

#[tokio::test]
async fn a_namespace_stuck_in_finalizers_is_reported_by_name() {
    let fake = FakeApi::new().namespace_deletion(NamespaceDeletion::Manual);
    let objects = vec![namespace("demo"), config_map("demo", "cm", json!({}))];
    deployer(fake.client(), no_wait())
        .apply(objects)
        .await
        .unwrap();
    // The namespace controller says what it is waiting for once the namespace is deleted.
    let controller = {
        let fake = fake.clone();
        tokio::spawn(async move {
            loop {
                let ns = fake.get("v1", "Namespace", None, "demo").unwrap();
                if ns["metadata"]["deletionTimestamp"].is_string() {
                    fake.set_status("v1", "Namespace", None, "demo", json!({"phase": "Terminating", "conditions": [
                        {"type": "NamespaceContentRemaining", "status": "True",
                         "message": "Some resources are remaining: widgets.example.com has 1 resource instances"}]}));
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    // Outside a stack run, the deployer waits for its namespaces itself.
    let d = deployer(
        fake.client(),
        KubeOptions::default().wait_timeout(Duration::from_millis(400)),
    );
    let e = d.destroy().await.unwrap_err();
    controller.await.unwrap();
    match e.kubernetes() {
        Some(KubeError::NamespaceStuck { namespaces, .. }) => {
            assert_eq!(namespaces.len(), 1, "{e}");
            assert_eq!(namespaces[0].0, "demo");
            assert!(
                namespaces[0].1.contains("finalizers [kubernetes]")
                    && namespaces[0].1.contains("widgets.example.com has 1"),
                "{e}"
            );
        }
        other => panic!("expected a stuck namespace, got {other:?}"),
    }
    assert!(e.to_string().contains("demo"), "{e}");

    // Once the namespace controller is done, destroying again finishes the job.
    fake.finish_namespace_deletions();
    d.destroy().await.unwrap();
    assert!(fake.get("v1", "Namespace", None, "demo").is_none());
    assert!(state_of(&fake).is_none());
}

#[tokio::test]
async fn diff_is_a_dry_run_shown_field_by_field_with_secrets_redacted() {
    let fake = FakeApi::new().with_argocd_crds();
    fake.insert(namespace("argocd"));
    let app = |replicas: i64| {
        json!({"apiVersion": APP, "kind": "Application", "metadata": {"name": "traefik", "namespace": "argocd"},
            "spec": {"project": "default", "source": {"repoURL": "https://traefik.github.io/charts", "chart": "traefik",
                "helm": {"valuesObject": {"deployment": {"replicas": replicas}, "logs": {"level": "INFO"}}}}}})
    };
    let secret = |password: &str| json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds", "namespace": "argocd"}, "stringData": {"password": password}});
    deployer(fake.client(), no_wait())
        .apply(vec![
            secret("hunter2-before"),
            app(1),
            config_map("argocd", "old", json!({})),
        ])
        .await
        .unwrap();
    // Argo CD's status in the main object is not a change.
    fake.mark_applications(true, true);
    let before = fake.names();

    let (client, sent) = recording(&fake);
    let diff = deployer(client, no_wait())
        .diff(vec![secret("hunter2-after"), app(3)])
        .await
        .unwrap();
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
    let json = serde_json::to_string(&diff).unwrap();
    use base64::Engine as _;
    for secret in ["hunter2-before", "hunter2-after"] {
        let encoded = base64::engine::general_purpose::STANDARD.encode(secret);
        for shown in [&text, &json] {
            assert!(
                !shown.contains(secret) && !shown.contains(&encoded) && !shown.contains("hunter2"),
                "{shown}"
            );
        }
    }
    assert!(text.contains("- v1 ConfigMap argocd/old\n"), "{text}");
    assert!(
        text.ends_with("0 to create, 2 to update, 1 to delete, 0 unchanged\n"),
        "{text}"
    );

    // Compared through dry runs; nothing written.
    let sent = taken(&sent);
    assert!(
        sent.iter()
            .any(|s| s.method == "PATCH" && s.q("dryRun") == Some("All")),
        "{:#?}",
        lines(&sent)
    );
    let writes: Vec<&Sent> = sent.iter().filter(|s| s.writes()).collect();
    assert!(writes.is_empty(), "{writes:#?}");
    assert_eq!(fake.names(), before);
    let live = fake.get(APP, "Application", "argocd", "traefik").unwrap();
    assert_eq!(
        live["spec"]["source"]["helm"]["valuesObject"]["deployment"]["replicas"],
        1
    );
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

/// The hash the module's inventory records for `name`.
async fn recorded_hash(d: &Deployer, name: &str) -> Option<String> {
    let state = d.recorded().await.unwrap().unwrap();
    state
        .objects
        .into_iter()
        .find(|e| e.object.name == name)?
        .hash
}

#[tokio::test]
async fn an_unchanged_reapply_makes_no_write_request() {
    let fake = FakeApi::new();
    let d = deployer(fake.client(), KubeOptions::default());
    let first = d.apply(objects(&["a", "b"], "1")).await.unwrap();
    assert_eq!(first.changed.len(), 3);
    let log = fake.take_log();
    let cm = "/api/v1/namespaces/demo/configmaps";
    let mut first_writes = written(&log);
    // The ConfigMaps are written in parallel, in either order.
    first_writes[4..6].sort();
    assert_eq!(
        first_writes,
        [
            format!("PATCH {STATE}"),
            "PATCH /api/v1/namespaces/devops-stack-system".to_owned(),
            format!("PATCH {STATE}"),
            "PATCH /api/v1/namespaces/demo".to_owned(),
            format!("PATCH {cm}/a"),
            format!("PATCH {cm}/b"),
            format!("PATCH {STATE}"),
        ],
        "the inventory (the state's namespace created on the way), the namespace, the ConfigMaps, \
         the final state: {log:#?}"
    );

    let again = d.apply(objects(&["a", "b"], "1")).await.unwrap();
    let log = fake.take_log();
    assert_eq!(written(&log), Vec::<String>::new(), "{log:#?}");
    assert_eq!(
        again.unchanged,
        ["Namespace demo", "ConfigMap demo/a", "ConfigMap demo/b"]
    );
    assert!(again.changed.is_empty());

    // One changed object: one object write, and the state's hash for it.
    let old_hash = recorded_hash(&d, "b").await;
    let mut changed = objects(&["a", "b"], "1");
    changed[2]["data"]["v"] = json!("2");
    let third = d.apply(changed).await.unwrap();
    let log = fake.take_log();
    assert_eq!(
        written(&log),
        [format!("PATCH {cm}/b"), format!("PATCH {STATE}")],
        "{log:#?}"
    );
    assert_eq!(third.changed, ["ConfigMap demo/b"]);
    assert_ne!(recorded_hash(&d, "b").await, old_hash);
    assert_eq!(
        fake.get("v1", "ConfigMap", "demo", "b").unwrap()["data"]["v"],
        "2"
    );
}

#[tokio::test]
async fn objects_no_longer_rendered_are_pruned() {
    let fake = FakeApi::new();
    let d = deployer(fake.client(), KubeOptions::default());
    d.apply(objects(&["a", "b"], "1")).await.unwrap();
    assert!(fake.get("v1", "ConfigMap", "demo", "b").is_some());
    fake.take_log();
    let report = d.apply(objects(&["a"], "1")).await.unwrap();
    assert_eq!(report.pruned, ["ConfigMap demo/b"]);
    assert_eq!(report.unchanged, ["Namespace demo", "ConfigMap demo/a"]);
    assert!(fake.get("v1", "ConfigMap", "demo", "b").is_none());
    assert!(fake.get("v1", "ConfigMap", "demo", "a").is_some());
    assert_eq!(recorded_names(&d).await, ["demo", "a"]);
    assert_eq!(
        written(&fake.take_log()),
        [
            "DELETE /api/v1/namespaces/demo/configmaps/b".to_owned(),
            format!("PATCH {STATE}")
        ]
    );
}

#[tokio::test]
async fn a_run_that_died_half_way_resumes() {
    let fake = FakeApi::new();
    let d = deployer(fake.client(), KubeOptions::default());
    fake.fail_next("PATCH", "/api/v1/namespaces/demo/configmaps/b", 422);
    let e = d.apply(objects(&["a", "b"], "1")).await.unwrap_err();
    assert!(e.to_string().contains("ConfigMap demo/b"), "{e}");
    let log = fake.take_log();
    let first_state = log
        .iter()
        .position(|l| l.starts_with(&format!("PATCH {STATE}")))
        .unwrap();
    let first_object = log
        .iter()
        .position(|l| l.starts_with("PATCH /api/v1/namespaces/demo"))
        .unwrap();
    assert!(first_state < first_object, "{log:#?}");
    // The inventory already names b, so nothing it might have created is untracked.
    let recorded = d.recorded().await.unwrap().unwrap();
    let b = recorded
        .objects
        .iter()
        .find(|e| e.object.name == "b")
        .unwrap_or_else(|| panic!("{recorded:?}"));
    assert_eq!(b.hash, None, "recorded, not applied: {recorded:?}");
    assert!(fake.get("v1", "ConfigMap", "demo", "b").is_none());

    let report = d.apply(objects(&["a", "b"], "1")).await.unwrap();
    assert!(
        report.changed.contains(&"ConfigMap demo/b".to_owned()),
        "{report:?}"
    );
    assert!(fake.get("v1", "ConfigMap", "demo", "b").is_some());
    let recorded = d.recorded().await.unwrap().unwrap();
    assert_eq!(recorded.objects.len(), 3);
    assert!(
        recorded
            .objects
            .iter()
            .all(|e| e.hash.is_some() && e.fields.is_some()),
        "{recorded:?}"
    );
    // A third run has nothing left to do.
    fake.take_log();
    d.apply(objects(&["a", "b"], "1")).await.unwrap();
    assert_eq!(written(&fake.take_log()), Vec::<String>::new());

    // Destroy removes everything, then the state; and is safe to run again.
    d.destroy().await.unwrap();
    assert!(fake.get("v1", "Namespace", None, "demo").is_none());
    assert!(fake.get("v1", "ConfigMap", "demo", "a").is_none());
    assert!(state_of(&fake).is_none());
    d.destroy().await.unwrap();
}

#[tokio::test]
async fn a_stack_diff_shows_what_an_apply_would_change_and_writes_nothing() {
    use devops_stack_core::RunOptions;
    let fake = FakeApi::new();
    let client = fake.client();
    let options = no_wait();
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
    let dry_runs = writes(&log);
    assert!(
        !dry_runs.is_empty()
            && dry_runs
                .iter()
                .all(|w| w.starts_with("PATCH ") && w.contains("dryRun=All")),
        "{log:#?}"
    );
    let live: Vec<Value> = fake
        .list("v1", "ConfigMap", "demo")
        .into_iter()
        .filter(|o| o["metadata"]["name"] != "kube-root-ca.crt")
        .collect();
    assert_eq!(live.len(), 3, "{live:?}");
    assert!(
        live.iter().all(|o| o["data"]["v"] == "1"),
        "a dry run stored something: {live:?}"
    );
}
