//! Cleanup before the cluster goes: see [`CloudCleanup`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::Filter;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolume, PersistentVolumeClaim, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DeleteParams, ListParams, Preconditions};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use aws_sdk_elasticloadbalancing::operation::describe_tags::DescribeTagsError as ClassicTagsError;
use aws_sdk_elasticloadbalancingv2::operation::describe_tags::DescribeTagsError as TagsError;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;

use crate::config::AwsConfig;
use crate::error::{Error, Result};

/// The tag prefix Kubernetes' cloud controller and the EBS CSI driver put on what they make
/// for a cluster: `kubernetes.io/cluster/<name>`.
pub const CLUSTER_TAG_PREFIX: &str = "kubernetes.io/cluster/";

/// The tag the AWS Load Balancer Controller puts on its load balancers: the cluster's name.
const LB_CONTROLLER_CLUSTER_TAG: &str = "elbv2.k8s.aws/cluster";

/// Tags naming the object a resource was made for.
const SERVICE_NAME_TAG: &str = "kubernetes.io/service-name";
const PVC_NAME_TAG: &str = "kubernetes.io/created-for/pvc/name";
const PVC_NAMESPACE_TAG: &str = "kubernetes.io/created-for/pvc/namespace";
const PV_NAME_TAG: &str = "kubernetes.io/created-for/pv/name";
const CSI_VOLUME_TAG: &str = "CSIVolumeName";
const INGRESS_STACK_TAG: &str = "ingress.k8s.aws/stack";

/// A cloud resource Kubernetes made for an object of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Leftover {
    /// What it is and its id (`load balancer arn:...`, `EBS volume vol-...`).
    pub resource: String,
    /// The object it was made for, as its tags say (`Service traefik/traefik`).
    pub made_for: String,
}

impl fmt::Display for Leftover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (made for {})", self.resource, self.made_for)
    }
}

/// What a cleanup did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanupReport {
    /// The objects it deleted (`Service ns/name`, `PersistentVolumeClaim ns/name`, ...).
    pub deleted: Vec<String>,
    /// The cloud resources it waited for until AWS no longer had them.
    pub gone: Vec<Leftover>,
    /// Volumes kept on purpose by their PersistentVolume (`Retain`): not waited for, still billed.
    pub retained: Vec<Leftover>,
}

/// Removes what makes AWS resources from inside a cluster, and waits for those resources to go.
///
/// A `LoadBalancer` Service makes a load balancer (an NLB through the cluster's cloud
/// controller), a PersistentVolumeClaim makes an EBS volume (through the EBS CSI driver), an
/// Ingress may make an ALB (through the AWS Load Balancer Controller). None of them is in any
/// state of the stack, and deleting the cluster first orphans them: a load balancer then blocks
/// deleting the VPC's subnets, and a volume is billed until someone finds it.
///
/// So, before its node groups and the cluster are deleted, [`CloudCleanup::run`]:
/// 1. deletes the `LoadBalancer` Services, Ingresses and PersistentVolumeClaims of every namespace
///    the stack owns (labelled with its `devops-stack.io/stack` label; a namespace the stack only
///    uses is left alone, and so are its objects);
/// 2. waits, bounded, until every load balancer (NLB, ALB or Classic) and PVC volume Kubernetes
///    tagged for this cluster (`kubernetes.io/cluster/<name>`, or `elbv2.k8s.aws/cluster`) is gone
///    from AWS. It deletes
///    none of them itself: the controllers that made them do, once their objects are gone. A
///    volume whose PersistentVolume keeps it (`Retain`) is not waited for; it is named in the
///    report.
///
/// Run again after a timeout, it picks up where it stopped: whatever is left is found again by
/// its labels and tags.
///
/// ```no_run
/// # async fn f(kube: kube::Client) -> Result<(), devops_stack_aws::Error> {
/// use std::time::Duration;
/// use devops_stack_aws::AwsConfig;
/// use devops_stack_aws::eks::CloudCleanup;
/// let report = CloudCleanup::new("prod", "platform", AwsConfig::new().region("eu-west-1"))
///     .timeout(Duration::from_secs(600))
///     .run(&kube, &|m| println!("{m}"))
///     .await?;
/// println!("deleted {:?}, waited for {} cloud resources", report.deleted, report.gone.len());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct CloudCleanup {
    cluster: String,
    stack: String,
    aws: AwsConfig,
    timeout: Duration,
    interval: Duration,
}

