//! The EC2 calls of the [`Vpc`] module: apply, read and destroy.
//!
//! Every resource is found by its ownership tags and its part tag before anything is created,
//! so an apply interrupted anywhere finishes on the next run without duplicates.

use std::collections::BTreeMap;

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{
    Address, AttributeBooleanValue, DomainType, Filter, InternetGateway, NatGateway,
    NatGatewayState, ResourceType, RouteTable, Subnet, Tag, TagSpecification,
};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use devops_stack_core::Context;

use super::cidr::Cidr;
use super::{NatGateways, Network, Vpc, VpcSource};
use crate::error::{Error, Result, deleted, is_not_found};
use crate::tags::{MODULE_TAG, PART_TAG, STACK_TAG, owned_by, ownership};
use crate::wait::Backoff;

struct Api<'a> {
    client: Client,
    vpc: &'a Vpc,
    stack: String,
    module: String,
}

async fn api<'a>(vpc: &'a Vpc, ctx: &Context) -> Result<Api<'a>> {
    let sdk = vpc.aws.load().await?;
    Ok(Api {
        client: vpc.aws.ec2_client(&sdk),
        vpc,
        stack: ctx.stack_name().to_owned(),
        module: ctx.module_id().to_owned(),
    })
}

fn filter(name: &str, value: impl Into<String>) -> Filter {
    Filter::builder().name(name).values(value).build()
}

impl Api<'_> {
    /// The filters selecting this module's resources, and one part of them when `part` is set.
    fn owned(&self, part: Option<&str>) -> Vec<Filter> {
        let mut filters = vec![
            filter(&format!("tag:{STACK_TAG}"), &self.stack),
            filter(&format!("tag:{MODULE_TAG}"), &self.module),
        ];
        if let Some(part) = part {
            filters.push(filter(&format!("tag:{PART_TAG}"), part));
        }
        filters
    }

    /// Whether `tags` mark a resource of this module (and of `part`, if set).
    fn is_ours(&self, tags: &[Tag], part: Option<&str>) -> bool {
        owned_by(
            tags.iter()
                .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default())),
            &self.stack,
            &self.module,
        ) && part.is_none_or(|p| tag_value(tags, PART_TAG) == Some(p))
    }

    /// The tags of a new resource: ownership, part, `Name`, the user's, and `extra`.
    fn tags(&self, kind: ResourceType, part: &str, extra: &[(&str, &str)]) -> TagSpecification {
        let mut tags = self.vpc.tags.clone();
        tags.extend(ownership(&self.stack, &self.module));
        tags.insert(PART_TAG.into(), part.into());
        tags.insert(
            "Name".into(),
            format!("{}-{}", self.vpc.cluster, part.replace('/', "-")),
        );
        for (k, v) in extra {
            tags.insert((*k).into(), (*v).into());
        }
        TagSpecification::builder()
            .resource_type(kind)
            .set_tags(Some(
                tags.into_iter()
                    .map(|(k, v)| Tag::builder().key(k).value(v).build())
                    .collect(),
            ))
            .build()
    }

    fn what(&self, part: &str) -> String {
        format!(
            "{} `{}-{}`",
            kind_of(part),
            self.vpc.cluster,
            part.replace('/', "-")
        )
    }
}

fn kind_of(part: &str) -> &'static str {
    match part.split('/').next() {
        Some("vpc") => "VPC",
        Some("subnet") => "subnet",
        Some("igw") => "internet gateway",
        Some("eip") => "Elastic IP",
        Some("nat") => "NAT gateway",
        Some("rtb") => "route table",
        _ => "resource",
    }
}

fn tag_value<'a>(tags: &'a [Tag], key: &str) -> Option<&'a str> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(Tag::value)
}

