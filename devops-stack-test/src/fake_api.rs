//! An in-memory Kubernetes API server for request-level tests: [`FakeApi`].
//!
//! `FakeApi::client()` is a `kube::Client` whose requests go to a `tower::service_fn` that
//! answers them as a kube-apiserver 1.28 does, closely enough that an engine reading live state
//! with LISTs, detecting drift through `managedFields` and deleting with preconditions can be
//! tested against it. The behaviours below were checked against a real kube-apiserver 1.28
//! (`devops-stack-core/tests/fake_api_live.rs` holds a test that replays a scenario on both and compares the answers).
//!
//! # Use
//! ```ignore
//! use devops_stack_test::fake_api::{FakeApi, NamespaceDeletion, count, writes};
//!
//! let fake = FakeApi::new().with_argocd_crds().namespace_deletion(NamespaceDeletion::Manual);
//! fake.insert(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}}));
//! let client = fake.client(); // hand it to the engine
//! // ... apply a stack; then a hand edit, as `kubectl edit` would:
//! fake.edit("v1", "ConfigMap", "a", "c", json!({"data": {"k": "edited"}}), "kubectl-edit").unwrap();
//! fake.take_log(); // forget what came before
//! // ... apply again: the engine sees the drift in its managedFields entry and force-applies.
//! let log = fake.take_log();
//! assert_eq!(writes(&log), ["PATCH /api/v1/namespaces/a/configmaps/c?force=true&fieldManager=stack"]);
//! assert_eq!(fake.get("v1", "ConfigMap", "a", "c").unwrap()["data"]["k"], "mine");
//! ```
//!
//! # What it models
//! - **Paths and discovery** exactly as the real server's: `/api`, `/api/v1`, `/apis`,
//!   `/apis/<group>`, `/apis/<group>/<version>`, `/version`, aggregated discovery
//!   (`apidiscovery.k8s.io/v2beta1` on `/api` and `/apis`, negotiated through `Accept` as a 1.28
//!   server does: a request for `v2` only is answered 406), objects, collections (namespaced,
//!   cluster-wide for a namespaced kind, cluster-scoped), `/status` subresources (GET, merge
//!   patch, PUT), metadata-only answers (`PartialObjectMetadata[List]`, when `Accept` asks, as
//!   kube's `get_metadata`/`list_metadata`/`watch_metadata` do). The kinds served are in
//!   [`BUILTIN_KINDS`] plus those of every established CRD.
//! - **LIST** answers `<Kind>List` with the current `metadata.resourceVersion`, items sorted by
//!   namespace and name, honouring `labelSelector` (`a=b`, `a==b`, `a!=b`, `a`, `!a`, joined by
//!   commas) and `fieldSelector` (`metadata.name`, `metadata.namespace`). As on the real server,
//!   the items of built-in kinds carry no `apiVersion`/`kind` (a `DynamicObject`'s `types` is
//!   `None`); those of custom resources do.
//! - **Server-side apply** (`application/apply-patch+yaml`, JSON bodies only): every manager's
//!   field set, conflicts (409 with the real message and `details.causes`), `force=true` moving
//!   ownership, shared ownership when values agree, removal of the fields an applier stops
//!   applying when no one else owns them (and of the maps that become empty), `dryRun=All`.
//! - **Updates** (merge patch, PUT, POST): the changed fields move to the updater's `Update` entry
//!   and leave every other entry; `metadata.resourceVersion` in the body is a precondition
//!   (409 "the object has been modified"); POST answers 409 `AlreadyExists`.
//! - **`managedFields`** in the real nested `FieldsV1` form: `f:<field>`, `k:{"name":"x"}` for
//!   the items of keyed lists (with `.` for the item itself), `v:"x"` for `metadata.finalizers`,
//!   `.` for maps an update created. Lists are atomic except: `metadata.finalizers` (a set), and,
//!   for built-in kinds only, `containers`/`initContainers`/`ephemeralContainers`/`env`/`volumes`
//!   (keyed by `name`), `volumeMounts` (`mountPath`) and `ports` (`containerPort` or `port`, and
//!   `protocol`, `TCP` when absent, as the real server keys them by the defaulted value). `selector`, `podSelector` and `namespaceSelector` of built-in kinds
//!   are atomic maps. Custom resources have atomic lists, as a CRD without list markers does,
//!   and their maps are structs (owned through their fields only) as with a CRD whose schema
//!   declares its fields (Argo CD's do; the fake's copies have a shortened schema but behave
//!   alike), except when the schema is only `x-kubernetes-preserve-unknown-fields` at the root:
//!   then every map outside `metadata` is owned as itself too (`.`), as the real server does.
//!   Entries are sorted as the real server sorts them (`Apply` first, then by time, manager); an
//!   entry's `time` is set when its manager changed the object, and absent for a manager whose
//!   operations changed nothing (e.g. applying values another manager already set).
//! - **Server-owned metadata**: random `uid`, a global incrementing `resourceVersion`,
//!   `creationTimestamp`, `generation` (for apps, networking, CRDs and custom resources; bumped
//!   when anything but metadata changes, and not by `status` of kinds with a status subresource).
//!   A write that changes nothing keeps the resourceVersion. `status` written through the main
//!   object is ignored for kinds with a status subresource and kept for the others (Argo CD's
//!   CRDs have none). A Secret's `stringData` is folded into base64 `data` and never stored.
//! - **Deletion**: `DeleteOptions` preconditions (`uid`, `resourceVersion`; 409 with the real
//!   text), `dryRun`, `propagationPolicy` (`Foreground` and `Orphan` add their finalizers, which
//!   the fake's garbage collector handles through `ownerReferences`; dependents whose owners are
//!   all gone are deleted). Objects with finalizers get `deletionTimestamp` and vanish when a
//!   write leaves no finalizer. Deleting a Namespace marks it Terminating and its "namespace
//!   controller" deletes its content per [`NamespaceDeletion`]; while it terminates, creating
//!   objects in it fails 403 (updates to existing ones pass, as on the real server); writing into
//!   a namespace that does not exist fails 404. Deleting a CRD deletes its objects at once.
//! - **CRDs**: an applied CRD is Established (status conditions `NamesAccepted`, `Established`,
//!   `acceptedNames`, `storedVersions`, written by manager `kube-apiserver` on the status
//!   subresource) at the n-th read of CRDs after its creation
//!   ([`FakeApi::crds_established_after_reads`]; 0: at once), and only then served by discovery,
//!   with its scope and status subresource.
//! - **Watches**: `watch=1` with `resourceVersion` is served as a long poll: the answer carries
//!   the events after that version (one JSON event per line, `ADDED`/`MODIFIED`/`DELETED`), or
//!   nothing after 250 ms of (tokio) time, and then ends; kube's `watcher` simply watches again.
//!   Label and field selectors filter events by the object's state in the event.
//! - **What every cluster has**: the [`SYSTEM_NAMESPACES`], and in every namespace the
//!   `kube-root-ca.crt` ConfigMap (manager `kube-controller-manager`) and the `default`
//!   ServiceAccount, recreated when deleted, as the real controller manager does; a LIST of
//!   ConfigMaps in a namespace therefore never comes back empty. [`FakeApi::names`] leaves them out.
//! - **Test helpers**: a request log, injected faults (status codes, dropped connections),
//!   latency and the count of requests in flight, hand edits, Argo CD's controller marking
//!   Applications, controllers' status writes.
//!
//! # What it does not model
//! No schema validation, defaulting or pruning of unknown fields (a Deployment keeps what was
//! sent; `protocol: TCP` is not added; `fieldValidation` is ignored); no admission, RBAC or quotas; no YAML request bodies; no
//! JSON patch or strategic merge patch (415); no `deletecollection` of namespaces; no pagination
//! (`limit` is ignored, nothing is ever `continue`d), bookmarks, `410 Gone` or set-based label
//! selectors (`in`, `notin`); one stored version per object (no conversion); conflict causes
//! are listed in manager order, where the real server's order varies; objects a label selector
//! stops matching get no `DELETED` watch event. Invalid objects are stored (a
//! real server answers 422, e.g. for a Deployment without containers). The real namespace
//! controller takes seconds; the fake's default ([`NamespaceDeletion::Immediate`]) does not.
//! No controllers run but the fake's own (namespace, garbage collector, CRD establishment, and
//! Argo CD's when asked): Deployments never become ready unless a test says so
//! ([`FakeApi::set_status`]).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use http::{Request, Response};
use kube::client::Body;
use serde_json::{Map, Value, json};

/// The error a service returns for a dropped connection.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `(group, version, kind, plural, namespaced, status subresource, generation)` of the kinds a
/// new [`FakeApi`] serves.
#[rustfmt::skip]
pub const BUILTIN_KINDS: &[(&str, &str, &str, &str, bool, bool, bool)] = &[
    ("", "v1", "Namespace", "namespaces", false, true, false),
    ("", "v1", "ConfigMap", "configmaps", true, false, false),
    ("", "v1", "Secret", "secrets", true, false, false),
    ("", "v1", "Service", "services", true, true, false),
    ("", "v1", "ServiceAccount", "serviceaccounts", true, false, false),
    ("", "v1", "ResourceQuota", "resourcequotas", true, true, false),
    ("", "v1", "LimitRange", "limitranges", true, false, false),
    ("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", true, true, false),
    ("apps", "v1", "Deployment", "deployments", true, true, true),
    ("rbac.authorization.k8s.io", "v1", "Role", "roles", true, false, false),
    ("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", true, false, false),
    ("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", false, false, false),
    ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", false, false, false),
    ("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", true, false, true),
    ("networking.k8s.io", "v1", "Ingress", "ingresses", true, true, true),
    ("coordination.k8s.io", "v1", "Lease", "leases", true, false, false),
    ("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", false, true, true),
];

/// The namespaces a new [`FakeApi`] has, as every cluster does (created by `kube-apiserver`).
pub const SYSTEM_NAMESPACES: [&str; 4] =
    ["default", "kube-node-lease", "kube-public", "kube-system"];

/// The ConfigMap the real controller manager publishes in every namespace.
pub const ROOT_CA_CONFIGMAP: &str = "kube-root-ca.crt";

/// The manager [`FakeApi::insert`] creates objects as.
pub const CREATE_MANAGER: &str = "kubectl-create";
/// The manager of the Argo CD CRDs of [`FakeApi::with_argocd_crds`].
pub const ARGOCD_OPERATOR: &str = "argocd-operator";
/// The manager Argo CD's controller writes Application status and finalizers as.
pub const ARGOCD_CONTROLLER: &str = "argocd-application-controller";

/// How long a watch request waits for an event before answering with none.
const WATCH_POLL: Duration = Duration::from_millis(250);

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

/// When the namespace controller removes a deleted namespace's content (and then the namespace).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NamespaceDeletion {
    /// Right after the DELETE (the DELETE's answer still shows the namespace Terminating).
    Immediate,
    /// This long (tokio time, so virtual under `start_paused`) after the DELETE.
    After(Duration),
    /// Only once [`FakeApi::finish_namespace_deletions`] is called.
    Manual,
}

/// An in-memory Kubernetes API server; clones share the same server.
#[derive(Clone)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
    changes: Arc<tokio::sync::watch::Sender<u64>>,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
}

impl Default for FakeApi {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeApi {
    /// A server with the [`BUILTIN_KINDS`], immediate namespace deletion, and what every cluster
    /// has: the [`SYSTEM_NAMESPACES`] and, in every namespace (as the controller manager
    /// publishes them), the [`ROOT_CA_CONFIGMAP`] ConfigMap and the `default` ServiceAccount.
    pub fn new() -> Self {
        let kinds = BUILTIN_KINDS
            .iter()
            .map(
                |&(group, version, kind, plural, namespaced, status, generation)| Kind {
                    group: group.into(),
                    version: version.into(),
                    kind: kind.into(),
                    plural: plural.into(),
                    namespaced,
                    status_subresource: status,
                    generation,
                    custom: false,
                    untyped: false,
                },
            )
            .collect();
        let fake = FakeApi {
            state: Arc::new(Mutex::new(State {
                builtin: kinds,
                objects: BTreeMap::new(),
                revision: 1,
                events: Vec::new(),
                log: Vec::new(),
                faults: VecDeque::new(),
                namespace_deletion: NamespaceDeletion::Immediate,
                deletions: BTreeMap::new(),
                crd_established_after: 0,
                crd_reads: BTreeMap::new(),
                argocd_controller: false,
                gc_pending: false,
                latency: Duration::ZERO,
            })),
            changes: Arc::new(tokio::sync::watch::channel(1).0),
            in_flight: Arc::default(),
            max_in_flight: Arc::default(),
        };
        for name in SYSTEM_NAMESPACES {
            let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
            fake.call(
                "POST",
                "/api/v1/namespaces",
                &[("fieldManager", "kube-apiserver")],
                "application/json",
                ns,
            );
        }
        fake
    }

