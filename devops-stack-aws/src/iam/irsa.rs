//! [`EksWorkloadIdentity`]: workload identity with IRSA (IAM roles for service accounts).

use std::collections::BTreeMap;

use devops_stack_core::BoxError;
use devops_stack_core::interfaces::{
    RoleOwner, RoleRequest, ServiceAccount, WorkloadIdentity, WorkloadRole,
};
use devops_stack_core::plan::Resource;
use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::{Iam, IdentityCluster, policy_json, role_name};
use crate::config::AwsConfig;
use crate::error::{Error, Result};

/// The ServiceAccount annotation IRSA reads.
pub const ROLE_ARN_ANNOTATION: &str = "eks.amazonaws.com/role-arn";

/// The audience of the tokens EKS projects for IRSA.
pub const STS_AUDIENCE: &str = "sts.amazonaws.com";

/// A trust policy letting exactly `sa` assume the role with a token of the OIDC provider.
pub(crate) fn irsa_trust(provider_arn: &str, issuer_host: &str, sa: &ServiceAccount) -> Value {
    json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Principal": {"Federated": provider_arn},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {
            format!("{issuer_host}:sub"): format!("system:serviceaccount:{}:{}", sa.namespace, sa.name),
            format!("{issuer_host}:aud"): STS_AUDIENCE,
        }}
    }]})
}

/// The IRSA role name of `sa` on `cluster`: `<cluster>-irsa-<namespace>-<name>`, cut to 64.
pub(crate) fn irsa_role_name(cluster: &str, sa: &ServiceAccount) -> String {
    role_name(&format!("{cluster}-irsa-{}-{}", sa.namespace, sa.name))
}

/// Workload identity with IRSA on one EKS cluster: the output side of
/// [`Eks`](crate::eks::Eks), reached with `eks_handle.workload_identity()` (the default
/// [`WorkloadIdentityMode`](crate::eks::WorkloadIdentityMode)).
///
/// Each role trusts exactly one service account of this cluster through the cluster's IAM OIDC
/// provider (`sts:AssumeRoleWithWebIdentity`, conditioned on the token's `sub` and `aud`), and
/// the ServiceAccount carries its ARN in the [`ROLE_ARN_ANNOTATION`] annotation.
#[derive(Debug, Clone)]
pub struct EksWorkloadIdentity {
    cluster: IdentityCluster,
    provider_arn: Option<String>,
    issuer_host: Option<String>,
}

impl EksWorkloadIdentity {
    /// The identity of a cluster known only from a plan: it names roles but cannot create them.
    pub fn planned(cluster: impl Into<String>, region: impl Into<String>) -> Self {
        EksWorkloadIdentity {
            cluster: IdentityCluster::planned(cluster.into(), region.into()),
            provider_arn: None,
            issuer_host: None,
        }
    }

    pub(crate) fn live(
        cluster: &str,
        region: &str,
        account: &str,
        provider_arn: String,
        issuer_host: String,
        aws: AwsConfig,
    ) -> Self {
        EksWorkloadIdentity {
            cluster: IdentityCluster {
                name: cluster.into(),
                region: region.into(),
                account: account.into(),
                aws: Some(aws),
            },
            provider_arn: Some(provider_arn),
            issuer_host: Some(issuer_host),
        }
    }

    /// The role name of `sa` on this cluster: `<cluster>-irsa-<namespace>-<name>`, cut to 64.
    pub fn role_name(&self, sa: &ServiceAccount) -> String {
        irsa_role_name(&self.cluster.name, sa)
    }

    fn role(&self, sa: &ServiceAccount, arn: String) -> WorkloadRole {
        WorkloadRole {
            id: arn.clone(),
            service_account: sa.clone(),
            annotations: BTreeMap::from([(ROLE_ARN_ANNOTATION.to_owned(), arn)]),
        }
    }

    async fn ensure(&self, owner: &RoleOwner, request: &RoleRequest) -> Result<WorkloadRole> {
        let sa = &request.service_account;
        IdentityCluster::check_policy(owner, request)?;
        let (Some(provider), Some(host)) = (&self.provider_arn, &self.issuer_host) else {
            return Err(Error::Client {
                cluster: self.cluster.name.clone(),
                reason: "the cluster has no IAM OIDC provider yet; apply its Eks module first"
                    .into(),
            });
        };
        let (aws, sdk) = self.cluster.sdk().await?;
        let iam = Iam::new(aws, &sdk, &owner.stack, &owner.module);
        let arn = iam
            .ensure_role(&self.cluster.role_spec(
                request,
                self.role_name(sa),
                irsa_trust(provider, host, sa),
                "IRSA role made by devops-stack",
                BTreeMap::new(),
            ))
            .await?;
        Ok(self.role(sa, arn))
    }
}

impl WorkloadIdentity for EksWorkloadIdentity {
    fn planned_role(&self, _owner: &RoleOwner, request: &RoleRequest) -> WorkloadRole {
        let sa = &request.service_account;
        self.role(sa, self.cluster.role_arn(&self.role_name(sa)))
    }

    fn planned_resource(&self, owner: &RoleOwner, request: &RoleRequest) -> Resource {
        let sa = &request.service_account;
        Resource::cloud(
            "aws",
            "iam:Role",
            self.role_name(sa),
            json!({
                "arn": self.planned_role(owner, request).id,
                "assumed_by": format!("system:serviceaccount:{}:{} (IRSA, cluster {})", sa.namespace, sa.name, self.cluster.name),
                "policy": policy_json(&request.policy),
                "managed_policies": self.cluster.managed_arns(request),
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
            let (aws, sdk) = self.cluster.sdk().await?;
            let iam = Iam::new(aws, &sdk, &owner.stack, &owner.module);
            iam.delete_role(&self.role_name(service_account), &|m| tracing::info!("{m}"))
                .await
                .map_err(Into::into)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trust_names_exactly_one_service_account() {
        let trust = irsa_trust(
            "arn:aws:iam::1:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/X",
            "oidc.eks.eu-west-1.amazonaws.com/id/X",
            &ServiceAccount::new("loki", "loki"),
        );
        let statement = &trust["Statement"][0];
        assert_eq!(statement["Action"], "sts:AssumeRoleWithWebIdentity");
        assert_eq!(
            statement["Condition"]["StringEquals"]["oidc.eks.eu-west-1.amazonaws.com/id/X:sub"],
            "system:serviceaccount:loki:loki"
        );
        assert_eq!(
            irsa_role_name("prod", &ServiceAccount::new("loki", "loki")),
            "prod-irsa-loki-loki"
        );
    }
}
