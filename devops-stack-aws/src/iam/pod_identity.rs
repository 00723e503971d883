//! [`EksPodIdentity`]: workload identity with EKS Pod Identity.

use std::collections::BTreeMap;

use aws_sdk_eks::Client as EksClient;
use aws_sdk_eks::types::PodIdentityAssociation;
use devops_stack_core::BoxError;
use devops_stack_core::interfaces::{
    RoleOwner, RoleRequest, ServiceAccount, WorkloadIdentity, WorkloadRole,
};
use devops_stack_core::plan::Resource;
use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::irsa::irsa_role_name;
use super::{Iam, IdentityCluster, cut, policy_json, role_name};
use crate::config::AwsConfig;
use crate::error::{Error, Result, deleted, is_not_found};
use crate::tags::{POD_IDENTITY_USE_TAG_PREFIX, owned_by, owner_text, ownership};

/// The service EKS Pod Identity roles trust: the EKS Pod Identity Agent assumes them for pods.
pub const PODS_SERVICE_PRINCIPAL: &str = "pods.eks.amazonaws.com";

/// The trust policy of every Pod Identity role: the service [`PODS_SERVICE_PRINCIPAL`] may assume
/// it and tag the session (with the cluster, namespace and service account, which policies can
/// read as `aws:PrincipalTag/...`). No condition names a cluster: the same role serves each
/// cluster that associates it.
pub(crate) fn pod_identity_trust() -> Value {
    json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Principal": {"Service": PODS_SERVICE_PRINCIPAL},
        "Action": ["sts:AssumeRole", "sts:TagSession"]
    }]})
}

/// Workload identity with EKS Pod Identity on one EKS cluster: what `eks_handle.workload_identity()`
/// gives when the [`Eks`](crate::eks::Eks) module is built with
/// [`WorkloadIdentityMode::PodIdentity`](crate::eks::WorkloadIdentityMode::PodIdentity) (which
/// also installs the `eks-pod-identity-agent` add-on).
///
/// **One role per module and service account, for every cluster.** The role is named after its
/// owner, never after a cluster ([`EksPodIdentity::role_name`]), and trusts the service
/// [`PODS_SERVICE_PRINCIPAL`] without condition. What ties it to a cluster's service account is
/// a *pod identity association* of that cluster. So the same module on a second cluster (the
/// same stack and module id applied to another cluster of a fleet) finds its role, leaves its
/// trust as it is, and only adds its association: adding a cluster never rewrites a trust
/// policy. The role's policy is the module's request, the same on every cluster; a permission
/// that must differ by cluster can read the session tag `aws:PrincipalTag/eks-cluster-name`.
///
/// **Ownership.** The role and the associations carry the owner's stack and module tags. A role
/// of that name without them is [`Error::NotOwned`]; so is an association of the service account
/// on this cluster that is not the owner's (EKS allows one per service account): nothing is
/// created then, and the error names the association and how to go on.
///
/// **Deletion.** Each cluster using the role marks it with a tag
/// ([`POD_IDENTITY_USE_TAG_PREFIX`]`<region>/<cluster>`, see [`EksPodIdentity::use_tag`]), set
/// before its association is made. `delete_role` deletes this cluster's association, removes its
/// mark, and deletes the role only when no other cluster's mark is left: a count kept on the role
/// itself, read with the one `GetRole` the deletion makes anyway, where finding the associations
/// of other clusters would mean listing every cluster of every region. A cluster deleted without
/// its modules' destroy leaves its mark, and so keeps the role (never the reverse). Two clusters'
/// runs ensuring and deleting the same role at the same moment are not guarded against. IAM
/// allows 50 tags per role: 48 clusters per role.
///
/// **From IRSA.** Switching a live stack from IRSA changes no module: its apply calls
/// `ensure_role` (which makes the association) before it renders the ServiceAccount, now without
/// the `eks.amazonaws.com/role-arn` annotation, so the association exists before the annotation
/// goes, and pods started meanwhile get both (the SDKs prefer IRSA's web identity). The module's
/// IRSA role (`<cluster>-irsa-<namespace>-<name>`) is left in place: pods started before the
/// switch keep using it until they restart. `delete_role` deletes it too (after the
/// association and the Pod Identity role), if the owner's; until then each apply says it is
/// there. The reverse switch is not handled: after it, the IRSA identity's destroy does not
/// know the Pod Identity role and association, which stay until deleted by hand.
///
/// ```
/// use devops_stack_aws::iam::EksPodIdentity;
/// use devops_stack_core::interfaces::*;
/// let request = RoleRequest::new(
///     ServiceAccount::new("loki", "loki"),
///     PolicyDocument::new().statement(Statement::allow(["s3:GetObject"], ["arn:aws:s3:::fleet-loki/*"])),
/// );
/// let owner = RoleOwner { stack: "fleet".into(), module: "loki".into() };
/// let on_a = EksPodIdentity::planned("cluster-a", "eu-west-1").planned_role(&owner, &request);
/// let on_b = EksPodIdentity::planned("cluster-b", "eu-west-1").planned_role(&owner, &request);
/// assert_eq!(on_a.id, on_b.id); // one role for both clusters
/// assert!(on_a.id.ends_with(":role/fleet-loki-loki-loki"));
/// assert!(on_a.annotations.is_empty()); // nothing on the ServiceAccount
/// ```
#[derive(Debug, Clone)]
pub struct EksPodIdentity {
    cluster: IdentityCluster,
}

