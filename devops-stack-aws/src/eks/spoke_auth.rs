//! [`EksSpokeAuth`]: a hub's Argo CD authenticates to an EKS spoke with IAM, through an EKS
//! access entry for the hub's role.

use devops_stack_core::interfaces::{ClusterRef, SpokeAuth, SpokeCredentials};
use devops_stack_core::plan::unknown;
use devops_stack_core::{BoxError, Context, Handle, Input, Needs, Resource};
use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::access::{self, entry_resource};
use super::{AccessEntry, CLUSTER_ADMIN_POLICY, EksCluster};
use crate::error::{Error, Result};
use crate::tags::{owned_by, owner_text, ownership};

/// The key of Argo CD's cluster config that [`EksSpokeAuth`] sets (Argo CD's
/// `ClusterConfig.AWSAuthConfig`, `json:"awsAuthConfig"`, holding `clusterName` and `roleARN`).
///
/// ```
/// assert_eq!(devops_stack_aws::eks::AWS_AUTH_CONFIG, "awsAuthConfig");
/// ```
pub const AWS_AUTH_CONFIG: &str = "awsAuthConfig";

/// The hub's Argo CD authenticates to an EKS spoke with IAM: registering the spoke makes an EKS
/// access entry on it for the hub's role, with [`CLUSTER_ADMIN_POLICY`] cluster-wide (Argo CD
/// deploys the platform's CRDs and cluster roles), and gives Argo CD `awsAuthConfig` with the
/// spoke's name and the spoke's CA. Argo CD's controller and server then sign EKS tokens with
/// their own AWS identity (`argocd-k8s-auth aws`): no token is stored in the cluster Secret.
///
/// **The role.** `hub_role` is the IAM role Argo CD's controller and server run as (their IRSA
/// or Pod Identity role): the token they sign is of a session of it, which EKS maps to the
/// access entry. Argo CD's `roleARN` is *assumed* (`sts:AssumeRole` from that identity), so it
/// is left out by default: a role assuming itself is refused unless its trust policy names it.
/// With [`assume_role`](Self::assume_role), `hub_role` is a role Argo CD assumes instead (one
/// per spoke account, say), and `roleARN` names it.
///
/// **Ownership.** The entry carries the registration's stack and module tags. An entry of the
/// role that does not ([`Eks::access_entry`](super::Eks::access_entry), `eksctl`, the console)
/// is [`Error::NotOwned`], naming it and the fix, and nothing is written; unregistering deletes
/// only an entry with the tags. A spoke that authenticates through the `aws-auth` ConfigMap only
/// is [`Error::AccessEntriesDisabled`].
///
/// ```
/// use devops_stack_aws::eks::{Eks, EksSpokeAuth};
/// use devops_stack_core::interfaces::SpokeAuth;
/// use devops_stack_core::{Input, Stack};
///
/// let mut stack = Stack::new("fleet");
/// let prod_eks = stack.add(Eks::adopt("prod-eks", "prod", "example.com").region("eu-west-1"));
/// let hub_role = Input::value("arn:aws:iam::123456789012:role/hub-argocd".to_owned());
/// // in a fleet: SpokeSpec::new("prod", &prod_eks, settings).auth(EksSpokeAuth::new(&prod_eks, hub_role))
/// let auth = EksSpokeAuth::new(&prod_eks, hub_role);
/// assert_eq!(
///     auth.describe(),
///     "EKS IAM: access entry for arn:aws:iam::123456789012:role/hub-argocd on the cluster of `prod-eks`"
/// );
/// ```
#[derive(Debug, Clone)]
pub struct EksSpokeAuth {
    cluster: Input<EksCluster>,
    cluster_module: String,
    hub_role: Input<String>,
    assume: bool,
}

impl EksSpokeAuth {
    /// IAM authentication to the EKS cluster of `spoke` (the spoke's [`Eks`](super::Eks)
    /// module) for `hub_role`, the role Argo CD's controller and server run as: a constant
    /// ([`Input::value`]) or another module's output (`handle.map(..)`).
    pub fn new(spoke: &Handle<EksCluster>, hub_role: impl Into<Input<String>>) -> Self {
        EksSpokeAuth {
            cluster: spoke.input(),
            cluster_module: spoke.module_id().to_owned(),
            hub_role: hub_role.into(),
            assume: false,
        }
    }

