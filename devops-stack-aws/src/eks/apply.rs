//! The EKS API calls of the [`Eks`] module: apply, read and destroy.

use std::collections::{BTreeMap, BTreeSet};

use aws_config::SdkConfig;
use aws_sdk_eks::Client;
use aws_sdk_eks::types::{
    AddonStatus, AuthenticationMode, ClusterStatus, CreateAccessConfigRequest, Nodegroup,
    NodegroupScalingConfig, NodegroupStatus, Taint as SdkTaint, TaintEffect as SdkTaintEffect,
    Update, UpdateLabelsPayload, UpdateStatus, UpdateTaintsPayload, VpcConfigRequest,
};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use devops_stack_core::Context;

use super::access;
use super::cleanup::CloudCleanup;
use super::token::TokenSource;
use super::{
    Eks, EksCluster, NODE_POLICIES, NodeGroup, POD_IDENTITY_AGENT, Taint, TaintEffect,
    parse_version,
};
use crate::config::region_of;
use crate::error::{Error, Result, deleted, is_not_found};
use crate::iam::{Iam, RoleSpec, partition, service_trust};
use crate::tags::{owned_by, ownership};
use crate::wait::Backoff;
use devops_stack_core::interfaces::AbandonInCluster;

/// The tags of the access entries the module declares: none (they are the module's by
/// declaration, and removed by it only on an adopted cluster).
static NO_TAGS: BTreeMap<String, String> = BTreeMap::new();

struct Api {
    client: Client,
    sdk: SdkConfig,
    iam: Iam,
}

async fn api(eks: &Eks, ctx: &Context) -> Result<Api> {
    let sdk = eks.aws.load().await?;
    Ok(Api {
        client: eks.aws.eks_client(&sdk),
        iam: Iam::new(&eks.aws, &sdk, ctx.stack_name(), ctx.module_id()),
        sdk,
    })
}

/// Whether the cluster carries this module's ownership tags.
fn owned(c: &SdkCluster, ctx: &Context) -> bool {
    c.tags().is_some_and(|t| {
        owned_by(
            t.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            ctx.stack_name(),
            ctx.module_id(),
        )
    })
}

fn not_owned(eks: &Eks, c: &SdkCluster) -> Error {
    let owner: Vec<String> = c
        .tags()
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.starts_with("devops-stack.io/"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    Error::NotOwned {
        resource: eks.cluster_resource(),
        owner: if owner.is_empty() {
            "none".into()
        } else {
            owner.join(", ")
        },
        fix: "use `Eks::adopt` to use it without owning it, or choose another cluster name".into(),
    }
}

/// The partition of the configured region.
fn partition_of(api: &Api) -> &'static str {
    partition(&region_of(&api.sdk))
}

/// The cluster role: the given ARN, or the one the module creates.
async fn cluster_role(api: &Api, eks: &Eks, ctx: &Context) -> Result<String> {
    if let Some(arn) = &eks.role_arn {
        return Ok(arn.clone());
    }
    ctx.progress(format!("ensuring IAM role `{}`", eks.cluster_role_name()));
    let policy = format!(
        "arn:{}:iam::aws:policy/AmazonEKSClusterPolicy",
        partition_of(api)
    );
    api.iam
        .ensure_role(&RoleSpec {
            name: eks.cluster_role_name(),
            trust: service_trust("eks.amazonaws.com"),
            managed: vec![policy],
            inline: None,
            description: "EKS control plane role made by devops-stack",
            tags: BTreeMap::new(),
        })
        .await
}

/// The node role the module creates, when a node group asks for it.
async fn node_role(api: &Api, eks: &Eks, ctx: &Context) -> Result<Option<String>> {
    if eks.node_groups.iter().all(|g| g.node_role_arn.is_some()) {
        return Ok(None);
    }
    ctx.progress(format!("ensuring IAM role `{}`", eks.node_role_name()));
    let partition = partition_of(api);
    api.iam
        .ensure_role(&RoleSpec {
            name: eks.node_role_name(),
            trust: service_trust("ec2.amazonaws.com"),
            managed: NODE_POLICIES
                .iter()
                .map(|p| format!("arn:{partition}:iam::aws:policy/{p}"))
                .collect(),
            inline: None,
            description: "EKS node role made by devops-stack",
            tags: BTreeMap::new(),
        })
        .await
        .map(Some)
}

type SdkCluster = aws_sdk_eks::types::Cluster;

/// The cluster, or `None` when it does not exist.
async fn describe(api: &Api, eks: &Eks) -> Result<Option<SdkCluster>> {
    match api.client.describe_cluster().name(&eks.name).send().await {
        Ok(out) => Ok(out.cluster),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(Error::aws(
            "describing the cluster",
            eks.cluster_resource(),
            e,
        )),
    }
}