    /// Pre-installs Argo CD's Application, AppProject and ApplicationSet CRDs (argoproj.io/v1alpha1,
    /// namespaced, no status subresource), applied by [`ARGOCD_OPERATOR`] and established.
    #[must_use]
    pub fn with_argocd_crds(self) -> Self {
        for (kind, plural) in [
            ("Application", "applications"),
            ("AppProject", "appprojects"),
            ("ApplicationSet", "applicationsets"),
        ] {
            let crd = json!({
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {"name": format!("{plural}.argoproj.io"), "labels": {"app.kubernetes.io/part-of": "argocd"}},
                "spec": {
                    "group": "argoproj.io",
                    "names": {"kind": kind, "listKind": format!("{kind}List"), "plural": plural, "singular": kind.to_lowercase()},
                    "scope": "Namespaced",
                    "versions": [{"name": "v1alpha1", "served": true, "storage": true,
                        "schema": {"openAPIV3Schema": {"type": "object", "required": ["metadata", "spec"], "properties": {
                            "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"},
                            "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}],
                },
            });
            let path = format!(
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{plural}.argoproj.io"
            );
            let reply = self.call(
                "PATCH",
                &path,
                &[("fieldManager", ARGOCD_OPERATOR)],
                APPLY,
                crd,
            );
            assert!(
                reply.code < 300,
                "installing the Argo CD CRDs: {}",
                reply.body
            );
            self.with_state(|st| st.establish(&format!("{plural}.argoproj.io")));
        }
        self
    }

    /// Plays Argo CD's application controller on every request: Applications are marked Synced
    /// and Healthy, and lose their finalizers once deleted.
    #[must_use]
    pub fn with_argocd_controller(self) -> Self {
        self.with_state(|st| st.argocd_controller = true);
        self
    }

    /// When a deleted namespace's content goes (default: [`NamespaceDeletion::Immediate`]).
    #[must_use]
    pub fn namespace_deletion(self, mode: NamespaceDeletion) -> Self {
        self.with_state(|st| st.namespace_deletion = mode);
        self
    }

    /// A new CRD becomes Established (and served) at the `reads`-th read (GET, LIST or watch) of
    /// CRDs after it was created: that read sees it Established (default 0: at once).
    #[must_use]
    pub fn crds_established_after_reads(self, reads: u32) -> Self {
        self.with_state(|st| st.crd_established_after = reads);
        self
    }

    /// Every request waits this long (tokio time) before it is answered, so that requests made
    /// in parallel overlap; see [`FakeApi::max_in_flight`].
    #[must_use]
    pub fn with_latency(self, latency: Duration) -> Self {
        self.with_state(|st| st.latency = latency);
        self
    }

    /// A client whose requests this server answers.
    pub fn client(&self) -> kube::Client {
        let me = self.clone();
        let service = tower::service_fn(move |req: Request<Body>| {
            let me = me.clone();
            async move { me.serve(req).await }
        });
        kube::Client::new(service, "default")
    }

    /// The requests so far (and forgets them), as `METHOD path[?query]` with the query decoded,
    /// e.g. `PATCH /api/v1/namespaces/a/configmaps/c?force=true&fieldManager=stack`.
    pub fn take_log(&self) -> Vec<String> {
        self.with_state(|st| std::mem::take(&mut st.log))
    }

    /// The most requests that were being answered at the same time, watches waiting for events
    /// included (see [`FakeApi::with_latency`]).
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }

    /// The next request with this method and path (exact, or a prefix when `path` ends in `*`)
    /// is answered with a Status of this code (429 comes with `Retry-After: 1`).
    pub fn fail_next(&self, method: &str, path: &str, code: u16) {
        self.add_fault(method, path, Fault::Status(code));
    }

    /// The next request with this method and path fails as a dropped connection would: the
    /// service returns an error and the client gets `kube::Error::Service`.
    pub fn disconnect_next(&self, method: &str, path: &str) {
        self.add_fault(method, path, Fault::Disconnect);
    }

    /// The live object, as a GET would return it.
    pub fn get<'a>(
        &self,
        api_version: &str,
        kind: &str,
        ns: impl Into<Option<&'a str>>,
        name: &str,
    ) -> Option<Value> {
        let path = self.path(api_version, kind, ns.into(), Some(name));
        let reply = self.call("GET", &path, &[], "", Value::Null);
        (reply.code == 200).then_some(reply.body)
    }

    /// Every live object of a kind (in a namespace, or in all), as a LIST would return them
    /// (without apiVersion and kind for built-in kinds).
    pub fn list<'a>(
        &self,
        api_version: &str,
        kind: &str,
        ns: impl Into<Option<&'a str>>,
    ) -> Vec<Value> {
        let path = self.path(api_version, kind, ns.into(), None);
        let reply = self.call("GET", &path, &[], "", Value::Null);
        reply.body["items"].as_array().cloned().unwrap_or_default()
    }

    /// Every stored object as `Kind namespace/name` (or `Kind name`), sorted, but those every
    /// cluster has without anyone asking: the [`SYSTEM_NAMESPACES`] and, in every namespace, the
    /// `kube-root-ca.crt` ConfigMap and the `default` ServiceAccount.
    pub fn names(&self) -> Vec<String> {
        self.with_state(|st| {
            let mut names: Vec<String> = st
                .objects
                .iter()
                .filter(|(key, _)| !is_cluster_default(key))
                .map(|((_, _, ns, name), s)| {
                    let kind = s.object["kind"].as_str().unwrap_or_default();
                    if ns.is_empty() {
                        format!("{kind} {name}")
                    } else {
                        format!("{kind} {ns}/{name}")
                    }
                })
                .collect();
            names.sort();
            names
        })
    }

    /// Creates `object` as `kubectl create` would (manager [`CREATE_MANAGER`], an Update), with
    /// the same rules as a POST (the namespace must exist). Returns the stored object.
    ///
    /// # Panics
    /// When the server refuses it.
    pub fn insert(&self, object: Value) -> Value {
        let (api_version, kind) = (str_at(&object, "apiVersion"), str_at(&object, "kind"));
        let ns = object["metadata"]["namespace"].as_str();
        let path = self.path(&api_version, &kind, ns, None);
        let reply = self.call(
            "POST",
            &path,
            &[("fieldManager", CREATE_MANAGER)],
            "application/json",
            object,
        );
        assert!(reply.code < 300, "FakeApi::insert: {}", reply.body);
        reply.body
    }

    /// A hand edit: a JSON merge patch by `manager` (as `kubectl edit` or `kubectl patch` do, an
    /// Update operation). Returns the object, or the Status the server answered.
    pub fn edit<'a>(
        &self,
        api_version: &str,
        kind: &str,
        ns: impl Into<Option<&'a str>>,
        name: &str,
        patch: Value,
        manager: &str,
    ) -> Result<Value, Value> {
        let path = self.path(api_version, kind, ns.into(), Some(name));
        let reply = self.call("PATCH", &path, &[("fieldManager", manager)], MERGE, patch);
        if reply.code < 300 {
            Ok(reply.body)
        } else {
            Err(reply.body)
        }
    }

    /// [`FakeApi::edit`] of the object at a URL path, e.g. from [`FakeApi::path`].
    pub fn edit_path(&self, path: &str, patch: Value, manager: &str) -> Result<Value, Value> {
        let reply = self.call("PATCH", path, &[("fieldManager", manager)], MERGE, patch);
        if reply.code < 300 {
            Ok(reply.body)
        } else {
            Err(reply.body)
        }
    }

    /// Sets the `status` of an object as its controller would (manager `kube-controller-manager`,
    /// through the status subresource when the kind has one).
    ///
    /// # Panics
    /// When the object does not exist.
    pub fn set_status<'a>(
        &self,
        api_version: &str,
        kind: &str,
        ns: impl Into<Option<&'a str>>,
        name: &str,
        status: Value,
    ) {
        let ns = ns.into();
        let sub = self.with_state(|st| {
            st.kind_of(api_version, kind)
                .is_some_and(|k| k.status_subresource)
        });
        let mut path = self.path(api_version, kind, ns, Some(name));
        if sub {
            path.push_str("/status");
        }
        let patch = json!({"status": status});
        let reply = self.call(
            "PATCH",
            &path,
            &[("fieldManager", "kube-controller-manager")],
            MERGE,
            patch,
        );
        assert!(reply.code < 300, "FakeApi::set_status: {}", reply.body);
    }

    /// Marks every Application as Argo CD's controller would: in the main object (no status
    /// subresource), `status.sync.status` Synced/OutOfSync and `status.health.status`
    /// Healthy/Progressing, an Update by [`ARGOCD_CONTROLLER`].
    pub fn mark_applications(&self, synced: bool, healthy: bool) {
        self.with_state(|st| st.mark_applications(synced, healthy));
    }

    /// Lets the namespace controller finish every pending namespace deletion
    /// ([`NamespaceDeletion::Manual`]): content goes, then namespaces left with none.
    pub fn finish_namespace_deletions(&self) {
        self.with_state(|st| {
            for release in st.deletions.values_mut() {
                *release = Release::Now;
            }
        });
    }

    /// The URL path of an object (`name`) or collection of a served kind.
    ///
    /// # Panics
    /// When the kind is not served.
    pub fn path(
        &self,
        api_version: &str,
        kind: &str,
        ns: Option<&str>,
        name: Option<&str>,
    ) -> String {
        let k = self.with_state(|st| st.kind_of(api_version, kind));
        let k = k.unwrap_or_else(|| panic!("FakeApi: {api_version} {kind} is not served"));
        k.path(ns.filter(|_| k.namespaced), name)
    }

    /// Answers one request, as the client's service does.
    ///
    /// # Errors
    /// A dropped connection injected by [`FakeApi::disconnect_next`], or an unreadable body.
    pub async fn serve(&self, req: Request<Body>) -> Result<Response<Body>, BoxError> {
        let (parts, body) = req.into_parts();
        let bytes = body.collect_bytes().await?;
        let query: Vec<(String, String)> =
            form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        let req = Req {
            method: parts.method.as_str().to_owned(),
            path: parts.uri.path().to_owned(),
            query,
            content_type: header(&parts.headers, "content-type"),
            user_agent: header(&parts.headers, "user-agent"),
            accept: header(&parts.headers, "accept"),
            body: bytes.to_vec(),
        };
        let (fault, latency) = self.with_state(|st| {
            st.log.push(req.log_line());
            (st.take_fault(&req.method, &req.path), st.latency)
        });
        match fault {
            Some(Fault::Disconnect) => {
                return Err(format!(
                    "connection reset (injected by FakeApi for {} {})",
                    req.method, req.path
                )
                .into());
            }
            Some(Fault::Status(code)) => {
                return Ok(
                    error(code, reason_of(code), "injected by FakeApi", json!({})).response(),
                );
            }
            None => {}
        }
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let reply = if req.is_watch() {
            self.watch(&req).await
        } else {
            self.with_state(|st| st.request(&req))
        };
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        Ok(reply.response())
    }

    fn add_fault(&self, method: &str, path: &str, fault: Fault) {
        self.with_state(|st| {
            st.faults
                .push_back((method.to_owned(), path.to_owned(), fault))
        });
    }