impl CloudCleanup {
    /// The cleanup of cluster `cluster` (its name in AWS) for stack `stack`, with `aws`. Waits
    /// at most 15 minutes, looking every 10 s.
    pub fn new(cluster: impl Into<String>, stack: impl Into<String>, aws: AwsConfig) -> Self {
        CloudCleanup {
            cluster: cluster.into(),
            stack: stack.into(),
            aws,
            timeout: Duration::from_secs(15 * 60),
            interval: Duration::from_secs(10),
        }
    }

    /// How long to wait for the cloud resources to go (default 15 minutes; an NLB takes one to
    /// three).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How often to look (default 10 s).
    #[must_use]
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Deletes the `LoadBalancer` Services, Ingresses and PersistentVolumeClaims of the stack's
    /// namespaces, then waits until AWS no longer has the load balancers and volumes made for
    /// the cluster.
    ///
    /// # Errors
    /// [`Error::CloudResourcesRemain`] when some are still there after the timeout, naming each
    /// and what it was made for; [`Error::Kubernetes`] when the cluster's API fails; AWS errors
    /// from the listing calls. Nothing AWS has is ever deleted by this call.
    pub async fn run(
        &self,
        kube: &Client,
        progress: &(dyn Fn(String) + Sync),
    ) -> Result<CleanupReport> {
        let mut report = CleanupReport::default();
        let namespaces = self.owned_namespaces(kube).await?;
        for ns in &namespaces {
            let services: Vec<Service> = list(kube, ns).await?;
            let balanced = services.into_iter().filter(|s| {
                s.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer")
            });
            for s in balanced {
                delete(kube, ns, &s, &mut report, progress).await?;
            }
            for i in list::<Ingress>(kube, ns).await? {
                delete(kube, ns, &i, &mut report, progress).await?;
            }
            for c in list::<PersistentVolumeClaim>(kube, ns).await? {
                delete(kube, ns, &c, &mut report, progress).await?;
            }
        }
        // loaded once: each look lists again, with the same credentials
        let sdk = self.aws.load().await?;
        let start = Instant::now();
        let mut seen: BTreeSet<Leftover> = BTreeSet::new();
        loop {
            let (waiting, retained) = self.remaining_with(&sdk, Some(kube)).await?;
            seen.extend(waiting.iter().cloned());
            if waiting.is_empty() {
                report.gone = seen.into_iter().collect();
                report.retained = retained;
                for r in &report.retained {
                    progress(format!(
                        "{r} is kept by its PersistentVolume's Retain policy; it stays in AWS"
                    ));
                }
                return Ok(report);
            }
            if start.elapsed() >= self.timeout {
                return Err(Error::CloudResourcesRemain {
                    cluster: self.cluster.clone(),
                    remaining: waiting.iter().map(ToString::to_string).collect(),
                    waited: self.timeout,
                });
            }
            progress(format!(
                "waiting for {} cloud resource{} made by cluster `{}` to be deleted: {}",
                waiting.len(),
                if waiting.len() == 1 { "" } else { "s" },
                self.cluster,
                waiting
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            tokio::time::sleep(self.interval.min(self.timeout)).await;
        }
    }

    /// The load balancers and PVC volumes AWS still has for the cluster: those to wait for, and
    /// volumes kept by a `Retain` PersistentVolume (told apart only with a Kubernetes client).
    ///
    /// # Errors
    /// AWS errors from the listing calls; [`Error::Kubernetes`] reading PersistentVolumes.
    pub async fn remaining(&self, kube: Option<&Client>) -> Result<(Vec<Leftover>, Vec<Leftover>)> {
        let sdk = self.aws.load().await?;
        self.remaining_with(&sdk, kube).await
    }

    /// [`CloudCleanup::remaining`] with a loaded SDK configuration.
    async fn remaining_with(
        &self,
        sdk: &aws_config::SdkConfig,
        kube: Option<&Client>,
    ) -> Result<(Vec<Leftover>, Vec<Leftover>)> {
        let mut waiting = self.load_balancers(sdk).await?;
        waiting.extend(self.classic_load_balancers(sdk).await?);
        let mut retained = Vec::new();
        for (volume, tags) in self.volumes(sdk).await? {
            let kept = match (kube, tags.get(PV_NAME_TAG)) {
                (Some(kube), Some(pv)) => is_retained(kube, pv).await?,
                _ => false,
            };
            if kept {
                retained.push(volume);
            } else {
                waiting.push(volume);
            }
        }
        waiting.sort();
        Ok((waiting, retained))
    }

    /// The namespaces labelled as the stack's.
    async fn owned_namespaces(&self, kube: &Client) -> Result<Vec<String>> {
        let api: Api<Namespace> = Api::all(kube.clone());
        let selector = format!("{}={}", devops_stack_core::k8s::STACK_LABEL, self.stack);
        let list = api
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| Error::kubernetes("listing the stack's namespaces", e))?;
        Ok(list.items.iter().map(ResourceExt::name_any).collect())
    }

    /// The load balancers (ELBv2) tagged for the cluster.
    async fn load_balancers(&self, sdk: &aws_config::SdkConfig) -> Result<Vec<Leftover>> {
        let elb = self.aws.elbv2_client(sdk);
        let arns: Vec<String> = elb
            .describe_load_balancers()
            .into_paginator()
            .items()
            .send()
            .collect::<std::result::Result<Vec<_>, _>>()
            .await
            .map_err(|e| Error::aws("listing load balancers", &self.cluster, e))?
            .into_iter()
            .filter_map(|lb| lb.load_balancer_arn)
            .collect();
        let descriptions = tags_skipping_gone(
            &arns,
            |ask| async {
                elb.describe_tags()
                    .set_resource_arns(Some(ask))
                    .send()
                    .await
                    .map(|t| t.tag_descriptions.unwrap_or_default())
            },
            gone_v2,
        )
        .await
        .map_err(|e| Error::aws("reading load balancer tags", &self.cluster, e))?;
        let found = descriptions
            .iter()
            .filter_map(|d| {
                self.made_for_cluster(
                    "load balancer",
                    d.resource_arn().unwrap_or_default(),
                    d.tags()
                        .iter()
                        .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default())),
                )
            })
            .collect();
        Ok(found)
    }

    /// The Classic Load Balancers tagged for the cluster: what the cloud controller makes for a
    /// `LoadBalancer` Service that does not ask for an NLB.
    async fn classic_load_balancers(&self, sdk: &aws_config::SdkConfig) -> Result<Vec<Leftover>> {
        let elb = self.aws.elb_client(sdk);
        let names: Vec<String> = elb
            .describe_load_balancers()
            .into_paginator()
            .items()
            .send()
            .collect::<std::result::Result<Vec<_>, _>>()
            .await
            .map_err(|e| Error::aws("listing classic load balancers", &self.cluster, e))?
            .into_iter()
            .filter_map(|lb| lb.load_balancer_name)
            .collect();
        let descriptions = tags_skipping_gone(
            &names,
            |ask| async {
                elb.describe_tags()
                    .set_load_balancer_names(Some(ask))
                    .send()
                    .await
                    .map(|t| t.tag_descriptions.unwrap_or_default())
            },
            gone_classic,
        )
        .await
        .map_err(|e| Error::aws("reading classic load balancer tags", &self.cluster, e))?;
        let found = descriptions
            .iter()
            .filter_map(|d| {
                self.made_for_cluster(
                    "classic load balancer",
                    d.load_balancer_name().unwrap_or_default(),
                    d.tags()
                        .iter()
                        .map(|t| (t.key(), t.value().unwrap_or_default())),
                )
            })
            .collect();
        Ok(found)
    }

    /// The EBS volumes made for PVCs of the cluster, with their tags.
    async fn volumes(
        &self,
        sdk: &aws_config::SdkConfig,
    ) -> Result<Vec<(Leftover, BTreeMap<String, String>)>> {
        let ec2 = self.aws.ec2_client(sdk);
        let key = format!("{CLUSTER_TAG_PREFIX}{}", self.cluster);
        let volumes = ec2
            .describe_volumes()
            .filters(Filter::builder().name("tag-key").values(&key).build())
            .into_paginator()
            .items()
            .send()
            .collect::<std::result::Result<Vec<_>, _>>()
            .await
            .map_err(|e| Error::aws("listing volumes", &self.cluster, e))?;
        let mut found = Vec::new();
        for v in volumes {
            let tags: BTreeMap<String, String> = v
                .tags()
                .iter()
                .map(|t| {
                    (
                        t.key().unwrap_or_default().to_owned(),
                        t.value().unwrap_or_default().to_owned(),
                    )
                })
                .collect();
            // a node's root volume carries the cluster tag too, and goes with its node group
            let for_claim = tags.contains_key(PVC_NAME_TAG) || tags.contains_key(CSI_VOLUME_TAG);
            if !for_claim || v.state().is_some_and(|s| s.as_str() == "deleted") {
                continue;
            }
            let made_for = match (tags.get(PVC_NAMESPACE_TAG), tags.get(PVC_NAME_TAG)) {
                (Some(ns), Some(name)) => format!("PersistentVolumeClaim {ns}/{name}"),
                _ => format!(
                    "CSI volume {}",
                    tags.get(CSI_VOLUME_TAG).map_or("?", String::as_str)
                ),
            };
            found.push((
                Leftover {
                    resource: format!("EBS volume {}", v.volume_id().unwrap_or_default()),
                    made_for,
                },
                tags,
            ));
        }
        Ok(found)
    }

    /// The load balancer `id` (a `what`) as a leftover, when its `tags` say Kubernetes made it
    /// for this cluster.
    fn made_for_cluster<'a>(
        &self,
        what: &str,
        id: &str,
        tags: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Option<Leftover> {
        let tags: BTreeMap<&str, &str> = tags.into_iter().collect();
        let ours = tags.contains_key(format!("{CLUSTER_TAG_PREFIX}{}", self.cluster).as_str())
            || tags.get(LB_CONTROLLER_CLUSTER_TAG) == Some(&self.cluster.as_str());
        ours.then(|| Leftover {
            resource: format!("{what} {id}"),
            made_for: made_for_service(&tags),
        })
    }
}