    /// Argo CD assumes `hub_role` from its own identity (`roleARN`) rather than running as it;
    /// the role must trust that identity.
    ///
    /// ```
    /// # use devops_stack_aws::eks::{Eks, EksSpokeAuth};
    /// # use devops_stack_core::interfaces::SpokeAuth;
    /// # use devops_stack_core::{Input, Stack};
    /// # let mut stack = Stack::new("fleet");
    /// # let prod_eks = stack.add(Eks::adopt("prod-eks", "prod", "example.com"));
    /// let deployer = Input::value("arn:aws:iam::210987654321:role/argocd-deployer".to_owned());
    /// let auth = EksSpokeAuth::new(&prod_eks, deployer).assume_role();
    /// assert!(auth.describe().contains("(assumed)"));
    /// ```
    #[must_use]
    pub fn assume_role(mut self) -> Self {
        self.assume = true;
        self
    }

    /// The `awsAuthConfig` Argo CD gets.
    fn aws_auth_config(&self, cluster: &str, role: &str) -> Value {
        let mut config = json!({"clusterName": cluster});
        if self.assume {
            config["roleARN"] = json!(role);
        }
        config
    }

    /// Makes (or finds) the access entry, then gives Argo CD its config.
    async fn make(
        &self,
        ctx: &Context,
        cluster: &EksCluster,
        role: &str,
    ) -> Result<SpokeCredentials> {
        let aws = cluster.aws_config()?;
        let sdk = aws.load().await?;
        let client = aws.eks_client(&sdk);
        let what = entry_resource(&cluster.name, role);

        // A cluster without access entries stops here, before anything is written.
        let mode = client
            .describe_cluster()
            .name(&cluster.name)
            .send()
            .await
            .map_err(|e| {
                Error::aws(
                    "reading the cluster's authentication mode",
                    format!("EKS cluster `{}`", cluster.name),
                    e,
                )
            })?
            .cluster
            .and_then(|c| c.access_config)
            .and_then(|a| a.authentication_mode);
        if let Some(mode) = mode.filter(|m| *m == aws_sdk_eks::types::AuthenticationMode::ConfigMap)
        {
            return Err(Error::AccessEntriesDisabled {
                cluster: cluster.name.clone(),
                mode: mode.as_str().to_owned(),
            });
        }

        // Someone else's entry for the role stops it too.
        let existing = access::describe(&client, &cluster.name, role).await?;
        if let Some(entry) = &existing
            && !owned(entry, ctx)
        {
            return Err(Error::NotOwned {
                resource: what,
                owner: owner_text(tags(entry)),
                fix: format!(
                    "if nothing else needs it, delete it (`aws eks delete-access-entry --cluster-name {} --principal-arn {role}`; or remove it from the spoke's `Eks::access_entry`) and apply again, so that the registration makes its own; or register the spoke with another authentication",
                    cluster.name
                ),
            });
        }
        access::ensure(
            &client,
            &cluster.name,
            &AccessEntry::admin(role),
            existing.is_some(),
            &ownership(ctx.stack_name(), ctx.module_id()),
            ctx,
        )
        .await?;
        Ok(SpokeCredentials::provider(
            AWS_AUTH_CONFIG,
            self.aws_auth_config(&cluster.name, role),
            Some(cluster.certificate_authority_data.clone()).filter(|ca| !ca.is_empty()),
        ))
    }

    /// Deletes the access entry when it is this registration's.
    async fn remove(&self, ctx: &Context, cluster: &EksCluster, role: &str) -> Result<()> {
        let aws = cluster.aws_config()?;
        let sdk = aws.load().await?;
        let client = aws.eks_client(&sdk);
        match access::describe(&client, &cluster.name, role).await? {
            Some(entry) if owned(&entry, ctx) => {
                access::delete(&client, &cluster.name, role, ctx).await
            }
            Some(_) => {
                ctx.progress(format!(
                    "{} is not this registration's: left alone",
                    entry_resource(&cluster.name, role)
                ));
                Ok(())
            }
            None => Ok(()),
        }
    }
}