fn output(
    api: &Api,
    eks: &Eks,
    c: &SdkCluster,
    oidc_provider_arn: Option<String>,
) -> Result<EksCluster> {
    Ok(EksCluster {
        name: eks.name.clone(),
        base_domain: eks.base_domain.clone(),
        region: region_of(&api.sdk),
        endpoint: c.endpoint().unwrap_or_default().to_owned(),
        certificate_authority_data: c
            .certificate_authority()
            .and_then(|ca| ca.data())
            .unwrap_or_default()
            .to_owned(),
        arn: c.arn().unwrap_or_default().to_owned(),
        oidc_issuer_url: c
            .identity()
            .and_then(|i| i.oidc())
            .and_then(|o| o.issuer())
            .map(str::to_owned),
        version: c.version().unwrap_or_default().to_owned(),
        oidc_provider_arn,
        workload_identity_mode: eks.workload_identity,
        tokens: Some(TokenSource::new(&api.sdk, &eks.name)?),
        aws: Some(eks.aws.clone()),
    })
}

/// The OIDC provider ARN of the cluster's issuer (whether it exists or not).
fn provider_arn(api: &Api, c: &SdkCluster) -> Option<String> {
    let issuer = c.identity()?.oidc()?.issuer()?;
    let account = c.arn()?.split(':').nth(4)?;
    Some(format!(
        "arn:{}:iam::{account}:oidc-provider/{}",
        partition_of(api),
        issuer.trim_start_matches("https://")
    ))
}

/// The live cluster; when it is gone but roles or an OIDC provider of the module are left (a
/// destroy that died half-way), a cluster without an endpoint, so that the destroy runs again
/// and finishes.
pub(super) async fn read(eks: &Eks, ctx: &Context) -> Result<Option<EksCluster>> {
    let api = api(eks, ctx).await?;
    match describe(&api, eks).await? {
        Some(c) if c.status() != Some(&ClusterStatus::Deleting) => {
            let arn = provider_arn(&api, &c);
            Ok(Some(output(&api, eks, &c, arn)?))
        }
        _ => {
            let mut leftovers = !api.iam.owned_oidc_providers().await?.is_empty();
            for role in [eks.cluster_role_name(), eks.node_role_name()] {
                leftovers |= api.iam.owns_role(&role).await?;
            }
            Ok(leftovers
                .then(|| {
                    let gone = SdkCluster::builder().name(&eks.name).build();
                    let mut out = output(&api, eks, &gone, None).ok()?;
                    out.tokens = None;
                    Some(out)
                })
                .flatten())
        }
    }
}

pub(super) async fn apply(eks: &Eks, ctx: &Context, subnets: Vec<String>) -> Result<EksCluster> {
    let api = api(eks, ctx).await?;
    let resource = eks.cluster_resource();
    let existing = describe(&api, eks).await?;
    if let Some(c) = &existing
        && !eks.adopt
        && !owned(c, ctx)
    {
        return Err(not_owned(eks, c));
    }
    let role_arn = if eks.adopt {
        String::new()
    } else {
        cluster_role(&api, eks, ctx).await?
    };
    let node_role = node_role(&api, eks, ctx).await?;
    let cluster = match existing {
        None if eks.adopt => {
            return Err(Error::NotFound {
                action: "adopting the cluster".into(),
                resource,
                message: "no cluster of that name in this account and region; check the name and region, or use `Eks::new` to create it".into(),
            });
        }
        None => {
            create_cluster(&api, eks, ctx, &role_arn, &subnets).await?;
            wait_cluster_active(&api, eks, ctx).await?
        }
        Some(c) => {
            if !eks.adopt {
                check_cluster_replacement(eks, &c, &role_arn, &subnets)?;
            }
            let c = wait_cluster_active(&api, eks, ctx).await?;
            if eks.adopt {
                c
            } else {
                update_cluster(&api, eks, ctx, c).await?
            }
        }
    };
    ensure_access_entries(&api, eks, ctx).await?;
    ensure_addons(&api, eks, ctx).await?;
    // Node groups default to the configured subnets of an owned cluster, to the live ones of
    // an adopted cluster.
    let cluster_subnets = if eks.adopt {
        cluster
            .resources_vpc_config()
            .map(|v| v.subnet_ids().to_vec())
            .unwrap_or_default()
    } else {
        subnets
    };
    for group in &eks.node_groups {
        let role = group
            .node_role_arn
            .clone()
            .or_else(|| node_role.clone())
            .unwrap_or_default();
        ensure_node_group(&api, eks, ctx, group, &role, &cluster_subnets).await?;
    }
    for group in &eks.node_groups {
        wait_node_group(&api, eks, ctx, &group.name, false).await?;
    }
    // Waited for after the node groups: some add-ons (coredns) are degraded until nodes exist.
    for addon in &eks.wanted_addons() {
        wait_addon_active(&api, eks, ctx, &addon.name).await?;
    }
    let oidc = match (
        cluster
            .identity()
            .and_then(|i| i.oidc())
            .and_then(|o| o.issuer()),
        cluster.arn().and_then(|a| a.split(':').nth(4)),
    ) {
        (Some(issuer), Some(account)) => Some(
            api.iam
                .ensure_oidc_provider(issuer, account, partition_of(&api), &|m| ctx.progress(m))
                .await?,
        ),
        _ => None,
    };
    ctx.progress(format!("{resource} is ready"));
    output(&api, eks, &cluster, oidc)
}

