//! The [`Vpc`] module: the network of an EKS cluster, created from nothing or adopted by id.
//!
//! | Input | Default |
//! |---|---|
//! | id, cluster name, [`VpcSource`] (`new`, [`Vpc::create`], [`Vpc::adopt`]) | required |
//! | [`Vpc::availability_zones`] | 3, the first available zones of the region |
//! | [`Vpc::zones`] | none (read from the region) |
//! | [`Vpc::nat_gateways`] | [`NatGateways::PerAz`] |
//! | [`Vpc::subnet_cidrs`] | carved from the VPC's CIDR (below) |
//! | [`Vpc::max_nodes`] | 30 (checked against the private subnets' size) |
//! | [`Vpc::tag`], [`Vpc::aws`], [`Vpc::region`], [`Vpc::endpoint_url`], [`Vpc::polling`] | none, the SDK's chain |
//!
//! Output: [`Network`] (VPC id, private and public subnet ids, availability zones), which
//! [`Eks::network`](crate::eks::Eks::network) takes through the handle.
//!
//! **Created** ([`VpcSource::Create`]): a VPC with DNS support and DNS hostnames; in each zone a
//! private and a public subnet; an internet gateway; Elastic IPs and NAT gateways (one per zone,
//! or one shared); a public route table (default route to the internet gateway) and one private
//! route table per zone (default route to its NAT gateway). Public subnets carry
//! `kubernetes.io/role/elb=1`, private ones `kubernetes.io/role/internal-elb=1`, both
//! `kubernetes.io/cluster/<name>=shared`. Without [`Vpc::subnet_cidrs`], the private subnets take
//! the first half of the VPC in equal blocks and the public ones a quarter of their size each
//! from the second half: `10.0.0.0/16` over 3 zones gives private `/19`s and public `/21`s.
//!
//! Every resource is tagged with the stack and module names (and the part it plays); a re-run
//! finds what an interrupted run created by these tags instead of creating it twice, and destroy
//! deletes only what carries them: NAT gateways (waiting until they are gone), Elastic IPs, the
//! internet gateway, subnets, route tables, then the VPC.
//!
//! **Adopted** ([`VpcSource::Adopt`]): an existing VPC, read and never changed or deleted. Its
//! subnets are sorted into public and private by their `kubernetes.io/role/*` tags, else by
//! whether they give instances public addresses.

mod apply;
pub mod cidr;

use std::collections::BTreeMap;

use devops_stack_core::plan::unknown;
use devops_stack_core::{Context, Module, ModuleResult, Planned, Resource, Validation};
use serde::Serialize;
use serde_json::json;

use crate::config::AwsConfig;
use crate::wait::Polling;
use cidr::Cidr;

/// The IP addresses a node takes in its subnet with the VPC CNI: its own and one per pod
/// (29 pods on an `m6i.large`), rounded up.
pub const ADDRESSES_PER_NODE: u64 = 30;

/// Where the VPC comes from: created by the module, or an existing one adopted by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub enum VpcSource {
    /// A new VPC with this IPv4 CIDR (`/16` to `/20` leave room for the subnets).
    Create {
        /// The VPC's CIDR, like `10.0.0.0/16`.
        cidr: String,
    },
    /// An existing VPC, used as it is: never changed, never deleted.
    Adopt {
        /// Its id, like `vpc-0123456789abcdef0`.
        vpc_id: String,
    },
}

/// How many NAT gateways give the private subnets their way out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub enum NatGateways {
    /// One in the first zone, shared by all: cheaper, but the other zones lose egress when that
    /// zone fails.
    Single,
    /// One in each zone (the default): each zone keeps its egress when another fails.
    PerAz,
}

/// The network of a cluster: what the [`Vpc`] module outputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Network {
    /// The VPC's id.
    pub vpc_id: String,
    /// The private subnets, one per zone, in the order of `availability_zones`.
    pub private_subnets: Vec<String>,
    /// The public subnets, one per zone, in the order of `availability_zones`.
    pub public_subnets: Vec<String>,
    /// The availability zones.
    pub availability_zones: Vec<String>,
}

