//! The [`Eks`] module: an EKS cluster with managed node groups, add-ons and access entries.
//!
//! | Input | Default |
//! |---|---|
//! | cluster name, base domain (`new`) | required |
//! | [`Eks::network`] (a [`Vpc`](crate::vpc::Vpc) handle) or [`Eks::subnets`] (at least 2) | required to create a cluster |
//! | [`Eks::role_arn`] | a role `<name>-eks-cluster` the module creates |
//! | [`Eks::version`] | [`DEFAULT_VERSION`] |
//! | [`Eks::public_access_cidrs`] | `0.0.0.0/0` |
//! | [`Eks::security_groups`], [`Eks::tag`], [`Eks::access_entry`], [`Eks::addon`], [`Eks::node_group`] | none |
//! | [`Eks::workload_identity`] | [`WorkloadIdentityMode::Irsa`] |
//! | [`Eks::aws`], [`Eks::region`], [`Eks::endpoint_url`] | the SDK's standard chain |
//!
//! The API endpoint of a created cluster is reachable both from the VPC (private access) and
//! from the public access CIDRs.
//!
//! Output: [`EksCluster`] (endpoint, CA data, ARN, OIDC issuer, a token-authenticated client,
//! workload identity).
//!
//! **IAM.** Without [`Eks::role_arn`], the module creates the cluster role `<name>-eks-cluster`
//! (trusting `eks.amazonaws.com`, with `AmazonEKSClusterPolicy`); node groups made with
//! [`NodeGroup::named`] use the node role `<name>-eks-node` it creates (trusting
//! `ec2.amazonaws.com`, with `AmazonEKSWorkerNodePolicy`, `AmazonEC2ContainerRegistryReadOnly`
//! and `AmazonEKS_CNI_Policy`). It also creates the IAM OIDC provider of the cluster's issuer,
//! which [`EksCluster`]'s workload identity (IRSA) needs. All of them carry the stack's and
//! module's tags; a role of the same name without them stops the apply
//! ([`Error::NotOwned`]) and is never deleted.
//!
//! **Workload identity.** `eks_handle.workload_identity()` gives the modules deploying into the
//! cluster their cloud roles, in the mode chosen with [`Eks::workload_identity`]: IRSA
//! ([`EksWorkloadIdentity`](crate::iam::EksWorkloadIdentity), the default) or EKS Pod Identity
//! ([`EksPodIdentity`](crate::iam::EksPodIdentity), one role per module shared by the clusters
//! it runs on). With Pod Identity, the module also installs the [`POD_IDENTITY_AGENT`] add-on
//! (unless declared with [`Eks::addon`], then as declared), which goes with the cluster; on an
//! adopted cluster, a destroy removes it only when this module created it. The IAM OIDC
//! provider is made in both modes: IRSA roles of a stack switching to Pod Identity keep working
//! through it until their modules delete them.
//!
//! **Fleets.** [`EksSpokeAuth`] registers the cluster as a spoke of a hub's Argo CD with IAM
//! instead of a ServiceAccount token: an access entry for the hub's role, owned by the
//! registration, and Argo CD's `awsAuthConfig`
//! (`SpokeSpec::new("prod", &prod_eks, s).auth(EksSpokeAuth::new(&prod_eks, hub_role))`).
//!
//! **Destroy** first checks that the cluster's API answers: objects in it (load balancers,
//! volumes) hold cloud resources that would outlive the cluster. When it does not answer, the
//! destroy stops with [`Error::ClusterUnreachable`], unless the run carries
//! [`AbandonInCluster`](devops_stack_core::interfaces::AbandonInCluster). When it answers, the
//! destroy removes what makes AWS resources from inside the cluster and waits for those to go
//! ([`CloudCleanup`]: `LoadBalancer` Services, Ingresses and PVCs of the stack's namespaces; their
//! load balancers and EBS volumes; at most [`Eks::cleanup_timeout`]). Then it deletes the
//! node groups, the cluster (only one carrying this module's tags; never an adopted one), the
//! OIDC provider and the roles it created.
//!
//! **Created or adopted.** [`Eks::new`] creates the cluster when it does not exist and owns it:
//! it updates in place what EKS allows (the version, one minor at a time, and the public access
//! CIDRs; tags are added) and fails with [`Error::ReplacementRequired`] listing the fields that
//! cannot change (subnets, security groups, role). Its destroy deletes every node group of the
//! cluster, then the cluster. [`Eks::adopt`] uses an existing cluster as it is: it manages only
//! the node groups, add-ons and access entries it declares, and its destroy removes only those.
//!
//! **Node groups** are created when missing; scaling, labels and taints are updated in place
//! (`UpdateNodegroupConfig`); instance types, disk size, node role and subnets cannot change.
//! Node groups the module does not declare are left alone by apply.

