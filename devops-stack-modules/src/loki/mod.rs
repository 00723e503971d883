//! Loki and its log shipper: the community `loki` chart of
//! <https://grafana-community.github.io/helm-charts> in monolithic (single-binary) mode, and
//! Grafana Alloy (the `alloy` chart of <https://grafana.github.io/helm-charts>) on every node.
//!
//! # Why these charts
//! Promtail reached end of life on 2026-03-02 and its chart is deprecated; Alloy is its
//! successor. The `loki` chart of the `grafana` repository is maintained for Grafana Enterprise
//! Logs only since its 7.0.0 (2026-03-16); open-source Loki's chart moved to the community
//! repository.
//!
//! # Inputs
//! - the cluster and Argo CD, in [`Loki::new`](Loki#method.new);
//! - optionally monitoring ([`Loki::monitoring`](Loki#method.monitoring)): a Grafana datasource
//!   ConfigMap is then created in the monitoring namespace, with Grafana's datasource label;
//! - optionally the ServiceMonitor CRDs ([`Loki::service_monitors`]);
//! - optionally a storage class ([`Loki::storage_class`](Loki#method.storage_class), the EBS CSI
//!   driver's on EKS) that Loki's volume names (a [`Persistence`] that names a class keeps its
//!   own);
//! - optionally an object store and a workload identity
//!   ([`Loki::object_store`](Loki#method.object_store)): see
//!   [below](self#chunks-in-an-object-store).
//!
//! # Outputs
//! [`Logs`]: the namespace and Loki's in-cluster URL.
//!
//! # Defaults
//! Chart `loki` [`CHART_VERSION`] in `Monolithic` mode (1 replica, filesystem storage on a 10Gi
//! volume, TSDB schema v13, no auth, caches, canary, gateway and MinIO off), chart `alloy`
//! [`ALLOY_CHART_VERSION`] as a DaemonSet pushing to it, namespace `loki`. Logs are kept `744h` (31
//! days, [`Loki::retention`](Loki#method.retention); a retention of zero is refused, as Loki would
//! read it as "forever").
//!
//! # Chunks in an object store
//! With [`Loki::object_store`](Loki#method.object_store) (an S3 bucket on AWS), Loki keeps its
//! chunks, its index and its ruler and admin data in the bucket: `loki.storage.type: s3`, the
//! bucket in `loki.storage.bucketNames.{chunks,ruler,admin}`, `loki.storage.s3.region` (and the
//! endpoint, path-style, when the store has its own endpoint), the schema's `object_store: s3`, and
//! the compactor's deletion requests in `s3`. Loki's service account (`serviceAccount.name`, set to
//! the release name) gets a workload role with the store's `access` policy (that bucket's objects,
//! nothing more), made before the Application and deleted after it on destroy; its annotations go
//! on the chart's `serviceAccount.annotations`. The volume stays, for the write-ahead log and the
//! index not yet shipped. Without it, storage is the filesystem of the volume, as everywhere else.
//!
//! # Log shipping
//! Alloy runs the pipeline [`alloy_config`] renders (in the chart's `alloy.configMap.content`):
//! `discovery.kubernetes` finds the pods of its own node (the chart sets `HOSTNAME` to the node
//! name), `discovery.relabel` gives them the labels Promtail's chart gave (`namespace`, `pod`,
//! `container`, `app`, `instance`, `component`, `node_name`, `job` = `namespace/app`),
//! `local.file_match` and `loki.source.file` read the pods' files under `/var/log/pods` (the
//! chart mounts the node's `/var/log`; the file path is the `filename` label),
//! `loki.process` parses the CRI format (the `stream` label) and `loki.write` pushes to the
//! same URL Promtail did, `<Loki's URL>/loki/api/v1/push`, with no tenant header (Loki runs
//! without auth, so every stream lands in its single tenant, as before). Reading the node's
//! files, not the Kubernetes API (`loki.source.kubernetes`), is what keeps the `stream` and
//! `filename` labels and spares the kubelets and API server one log stream per container.
//! Alloy keeps the read positions in the node's `/var/lib/alloy` (as Promtail kept them in the
//! node's `/run/promtail`), so a restarted pod resumes where it stopped. The chart creates
//! Alloy's ServiceAccount and RBAC (read pods and nodes); its PodLogs CRD is not installed (the
//! pipeline does not use it).