/// A VPC for an EKS cluster, created or adopted.
///
/// ```
/// use devops_stack_aws::vpc::{NatGateways, Vpc};
/// let vpc = Vpc::create("vpc", "prod", "10.0.0.0/16")
///     .region("eu-west-1")
///     .availability_zones(3)
///     .nat_gateways(NatGateways::Single)
///     .max_nodes(12);
/// # let _ = vpc;
/// ```
#[derive(Debug, Clone)]
pub struct Vpc {
    id: String,
    cluster: String,
    source: VpcSource,
    az_count: usize,
    zones: Vec<String>,
    nat: NatGateways,
    subnet_cidrs: Option<(Vec<String>, Vec<String>)>,
    max_nodes: u32,
    tags: BTreeMap<String, String>,
    aws: AwsConfig,
    polling: Polling,
}

/// Availability zones open to every account, for the offline check of
/// [`Vpc::availability_zones`]; other regions are checked against the region before any write.
const REGION_ZONES: &[(&str, usize)] = &[
    ("us-east-1", 6),
    ("us-east-2", 3),
    ("us-west-1", 2),
    ("us-west-2", 4),
    ("eu-west-1", 3),
    ("eu-west-2", 3),
    ("eu-west-3", 3),
    ("eu-central-1", 3),
    ("eu-north-1", 3),
    ("ap-southeast-1", 3),
    ("ap-southeast-2", 3),
    ("ap-south-1", 3),
    ("sa-east-1", 3),
];