mod access;
mod apply;
mod cleanup;
mod cluster;
mod identity_provider;
mod spoke_auth;
pub mod token;

use std::collections::BTreeMap;
use std::net::IpAddr;

use devops_stack_core::plan::unknown;
use devops_stack_core::validate::base_domain;
use devops_stack_core::{
    Capability, Context, Handle, Input, Interface, Module, ModuleResult, Needs, Planned, Resource,
    Validation,
};
use serde::Serialize;
use serde_json::json;

pub use cleanup::{CLUSTER_TAG_PREFIX, CleanupReport, CloudCleanup, Leftover};
pub use cluster::{EksCluster, INTERNAL_ANNOTATION, NLB_TYPE_ANNOTATION};
pub use identity_provider::EksOidcIdentityProvider;
pub use spoke_auth::{AWS_AUTH_CONFIG, EksSpokeAuth};
pub use token::{EksAuth, EksAuthLayer, TokenSource};

use crate::config::AwsConfig;
#[cfg(doc)]
use crate::error::Error;
use crate::vpc::Network;
use crate::wait::Polling;

/// The Kubernetes version a new cluster gets: 1.35, released on EKS on 2026-01-28 and in
/// standard support until 2027-03-27 (EKS gives a minor 14 months of standard support, then 12
/// of extended support at six times the hourly price). 1.34's standard support ends on
/// 2026-12-02, and 1.33's ended on 2026-07-29.
pub const DEFAULT_VERSION: &str = "1.35";

/// The AWS-managed policies of the node role the module creates.
pub const NODE_POLICIES: [&str; 3] = [
    "AmazonEKSWorkerNodePolicy",
    "AmazonEC2ContainerRegistryReadOnly",
    "AmazonEKS_CNI_Policy",
];

/// The Kubernetes minor versions (`1.x`) accepted: those EKS still offers. 1.31's extended
/// support ends on 2026-11-26, so 1.32 is the oldest; 1.36 is the newest upstream minor.
pub const SUPPORTED_MINORS: std::ops::RangeInclusive<u32> = 32..=36;

/// The EKS add-on that serves EKS Pod Identity credentials to pods, installed by
/// [`WorkloadIdentityMode::PodIdentity`].
pub const POD_IDENTITY_AGENT: &str = "eks-pod-identity-agent";

/// How the cluster gives the modules deploying into it their cloud roles (what
/// `eks_handle.workload_identity()` returns). Switching a live stack from IRSA to Pod Identity
/// is this one setting; see [`EksPodIdentity`](crate::iam::EksPodIdentity) for what happens to
/// the IRSA roles.
///
/// ```
/// use devops_stack_aws::eks::{Eks, WorkloadIdentityMode};
/// let eks = Eks::new("eks", "prod", "example.com")
///     .subnets(["subnet-a", "subnet-b"])
///     .workload_identity(WorkloadIdentityMode::PodIdentity);
/// # let _ = eks;
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum WorkloadIdentityMode {
    /// IAM roles for service accounts: one role per cluster and service account, trusting the
    /// cluster's OIDC provider; the ServiceAccount carries the role's ARN as an annotation.
    #[default]
    Irsa,
    /// EKS Pod Identity: one role per module and service account, trusting
    /// `pods.eks.amazonaws.com`, shared by every cluster the module runs on; each cluster binds
    /// it with a pod identity association; no annotation. Installs [`POD_IDENTITY_AGENT`].
    PodIdentity,
}

/// The policy [`AccessEntry::admin`] associates.
pub const CLUSTER_ADMIN_POLICY: &str =
    "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy";

