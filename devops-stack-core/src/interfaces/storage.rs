//! Storage: the class a component's volumes are provisioned from, and the object store a
//! component keeps its data in.
//!
//! A module that provides a storage class (the EBS CSI driver on EKS) outputs a
//! [`StorageClass`]; a component given it (kube-prometheus-stack, Loki) names it in its volume
//! claims, and the handle makes it run after the class exists. An object store (an S3 bucket)
//! is an [`ObjectStore`]: where it is and what a workload needs to use it; the component asks its
//! workload identity for a role with [`ObjectStore::access`] for its own service account.
//!
//! The store's provider writes that access policy (`devops_stack_aws::s3::object_store` for an
//! S3 bucket, with its ARNs): core builds no cloud's resource names.
//!
//! ```
//! use devops_stack_core::interfaces::{ObjectStore, ObjectStoreKind, PolicyDocument, StorageClass};
//! let gp3 = StorageClass::new("gp3", "ebs.csi.aws.com").default_class(true);
//! assert_eq!(gp3.name, "gp3");
//! let store = ObjectStore::new(ObjectStoreKind::S3, "logs", "garage", PolicyDocument::new())
//!     .endpoint("https://s3.garage.internal");
//! assert_eq!(store.bucket, "logs");
//! assert_eq!(store.endpoint.as_deref(), Some("https://s3.garage.internal"));
//! ```

use serde::Serialize;

use super::PolicyDocument;

/// A Kubernetes `StorageClass` that volume claims can name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StorageClass {
    /// The class's name (`storageClassName` of a claim).
    pub name: String,
    /// The provisioner behind it (`ebs.csi.aws.com`).
    pub provisioner: String,
    /// Whether it is marked as the cluster's default.
    pub default: bool,
}

impl StorageClass {
    /// The class `name` of `provisioner`, not the default.
    pub fn new(name: impl Into<String>, provisioner: impl Into<String>) -> Self {
        StorageClass {
            name: name.into(),
            provisioner: provisioner.into(),
            default: false,
        }
    }

    /// Whether it is the cluster's default class.
    #[must_use]
    pub fn default_class(mut self, on: bool) -> Self {
        self.default = on;
        self
    }
}

/// A module output that provides a storage class (the EBS CSI driver).
pub trait StorageClassProvider {
    /// The class.
    fn storage_class(&self) -> StorageClass;
}

/// The API an object store speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ObjectStoreKind {
    /// The S3 API: Amazon S3, or any store that speaks it (MinIO, Ceph RGW, Garage, and most
    /// clouds' S3-compatible endpoints).
    S3,
}

/// A bucket a component stores its data in, and what a workload needs to use it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectStore {
    /// The API.
    pub kind: ObjectStoreKind,
    /// The bucket's name.
    pub bucket: String,
    /// The bucket's region.
    pub region: String,
    /// Another endpoint than the cloud's own (an S3-compatible store), if any.
    pub endpoint: Option<String>,
    /// What a workload needs to read, write, list and delete the bucket's objects, and nothing
    /// more: the policy a component asks its workload identity for.
    pub access: PolicyDocument,
}

impl ObjectStore {
    /// The bucket `bucket` in `region`, spoken to through `kind`, that a workload uses with
    /// `access` (written by the store's provider: read, write, list and delete its objects, and
    /// nothing more).
    pub fn new(
        kind: ObjectStoreKind,
        bucket: impl Into<String>,
        region: impl Into<String>,
        access: PolicyDocument,
    ) -> Self {
        ObjectStore {
            kind,
            bucket: bucket.into(),
            region: region.into(),
            endpoint: None,
            access,
        }
    }

    /// Another endpoint than the cloud's own.
    #[must_use]
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }
}

/// A module output that provides an object store (an S3 bucket).
pub trait ObjectStoreProvider {
    /// The store.
    fn object_store(&self) -> ObjectStore;
}
