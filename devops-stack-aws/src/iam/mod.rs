//! IAM: the roles and the OIDC provider of an EKS cluster, and workload identity (IRSA).
//!
//! Every role and OIDC provider created here carries the stack's and the module's tags; one of
//! the same name without them is never changed or deleted ([`Error::NotOwned`]).
//!
//! [`EksWorkloadIdentity`] implements the core
//! `WorkloadIdentity` interface with IRSA: a
//! module asks for a role for `namespace/serviceaccount` with a typed policy; the role's trust
//! allows `sts:AssumeRoleWithWebIdentity` from exactly that service account through the
//! cluster's OIDC provider; the module puts the returned `eks.amazonaws.com/role-arn`
//! annotation on the ServiceAccount, and deletes the role in its destroy.
//!
//! ```
//! use devops_stack_aws::iam::EksWorkloadIdentity;
//! use devops_stack_core::interfaces::*;
//! let identity = EksWorkloadIdentity::planned("prod", "eu-west-1");
//! let request = RoleRequest::new(
//!     ServiceAccount::new("loki", "loki"),
//!     PolicyDocument::new().statement(Statement::allow(["s3:GetObject"], ["arn:aws:s3:::prod-loki/*"])),
//! );
//! let owner = RoleOwner { stack: "prod".into(), module: "loki".into() };
//! let role = identity.planned_role(&owner, &request);
//! assert_eq!(role.annotations["eks.amazonaws.com/role-arn"], role.id);
//! assert!(role.id.ends_with(":role/prod-irsa-loki-loki"));
//! ```

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_iam::Client;
use aws_sdk_iam::types::Tag;
use devops_stack_core::BoxError;
use devops_stack_core::interfaces::{
    Effect, PolicyDocument, RoleOwner, RoleRequest, ServiceAccount, WorkloadIdentity, WorkloadRole,
};
use devops_stack_core::plan::Resource;
use futures::future::BoxFuture;
use serde_json::{Value, json};

use crate::config::AwsConfig;
use crate::error::{Error, Result, deleted, is_not_found};
use crate::tags::{MODULE_TAG, STACK_TAG, owned_by, owner_text};

/// The ServiceAccount annotation IRSA reads.
pub const ROLE_ARN_ANNOTATION: &str = "eks.amazonaws.com/role-arn";

/// The audience of the tokens EKS projects for IRSA.
pub const STS_AUDIENCE: &str = "sts.amazonaws.com";

/// The AWS partition of a region (`aws`, `aws-cn`, `aws-us-gov`).
pub(crate) fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// A role name of at most 64 characters: `base` cut, with a stable hash of the whole when cut.
pub(crate) fn role_name(base: &str) -> String {
    if base.len() <= 64 {
        return base.to_owned();
    }
    // FNV-1a: stable across runs and platforms.
    let hash = base.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("{}-{:08x}", &base[..55], hash as u32)
}

/// A trust policy letting `service` (`eks.amazonaws.com`) assume the role.
pub(crate) fn service_trust(service: &str) -> Value {
    json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Principal": {"Service": service},
        "Action": "sts:AssumeRole"
    }]})
}

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

/// IAM's JSON for a typed policy.
pub(crate) fn policy_json(policy: &PolicyDocument) -> Value {
    let statements: Vec<Value> = policy
        .statements
        .iter()
        .map(|s| {
            json!({
                "Effect": match s.effect { Effect::Deny => "Deny", _ => "Allow" },
                "Action": s.actions,
                "Resource": s.resources,
            })
        })
        .collect();
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// A role the stack manages: its name, trust, managed policies and inline policy.
pub(crate) struct RoleSpec<'a> {
    pub(crate) name: String,
    pub(crate) trust: Value,
    pub(crate) managed: Vec<String>,
    pub(crate) inline: Option<Value>,
    pub(crate) description: &'a str,
}