async fn find_vpc(api: &Api<'_>) -> Result<Option<aws_sdk_ec2::types::Vpc>> {
    let out = api
        .client
        .describe_vpcs()
        .set_filters(Some(api.owned(Some("vpc"))))
        .send()
        .await
        .map_err(|e| Error::aws("looking up the VPC", api.vpc.vpc_resource(), e))?;
    Ok(out
        .vpcs
        .unwrap_or_default()
        .into_iter()
        .find(|v| api.is_ours(v.tags(), Some("vpc"))))
}

async fn find_subnet(api: &Api<'_>, part: &str) -> Result<Option<Subnet>> {
    let out = api
        .client
        .describe_subnets()
        .set_filters(Some(api.owned(Some(part))))
        .send()
        .await
        .map_err(|e| Error::aws("looking up the subnet", api.what(part), e))?;
    Ok(out
        .subnets
        .unwrap_or_default()
        .into_iter()
        .find(|s| api.is_ours(s.tags(), Some(part))))
}

async fn find_route_table(api: &Api<'_>, part: &str) -> Result<Option<RouteTable>> {
    let out = api
        .client
        .describe_route_tables()
        .set_filters(Some(api.owned(Some(part))))
        .send()
        .await
        .map_err(|e| Error::aws("looking up the route table", api.what(part), e))?;
    Ok(out
        .route_tables
        .unwrap_or_default()
        .into_iter()
        .find(|t| api.is_ours(t.tags(), Some(part))))
}

/// The NAT gateways of this module (of `part` if set) that are not deleted or failed.
async fn live_nat_gateways(api: &Api<'_>, part: Option<&str>) -> Result<Vec<NatGateway>> {
    let mut request = api.client.describe_nat_gateways();
    for f in api.owned(part) {
        request = request.filter(f);
    }
    let out = request
        .send()
        .await
        .map_err(|e| Error::aws("looking up NAT gateways", api.vpc.vpc_resource(), e))?;
    // The tags are checked here too: not every EC2 implementation filters NAT gateways by tag
    // (moto ignores those filters), and a NAT gateway that is not ours must never match.
    Ok(out
        .nat_gateways
        .unwrap_or_default()
        .into_iter()
        .filter(|n| api.is_ours(n.tags(), part))
        .filter(|n| {
            !matches!(
                n.state(),
                Some(NatGatewayState::Deleted | NatGatewayState::Failed)
            )
        })
        .collect())
}

/// The availability zones to use: the named ones, checked, or the region's first ones.
async fn zones(api: &Api<'_>) -> Result<Vec<String>> {
    let out = api
        .client
        .describe_availability_zones()
        .filters(filter("state", "available"))
        .send()
        .await
        .map_err(|e| Error::aws("listing availability zones", api.vpc.vpc_resource(), e))?;
    let mut available: Vec<String> = out
        .availability_zones
        .unwrap_or_default()
        .into_iter()
        .filter(|z| z.zone_type().is_none_or(|t| t == "availability-zone"))
        .filter_map(|z| z.zone_name)
        .collect();
    available.sort();
    let vpc = api.vpc;
    if !vpc.zones.is_empty() {
        if let Some(missing) = vpc.zones.iter().find(|z| !available.contains(z)) {
            return Err(Error::Config {
                problem: format!(
                    "availability zone `{missing}` is not available in this region (available: {})",
                    available.join(", ")
                ),
                fix: "choose zones from that list in `Vpc::zones`".into(),
            });
        }
        return Ok(vpc.zones.clone());
    }
    if available.len() < vpc.az_count {
        return Err(Error::Config {
            problem: format!(
                "{} availability zones asked for module `{}`; the region has {} ({})",
                vpc.az_count,
                api.module,
                available.len(),
                available.join(", ")
            ),
            fix: format!("use `.availability_zones({})` or fewer", available.len()),
        });
    }
    available.truncate(vpc.az_count);
    Ok(available)
}