/// An EKS cluster, created or adopted by name, with its node groups.
///
/// ```
/// use devops_stack_aws::eks::{Eks, NodeGroup};
/// let eks = Eks::new("eks", "prod", "example.com")
///     .region("eu-west-1")
///     .role_arn("arn:aws:iam::123456789012:role/eks-cluster")
///     .subnets(["subnet-aaa", "subnet-bbb"])
///     .node_group(
///         NodeGroup::new("default", "arn:aws:iam::123456789012:role/eks-nodes")
///             .instance_types(["m6i.large"])
///             .scaling(2, 3, 5),
///     );
/// # let _ = eks;
/// ```
#[derive(Debug, Clone)]
pub struct Eks {
    id: String,
    name: String,
    base_domain: String,
    adopt: bool,
    version: String,
    role_arn: Option<String>,
    network: Option<Input<Network>>,
    subnets: Vec<String>,
    security_groups: Vec<String>,
    public_access_cidrs: Vec<String>,
    tags: BTreeMap<String, String>,
    access_entries: Vec<AccessEntry>,
    addons: Vec<Addon>,
    node_groups: Vec<NodeGroup>,
    workload_identity: WorkloadIdentityMode,
    aws: AwsConfig,
    polling: Polling,
    cleanup_timeout: std::time::Duration,
}

crate::config::aws_setters!(Eks);

impl Eks {
    /// A cluster named `name` that the module creates (or finds, on a re-run) and owns. Its
    /// hostnames are made under `base_domain`.
    pub fn new(
        id: impl Into<String>,
        name: impl Into<String>,
        base_domain: impl Into<String>,
    ) -> Self {
        Eks {
            id: id.into(),
            name: name.into(),
            base_domain: base_domain.into(),
            adopt: false,
            version: DEFAULT_VERSION.into(),
            role_arn: None,
            network: None,
            subnets: Vec::new(),
            security_groups: Vec::new(),
            public_access_cidrs: vec!["0.0.0.0/0".into()],
            tags: BTreeMap::new(),
            access_entries: Vec::new(),
            addons: Vec::new(),
            node_groups: Vec::new(),
            workload_identity: WorkloadIdentityMode::default(),
            aws: AwsConfig::new(),
            polling: Polling::default(),
            cleanup_timeout: std::time::Duration::from_secs(15 * 60),
        }
    }

    /// An existing cluster named `name`, used as it is: never created, updated or deleted; only
    /// the node groups, add-ons and access entries declared on the module are managed.
    pub fn adopt(
        id: impl Into<String>,
        name: impl Into<String>,
        base_domain: impl Into<String>,
    ) -> Self {
        Eks {
            adopt: true,
            ..Eks::new(id, name, base_domain)
        }
    }

    /// The Kubernetes version, `major.minor` (default [`DEFAULT_VERSION`]).
    #[must_use]
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// The IAM role of the control plane (default: one the module creates and deletes).
    #[must_use]
    pub fn role_arn(mut self, arn: impl Into<String>) -> Self {
        self.role_arn = Some(arn.into());
        self
    }

    /// The network of a [`Vpc`](crate::vpc::Vpc) module: the cluster and its node groups use
    /// its private subnets. Passing the handle makes the dependency.
    #[must_use]
    pub fn network(mut self, network: &Handle<Network>) -> Self {
        self.network = Some(network.input());
        self
    }

    /// The VPC subnets, in at least two availability zones (instead of [`Eks::network`]).
    #[must_use]
    pub fn subnets(mut self, subnets: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.subnets = subnets.into_iter().map(Into::into).collect();
        self
    }

    /// Extra security groups of the control plane's network interfaces.
    #[must_use]
    pub fn security_groups(mut self, groups: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.security_groups = groups.into_iter().map(Into::into).collect();
        self
    }

    /// The CIDRs allowed to reach the public endpoint (default `0.0.0.0/0`).
    #[must_use]
    pub fn public_access_cidrs(
        mut self,
        cidrs: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.public_access_cidrs = cidrs.into_iter().map(Into::into).collect();
        self
    }