/// The name of the inline policy of the roles made here.
const INLINE_POLICY: &str = "devops-stack";

/// IAM calls on behalf of `module` of `stack`.
pub(crate) struct Iam {
    pub(crate) client: Client,
    pub(crate) stack: String,
    pub(crate) module: String,
}

impl Iam {
    pub(crate) fn new(
        aws: &AwsConfig,
        sdk: &aws_config::SdkConfig,
        stack: &str,
        module: &str,
    ) -> Self {
        Iam {
            client: aws.iam_client(sdk),
            stack: stack.to_owned(),
            module: module.to_owned(),
        }
    }

    fn tags(&self) -> Vec<Tag> {
        [(STACK_TAG, &self.stack), (MODULE_TAG, &self.module)]
            .into_iter()
            .map(|(k, v)| {
                Tag::builder()
                    .key(k)
                    .value(v)
                    .build()
                    .expect("key and value set")
            })
            .collect()
    }

    /// The role's tags, or `None` when it does not exist.
    async fn role_tags(&self, name: &str) -> Result<Option<Vec<Tag>>> {
        match self.client.get_role().role_name(name).send().await {
            Ok(out) => Ok(Some(
                out.role
                    .map(|r| r.tags.unwrap_or_default())
                    .unwrap_or_default(),
            )),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(Error::aws(
                "reading the role",
                format!("IAM role `{name}`"),
                e,
            )),
        }
    }

    /// Whether a role `name` exists with this module's tags.
    pub(crate) async fn owns_role(&self, name: &str) -> Result<bool> {
        Ok(self.role_tags(name).await?.is_some_and(|t| self.owns(&t)))
    }

    fn owns(&self, tags: &[Tag]) -> bool {
        owned_by(
            tags.iter().map(|t| (t.key(), t.value())),
            &self.stack,
            &self.module,
        )
    }

    /// Creates the role, or brings this module's existing one to `spec`; returns its ARN.
    ///
    /// # Errors
    /// [`Error::NotOwned`] when a role of that name exists without this module's tags.
    pub(crate) async fn ensure_role(&self, spec: &RoleSpec<'_>) -> Result<String> {
        let what = format!("IAM role `{}`", spec.name);
        let trust = spec.trust.to_string();
        let arn = match self.role_tags(&spec.name).await? {
            Some(tags) if !self.owns(&tags) => {
                return Err(Error::NotOwned {
                    resource: what,
                    owner: owner_text(tags.iter().map(|t| (t.key(), t.value()))),
                    fix: format!(
                        "delete or rename that role, or give this module the ARN of a role to use instead of creating `{}`",
                        spec.name
                    ),
                });
            }
            Some(_) => {
                // Trust and policies are set again each run: both calls are idempotent.
                self.client
                    .update_assume_role_policy()
                    .role_name(&spec.name)
                    .policy_document(&trust)
                    .send()
                    .await
                    .map_err(|e| Error::aws("updating the role's trust policy", &what, e))?;
                self.client
                    .get_role()
                    .role_name(&spec.name)
                    .send()
                    .await
                    .map_err(|e| Error::aws("reading the role", &what, e))?
                    .role
                    .map(|r| r.arn)
                    .unwrap_or_default()
            }
            None => self
                .client
                .create_role()
                .role_name(&spec.name)
                .assume_role_policy_document(&trust)
                .description(spec.description)
                .set_tags(Some(self.tags()))
                .send()
                .await
                .map_err(|e| Error::aws("creating the role", &what, e))?
                .role
                .map(|r| r.arn)
                .unwrap_or_default(),
        };
        let attached: BTreeSet<String> = self
            .client
            .list_attached_role_policies()
            .role_name(&spec.name)
            .send()
            .await
            .map_err(|e| Error::aws("listing the role's policies", &what, e))?
            .attached_policies
            .unwrap_or_default()
            .into_iter()
            .filter_map(|p| p.policy_arn)
            .collect();
        for policy in spec.managed.iter().filter(|p| !attached.contains(*p)) {
            self.client
                .attach_role_policy()
                .role_name(&spec.name)
                .policy_arn(policy)
                .send()
                .await
                .map_err(|e| Error::aws(format!("attaching {policy}"), &what, e))?;
        }
        if let Some(inline) = &spec.inline {
            self.client
                .put_role_policy()
                .role_name(&spec.name)
                .policy_name(INLINE_POLICY)
                .policy_document(inline.to_string())
                .send()
                .await
                .map_err(|e| Error::aws("setting the role's policy", &what, e))?;
        }
        Ok(arn)
    }