async fn create_cluster(
    api: &Api,
    eks: &Eks,
    ctx: &Context,
    role_arn: &str,
    subnets: &[String],
) -> Result<()> {
    ctx.progress(format!(
        "creating {} (Kubernetes {})",
        eks.cluster_resource(),
        eks.version
    ));
    let vpc = VpcConfigRequest::builder()
        .set_subnet_ids(Some(subnets.to_vec()))
        .set_security_group_ids(Some(eks.security_groups.clone()))
        .endpoint_public_access(true)
        .endpoint_private_access(true)
        .set_public_access_cidrs(Some(eks.public_access_cidrs.clone()))
        .build();
    let mut request = api
        .client
        .create_cluster()
        .name(&eks.name)
        .version(&eks.version)
        .role_arn(role_arn)
        .resources_vpc_config(vpc)
        .set_tags(Some(cluster_tags(eks, ctx).into_iter().collect()));
    if !eks.access_entries.is_empty() {
        request = request.access_config(
            CreateAccessConfigRequest::builder()
                .authentication_mode(AuthenticationMode::ApiAndConfigMap)
                .bootstrap_cluster_creator_admin_permissions(true)
                .build(),
        );
    }
    request
        .send()
        .await
        .map_err(|e| Error::aws("creating the cluster", eks.cluster_resource(), e))?;
    Ok(())
}

/// `resource` in the failed `status`, with the issues EKS reports (`messages`), or where to look
/// when it reports none.
fn failed<'a>(
    resource: String,
    status: impl Into<String>,
    messages: impl Iterator<Item = Option<&'a str>>,
) -> Error {
    let joined = messages.flatten().collect::<Vec<_>>().join("; ");
    Error::Failed {
        resource,
        status: status.into(),
        detail: if joined.is_empty() {
            "EKS reports no health issue; see the console".into()
        } else {
            joined
        },
    }
}

/// The `(major, minor)` of a live cluster's version, supported or not.
fn live_version(version: &str) -> Option<(u32, u32)> {
    let (major, minor) = version.split_once('.')?;
    Some((major.parse().ok()?, minor.split('.').next()?.parse().ok()?))
}

fn sorted(v: &[String]) -> BTreeSet<&str> {
    v.iter().map(String::as_str).collect()
}

/// The tags of the cluster and its node groups: the user's and the ownership tags.
fn cluster_tags(eks: &Eks, ctx: &Context) -> BTreeMap<String, String> {
    let mut tags = eks.tags.clone();
    tags.extend(ownership(ctx.stack_name(), ctx.module_id()));
    tags
}

fn check_cluster_replacement(
    eks: &Eks,
    c: &SdkCluster,
    role_arn: &str,
    subnets: &[String],
) -> Result<()> {
    let mut fields = Vec::new();
    let vpc = c.resources_vpc_config();
    let live_subnets = vpc.map(|v| v.subnet_ids()).unwrap_or_default();
    if sorted(live_subnets) != sorted(subnets) {
        fields.push(format!("subnets: {live_subnets:?} -> {subnets:?}"));
    }
    let live_groups = vpc.map(|v| v.security_group_ids()).unwrap_or_default();
    if sorted(live_groups) != sorted(&eks.security_groups) {
        fields.push(format!(
            "security_groups: {live_groups:?} -> {:?}",
            eks.security_groups
        ));
    }
    if c.role_arn() != Some(role_arn) {
        fields.push(format!("role_arn: {:?} -> {role_arn:?}", c.role_arn()));
    }
    if let (Some(live), Ok(wanted)) = (c.version(), parse_version(&eks.version))
        && let Some(live_v) = live_version(live)
        && wanted < live_v
    {
        fields.push(format!(
            "version: {live} -> {} (EKS cannot downgrade)",
            eks.version
        ));
    }
    if fields.is_empty() {
        Ok(())
    } else {
        Err(Error::ReplacementRequired {
            resource: eks.cluster_resource(),
            fields,
        })
    }
}