    /// A tag of the cluster.
    #[must_use]
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.insert(key.into(), value.into());
        self
    }

    /// An access entry (an IAM principal allowed into the cluster). Switches the cluster's
    /// authentication mode to `API_AND_CONFIG_MAP` when the module creates it.
    #[must_use]
    pub fn access_entry(mut self, entry: AccessEntry) -> Self {
        self.access_entries.push(entry);
        self
    }

    /// An EKS add-on.
    #[must_use]
    pub fn addon(mut self, addon: Addon) -> Self {
        self.addons.push(addon);
        self
    }

    /// A managed node group.
    #[must_use]
    pub fn node_group(mut self, group: NodeGroup) -> Self {
        self.node_groups.push(group);
        self
    }

    /// How the cluster gives workloads their cloud roles (default [`WorkloadIdentityMode::Irsa`]).
    /// Modules given `eks_handle.workload_identity()` need no change either way.
    #[must_use]
    pub fn workload_identity(mut self, mode: WorkloadIdentityMode) -> Self {
        self.workload_identity = mode;
        self
    }

    /// How to wait for EKS (default: 5 s doubling to 30 s, at most 40 minutes).
    #[must_use]
    pub fn polling(mut self, polling: Polling) -> Self {
        self.polling = polling;
        self
    }

    /// How long a destroy waits, before deleting the node groups and the cluster, for the load
    /// balancers and volumes made for the cluster's objects to go (default 15 minutes; see
    /// [`CloudCleanup`]).
    #[must_use]
    pub fn cleanup_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.cleanup_timeout = timeout;
        self
    }

    /// The cluster's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name of the cluster role the module creates when no ARN is given.
    pub fn cluster_role_name(&self) -> String {
        crate::iam::role_name(&format!("{}-eks-cluster", self.name))
    }

    /// The name of the node role the module creates for [`NodeGroup::named`] groups.
    pub fn node_role_name(&self) -> String {
        crate::iam::role_name(&format!("{}-eks-node", self.name))
    }

    /// The add-ons the cluster gets: those declared, and [`POD_IDENTITY_AGENT`] with
    /// [`WorkloadIdentityMode::PodIdentity`] unless declared.
    fn wanted_addons(&self) -> Vec<Addon> {
        let mut addons = self.addons.clone();
        if self.adds_pod_identity_agent() {
            addons.push(Addon::new(POD_IDENTITY_AGENT));
        }
        addons
    }

    /// Whether the module adds [`POD_IDENTITY_AGENT`] itself (not declared by the user).
    fn adds_pod_identity_agent(&self) -> bool {
        self.workload_identity == WorkloadIdentityMode::PodIdentity
            && !self.addons.iter().any(|a| a.name == POD_IDENTITY_AGENT)
    }

    fn cluster_resource(&self) -> String {
        format!("EKS cluster `{}`", self.name)
    }

    fn plan_output(&self, ctx: &Context) -> EksCluster {
        let id = ctx.module_id();
        EksCluster {
            name: self.name.clone(),
            base_domain: self.base_domain.clone(),
            region: self
                .aws
                .region_name()
                .map_or_else(|| unknown(id, "region"), str::to_owned),
            endpoint: unknown(id, "endpoint"),
            certificate_authority_data: unknown(id, "certificate_authority_data"),
            arn: unknown(id, "arn"),
            oidc_issuer_url: Some(unknown(id, "oidc_issuer_url")),
            version: if self.adopt {
                unknown(id, "version")
            } else {
                self.version.clone()
            },
            oidc_provider_arn: Some(unknown(id, "oidc_provider_arn")),
            workload_identity_mode: self.workload_identity,
            tokens: None,
            aws: None,
        }
    }
}

/// An IAM principal given access to the cluster through an EKS access entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessEntry {
    /// The IAM role or user ARN.
    pub principal_arn: String,
    /// Kubernetes groups the principal is mapped to.
    pub kubernetes_groups: Vec<String>,
    /// Access policies associated cluster-wide.
    pub policies: Vec<String>,
}

impl AccessEntry {
    /// An entry for `principal_arn` with no group and no policy.
    pub fn new(principal_arn: impl Into<String>) -> Self {
        AccessEntry {
            principal_arn: principal_arn.into(),
            kubernetes_groups: Vec::new(),
            policies: Vec::new(),
        }
    }

    /// An entry making `principal_arn` cluster admin ([`CLUSTER_ADMIN_POLICY`]).
    pub fn admin(principal_arn: impl Into<String>) -> Self {
        Self::new(principal_arn).policy(CLUSTER_ADMIN_POLICY)
    }

    /// Adds a Kubernetes group.
    #[must_use]
    pub fn kubernetes_group(mut self, group: impl Into<String>) -> Self {
        self.kubernetes_groups.push(group.into());
        self
    }

    /// Associates an access policy, cluster-wide.
    #[must_use]
    pub fn policy(mut self, policy_arn: impl Into<String>) -> Self {
        self.policies.push(policy_arn.into());
        self
    }
}

/// An EKS add-on (`vpc-cni`, `coredns`, `kube-proxy`, `aws-ebs-csi-driver`...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Addon {
    /// The add-on's name.
    pub name: String,
    /// Its version (default: EKS's default for the cluster's version).
    pub version: Option<String>,
}

impl Addon {
    /// The add-on `name` at EKS's default version.
    pub fn new(name: impl Into<String>) -> Self {
        Addon {
            name: name.into(),
            version: None,
        }
    }