pub(super) async fn apply(vpc: &Vpc, ctx: &Context) -> Result<Network> {
    let api = api(vpc, ctx).await?;
    let cidr = match &vpc.source {
        VpcSource::Adopt { vpc_id } => return adopted(&api, vpc_id).await,
        VpcSource::Create { cidr } => cidr,
    };
    let (private_cidrs, public_cidrs) =
        vpc.layout()
            .map_err(|(field, problem, fix)| Error::Config {
                problem: format!("{field}: {problem}"),
                fix,
            })?;
    // Reads only, before the first write: a zone problem fails here with nothing created.
    let zones = zones(&api).await?;

    let vpc_id = ensure_vpc(&api, ctx, cidr).await?;
    let cluster_tag = format!("kubernetes.io/cluster/{}", vpc.cluster);
    let mut private = Vec::new();
    let mut public = Vec::new();
    for (i, zone) in zones.iter().enumerate() {
        for (kind, cidrs, out, role) in [
            (
                "private",
                &private_cidrs,
                &mut private,
                "kubernetes.io/role/internal-elb",
            ),
            (
                "public",
                &public_cidrs,
                &mut public,
                "kubernetes.io/role/elb",
            ),
        ] {
            let part = format!("subnet/{kind}/{zone}");
            let tags = [(role, "1"), (cluster_tag.as_str(), "shared")];
            let id = ensure_subnet(&api, ctx, &vpc_id, &part, cidrs[i], zone, &tags).await?;
            if kind == "public" {
                api.client
                    .modify_subnet_attribute()
                    .subnet_id(&id)
                    .map_public_ip_on_launch(AttributeBooleanValue::builder().value(true).build())
                    .send()
                    .await
                    .map_err(|e| Error::aws("mapping public IPs", api.what(&part), e))?;
            }
            out.push(id);
        }
    }
    let igw = ensure_internet_gateway(&api, ctx, &vpc_id).await?;
    ensure_route_table(
        &api,
        ctx,
        &vpc_id,
        "rtb/public",
        Route::Gateway(&igw),
        &public,
    )
    .await?;

    let nat_zones: Vec<usize> = match vpc.nat {
        NatGateways::Single => vec![0],
        NatGateways::PerAz => (0..zones.len()).collect(),
    };
    let mut nats = BTreeMap::new();
    for &i in &nat_zones {
        let id = ensure_nat_gateway(&api, ctx, &zones[i], &public[i]).await?;
        nats.insert(i, id);
    }
    for (i, id) in &nats {
        wait_nat(&api, ctx, &zones[*i], id, false).await?;
    }
    for (i, zone) in zones.iter().enumerate() {
        let nat = nats
            .get(&i)
            .or_else(|| nats.get(&0))
            .expect("a NAT gateway");
        ensure_route_table(
            &api,
            ctx,
            &vpc_id,
            &format!("rtb/private/{zone}"),
            Route::Nat(nat),
            std::slice::from_ref(&private[i]),
        )
        .await?;
    }
    ctx.progress(format!("{} `{vpc_id}` is ready", vpc.vpc_resource()));
    Ok(Network {
        vpc_id,
        private_subnets: private,
        public_subnets: public,
        availability_zones: zones,
    })
}

async fn ensure_vpc(api: &Api<'_>, ctx: &Context, cidr: &str) -> Result<String> {
    let resource = api.vpc.vpc_resource();
    let id = match find_vpc(api).await? {
        Some(live) => {
            let live_cidr = live.cidr_block().unwrap_or_default();
            if live_cidr != cidr {
                return Err(Error::ReplacementRequired {
                    resource,
                    fields: vec![format!("cidr: {live_cidr} -> {cidr}")],
                });
            }
            live.vpc_id.unwrap_or_default()
        }
        None => {
            ctx.progress(format!("creating {resource} ({cidr})"));
            api.client
                .create_vpc()
                .cidr_block(cidr)
                .tag_specifications(api.tags(ResourceType::Vpc, "vpc", &[]))
                .send()
                .await
                .map_err(|e| Error::aws("creating the VPC", &resource, e))?
                .vpc
                .and_then(|v| v.vpc_id)
                .unwrap_or_default()
        }
    };
    // Two calls: EC2 changes one attribute per call. Setting a set attribute is a no-op.
    for hostnames in [false, true] {
        let on = AttributeBooleanValue::builder().value(true).build();
        let request = api.client.modify_vpc_attribute().vpc_id(&id);
        let request = if hostnames {
            request.enable_dns_hostnames(on)
        } else {
            request.enable_dns_support(on)
        };
        request
            .send()
            .await
            .map_err(|e| Error::aws("enabling DNS on the VPC", &resource, e))?;
    }
    Ok(id)
}

