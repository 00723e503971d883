//! The Amazon EBS CSI driver and the stack's `gp3` StorageClass, from the `aws-ebs-csi-driver`
//! chart of <https://kubernetes-sigs.github.io/aws-ebs-csi-driver>.
//!
//! On EKS the in-tree `gp2` class needs this driver (since Kubernetes 1.23), and clusters made
//! with 1.30 or later have no default StorageClass at all: without this module every volume
//! claim of kube-prometheus-stack and Loki stays `Pending`.
//!
//! # Inputs
//! - the cluster and Argo CD, and the cluster's workload identity (IRSA on EKS), in
//!   [`EbsCsiDriver::new`](EbsCsiDriver#method.new).
//!
//! # Outputs
//! [`EbsCsi`]: the driver's namespace and the [`StorageClass`] it provisions. It implements
//! `StorageClassProvider`: `handle.storage_class()` is the `Input<StorageClass>` that
//! [`KubePrometheusStack::storage_class`](crate::KubePrometheusStack#method.storage_class) and
//! [`Loki::storage_class`](crate::Loki#method.storage_class) take, so they run after the class
//! exists and their volumes name it.
//!
//! # Defaults
//! Chart `aws-ebs-csi-driver` [`CHART_VERSION`] in `kube-system` (the module neither creates
//! nor deletes that namespace), release `aws-ebs-csi-driver`. The controller's service account
//! `ebs-csi-controller-sa` gets a workload role with AWS's managed policy
//! `service-role/AmazonEBSCSIDriverPolicy` (its annotation goes on the chart's
//! `controller.serviceAccount.annotations`); the role is made before the Application, and
//! deleted after it on destroy. The driver tags every volume it creates
//! `kubernetes.io/cluster/<cluster name>: owned` (`controller.k8sTagClusterId`), which is how the
//! clean-up before a cluster is deleted finds them.
//!
//! The module itself (through the apply engine, not the chart) creates the StorageClass
//! [`DEFAULT_STORAGE_CLASS`] (`gp3`,
//! [`EbsCsiDriver::storage_class_name`](EbsCsiDriver#method.storage_class_name)): provisioner
//! `ebs.csi.aws.com`, parameters `type: gp3` and `encrypted: "true"` (with
//! [`EbsCsiDriver::kms_key_id`](EbsCsiDriver#method.kms_key_id), also `kmsKeyId`),
//! `volumeBindingMode: WaitForFirstConsumer`, `allowVolumeExpansion: true`, `reclaimPolicy:
//! Delete`, annotated `storageclass.kubernetes.io/is-default-class: "true"`
//! ([`EbsCsiDriver::default_class`](EbsCsiDriver#method.default_class)). A StorageClass of that
//! name that the stack did not create is an error, never taken over.
//!
//! # Destroy
//! Volumes are deleted by the driver itself: once a claim is gone, the driver deletes the EBS
//! volume of its `PersistentVolume` (reclaim policy `Delete`). So before its Application goes, the
//! module waits (at most
//! [`EbsCsiDriver::volume_release_timeout`](EbsCsiDriver#method.volume_release_timeout), 10 minutes
//! by default) until no volume of its class whose claim is gone or being deleted (the claims of the
//! modules destroyed before it, kube-prometheus-stack and Loki) is left; an error names those still
//! there. It deletes nothing itself: a volume whose claim is alive (a user's) is not waited for,
//! and stays.
//!
//! On EKS clusters made before 1.30 the in-tree class `gp2` is marked default too. The module
//! leaves it alone (it is not the stack's): Kubernetes then gives claims without a class the
//! most recently created default, which is `gp3`; the stack's own claims name `gp3` anyway.

use std::time::Duration;

use devops_stack_core::interfaces::{
    ArgoCdTarget, ClusterRef, PolicyDocument, RoleRequest, ServiceAccount, StorageClass,
    StorageClassProvider, WorkloadIdentityRef,
};
use devops_stack_core::validate::dns_subdomain;
use devops_stack_core::{Context, Input, Needs, Validation};
use serde::Serialize;
use serde_json::json;

