//! Argo CD's custom resources as typed kube resources: `Application`, `AppProject` and
//! `ApplicationSet`.
//!
//! Only the fields the stack uses are typed; Helm values travel as an object
//! (`spec.source.helm.valuesObject`), so that diffs show them key by key.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The finalizer that makes Argo CD delete an Application's resources before the Application.
pub const RESOURCES_FINALIZER: &str = "resources-finalizer.argocd.argoproj.io";
/// The annotation that asks Argo CD's controller to refresh an Application (`normal`, or `hard`
/// to regenerate its manifests); the controller removes it once done.
pub const REFRESH_ANNOTATION: &str = "argocd.argoproj.io/refresh";

/// An Argo CD Application: what to deploy (source), where (destination) and how to sync.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "argoproj.io",
    version = "v1alpha1",
    kind = "Application",
    namespaced,
    status = "ApplicationStatus",
    shortname = "app"
)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSpec {
    /// The Argo CD project.
    pub project: String,
    /// A single source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<ApplicationSource>,
    /// Several sources (multi-source Applications).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<ApplicationSource>,
    /// Where to deploy.
    pub destination: ApplicationDestination,
    /// How to sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_policy: Option<SyncPolicy>,
    /// Differences Argo CD must ignore (fields set by controllers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore_differences: Vec<IgnoreDifferences>,
}

/// Where an Application's manifests come from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSource {
    /// A Helm repository or Git repository URL.
    #[serde(rename = "repoURL")]
    pub repo_url: String,
    /// The chart name, for a Helm repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chart: Option<String>,
    /// The directory, for a Git repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The chart version or Git revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_revision: Option<String>,
    /// Helm settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helm: Option<HelmSource>,
    /// Kustomize settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kustomize: Option<KustomizeSource>,
    /// Plain-directory settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<DirectorySource>,
}

/// Kustomize settings of a source.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KustomizeSource {
    /// A prefix for the names of every resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_prefix: Option<String>,
    /// Image overrides (`name=registry/name:tag`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<String>,
}

/// Settings of a source that is a plain directory of manifests.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DirectorySource {
    /// Whether to read subdirectories too.
    #[serde(default)]
    pub recurse: bool,
}

/// Helm settings of a source.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HelmSource {
    /// The Helm release name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_name: Option<String>,
    /// The values, as an object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values_object: Option<Value>,
    /// Whether to skip the chart's CRDs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_crds: Option<bool>,
    /// Values files of the chart's directory, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub value_files: Vec<String>,
}

/// Where an Application deploys to.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationDestination {
    /// The cluster's API server URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The cluster's name in Argo CD (instead of `server`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The target namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// How an Application syncs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncPolicy {
    /// Automated sync; absent for manual sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automated: Option<AutomatedSync>,
    /// Sync options (`CreateNamespace=true`, `ServerSideApply=true`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sync_options: Vec<String>,
    /// Retries of failed syncs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryStrategy>,
}

/// Automated sync settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutomatedSync {
    /// Delete resources no longer in the source.
    #[serde(default)]
    pub prune: bool,
    /// Revert changes made outside Argo CD.
    #[serde(default)]
    pub self_heal: bool,
    /// Allow syncing to an empty set of resources.
    #[serde(default)]
    pub allow_empty: bool,
}

/// How failed syncs are retried.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryStrategy {
    /// The number of retries (negative: unlimited).
    pub limit: i64,
    /// The backoff between retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Backoff>,
}

/// Retry backoff.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Backoff {
    /// The first delay (`5s`).
    pub duration: String,
    /// The growth factor.
    pub factor: i64,
    /// The largest delay (`3m`).
    pub max_duration: String,
}

/// Differences Argo CD ignores on matching resources.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IgnoreDifferences {
    /// The API group (empty for the core group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The kind.
    pub kind: String,
    /// Only this name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Only this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// JSON pointers of ignored fields.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub json_pointers: Vec<String>,
    /// jq paths of ignored fields.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jq_path_expressions: Vec<String>,
}

/// What Argo CD reports about an Application.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationStatus {
    /// Sync status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncStatus>,
    /// Health status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthStatus>,
    /// Conditions (errors and warnings).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<ApplicationCondition>,
}

/// Sync status: `Synced`, `OutOfSync` or `Unknown`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncStatus {
    /// The status.
    pub status: String,
    /// The synced revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
}

/// Health status: `Healthy`, `Progressing`, `Degraded`, `Suspended`, `Missing` or `Unknown`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthStatus {
    /// The status.
    pub status: String,
    /// A message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A condition of an Application.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationCondition {
    /// The type (`SyncError`, `ComparisonError`).
    #[serde(rename = "type")]
    pub type_: String,
    /// The message.
    pub message: String,
}