async fn ensure_subnet(
    api: &Api<'_>,
    ctx: &Context,
    vpc_id: &str,
    part: &str,
    cidr: Cidr,
    zone: &str,
    extra: &[(&str, &str)],
) -> Result<String> {
    let what = api.what(part);
    if let Some(live) = find_subnet(api, part).await? {
        let live_cidr = live.cidr_block().unwrap_or_default();
        if live_cidr != cidr.to_string() {
            return Err(Error::ReplacementRequired {
                resource: what,
                fields: vec![format!("cidr: {live_cidr} -> {cidr}")],
            });
        }
        return Ok(live.subnet_id.unwrap_or_default());
    }
    ctx.progress(format!("creating {what} ({cidr} in {zone})"));
    Ok(api
        .client
        .create_subnet()
        .vpc_id(vpc_id)
        .cidr_block(cidr.to_string())
        .availability_zone(zone)
        .tag_specifications(api.tags(ResourceType::Subnet, part, extra))
        .send()
        .await
        .map_err(|e| Error::aws("creating the subnet", &what, e))?
        .subnet
        .and_then(|s| s.subnet_id)
        .unwrap_or_default())
}

async fn ensure_internet_gateway(api: &Api<'_>, ctx: &Context, vpc_id: &str) -> Result<String> {
    let what = api.what("igw");
    let live = api
        .client
        .describe_internet_gateways()
        .set_filters(Some(api.owned(Some("igw"))))
        .send()
        .await
        .map_err(|e| Error::aws("looking up the internet gateway", &what, e))?
        .internet_gateways
        .unwrap_or_default()
        .into_iter()
        .find(|g| api.is_ours(g.tags(), Some("igw")));
    let (id, attached) = match live {
        Some(igw) => {
            let attached = igw.attachments().iter().any(|a| a.vpc_id() == Some(vpc_id));
            (igw.internet_gateway_id.unwrap_or_default(), attached)
        }
        None => {
            ctx.progress(format!("creating {what}"));
            let id = api
                .client
                .create_internet_gateway()
                .tag_specifications(api.tags(ResourceType::InternetGateway, "igw", &[]))
                .send()
                .await
                .map_err(|e| Error::aws("creating the internet gateway", &what, e))?
                .internet_gateway
                .and_then(|g| g.internet_gateway_id)
                .unwrap_or_default();
            (id, false)
        }
    };
    if !attached {
        api.client
            .attach_internet_gateway()
            .internet_gateway_id(&id)
            .vpc_id(vpc_id)
            .send()
            .await
            .map_err(|e| Error::aws("attaching the internet gateway", &what, e))?;
    }
    Ok(id)
}