use crate::chart::{Chart, ChartSpec, Common, Env, Rendered, Secrets, ValueKind, WantedRole};
use crate::error::{Error, Result};

/// The pinned chart version ([`pins::AWS_EBS_CSI_DRIVER`](crate::pins::AWS_EBS_CSI_DRIVER)).
pub const CHART_VERSION: &str = crate::pins::AWS_EBS_CSI_DRIVER.version;
/// The chart's Helm repository.
pub const CHART_REPOSITORY: &str = crate::pins::AWS_EBS_CSI_DRIVER.repository;
/// The StorageClass the module creates by default.
pub const DEFAULT_STORAGE_CLASS: &str = "gp3";
/// The CSI driver's name, the provisioner of its StorageClasses.
pub const PROVISIONER: &str = "ebs.csi.aws.com";
/// The controller's service account, which gets the workload role.
pub const CONTROLLER_SERVICE_ACCOUNT: &str = "ebs-csi-controller-sa";
/// How long destroy waits by default for the volumes of released claims to be deleted.
pub const DEFAULT_VOLUME_RELEASE_TIMEOUT: Duration = Duration::from_secs(600);
/// The AWS managed policy the controller's role gets.
pub const MANAGED_POLICY: &str = "service-role/AmazonEBSCSIDriverPolicy";

/// What the EBS CSI driver outputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EbsCsi {
    /// The driver's namespace (`kube-system`).
    pub namespace: String,
    /// The StorageClass the module created.
    pub storage_class: StorageClass,
}

impl StorageClassProvider for EbsCsi {
    fn storage_class(&self) -> StorageClass {
        self.storage_class.clone()
    }
}

/// Deploys the Amazon EBS CSI driver and creates the stack's `gp3` StorageClass.
///
/// Its own setters are below; the shared ones (`namespace`, `values`, `sync`...) are on
/// [`Chart`].
///
/// ```
/// # use devops_stack_core::{Input, interfaces::{ArgoCdTarget, ClusterRef, WorkloadIdentityRef}};
/// # fn f(cluster: Input<ClusterRef>, argocd: Input<ArgoCdTarget>, identity: Input<WorkloadIdentityRef>) {
/// use devops_stack_modules::EbsCsiDriver;
/// let ebs = EbsCsiDriver::new(cluster, argocd, identity).kms_key_id("alias/prod-volumes");
/// # }
/// ```
pub type EbsCsiDriver = Chart<EbsCsiDriverSpec>;

/// The spec of [`EbsCsiDriver`]: the workload identity of its controller, its StorageClass,
/// how long destroy waits for released volumes.
#[derive(Debug, Clone)]
pub struct EbsCsiDriverSpec {
    identity: Input<WorkloadIdentityRef>,
    storage_class_name: String,
    default_class: bool,
    kms_key_id: Option<String>,
    volume_release_timeout: Duration,
}

impl EbsCsiDriver {
    /// The EBS CSI driver on `cluster`, deployed by `argocd`, its controller's role made by
    /// `identity`, with the id `aws-ebs-csi-driver`.
    pub fn new(
        cluster: impl Into<Input<ClusterRef>>,
        argocd: impl Into<Input<ArgoCdTarget>>,
        identity: impl Into<Input<WorkloadIdentityRef>>,
    ) -> Self {
        let mut common = Common::new(
            "aws-ebs-csi-driver",
            cluster,
            argocd,
            crate::pins::AWS_EBS_CSI_DRIVER.source(),
            "kube-system",
        );
        common.owns_namespace = false;
        Chart::with_spec(
            common,
            EbsCsiDriverSpec {
                identity: identity.into(),
                storage_class_name: DEFAULT_STORAGE_CLASS.into(),
                default_class: true,
                kms_key_id: None,
                volume_release_timeout: DEFAULT_VOLUME_RELEASE_TIMEOUT,
            },
        )
    }

    /// How long destroy waits for the volumes of released claims to be deleted by the driver
    /// before removing it (default 10 minutes; see [the module documentation](self#destroy)).
    #[must_use]
    pub fn volume_release_timeout(mut self, timeout: Duration) -> Self {
        self.spec.volume_release_timeout = timeout;
        self
    }