impl EksPodIdentity {
    /// The identity of a cluster known only from a plan: it names roles but cannot create them.
    pub fn planned(cluster: impl Into<String>, region: impl Into<String>) -> Self {
        EksPodIdentity {
            cluster: IdentityCluster::planned(cluster.into(), region.into()),
        }
    }

    pub(crate) fn live(cluster: &str, region: &str, account: &str, aws: AwsConfig) -> Self {
        EksPodIdentity {
            cluster: IdentityCluster {
                name: cluster.into(),
                region: region.into(),
                account: account.into(),
                aws: Some(aws),
            },
        }
    }

    /// The role name of `sa` for `owner`, on every cluster:
    /// `<stack>-<module>-<namespace>-<name>`, cut to 64. The module is part of it so that two
    /// modules of one stack (one per cluster, with different policies) never share a role.
    pub fn role_name(owner: &RoleOwner, sa: &ServiceAccount) -> String {
        role_name(&format!(
            "{}-{}-{}-{}",
            owner.stack, owner.module, sa.namespace, sa.name
        ))
    }

    /// The tag marking a role as used by this cluster, as `(key, value)`: the key is
    /// [`POD_IDENTITY_USE_TAG_PREFIX`]`<region>/<cluster>` (cut to IAM's 128 characters, with a
    /// hash), the value `<region>/<cluster>`.
    pub fn use_tag(&self) -> (String, String) {
        let at = format!("{}/{}", self.cluster.region, self.cluster.name);
        (cut(&format!("{POD_IDENTITY_USE_TAG_PREFIX}{at}"), 128), at)
    }

    fn role(sa: &ServiceAccount, arn: String) -> WorkloadRole {
        WorkloadRole {
            id: arn,
            service_account: sa.clone(),
            annotations: BTreeMap::new(),
        }
    }

    fn association_resource(&self, sa: &ServiceAccount) -> String {
        format!(
            "pod identity association of {sa} on EKS cluster `{}`",
            self.cluster.name
        )
    }

