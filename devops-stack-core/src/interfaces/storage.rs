//! Storage: the class a component's volumes are provisioned from, and the object store a
//! component keeps its data in.
//!
//! A module that provides a storage class (the EBS CSI driver on EKS) outputs a
//! [`StorageClass`]; a component given it (kube-prometheus-stack, Loki) names it in its volume
//! claims, and the handle makes it run after the class exists. An object store (an S3 bucket)
//! is an [`ObjectStore`]: where it is and what a workload needs to use it; the component asks its
//! workload identity for a role with [`ObjectStore::access`] for its own service account.
//!
//! ```
//! use devops_stack_core::interfaces::{ObjectStore, ObjectStoreKind, StorageClass};
//! let gp3 = StorageClass::new("gp3", "ebs.csi.aws.com").default_class(true);
//! assert_eq!(gp3.name, "gp3");
//! let store = ObjectStore::s3("prod-loki", "eu-west-1");
//! assert_eq!(store.kind, ObjectStoreKind::S3);
//! assert!(store.access.unscoped_statements().is_empty());
//! let china = ObjectStore::s3("logs", "cn-north-1");
//! assert_eq!(china.access.statements[0].resources, ["arn:aws-cn:s3:::logs"]);
//! ```

use serde::Serialize;

use super::{PolicyDocument, Statement};

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
    /// Amazon S3 (or an S3-compatible endpoint).
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
    /// The S3 bucket `bucket` in `region`, with the access a workload needs to keep data in it.
    pub fn s3(bucket: impl Into<String>, region: impl Into<String>) -> Self {
        let bucket = bucket.into();
        let region = region.into();
        // the ARN partition of the region: China and GovCloud have their own
        let partition = if region.starts_with("cn-") {
            "aws-cn"
        } else if region.starts_with("us-gov-") {
            "aws-us-gov"
        } else {
            "aws"
        };
        let access = PolicyDocument::new()
            .statement(Statement::allow(
                ["s3:ListBucket", "s3:GetBucketLocation"],
                [format!("arn:{partition}:s3:::{bucket}")],
            ))
            .statement(Statement::allow(
                ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                [format!("arn:{partition}:s3:::{bucket}/*")],
            ));
        ObjectStore {
            kind: ObjectStoreKind::S3,
            bucket,
            region,
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