/// What is wrong with a layout: `(field, problem, fix)`.
type LayoutError = (&'static str, String, String);

crate::config::aws_setters!(Vpc);

impl Vpc {
    /// A network for cluster `cluster` (named in the subnets' `kubernetes.io/cluster/<name>`
    /// tags and the resources' `Name`s), from `source`.
    pub fn new(id: impl Into<String>, cluster: impl Into<String>, source: VpcSource) -> Self {
        Vpc {
            id: id.into(),
            cluster: cluster.into(),
            source,
            az_count: 3,
            zones: Vec::new(),
            nat: NatGateways::PerAz,
            subnet_cidrs: None,
            max_nodes: 30,
            tags: BTreeMap::new(),
            aws: AwsConfig::new(),
            polling: Polling {
                timeout: std::time::Duration::from_secs(15 * 60),
                ..Polling::default()
            },
        }
    }

    /// A new VPC with the IPv4 `cidr` (like `10.0.0.0/16`).
    pub fn create(
        id: impl Into<String>,
        cluster: impl Into<String>,
        cidr: impl Into<String>,
    ) -> Self {
        Self::new(id, cluster, VpcSource::Create { cidr: cidr.into() })
    }

    /// The existing VPC `vpc_id`, never changed or deleted.
    pub fn adopt(
        id: impl Into<String>,
        cluster: impl Into<String>,
        vpc_id: impl Into<String>,
    ) -> Self {
        Self::new(
            id,
            cluster,
            VpcSource::Adopt {
                vpc_id: vpc_id.into(),
            },
        )
    }

    /// How many availability zones to spread over (default 3): the first ones of the region
    /// that are available, in name order.
    #[must_use]
    pub fn availability_zones(mut self, count: usize) -> Self {
        self.az_count = count;
        self
    }

    /// These availability zones, by name, instead of the region's first ones.
    #[must_use]
    pub fn zones(mut self, zones: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.zones = zones.into_iter().map(Into::into).collect();
        self.az_count = self.zones.len();
        self
    }

    /// One NAT gateway per zone (default) or one shared.
    #[must_use]
    pub fn nat_gateways(mut self, nat: NatGateways) -> Self {
        self.nat = nat;
        self
    }

    /// The CIDRs of the private and public subnets, one of each per zone, instead of the
    /// carved default.
    #[must_use]
    pub fn subnet_cidrs(
        mut self,
        private: impl IntoIterator<Item = impl Into<String>>,
        public: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.subnet_cidrs = Some((
            private.into_iter().map(Into::into).collect(),
            public.into_iter().map(Into::into).collect(),
        ));
        self
    }

    /// The most nodes the cluster will run (default 30); the private subnets must hold
    /// [`ADDRESSES_PER_NODE`] addresses for each, spread over the zones.
    #[must_use]
    pub fn max_nodes(mut self, nodes: u32) -> Self {
        self.max_nodes = nodes;
        self
    }

    /// A tag on every resource created.
    #[must_use]
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.insert(key.into(), value.into());
        self
    }

    /// How to wait for NAT gateways (default: 5 s doubling to 30 s, at most 15 minutes).
    #[must_use]
    pub fn polling(mut self, polling: Polling) -> Self {
        self.polling = polling;
        self
    }

    /// The private and public subnet CIDRs, one of each per zone, or what is wrong with them
    /// as `(field, problem, fix)`.
    fn layout(&self) -> Result<(Vec<Cidr>, Vec<Cidr>), LayoutError> {
        let VpcSource::Create { cidr } = &self.source else {
            return Ok((Vec::new(), Vec::new()));
        };
        let vpc = Cidr::parse(cidr)
            .map_err(|p| ("cidr", p, "use an IPv4 block like `10.0.0.0/16`".to_owned()))?;
        if !(16..=28).contains(&vpc.prefix()) {
            return Err((
                "cidr",
                format!(
                    "`{vpc}` is a /{}; AWS allows VPCs from /16 to /28",
                    vpc.prefix()
                ),
                "use a /16 to /20, like `10.0.0.0/16`".into(),
            ));
        }
        let n = self.az_count.max(1) as u64;
        let (private, public) = match &self.subnet_cidrs {
            None => {
                let bits = u8::try_from(64 - (n - 1).leading_zeros()).unwrap_or(u8::MAX);
                let private_prefix = vpc.prefix() + 1 + bits;
                let public_prefix = private_prefix + 2;
                if public_prefix > 28 {
                    return Err((
                        "cidr",
                        format!(
                            "`{vpc}` is too small for {n} zones: the public subnets would be /{public_prefix}, and AWS's smallest subnet is a /28"
                        ),
                        "use a larger VPC (a /16 to /20), fewer zones, or `.subnet_cidrs(..)`"
                            .into(),
                    ));
                }
                let second_half = vpc.nth(vpc.prefix() + 1, 1).expect("a VPC has two halves");
                let carve = |within: Cidr, prefix, count| -> Vec<Cidr> {
                    (0..count).filter_map(|i| within.nth(prefix, i)).collect()
                };
                (
                    carve(vpc, private_prefix, n),
                    carve(second_half, public_prefix, n),
                )
            }
            Some((private, public)) => {
                let parse = |field: &'static str,
                             list: &[String]|
                 -> Result<Vec<Cidr>, (&'static str, String, String)> {
                    if list.len() as u64 != n {
                        return Err((
                            field,
                            format!("{} CIDR(s) for {n} availability zones", list.len()),
                            "give one subnet CIDR per zone".into(),
                        ));
                    }
                    list.iter()
                        .map(|c| {
                            let cidr = Cidr::parse(c).map_err(|p| {
                                (field, p, "use IPv4 blocks like `10.0.0.0/19`".to_owned())
                            })?;
                            if !vpc.contains(cidr) {
                                return Err((
                                    field,
                                    format!("`{cidr}` is not inside the VPC's `{vpc}`"),
                                    "choose blocks inside the VPC's CIDR".to_owned(),
                                ));
                            }
                            if cidr.prefix() > 28 {
                                return Err((
                                    field,
                                    format!(
                                        "`{cidr}` is smaller than a /28, AWS's smallest subnet"
                                    ),
                                    "use /28 or larger".to_owned(),
                                ));
                            }
                            Ok(cidr)
                        })
                        .collect()
                };
                (
                    parse("subnet_cidrs.private", private)?,
                    parse("subnet_cidrs.public", public)?,
                )
            }
        };
        let all: Vec<Cidr> = private.iter().chain(&public).copied().collect();
        for (i, a) in all.iter().enumerate() {
            if let Some(b) = all[i + 1..].iter().find(|b| a.overlaps(**b)) {
                return Err((
                    "subnet_cidrs",
                    format!("`{a}` and `{b}` overlap"),
                    "give each subnet its own block".into(),
                ));
            }
        }
        let per_zone = u64::from(self.max_nodes).div_ceil(n) * ADDRESSES_PER_NODE;
        if let Some(small) = private.iter().find(|c| c.usable() < per_zone) {
            return Err((
                "max_nodes",
                format!(
                    "the private subnet `{small}` has {} usable addresses; {} nodes over {n} zones need {per_zone} per zone ({ADDRESSES_PER_NODE} per node with the VPC CNI)",
                    small.usable(),
                    self.max_nodes
                ),
                "use a larger VPC or private subnets, more zones, or a lower `.max_nodes(..)`"
                    .into(),
            ));
        }
        Ok((private, public))
    }

    fn vpc_resource(&self) -> String {
        match &self.source {
            VpcSource::Create { .. } => format!("VPC of module `{}` ({})", self.id, self.cluster),
            VpcSource::Adopt { vpc_id } => format!("VPC `{vpc_id}`"),
        }
    }
}