    /// Deletes the role if this module owns it: detaches its managed policies, deletes its
    /// inline ones, takes it out of its instance profiles, then deletes it. A role without this
    /// module's tags is left alone and reported.
    pub(crate) async fn delete_role(
        &self,
        name: &str,
        progress: &(dyn Fn(String) + Sync),
    ) -> Result<()> {
        let what = format!("IAM role `{name}`");
        match self.role_tags(name).await? {
            None => return Ok(()),
            Some(tags) if !self.owns(&tags) => {
                progress(format!(
                    "{what} is not this module's (tags: {}): left alone",
                    owner_text(tags.iter().map(|t| (t.key(), t.value())))
                ));
                return Ok(());
            }
            Some(_) => {}
        }
        progress(format!("deleting {what}"));
        let attached = self
            .client
            .list_attached_role_policies()
            .role_name(name)
            .send()
            .await
            .map_err(|e| Error::aws("listing the role's policies", &what, e))?
            .attached_policies
            .unwrap_or_default();
        for policy in attached.iter().filter_map(|p| p.policy_arn()) {
            deleted(
                self.client
                    .detach_role_policy()
                    .role_name(name)
                    .policy_arn(policy)
                    .send()
                    .await,
                &format!("detaching {policy}"),
                &what,
            )?;
        }
        let inline = self
            .client
            .list_role_policies()
            .role_name(name)
            .send()
            .await
            .map_err(|e| Error::aws("listing the role's inline policies", &what, e))?
            .policy_names;
        for policy in &inline {
            deleted(
                self.client
                    .delete_role_policy()
                    .role_name(name)
                    .policy_name(policy)
                    .send()
                    .await,
                &format!("deleting inline policy {policy}"),
                &what,
            )?;
        }
        let profiles = self
            .client
            .list_instance_profiles_for_role()
            .role_name(name)
            .send()
            .await
            .map_err(|e| Error::aws("listing the role's instance profiles", &what, e))?
            .instance_profiles;
        for profile in &profiles {
            let profile_name = profile.instance_profile_name();
            deleted(
                self.client
                    .remove_role_from_instance_profile()
                    .instance_profile_name(profile_name)
                    .role_name(name)
                    .send()
                    .await,
                &format!("removing the role from instance profile {profile_name}"),
                &what,
            )?;
        }
        match self.client.delete_role().role_name(name).send().await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(Error::aws("deleting the role", &what, e)),
        }
    }

    /// The OIDC provider of `issuer_url` for IRSA: created when missing; one that exists
    /// without this module's tags (made by eksctl, say) is used and never deleted. Returns its
    /// ARN.
    pub(crate) async fn ensure_oidc_provider(
        &self,
        issuer_url: &str,
        account: &str,
        partition: &str,
        progress: &(dyn Fn(String) + Sync),
    ) -> Result<String> {
        let host = issuer_url.trim_start_matches("https://");
        let arn = format!("arn:{partition}:iam::{account}:oidc-provider/{host}");
        let what = format!("IAM OIDC provider `{host}`");
        match self.oidc_tags(&arn).await? {
            Some(tags) if !self.owns(&tags) => {
                progress(format!(
                    "{what} exists and is not this module's: used, never deleted"
                ));
                Ok(arn)
            }
            Some(_) => Ok(arn),
            None => {
                progress(format!("creating {what}"));
                // No thumbprint: IAM trusts the issuer's certificate authority itself for EKS.
                Ok(self
                    .client
                    .create_open_id_connect_provider()
                    .url(issuer_url)
                    .client_id_list(STS_AUDIENCE)
                    .set_tags(Some(self.tags()))
                    .send()
                    .await
                    .map_err(|e| Error::aws("creating the OIDC provider", &what, e))?
                    .open_id_connect_provider_arn
                    .unwrap_or(arn))
            }
        }
    }

    async fn oidc_tags(&self, arn: &str) -> Result<Option<Vec<Tag>>> {
        match self
            .client
            .get_open_id_connect_provider()
            .open_id_connect_provider_arn(arn)
            .send()
            .await
        {
            Ok(out) => Ok(Some(out.tags.unwrap_or_default())),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(Error::aws("reading the OIDC provider", arn, e)),
        }
    }

    /// The ARNs of the OIDC providers this module created.
    pub(crate) async fn owned_oidc_providers(&self) -> Result<Vec<String>> {
        let list = self
            .client
            .list_open_id_connect_providers()
            .send()
            .await
            .map_err(|e| Error::aws("listing OIDC providers", "IAM", e))?
            .open_id_connect_provider_list
            .unwrap_or_default();
        let mut owned = Vec::new();
        for arn in list.into_iter().filter_map(|p| p.arn) {
            if self.oidc_tags(&arn).await?.is_some_and(|t| self.owns(&t)) {
                owned.push(arn);
            }
        }
        Ok(owned)
    }

    /// Deletes the OIDC provider if this module owns it.
    pub(crate) async fn delete_oidc_provider(
        &self,
        arn: &str,
        progress: &(dyn Fn(String) + Sync),
    ) -> Result<()> {
        match self.oidc_tags(arn).await? {
            Some(tags) if self.owns(&tags) => {}
            _ => return Ok(()),
        }
        progress(format!("deleting IAM OIDC provider {arn}"));
        match self
            .client
            .delete_open_id_connect_provider()
            .open_id_connect_provider_arn(arn)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(Error::aws("deleting the OIDC provider", arn, e)),
        }
    }
}