fn tags(entry: &aws_sdk_eks::types::AccessEntry) -> impl Iterator<Item = (&str, &str)> {
    entry
        .tags()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), v.as_str()))
}

/// Whether the entry carries the registration's ownership tags.
fn owned(entry: &aws_sdk_eks::types::AccessEntry, ctx: &Context) -> bool {
    owned_by(tags(entry), ctx.stack_name(), ctx.module_id())
}

impl SpokeAuth for EksSpokeAuth {
    fn describe(&self) -> String {
        let role = self.hub_role.as_value().map_or_else(
            || {
                let from = self.hub_role.dependency().map_or("", |d| d.module());
                format!("the role from `{from}`")
            },
            Clone::clone,
        );
        format!(
            "EKS IAM: access entry for {role}{} on the cluster of `{}`",
            if self.assume { " (assumed)" } else { "" },
            self.cluster_module
        )
    }

    fn needs(&self, needs: &mut Needs) {
        needs.add(&self.cluster).add(&self.hub_role);
    }

    /// The access entry, with the `awsAuthConfig` Argo CD gets; no AWS call.
    fn planned_resources(&self, ctx: &Context, _spoke: &ClusterRef) -> Vec<Resource> {
        let cluster = ctx
            .get(&self.cluster)
            .map_or_else(|_| unknown(&self.cluster_module, "name"), |c| c.name);
        let role = ctx
            .get(&self.hub_role)
            .unwrap_or_else(|_| unknown(ctx.module_id(), "hub_role"));
        vec![Resource::cloud(
            "aws",
            "eks:AccessEntry",
            format!("{cluster}/{role}"),
            json!({
                "cluster": cluster,
                "principal_arn": role,
                "policies": [CLUSTER_ADMIN_POLICY],
                "access_scope": "cluster",
                "tags": ownership(ctx.stack_name(), ctx.module_id()),
                "argocd": {AWS_AUTH_CONFIG: self.aws_auth_config(&cluster, &role)},
            }),
        )]
    }

    fn credentials<'a>(
        &'a self,
        ctx: &'a Context,
        _spoke: &'a ClusterRef,
    ) -> BoxFuture<'a, std::result::Result<SpokeCredentials, BoxError>> {
        Box::pin(async move {
            let cluster = ctx.get(&self.cluster)?;
            let role = ctx.get(&self.hub_role)?;
            Ok(self.make(ctx, &cluster, &role).await?)
        })
    }

    fn revoke<'a>(
        &'a self,
        ctx: &'a Context,
        _spoke: &'a ClusterRef,
    ) -> BoxFuture<'a, std::result::Result<(), BoxError>> {
        Box::pin(async move {
            let cluster = ctx.get(&self.cluster)?;
            let role = ctx.get(&self.hub_role)?;
            Ok(self.remove(ctx, &cluster, &role).await?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argocd_gets_the_cluster_name_and_the_role_only_when_assumed() {
        let mut stack = devops_stack_core::Stack::new("fleet");
        let eks = stack.add(super::super::Eks::adopt("prod-eks", "prod", "example.com"));
        let role = "arn:aws:iam::123456789012:role/hub";
        let auth = EksSpokeAuth::new(&eks, Input::value(role.to_owned()));
        assert_eq!(
            auth.aws_auth_config("prod", role),
            json!({"clusterName": "prod"})
        );
        let assumed = auth.assume_role();
        assert_eq!(
            assumed.aws_auth_config("prod", role),
            json!({"clusterName": "prod", "roleARN": role})
        );
        assert!(assumed.describe().contains("(assumed)"));
        let c = SpokeCredentials::provider(
            AWS_AUTH_CONFIG,
            assumed.aws_auth_config("prod", role),
            Some("Q0E=".into()),
        );
        assert_eq!(
            c.argocd_config(),
            json!({
                "tlsClientConfig": {"insecure": false, "caData": "Q0E="},
                "awsAuthConfig": {"clusterName": "prod", "roleARN": role},
            })
        );
    }
}
