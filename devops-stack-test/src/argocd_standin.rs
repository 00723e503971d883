//! An Argo CD stand-in for the live tier: there is no Argo CD (and no node) in the test cluster,
//! so this plays the two parts of Argo CD's application controller that the engine relies on.
//!
//! - [`ensure_argocd_crds`] installs Argo CD's CRDs (`applications`, `appprojects`,
//!   `applicationsets` in `argoproj.io/v1alpha1`) **only where absent**, with a minimal schema
//!   and, like Argo CD's own CRDs, **no status subresource**. A CRD that exists is never
//!   re-applied nor replaced: on a cluster with a real Argo CD its CRDs belong to another field
//!   manager, and a server-side apply of another schema would conflict on `.spec.versions`.
//! - With `DEVOPS_STACK_TEST_ARGOCD_CRDS=preexisting`, absent CRDs are instead created as
//!   `kubectl create -f` would create Argo CD's install manifests: a plain POST by the field
//!   manager `kubectl-create`, with a richer schema (typed top-level fields, `required`, printer
//!   columns). Run the tier once that way on a cluster without the CRDs to check that every
//!   live test also passes where Argo CD's CRDs already exist and belong to someone else.
//! - [`ArgoCdStandIn`] watches the Applications of given namespaces and, as Argo CD's controller
//!   does, writes `status.sync.status=Synced` and `status.health.status=Healthy` **into the main
//!   object** (a merge patch by the field manager `argocd-application-controller`, not an
//!   apply), and removes the `resources-finalizer.argocd.argoproj.io` finalizer of an
//!   Application being deleted (it deploys nothing, so there is nothing to delete first).
//!   [`ArgoCdStandIn::stop_acting`] plays "Argo CD is gone": the finalizers then stay.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use devops_stack_core::argocd::RESOURCES_FINALIZER;
use futures::{StreamExt as _, stream};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use kube::runtime::{WatchStreamExt as _, watcher};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The field manager Argo CD's application controller writes an Application's status with.
pub const CONTROLLER_MANAGER: &str = "argocd-application-controller";

/// The environment variable choosing how absent CRDs are created.
pub const CRDS_ENV: &str = "DEVOPS_STACK_TEST_ARGOCD_CRDS";

/// `(plural, kind, short names)` of Argo CD's CRDs.
const ARGOCD_KINDS: [(&str, &str, &[&str]); 3] = [
    ("applications", "Application", &["app", "apps"]),
    ("appprojects", "AppProject", &["appproj", "appprojs"]),
    ("applicationsets", "ApplicationSet", &["appset", "appsets"]),
];

/// How absent Argo CD CRDs are created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrdSetup {
    /// A minimal schema, created by the tests' own field manager.
    Minimal,
    /// As a real Argo CD install would leave them: created by `kubectl-create`, richer schema.
    PreExisting,
}

impl CrdSetup {
    /// From [`CRDS_ENV`] (`preexisting`, or anything else for minimal).
    pub fn from_env() -> CrdSetup {
        match std::env::var(CRDS_ENV).as_deref() {
            Ok("preexisting") => CrdSetup::PreExisting,
            _ => CrdSetup::Minimal,
        }
    }
}

/// What [`ensure_argocd_crds`] found and did.
#[derive(Debug, Clone, Default)]
pub struct CrdReport {
    /// The CRDs it created (empty when all existed).
    pub created: Vec<String>,
    /// Whether the live `applications.argoproj.io` has a status subresource (Argo CD's has
    /// none; a cluster may still carry one installed by an older test helper).
    pub status_subresource: bool,
}

/// `apiextensions.k8s.io/v1 CustomResourceDefinition`.
pub fn crd_resource() -> ApiResource {
    ApiResource {
        group: "apiextensions.k8s.io".into(),
        version: "v1".into(),
        api_version: "apiextensions.k8s.io/v1".into(),
        kind: "CustomResourceDefinition".into(),
        plural: "customresourcedefinitions".into(),
    }
}