/// Workload identity with IRSA on one EKS cluster: the output side of
/// [`Eks`](crate::eks::Eks), reached with `eks_handle.workload_identity()`.
#[derive(Debug, Clone)]
pub struct EksWorkloadIdentity {
    cluster: String,
    region: String,
    account: String,
    provider_arn: Option<String>,
    issuer_host: Option<String>,
    aws: Option<AwsConfig>,
}

impl EksWorkloadIdentity {
    /// The identity of a cluster known only from a plan: it names roles but cannot create them.
    pub fn planned(cluster: impl Into<String>, region: impl Into<String>) -> Self {
        EksWorkloadIdentity {
            cluster: cluster.into(),
            region: region.into(),
            account: "(known after apply)".into(),
            provider_arn: None,
            issuer_host: None,
            aws: None,
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
            cluster: cluster.into(),
            region: region.into(),
            account: account.into(),
            provider_arn: Some(provider_arn),
            issuer_host: Some(issuer_host),
            aws: Some(aws),
        }
    }

    /// The role name of `sa` on this cluster: `<cluster>-irsa-<namespace>-<name>`, cut to 64.
    pub fn role_name(&self, sa: &ServiceAccount) -> String {
        role_name(&format!(
            "{}-irsa-{}-{}",
            self.cluster, sa.namespace, sa.name
        ))
    }

    fn role(&self, sa: &ServiceAccount, arn: String) -> WorkloadRole {
        WorkloadRole {
            id: arn.clone(),
            service_account: sa.clone(),
            annotations: BTreeMap::from([(ROLE_ARN_ANNOTATION.to_owned(), arn)]),
        }
    }