async fn ensure_nat_gateway(
    api: &Api<'_>,
    ctx: &Context,
    zone: &str,
    subnet: &str,
) -> Result<String> {
    let part = format!("nat/{zone}");
    if let Some(nat) = live_nat_gateways(api, Some(&part))
        .await?
        .into_iter()
        .next()
    {
        return Ok(nat.nat_gateway_id.unwrap_or_default());
    }
    let eip_part = format!("eip/{zone}");
    let eip_what = api.what(&eip_part);
    let live_eip = api
        .client
        .describe_addresses()
        .set_filters(Some(api.owned(Some(&eip_part))))
        .send()
        .await
        .map_err(|e| Error::aws("looking up the Elastic IP", &eip_what, e))?
        .addresses
        .unwrap_or_default()
        .into_iter()
        .find(|a| api.is_ours(a.tags(), Some(&eip_part)));
    let allocation = match live_eip {
        Some(a) => a.allocation_id.unwrap_or_default(),
        None => {
            ctx.progress(format!("allocating {eip_what}"));
            api.client
                .allocate_address()
                .domain(DomainType::Vpc)
                .tag_specifications(api.tags(ResourceType::ElasticIp, &eip_part, &[]))
                .send()
                .await
                .map_err(|e| Error::aws("allocating the Elastic IP", &eip_what, e))?
                .allocation_id
                .unwrap_or_default()
        }
    };
    let what = api.what(&part);
    ctx.progress(format!("creating {what}"));
    Ok(api
        .client
        .create_nat_gateway()
        .subnet_id(subnet)
        .allocation_id(allocation)
        .tag_specifications(api.tags(ResourceType::Natgateway, &part, &[]))
        .send()
        .await
        .map_err(|e| Error::aws("creating the NAT gateway", &what, e))?
        .nat_gateway
        .and_then(|n| n.nat_gateway_id)
        .unwrap_or_default())
}

/// Waits until the NAT gateway is available, or deleted when `gone` is set.
async fn wait_nat(api: &Api<'_>, ctx: &Context, zone: &str, id: &str, gone: bool) -> Result<()> {
    let what = format!("{} ({id})", api.what(&format!("nat/{zone}")));
    let mut backoff = Backoff::new(
        ctx,
        &api.vpc.polling,
        &what,
        if gone { "deleted" } else { "available" },
    );
    loop {
        let nat = match api
            .client
            .describe_nat_gateways()
            .nat_gateway_ids(id)
            .send()
            .await
        {
            Ok(out) => out.nat_gateways.unwrap_or_default().into_iter().next(),
            Err(e) if is_not_found(&e) => None,
            Err(e) => return Err(Error::aws("waiting for the NAT gateway", &what, e)),
        };
        let state = nat.as_ref().and_then(|n| n.state().cloned());
        match state {
            None | Some(NatGatewayState::Deleted) if gone => return Ok(()),
            Some(NatGatewayState::Available) if !gone => return Ok(()),
            Some(NatGatewayState::Failed) if !gone => {
                return Err(Error::Failed {
                    resource: what,
                    status: "failed".into(),
                    detail: nat
                        .and_then(|n| n.failure_message)
                        .unwrap_or_else(|| "no message".into()),
                });
            }
            None => {
                return Err(Error::NotFound {
                    action: "waiting for the NAT gateway".into(),
                    resource: what,
                    message: "it disappeared while being waited for".into(),
                });
            }
            Some(state) => backoff.pause(state.as_str()).await?,
        }
    }
}