/// Updates in place what differs and EKS allows: the version (one minor at a time), the public
/// access CIDRs, missing tags.
async fn update_cluster(
    api: &Api,
    eks: &Eks,
    ctx: &Context,
    mut c: SdkCluster,
) -> Result<SdkCluster> {
    let resource = eks.cluster_resource();
    let wanted = parse_version(&eks.version).map_err(|problem| Error::Config {
        problem,
        fix: "set a supported `.version(..)`".into(),
    })?;
    while let Some(live) = c
        .version()
        .and_then(live_version)
        .filter(|live| *live < wanted)
    {
        let next = format!("{}.{}", live.0, live.1 + 1);
        ctx.progress(format!(
            "upgrading {resource} from {}.{} to {next}",
            live.0, live.1
        ));
        let update = api
            .client
            .update_cluster_version()
            .name(&eks.name)
            .version(&next)
            .send()
            .await
            .map_err(|e| Error::aws(format!("upgrading the cluster to {next}"), &resource, e))?
            .update;
        wait_update(api, eks, ctx, None, update).await?;
        c = wait_cluster_active(api, eks, ctx).await?;
    }
    let live_cidrs = c
        .resources_vpc_config()
        .map(|v| v.public_access_cidrs())
        .unwrap_or_default();
    if sorted(live_cidrs) != sorted(&eks.public_access_cidrs) {
        ctx.progress(format!("updating the public access CIDRs of {resource}"));
        let update = api
            .client
            .update_cluster_config()
            .name(&eks.name)
            .resources_vpc_config(
                VpcConfigRequest::builder()
                    .set_public_access_cidrs(Some(eks.public_access_cidrs.clone()))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| Error::aws("updating the public access CIDRs", &resource, e))?
            .update;
        wait_update(api, eks, ctx, None, update).await?;
        c = wait_cluster_active(api, eks, ctx).await?;
    }
    let live_tags = c.tags().cloned().unwrap_or_default();
    let wanted_tags = cluster_tags(eks, ctx);
    let missing: BTreeMap<_, _> = wanted_tags
        .iter()
        .filter(|(k, v)| live_tags.get(*k) != Some(*v))
        .collect();
    if !missing.is_empty()
        && let Some(arn) = c.arn()
    {
        api.client
            .tag_resource()
            .resource_arn(arn)
            .set_tags(Some(
                missing
                    .into_iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ))
            .send()
            .await
            .map_err(|e| Error::aws("tagging the cluster", &resource, e))?;
    }
    Ok(c)
}

/// Waits for an EKS update to end: the cluster's status alone can still read `ACTIVE` just
/// after an update was accepted. Without an update in the response (emulators), returns at once.
async fn wait_update(
    api: &Api,
    eks: &Eks,
    ctx: &Context,
    node_group: Option<&str>,
    update: Option<Update>,
) -> Result<()> {
    let Some(mut update) = update else {
        return Ok(());
    };
    let resource = node_group.map_or_else(|| eks.cluster_resource(), |g| group_resource(eks, g));
    let mut backoff = Backoff::new(ctx, &eks.polling, &resource, "updated");
    loop {
        let status = update.status().cloned().unwrap_or(UpdateStatus::InProgress);
        match status {
            UpdateStatus::Successful => return Ok(()),
            UpdateStatus::Failed | UpdateStatus::Cancelled => {
                return Err(failed(
                    resource,
                    format!("update {}", status.as_str()),
                    update.errors().iter().map(|e| e.error_message()),
                ));
            }
            _ => {
                backoff
                    .pause(&format!("updating ({})", status.as_str()))
                    .await?
            }
        }
        let Some(id) = update.id() else {
            return Ok(());
        };
        update = api
            .client
            .describe_update()
            .name(&eks.name)
            .update_id(id)
            .set_nodegroup_name(node_group.map(str::to_owned))
            .send()
            .await
            .map_err(|e| Error::aws("waiting for an update", &resource, e))?
            .update
            .ok_or_else(|| Error::NotFound {
                action: "waiting for an update".into(),
                resource: resource.clone(),
                message: format!("update {id} is not known"),
            })?;
    }
}

async fn wait_cluster_active(api: &Api, eks: &Eks, ctx: &Context) -> Result<SdkCluster> {
    let resource = eks.cluster_resource();
    let mut backoff = Backoff::new(ctx, &eks.polling, &resource, "ACTIVE");
    loop {
        let Some(c) = describe(api, eks).await? else {
            return Err(Error::NotFound {
                action: "waiting for the cluster".into(),
                resource,
                message: "it disappeared while being waited for".into(),
            });
        };
        let status = c.status().cloned().unwrap_or(ClusterStatus::Pending);
        match status {
            ClusterStatus::Active => return Ok(c),
            ClusterStatus::Failed | ClusterStatus::Deleting => {
                let issues = c.health().map(|h| h.issues()).unwrap_or_default();
                return Err(failed(
                    resource,
                    status.as_str(),
                    issues.iter().map(|i| i.message()),
                ));
            }
            _ => backoff.pause(status.as_str()).await?,
        }
    }
}