impl ApplicationStatus {
    /// Whether Argo CD reports the Application `Synced` and `Healthy`.
    pub fn is_synced_and_healthy(&self) -> bool {
        self.sync.as_ref().is_some_and(|s| s.status == "Synced")
            && self.health.as_ref().is_some_and(|h| h.status == "Healthy")
    }
}

/// An Argo CD project: which sources and destinations its Applications may use.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[kube(
    group = "argoproj.io",
    version = "v1alpha1",
    kind = "AppProject",
    namespaced
)]
#[serde(rename_all = "camelCase")]
pub struct AppProjectSpec {
    /// A description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Allowed source repositories (`*` for any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_repos: Vec<String>,
    /// Allowed destinations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destinations: Vec<ApplicationDestination>,
    /// Allowed cluster-scoped kinds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cluster_resource_whitelist: Vec<GroupKind>,
    /// Allowed namespaced kinds (all when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespace_resource_whitelist: Vec<GroupKind>,
    /// Denied namespaced kinds (checked after the allow-list).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespace_resource_blacklist: Vec<GroupKind>,
    /// Denied cluster-scoped kinds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cluster_resource_blacklist: Vec<GroupKind>,
    /// Project roles: RBAC policies for groups and API tokens.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<ProjectRole>,
    /// Windows in which syncs are allowed or denied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sync_windows: Vec<SyncWindow>,
}

/// A role of a project: policies in `p, proj:<project>:<role>, <resource>, <action>, <object>,
/// allow` form, granted to identity groups and to the role's API tokens.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectRole {
    /// The role's name.
    pub name: String,
    /// A description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Casbin policy lines.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<String>,
    /// Identity groups (from the OIDC groups claim) that have the role.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// The role's API tokens, recorded by Argo CD when it issues one (`iat`, `id`, `exp`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jwt_tokens: Vec<Value>,
}

/// A sync window of a project: when its Applications may (`allow`) or may not (`deny`) sync.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncWindow {
    /// `allow` or `deny`.
    #[serde(default)]
    pub kind: String,
    /// When the window opens: a five-field cron expression.
    #[serde(default)]
    pub schedule: String,
    /// How long it stays open (`1h`, `90m`).
    #[serde(default)]
    pub duration: String,
    /// Applications it applies to (`*` for all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub applications: Vec<String>,
    /// Namespaces it applies to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Clusters it applies to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<String>,
    /// Whether manual syncs are allowed while syncs are denied.
    #[serde(default)]
    pub manual_sync: bool,
    /// The time zone of the schedule (default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
}

/// An Argo CD ApplicationSet: a template of Applications and generators of their parameters.
///
/// The template is kept as an object: its fields hold Go-template expressions
/// (`{{.path.basename}}`) that are not valid in the typed `Application` fields.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "argoproj.io",
    version = "v1alpha1",
    kind = "ApplicationSet",
    namespaced,
    shortname = "appset"
)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSetSpec {
    /// Whether the template uses Go templates (`{{.path.basename}}`).
    #[serde(default)]
    pub go_template: bool,
    /// Go template options (`missingkey=error`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub go_template_options: Vec<String>,
    /// The generators of parameters, each an object (`{"git": {...}}`, `{"pullRequest": {...}}`).
    pub generators: Vec<Value>,
    /// The Application template (`metadata` and `spec`).
    pub template: Value,
    /// What the controller may do to the Applications it generates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_policy: Option<ApplicationSetSyncPolicy>,
}

/// A generator as Argo CD's ApplicationSet controller writes it back: each generator of
/// `generators` (`{"git": {...}}`, `{"pullRequest": {...}}`) gets the empty per-generator
/// `template` the controller's Go types always serialize
/// (`{"metadata": {}, "spec": {"destination": {}, "project": ""}}`) unless it has one.
///
/// The controller updates the whole set (when it removes the refresh annotation, for one): a
/// generator rendered without that field is a different value, so the controller takes the
/// field over from the engine's server-side apply, and the next apply takes it back, a write on
/// every re-apply. Rendered as the controller writes it, the value is the same and the field
/// stays the engine's.
///
/// ```
/// use devops_stack_core::argocd::as_controller_writes;
/// let g = as_controller_writes(serde_json::json!({"git": {"repoURL": "https://x", "revision": "HEAD"}}));
/// assert_eq!(g["git"]["template"]["spec"]["project"], "");
/// ```
pub fn as_controller_writes(mut generator: Value) -> Value {
    if let Some(inner) = generator
        .as_object_mut()
        .and_then(|g| g.values_mut().next())
        .and_then(Value::as_object_mut)
    {
        inner.entry("template").or_insert_with(
            || serde_json::json!({"metadata": {}, "spec": {"destination": {}, "project": ""}}),
        );
    }
    generator
}

/// What an ApplicationSet's controller may do to its Applications.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSetSyncPolicy {
    /// Keep the resources of Applications deleted with the ApplicationSet (left out when
    /// false, as Argo CD writes it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub preserve_resources_on_deletion: bool,
    /// `create-only`, `create-update`, `create-delete` or `sync`: `create-update` never
    /// deletes an Application when the generators stop producing it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applications_sync: Option<String>,
}