use devops_stack_core::interfaces::{
    ArgoCdTarget, ClusterRef, Monitoring, ObjectStore, ObjectStoreKind, RoleRequest,
    ServiceAccount, StorageClass, WorkloadIdentityRef,
};
use devops_stack_core::{Context, Input, Needs, Validation};
use serde::Serialize;
use serde_json::json;

use crate::chart::{
    Chart, ChartSource, ChartSpec, Common, Env, Rendered, Secrets, ValueKind, WantedRole,
};
use crate::error::Result;
use crate::kube_prometheus_stack::Persistence;
use crate::merge_values;

/// The pinned version of the `loki` chart ([`pins::LOKI`](crate::pins::LOKI)).
pub const CHART_VERSION: &str = crate::pins::LOKI.version;
/// The pinned version of the `alloy` chart ([`pins::ALLOY`](crate::pins::ALLOY)).
pub const ALLOY_CHART_VERSION: &str = crate::pins::ALLOY.version;

/// Where Alloy keeps its state (the read positions of the log files) on each node.
const ALLOY_STATE: &str = "/var/lib/alloy";

/// What Loki outputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Logs {
    /// Loki's namespace.
    pub namespace: String,
    /// Loki's in-cluster URL (push at `/loki/api/v1/push`).
    pub url: String,
}

/// Deploys Loki and Grafana Alloy.
///
/// Its own setters are below; the shared ones (`namespace`, `values`, `sync`...) are on
/// [`Chart`].
pub type Loki = Chart<LokiSpec>;

/// The spec of [`Loki`]: its storage, retention and resources, the Grafana it is a datasource
/// of, and the Alloy chart shipping the logs.
#[derive(Debug, Clone)]
pub struct LokiSpec {
    monitoring: Option<Input<Monitoring>>,
    storage: Persistence,
    storage_class: Option<Input<StorageClass>>,
    object_store: Option<(Input<ObjectStore>, Input<WorkloadIdentityRef>)>,
    retention: String,
    resources: crate::Resources,
    alloy_chart: ChartSource,
}

impl Loki {
    /// Loki on `cluster`, deployed by `argocd`, with the id `loki`.
    pub fn new(
        cluster: impl Into<Input<ClusterRef>>,
        argocd: impl Into<Input<ArgoCdTarget>>,
    ) -> Self {
        Chart::with_spec(
            Common::new("loki", cluster, argocd, crate::pins::LOKI.source(), "loki"),
            LokiSpec {
                monitoring: None,
                storage: Persistence::new("10Gi"),
                storage_class: None,
                object_store: None,
                retention: "744h".into(),
                resources: crate::Resources::small(256),
                alloy_chart: crate::pins::ALLOY.source(),
            },
        )
    }

    /// Another source of the `alloy` chart (default [`ALLOY_CHART_VERSION`] from Grafana's
    /// repository): a mirror, or another version. The `loki` chart's own source is set with
    /// `chart_repository` and `chart_version`.
    #[must_use]
    pub fn alloy_chart(mut self, chart: ChartSource) -> Self {
        self.spec.alloy_chart = chart;
        self
    }

    /// Adds Loki as a Grafana datasource of this monitoring.
    #[must_use]
    pub fn monitoring(mut self, monitoring: impl Into<Input<Monitoring>>) -> Self {
        self.spec.monitoring = Some(monitoring.into());
        self
    }

    /// Loki's volume (default 10Gi in the default storage class).
    #[must_use]
    pub fn storage(mut self, p: Persistence) -> Self {
        self.spec.storage = p;
        self
    }