    /// A specific version (`v1.19.0-eksbuild.1`).
    #[must_use]
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }
}

/// The effect of a node taint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum TaintEffect {
    /// Pods without a toleration are not scheduled.
    NoSchedule,
    /// The scheduler avoids the nodes.
    PreferNoSchedule,
    /// Running pods without a toleration are evicted.
    NoExecute,
}

/// A taint of a node group's nodes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Taint {
    /// The key.
    pub key: String,
    /// The value (may be empty).
    pub value: String,
    /// The effect.
    pub effect: TaintEffect,
}

impl Taint {
    /// A taint.
    pub fn new(key: impl Into<String>, value: impl Into<String>, effect: TaintEffect) -> Self {
        Taint {
            key: key.into(),
            value: value.into(),
            effect,
        }
    }
}

/// A managed node group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeGroup {
    /// Its name.
    pub name: String,
    /// The IAM role of its nodes; `None` for the node role the [`Eks`] module creates.
    pub node_role_arn: Option<String>,
    /// The EC2 instance types (default `t3.large`).
    pub instance_types: Vec<String>,
    /// The minimum number of nodes (default 1).
    pub min_size: i32,
    /// The desired number of nodes (default 2).
    pub desired_size: i32,
    /// The maximum number of nodes (default 3).
    pub max_size: i32,
    /// The root volume size in GiB (default 50).
    pub disk_size: i32,
    /// Kubernetes labels of the nodes.
    pub labels: BTreeMap<String, String>,
    /// Taints of the nodes.
    pub taints: Vec<Taint>,
    /// Its subnets (default: the cluster's).
    pub subnets: Vec<String>,
}

impl NodeGroup {
    /// A node group `name` whose nodes use the IAM role `node_role_arn`: two `t3.large` nodes
    /// (between 1 and 3) with 50 GiB disks.
    pub fn new(name: impl Into<String>, node_role_arn: impl Into<String>) -> Self {
        NodeGroup {
            name: name.into(),
            node_role_arn: Some(node_role_arn.into()),
            instance_types: vec!["t3.large".into()],
            min_size: 1,
            desired_size: 2,
            max_size: 3,
            disk_size: 50,
            labels: BTreeMap::new(),
            taints: Vec::new(),
            subnets: Vec::new(),
        }
    }

    /// A node group `name` whose nodes use the node role the [`Eks`] module creates; otherwise
    /// as [`NodeGroup::new`].
    pub fn named(name: impl Into<String>) -> Self {
        NodeGroup {
            node_role_arn: None,
            ..NodeGroup::new(name, "")
        }
    }

    /// The instance types.
    #[must_use]
    pub fn instance_types(mut self, types: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.instance_types = types.into_iter().map(Into::into).collect();
        self
    }

    /// The minimum, desired and maximum number of nodes.
    #[must_use]
    pub fn scaling(mut self, min: i32, desired: i32, max: i32) -> Self {
        (self.min_size, self.desired_size, self.max_size) = (min, desired, max);
        self
    }

    /// The root volume size in GiB.
    #[must_use]
    pub fn disk_size(mut self, gib: i32) -> Self {
        self.disk_size = gib;
        self
    }

    /// A Kubernetes label of the nodes.
    #[must_use]
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// A taint of the nodes.
    #[must_use]
    pub fn taint(mut self, taint: Taint) -> Self {
        self.taints.push(taint);
        self
    }

    /// Subnets other than the cluster's.
    #[must_use]
    pub fn subnets(mut self, subnets: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.subnets = subnets.into_iter().map(Into::into).collect();
        self
    }
}

/// Checks an EKS cluster name: 1-100 characters, `[0-9A-Za-z][A-Za-z0-9-_]*`.
pub fn check_cluster_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 100 {
        return Err(format!(
            "`{name}` has {} characters; EKS allows 1 to 100",
            name.len()
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!("`{name}` must start with a letter or digit"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(format!(
            "`{name}` contains `{c}`; only letters, digits, `-` and `_` are allowed"
        ));
    }
    Ok(())
}

/// Parses a `major.minor` Kubernetes version supported by EKS ([`SUPPORTED_MINORS`]).
pub fn parse_version(version: &str) -> Result<(u32, u32), String> {
    let parsed = version
        .split_once('.')
        .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)));
    match parsed {
        Some((1, minor)) if SUPPORTED_MINORS.contains(&minor) => Ok((1, minor)),
        Some((1, minor)) if minor < *SUPPORTED_MINORS.start() => Err(format!(
            "`{version}` is no longer offered by EKS (past the end of its extended support)"
        )),
        Some(_) => Err(format!(
            "`{version}` is not a supported EKS version (1.{} to 1.{})",
            SUPPORTED_MINORS.start(),
            SUPPORTED_MINORS.end()
        )),
        None => Err(format!(
            "`{version}` is not a `major.minor` version like `{DEFAULT_VERSION}`"
        )),
    }
}