    /// The association of `sa` on the cluster, if any (EKS allows one per service account). A
    /// cluster that is gone has none.
    async fn association(
        &self,
        eks: &EksClient,
        sa: &ServiceAccount,
    ) -> Result<Option<PodIdentityAssociation>> {
        let what = self.association_resource(sa);
        let listed = match eks
            .list_pod_identity_associations()
            .cluster_name(&self.cluster.name)
            .namespace(&sa.namespace)
            .service_account(&sa.name)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(Error::aws("listing pod identity associations", &what, e)),
        };
        let Some(id) = listed
            .associations()
            .iter()
            .find_map(|a| a.association_id())
        else {
            return Ok(None);
        };
        match eks
            .describe_pod_identity_association()
            .cluster_name(&self.cluster.name)
            .association_id(id)
            .send()
            .await
        {
            Ok(out) => Ok(out.association),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(Error::aws("reading the pod identity association", &what, e)),
        }
    }

    fn owns(owner: &RoleOwner, a: &PodIdentityAssociation) -> bool {
        a.tags().is_some_and(|t| {
            owned_by(
                t.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                &owner.stack,
                &owner.module,
            )
        })
    }

    async fn ensure(&self, owner: &RoleOwner, request: &RoleRequest) -> Result<WorkloadRole> {
        let sa = &request.service_account;
        IdentityCluster::check_policy(owner, request)?;
        let (aws, sdk) = self.cluster.sdk().await?;
        let iam = Iam::new(aws, &sdk, &owner.stack, &owner.module);
        let eks = aws.eks_client(&sdk);
        let what = self.association_resource(sa);

        // Someone else's association stops the apply before anything changes.
        let existing = self.association(&eks, sa).await?;
        if let Some(a) = existing.as_ref().filter(|a| !Self::owns(owner, a)) {
            let id = a.association_id().unwrap_or_default();
            return Err(Error::NotOwned {
                resource: format!("{what} (`{id}`, role {})", a.role_arn().unwrap_or("?")),
                owner: match a.owner_arn() {
                    Some(maker) => format!("made by {maker}"),
                    None => owner_text(
                        a.tags()
                            .into_iter()
                            .flatten()
                            .map(|(k, v)| (k.as_str(), v.as_str())),
                    ),
                },
                fix: format!(
                    "if nothing needs it, delete it (`aws eks delete-pod-identity-association --cluster-name {} --association-id {id}`) and apply again; or run the workload under another service account",
                    self.cluster.name
                ),
            });
        }

        // The role, marked as used by this cluster before the association uses it.
        let name = Self::role_name(owner, sa);
        let (key, value) = self.use_tag();
        let arn = iam
            .ensure_role(&self.cluster.role_spec(
                request,
                name,
                pod_identity_trust(),
                "EKS Pod Identity role made by devops-stack",
                BTreeMap::from([(key, value)]),
            ))
            .await?;

        match existing {
            None => {
                tracing::info!("creating the {what}, to role {arn}");
                eks.create_pod_identity_association()
                    .cluster_name(&self.cluster.name)
                    .namespace(&sa.namespace)
                    .service_account(&sa.name)
                    .role_arn(&arn)
                    .set_tags(Some(
                        ownership(&owner.stack, &owner.module).into_iter().collect(),
                    ))
                    .send()
                    .await
                    .map_err(|e| Error::aws("creating the pod identity association", &what, e))?;
            }
            Some(a) if a.role_arn() != Some(arn.as_str()) => {
                tracing::info!("pointing the {what} to role {arn}");
                eks.update_pod_identity_association()
                    .cluster_name(&self.cluster.name)
                    .association_id(a.association_id().unwrap_or_default())
                    .role_arn(&arn)
                    .send()
                    .await
                    .map_err(|e| Error::aws("updating the pod identity association", &what, e))?;
            }
            Some(_) => {}
        }

        let irsa = irsa_role_name(&self.cluster.name, sa);
        if iam.owns_role(&irsa).await? {
            tracing::warn!(
                "IAM role `{irsa}` (IRSA, from before the switch to EKS Pod Identity) is kept: pods started before the switch use it until they restart; the module's destroy deletes it"
            );
        }
        Ok(Self::role(sa, arn))
    }

    async fn delete(&self, owner: &RoleOwner, sa: &ServiceAccount) -> Result<()> {
        let (aws, sdk) = self.cluster.sdk().await?;
        let iam = Iam::new(aws, &sdk, &owner.stack, &owner.module);
        let eks = aws.eks_client(&sdk);
        let what = self.association_resource(sa);
        let progress = |m: String| tracing::info!("{m}");

        match self.association(&eks, sa).await? {
            Some(a) if Self::owns(owner, &a) => {
                progress(format!("deleting the {what}"));
                deleted(
                    eks.delete_pod_identity_association()
                        .cluster_name(&self.cluster.name)
                        .association_id(a.association_id().unwrap_or_default())
                        .send()
                        .await,
                    "deleting the pod identity association",
                    &what,
                )?;
            }
            Some(_) => progress(format!("the {what} is not this module's: left alone")),
            None => {}
        }

        // The role goes with the last cluster using it.
        let name = Self::role_name(owner, sa);
        if let Some(tags) = iam.role_tags(&name).await?
            && iam.owns(&tags)
        {
            let (key, _) = self.use_tag();
            if tags.iter().any(|t| t.key() == key) {
                iam.untag_role(&name, std::slice::from_ref(&key)).await?;
            }
            let others: Vec<&str> = tags
                .iter()
                .filter(|t| t.key().starts_with(POD_IDENTITY_USE_TAG_PREFIX) && t.key() != key)
                .map(|t| t.value())
                .collect();
            if others.is_empty() {
                iam.delete_role(&name, &progress).await?;
            } else {
                progress(format!(
                    "IAM role `{name}` is kept: the clusters {} still use it",
                    others.join(", ")
                ));
            }
        }

        // The module's IRSA role of this cluster, when the stack came from IRSA.
        iam.delete_role(&irsa_role_name(&self.cluster.name, sa), &progress)
            .await
    }
}

impl WorkloadIdentity for EksPodIdentity {
    fn planned_role(&self, owner: &RoleOwner, request: &RoleRequest) -> WorkloadRole {
        let sa = &request.service_account;
        Self::role(sa, self.cluster.role_arn(&Self::role_name(owner, sa)))
    }