    /// The storage class of Loki's volume, from the module that provides it (the EBS CSI
    /// driver's `gp3`): Loki then runs after it. A [`Persistence`] given to
    /// [`Loki::storage`](Loki#method.storage) that names a class keeps its own.
    #[must_use]
    pub fn storage_class(mut self, class: impl Into<Input<StorageClass>>) -> Self {
        self.spec.storage_class = Some(class.into());
        self
    }

    /// Keeps chunks and index in `store` (an S3 bucket), with a role for Loki's service account
    /// made by `identity` (see [the module documentation](self#chunks-in-an-object-store)).
    #[must_use]
    pub fn object_store(
        mut self,
        store: impl Into<Input<ObjectStore>>,
        identity: impl Into<Input<WorkloadIdentityRef>>,
    ) -> Self {
        self.spec.object_store = Some((store.into(), identity.into()));
        self
    }

    /// How long logs are kept (default `744h`, 31 days).
    #[must_use]
    pub fn retention(mut self, retention: impl Into<String>) -> Self {
        self.spec.retention = retention.into();
        self
    }

    /// Loki's compute resources.
    #[must_use]
    pub fn resources(mut self, resources: crate::Resources) -> Self {
        self.spec.resources = resources;
        self
    }
}

impl LokiSpec {
    /// Loki's service account: its release name, in its namespace (set in the chart's values
    /// when Loki gets a role).
    fn service_account(common: &Common) -> ServiceAccount {
        ServiceAccount::new(&common.namespace, &common.release_name)
    }

    /// The values that keep Loki's data in `store`, with the role's annotations of the service
    /// account `sa`.
    fn object_store_values(
        env: &Env,
        sa: &ServiceAccount,
        store: &ObjectStore,
    ) -> serde_json::Value {
        let kind = match store.kind {
            ObjectStoreKind::S3 => "s3",
            // ObjectStoreKind is non-exhaustive: a new kind needs its values here
            _ => "s3",
        };
        let mut s3 = json!({"region": store.region});
        if let Some(endpoint) = &store.endpoint {
            s3["endpoint"] = endpoint.clone().into();
            s3["s3ForcePathStyle"] = true.into();
        }
        json!({
            "loki": {
                "storage": {
                    "type": kind,
                    "bucketNames": {"chunks": store.bucket, "ruler": store.bucket, "admin": store.bucket},
                    kind: s3,
                },
                "schemaConfig": {"configs": [{
                    "from": "2024-04-01",
                    "store": "tsdb",
                    "object_store": kind,
                    "schema": "v13",
                    "index": {"prefix": "loki_index_", "period": "24h"},
                }]},
                "compactor": {"delete_request_store": kind},
            },
            "serviceAccount": {"create": true, "name": sa.name, "annotations": env.role_annotations(sa)},
        })
    }
}

impl ChartSpec for LokiSpec {
    type Output = Logs;
    const KIND: &'static str = "loki";

    fn needs_more(&self, n: &mut Needs) {
        n.add(&self.monitoring).add(&self.storage_class);
        if let Some((store, identity)) = &self.object_store {
            n.add(store).add(identity);
        }
    }

    fn workload_roles(&self, common: &Common, ctx: &Context) -> Result<Vec<WantedRole>> {
        match &self.object_store {
            Some((store, identity)) => Ok(vec![WantedRole::new(
                ctx.get(identity)?,
                RoleRequest::new(Self::service_account(common), ctx.get(store)?.access),
            )]),
            None => Ok(Vec::new()),
        }
    }