/// An API group and kind; `*` matches any.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
pub struct GroupKind {
    /// The group (empty for the core group, which live objects may leave out).
    #[serde(default)]
    pub group: String,
    /// The kind.
    pub kind: String,
}

impl Application {
    /// An Application named `name` in `namespace` with `spec`, carrying Argo CD's resources
    /// finalizer so that deleting it deletes what it deployed, and the given labels.
    pub fn with_finalizer(
        name: &str,
        namespace: &str,
        spec: ApplicationSpec,
        labels: BTreeMap<String, String>,
    ) -> Self {
        let mut app = Application::new(name, spec);
        app.metadata.namespace = Some(namespace.to_owned());
        app.metadata.finalizers = Some(vec![RESOURCES_FINALIZER.to_owned()]);
        if !labels.is_empty() {
            app.metadata.labels = Some(labels);
        }
        app
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::Resource;

    #[test]
    fn application_serializes_like_argo_cd_expects() {
        let app = Application::with_finalizer(
            "traefik",
            "argocd",
            ApplicationSpec {
                project: "default".into(),
                source: Some(ApplicationSource {
                    repo_url: "https://traefik.github.io/charts".into(),
                    chart: Some("traefik".into()),
                    target_revision: Some("37.1.1".into()),
                    helm: Some(HelmSource {
                        values_object: Some(serde_json::json!({"replicas": 2})),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                sources: vec![],
                destination: ApplicationDestination {
                    server: Some("https://kubernetes.default.svc".into()),
                    namespace: Some("traefik".into()),
                    ..Default::default()
                },
                sync_policy: Some(SyncPolicy {
                    automated: Some(AutomatedSync {
                        prune: true,
                        self_heal: true,
                        allow_empty: false,
                    }),
                    sync_options: vec!["CreateNamespace=true".into()],
                    retry: None,
                }),
                ignore_differences: vec![],
            },
            BTreeMap::new(),
        );
        let v = serde_json::to_value(&app).unwrap();
        assert_eq!(v["apiVersion"], "argoproj.io/v1alpha1");
        assert_eq!(v["kind"], "Application");
        assert_eq!(
            v["spec"]["source"]["repoURL"],
            "https://traefik.github.io/charts"
        );
        assert_eq!(v["spec"]["source"]["helm"]["valuesObject"]["replicas"], 2);
        assert_eq!(v["spec"]["syncPolicy"]["automated"]["selfHeal"], true);
        assert_eq!(v["metadata"]["finalizers"][0], RESOURCES_FINALIZER);
        assert_eq!(Application::plural(&()), "applications");
    }

    #[test]
    fn live_projects_with_tokens_and_short_group_kinds_read_back() {
        let live = serde_json::json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject",
            "metadata": {"name": "shop", "namespace": "argocd"},
            "spec": {
                "namespaceResourceBlacklist": [{"kind": "ResourceQuota"}],
                "roles": [{"name": "ci", "policies": ["p, proj:shop:ci, applications, sync, shop/*, allow"],
                    "jwtTokens": [{"iat": 1700000000, "id": "devops-stack"}]}],
                "syncWindows": [{"kind": "deny", "schedule": "0 18 * * 5", "duration": "62h", "manualSync": true}],
            },
            "status": {"jwtTokensByRole": {"ci": {"items": []}}},
        });
        let p: AppProject = serde_json::from_value(live).unwrap();
        assert_eq!(p.spec.namespace_resource_blacklist[0].group, "");
        assert_eq!(p.spec.roles[0].jwt_tokens[0]["id"], "devops-stack");
        assert!(p.spec.sync_windows[0].manual_sync);
    }

    #[test]
    fn application_sets_serialize_like_argo_cd_expects() {
        let set = ApplicationSet::new(
            "shop-services",
            ApplicationSetSpec {
                go_template: true,
                go_template_options: vec!["missingkey=error".into()],
                generators: vec![
                    serde_json::json!({"git": {"repoURL": "https://example.com/r.git"}}),
                ],
                template: serde_json::json!({"metadata": {"name": "{{.path.basename}}"}}),
                sync_policy: Some(ApplicationSetSyncPolicy {
                    preserve_resources_on_deletion: true,
                    applications_sync: Some("create-update".into()),
                }),
            },
        );
        let v = serde_json::to_value(&set).unwrap();
        assert_eq!(v["kind"], "ApplicationSet");
        assert_eq!(v["spec"]["goTemplateOptions"][0], "missingkey=error");
        assert_eq!(v["spec"]["syncPolicy"]["preserveResourcesOnDeletion"], true);
        assert_eq!(v["spec"]["syncPolicy"]["applicationsSync"], "create-update");
        assert_eq!(ApplicationSet::plural(&()), "applicationsets");
    }
}