    /// The ARNs of the AWS managed policies `request` names.
    fn managed_arns(&self, request: &RoleRequest) -> Vec<String> {
        request
            .managed_policies
            .iter()
            .map(|name| format!("arn:{}:iam::aws:policy/{name}", partition(&self.region)))
            .collect()
    }

    async fn iam(&self, owner: &RoleOwner) -> Result<Iam> {
        let aws = self.aws.as_ref().ok_or_else(|| Error::Client {
            cluster: self.cluster.clone(),
            reason: "this cluster comes from an offline plan; apply the stack first".into(),
        })?;
        let sdk = aws.load().await?;
        Ok(Iam::new(aws, &sdk, &owner.stack, &owner.module))
    }

    async fn ensure(&self, owner: &RoleOwner, request: &RoleRequest) -> Result<WorkloadRole> {
        let sa = &request.service_account;
        let bad = request.policy.unscoped_statements();
        if !bad.is_empty() {
            return Err(Error::Config {
                problem: format!(
                    "the policy asked by module `{}` for {sa} has statements {bad:?} with no action, no resource, or a wildcard resource",
                    owner.module
                ),
                fix: "scope each statement to resource ARNs; use `Statement::allow_unscoped` only for actions AWS cannot scope".into(),
            });
        }
        let (Some(provider), Some(host)) = (&self.provider_arn, &self.issuer_host) else {
            return Err(Error::Client {
                cluster: self.cluster.clone(),
                reason: "the cluster has no IAM OIDC provider yet; apply its Eks module first"
                    .into(),
            });
        };
        let iam = self.iam(owner).await?;
        let arn = iam
            .ensure_role(&RoleSpec {
                name: self.role_name(sa),
                trust: irsa_trust(provider, host, sa),
                managed: self.managed_arns(request),
                // IAM refuses a policy without statements: a role of managed policies only has none
                inline: (!request.policy.statements.is_empty())
                    .then(|| policy_json(&request.policy)),
                description: "IRSA role made by devops-stack",
            })
            .await?;
        Ok(self.role(sa, arn))
    }
}

impl WorkloadIdentity for EksWorkloadIdentity {
    fn planned_role(&self, _owner: &RoleOwner, request: &RoleRequest) -> WorkloadRole {
        let sa = &request.service_account;
        let arn = format!(
            "arn:{}:iam::{}:role/{}",
            partition(&self.region),
            self.account,
            self.role_name(sa)
        );
        self.role(sa, arn)
    }

    fn planned_resource(&self, owner: &RoleOwner, request: &RoleRequest) -> Resource {
        let sa = &request.service_account;
        Resource::cloud(
            "aws",
            "iam:Role",
            self.role_name(sa),
            serde_json::json!({
                "arn": self.planned_role(owner, request).id,
                "assumed_by": format!("system:serviceaccount:{}:{} (IRSA, cluster {})", sa.namespace, sa.name, self.cluster),
                "policy": policy_json(&request.policy),
                "managed_policies": self.managed_arns(request),
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
            let iam = self.iam(owner).await?;
            iam.delete_role(&self.role_name(service_account), &|m| tracing::info!("{m}"))
                .await
                .map_err(Into::into)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use devops_stack_core::interfaces::Statement;

    #[test]
    fn names_trusts_and_policies() {
        assert_eq!(role_name("prod-eks-node"), "prod-eks-node");
        let long = role_name(&"a".repeat(100));
        assert_eq!(long.len(), 64);
        assert_ne!(long, role_name(&format!("{}b", "a".repeat(99))));
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
        let policy = policy_json(
            &PolicyDocument::new()
                .statement(Statement::allow(["s3:GetObject"], ["arn:aws:s3:::b/*"])),
        );
        assert_eq!(policy["Statement"][0]["Resource"][0], "arn:aws:s3:::b/*");
        assert_eq!(partition("cn-north-1"), "aws-cn");
    }
}