    /// Runs `f` on the state, then the controllers, and wakes watches when anything changed.
    fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut st = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let out = f(&mut st);
        st.tick();
        let revision = st.revision;
        drop(st);
        self.changes
            .send_if_modified(|r| std::mem::replace(r, revision) != revision);
        out
    }

    /// A request made by a test helper: not logged, no faults.
    fn call(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        content_type: &str,
        body: Value,
    ) -> Reply {
        let req = Req {
            method: method.into(),
            path: path.into(),
            query: query
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            content_type: content_type.into(),
            user_agent: String::new(),
            accept: String::new(),
            body: if body.is_null() {
                Vec::new()
            } else {
                body.to_string().into_bytes()
            },
        };
        self.with_state(|st| st.request(&req))
    }

    /// A watch, answered as a long poll (see the module docs).
    async fn watch(&self, req: &Req) -> Reply {
        let mut since = match self.with_state(|st| st.watch_start(req)) {
            Ok(since) => since,
            Err(reply) => return reply,
        };
        let mut changes = self.changes.subscribe();
        loop {
            changes.mark_unchanged();
            let lines = self.with_state(|st| st.watch_events(req, &mut since));
            if !lines.is_empty() {
                let body = lines.iter().map(|l| format!("{l}\n")).collect::<String>();
                return Reply {
                    code: 200,
                    body: Value::String(body),
                    raw: true,
                };
            }
            if tokio::time::timeout(WATCH_POLL, changes.changed())
                .await
                .is_err()
            {
                return Reply {
                    code: 200,
                    body: Value::String(String::new()),
                    raw: true,
                };
            }
        }
    }
}

/// The requests of a log that are not GETs.
pub fn writes(log: &[String]) -> Vec<String> {
    log.iter()
        .filter(|l| !l.starts_with("GET "))
        .cloned()
        .collect()
}

/// How many requests of a log have this method.
pub fn count(log: &[String], method: &str) -> usize {
    log.iter()
        .filter(|l| l.split(' ').next() == Some(method))
        .count()
}

// ---------------------------------------------------------------------------------------------
// State, kinds and requests
// ---------------------------------------------------------------------------------------------

const APPLY: &str = "application/apply-patch+yaml";
const MERGE: &str = "application/merge-patch+json";

/// A served kind.
#[derive(Clone, Debug, PartialEq)]
pub struct Kind {
    /// The API group (empty for the core group).
    pub group: String,
    /// The served version.
    pub version: String,
    /// The kind, as in `kind:`.
    pub kind: String,
    /// The resource name in URLs.
    pub plural: String,
    /// Whether objects of the kind live in a namespace.
    pub namespaced: bool,
    /// Whether `status` is written through the `/status` subresource only.
    pub status_subresource: bool,
    /// Whether objects carry `metadata.generation`.
    pub generation: bool,
    /// Served for a CRD (atomic lists; LIST items keep apiVersion and kind).
    pub custom: bool,
    /// A custom kind whose schema is only `x-kubernetes-preserve-unknown-fields` at the root:
    /// the real server then owns every map (outside `metadata`) as a member (`.`) too.
    pub untyped: bool,
}

impl Kind {
    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    fn base(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }

    /// The path of an object or collection.
    pub fn path(&self, ns: Option<&str>, name: Option<&str>) -> String {
        let mut path = self.base();
        if let Some(ns) = ns {
            path.push_str(&format!("/namespaces/{ns}"));
        }
        path.push_str(&format!("/{}", self.plural));
        if let Some(name) = name {
            path.push_str(&format!("/{name}"));
        }
        path
    }

    /// `configmaps`, `deployments.apps`: how errors name the resource.
    fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    fn details(&self, name: &str) -> Value {
        let mut details = json!({"name": name, "kind": self.plural});
        if !self.group.is_empty() {
            details["group"] = json!(self.group);
        }
        details
    }

    fn is_crd(&self) -> bool {
        self.group == "apiextensions.k8s.io" && self.plural == "customresourcedefinitions"
    }

    fn is_namespace(&self) -> bool {
        self.group.is_empty() && self.plural == "namespaces"
    }
}

/// `(group, plural, namespace or "", name)`.
type Key = (String, String, String, String);

struct Stored {
    /// The object without `managedFields`.
    object: Value,
    managers: Vec<Entry>,
}

#[derive(Clone, Debug, PartialEq)]
struct Entry {
    manager: String,
    operation: &'static str,
    api_version: String,
    subresource: Option<String>,
    /// When the manager last changed the object; `None` for a manager whose operations all
    /// left the object as it was (as the real server writes it: no `time`).
    time: Option<String>,
    fields: FieldSet,
}

impl Entry {
    fn to_json(&self) -> Value {
        let mut entry = json!({
            "manager": self.manager, "operation": self.operation, "apiVersion": self.api_version,
            "fieldsType": "FieldsV1", "fieldsV1": fields_v1(&self.fields),
        });
        if let Some(time) = &self.time {
            entry["time"] = json!(time);
        }
        if let Some(sub) = &self.subresource {
            entry["subresource"] = json!(sub);
        }
        entry
    }

    /// How conflict messages name the manager.
    fn printed(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if let Some(sub) = &self.subresource {
            s.push_str(&format!(" with subresource {sub:?}"));
        }
        if self.operation == "Update" {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }
}

impl Stored {
    fn render(&self) -> Value {
        let mut object = self.object.clone();
        if !self.managers.is_empty() {
            object["metadata"]["managedFields"] =
                self.managers.iter().map(Entry::to_json).collect();
        }
        object
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    Status(u16),
    Disconnect,
}

/// When the namespace controller may finish a namespace's deletion.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Release {
    Now,
    At(tokio::time::Instant),
    Never,
}

struct WatchEvent {
    revision: u64,
    key: Key,
    kind: &'static str,
    object: Value,
}

struct State {
    builtin: Vec<Kind>,
    objects: BTreeMap<Key, Stored>,
    revision: u64,
    events: Vec<WatchEvent>,
    log: Vec<String>,
    faults: VecDeque<(String, String, Fault)>,
    namespace_deletion: NamespaceDeletion,
    /// Namespaces being deleted.
    deletions: BTreeMap<String, Release>,
    crd_established_after: u32,
    /// Reads of CRDs since each not yet established CRD was created.
    crd_reads: BTreeMap<String, u32>,
    argocd_controller: bool,
    /// Some object has `ownerReferences` or a garbage collector's finalizer.
    gc_pending: bool,
    latency: Duration,
}

struct Req {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    content_type: String,
    user_agent: String,
    accept: String,
    body: Vec<u8>,
}

impl Req {
    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `Accept` asks for `PartialObjectMetadata` (kube's `get_metadata`, `list_metadata`, ...).
    fn metadata_only(&self) -> bool {
        self.accept.contains("as=PartialObjectMetadata")
    }

    fn is_watch(&self) -> bool {
        self.method == "GET" && matches!(self.param("watch"), Some("true" | "1"))
    }

    fn dry_run(&self) -> bool {
        self.param("dryRun") == Some("All")
    }

    fn force(&self) -> bool {
        self.param("force") == Some("true")
    }

    /// `fieldManager`, else the user agent up to its first `/`, else `unknown`.
    fn manager(&self) -> String {
        match self.param("fieldManager") {
            Some(m) if !m.is_empty() => m.to_owned(),
            _ => match self.user_agent.split('/').next() {
                Some(ua) if !ua.is_empty() => ua.to_owned(),
                _ => "unknown".to_owned(),
            },
        }
    }

    fn json(&self) -> Result<Value, Reply> {
        if self.body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            error(
                400,
                "BadRequest",
                &format!("the fake API server reads JSON bodies only: {e}"),
                json!({}),
            )
        })
    }

    fn log_line(&self) -> String {
        let query: Vec<String> = self.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if query.is_empty() {
            format!("{} {}", self.method, self.path)
        } else {
            format!("{} {}?{}", self.method, self.path, query.join("&"))
        }
    }
}

/// What a request is about.
struct Target {
    kind: Kind,
    ns: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

impl Target {
    fn key(&self) -> Key {
        let name = self.name.clone().unwrap_or_default();
        (
            self.kind.group.clone(),
            self.kind.plural.clone(),
            self.ns.clone().unwrap_or_default(),
            name,
        )
    }

    fn name(&self) -> &str {
        self.name.as_deref().unwrap_or_default()
    }

    /// What an object that does not exist yet starts from.
    fn skeleton(&self) -> Value {
        let mut object = json!({"apiVersion": self.kind.api_version(), "kind": self.kind.kind, "metadata": {"name": self.name()}});
        if let Some(ns) = &self.ns {
            object["metadata"]["namespace"] = json!(ns);
        }
        object
    }
}

struct Reply {
    code: u16,
    body: Value,
    /// `body` is a string sent as is (a watch's events).
    raw: bool,
}

impl Reply {
    fn ok(code: u16, body: Value) -> Reply {
        Reply {
            code,
            body,
            raw: false,
        }
    }

    fn response(self) -> Response<Body> {
        let bytes = match self.body {
            Value::String(s) if self.raw => s.into_bytes(),
            body => body.to_string().into_bytes(),
        };
        let mut builder = Response::builder()
            .status(self.code)
            .header("content-type", "application/json");
        if self.code == 429 {
            builder = builder.header("retry-after", "1");
        }
        builder.body(Body::from(bytes)).expect("a valid response")
    }
}

/// A failure Status as the real server writes it.
fn error(code: u16, reason: &str, message: &str, details: Value) -> Reply {
    let mut body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code});
    if details.as_object().is_some_and(|d| !d.is_empty()) {
        body["details"] = details;
    }
    Reply::ok(code, body)
}

fn reason_of(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        410 => "Expired",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "InternalError",
    }
}

fn not_found(kind: &Kind, name: &str) -> Reply {
    error(
        404,
        "NotFound",
        &format!("{} {name:?} not found", kind.qualified()),
        kind.details(name),
    )
}

fn no_resource() -> Reply {
    error(
        404,
        "NotFound",
        "the server could not find the requested resource",
        json!({}),
    )
}