/// The object a load balancer was made for, as its tags say.
fn made_for_service(tags: &BTreeMap<&str, &str>) -> String {
    tags.get(SERVICE_NAME_TAG)
        .map(|s| format!("Service {s}"))
        .or_else(|| {
            tags.get(INGRESS_STACK_TAG)
                .map(|s| format!("Ingress group {s}"))
        })
        .unwrap_or_else(|| "an unnamed object".into())
}

/// Whether the PersistentVolume `name` exists and keeps its volume.
async fn is_retained(kube: &Client, name: &str) -> Result<bool> {
    let api: Api<PersistentVolume> = Api::all(kube.clone());
    let pv = api
        .get_opt(name)
        .await
        .map_err(|e| Error::kubernetes(format!("reading PersistentVolume {name}"), e))?;
    Ok(pv
        .and_then(|pv| pv.spec)
        .and_then(|s| s.persistent_volume_reclaim_policy)
        .is_some_and(|p| p == "Retain"))
}

async fn list<K>(kube: &Client, ns: &str) -> Result<Vec<K>>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(kube.clone(), ns);
    let kind = K::kind(&K::DynamicType::default()).into_owned();
    Ok(api
        .list(&ListParams::default())
        .await
        .map_err(|e| Error::kubernetes(format!("listing {kind}s in namespace {ns}"), e))?
        .items)
}

