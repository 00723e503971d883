//! Shared parts of the live tier (tests and benchmarks run against a real API server): the gate
//! on `DEVOPS_STACK_TEST_KUBECONFIG`, a cluster whose client counts its requests by verb, a sweep
//! of every served kind for objects carrying a label, and clean-up that runs even when a test's
//! assertions fail.
//!
//! Used by the live tests of `devops-stack-core`, `devops-stack-modules` and the root crate, and
//! by the live benchmarks; each uses part of it.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use devops_stack_core::BoxError;
use devops_stack_core::clusters::LocalCluster;
use devops_stack_core::interfaces::Cluster;
use futures::FutureExt as _;
use futures::future::BoxFuture;
use http::Request;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::client::{Body, ClientBuilder};
use kube::discovery::{ApiResource, Discovery, Scope, verbs};
use serde_json::json;

/// The value of the environment variable `var`, which `scripts/test.sh` sets when it has started
/// what a live test needs.
///
/// # Panics
/// When `var` is unset or empty, naming it and `how` to set it: a live test is marked
/// `#[ignore = "needs ..."]`, so that `cargo test` reports it ignored; run anyway
/// (`--include-ignored`) without what it needs, it fails instead of passing having done nothing.
pub fn required_var(var: &str, how: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!("{var} is not set: {how}"),
    }
}

/// The test cluster's kubeconfig (`DEVOPS_STACK_TEST_KUBECONFIG`).
///
/// # Panics
/// When the variable is unset, saying how to set it (see [`required_var`]).
pub fn kubeconfig() -> PathBuf {
    required_var(
        "DEVOPS_STACK_TEST_KUBECONFIG",
        "scripts/test.sh starts a cluster and sets it; or `bash scripts/testenv.sh start --name NAME --no-argocd` \
         and `eval \"$(bash scripts/testenv.sh env --name NAME)\"`, or point it at a kubeconfig",
    )
    .into()
}

/// `prefix-xxxxxxxx`: a name no other run uses (the cluster is shared).
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::random::<u32>())
}

/// The cluster of a kubeconfig file, named `test`.
pub fn local(path: PathBuf) -> LocalCluster {
    LocalCluster {
        name: "test".into(),
        base_domain: "example.com".into(),
        kubeconfig: path,
        context: None,
    }
}

/// A plain client for the test's own reads and writes (not counted).
pub async fn helper_client(path: PathBuf) -> kube::Client {
    local(path)
        .connect()
        .await
        .expect("a client for the test cluster")
}

/// What a request did, from its method, path and query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// `/api`, `/apis`, `/version`, `/api/v1`, `/apis/<group>[/<version>]`.
    Discovery,
    /// A GET of one object.
    Get,
    /// A GET of a collection.
    List,
    /// A GET of a collection with `watch=true`.
    Watch,
    /// Anything but a GET (create, apply, update, patch, delete), dry runs included.
    Write,
}

/// Classifies a request by method and URL.
pub fn classify(method: &http::Method, path: &str, query: &str) -> Verb {
    if method != http::Method::GET {
        return Verb::Write;
    }
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    // What comes after `/api/v1` or `/apis/<group>/<version>`.
    let rest = match segments.first() {
        Some(&"api") if segments.len() >= 2 => &segments[2..],
        Some(&"apis") if segments.len() >= 3 => &segments[3..],
        _ => return Verb::Discovery,
    };
    let collection = match rest {
        [] => return Verb::Discovery,
        ["namespaces", _, _] => true,
        ["namespaces", _, _, ..] => false,
        [_] => true,
        _ => false,
    };
    if !collection {
        Verb::Get
    } else if query
        .split('&')
        .any(|kv| kv == "watch=true" || kv == "watch=1")
    {
        Verb::Watch
    } else {
        Verb::List
    }
}

/// Requests counted by [`Verb`] since the last [`Counting::take`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Discovery requests.
    pub discovery: usize,
    /// GETs of one object.
    pub get: usize,
    /// GETs of a collection.
    pub list: usize,
    /// Watches.
    pub watch: usize,
    /// Everything but GET.
    pub write: usize,
}