/// Checks an IPv4 or IPv6 CIDR (`10.0.0.0/16`).
pub fn check_cidr(cidr: &str) -> Result<(), String> {
    let (ip, prefix) = cidr
        .split_once('/')
        .ok_or_else(|| format!("`{cidr}` has no `/prefix`"))?;
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| format!("`{cidr}` does not start with an IP address"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    match prefix.parse::<u8>() {
        Ok(p) if p <= max => Ok(()),
        _ => Err(format!(
            "`{cidr}` has an invalid prefix length (0 to {max})"
        )),
    }
}

const INSTANCE_FAMILIES: &[&str] = &[
    "a1", "c4", "c5", "c5a", "c5ad", "c5d", "c5n", "c6a", "c6g", "c6gd", "c6gn", "c6i", "c6id",
    "c6in", "c7a", "c7g", "c7gd", "c7gn", "c7i", "c7i-flex", "c8g", "d3", "d3en", "g4ad", "g4dn",
    "g5", "g5g", "g6", "g6e", "gr6", "i3", "i3en", "i4g", "i4i", "i7ie", "im4gn", "inf1", "inf2",
    "is4gen", "m4", "m5", "m5a", "m5ad", "m5d", "m5dn", "m5n", "m5zn", "m6a", "m6g", "m6gd", "m6i",
    "m6id", "m6idn", "m6in", "m7a", "m7g", "m7gd", "m7i", "m7i-flex", "m8g", "p3", "p3dn", "p4d",
    "p4de", "p5", "p5e", "r4", "r5", "r5a", "r5ad", "r5b", "r5d", "r5dn", "r5n", "r6a", "r6g",
    "r6gd", "r6i", "r6id", "r6idn", "r6in", "r7a", "r7g", "r7gd", "r7i", "r7iz", "r8g", "t2", "t3",
    "t3a", "t4g", "trn1", "trn1n", "trn2", "u-3tb1", "u-6tb1", "vt1", "x1", "x1e", "x2gd", "x2idn",
    "x2iedn", "x2iezn", "x8g", "z1d",
];

/// Checks the format of an EC2 instance type (`family.size`, a known family and size).
pub fn check_instance_type(instance_type: &str) -> Result<(), String> {
    let Some((family, size)) = instance_type.split_once('.') else {
        return Err(format!(
            "`{instance_type}` is not `family.size` like `m6i.large`"
        ));
    };
    if !INSTANCE_FAMILIES.contains(&family) {
        return Err(format!(
            "`{instance_type}` has an unknown instance family `{family}`"
        ));
    }
    let sized = size
        .strip_suffix("xlarge")
        .is_some_and(|n| n.is_empty() || n.parse::<u16>().is_ok_and(|n| (2..=48).contains(&n)));
    let named = matches!(
        size,
        "nano" | "micro" | "small" | "medium" | "large" | "metal"
    ) || size
        .strip_prefix("metal-")
        .is_some_and(|s| s.ends_with("xl"));
    if sized || named {
        Ok(())
    } else {
        Err(format!("`{instance_type}` has an unknown size `{size}`"))
    }
}

impl Module for Eks {
    type Output = EksCluster;

    fn id(&self) -> &str {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "eks"
    }

    fn needs(&self, needs: &mut Needs) {
        needs.add(&self.network);
    }

    fn validate(&self, v: &mut Validation) {
        v.provides(Capability::Interface(Interface::Cluster));
        v.check(
            "name",
            check_cluster_name(&self.name),
            "use 1-100 letters, digits, `-` or `_`, starting with a letter or digit",
        );
        v.check(
            "base_domain",
            base_domain(&self.base_domain),
            "use a domain you control, like `example.com`",
        );
        if !self.adopt {
            v.check(
                "version",
                parse_version(&self.version).map(drop),
                format!(
                    "use a version EKS offers, from 1.{} to 1.{}, like `{DEFAULT_VERSION}` (in standard support)",
                    SUPPORTED_MINORS.start(),
                    SUPPORTED_MINORS.end()
                ),
            );
            if let Some(arn) = self.role_arn.as_deref()
                && !arn.starts_with("arn:")
            {
                v.error(
                    "role_arn",
                    format!("`{arn}` is not an ARN"),
                    "set `.role_arn(\"arn:aws:iam::<account>:role/<name>\")`, or leave it out for a role the module creates",
                );
            }
            if self.network.is_some() && !self.subnets.is_empty() {
                v.error(
                    "subnets",
                    "both a network and subnets are given",
                    "use `.network(&vpc)` or `.subnets([..])`, not both",
                );
            } else if self.network.is_none() && self.subnets.len() < 2 {
                v.error(
                    "subnets",
                    format!(
                        "{} subnet(s) given; EKS needs at least 2, in different availability zones",
                        self.subnets.len()
                    ),
                    "use `.network(&vpc)` with a `Vpc` module, or `.subnets([..])` with subnets of two or more availability zones",
                );
            }
            if self.public_access_cidrs.is_empty() {
                v.error(
                    "public_access_cidrs",
                    "is empty",
                    "allow at least one CIDR, like `0.0.0.0/0`",
                );
            }
            for (i, cidr) in self.public_access_cidrs.iter().enumerate() {
                v.check(
                    &format!("public_access_cidrs[{i}]"),
                    check_cidr(cidr),
                    "use `address/prefix`, like `203.0.113.0/24`",
                );
            }
        }
        for (i, entry) in self.access_entries.iter().enumerate() {
            if !entry.principal_arn.starts_with("arn:") {
                v.error(
                    format!("access_entries[{i}].principal_arn"),
                    format!("`{}` is not an ARN", entry.principal_arn),
                    "use an IAM role or user ARN",
                );
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for group in &self.node_groups {
            let field = |f: &str| format!("node_groups.{}.{f}", group.name);
            v.check(
                &field("name"),
                check_cluster_name(&group.name).and_then(|()| {
                    if group.name.len() > 63 {
                        Err(format!("`{}` is longer than 63 characters", group.name))
                    } else {
                        Ok(())
                    }
                }),
                "use 1-63 letters, digits, `-` or `_`, starting with a letter or digit",
            );
            if !seen.insert(&group.name) {
                v.error(
                    field("name"),
                    "is declared twice",
                    "give each node group its own name",
                );
            }
            if let Some(arn) = &group.node_role_arn
                && !arn.starts_with("arn:")
            {
                v.error(
                    field("node_role_arn"),
                    format!("`{arn}` is not an ARN"),
                    "use the IAM role ARN of the nodes, or `NodeGroup::named` for a role the module creates",
                );
            }
            if group.instance_types.is_empty() {
                v.error(
                    field("instance_types"),
                    "is empty",
                    "give at least one instance type, like `m6i.large`",
                );
            }
            for t in &group.instance_types {
                v.check(
                    &field("instance_types"),
                    check_instance_type(t),
                    "use an EC2 instance type like `m6i.large`",
                );
            }
            if !(0 <= group.min_size
                && group.min_size <= group.desired_size
                && group.desired_size <= group.max_size
                && group.max_size >= 1)
            {
                v.error(
                    field("scaling"),
                    format!(
                        "min {} / desired {} / max {} is not 0 <= min <= desired <= max, max >= 1",
                        group.min_size, group.desired_size, group.max_size
                    ),
                    "order the sizes, like `.scaling(1, 2, 3)`",
                );
            }
            if !(1..=16384).contains(&group.disk_size) {
                v.error(
                    field("disk_size"),
                    format!("{} GiB is out of range", group.disk_size),
                    "use 1 to 16384 GiB, like 50",
                );
            }
        }
    }

    async fn plan(&self, ctx: &Context) -> ModuleResult<Planned<EksCluster>> {
        let subnets = match &self.network {
            Some(network) => ctx.get(network)?.private_subnets,
            None => self.subnets.clone(),
        };
        let partition = crate::iam::partition(self.aws.region_name().unwrap_or_default());
        let policy = |name: &str| format!("arn:{partition}:iam::aws:policy/{name}");
        let mut resources = Vec::new();
        if self.role_arn.is_none() && !self.adopt {
            resources.push(Resource::cloud(
                "aws",
                "iam:Role",
                self.cluster_role_name(),
                json!({"trust": "eks.amazonaws.com", "policies": [policy("AmazonEKSClusterPolicy")]}),
            ));
        }
        if self.node_groups.iter().any(|g| g.node_role_arn.is_none()) {
            resources.push(Resource::cloud(
                "aws",
                "iam:Role",
                self.node_role_name(),
                json!({"trust": "ec2.amazonaws.com", "policies": NODE_POLICIES.iter().map(|p| policy(p)).collect::<Vec<_>>()}),
            ));
        }
        resources.push(Resource::cloud(
            "aws",
            "eks:Cluster",
            &self.name,
            json!({
                "mode": if self.adopt { "adopt" } else { "create" },
                "version": if self.adopt { None } else { Some(&self.version) },
                "role_arn": self.role_arn.clone().unwrap_or_else(|| format!("(created: {})", self.cluster_role_name())),
                "subnets": subnets,
                "security_groups": self.security_groups,
                "endpoint_public_access": true,
                "endpoint_private_access": true,
                "public_access_cidrs": self.public_access_cidrs,
                "tags": self.tags,
                "access_entries": self.access_entries,
                "addons": self.wanted_addons(),
                "workload_identity": self.workload_identity,
                "aws": self.aws.plan_properties(),
            }),
        ));
        resources.push(Resource::cloud(
            "aws",
            "iam:OIDCProvider",
            &self.name,
            json!({"url": unknown(ctx.module_id(), "oidc_issuer_url"), "client_ids": [crate::iam::STS_AUDIENCE]}),
        ));
        for group in &self.node_groups {
            let subnets = if group.subnets.is_empty() {
                &subnets
            } else {
                &group.subnets
            };
            resources.push(Resource::cloud(
                "aws",
                "eks:Nodegroup",
                format!("{}/{}", self.name, group.name),
                json!({
                    "node_role_arn": group.node_role_arn.clone().unwrap_or_else(|| format!("(created: {})", self.node_role_name())),
                    "instance_types": group.instance_types,
                    "scaling": {"min": group.min_size, "desired": group.desired_size, "max": group.max_size},
                    "disk_size": group.disk_size,
                    "labels": group.labels,
                    "taints": group.taints,
                    "subnets": subnets,
                }),
            ));
        }
        Ok(Planned::new(self.plan_output(ctx)).with_resources(resources))
    }

    async fn apply(&self, ctx: &Context) -> ModuleResult<EksCluster> {
        let subnets = match &self.network {
            Some(network) => ctx.get(network)?.private_subnets,
            None => self.subnets.clone(),
        };
        Ok(apply::apply(self, ctx, subnets).await?)
    }

    async fn read(&self, ctx: &Context) -> ModuleResult<Option<EksCluster>> {
        Ok(apply::read(self, ctx).await?)
    }

    async fn destroy(&self, ctx: &Context) -> ModuleResult<()> {
        // The namespaces and CRDs the in-cluster modules deleted finish terminating before the
        // nodes and the cluster go (nothing to wait for outside a stack run, or when the run
        // abandoned the cluster's objects).
        devops_stack_core::k8s::settle(ctx, &self.name).await?;
        Ok(apply::destroy(self, ctx).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_versions_cidrs_and_instance_types() {
        assert!(check_cluster_name("prod-1_a").is_ok());
        assert!(check_cluster_name("-prod").is_err());
        assert!(check_cluster_name("pr.od").unwrap_err().contains("`.`"));
        assert!(check_cluster_name(&"a".repeat(101)).is_err());
        assert_eq!(parse_version("1.33"), Ok((1, 33)));
        assert!(parse_version(DEFAULT_VERSION).is_ok());
        assert!(
            parse_version("1.31")
                .unwrap_err()
                .contains("no longer offered by EKS")
        );
        assert!(parse_version("1.37").unwrap_err().contains("supported"));
        assert!(parse_version("1.33.2").is_err());
        assert!(parse_version("latest").unwrap_err().contains("major.minor"));
        assert!(check_cidr("0.0.0.0/0").is_ok());
        assert!(check_cidr("2001:db8::/32").is_ok());
        assert!(check_cidr("10.0.0.0/33").is_err());
        assert!(check_cidr("10.0.0.0").is_err());
        assert!(check_cidr("ten/8").is_err());
        for ok in [
            "t3.large",
            "m6i.2xlarge",
            "c7i-flex.xlarge",
            "m5.metal",
            "t3.micro",
            "r7i.48xlarge",
        ] {
            assert!(check_instance_type(ok).is_ok(), "{ok}");
        }
        for bad in [
            "large",
            "zz9.large",
            "t3.huge",
            "m5.1xlarge",
            "m5.100xlarge",
        ] {
            assert!(check_instance_type(bad).is_err(), "{bad}");
        }
    }
}