impl Module for Vpc {
    type Output = Network;

    fn id(&self) -> &str {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "vpc"
    }

    fn validate(&self, v: &mut Validation) {
        v.check(
            "cluster",
            crate::eks::check_cluster_name(&self.cluster),
            "use the EKS cluster's name: 1-100 letters, digits, `-` or `_`",
        );
        if let VpcSource::Adopt { vpc_id } = &self.source
            && !(vpc_id.starts_with("vpc-") && vpc_id.len() > 4)
        {
            v.error(
                "vpc_id",
                format!("`{vpc_id}` is not a VPC id"),
                "use an id like `vpc-0123456789abcdef0`",
            );
        }
        if matches!(self.source, VpcSource::Create { .. }) {
            if self.az_count < 2 {
                v.error(
                    "availability_zones",
                    format!("{} zone(s); EKS needs subnets in at least 2", self.az_count),
                    "use 2 or more, like `.availability_zones(3)`",
                );
            }
            let region = self.aws.region_name();
            if let Some((region, zones)) =
                region.and_then(|r| REGION_ZONES.iter().find(|(name, _)| *name == r))
                && self.az_count > *zones
            {
                v.error(
                    "availability_zones",
                    format!("{} zones asked; {region} has {zones}", self.az_count),
                    format!("use at most {zones}"),
                );
            }
            if let Some(region) = region {
                for zone in &self.zones {
                    if !zone.starts_with(region) {
                        v.error(
                            "zones",
                            format!("`{zone}` is not a zone of {region}"),
                            format!("use zones like `{region}a`"),
                        );
                    }
                }
            }
            if self.az_count >= 2
                && let Err((field, problem, fix)) = self.layout()
            {
                v.error(field, problem, fix);
            }
        }
    }