/// Deletes `object` (this very object: its uid is a precondition), unless already deleting.
async fn delete<K>(
    kube: &Client,
    ns: &str,
    object: &K,
    report: &mut CleanupReport,
    progress: &(dyn Fn(String) + Sync),
) -> Result<()>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + fmt::Debug,
    K::DynamicType: Default,
{
    let kind = K::kind(&K::DynamicType::default()).into_owned();
    let what = format!("{kind} {ns}/{}", object.name_any());
    if object.meta().deletion_timestamp.is_some() {
        return Ok(());
    }
    let api: Api<K> = Api::namespaced(kube.clone(), ns);
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: object.meta().uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&object.name_any(), &params).await {
        Ok(_) => {
            progress(format!("deleted {what}, so that its cloud resources go"));
            report.deleted.push(what);
            Ok(())
        }
        // gone already, or replaced by another object of the same name since the listing
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(Error::kubernetes(format!("deleting {what}"), e)),
    }
}

/// The tag descriptions of the load balancers `ids`, read 20 at a time with `read`. One listed a
/// moment ago may be gone (its controller deleting it): the whole call then fails (`gone` says
/// so), and that chunk is read again one by one, skipping the gone ones.
async fn tags_skipping_gone<D, E, Fut>(
    ids: &[String],
    read: impl Fn(Vec<String>) -> Fut,
    gone: impl Fn(&E) -> bool,
) -> std::result::Result<Vec<D>, E>
where
    Fut: std::future::Future<Output = std::result::Result<Vec<D>, E>>,
{
    let mut descriptions = Vec::new();
    for chunk in ids.chunks(20) {
        let mut asks = vec![chunk.to_vec()];
        while let Some(ask) = asks.pop() {
            let single = ask.len() == 1;
            match read(ask.clone()).await {
                Ok(found) => descriptions.extend(found),
                Err(e) if gone(&e) && !single => asks.extend(ask.into_iter().map(|id| vec![id])),
                Err(e) if gone(&e) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(descriptions)
}

/// Whether reading ELBv2 tags failed because a load balancer asked about no longer exists.
fn gone_v2(e: &SdkError<TagsError, HttpResponse>) -> bool {
    e.as_service_error()
        .is_some_and(TagsError::is_load_balancer_not_found_exception)
}

/// Whether reading Classic Load Balancer tags failed because one asked about no longer exists.
fn gone_classic(e: &SdkError<ClassicTagsError, HttpResponse>) -> bool {
    e.as_service_error()
        .is_some_and(ClassicTagsError::is_access_point_not_found_exception)
}