    /// Another name for the StorageClass (default `gp3`; a DNS-1123 subdomain).
    #[must_use]
    pub fn storage_class_name(mut self, name: impl Into<String>) -> Self {
        self.spec.storage_class_name = name.into();
        self
    }

    /// Whether the StorageClass is marked as the cluster's default (default true).
    #[must_use]
    pub fn default_class(mut self, on: bool) -> Self {
        self.spec.default_class = on;
        self
    }

    /// Encrypts the volumes with this KMS key (id, ARN or alias) instead of the account's
    /// default EBS key. The controller's role must then be allowed to use the key (a key
    /// policy, or a grant).
    #[must_use]
    pub fn kms_key_id(mut self, key: impl Into<String>) -> Self {
        self.spec.kms_key_id = Some(key.into());
        self
    }
}

impl EbsCsiDriverSpec {
    /// The controller's service account, in the module's namespace.
    fn service_account(common: &Common) -> ServiceAccount {
        ServiceAccount::new(&common.namespace, CONTROLLER_SERVICE_ACCOUNT)
    }

    fn class(&self) -> StorageClass {
        StorageClass::new(&self.storage_class_name, PROVISIONER).default_class(self.default_class)
    }

    /// The StorageClass object.
    fn storage_class_object(&self, env: &Env) -> serde_json::Value {
        let mut parameters = json!({"type": "gp3", "encrypted": "true"});
        if let Some(key) = &self.kms_key_id {
            parameters["kmsKeyId"] = key.clone().into();
        }
        json!({
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {
                "name": self.storage_class_name,
                "labels": env.labels,
                "annotations": {
                    "storageclass.kubernetes.io/is-default-class": self.default_class.to_string(),
                },
            },
            "provisioner": PROVISIONER,
            "parameters": parameters,
            "volumeBindingMode": "WaitForFirstConsumer",
            "allowVolumeExpansion": true,
            "reclaimPolicy": "Delete",
        })
    }

    /// The PersistentVolumes of the class that Kubernetes is to delete through the driver
    /// (reclaim policy `Delete`) and whose claim is gone or being deleted, as
    /// `name (claim namespace/name)`.
    async fn releasing_volumes(&self, client: &kube::Client) -> Result<Vec<String>> {
        use k8s_openapi::api::core::v1::{Namespace, PersistentVolume, PersistentVolumeClaim};
        let pvs: kube::Api<PersistentVolume> = kube::Api::all(client.clone());
        let list = pvs
            .list(&kube::api::ListParams::default())
            .await
            .map_err(|e| Error::kube("listing PersistentVolumes", e))?;
        let mut left = Vec::new();
        for pv in list.items {
            let Some(spec) = &pv.spec else { continue };
            let ours = spec.storage_class_name.as_deref() == Some(self.storage_class_name.as_str())
                && spec.csi.as_ref().is_some_and(|c| c.driver == PROVISIONER)
                && spec.persistent_volume_reclaim_policy.as_deref() == Some("Delete");
            if !ours {
                continue;
            }
            let name = pv.metadata.name.clone().unwrap_or_default();
            let claim = spec
                .claim_ref
                .as_ref()
                .and_then(|c| Some((c.namespace.clone()?, c.name.clone()?)));
            let released = match &claim {
                None => true,
                Some((ns, claim)) => {
                    let pvcs: kube::Api<PersistentVolumeClaim> =
                        kube::Api::namespaced(client.clone(), ns);
                    let namespaces: kube::Api<Namespace> = kube::Api::all(client.clone());
                    let pvc = pvcs.get_opt(claim).await.map_err(|e| {
                        Error::kube(format!("reading PersistentVolumeClaim {ns}/{claim}"), e)
                    })?;
                    let namespace = namespaces
                        .get_opt(ns)
                        .await
                        .map_err(|e| Error::kube(format!("reading Namespace {ns}"), e))?;
                    pvc.is_none_or(|p| p.metadata.deletion_timestamp.is_some())
                        || namespace.is_none_or(|n| n.metadata.deletion_timestamp.is_some())
                }
            };
            if released {
                left.push(match claim {
                    Some((ns, claim)) => format!("PersistentVolume {name} (claim {ns}/{claim})"),
                    None => format!("PersistentVolume {name}"),
                });
            }
        }
        Ok(left)
    }
}