    fn typed_values(&self) -> &'static [(&'static str, ValueKind)] {
        &[
            ("/singleBinary/replicas", ValueKind::Integer),
            ("/singleBinary/resources", ValueKind::Object),
            ("/singleBinary/persistence", ValueKind::Object),
            ("/loki/auth_enabled", ValueKind::Bool),
        ]
    }

    fn validate_more(&self, _common: &Common, v: &mut Validation) {
        self.storage.validate(v, "storage");
        match self
            .retention
            .strip_suffix('h')
            .and_then(|h| h.parse::<u32>().ok())
        {
            None => {
                v.error(
                    "retention",
                    format!("`{}` is not a number of hours", self.retention),
                    "give the retention in hours, like `744h`",
                );
            }
            Some(0) => {
                v.error(
                    "retention",
                    format!(
                        "is `{}`: Loki reads a retention of zero as \"keep logs forever\", and the store would grow without bound",
                        self.retention
                    ),
                    "give how long logs are kept, in hours, like `744h` (31 days)",
                );
            }
            Some(_) => {}
        }
    }

    fn render(
        &self,
        common: &Common,
        ctx: &Context,
        env: &Env,
        _secrets: &Secrets,
    ) -> Result<Rendered<Logs>> {
        let ns = &common.namespace;
        let release = &common.release_name;
        let url = format!("http://{release}.{ns}.svc:3100");
        let class = match &self.storage_class {
            Some(c) => Some(ctx.get(c)?.name),
            None => None,
        };
        let mut persistence = json!({"enabled": true, "size": self.storage.size});
        if let Some(c) = self.storage.class_or(class.as_deref()) {
            persistence["storageClass"] = c.into();
        }
        let mut defaults = json!({
            "deploymentMode": "Monolithic",
            "loki": {
                "auth_enabled": false,
                "commonConfig": {"replication_factor": 1},
                "storage": {"type": "filesystem"},
                "schemaConfig": {"configs": [{
                    "from": "2024-04-01",
                    "store": "tsdb",
                    "object_store": "filesystem",
                    "schema": "v13",
                    "index": {"prefix": "loki_index_", "period": "24h"},
                }]},
                "limits_config": {"retention_period": self.retention},
                "compactor": {"retention_enabled": true, "delete_request_store": "filesystem"},
            },
            "singleBinary": {"replicas": 1, "persistence": persistence, "resources": self.resources.to_value()},
            "read": {"replicas": 0},
            "write": {"replicas": 0},
            "backend": {"replicas": 0},
            "gateway": {"enabled": false},
            "chunksCache": {"enabled": false},
            "resultsCache": {"enabled": false},
            "lokiCanary": {"enabled": false},
            "test": {"enabled": false},
            "minio": {"enabled": false},
        });
        if let Some((store, _)) = &self.object_store {
            let store = ctx.get(store)?;
            let sa = Self::service_account(common);
            merge_values(&mut defaults, &Self::object_store_values(env, &sa, &store));
        }
        let values = common.values(env, defaults, |crds| {
            json!({"monitoring": {"serviceMonitor": {"enabled": true, "labels": crds.labels}}})
        });
        let mut objects = common.chart_objects(env, values);

        let mut alloy = json!({
            "crds": {"create": false},
            "rbac": {"create": true},
            "alloy": {
                "configMap": {"create": true, "content": alloy_config(&format!("{url}/loki/api/v1/push"))},
                // the read positions survive a restart of the pod, so no file is shipped twice
                "storagePath": format!("{ALLOY_STATE}/data"),
                "mounts": {"varlog": true, "extra": [{"name": "state", "mountPath": ALLOY_STATE}]},
            },
            "controller": {
                "type": "daemonset",
                "volumes": {"extra": [{"name": "state", "hostPath": {"path": ALLOY_STATE, "type": "DirectoryOrCreate"}}]},
            },
        });
        if let Some(crds) = &env.monitors {
            alloy["serviceMonitor"] = json!({"enabled": true, "additionalLabels": crds.labels});
        }
        objects.push(common.application_of(
            env,
            &format!("{}-alloy", env.module),
            &self.alloy_chart,
            "alloy",
            alloy,
        ));

        if let Some(m) = &self.monitoring {
            let m = ctx.get(m)?;
            let datasource = format!(
                "apiVersion: 1\ndatasources:\n  - name: Loki\n    type: loki\n    uid: loki\n    access: proxy\n    url: {url}\n"
            );
            objects.push(env.config_map(
                &format!("{}-datasource", common.id),
                &m.namespace,
                &[(m.grafana_datasource_label.as_str(), "1")],
                json!({"loki-datasource.yaml": datasource}),
            ));
        }
        Ok(Rendered {
            output: Logs {
                namespace: ns.clone(),
                url,
            },
            objects,
        })
    }
}