    /// The role, with its trust and policies, and this cluster's association to it.
    fn planned_resource(&self, owner: &RoleOwner, request: &RoleRequest) -> Resource {
        let sa = &request.service_account;
        Resource::cloud(
            "aws",
            "iam:Role",
            Self::role_name(owner, sa),
            json!({
                "arn": self.planned_role(owner, request).id,
                "trust": pod_identity_trust(),
                "policy": policy_json(&request.policy),
                "managed_policies": self.cluster.managed_arns(request),
                "shared": format!("by every cluster module `{}` of stack `{}` runs on: each adds its association", owner.module, owner.stack),
                "association": {
                    "kind": "eks:PodIdentityAssociation",
                    "cluster": self.cluster.name,
                    "namespace": sa.namespace,
                    "service_account": sa.name,
                },
            }),
        )
    }

    fn ensure_role<'a>(
        &'a self,
        owner: &'a RoleOwner,
        request: &'a RoleRequest,
    ) -> BoxFuture<'a, Result<WorkloadRole, BoxError>> {
        Box::pin(async move { self.ensure(owner, request).await.map_err(Into::into) })
    }

    fn delete_role<'a>(
        &'a self,
        owner: &'a RoleOwner,
        service_account: &'a ServiceAccount,
    ) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            self.delete(owner, service_account)
                .await
                .map_err(Into::into)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use devops_stack_core::interfaces::{PolicyDocument, Statement};

    fn owner() -> RoleOwner {
        RoleOwner {
            stack: "fleet".into(),
            module: "loki".into(),
        }
    }

    #[test]
    fn the_trust_is_the_pods_service_with_tag_session_and_no_cluster() {
        let trust = pod_identity_trust();
        let statement = &trust["Statement"][0];
        assert_eq!(statement["Principal"]["Service"], "pods.eks.amazonaws.com");
        assert_eq!(
            statement["Action"],
            json!(["sts:AssumeRole", "sts:TagSession"])
        );
        assert_eq!(statement["Effect"], "Allow");
        assert!(statement.get("Condition").is_none());
        assert_eq!(trust["Statement"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn one_role_name_for_every_cluster_and_one_use_tag_per_cluster() {
        let sa = ServiceAccount::new("loki", "loki");
        let name = EksPodIdentity::role_name(&owner(), &sa);
        assert_eq!(name, "fleet-loki-loki-loki");
        let long = RoleOwner {
            stack: "a".repeat(63),
            module: "b".repeat(63),
        };
        assert_eq!(EksPodIdentity::role_name(&long, &sa).len(), 64);

        let a = EksPodIdentity::planned("cluster-a", "eu-west-1");
        let b = EksPodIdentity::planned("cluster-a", "us-east-1");
        assert_eq!(
            a.use_tag(),
            (
                "devops-stack.io/pod-identity/eu-west-1/cluster-a".to_owned(),
                "eu-west-1/cluster-a".to_owned()
            )
        );
        assert_ne!(
            a.use_tag().0,
            b.use_tag().0,
            "a cluster is its region and name"
        );
        let longest = EksPodIdentity::planned("c".repeat(100), "ap-southeast-4");
        let (key, value) = longest.use_tag();
        assert_eq!(key.len(), 128);
        assert!(key.starts_with(POD_IDENTITY_USE_TAG_PREFIX));
        assert_eq!(value, format!("ap-southeast-4/{}", "c".repeat(100)));
    }

    #[test]
    fn the_plan_shows_the_role_its_trust_and_the_association_without_annotation() {
        let request = RoleRequest::new(
            ServiceAccount::new("loki", "loki"),
            PolicyDocument::new().statement(Statement::allow(
                ["s3:GetObject"],
                ["arn:aws:s3:::fleet-loki/*"],
            )),
        );
        let identity = EksPodIdentity::planned("cluster-a", "eu-west-1");
        let role = identity.planned_role(&owner(), &request);
        assert!(role.annotations.is_empty());
        assert_eq!(
            role.id,
            "arn:aws:iam::(known after apply):role/fleet-loki-loki-loki"
        );
        let resource = identity.planned_resource(&owner(), &request);
        assert_eq!(resource.title(), "aws iam:Role fleet-loki-loki-loki");
        let Resource::Cloud { properties, .. } = resource else {
            panic!("a cloud resource")
        };
        assert_eq!(properties["trust"], pod_identity_trust());
        assert_eq!(
            properties["association"],
            json!({"kind": "eks:PodIdentityAssociation", "cluster": "cluster-a", "namespace": "loki", "service_account": "loki"})
        );
        assert_eq!(
            properties["policy"]["Statement"][0]["Resource"][0],
            "arn:aws:s3:::fleet-loki/*"
        );
    }
}