/// `argoproj.io/v1alpha1 Application`.
pub fn application_resource() -> ApiResource {
    ApiResource {
        group: "argoproj.io".into(),
        version: "v1alpha1".into(),
        api_version: "argoproj.io/v1alpha1".into(),
        kind: "Application".into(),
        plural: "applications".into(),
    }
}

/// The Applications of `ns`.
pub fn applications(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &application_resource())
}

fn crd_body(plural: &str, kind: &str, short: &[&str], setup: CrdSetup) -> Value {
    let open = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
    let (schema, columns, labels) = match setup {
        CrdSetup::Minimal => (open.clone(), json!([]), json!({})),
        CrdSetup::PreExisting => (
            json!({"type": "object", "required": ["metadata", "spec"], "properties": {
                "apiVersion": {"type": "string"}, "kind": {"type": "string"},
                "metadata": {"type": "object"}, "spec": open, "status": open, "operation": open}}),
            if kind == "Application" {
                json!([{"name": "Sync Status", "type": "string", "jsonPath": ".status.sync.status"},
                    {"name": "Health Status", "type": "string", "jsonPath": ".status.health.status"},
                    {"name": "Revision", "type": "string", "jsonPath": ".status.sync.revision", "priority": 10}])
            } else {
                json!([])
            },
            json!({"app.kubernetes.io/name": format!("{plural}.argoproj.io"), "app.kubernetes.io/part-of": "argocd"}),
        ),
    };
    // No `subresources`: Argo CD's controller writes `status` into the main object.
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.argoproj.io"), "labels": labels},
        "spec": {"group": "argoproj.io", "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind.to_lowercase(), "kind": kind,
                "listKind": format!("{kind}List"), "shortNames": short},
            "versions": [{"name": "v1alpha1", "served": true, "storage": true,
                "additionalPrinterColumns": columns, "schema": {"openAPIV3Schema": schema}}]}})
}