/// Alloy's pipeline shipping the pod logs of its node to `push_url` with Promtail's labels (see
/// the [module documentation](self#log-shipping)).
pub fn alloy_config(push_url: &str) -> String {
    // Promtail's `kubernetes-pods` job, rule for rule (relabel's default action is `replace`).
    let rule = |sources: &[&str], extra: &str, target: &str| {
        let sources: Vec<String> = sources.iter().map(|s| format!("\"{s}\"")).collect();
        format!(
            "  rule {{\n    source_labels = [{}]\n{extra}    target_label  = \"{target}\"\n  }}\n",
            sources.join(", ")
        )
    };
    // the first of the sources that is set
    let first = "    regex         = \"^;*([^;]+)(;.*)?$\"\n";
    let pod_path = "    separator     = \"/\"\n    replacement   = \"/var/log/pods/*$1/*.log\"\n";
    let rules = [
        rule(
            &["__meta_kubernetes_pod_controller_name"],
            "    regex         = \"([0-9a-z-.]+?)(-[0-9a-f]{8,10})?\"\n",
            "__tmp_controller_name",
        ),
        rule(
            &[
                "__meta_kubernetes_pod_label_app_kubernetes_io_name",
                "__meta_kubernetes_pod_label_app",
                "__tmp_controller_name",
                "__meta_kubernetes_pod_name",
            ],
            first,
            "app",
        ),
        rule(
            &[
                "__meta_kubernetes_pod_label_app_kubernetes_io_instance",
                "__meta_kubernetes_pod_label_instance",
            ],
            first,
            "instance",
        ),
        rule(
            &[
                "__meta_kubernetes_pod_label_app_kubernetes_io_component",
                "__meta_kubernetes_pod_label_component",
            ],
            first,
            "component",
        ),
        rule(&["__meta_kubernetes_pod_node_name"], "", "node_name"),
        rule(&["__meta_kubernetes_namespace"], "", "namespace"),
        rule(&["namespace", "app"], "    separator     = \"/\"\n", "job"),
        rule(&["__meta_kubernetes_pod_name"], "", "pod"),
        rule(&["__meta_kubernetes_pod_container_name"], "", "container"),
        rule(
            &[
                "__meta_kubernetes_pod_uid",
                "__meta_kubernetes_pod_container_name",
            ],
            pod_path,
            "__path__",
        ),
        // static pods log under their config hash, not their uid
        rule(
            &[
                "__meta_kubernetes_pod_annotationpresent_kubernetes_io_config_hash",
                "__meta_kubernetes_pod_annotation_kubernetes_io_config_hash",
                "__meta_kubernetes_pod_container_name",
            ],
            &format!("    regex         = \"true/(.*)\"\n{pod_path}"),
            "__path__",
        ),
    ]
    .concat();
    format!(
        r#"discovery.kubernetes "pods" {{
  role = "pod"
  selectors {{
    role  = "pod"
    field = "spec.nodeName=" + sys.env("HOSTNAME")
  }}
}}

discovery.relabel "pods" {{
  targets = discovery.kubernetes.pods.targets
{rules}}}

local.file_match "pods" {{
  path_targets = discovery.relabel.pods.output
}}

loki.source.file "pods" {{
  targets    = local.file_match.pods.targets
  forward_to = [loki.process.pods.receiver]
}}

loki.process "pods" {{
  stage.cri {{}}
  forward_to = [loki.write.loki.receiver]
}}

loki.write "loki" {{
  endpoint {{
    url = "{push_url}"
  }}
}}
"#
    )
}