/// Brings each of `wanted` to what is wanted, the names the cluster has listed once beforehand:
/// `listed` lists them (`listing` names that call in its error), `name` gives a wanted item's
/// name, and `ensure` handles one item, told whether the cluster has it already. Lists nothing
/// when nothing is wanted; stops at the first error.
async fn reconcile<'a, T, E, L, LF, F, FF>(
    eks: &Eks,
    wanted: &'a [T],
    listing: &str,
    listed: L,
    name: fn(&T) -> &str,
    ensure: F,
) -> Result<()>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    L: FnOnce() -> LF,
    LF: Future<Output = std::result::Result<Vec<String>, SdkError<E, HttpResponse>>>,
    F: Fn(&'a T, bool) -> FF,
    FF: Future<Output = Result<()>>,
{
    if wanted.is_empty() {
        return Ok(());
    }
    let existing: BTreeSet<String> = listed()
        .await
        .map_err(|e| Error::aws(listing, eks.cluster_resource(), e))?
        .into_iter()
        .collect();
    for item in wanted {
        ensure(item, existing.contains(name(item))).await?;
    }
    Ok(())
}

/// Creates the access entries the cluster lacks, and associates every entry's policies.
async fn ensure_access_entries(api: &Api, eks: &Eks, ctx: &Context) -> Result<()> {
    reconcile(
        eks,
        &eks.access_entries,
        "listing access entries",
        || {
            api.client
                .list_access_entries()
                .cluster_name(&eks.name)
                .into_paginator()
                .items()
                .send()
                .collect()
        },
        |entry| &entry.principal_arn,
        |entry, exists| access::ensure(&api.client, &eks.name, entry, exists, &NO_TAGS, ctx),
    )
    .await
}

/// Creates the add-ons the cluster lacks, with the cluster's tags; an add-on it has is left as
/// it is.
async fn ensure_addons(api: &Api, eks: &Eks, ctx: &Context) -> Result<()> {
    reconcile(
        eks,
        &eks.wanted_addons(),
        "listing add-ons",
        || {
            api.client
                .list_addons()
                .cluster_name(&eks.name)
                .into_paginator()
                .items()
                .send()
                .collect()
        },
        |addon| &addon.name,
        |addon, exists| async move {
            if exists {
                return Ok(());
            }
            let what = format!("add-on `{}` of {}", addon.name, eks.cluster_resource());
            ctx.progress(format!("creating {what}"));
            api.client
                .create_addon()
                .cluster_name(&eks.name)
                .addon_name(&addon.name)
                .set_addon_version(addon.version.clone())
                .set_tags(Some(cluster_tags(eks, ctx).into_iter().collect()))
                .send()
                .await
                .map_err(|e| Error::aws("creating the add-on", &what, e))?;
            Ok(())
        },
    )
    .await
}

fn group_resource(eks: &Eks, group: &str) -> String {
    format!("node group `{group}` of EKS cluster `{}`", eks.name)
}

async fn describe_node_group(api: &Api, eks: &Eks, group: &str) -> Result<Option<Nodegroup>> {
    match api
        .client
        .describe_nodegroup()
        .cluster_name(&eks.name)
        .nodegroup_name(group)
        .send()
        .await
    {
        Ok(out) => Ok(out.nodegroup),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(Error::aws(
            "describing the node group",
            group_resource(eks, group),
            e,
        )),
    }
}

fn sdk_taint(t: &Taint) -> SdkTaint {
    let effect = match t.effect {
        TaintEffect::NoSchedule => SdkTaintEffect::NoSchedule,
        TaintEffect::PreferNoSchedule => SdkTaintEffect::PreferNoSchedule,
        TaintEffect::NoExecute => SdkTaintEffect::NoExecute,
    };
    SdkTaint::builder()
        .key(&t.key)
        .value(&t.value)
        .effect(effect)
        .build()
}

fn taint_key(t: &SdkTaint) -> (String, String, String) {
    (
        t.key().unwrap_or_default().to_owned(),
        t.value().unwrap_or_default().to_owned(),
        t.effect()
            .map(|e| e.as_str().to_owned())
            .unwrap_or_default(),
    )
}

async fn ensure_node_group(
    api: &Api,
    eks: &Eks,
    ctx: &Context,
    group: &NodeGroup,
    node_role_arn: &str,
    cluster_subnets: &[String],
) -> Result<()> {
    let resource = group_resource(eks, &group.name);
    let subnets = if group.subnets.is_empty() {
        cluster_subnets
    } else {
        &group.subnets
    };
    let scaling = NodegroupScalingConfig::builder()
        .min_size(group.min_size)
        .desired_size(group.desired_size)
        .max_size(group.max_size)
        .build();
    let Some(live) = describe_node_group(api, eks, &group.name).await? else {
        ctx.progress(format!("creating {resource}"));
        api.client
            .create_nodegroup()
            .cluster_name(&eks.name)
            .nodegroup_name(&group.name)
            .node_role(node_role_arn)
            .set_subnets(Some(subnets.to_vec()))
            .set_instance_types(Some(group.instance_types.clone()))
            .disk_size(group.disk_size)
            .scaling_config(scaling)
            .set_labels(Some(group.labels.clone().into_iter().collect()))
            .set_taints(Some(group.taints.iter().map(sdk_taint).collect()))
            .set_tags(Some(cluster_tags(eks, ctx).into_iter().collect()))
            .send()
            .await
            .map_err(|e| Error::aws("creating the node group", &resource, e))?;
        return Ok(());
    };

    let mut fields = Vec::new();
    if sorted(live.instance_types()) != sorted(&group.instance_types) {
        fields.push(format!(
            "instance_types: {:?} -> {:?}",
            live.instance_types(),
            group.instance_types
        ));
    }
    if live.disk_size().is_some_and(|d| d != group.disk_size) {
        fields.push(format!(
            "disk_size: {:?} -> {}",
            live.disk_size(),
            group.disk_size
        ));
    }
    if live.node_role() != Some(node_role_arn) {
        fields.push(format!(
            "node_role_arn: {:?} -> {node_role_arn}",
            live.node_role()
        ));
    }
    if sorted(live.subnets()) != sorted(subnets) {
        fields.push(format!("subnets: {:?} -> {subnets:?}", live.subnets()));
    }
    if !fields.is_empty() {
        return Err(Error::ReplacementRequired { resource, fields });
    }

    // Wait for a running update to end before starting another one.
    wait_node_group(api, eks, ctx, &group.name, false).await?;
    let mut update = api
        .client
        .update_nodegroup_config()
        .cluster_name(&eks.name)
        .nodegroup_name(&group.name);
    let mut changes = Vec::new();
    let live_scaling = live.scaling_config();
    let live_sizes = live_scaling.map(|s| (s.min_size(), s.desired_size(), s.max_size()));
    if live_sizes
        != Some((
            Some(group.min_size),
            Some(group.desired_size),
            Some(group.max_size),
        ))
    {
        changes.push("scaling");
        update = update.scaling_config(scaling);
    }
    let live_labels: BTreeMap<String, String> = live
        .labels()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .collect();
    if live_labels != group.labels {
        changes.push("labels");
        let removed: Vec<String> = live_labels
            .keys()
            .filter(|k| !group.labels.contains_key(*k))
            .cloned()
            .collect();
        let mut payload = UpdateLabelsPayload::builder()
            .set_remove_labels((!removed.is_empty()).then_some(removed));
        let added: std::collections::HashMap<_, _> = group
            .labels
            .iter()
            .filter(|(k, v)| live_labels.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !added.is_empty() {
            payload = payload.set_add_or_update_labels(Some(added));
        }
        update = update.labels(payload.build());
    }
    let live_taints: BTreeSet<_> = live.taints().iter().map(taint_key).collect();
    let wanted: Vec<SdkTaint> = group.taints.iter().map(sdk_taint).collect();
    let wanted_keys: BTreeSet<_> = wanted.iter().map(taint_key).collect();
    if live_taints != wanted_keys {
        changes.push("taints");
        let removed: Vec<SdkTaint> = live
            .taints()
            .iter()
            .filter(|t| !wanted_keys.contains(&taint_key(t)))
            .cloned()
            .collect();
        let added: Vec<SdkTaint> = wanted
            .into_iter()
            .filter(|t| !live_taints.contains(&taint_key(t)))
            .collect();
        update = update.taints(
            UpdateTaintsPayload::builder()
                .set_add_or_update_taints((!added.is_empty()).then_some(added))
                .set_remove_taints((!removed.is_empty()).then_some(removed))
                .build(),
        );
    }
    if !changes.is_empty() {
        ctx.progress(format!("updating the {} of {resource}", changes.join(", ")));
        let update = update
            .send()
            .await
            .map_err(|e| Error::aws(format!("updating the {}", changes.join(", ")), &resource, e))?
            .update;
        wait_update(api, eks, ctx, Some(&group.name), update).await?;
    }
    Ok(())
}

/// Waits until the node group is ACTIVE, or gone when `gone` is set.
async fn wait_node_group(
    api: &Api,
    eks: &Eks,
    ctx: &Context,
    group: &str,
    gone: bool,
) -> Result<()> {
    let resource = group_resource(eks, group);
    let mut backoff = Backoff::new(
        ctx,
        &eks.polling,
        &resource,
        if gone { "deleted" } else { "ACTIVE" },
    );
    loop {
        let Some(ng) = describe_node_group(api, eks, group).await? else {
            if gone {
                return Ok(());
            }
            return Err(Error::NotFound {
                action: "waiting for the node group".into(),
                resource,
                message: "it disappeared while being waited for".into(),
            });
        };
        let status = ng.status().cloned().unwrap_or(NodegroupStatus::Creating);
        match status {
            NodegroupStatus::Active if !gone => return Ok(()),
            NodegroupStatus::CreateFailed
            | NodegroupStatus::DeleteFailed
            | NodegroupStatus::Degraded => {
                let issues = ng.health().map(|h| h.issues()).unwrap_or_default();
                return Err(failed(
                    resource,
                    status.as_str(),
                    issues.iter().map(|i| i.message()),
                ));
            }
            _ => backoff.pause(status.as_str()).await?,
        }
    }
}

/// Whether the cluster's Kubernetes API answers, within 20 seconds.
async fn probe(api: &Api, eks: &Eks, c: &SdkCluster) -> std::result::Result<kube::Client, String> {
    let cluster = output(api, eks, c, None).map_err(|e| e.to_string())?;
    let client = cluster.kube_client().map_err(|e| e.to_string())?;
    match tokio::time::timeout(
        std::time::Duration::from_secs(20),
        client.apiserver_version(),
    )
    .await
    {
        Ok(Ok(_)) => Ok(client),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 20 s".into()),
    }
}

/// Destroys in order: node groups, the cluster, the OIDC provider, the roles. The cluster is
/// deleted only when it carries this module's tags, and never when adopted.
pub(super) async fn destroy(eks: &Eks, ctx: &Context) -> Result<()> {
    let api = api(eks, ctx).await?;
    let resource = eks.cluster_resource();
    match describe(&api, eks).await? {
        None => ctx.progress(format!("{resource} does not exist")),
        Some(c) if !eks.adopt && !owned(&c, ctx) => {
            ctx.progress(format!("{}; left alone", not_owned(eks, &c)));
        }
        Some(c) => {
            let cleanup = CloudCleanup::new(&eks.name, ctx.stack_name(), eks.aws.clone())
                .timeout(eks.cleanup_timeout)
                .interval(eks.polling.max_interval);
            let progress = |m: String| ctx.progress(m);
            if c.status() == Some(&ClusterStatus::Active) {
                match probe(&api, eks, &c).await {
                    // an adopted cluster stays: what its objects made in AWS stays with it
                    Ok(client) if !eks.adopt => {
                        cleanup.run(&client, &progress).await?;
                    }
                    Ok(_) => {}
                    Err(reason) => {
                        if !AbandonInCluster::is_set(ctx) {
                            return Err(Error::ClusterUnreachable {
                                cluster: eks.name.clone(),
                                reason,
                            });
                        }
                        ctx.progress(format!(
                            "cannot reach the Kubernetes API of {resource} ({reason}); abandoning the objects in it, as the run's AbandonInCluster option allows"
                        ));
                        if !eks.adopt {
                            // said, not waited for: nothing in the cluster can delete them now
                            match cleanup.remaining(None).await {
                                Ok((left, _)) => {
                                    for l in left {
                                        ctx.progress(format!(
                                            "{l} is abandoned with the cluster's objects: delete it in AWS"
                                        ));
                                    }
                                }
                                Err(e) => ctx.progress(format!(
                                    "could not list the load balancers and volumes made for the cluster's objects ({e}); check for them in AWS"
                                )),
                            }
                        }
                    }
                }
            }
            destroy_cluster(&api, eks, ctx).await?;
        }
    }
    let progress = |m: String| ctx.progress(m);
    for arn in api.iam.owned_oidc_providers().await? {
        api.iam.delete_oidc_provider(&arn, &progress).await?;
    }
    if eks.role_arn.is_none() && !eks.adopt {
        api.iam
            .delete_role(&eks.cluster_role_name(), &progress)
            .await?;
    }
    if eks.node_groups.iter().any(|g| g.node_role_arn.is_none()) {
        api.iam
            .delete_role(&eks.node_role_name(), &progress)
            .await?;
    }
    Ok(())
}

async fn destroy_cluster(api: &Api, eks: &Eks, ctx: &Context) -> Result<()> {
    let resource = eks.cluster_resource();
    // An owned cluster loses every node group (EKS refuses to delete a cluster that has some);
    // an adopted one only those the module declares.
    let groups: Vec<String> = if eks.adopt {
        eks.node_groups.iter().map(|g| g.name.clone()).collect()
    } else {
        api.client
            .list_nodegroups()
            .cluster_name(&eks.name)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<_, _>>()
            .await
            .map_err(|e| Error::aws("listing node groups", &resource, e))?
    };
    for group in &groups {
        let what = group_resource(eks, group);
        match describe_node_group(api, eks, group).await? {
            None => continue,
            Some(ng) if ng.status() == Some(&NodegroupStatus::Deleting) => continue,
            Some(_) => {}
        }
        ctx.progress(format!("deleting {what}"));
        deleted(
            api.client
                .delete_nodegroup()
                .cluster_name(&eks.name)
                .nodegroup_name(group)
                .send()
                .await,
            "deleting the node group",
            &what,
        )?;
    }
    for group in &groups {
        wait_node_group(api, eks, ctx, group, true).await?;
    }
    if eks.adopt {
        // EKS removes add-ons and access entries with a cluster; an adopted cluster stays, so
        // the ones the module declares are removed one by one.
        return remove_addons_and_access_entries(api, eks, ctx).await;
    }
    ctx.progress(format!("deleting {resource}"));
    match api.client.delete_cluster().name(&eks.name).send().await {
        Ok(_) => {}
        Err(e) if is_not_found(&e) => return Ok(()),
        Err(e) => return Err(Error::aws("deleting the cluster", &resource, e)),
    }
    let mut backoff = Backoff::new(ctx, &eks.polling, &resource, "deleted");
    while let Some(c) = describe(api, eks).await? {
        let status = c.status().map_or("DELETING", ClusterStatus::as_str);
        backoff.pause(status).await?;
    }
    Ok(())
}

async fn wait_addon_active(api: &Api, eks: &Eks, ctx: &Context, name: &str) -> Result<()> {
    let what = format!("add-on `{name}` of {}", eks.cluster_resource());
    let mut backoff = Backoff::new(ctx, &eks.polling, &what, "ACTIVE");
    loop {
        let addon = api
            .client
            .describe_addon()
            .cluster_name(&eks.name)
            .addon_name(name)
            .send()
            .await
            .map_err(|e| Error::aws("waiting for the add-on", &what, e))?
            .addon;
        let status = addon.as_ref().and_then(|a| a.status.clone());
        match status {
            Some(AddonStatus::Active) => return Ok(()),
            Some(
                AddonStatus::CreateFailed | AddonStatus::UpdateFailed | AddonStatus::DeleteFailed,
            ) => {
                let issues = addon
                    .as_ref()
                    .and_then(|a| a.health())
                    .map(|h| h.issues())
                    .unwrap_or_default();
                return Err(failed(
                    what,
                    status.map(|s| s.as_str().to_owned()).unwrap_or_default(),
                    issues.iter().map(|i| i.message()),
                ));
            }
            other => {
                backoff
                    .pause(other.as_ref().map_or("CREATING", AddonStatus::as_str))
                    .await?
            }
        }
    }
}

/// Whether the add-on exists with this module's tags.
async fn addon_owned(api: &Api, eks: &Eks, ctx: &Context, name: &str, what: &str) -> Result<bool> {
    match api
        .client
        .describe_addon()
        .cluster_name(&eks.name)
        .addon_name(name)
        .send()
        .await
    {
        Ok(out) => Ok(out.addon.and_then(|a| a.tags).is_some_and(|t| {
            owned_by(
                t.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                ctx.stack_name(),
                ctx.module_id(),
            )
        })),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(Error::aws("reading the add-on", what, e)),
    }
}

async fn remove_addons_and_access_entries(api: &Api, eks: &Eks, ctx: &Context) -> Result<()> {
    let resource = eks.cluster_resource();
    for entry in &eks.access_entries {
        access::delete(&api.client, &eks.name, &entry.principal_arn, ctx).await?;
    }
    for addon in &eks.wanted_addons() {
        let what = format!("add-on `{}` of {resource}", addon.name);
        if addon.name == POD_IDENTITY_AGENT
            && eks.adds_pod_identity_agent()
            && !addon_owned(api, eks, ctx, &addon.name, &what).await?
        {
            // the agent the cluster had before: other workloads may use it
            ctx.progress(format!("{what} was not made by this module: left alone"));
            continue;
        }
        ctx.progress(format!("deleting {what}"));
        match api
            .client
            .delete_addon()
            .cluster_name(&eks.name)
            .addon_name(&addon.name)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => continue,
            Err(e) => return Err(Error::aws("deleting the add-on", what, e)),
        }
        let mut backoff = Backoff::new(ctx, &eks.polling, &what, "deleted");
        loop {
            let status = match api
                .client
                .describe_addon()
                .cluster_name(&eks.name)
                .addon_name(&addon.name)
                .send()
                .await
            {
                Ok(out) => out
                    .addon
                    .and_then(|a| a.status)
                    .map_or_else(|| "DELETING".to_owned(), |s| s.as_str().to_owned()),
                Err(e) if is_not_found(&e) => break,
                Err(e) => return Err(Error::aws("waiting for the add-on's deletion", what, e)),
            };
            backoff.pause(&status).await?;
        }
    }
    Ok(())
}