fn header(headers: &http::HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn str_at(object: &Value, field: &str) -> String {
    object[field].as_str().unwrap_or_default().to_owned()
}

impl State {
    /// Every kind served now: the built-in ones and those of established CRDs.
    fn kinds(&self) -> Vec<Kind> {
        let mut kinds = self.builtin.clone();
        let first = (
            "apiextensions.k8s.io".to_owned(),
            "customresourcedefinitions".to_owned(),
            String::new(),
            String::new(),
        );
        let crds = self.objects.range(first..).take_while(|(k, _)| {
            k.0 == "apiextensions.k8s.io" && k.1 == "customresourcedefinitions"
        });
        for (_, stored) in crds {
            let crd = &stored.object;
            if !is_established(crd) {
                continue;
            }
            for version in crd["spec"]["versions"].as_array().into_iter().flatten() {
                if version["served"] == false {
                    continue;
                }
                kinds.push(Kind {
                    group: str_at(&crd["spec"], "group"),
                    version: str_at(version, "name"),
                    kind: str_at(&crd["spec"]["names"], "kind"),
                    plural: str_at(&crd["spec"]["names"], "plural"),
                    namespaced: crd["spec"]["scope"] != "Cluster",
                    status_subresource: version["subresources"]["status"].is_object(),
                    generation: true,
                    custom: true,
                    untyped: untyped(&version["schema"]["openAPIV3Schema"]),
                });
            }
        }
        kinds
    }

    fn kind_of(&self, api_version: &str, kind: &str) -> Option<Kind> {
        self.kinds()
            .into_iter()
            .find(|k| k.api_version() == api_version && k.kind == kind)
    }

    fn take_fault(&mut self, method: &str, path: &str) -> Option<Fault> {
        let at = self.faults.iter().position(|(m, p, _)| {
            m == method
                && p.strip_suffix('*')
                    .map_or(p == path, |prefix| path.starts_with(prefix))
        })?;
        self.faults.remove(at).map(|(_, _, f)| f)
    }

    fn request(&mut self, req: &Req) -> Reply {
        let segments: Vec<&str> = req.path.trim_matches('/').split('/').collect();
        if matches!(segments.as_slice(), ["api"] | ["apis"]) && req.method == "GET" {
            // Content negotiation as a 1.28 server does it: aggregated discovery in v2beta1.
            for accepted in req.accept.split(',').map(str::trim) {
                if accepted.contains("as=APIGroupDiscoveryList") && accepted.contains("v=v2beta1") {
                    return Reply::ok(200, self.aggregated(segments == ["api"]));
                }
                if accepted.contains("as=APIGroupDiscoveryList") {
                    continue;
                }
                break;
            }
            if !req.accept.is_empty()
                && req
                    .accept
                    .split(',')
                    .all(|a| a.contains("as=APIGroupDiscoveryList"))
            {
                let message = "only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf";
                return error(406, "NotAcceptable", message, json!({}));
            }
        }
        let discovery = match segments.as_slice() {
            ["api"] => Some(json!({"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}]})),
            ["apis"] => Some(self.group_list()),
            ["version"] => Some(
                json!({"major": "1", "minor": "28", "gitVersion": "v1.28.7-fake", "platform": "linux/amd64"}),
            ),
            ["api", "v1"] => self.resource_list("", "v1"),
            ["apis", group] => self.group(group),
            ["apis", group, version] => self.resource_list(group, version),
            _ => None,
        };
        if let Some(body) = discovery {
            return if req.method == "GET" {
                Reply::ok(200, body)
            } else {
                error(
                    405,
                    "MethodNotAllowed",
                    "the server does not allow this method on the requested resource",
                    json!({}),
                )
            };
        }
        let target = match segments.as_slice() {
            ["api", "v1", rest @ ..] => self.target("", "v1", rest),
            ["apis", group, version, rest @ ..] => self.target(group, version, rest),
            _ => None,
        };
        let Some(target) = target else {
            return no_resource();
        };
        if target.kind.is_crd() && req.method == "GET" {
            for reads in self.crd_reads.values_mut() {
                *reads += 1;
            }
            self.tick();
        }
        let result = match (req.method.as_str(), &target.name) {
            ("GET", Some(_)) => self.get(&target),
            ("GET", None) => self.list(&target, req),
            ("POST", None) => self.create(&target, req),
            ("PATCH", Some(_)) if req.content_type.starts_with(APPLY) => self.apply(&target, req),
            ("PATCH", Some(_)) if req.content_type.starts_with(MERGE) => {
                self.merge_patch(&target, req)
            }
            ("PATCH", Some(_)) => Err(error(
                415,
                "UnsupportedMediaType",
                &format!(
                    "the fake API server does not serve {:?} patches (use apply or merge patches)",
                    req.content_type
                ),
                json!({}),
            )),
            ("PUT", Some(_)) => self.replace(&target, req),
            ("DELETE", Some(_)) => self.delete(&target, req),
            ("DELETE", None) if !target.kind.is_namespace() => self.delete_collection(&target, req),
            _ => Err(error(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
                json!({}),
            )),
        };
        let mut reply = result.unwrap_or_else(|reply| reply);
        if req.method == "GET" && reply.code == 200 && req.metadata_only() {
            reply.body = partial(reply.body);
        }
        reply
    }

    fn target(&self, group: &str, version: &str, rest: &[&str]) -> Option<Target> {
        let owned = |parts: &[&str]| {
            parts
                .iter()
                .map(|s| (*s).to_owned())
                .collect::<Vec<String>>()
        };
        let (mut ns, mut rest) = match rest {
            ["namespaces", ns, tail @ ..] if !tail.is_empty() => {
                (Some((*ns).to_owned()), owned(tail))
            }
            _ => (None, owned(rest)),
        };
        // `/api/v1/namespaces/<name>/status` is a namespace's subresource, not a collection.
        if group.is_empty() && rest.len() == 1 && matches!(rest[0].as_str(), "status" | "finalize")
        {
            rest = vec!["namespaces".to_owned(), ns.take()?, rest[0].clone()];
        }
        let (plural, name, sub) = match rest.as_slice() {
            [plural] => (plural.as_str(), None, None),
            [plural, name] => (plural.as_str(), Some(name.clone()), None),
            [plural, name, sub] => (plural.as_str(), Some(name.clone()), Some(sub.clone())),
            _ => return None,
        };
        let kind = self
            .kinds()
            .into_iter()
            .find(|k| k.group == group && k.version == version && k.plural == plural)?;
        if ns.is_some() && !kind.namespaced || name.is_some() && kind.namespaced && ns.is_none() {
            return None;
        }
        if sub
            .as_deref()
            .is_some_and(|s| s != "status" || !kind.status_subresource)
        {
            return None;
        }
        Some(Target {
            kind,
            ns,
            name,
            sub,
        })
    }

    // --- discovery ---------------------------------------------------------------------------

    fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for kind in self.kinds().into_iter().filter(|k| !k.group.is_empty()) {
            match groups.iter_mut().find(|(g, _)| *g == kind.group) {
                Some((_, versions)) if !versions.contains(&kind.version) => {
                    versions.push(kind.version)
                }
                Some(_) => {}
                None => groups.push((kind.group, vec![kind.version])),
            }
        }
        groups
    }

    fn group_json(name: &str, versions: &[String]) -> Value {
        let versions: Vec<Value> = versions
            .iter()
            .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
            .collect();
        json!({"name": name, "versions": versions, "preferredVersion": versions[0]})
    }

    fn group_list(&self) -> Value {
        let groups: Vec<Value> = self
            .groups()
            .iter()
            .map(|(g, v)| Self::group_json(g, v))
            .collect();
        json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
    }

    fn group(&self, name: &str) -> Option<Value> {
        let (group, versions) = self.groups().into_iter().find(|(g, _)| g == name)?;
        let mut body = Self::group_json(&group, &versions);
        body["kind"] = json!("APIGroup");
        body["apiVersion"] = json!("v1");
        Some(body)
    }

    /// `/api` or `/apis` as aggregated discovery (`apidiscovery.k8s.io/v2beta1`).
    fn aggregated(&self, core: bool) -> Value {
        let kinds = self.kinds();
        let groups = if core {
            vec![(String::new(), vec!["v1".to_owned()])]
        } else {
            self.groups()
        };
        let items: Vec<Value> = groups
            .iter()
            .map(|(group, versions)| {
                let versions: Vec<Value> = versions
                    .iter()
                    .map(|version| {
                        let resources: Vec<Value> = kinds
                            .iter()
                            .filter(|k| k.group == *group && k.version == *version)
                            .map(|k| {
                                let response_kind = json!({"group": "", "version": "", "kind": k.kind});
                                let mut resource = json!({"resource": k.plural, "responseKind": response_kind,
                                    "scope": if k.namespaced { "Namespaced" } else { "Cluster" },
                                    "singularResource": k.kind.to_lowercase(), "verbs": VERBS});
                                if k.status_subresource {
                                    resource["subresources"] = json!([{"subresource": "status",
                                        "responseKind": response_kind, "verbs": ["get", "patch", "update"]}]);
                                }
                                resource
                            })
                            .collect();
                        json!({"version": version, "resources": resources, "freshness": "Current"})
                    })
                    .collect();
                let mut metadata = json!({"creationTimestamp": null});
                if !group.is_empty() {
                    metadata["name"] = json!(group);
                }
                json!({"metadata": metadata, "versions": versions})
            })
            .collect();
        json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2beta1", "metadata": {}, "items": items})
    }

    fn resource_list(&self, group: &str, version: &str) -> Option<Value> {
        let kinds: Vec<Kind> = self
            .kinds()
            .into_iter()
            .filter(|k| k.group == group && k.version == version)
            .collect();
        let first = kinds.first()?;
        let mut resources = Vec::new();
        for k in &kinds {
            resources.push(json!({"name": k.plural, "singularName": k.kind.to_lowercase(), "namespaced": k.namespaced, "kind": k.kind,
                "verbs": VERBS}));
            if k.status_subresource {
                resources.push(json!({"name": format!("{}/status", k.plural), "singularName": "", "namespaced": k.namespaced,
                    "kind": k.kind, "verbs": ["get", "patch", "update"]}));
            }
        }
        Some(
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": first.api_version(), "resources": resources}),
        )
    }

    // --- reads -------------------------------------------------------------------------------

    fn get(&self, t: &Target) -> Result<Reply, Reply> {
        let stored = self
            .objects
            .get(&t.key())
            .ok_or_else(|| not_found(&t.kind, t.name()))?;
        Ok(Reply::ok(200, stored.render()))
    }

    /// The objects of a collection request matching its selectors.
    fn select(&self, t: &Target, req: &Req) -> Result<Vec<(Key, Value)>, Reply> {
        let labels = req.param("labelSelector").unwrap_or_default();
        let fields = req.param("fieldSelector").unwrap_or_default();
        let mut out = Vec::new();
        for (key, stored) in &self.objects {
            if key.0 != t.kind.group
                || key.1 != t.kind.plural
                || t.ns.as_ref().is_some_and(|ns| *ns != key.2)
            {
                continue;
            }
            if labels_match(labels, &stored.object) && fields_match(fields, &stored.object)? {
                out.push((key.clone(), stored.render()));
            }
        }
        Ok(out)
    }

    fn list(&self, t: &Target, req: &Req) -> Result<Reply, Reply> {
        let items = self.select(t, req)?.into_iter().map(|(_, o)| o).collect();
        Ok(Reply::ok(200, self.list_body(&t.kind, items)))
    }

    /// A `<Kind>List`; the items of built-in kinds lose apiVersion and kind, as the real
    /// server's do.
    fn list_body(&self, kind: &Kind, mut items: Vec<Value>) -> Value {
        if !kind.custom {
            for item in &mut items {
                remove_field(item, "apiVersion");
                remove_field(item, "kind");
            }
        }
        json!({
            "kind": format!("{}List", kind.kind), "apiVersion": kind.api_version(),
            "metadata": {"resourceVersion": self.revision.to_string()}, "items": items,
        })
    }

    /// `deletecollection`: deletes what the selectors match, and answers the list of them as
    /// they were before.
    fn delete_collection(&mut self, t: &Target, req: &Req) -> Result<Reply, Reply> {
        let options = req.json()?;
        let selected = self.select(t, req)?;
        let dry_run = req.dry_run()
            || options["dryRun"]
                .as_array()
                .is_some_and(|d| d.iter().any(|v| v == "All"));
        if !dry_run {
            let policy = options["propagationPolicy"]
                .as_str()
                .or(req.param("propagationPolicy"))
                .unwrap_or("Background");
            for (key, _) in &selected {
                self.delete_object(key, policy);
            }
        }
        let items = selected.into_iter().map(|(_, o)| o).collect();
        Ok(Reply::ok(200, self.list_body(&t.kind, items)))
    }

    // --- writes ------------------------------------------------------------------------------

    /// A new object may go into `t.ns` only if that namespace exists and is not terminating.
    fn check_creation(&self, t: &Target) -> Result<(), Reply> {
        let Some(ns) = &t.ns else { return Ok(()) };
        let key = (
            String::new(),
            "namespaces".to_owned(),
            String::new(),
            ns.clone(),
        );
        let Some(namespace) = self.objects.get(&key) else {
            return Err(error(
                404,
                "NotFound",
                &format!("namespaces {ns:?} not found"),
                json!({"name": ns, "kind": "namespaces"}),
            ));
        };
        if namespace.object["metadata"]["deletionTimestamp"].is_string() {
            let mut details = t.kind.details(t.name());
            details["causes"] = json!([{"reason": "NamespaceTerminating", "message": format!("namespace {ns} is being terminated"), "field": "metadata.namespace"}]);
            let message = format!(
                "{} {:?} is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                t.kind.qualified(),
                t.name()
            );
            return Err(error(403, "Forbidden", &message, details));
        }
        Ok(())
    }

    fn check_body(t: &Target, body: &Value) -> Result<(), Reply> {
        if !body.is_object() {
            return Err(error(
                400,
                "BadRequest",
                "the body must be a JSON object",
                json!({}),
            ));
        }
        let name = body["metadata"]["name"].as_str();
        if let (Some(name), Some(url)) = (name, &t.name)
            && name != url
        {
            return Err(error(
                400,
                "BadRequest",
                &format!(
                    "the name of the object ({name}) does not match the name on the URL ({url})"
                ),
                json!({}),
            ));
        }
        if let (Some(ns), Some(url)) = (body["metadata"]["namespace"].as_str(), &t.ns)
            && ns != url
        {
            return Err(error(
                400,
                "BadRequest",
                "the namespace of the provided object does not match the namespace sent on the request",
                json!({}),
            ));
        }
        for (field, expected) in [
            ("apiVersion", t.kind.api_version()),
            ("kind", t.kind.kind.clone()),
        ] {
            if let Some(sent) = body[field].as_str()
                && sent != expected
            {
                return Err(error(
                    400,
                    "BadRequest",
                    &format!("{field} {sent:?} does not match the expected {expected:?}"),
                    json!({}),
                ));
            }
        }
        Ok(())
    }

    fn check_version(t: &Target, body: &Value, live: &Value) -> Result<(), Reply> {
        match body["metadata"]["resourceVersion"].as_str() {
            Some(rv)
                if !rv.is_empty() && Some(rv) != live["metadata"]["resourceVersion"].as_str() =>
            {
                let message = format!(
                    "Operation cannot be fulfilled on {} {:?}: the object has been modified; please apply your changes to the latest version and try again",
                    t.kind.qualified(),
                    t.name()
                );
                Err(error(409, "Conflict", &message, t.kind.details(t.name())))
            }
            _ => Ok(()),
        }
    }

    fn create(&mut self, t: &Target, req: &Req) -> Result<Reply, Reply> {
        let mut body = req.json()?;
        Self::check_body(t, &body)?;
        let name = match (
            body["metadata"]["name"].as_str(),
            body["metadata"]["generateName"].as_str(),
        ) {
            (Some(name), _) => name.to_owned(),
            (None, Some(prefix)) => format!("{prefix}{}", &new_uid(self.revision)[..5]),
            (None, None) => {
                return Err(error(
                    422,
                    "Invalid",
                    "metadata.name: Required value: name or generateName is required",
                    json!({}),
                ));
            }
        };
        body["metadata"]["name"] = json!(name);
        let t = Target {
            kind: t.kind.clone(),
            ns: t.ns.clone(),
            name: Some(name),
            sub: None,
        };
        if self.objects.contains_key(&t.key()) {
            return Err(error(
                409,
                "AlreadyExists",
                &format!("{} {:?} already exists", t.kind.qualified(), t.name()),
                t.kind.details(t.name()),
            ));
        }
        self.check_creation(&t)?;
        Ok(self.update(&t, body, &req.manager(), req.dry_run()))
    }

    fn merge_patch(&mut self, t: &Target, req: &Req) -> Result<Reply, Reply> {
        let patch = req.json()?;
        let live = self
            .objects
            .get(&t.key())
            .ok_or_else(|| not_found(&t.kind, t.name()))?;
        Self::check_version(t, &patch, &live.object)?;
        let mut object = live.object.clone();
        merge_patch(&mut object, &patch);
        Ok(self.update(t, object, &req.manager(), req.dry_run()))
    }

    fn replace(&mut self, t: &Target, req: &Req) -> Result<Reply, Reply> {
        let body = req.json()?;
        Self::check_body(t, &body)?;
        let live = self
            .objects
            .get(&t.key())
            .ok_or_else(|| not_found(&t.kind, t.name()))?;
        Self::check_version(t, &body, &live.object)?;
        Ok(self.update(t, body, &req.manager(), req.dry_run()))
    }

    /// An Update operation: `object` is the whole new object; the fields it changes move to
    /// `manager`'s Update entry.
    fn update(&mut self, t: &Target, mut object: Value, manager: &str, dry_run: bool) -> Reply {
        let old = self.objects.get(&t.key());
        let old_object = old.map_or_else(|| t.skeleton(), |s| s.object.clone());
        let mut managers = old.map(|s| s.managers.clone()).unwrap_or_default();
        object["apiVersion"] = json!(t.kind.api_version());
        object["kind"] = json!(t.kind.kind);
        object["metadata"]["name"] = json!(t.name());
        if let Some(ns) = &t.ns {
            object["metadata"]["namespace"] = json!(ns);
        }
        if t.sub.is_some() {
            // Through the status subresource only the status changes.
            let status = object["status"].take();
            object = old_object.clone();
            object["status"] = status;
        } else if t.kind.status_subresource {
            match old_object.get("status") {
                Some(status) => object["status"] = status.clone(),
                None => remove_field(&mut object, "status"),
            }
        }
        if t.kind.is_namespace() {
            object["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(t.name());
        }
        let cx = Cx::of(&t.kind);
        let diff = cx.compare(&owned_view(&old_object), &owned_view(&object));
        let sub = t.sub.clone();
        for entry in &mut managers {
            entry
                .fields
                .retain(|p| !diff.changed.contains(p) && !diff.removed.contains(p));
        }
        let api_version = t.kind.api_version();
        let at = managers.iter().position(|e| {
            e.manager == manager
                && e.operation == "Update"
                && e.api_version == api_version
                && e.subresource == sub
        });
        let at = at.unwrap_or_else(|| {
            managers.push(Entry {
                manager: manager.into(),
                operation: "Update",
                api_version,
                subresource: sub,
                time: None,
                fields: FieldSet::new(),
            });
            managers.len() - 1
        });
        // The updater's entry takes what changed, and the time, if anything changed.
        if !diff.changed.is_empty() {
            managers[at].time = Some(now());
        }
        managers[at].fields.extend(diff.changed);
        managers.retain(|e| !e.fields.is_empty());
        self.commit(t, object, managers, dry_run)
    }

    fn apply(&mut self, t: &Target, req: &Req) -> Result<Reply, Reply> {
        if t.sub.is_some() {
            return Err(error(
                405,
                "MethodNotAllowed",
                "the fake API server applies to the main resource only",
                json!({}),
            ));
        }
        let Some(manager) = req.param("fieldManager").filter(|m| !m.is_empty()) else {
            return Err(error(
                400,
                "BadRequest",
                "PATCH requests with an apply patch require a fieldManager",
                json!({}),
            ));
        };
        let mut applied = req.json()?;
        Self::check_body(t, &applied)?;
        if applied["apiVersion"].is_null() || applied["kind"].is_null() {
            return Err(error(
                400,
                "BadRequest",
                "apiVersion and kind must be set in an apply patch",
                json!({}),
            ));
        }
        if t.kind.status_subresource {
            remove_field(&mut applied, "status");
        }
        let existing = self.objects.get(&t.key());
        match existing {
            Some(live) => Self::check_version(t, &applied, &live.object)?,
            None => self.check_creation(t)?,
        }
        let live = existing.map_or_else(|| t.skeleton(), |s| s.object.clone());
        let mut managers = existing.map(|s| s.managers.clone()).unwrap_or_default();
        let cx = Cx::of(&t.kind);
        let applied = owned_view(&applied);
        let mut new_set = FieldSet::new();
        cx.collect(&applied, &mut Vec::new(), &mut new_set, false);
        let mut object = cx.merge(&live, &applied, &mut Vec::new());
        let diff = cx.compare(&owned_view(&live), &owned_view(&object));

        let mine = |e: &Entry| e.manager == manager && e.operation == "Apply";
        let conflicts: Vec<(usize, Path)> = managers
            .iter()
            .enumerate()
            .filter(|&(_, e)| !mine(e))
            .flat_map(|(i, e)| {
                e.fields
                    .intersection(&diff.changed)
                    .map(move |p| (i, p.clone()))
            })
            .collect();
        if !conflicts.is_empty() && !req.force() {
            return Err(conflict(&managers, &conflicts));
        }
        for (i, path) in &conflicts {
            managers[*i].fields.remove(path);
        }
        let last = managers
            .iter()
            .find(|e| mine(e))
            .map(|e| e.fields.clone())
            .unwrap_or_default();
        match managers.iter_mut().find(|e| mine(e)) {
            Some(entry) => {
                entry.fields = new_set.clone();
                entry.api_version = t.kind.api_version();
            }
            None => managers.push(Entry {
                manager: manager.into(),
                operation: "Apply",
                api_version: t.kind.api_version(),
                subresource: None,
                time: None,
                fields: new_set.clone(),
            }),
        }
        // What the manager stopped applying goes, unless someone else owns it: a list item only
        // if someone owns the item itself (it goes with fields others own in it, as on the real
        // server), a field if someone owns it or something in it.
        let mut removed: Vec<&Path> = last.difference(&new_set).collect();
        removed.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for path in removed {
            let below = |p: &Path| {
                managers
                    .iter()
                    .any(|e| e.fields.iter().any(|f| f.starts_with(p)))
            };
            let item = path
                .last()
                .is_some_and(|s| s.starts_with("k:") || s.starts_with("v:"));
            let owned = if item {
                managers.iter().any(|e| e.fields.contains(path))
            } else {
                below(path)
            };
            // The key fields of a keyed item go only with the item.
            let key_field = path.len() >= 2
                && path[path.len() - 2].starts_with("k:")
                && path[path.len() - 1]
                    .strip_prefix("f:")
                    .is_some_and(|f| path[path.len() - 2].contains(&format!("{f:?}:")));
            if key_field || owned || !remove_at(&mut object, path) {
                continue;
            }
            // Maps and lists left empty go too, unless owned.
            let top = std::iter::once(1).filter(|_| path[0] != "f:metadata");
            for depth in (2..path.len()).rev().chain(top) {
                let parent = path[..depth].to_vec();
                let empty = value_at(&object, &parent).is_some_and(|v| {
                    v.as_object().is_some_and(Map::is_empty)
                        || v.as_array().is_some_and(Vec::is_empty)
                });
                if !empty || below(&parent) || !remove_at(&mut object, &parent) {
                    break;
                }
            }
        }
        // Fields that are gone belong to no one.
        let diff = cx.compare(&owned_view(&live), &owned_view(&object));
        for entry in &mut managers {
            entry
                .fields
                .retain(|p| !diff.removed.contains(p) || diff.changed.contains(p));
        }
        managers.retain(|e| !e.fields.is_empty());
        // The applier's entry gets the time only if the object changed.
        let folded = |o: &Value| {
            let mut o = o.clone();
            fold_string_data(&mut o);
            owned_view(&o)
        };
        if folded(&object) != folded(&live) {
            managers
                .iter_mut()
                .filter(|e| mine(e))
                .for_each(|e| e.time = Some(now()));
        }
        Ok(self.commit(t, object, managers, req.dry_run()))
    }

    /// Stores a written object: server-owned metadata, no-op detection, finalization.
    fn commit(
        &mut self,
        t: &Target,
        mut object: Value,
        mut managers: Vec<Entry>,
        dry_run: bool,
    ) -> Reply {
        let key = t.key();
        fold_string_data(&mut object);
        if let Some(m) = object["metadata"].as_object_mut() {
            m.remove("managedFields");
            if m.get("finalizers")
                .is_some_and(|f| f.as_array().is_some_and(Vec::is_empty))
            {
                m.remove("finalizers");
            }
        }
        if t.kind.is_namespace() {
            object["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(t.name());
        }
        let old = self.objects.get(&key);
        let created = old.is_none();
        let revision = self.revision + 1;
        match old {
            Some(old) => {
                for field in SERVER_METADATA {
                    match old.object["metadata"].get(*field) {
                        Some(v) => object["metadata"][*field] = v.clone(),
                        None => remove_field(&mut object["metadata"], field),
                    }
                }
                if object == old.object && same_fields(&managers, &old.managers) {
                    return Reply::ok(200, old.render());
                }
                if t.kind.generation && spec_of(&t.kind, &object) != spec_of(&t.kind, &old.object) {
                    let generation = old.object["metadata"]["generation"].as_i64().unwrap_or(0);
                    object["metadata"]["generation"] = json!(generation + 1);
                }
            }
            None => {
                object["metadata"]["uid"] = json!(new_uid(revision));
                object["metadata"]["creationTimestamp"] = json!(now());
                if t.kind.generation {
                    object["metadata"]["generation"] = json!(1);
                }
                if t.kind.is_namespace() {
                    object["spec"]["finalizers"] = json!(["kubernetes"]);
                    object["status"] = json!({"phase": "Active"});
                } else if t.kind.status_subresource && !t.kind.custom {
                    // A built-in kind's status is a struct: it reads `{}` (with what the
                    // real server defaults) until a controller writes it.
                    object["status"] = match t.kind.kind.as_str() {
                        "Service" => json!({"loadBalancer": {}}),
                        "PersistentVolumeClaim" => json!({"phase": "Pending"}),
                        _ => json!({}),
                    };
                }
            }
        }
        object["metadata"]["resourceVersion"] = json!(revision.to_string());
        sort_entries(&mut managers);
        let stored = Stored { object, managers };
        let rendered = stored.render();
        if dry_run {
            return Reply::ok(if created { 201 } else { 200 }, rendered);
        }
        let finalized = stored.object["metadata"]["deletionTimestamp"].is_string()
            && stored.object["metadata"]["finalizers"].is_null()
            && !t.kind.is_namespace();
        self.revision = revision;
        if t.kind.is_crd() && created {
            self.crd_reads.insert(t.name().to_owned(), 0);
        }
        self.gc_pending |= for_gc(&stored.object);
        self.objects.insert(key.clone(), stored);
        if finalized {
            self.remove(&key);
        } else {
            self.event(&key, if created { "ADDED" } else { "MODIFIED" });
        }
        Reply::ok(if created { 201 } else { 200 }, rendered)
    }

    fn event(&mut self, key: &Key, kind: &'static str) {
        if let Some(stored) = self.objects.get(key) {
            let object = stored.render();
            self.events.push(WatchEvent {
                revision: self.revision,
                key: key.clone(),
                kind,
                object,
            });
        }
    }

    /// A direct change by a controller (no field manager).
    fn mutate(&mut self, key: &Key, change: impl FnOnce(&mut Value)) {
        let Some(stored) = self.objects.get_mut(key) else {
            return;
        };
        let before = stored.object.clone();
        change(&mut stored.object);
        if stored.object == before {
            return;
        }
        self.revision += 1;
        stored.object["metadata"]["resourceVersion"] = json!(self.revision.to_string());
        self.gc_pending |= for_gc(&stored.object);
        let gone = stored.object["metadata"]["deletionTimestamp"].is_string()
            && stored.object["metadata"]["finalizers"].is_null()
            && stored.object["kind"] != "Namespace";
        if gone {
            self.remove(key)
        } else {
            self.event(key, "MODIFIED")
        }
    }

    /// The object is gone: with a CRD go its objects; with a namespace, its content.
    fn remove(&mut self, key: &Key) {
        let Some(mut stored) = self.objects.remove(key) else {
            return;
        };
        self.revision += 1;
        stored.object["metadata"]["resourceVersion"] = json!(self.revision.to_string());
        self.events.push(WatchEvent {
            revision: self.revision,
            key: key.clone(),
            kind: "DELETED",
            object: stored.render(),
        });
        self.crd_reads.remove(&key.3);
        if key.1 == "customresourcedefinitions" && key.0 == "apiextensions.k8s.io" {
            let group = str_at(&stored.object["spec"], "group");
            let plural = str_at(&stored.object["spec"]["names"], "plural");
            let doomed: Vec<Key> = self
                .objects
                .keys()
                .filter(|k| k.0 == group && k.1 == plural)
                .cloned()
                .collect();
            for key in doomed {
                self.remove(&key);
            }
        }
        if key.0.is_empty() && key.1 == "namespaces" {
            self.deletions.remove(&key.3);
        }
    }

    fn delete(&mut self, t: &Target, req: &Req) -> Result<Reply, Reply> {
        if t.sub.is_some() {
            return Err(error(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
                json!({}),
            ));
        }
        let options = req.json()?;
        let key = t.key();
        let stored = self
            .objects
            .get(&key)
            .ok_or_else(|| not_found(&t.kind, t.name()))?;
        let meta = &stored.object["metadata"];
        for (field, what, hint) in [
            ("uid", "UID", "deleted and then recreated"),
            ("resourceVersion", "ResourceVersion", "modified"),
        ] {
            if let Some(wanted) = options["preconditions"][field].as_str()
                && Some(wanted) != meta[field].as_str()
            {
                let record = meta[field].as_str().unwrap_or_default();
                let message = format!(
                    "Operation cannot be fulfilled on {} {:?}: the {what} in the precondition ({wanted}) does not match the {what} in record ({record}). The object might have been {hint}",
                    t.kind.kind,
                    t.name()
                );
                return Err(error(
                    409,
                    "Conflict",
                    &message,
                    json!({"name": t.name(), "kind": t.kind.kind}),
                ));
            }
        }
        let dry_run = req.dry_run()
            || options["dryRun"]
                .as_array()
                .is_some_and(|d| d.iter().any(|v| v == "All"));
        let uid = meta["uid"].clone();
        let policy = options["propagationPolicy"]
            .as_str()
            .or(req.param("propagationPolicy"))
            .unwrap_or("Background");
        if dry_run {
            return Ok(Reply::ok(200, stored.render()));
        }
        if t.kind.is_namespace() {
            self.mutate(&key, |ns| {
                if !ns["metadata"]["deletionTimestamp"].is_string() {
                    ns["metadata"]["deletionTimestamp"] = json!(now());
                }
                ns["status"]["phase"] = json!("Terminating");
            });
            let release = match self.namespace_deletion {
                NamespaceDeletion::Immediate => Release::Now,
                NamespaceDeletion::After(delay) => Release::At(tokio::time::Instant::now() + delay),
                NamespaceDeletion::Manual => Release::Never,
            };
            self.deletions.entry(t.name().to_owned()).or_insert(release);
            return Ok(Reply::ok(200, self.objects[&key].render()));
        }
        self.delete_object(&key, policy);
        match self.objects.get(&key) {
            Some(stored) => Ok(Reply::ok(200, stored.render())),
            None => Ok(Reply::ok(
                200,
                json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": {"name": t.name(), "kind": t.kind.plural, "uid": uid}}),
            )),
        }
    }

    /// Deletes an object: at once, or by marking it when finalizers (or the policy) keep it.
    fn delete_object(&mut self, key: &Key, policy: &str) {
        let finalizer = match policy {
            "Foreground" => Some("foregroundDeletion"),
            "Orphan" => Some("orphan"),
            _ => None,
        };
        let Some(stored) = self.objects.get(key) else {
            return;
        };
        let has_finalizers = stored.object["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if !has_finalizers && finalizer.is_none() {
            self.remove(key);
            return;
        }
        self.mutate(key, |o| {
            if !o["metadata"]["deletionTimestamp"].is_string() {
                o["metadata"]["deletionTimestamp"] = json!(now());
                o["metadata"]["deletionGracePeriodSeconds"] = json!(0);
                if let Some(f) = finalizer {
                    let finalizers = o["metadata"]["finalizers"].as_array_mut();
                    match finalizers {
                        Some(list) if !list.iter().any(|x| x == f) => list.push(json!(f)),
                        Some(_) => {}
                        None => o["metadata"]["finalizers"] = json!([f]),
                    }
                }
            }
        });
    }

    // --- controllers -------------------------------------------------------------------------

    /// Runs the fake's controllers until nothing changes.
    fn tick(&mut self) {
        for _ in 0..16 {
            let before = self.revision;
            let pending: Vec<String> = self
                .crd_reads
                .iter()
                .filter(|(_, reads)| **reads >= self.crd_established_after)
                .map(|(name, _)| name.clone())
                .collect();
            for name in pending {
                self.establish(&name);
            }
            if self.argocd_controller {
                self.run_argocd_controller();
            }
            self.collect_garbage();
            self.finish_namespaces();
            self.publish_namespace_defaults();
            if self.revision == before {
                break;
            }
        }
    }

    /// Marks a CRD Established, as the API server's CRD controllers do.
    fn establish(&mut self, name: &str) {
        self.crd_reads.remove(name);
        let kind = self
            .builtin
            .iter()
            .find(|k| k.is_crd())
            .cloned()
            .expect("CRDs are served");
        let key = (
            kind.group.clone(),
            kind.plural.clone(),
            String::new(),
            name.to_owned(),
        );
        let Some(crd) = self
            .objects
            .get(&key)
            .filter(|c| !is_established(&c.object))
        else {
            return;
        };
        let mut names = crd.object["spec"]["names"].clone();
        let kind_name = str_at(&names, "kind");
        for (field, default) in [
            ("listKind", format!("{kind_name}List")),
            ("singular", kind_name.to_lowercase()),
        ] {
            if names[field].is_null() {
                names[field] = json!(default);
            }
        }
        let stored_version = crd.object["spec"]["versions"]
            .as_array()
            .and_then(|v| v.iter().find(|v| v["storage"] == true))
            .map_or(Value::Null, |v| v["name"].clone());
        let time = now();
        let condition = |kind: &str, reason: &str, message: &str| json!({"type": kind, "status": "True", "lastTransitionTime": time, "reason": reason, "message": message});
        let mut object = crd.object.clone();
        object["status"] = json!({
            "acceptedNames": names,
            "conditions": [
                condition("NamesAccepted", "NoConflicts", "no conflicts found"),
                condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
            ],
            "storedVersions": [stored_version],
        });
        let t = Target {
            kind,
            ns: None,
            name: Some(name.to_owned()),
            sub: Some("status".into()),
        };
        self.update(&t, object, "kube-apiserver", false);
    }

    fn applications(&self) -> Vec<Key> {
        self.objects
            .keys()
            .filter(|k| k.0 == "argoproj.io" && k.1 == "applications")
            .cloned()
            .collect()
    }

    fn mark_applications(&mut self, synced: bool, healthy: bool) {
        let patch = json!({"status": {
            "sync": {"status": if synced { "Synced" } else { "OutOfSync" }},
            "health": {"status": if healthy { "Healthy" } else { "Progressing" }},
        }});
        for key in self.applications() {
            self.controller_patch(&key, &patch, ARGOCD_CONTROLLER);
        }
    }

    /// A merge patch by a controller, through the main resource.
    fn controller_patch(&mut self, key: &Key, patch: &Value, manager: &str) {
        let Some(stored) = self.objects.get(key) else {
            return;
        };
        let kind = self
            .kinds()
            .into_iter()
            .find(|k| k.group == key.0 && k.plural == key.1);
        let Some(kind) = kind else { return };
        let mut object = stored.object.clone();
        merge_patch(&mut object, patch);
        let ns = (!key.2.is_empty()).then(|| key.2.clone());
        let t = Target {
            kind,
            ns,
            name: Some(key.3.clone()),
            sub: None,
        };
        self.update(&t, object, manager, false);
    }

    fn run_argocd_controller(&mut self) {
        for key in self.applications() {
            let object = &self.objects[&key].object;
            if object["metadata"]["deletionTimestamp"].is_string() {
                self.controller_patch(
                    &key,
                    &json!({"metadata": {"finalizers": null}}),
                    ARGOCD_CONTROLLER,
                );
            } else if object["status"]["sync"]["status"] != "Synced"
                || object["status"]["health"]["status"] != "Healthy"
            {
                let patch = json!({"status": {"sync": {"status": "Synced"}, "health": {"status": "Healthy"}}});
                self.controller_patch(&key, &patch, ARGOCD_CONTROLLER);
            }
        }
    }

    /// The garbage collector: `orphan` and `foregroundDeletion` finalizers, and dependents
    /// whose owners are all gone.
    fn collect_garbage(&mut self) {
        if !self.gc_pending {
            return;
        }
        let uids: BTreeMap<String, Key> = self
            .objects
            .iter()
            .filter_map(|(k, s)| {
                Some((s.object["metadata"]["uid"].as_str()?.to_owned(), k.clone()))
            })
            .collect();
        let owners_of = |s: &Stored| -> Vec<String> {
            s.object["metadata"]["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r["uid"].as_str().map(str::to_owned))
                .collect()
        };
        let mut dependents: BTreeMap<String, Vec<Key>> = BTreeMap::new();
        let mut orphans = Vec::new();
        for (key, stored) in &self.objects {
            let owners = owners_of(stored);
            if !owners.is_empty() && owners.iter().all(|u| !uids.contains_key(u)) {
                orphans.push(key.clone());
            }
            for owner in owners {
                dependents.entry(owner).or_default().push(key.clone());
            }
        }
        for key in orphans {
            if self
                .objects
                .get(&key)
                .is_some_and(|s| !s.object["metadata"]["deletionTimestamp"].is_string())
            {
                self.delete_object(&key, "Background");
            }
        }
        for (uid, key) in uids {
            let Some(stored) = self.objects.get(&key) else {
                continue;
            };
            let finalizers = &stored.object["metadata"]["finalizers"];
            let has = |f: &str| {
                finalizers
                    .as_array()
                    .is_some_and(|l| l.iter().any(|x| x == f))
            };
            let (orphan, foreground) = (has("orphan"), has("foregroundDeletion"));
            let drop_finalizer = |o: &mut Value, f: &str| {
                if let Some(list) = o["metadata"]["finalizers"].as_array_mut() {
                    list.retain(|x| x != f);
                    if list.is_empty() {
                        remove_field(&mut o["metadata"], "finalizers");
                    }
                }
            };
            let deps = dependents.get(&uid).cloned().unwrap_or_default();
            if orphan {
                for dep in &deps {
                    self.mutate(dep, |o| {
                        if let Some(refs) = o["metadata"]["ownerReferences"].as_array_mut() {
                            refs.retain(|r| r["uid"] != uid.as_str());
                        }
                    });
                }
                self.mutate(&key, |o| drop_finalizer(o, "orphan"));
            } else if foreground {
                if !deps.iter().any(|d| self.objects.contains_key(d)) {
                    self.mutate(&key, |o| drop_finalizer(o, "foregroundDeletion"));
                } else {
                    for dep in deps {
                        self.delete_object(&dep, "Foreground");
                    }
                }
            }
        }
        self.gc_pending = self.objects.values().any(|s| for_gc(&s.object));
    }

    /// What the real controller manager puts in every namespace that is not terminating: the
    /// `kube-root-ca.crt` ConfigMap and the `default` ServiceAccount.
    fn publish_namespace_defaults(&mut self) {
        let first = (
            String::new(),
            "namespaces".to_owned(),
            String::new(),
            String::new(),
        );
        let live: Vec<String> = self
            .objects
            .range(first..)
            .take_while(|(k, _)| k.0.is_empty() && k.1 == "namespaces")
            .filter(|(_, s)| !s.object["metadata"]["deletionTimestamp"].is_string())
            .map(|(k, _)| k.3.clone())
            .collect();
        let description = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";
        let defaults = [
            (
                "configmaps",
                ROOT_CA_CONFIGMAP,
                json!({"metadata": {"annotations": {"kubernetes.io/description": description}},
                "data": {"ca.crt": "-----BEGIN CERTIFICATE-----\nfake\n-----END CERTIFICATE-----\n"}}),
            ),
            ("serviceaccounts", "default", json!({"metadata": {}})),
        ];
        for ns in live {
            for (plural, name, body) in &defaults {
                let key = (
                    String::new(),
                    (*plural).to_owned(),
                    ns.clone(),
                    (*name).to_owned(),
                );
                if self.objects.contains_key(&key) {
                    continue;
                }
                let kind = self
                    .builtin
                    .iter()
                    .find(|k| k.group.is_empty() && k.plural == *plural)
                    .cloned()
                    .expect("a built-in kind");
                let t = Target {
                    kind,
                    ns: Some(ns.clone()),
                    name: Some((*name).to_owned()),
                    sub: None,
                };
                self.update(&t, body.clone(), "kube-controller-manager", false);
            }
        }
    }

    /// The namespace controller: content of released terminating namespaces goes, then the
    /// namespaces left empty.
    fn finish_namespaces(&mut self) {
        if self.deletions.is_empty() {
            return;
        }
        let now = tokio::time::Instant::now();
        let released: Vec<String> = self
            .deletions
            .iter()
            .filter(|(_, r)| match r {
                Release::Now => true,
                Release::At(at) => now >= *at,
                Release::Never => false,
            })
            .map(|(ns, _)| ns.clone())
            .collect();
        for ns in released {
            let content: Vec<Key> = self.objects.keys().filter(|k| k.2 == ns).cloned().collect();
            for key in &content {
                if self
                    .objects
                    .get(key)
                    .is_some_and(|s| !s.object["metadata"]["deletionTimestamp"].is_string())
                {
                    self.delete_object(key, "Background");
                }
            }
            if !self.objects.keys().any(|k| k.2 == ns) {
                self.remove(&(String::new(), "namespaces".into(), String::new(), ns));
            }
        }
    }

    // --- watches -----------------------------------------------------------------------------

    /// Checks a watch request; the revision it watches from (0: send the current objects first).
    fn watch_start(&mut self, req: &Req) -> Result<u64, Reply> {
        let reply = self.request(&Req {
            method: "GET".into(),
            path: req.path.clone(),
            query: req
                .query
                .iter()
                .filter(|(k, _)| k != "watch")
                .cloned()
                .collect(),
            content_type: String::new(),
            user_agent: String::new(),
            accept: String::new(),
            body: Vec::new(),
        });
        if reply.code != 200
            || reply.body["kind"]
                .as_str()
                .is_none_or(|k| !k.ends_with("List"))
        {
            return Err(if reply.code == 200 {
                error(
                    405,
                    "MethodNotAllowed",
                    "watch a collection (with a fieldSelector for one object)",
                    json!({}),
                )
            } else {
                reply
            });
        }
        Ok(req
            .param("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    fn watch_events(&mut self, req: &Req, since: &mut u64) -> Vec<String> {
        let segments: Vec<&str> = req.path.trim_matches('/').split('/').collect();
        let target = match segments.as_slice() {
            ["api", "v1", rest @ ..] => self.target("", "v1", rest),
            ["apis", group, version, rest @ ..] => self.target(group, version, rest),
            _ => None,
        };
        let Some(t) = target else { return Vec::new() };
        let shape = |object: Value| {
            if req.metadata_only() {
                partial(object)
            } else {
                object
            }
        };
        let labels = req.param("labelSelector").unwrap_or_default();
        let fields = req.param("fieldSelector").unwrap_or_default();
        let wanted = |key: &Key, object: &Value| {
            key.0 == t.kind.group
                && key.1 == t.kind.plural
                && t.ns.as_ref().is_none_or(|ns| *ns == key.2)
                && labels_match(labels, object)
                && fields_match(fields, object).unwrap_or(false)
        };
        let lines: Vec<String> = if *since == 0 {
            self.objects
                .iter()
                .filter(|(k, s)| wanted(k, &s.object))
                .map(|(_, s)| json!({"type": "ADDED", "object": shape(s.render())}).to_string())
                .collect()
        } else {
            self.events
                .iter()
                .filter(|e| e.revision > *since && wanted(&e.key, &e.object))
                .map(|e| json!({"type": e.kind, "object": shape(e.object.clone())}).to_string())
                .collect()
        };
        *since = self.revision;
        lines
    }
}

/// What discovery says every kind allows.
const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// Metadata only the server writes.
const SERVER_METADATA: &[&str] = &[
    "uid",
    "creationTimestamp",
    "generation",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "resourceVersion",
];

/// Whether an object is one every cluster has without anyone asking (see [`FakeApi::names`]).
fn is_cluster_default(key: &Key) -> bool {
    let (group, plural, ns, name) = key;
    group.is_empty()
        && match plural.as_str() {
            "namespaces" => SYSTEM_NAMESPACES.contains(&name.as_str()),
            "configmaps" => !ns.is_empty() && name == ROOT_CA_CONFIGMAP,
            "serviceaccounts" => !ns.is_empty() && name == "default",
            _ => false,
        }
}

/// Whether the garbage collector has work with this object.
fn for_gc(object: &Value) -> bool {
    let meta = &object["metadata"];
    meta["ownerReferences"]
        .as_array()
        .is_some_and(|r| !r.is_empty())
        || meta["finalizers"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f == "orphan" || f == "foregroundDeletion"))
}

/// An object or list as `PartialObjectMetadata` (`meta.k8s.io/v1`): metadata only.
fn partial(body: Value) -> Value {
    let object = |o: &Value| json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]});
    match body["items"].as_array() {
        Some(items) => json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
            "metadata": body["metadata"], "items": items.iter().map(object).collect::<Vec<_>>()}),
        None => object(&body),
    }
}

/// Whether a CRD version's schema declares no fields, only `x-kubernetes-preserve-unknown-fields`.
fn untyped(schema: &Value) -> bool {
    schema["x-kubernetes-preserve-unknown-fields"] == true && schema["properties"].is_null()
}

fn is_established(crd: &Value) -> bool {
    crd["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Established" && c["status"] == "True")
}

/// What `generation` follows: everything but metadata (and status, when it is a subresource).
fn spec_of(kind: &Kind, object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(map) = object.as_object_mut() {
        map.remove("metadata");
        if kind.status_subresource {
            map.remove("status");
        }
    }
    object
}

fn same_fields(a: &[Entry], b: &[Entry]) -> bool {
    let key = |e: &Entry| {
        (
            e.manager.clone(),
            e.operation,
            e.api_version.clone(),
            e.subresource.clone(),
            e.fields.clone(),
        )
    };
    let mut a: Vec<_> = a.iter().map(key).collect();
    let mut b: Vec<_> = b.iter().map(key).collect();
    a.sort();
    b.sort();
    a == b
}

/// As the real server sorts `managedFields`: Apply entries first, then by time (none first)
/// and manager.
fn sort_entries(entries: &mut [Entry]) {
    entries.sort_by(|a, b| {
        (a.operation != "Apply", &a.time, &a.manager, &a.api_version).cmp(&(
            b.operation != "Apply",
            &b.time,
            &b.manager,
            &b.api_version,
        ))
    });
}

/// The 409 of an apply with conflicts, worded as the real server words it.
fn conflict(managers: &[Entry], conflicts: &[(usize, Path)]) -> Reply {
    let mut sorted: Vec<(String, String)> = conflicts
        .iter()
        .map(|(i, p)| (managers[*i].printed(), path_string(p)))
        .collect();
    sorted.sort();
    let causes: Vec<Value> = sorted
        .iter()
        .map(|(m, p)| json!({"reason": "FieldManagerConflict", "message": format!("conflict with {m}"), "field": p}))
        .collect();
    let message = if let [(m, p)] = sorted.as_slice() {
        format!("Apply failed with 1 conflict: conflict with {m}: {p}")
    } else {
        let mut lines = Vec::new();
        let mut last: Option<&str> = None;
        for (m, p) in &sorted {
            if last != Some(m) {
                lines.push(format!("conflicts with {m}:"));
                last = Some(m);
            }
            lines.push(format!("- {p}"));
        }
        format!(
            "Apply failed with {} conflicts: {}",
            sorted.len(),
            lines.join("\n")
        )
    };
    error(409, "Conflict", &message, json!({"causes": causes}))
}

// ---------------------------------------------------------------------------------------------
// Selectors
// ---------------------------------------------------------------------------------------------

/// Equality-based label selectors: `a=b`, `a==b`, `a!=b`, `a`, `!a`, joined by commas.
fn labels_match(selector: &str, object: &Value) -> bool {
    let labels = &object["metadata"]["labels"];
    selector
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .all(|term| {
            if let Some((k, v)) = term.split_once("!=") {
                labels[k.trim()].as_str() != Some(v.trim())
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                labels[k.trim()].as_str() == Some(v.trim())
            } else if let Some(k) = term.strip_prefix('!') {
                labels.get(k.trim()).is_none()
            } else {
                labels.get(term).is_some()
            }
        })
}

/// Field selectors on `metadata.name` and `metadata.namespace` (`=`, `==`, `!=`).
fn fields_match(selector: &str, object: &Value) -> Result<bool, Reply> {
    let mut matches = true;
    for term in selector.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let (field, value, equal) = if let Some((f, v)) = term.split_once("!=") {
            (f, v, false)
        } else if let Some((f, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            (f, v, true)
        } else {
            return Err(error(
                400,
                "BadRequest",
                &format!("invalid field selector {term:?}"),
                json!({}),
            ));
        };
        let actual = match field.trim() {
            "metadata.name" => object["metadata"]["name"].as_str().unwrap_or_default(),
            "metadata.namespace" => object["metadata"]["namespace"].as_str().unwrap_or_default(),
            other => {
                let message = format!("field label not supported: {other}");
                return Err(error(400, "BadRequest", &message, json!({})));
            }
        };
        matches &= (actual == value.trim()) == equal;
    }
    Ok(matches)
}

// ---------------------------------------------------------------------------------------------
// Field management
// ---------------------------------------------------------------------------------------------

/// A field path as `FieldsV1` keys: `f:spec`, `k:{"name":"x"}`, `v:"x"`.
type Path = Vec<String>;
/// The fields a manager owns.
type FieldSet = BTreeSet<Path>;

/// How a list merges and is owned.
enum ListType {
    Atomic,
    Set,
    Map(Vec<&'static str>),
}

/// Paths changed (added or modified) and removed between two objects (a modified value's path
/// is in both).
#[derive(Default)]
struct Diff {
    changed: FieldSet,
    removed: FieldSet,
}

/// The schema knowledge of one kind.
struct Cx {
    custom: bool,
    untyped: bool,
}

impl Cx {
    fn of(kind: &Kind) -> Cx {
        Cx {
            custom: kind.custom,
            untyped: kind.untyped,
        }
    }

    fn field(path: &[String]) -> &str {
        path.last()
            .and_then(|s| s.strip_prefix("f:"))
            .unwrap_or_default()
    }

    fn atomic_map(&self, path: &[String]) -> bool {
        !self.custom
            && matches!(
                Self::field(path),
                "selector" | "podSelector" | "namespaceSelector"
            )
    }

    /// The type of the list at `path` holding `items` (keyed lists whose items lack a key are atomic).
    fn list(&self, path: &[String], items: &[&Value]) -> ListType {
        if path == ["f:metadata", "f:finalizers"] {
            return ListType::Set;
        }
        if self.custom {
            return ListType::Atomic;
        }
        let keys = match Self::field(path) {
            "containers" | "initContainers" | "ephemeralContainers" | "env" | "volumes" => {
                vec!["name"]
            }
            "volumeMounts" => vec!["mountPath"],
            "ports" if path.iter().any(|p| p.starts_with("k:")) => {
                vec!["containerPort", "protocol"]
            }
            "ports" => vec!["port", "protocol"],
            _ => return ListType::Atomic,
        };
        if items.iter().all(|i| i.get(keys[0]).is_some()) {
            ListType::Map(keys)
        } else {
            ListType::Atomic
        }
    }

    /// The paths under `value` at `path`: leaves, atomic lists and maps, set items and keyed
    /// items; with `members`, also the maps and lists themselves (as an update that created
    /// them owns them), except the top-level `metadata`, `spec` and `status`.
    fn collect(&self, value: &Value, path: &mut Path, out: &mut FieldSet, members: bool) {
        let top =
            path.len() == 1 && matches!(path[0].as_str(), "f:metadata" | "f:spec" | "f:status");
        let untyped = self.untyped && path.first().is_some_and(|p| p != "f:metadata");
        match value {
            Value::Object(map) if !map.is_empty() && !self.atomic_map(path) => {
                if untyped || members && !path.is_empty() && !top {
                    out.insert(path.clone());
                }
                self.collect_fields(map, path, out, members);
            }
            Value::Array(items) if !items.is_empty() => {
                let refs: Vec<&Value> = items.iter().collect();
                match self.list(path, &refs) {
                    ListType::Atomic => {
                        out.insert(path.clone());
                    }
                    ListType::Set => {
                        if members {
                            out.insert(path.clone());
                        }
                        for item in items {
                            path.push(format!("v:{item}"));
                            out.insert(path.clone());
                            path.pop();
                        }
                    }
                    ListType::Map(keys) => {
                        if members {
                            out.insert(path.clone());
                        }
                        for item in items {
                            path.push(item_key(item, &keys));
                            out.insert(path.clone());
                            if let Some(map) = item.as_object() {
                                self.collect_fields(map, path, out, members);
                            }
                            path.pop();
                        }
                    }
                }
            }
            // `metadata` holding only what no one owns (name, namespace) is not a field.
            _ if path.is_empty() || *path == ["f:metadata"] => {}
            _ => {
                out.insert(path.clone());
            }
        }
    }

    fn collect_fields(
        &self,
        map: &Map<String, Value>,
        path: &mut Path,
        out: &mut FieldSet,
        members: bool,
    ) {
        for (k, v) in map {
            path.push(format!("f:{k}"));
            self.collect(v, path, out, members);
            path.pop();
        }
    }

    /// What changed from `old` to `new`.
    fn compare(&self, old: &Value, new: &Value) -> Diff {
        let mut diff = Diff::default();
        self.compare_at(old, new, &mut Vec::new(), &mut diff);
        diff
    }

    fn compare_at(&self, old: &Value, new: &Value, path: &mut Path, diff: &mut Diff) {
        match (old, new) {
            (Value::Object(a), Value::Object(b)) if !self.atomic_map(path) => {
                for (k, v) in b {
                    path.push(format!("f:{k}"));
                    match a.get(k) {
                        Some(o) => self.compare_at(o, v, path, diff),
                        None => self.collect(v, path, &mut diff.changed, true),
                    }
                    path.pop();
                }
                for (k, v) in a.iter().filter(|(k, _)| !b.contains_key(*k)) {
                    path.push(format!("f:{k}"));
                    self.collect(v, path, &mut diff.removed, true);
                    path.pop();
                }
            }
            (Value::Array(a), Value::Array(b)) if !a.is_empty() && !b.is_empty() => {
                let items: Vec<&Value> = a.iter().chain(b).collect();
                match self.list(path, &items) {
                    ListType::Atomic => {
                        if a != b {
                            diff.changed.insert(path.clone());
                        }
                    }
                    ListType::Set => {
                        for (from, to, out) in
                            [(b, a, &mut diff.changed), (a, b, &mut diff.removed)]
                        {
                            for item in from.iter().filter(|i| !to.contains(i)) {
                                path.push(format!("v:{item}"));
                                out.insert(path.clone());
                                path.pop();
                            }
                        }
                    }
                    ListType::Map(keys) => {
                        let old: BTreeMap<String, &Value> =
                            a.iter().map(|i| (item_key(i, &keys), i)).collect();
                        let new: BTreeMap<String, &Value> =
                            b.iter().map(|i| (item_key(i, &keys), i)).collect();
                        for (key, item) in &new {
                            path.push(key.clone());
                            match old.get(key) {
                                Some(o) => self.compare_at(o, item, path, diff),
                                None => self.collect(item, path, &mut diff.changed, true),
                            }
                            path.pop();
                        }
                        for (key, item) in old.iter().filter(|(k, _)| !new.contains_key(*k)) {
                            path.push(key.clone());
                            self.collect(item, path, &mut diff.removed, true);
                            path.pop();
                        }
                    }
                }
            }
            _ => {
                if old != new {
                    self.collect(old, path, &mut diff.removed, true);
                    self.collect(new, path, &mut diff.changed, true);
                }
            }
        }
    }

    /// `applied` merged into `live` as server-side apply merges: maps by key, keyed lists by
    /// key, sets by value, anything else replaced.
    fn merge(&self, live: &Value, applied: &Value, path: &mut Path) -> Value {
        match (live, applied) {
            (Value::Object(l), Value::Object(a)) if !self.atomic_map(path) => {
                let mut out = l.clone();
                for (k, v) in a {
                    path.push(format!("f:{k}"));
                    let merged = match l.get(k) {
                        Some(lv) => self.merge(lv, v, path),
                        None => v.clone(),
                    };
                    out.insert(k.clone(), merged);
                    path.pop();
                }
                Value::Object(out)
            }
            (Value::Array(l), Value::Array(a)) => {
                let items: Vec<&Value> = l.iter().chain(a).collect();
                match self.list(path, &items) {
                    ListType::Atomic => applied.clone(),
                    ListType::Set => {
                        let mut out = l.clone();
                        out.extend(a.iter().filter(|i| !l.contains(i)).cloned());
                        Value::Array(out)
                    }
                    ListType::Map(keys) => {
                        let mut out = l.clone();
                        for item in a {
                            let key = item_key(item, &keys);
                            path.push(key.clone());
                            match out.iter().position(|o| item_key(o, &keys) == key) {
                                Some(at) => out[at] = self.merge(&out[at], item, path),
                                None => out.push(item.clone()),
                            }
                            path.pop();
                        }
                        Value::Array(out)
                    }
                }
            }
            _ => applied.clone(),
        }
    }
}

/// `k:{"name":"x"}`: the key of a keyed list's item (keys in sorted order, those present).
fn item_key(item: &Value, keys: &[&str]) -> String {
    let mut key = Map::new();
    for k in keys {
        if let Some(v) = key_value(item, k) {
            key.insert((*k).to_owned(), v);
        }
    }
    format!("k:{}", Value::Object(key))
}

/// A key field of a list item; `protocol` is `TCP` when absent, as the real server keys ports
/// by the defaulted value.
fn key_value(item: &Value, field: &str) -> Option<Value> {
    item.get(field)
        .cloned()
        .or_else(|| (field == "protocol").then(|| json!("TCP")))
}

/// The object without what no manager owns: apiVersion, kind, name, namespace and the
/// server-owned metadata.
fn owned_view(object: &Value) -> Value {
    let mut view = object.clone();
    if let Some(map) = view.as_object_mut() {
        map.remove("apiVersion");
        map.remove("kind");
        if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            for field in
                SERVER_METADATA
                    .iter()
                    .chain(&["name", "namespace", "managedFields", "selfLink"])
            {
                meta.remove(*field);
            }
        }
    }
    view
}

/// Whether a list item is the one a path segment names.
fn item_matches(item: &Value, segment: &str) -> bool {
    if let Some(key) = segment.strip_prefix("k:") {
        let key: Value = serde_json::from_str(key).unwrap_or_default();
        key.as_object().is_some_and(|k| {
            k.iter()
                .all(|(f, v)| key_value(item, f).as_ref() == Some(v))
        })
    } else if let Some(value) = segment.strip_prefix("v:") {
        serde_json::from_str::<Value>(value).is_ok_and(|v| v == *item)
    } else {
        false
    }
}

fn value_at<'a>(object: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter()
        .try_fold(object, |v, segment| match segment.strip_prefix("f:") {
            Some(field) => v.get(field),
            None => v.as_array()?.iter().find(|i| item_matches(i, segment)),
        })
}

/// Removes what `path` names; whether it was there.
fn remove_at(object: &mut Value, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut v = object;
    for segment in parents {
        let next = match segment.strip_prefix("f:") {
            Some(field) => v.get_mut(field),
            None => v
                .as_array_mut()
                .and_then(|items| items.iter_mut().find(|i| item_matches(i, segment))),
        };
        match next {
            Some(next) => v = next,
            None => return false,
        }
    }
    match last.strip_prefix("f:") {
        Some(field) => v.as_object_mut().and_then(|m| m.remove(field)).is_some(),
        None => v.as_array_mut().is_some_and(|items| {
            let before = items.len();
            items.retain(|i| !item_matches(i, last));
            items.len() != before
        }),
    }
}

/// `.spec.template.spec.containers[name="c"].image`: a path as conflict messages print it.
fn path_string(path: &[String]) -> String {
    let mut out = String::new();
    for segment in path {
        if let Some(field) = segment.strip_prefix("f:") {
            out.push('.');
            out.push_str(field);
        } else if let Some(key) = segment.strip_prefix("k:") {
            let key: Map<String, Value> = serde_json::from_str(key).unwrap_or_default();
            let parts: Vec<String> = key.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(value) = segment.strip_prefix("v:") {
            out.push_str(&format!("[={value}]"));
        }
    }
    out
}

/// A field set in the nested `FieldsV1` form, with `.` for a node that is itself owned and has
/// owned children.
fn fields_v1(set: &FieldSet) -> Value {
    #[derive(Default)]
    struct Node {
        member: bool,
        children: BTreeMap<String, Node>,
    }
    fn render(node: &Node) -> Value {
        let mut map = Map::new();
        if node.member && !node.children.is_empty() {
            map.insert(".".into(), json!({}));
        }
        for (k, child) in &node.children {
            map.insert(k.clone(), render(child));
        }
        Value::Object(map)
    }
    let mut root = Node::default();
    for path in set {
        let mut node = &mut root;
        for segment in path {
            node = node.children.entry(segment.clone()).or_default();
        }
        node.member = true;
    }
    render(&root)
}

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

fn remove_field(object: &mut Value, field: &str) {
    if let Some(map) = object.as_object_mut() {
        map.remove(field);
    }
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let map = target.as_object_mut().expect("an object");
    for (k, v) in patch {
        if v.is_null() {
            map.remove(k);
        } else {
            merge_patch(map.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// As the API server does with a Secret: `stringData` goes into `data`, base64-encoded.
fn fold_string_data(object: &mut Value) {
    if object["kind"] != "Secret" {
        return;
    }
    let Some(Value::Object(strings)) = object.as_object_mut().and_then(|o| o.remove("stringData"))
    else {
        return;
    };
    for (k, v) in strings {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(v.as_str().unwrap_or_default());
        object["data"][k] = json!(encoded);
    }
}

/// A random UUID (version 4 layout).
fn new_uid(seed: u64) -> String {
    let state = std::collections::hash_map::RandomState::new();
    let (a, b) = (
        state.hash_one(seed),
        state.hash_one(seed.rotate_left(32) ^ 0x9e37_79b9_7f4a_7c15),
    );
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        ((b >> 48) & 0x3fff) | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

/// The current time as the API server writes it (RFC 3339, seconds, UTC).
fn now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (the proleptic Gregorian calendar, in 400-year eras).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}