/// Installs Argo CD's CRDs that are absent (see the [module docs](self)), leaves the others
/// exactly as they are, and waits until all three are `Established`.
pub async fn ensure_argocd_crds(client: &kube::Client, setup: CrdSetup) -> CrdReport {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &crd_resource());
    let manager = match setup {
        CrdSetup::Minimal => "devops-stack-live-tests",
        CrdSetup::PreExisting => "kubectl-create",
    };
    let mut report = CrdReport::default();
    for (plural, kind, short) in ARGOCD_KINDS {
        let name = format!("{plural}.argoproj.io");
        if api.get_opt(&name).await.expect("reading a CRD").is_some() {
            continue;
        }
        let body: DynamicObject =
            serde_json::from_value(crd_body(plural, kind, short, setup)).unwrap();
        let pp = PostParams {
            field_manager: Some(manager.into()),
            ..PostParams::default()
        };
        match api.create(&pp, &body).await {
            Ok(_) => report.created.push(name),
            // Another test created it in between: leave it alone as well.
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => panic!("creating CRD {name}: {e}"),
        }
    }
    for (plural, ..) in ARGOCD_KINDS {
        let name = format!("{plural}.argoproj.io");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let crd = api.get(&name).await.expect("reading a CRD");
            let established = crd.data["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Established" && c["status"] == "True");
            if established {
                if plural == "applications" {
                    report.status_subresource = crd.data["spec"]["versions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|v| v["name"] == "v1alpha1" && !v["subresources"]["status"].is_null());
                }
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "CRD {name} not Established after 60 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    report
}

/// Plays Argo CD's application controller for the Applications of some namespaces, until
/// dropped or [`ArgoCdStandIn::shutdown`].
pub struct ArgoCdStandIn {
    acting: Arc<AtomicBool>,
    resync: Arc<Notify>,
    cancel: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
    /// What [`ensure_argocd_crds`] found.
    pub crds: CrdReport,
}

impl ArgoCdStandIn {
    /// Makes sure Argo CD's CRDs exist ([`CrdSetup::from_env`]) and starts watching the
    /// Applications of `namespaces` (which need not exist yet).
    pub async fn start(client: &kube::Client, namespaces: &[&str]) -> ArgoCdStandIn {
        let crds = ensure_argocd_crds(client, CrdSetup::from_env()).await;
        if crds.status_subresource {
            println!(
                "note: applications.argoproj.io on this cluster has a status subresource, unlike \
                 Argo CD's; the stand-in writes status through it"
            );
        }
        let acting = Arc::new(AtomicBool::new(true));
        let resync = Arc::new(Notify::new());
        let cancel = CancellationToken::new();
        let controller = Controller {
            client: client.clone(),
            acting: Arc::clone(&acting),
            status_subresource: crds.status_subresource,
        };
        let task = tokio::spawn(controller.run(
            namespaces.iter().map(|n| (*n).to_owned()).collect(),
            Arc::clone(&resync),
            cancel.clone(),
        ));
        ArgoCdStandIn {
            acting,
            resync,
            cancel,
            task: Some(task),
            crds,
        }
    }

    /// "Argo CD is gone": from now on nothing marks Applications nor removes their finalizers.
    pub fn stop_acting(&self) {
        self.acting.store(false, Ordering::SeqCst);
    }

    /// "Argo CD is back": acts again, first on every Application as it is now.
    pub fn resume(&self) {
        self.acting.store(true, Ordering::SeqCst);
        self.resync.notify_one();
    }

    /// Stops the task and waits for it to end.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for ArgoCdStandIn {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

struct Controller {
    client: kube::Client,
    acting: Arc<AtomicBool>,
    status_subresource: bool,
}

impl Controller {
    async fn run(self, namespaces: Vec<String>, resync: Arc<Notify>, cancel: CancellationToken) {
        let watches = namespaces.iter().map(|ns| {
            watcher(applications(&self.client, ns), watcher::Config::default())
                .default_backoff()
                .applied_objects()
                .boxed()
        });
        let mut events = stream::select_all(watches);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = resync.notified() => {
                    for ns in &namespaces {
                        let list = applications(&self.client, ns).list(&ListParams::default()).await;
                        for app in list.map(|l| l.items).unwrap_or_default() {
                            self.reconcile(app).await;
                        }
                    }
                }
                event = events.next() => match event {
                    Some(Ok(app)) => self.reconcile(app).await,
                    // The watcher re-lists after an error (with backoff); nothing to do here.
                    Some(Err(_)) => {}
                    None => return,
                },
            }
        }
    }

    /// What Argo CD's controller would do with `app` as it is now.
    async fn reconcile(&self, app: DynamicObject) {
        if !self.acting.load(Ordering::SeqCst) {
            return;
        }
        let (Some(name), Some(ns)) = (app.metadata.name.clone(), app.metadata.namespace.clone())
        else {
            return;
        };
        let api = applications(&self.client, &ns);
        let params = PatchParams {
            field_manager: Some(CONTROLLER_MANAGER.into()),
            ..PatchParams::default()
        };
        let finalizers = app.metadata.finalizers.clone().unwrap_or_default();
        if app.metadata.deletion_timestamp.is_some() {
            if !finalizers.iter().any(|f| f == RESOURCES_FINALIZER) {
                return;
            }
            // It deployed nothing, so its resources are "deleted"; drop only its own finalizer,
            // with the resourceVersion as a precondition (a conflict is retried on the next event).
            let rest: Vec<&String> = finalizers
                .iter()
                .filter(|f| *f != RESOURCES_FINALIZER)
                .collect();
            let patch = json!({"metadata": {"finalizers": rest, "resourceVersion": app.metadata.resource_version}});
            let _ = api.patch(&name, &params, &Patch::Merge(&patch)).await;
            return;
        }
        let status = &app.data["status"];
        if status["sync"]["status"] == "Synced" && status["health"]["status"] == "Healthy" {
            return;
        }
        let patch = json!({"status": {
            "sync": {"status": "Synced", "revision": app.data["spec"]["source"]["targetRevision"]},
            "health": {"status": "Healthy"},
            "reconciledAt": "2026-01-01T00:00:00Z"}});
        let _ = if self.status_subresource {
            api.patch_status(&name, &params, &Patch::Merge(&patch))
                .await
        } else {
            api.patch(&name, &params, &Patch::Merge(&patch)).await
        };
    }
}