enum Route<'a> {
    Gateway(&'a str),
    Nat(&'a str),
}

async fn ensure_route_table(
    api: &Api<'_>,
    ctx: &Context,
    vpc_id: &str,
    part: &str,
    route: Route<'_>,
    subnets: &[String],
) -> Result<()> {
    let what = api.what(part);
    let table = match find_route_table(api, part).await? {
        Some(t) => t,
        None => {
            ctx.progress(format!("creating {what}"));
            api.client
                .create_route_table()
                .vpc_id(vpc_id)
                .tag_specifications(api.tags(ResourceType::RouteTable, part, &[]))
                .send()
                .await
                .map_err(|e| Error::aws("creating the route table", &what, e))?
                .route_table
                .ok_or_else(|| Error::NotFound {
                    action: "creating the route table".into(),
                    resource: what.clone(),
                    message: "EC2 returned no route table".into(),
                })?
        }
    };
    let table_id = table.route_table_id().unwrap_or_default().to_owned();
    let default = table
        .routes()
        .iter()
        .find(|r| r.destination_cidr_block() == Some("0.0.0.0/0"));
    let (target_ok, exists) = match (&route, default) {
        (_, None) => (false, false),
        (Route::Gateway(id), Some(r)) => (r.gateway_id() == Some(id), true),
        (Route::Nat(id), Some(r)) => (r.nat_gateway_id() == Some(id), true),
    };
    if !target_ok {
        macro_rules! send_route {
            ($request:expr) => {{
                let request = $request
                    .route_table_id(&table_id)
                    .destination_cidr_block("0.0.0.0/0");
                let request = match route {
                    Route::Gateway(id) => request.gateway_id(id),
                    Route::Nat(id) => request.nat_gateway_id(id),
                };
                request
                    .send()
                    .await
                    .map(drop)
                    .map_err(|e| Error::aws("routing 0.0.0.0/0", &what, e))
            }};
        }
        if exists {
            send_route!(api.client.replace_route())?;
        } else {
            send_route!(api.client.create_route())?;
        }
    }
    for subnet in subnets {
        let associated = table
            .associations()
            .iter()
            .any(|a| a.subnet_id() == Some(subnet.as_str()));
        if !associated {
            api.client
                .associate_route_table()
                .route_table_id(&table_id)
                .subnet_id(subnet)
                .send()
                .await
                .map_err(|e| Error::aws(format!("associating subnet {subnet}"), &what, e))?;
        }
    }
    Ok(())
}

/// The network of an adopted VPC, read as it is.
async fn adopted(api: &Api<'_>, vpc_id: &str) -> Result<Network> {
    let resource = format!("VPC `{vpc_id}`");
    let subnets = match api
        .client
        .describe_subnets()
        .filters(filter("vpc-id", vpc_id))
        .send()
        .await
    {
        Ok(out) => out.subnets.unwrap_or_default(),
        Err(e) => return Err(Error::aws("reading the adopted VPC's subnets", resource, e)),
    };
    let exists = api
        .client
        .describe_vpcs()
        .vpc_ids(vpc_id)
        .send()
        .await
        .map(|o| !o.vpcs().is_empty());
    match exists {
        Ok(true) => {}
        Ok(false) => {
            return Err(Error::NotFound {
                action: "adopting the VPC".into(),
                resource,
                message: "no VPC of that id in this account and region".into(),
            });
        }
        Err(e) if is_not_found(&e) => {
            return Err(Error::NotFound {
                action: "adopting the VPC".into(),
                resource,
                message: "no VPC of that id in this account and region".into(),
            });
        }
        Err(e) => return Err(Error::aws("reading the adopted VPC", resource, e)),
    }
    let mut sorted: Vec<&Subnet> = subnets.iter().collect();
    sorted.sort_by_key(|s| {
        (
            s.availability_zone().unwrap_or_default(),
            s.subnet_id().unwrap_or_default(),
        )
    });
    let is_public = |s: &Subnet| {
        let tags = s.tags();
        if tag_value(tags, "kubernetes.io/role/elb").is_some() {
            true
        } else if tag_value(tags, "kubernetes.io/role/internal-elb").is_some() {
            false
        } else {
            s.map_public_ip_on_launch() == Some(true)
        }
    };
    let mut zones: Vec<String> = sorted
        .iter()
        .filter_map(|s| s.availability_zone().map(str::to_owned))
        .collect();
    zones.dedup();
    let ids = |public: bool| {
        sorted
            .iter()
            .filter(|s| is_public(s) == public)
            .filter_map(|s| s.subnet_id().map(str::to_owned))
            .collect()
    };
    Ok(Network {
        vpc_id: vpc_id.to_owned(),
        private_subnets: ids(false),
        public_subnets: ids(true),
        availability_zones: zones,
    })
}

pub(super) async fn read(vpc: &Vpc, ctx: &Context) -> Result<Option<Network>> {
    let api = api(vpc, ctx).await?;
    if let VpcSource::Adopt { vpc_id } = &vpc.source {
        return match adopted(&api, vpc_id).await {
            Ok(n) => Ok(Some(n)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        };
    }
    let subnets = api
        .client
        .describe_subnets()
        .set_filters(Some(api.owned(None)))
        .send()
        .await
        .map_err(|e| Error::aws("reading the subnets", vpc.vpc_resource(), e))?
        .subnets
        .unwrap_or_default()
        .into_iter()
        .filter(|s| api.is_ours(s.tags(), None))
        .collect::<Vec<_>>();
    let vpc_id = find_vpc(&api).await?.and_then(|v| v.vpc_id);
    let Some(vpc_id) = vpc_id else {
        // A destroy that died after deleting the VPC may still have left NAT gateways or
        // addresses; they are found by tags, so report the module present until none is left.
        let addresses = api
            .client
            .describe_addresses()
            .set_filters(Some(api.owned(None)))
            .send()
            .await
            .map_err(|e| Error::aws("listing Elastic IPs", vpc.vpc_resource(), e))?
            .addresses
            .unwrap_or_default();
        let leftovers = !live_nat_gateways(&api, None).await?.is_empty()
            || !subnets.is_empty()
            || addresses.iter().any(|a| api.is_ours(a.tags(), None));
        return Ok(leftovers.then(|| Network {
            vpc_id: String::new(),
            private_subnets: Vec::new(),
            public_subnets: Vec::new(),
            availability_zones: Vec::new(),
        }));
    };
    let mut by_part: Vec<(String, String, String)> = subnets
        .iter()
        .filter_map(|s| {
            Some((
                tag_value(s.tags(), PART_TAG)?.to_owned(),
                s.availability_zone()?.to_owned(),
                s.subnet_id()?.to_owned(),
            ))
        })
        .collect();
    by_part.sort();
    let ids = |kind: &str| {
        by_part
            .iter()
            .filter(|(p, _, _)| p.starts_with(&format!("subnet/{kind}/")))
            .map(|(_, _, id)| id.clone())
            .collect::<Vec<_>>()
    };
    let mut zones: Vec<String> = by_part.iter().map(|(_, z, _)| z.clone()).collect();
    zones.sort();
    zones.dedup();
    Ok(Some(Network {
        vpc_id,
        private_subnets: ids("private"),
        public_subnets: ids("public"),
        availability_zones: zones,
    }))
}

/// Deletes what the module created, found by its tags, in dependency order. An adopted VPC is
/// left as it is.
pub(super) async fn destroy(vpc: &Vpc, ctx: &Context) -> Result<()> {
    if let VpcSource::Adopt { vpc_id } = &vpc.source {
        ctx.progress(format!("VPC `{vpc_id}` is adopted: left as it is"));
        return Ok(());
    }
    let api = api(vpc, ctx).await?;

    // NAT gateways first: they hold the Elastic IPs and ENIs in the public subnets.
    let nats = live_nat_gateways(&api, None).await?;
    for nat in &nats {
        let id = nat.nat_gateway_id().unwrap_or_default();
        if nat.state() != Some(&NatGatewayState::Deleting) {
            ctx.progress(format!("deleting NAT gateway {id}"));
            deleted(
                api.client
                    .delete_nat_gateway()
                    .nat_gateway_id(id)
                    .send()
                    .await,
                "deleting the NAT gateway",
                id,
            )?;
        }
    }
    for nat in &nats {
        let zone = nat
            .tags()
            .iter()
            .find(|t| t.key() == Some(PART_TAG))
            .and_then(|t| t.value())
            .and_then(|p| p.strip_prefix("nat/"))
            .unwrap_or("?")
            .to_owned();
        wait_nat(
            &api,
            ctx,
            &zone,
            nat.nat_gateway_id().unwrap_or_default(),
            true,
        )
        .await?;
    }

    let api = &api;
    delete_owned(
        api,
        "listing Elastic IPs",
        |filters| {
            api.client
                .describe_addresses()
                .set_filters(Some(filters))
                .send()
        },
        |out| out.addresses.unwrap_or_default(),
        Address::tags,
        |address| async move {
            let id = address.allocation_id().unwrap_or_default();
            ctx.progress(format!("releasing Elastic IP {id}"));
            deleted(
                api.client.release_address().allocation_id(id).send().await,
                "releasing the Elastic IP",
                id,
            )
        },
    )
    .await?;

    delete_owned(
        api,
        "listing internet gateways",
        |filters| {
            api.client
                .describe_internet_gateways()
                .set_filters(Some(filters))
                .send()
        },
        |out| out.internet_gateways.unwrap_or_default(),
        InternetGateway::tags,
        |igw| async move {
            let id = igw.internet_gateway_id().unwrap_or_default();
            for attachment in igw.attachments() {
                if let Some(vpc_id) = attachment.vpc_id() {
                    deleted(
                        api.client
                            .detach_internet_gateway()
                            .internet_gateway_id(id)
                            .vpc_id(vpc_id)
                            .send()
                            .await,
                        "detaching the internet gateway",
                        id,
                    )?;
                }
            }
            ctx.progress(format!("deleting internet gateway {id}"));
            deleted(
                api.client
                    .delete_internet_gateway()
                    .internet_gateway_id(id)
                    .send()
                    .await,
                "deleting the internet gateway",
                id,
            )
        },
    )
    .await?;

    delete_owned(
        api,
        "listing subnets",
        |filters| {
            api.client
                .describe_subnets()
                .set_filters(Some(filters))
                .send()
        },
        |out| out.subnets.unwrap_or_default(),
        Subnet::tags,
        |subnet| async move {
            let id = subnet.subnet_id().unwrap_or_default();
            ctx.progress(format!("deleting subnet {id}"));
            deleted(
                api.client.delete_subnet().subnet_id(id).send().await,
                "deleting the subnet",
                id,
            )
        },
    )
    .await?;

    delete_owned(
        api,
        "listing route tables",
        |filters| {
            api.client
                .describe_route_tables()
                .set_filters(Some(filters))
                .send()
        },
        |out| out.route_tables.unwrap_or_default(),
        RouteTable::tags,
        |table| async move {
            let id = table.route_table_id().unwrap_or_default();
            for association in table.associations() {
                if association.main() == Some(true) {
                    continue;
                }
                if let Some(assoc) = association.route_table_association_id() {
                    deleted(
                        api.client
                            .disassociate_route_table()
                            .association_id(assoc)
                            .send()
                            .await,
                        "disassociating the route table",
                        id,
                    )?;
                }
            }
            ctx.progress(format!("deleting route table {id}"));
            deleted(
                api.client
                    .delete_route_table()
                    .route_table_id(id)
                    .send()
                    .await,
                "deleting the route table",
                id,
            )
        },
    )
    .await?;

    if let Some(live) = find_vpc(api).await? {
        let id = live.vpc_id().unwrap_or_default();
        ctx.progress(format!("deleting VPC {id}"));
        deleted(
            api.client.delete_vpc().vpc_id(id).send().await,
            "deleting the VPC",
            id,
        )?;
    }
    Ok(())
}

/// Deletes this module's resources of one kind: `list` lists them with the ownership filters
/// (`listing` names that call in its error) and `found` takes them out of its answer; those whose
/// tags (read by `tags`) are not this module's are skipped, since not every EC2 implementation
/// filters by tag; `delete` deletes each of the others in turn, stopping at the first error.
async fn delete_owned<O, T, E, L, LF, D, DF>(
    api: &Api<'_>,
    listing: &str,
    list: L,
    found: fn(O) -> Vec<T>,
    tags: fn(&T) -> &[Tag],
    delete: D,
) -> Result<()>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    L: FnOnce(Vec<Filter>) -> LF,
    LF: Future<Output = std::result::Result<O, SdkError<E, HttpResponse>>>,
    D: Fn(T) -> DF,
    DF: Future<Output = Result<()>>,
{
    let out = list(api.owned(None))
        .await
        .map_err(|e| Error::aws(listing, api.vpc.vpc_resource(), e))?;
    for item in found(out) {
        if api.is_ours(tags(&item), None) {
            delete(item).await?;
        }
    }
    Ok(())
}