impl ChartSpec for EbsCsiDriverSpec {
    type Output = EbsCsi;
    const KIND: &'static str = "aws-ebs-csi-driver";

    fn needs_more(&self, n: &mut Needs) {
        n.add(&self.identity);
    }

    fn typed_values(&self) -> &'static [(&'static str, ValueKind)] {
        &[
            ("/controller/replicaCount", ValueKind::Integer),
            ("/controller/serviceAccount/annotations", ValueKind::Object),
            ("/controller/k8sTagClusterId", ValueKind::String),
        ]
    }

    fn validate_more(&self, _common: &Common, v: &mut Validation) {
        v.check(
            "storage_class_name",
            dns_subdomain(&self.storage_class_name),
            "name the StorageClass with lowercase letters, digits, `-` and `.` (a DNS-1123 subdomain), like `gp3`",
        );
        if self.volume_release_timeout.is_zero() {
            v.error(
                "volume_release_timeout",
                "is zero",
                "give the driver time to delete the volumes of released claims, like `Duration::from_secs(600)`",
            );
        }
        if self.kms_key_id.as_deref().is_some_and(str::is_empty) {
            v.error(
                "kms_key_id",
                "is empty",
                "give a KMS key id, ARN or alias, or leave it unset for the account's default EBS key",
            );
        }
    }

    fn workload_roles(&self, common: &Common, ctx: &Context) -> Result<Vec<WantedRole>> {
        Ok(vec![WantedRole::new(
            ctx.get(&self.identity)?,
            RoleRequest::new(Self::service_account(common), PolicyDocument::new())
                .managed_policy(MANAGED_POLICY),
        )])
    }

    async fn before_destroy(
        &self,
        _common: &Common,
        ctx: &Context,
        client: &kube::Client,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + self.volume_release_timeout;
        let mut said = false;
        loop {
            let left = self.releasing_volumes(client).await?;
            if left.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Wait {
                    object: format!("StorageClass {}", self.storage_class_name),
                    what: "the driver to delete the volumes of released claims".into(),
                    waited: self.volume_release_timeout,
                    state: format!("still there: {}", left.join(", ")),
                    fix: "check the driver's controller logs and its role's permissions (the driver deletes the EBS volumes), or wait longer with `volume_release_timeout`; destroy again to resume".into(),
                });
            }
            if !said {
                ctx.progress(format!(
                    "waiting for the driver to delete {} volume(s) of released claims: {}",
                    left.len(),
                    left.join(", ")
                ));
                said = true;
            }
            tokio::select! {
                () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                () = ctx.cancellation().cancelled() => {
                    return Err(devops_stack_core::Error::Cancelled { module: ctx.module_id().to_owned() }.into());
                }
            }
        }
    }

    fn render(
        &self,
        common: &Common,
        _ctx: &Context,
        env: &Env,
        _secrets: &Secrets,
    ) -> Result<Rendered<EbsCsi>> {
        let defaults = json!({
            "controller": {
                "k8sTagClusterId": env.cluster.name(),
                "serviceAccount": {
                    "create": true,
                    "name": CONTROLLER_SERVICE_ACCOUNT,
                    "annotations": env.role_annotations(&Self::service_account(common)),
                },
            },
            // the module creates its StorageClass itself, with the stack's labels
            "storageClasses": [],
            "defaultStorageClass": {"enabled": false},
        });
        let values = common.values(env, defaults, |crds| {
            json!({"controller": {"enableMetrics": true, "serviceMonitor": {"forceEnable": true, "labels": crds.labels}}})
        });
        let mut objects = common.chart_objects(env, values);
        objects.push(self.storage_class_object(env));
        Ok(Rendered {
            output: EbsCsi {
                namespace: common.namespace.clone(),
                storage_class: self.class(),
            },
            objects,
        })
    }
}