    async fn plan(&self, ctx: &Context) -> ModuleResult<Planned<Network>> {
        let id = ctx.module_id();
        let n = if matches!(self.source, VpcSource::Create { .. }) {
            self.az_count
        } else {
            0
        };
        let zone = |i: usize| {
            self.zones
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("zone {}", i + 1))
        };
        let output = Network {
            vpc_id: match &self.source {
                VpcSource::Adopt { vpc_id } => vpc_id.clone(),
                VpcSource::Create { .. } => unknown(id, "vpc_id"),
            },
            private_subnets: vec![unknown(id, "private_subnets")],
            public_subnets: vec![unknown(id, "public_subnets")],
            availability_zones: if self.zones.is_empty() {
                vec![unknown(id, "availability_zones")]
            } else {
                self.zones.clone()
            },
        };
        let mut resources = Vec::new();
        match &self.source {
            VpcSource::Adopt { vpc_id } => resources.push(Resource::cloud(
                "aws",
                "ec2:Vpc",
                vpc_id,
                json!({"mode": "adopt", "aws": self.aws.plan_properties()}),
            )),
            VpcSource::Create { cidr } => {
                let (private, public) = self.layout().unwrap_or_default();
                resources.push(Resource::cloud(
                    "aws",
                    "ec2:Vpc",
                    &self.cluster,
                    json!({"mode": "create", "cidr": cidr, "dns_support": true, "dns_hostnames": true,
                           "tags": self.tags, "aws": self.aws.plan_properties()}),
                ));
                for (kind, cidrs, role) in [
                    ("private", &private, "kubernetes.io/role/internal-elb"),
                    ("public", &public, "kubernetes.io/role/elb"),
                ] {
                    for (i, c) in cidrs.iter().enumerate() {
                        resources.push(Resource::cloud(
                            "aws",
                            "ec2:Subnet",
                            format!("{}/{kind}-{}", self.cluster, i + 1),
                            json!({"cidr": c.to_string(), "availability_zone": zone(i),
                                   "tags": {role: "1", format!("kubernetes.io/cluster/{}", self.cluster): "shared"}}),
                        ));
                    }
                }
                resources.push(Resource::cloud(
                    "aws",
                    "ec2:InternetGateway",
                    &self.cluster,
                    json!({}),
                ));
                let nats = match self.nat {
                    NatGateways::Single => 1,
                    NatGateways::PerAz => n,
                };
                for i in 0..nats {
                    resources.push(Resource::cloud(
                        "aws",
                        "ec2:Address",
                        format!("{}/nat-{}", self.cluster, i + 1),
                        json!({"domain": "vpc"}),
                    ));
                    resources.push(Resource::cloud(
                        "aws",
                        "ec2:NatGateway",
                        format!("{}/nat-{}", self.cluster, i + 1),
                        json!({"subnet": format!("public-{}", i + 1)}),
                    ));
                }
                resources.push(Resource::cloud(
                    "aws",
                    "ec2:RouteTable",
                    format!("{}/public", self.cluster),
                    json!({"routes": {"0.0.0.0/0": "internet gateway"}}),
                ));
                for i in 0..n {
                    let nat = if self.nat == NatGateways::Single {
                        1
                    } else {
                        i + 1
                    };
                    resources.push(Resource::cloud(
                        "aws",
                        "ec2:RouteTable",
                        format!("{}/private-{}", self.cluster, i + 1),
                        json!({"routes": {"0.0.0.0/0": format!("nat-{nat}")}}),
                    ));
                }
            }
        }
        Ok(Planned::new(output).with_resources(resources))
    }

    async fn apply(&self, ctx: &Context) -> ModuleResult<Network> {
        Ok(apply::apply(self, ctx).await?)
    }

    async fn read(&self, ctx: &Context) -> ModuleResult<Option<Network>> {
        Ok(apply::read(self, ctx).await?)
    }

    async fn destroy(&self, ctx: &Context) -> ModuleResult<()> {
        Ok(apply::destroy(self, ctx).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(vpc: &Vpc) -> Vec<String> {
        let mut v = Validation::new("vpc");
        vpc.validate(&mut v);
        v.errors().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn default_layout_carves_private_and_public_blocks() {
        let vpc = Vpc::create("vpc", "prod", "10.0.0.0/16");
        let (private, public) = vpc.layout().unwrap();
        let text = |c: &[Cidr]| c.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(
            text(&private),
            ["10.0.0.0/19", "10.0.32.0/19", "10.0.64.0/19"]
        );
        assert_eq!(
            text(&public),
            ["10.0.128.0/21", "10.0.136.0/21", "10.0.144.0/21"]
        );
        assert!(errors(&vpc).is_empty(), "{:?}", errors(&vpc));
    }

    #[test]
    fn bad_networks_are_refused_naming_the_field() {
        let cases = [
            (Vpc::create("v", "prod", "10.0.0.0/28"), "cidr", "/28"),
            (Vpc::create("v", "prod", "10.0.0.1/16"), "cidr", "host bits"),
            (Vpc::create("v", "prod", "10.0.0.0/8"), "cidr", "/16 to /28"),
            (Vpc::create("v", "prod", "nope"), "cidr", "no `/prefix`"),
            (
                Vpc::create("v", "prod", "10.0.0.0/16")
                    .subnet_cidrs(
                        ["10.0.0.0/19", "10.0.16.0/20"],
                        ["10.0.128.0/24", "10.0.129.0/24"],
                    )
                    .availability_zones(2),
                "subnet_cidrs",
                "overlap",
            ),
            (
                Vpc::create("v", "prod", "10.0.0.0/16")
                    .subnet_cidrs(
                        ["10.1.0.0/19", "10.0.32.0/19"],
                        ["10.0.128.0/24", "10.0.129.0/24"],
                    )
                    .availability_zones(2),
                "subnet_cidrs.private",
                "not inside",
            ),
            (
                Vpc::create("v", "prod", "10.0.0.0/22").max_nodes(60),
                "max_nodes",
                "usable addresses",
            ),
            (
                Vpc::create("v", "prod", "10.0.0.0/16")
                    .region("eu-west-1")
                    .availability_zones(4),
                "availability_zones",
                "eu-west-1 has 3",
            ),
            (
                Vpc::create("v", "prod", "10.0.0.0/16").availability_zones(1),
                "availability_zones",
                "at least 2",
            ),
            (
                Vpc::adopt("v", "prod", "subnet-1"),
                "vpc_id",
                "not a VPC id",
            ),
        ];
        for (vpc, field, needle) in cases {
            let errors = errors(&vpc);
            assert!(
                errors
                    .iter()
                    .any(|e| e.contains(field) && e.contains(needle)),
                "{field}/{needle}: {errors:?}"
            );
        }
    }
}