impl Counts {
    fn add(&mut self, verb: Verb) {
        match verb {
            Verb::Discovery => self.discovery += 1,
            Verb::Get => self.get += 1,
            Verb::List => self.list += 1,
            Verb::Watch => self.watch += 1,
            Verb::Write => self.write += 1,
        }
    }
}

/// A cluster whose client counts the requests it sends, by [`Verb`], and logs the writes.
#[derive(Clone)]
pub struct Counting {
    /// The counting client.
    pub client: kube::Client,
    counts: Arc<Mutex<(Counts, Vec<String>)>>,
}

impl Counting {
    /// A counting client for the cluster of the kubeconfig file `path`.
    pub async fn new(path: PathBuf) -> Counting {
        let config = local(path).config().await.expect("the test kubeconfig");
        let counts: Arc<Mutex<(Counts, Vec<String>)>> = Arc::default();
        let c = Arc::clone(&counts);
        let layer = tower::util::MapRequestLayer::new(move |req: Request<Body>| {
            let uri = req.uri();
            let verb = classify(req.method(), uri.path(), uri.query().unwrap_or(""));
            let mut c = c.lock().unwrap();
            c.0.add(verb);
            if verb == Verb::Write {
                c.1.push(format!("{} {}", req.method(), uri));
            }
            drop(c);
            req
        });
        devops_stack_core::k8s::install_tls_provider();
        let client = ClientBuilder::try_from(config)
            .expect("a client for the test cluster")
            .with_layer(&layer)
            .build();
        Counting { client, counts }
    }

    /// The counts since the last call, reset to zero.
    pub fn take(&self) -> Counts {
        let mut c = self.counts.lock().unwrap();
        c.1.clear();
        std::mem::take(&mut c.0)
    }

    /// The write requests (`METHOD url`) since the last call, reset.
    pub fn take_writes(&self) -> Vec<String> {
        let mut c = self.counts.lock().unwrap();
        c.0 = Counts::default();
        std::mem::take(&mut c.1)
    }
}

impl std::fmt::Debug for Counting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Counting")
    }
}

impl Cluster for Counting {
    fn name(&self) -> &str {
        "test"
    }
    fn base_domain(&self) -> &str {
        "example.com"
    }
    fn client(&self) -> BoxFuture<'_, Result<kube::Client, BoxError>> {
        Box::pin(async move { Ok(self.client.clone()) })
    }
}

/// Every listable kind the API server serves (each group's preferred version).
pub async fn served_kinds(client: &kube::Client) -> Vec<(ApiResource, bool)> {
    // A group can vanish while it is being discovered (a parallel test deleting its CRD): the
    // API server then answers 404 for it. Discover again, as kubectl tolerates such a group.
    let mut attempts = 0;
    let discovery = loop {
        match Discovery::new(client.clone()).run().await {
            Ok(d) => break d,
            Err(kube::Error::Api(s)) if s.code == 404 && attempts < 10 => {
                attempts += 1;
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Err(e) => panic!("API discovery: {e}"),
        }
    };
    let mut kinds = Vec::new();
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            if caps.supports_operation(verbs::LIST) && !ar.plural.contains('/') {
                kinds.push((ar, caps.scope == Scope::Namespaced));
            }
        }
    }
    kinds
}

/// Every object, of every kind the API server serves (namespaced and cluster-scoped), that
/// matches the label `selector`, as `Kind namespace/name`. Objects being deleted are included
/// (with ` (terminating)`).
pub async fn labelled_everywhere(client: &kube::Client, selector: &str) -> Vec<String> {
    let lp = ListParams::default().labels(selector);
    let mut found = Vec::new();
    for (ar, _) in served_kinds(client).await {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        match api.list(&lp).await {
            Ok(list) => found.extend(list.items.into_iter().map(|o| {
                format!(
                    "{} {}/{}{}",
                    ar.kind,
                    o.metadata.namespace.unwrap_or_default(),
                    o.metadata.name.unwrap_or_default(),
                    if o.metadata.deletion_timestamp.is_some() {
                        " (terminating)"
                    } else {
                        ""
                    }
                )
            })),
            // A kind that went away while listing, or one this user may not list.
            Err(kube::Error::Api(s)) if (403..=405).contains(&s.code) => {}
            Err(e) => panic!("listing {} with {selector}: {e}", ar.kind),
        }
    }
    found.sort();
    found
}

/// Polls [`labelled_everywhere`] until nothing matches or `timeout` passes; returns what is left.
pub async fn wait_none_labelled(
    client: &kube::Client,
    selector: &str,
    timeout: std::time::Duration,
) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let left = labelled_everywhere(client, selector).await;
        if left.is_empty() || tokio::time::Instant::now() >= deadline {
            return left;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// Deletes (in the background, without waiting) every object matching `selector`, after
/// removing the finalizers of the matching Argo CD Applications. Clean-up only: it ignores errors.
pub async fn delete_labelled(client: &kube::Client, selector: &str) {
    let lp = ListParams::default().labels(selector);
    for (ar, _) in served_kinds(client).await {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        let Ok(list) = api.list(&lp).await else {
            continue;
        };
        for o in list.items {
            let name = o.metadata.name.clone().unwrap_or_default();
            let api: Api<DynamicObject> = match &o.metadata.namespace {
                Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
                None => Api::all_with(client.clone(), &ar),
            };
            if o.metadata
                .finalizers
                .as_ref()
                .is_some_and(|f| !f.is_empty())
                && ar.group == "argoproj.io"
            {
                let _ = api
                    .patch(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
                    )
                    .await;
            }
            let _ = api.delete(&name, &DeleteParams::background()).await;
        }
    }
}

/// Deletes a namespace without waiting (clean-up only: errors are ignored).
pub async fn delete_namespace(client: &kube::Client, ns: &str) {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &namespace_resource());
    let _ = api.delete(ns, &DeleteParams::background()).await;
}

/// Creates a namespace the way a user would (`kubectl create namespace`), without any label.
pub async fn create_namespace(client: &kube::Client, ns: &str) {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &namespace_resource());
    let body: DynamicObject = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
    )
    .unwrap();
    let pp = kube::api::PostParams {
        field_manager: Some("kubectl-create".into()),
        ..Default::default()
    };
    match api.create(&pp, &body).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("creating namespace {ns}: {e}"),
    }
}

/// `v1 Namespace`.
pub fn namespace_resource() -> ApiResource {
    ApiResource {
        group: String::new(),
        version: "v1".into(),
        api_version: "v1".into(),
        kind: "Namespace".into(),
        plural: "namespaces".into(),
    }
}

/// `v1 ConfigMap`.
pub fn config_map_resource() -> ApiResource {
    ApiResource {
        group: String::new(),
        version: "v1".into(),
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        plural: "configmaps".into(),
    }
}

/// Runs `body`, then `cleanup` whether `body` panicked (a failed assertion) or not, then
/// resumes the panic: a failing live test still leaves the shared cluster clean.
pub async fn with_cleanup<B, C>(body: B, cleanup: C)
where
    B: Future<Output = ()>,
    C: Future<Output = ()>,
{
    let outcome = AssertUnwindSafe(body).catch_unwind().await;
    cleanup.await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Plays Argo CD and the cloud's load balancer controller for an ingress controller's Service
/// `ns/traefik`: once the namespace exists, creates the Service (type LoadBalancer, as the chart
/// would), and `delay` later gives it the load balancer `hostname`. Returns when the status is
/// set, with the time it was.
pub async fn play_load_balancer(
    client: kube::Client,
    ns: String,
    hostname: &'static str,
    delay: std::time::Duration,
) -> std::time::Instant {
    use k8s_openapi::api::core::v1::Service;
    let services: Api<Service> = Api::namespaced(client, &ns);
    let body: Service = serde_json::from_value(json!({
        "metadata": {"name": "traefik"},
        "spec": {"type": "LoadBalancer", "selector": {"app.kubernetes.io/name": "traefik"},
            "ports": [{"name": "web", "port": 80, "targetPort": "web"}]},
    }))
    .unwrap();
    // the namespace is the module's: it appears when the engine applies
    loop {
        match services.create(&Default::default(), &body).await {
            Ok(_) => break,
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 403 => {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Err(e) => panic!("creating Service {ns}/traefik: {e}"),
        }
    }
    tokio::time::sleep(delay).await;
    let status = json!({"status": {"loadBalancer": {"ingress": [{"hostname": hostname}]}}});
    services
        .patch_status("traefik", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("setting the load balancer's hostname");
    std::time::Instant::now()
}
