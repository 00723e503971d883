//! IAM: the roles and the OIDC provider of an EKS cluster, and workload identity, with IRSA or
//! with EKS Pod Identity.
//!
//! Every role and OIDC provider created here carries the stack's and the module's tags; one of
//! the same name without them is never changed or deleted ([`Error::NotOwned`]).
//!
//! Both workload identities implement the core `WorkloadIdentity` interface: a module asks for
//! a role for `namespace/serviceaccount` with a typed policy, gets it at apply, and deletes it in
//! its destroy. Which one a cluster gives is chosen on its [`Eks`](crate::eks::Eks) module
//! ([`Eks::workload_identity`](crate::eks::Eks::workload_identity)); modules never see the
//! difference.
//!
//! - [`EksWorkloadIdentity`] (IRSA, the default): one role per cluster and service account,
//!   trusting exactly that service account through the cluster's OIDC provider; the module puts
//!   the returned `eks.amazonaws.com/role-arn` annotation on the ServiceAccount.
//! - [`EksPodIdentity`] (EKS Pod Identity): one role per module and service account, trusting
//!   the service `pods.eks.amazonaws.com`, shared by every cluster the module runs on; each
//!   cluster binds it to the service account with a pod identity association. The
//!   ServiceAccount carries no annotation.
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
use aws_sdk_iam::types::{Role, Tag};
use devops_stack_core::interfaces::{Effect, PolicyDocument, RoleOwner, RoleRequest};
use serde_json::{Value, json};

use crate::config::AwsConfig;
use crate::error::{Error, Result, deleted, is_not_found};
use crate::tags::{MODULE_TAG, STACK_TAG, owned_by, owner_text};

mod irsa;
mod pod_identity;

pub use irsa::{EksWorkloadIdentity, ROLE_ARN_ANNOTATION, STS_AUDIENCE};
pub use pod_identity::{EksPodIdentity, PODS_SERVICE_PRINCIPAL};

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

/// `base` in at most `max` characters (at least 10): cut, with a stable hash of the whole when
/// cut, so that two long names sharing a beginning stay apart.
pub(crate) fn cut(base: &str, max: usize) -> String {
    if base.len() <= max {
        return base.to_owned();
    }
    // FNV-1a: stable across runs and platforms.
    let hash = base.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    // the names cut here are ASCII (DNS labels, regions), so any byte is a boundary
    let keep = base.floor_char_boundary(max - 9);
    format!("{}-{:08x}", &base[..keep], hash as u32)
}

/// A role name of at most 64 characters: `base` [`cut`].
pub(crate) fn role_name(base: &str) -> String {
    cut(base, 64)
}

/// A trust policy letting `service` (`eks.amazonaws.com`) assume the role.
pub(crate) fn service_trust(service: &str) -> Value {
    json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Principal": {"Service": service},
        "Action": "sts:AssumeRole"
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

/// A role the stack manages: its name, trust, managed policies, inline policy, and tags beyond
/// the ownership ones.
pub(crate) struct RoleSpec<'a> {
    pub(crate) name: String,
    pub(crate) trust: Value,
    pub(crate) managed: Vec<String>,
    pub(crate) inline: Option<Value>,
    pub(crate) description: &'a str,
    /// Set at creation, and added to an existing role that lacks them; never removed here.
    pub(crate) tags: BTreeMap<String, String>,
}

/// Whether the policy document IAM returns (URL-encoded JSON) says what `wanted` says.
fn same_document(live: Option<&str>, wanted: &Value) -> bool {
    live.map(percent_decode)
        .and_then(|text| serde_json::from_str::<Value>(&text).ok())
        .is_some_and(|live| &live == wanted)
}

/// `%XX` escapes decoded (IAM returns policy documents URL-encoded).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The name of the inline policy of the roles made here.
const INLINE_POLICY: &str = "devops-stack";

/// An IAM tag.
fn tag(key: &str, value: &str) -> Tag {
    Tag::builder()
        .key(key)
        .value(value)
        .build()
        .expect("key and value set")
}

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
            .map(|(k, v)| tag(k, v))
            .collect()
    }

    /// The role, or `None` when it does not exist.
    async fn role(&self, name: &str) -> Result<Option<Role>> {
        match self.client.get_role().role_name(name).send().await {
            Ok(out) => Ok(out.role),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(Error::aws(
                "reading the role",
                format!("IAM role `{name}`"),
                e,
            )),
        }
    }

    /// The role's tags, or `None` when it does not exist.
    pub(crate) async fn role_tags(&self, name: &str) -> Result<Option<Vec<Tag>>> {
        Ok(self.role(name).await?.map(|r| r.tags.unwrap_or_default()))
    }

    /// Removes the tags `keys` from the role `name` (a role or tag that is gone is no error).
    pub(crate) async fn untag_role(&self, name: &str, keys: &[String]) -> Result<()> {
        deleted(
            self.client
                .untag_role()
                .role_name(name)
                .set_tag_keys(Some(keys.to_vec()))
                .send()
                .await,
            "untagging the role",
            &format!("IAM role `{name}`"),
        )
    }

    /// Whether a role `name` exists with this module's tags.
    pub(crate) async fn owns_role(&self, name: &str) -> Result<bool> {
        Ok(self.role_tags(name).await?.is_some_and(|t| self.owns(&t)))
    }

    pub(crate) fn owns(&self, tags: &[Tag]) -> bool {
        owned_by(
            tags.iter().map(|t| (t.key(), t.value())),
            &self.stack,
            &self.module,
        )
    }

    /// Creates the role, or brings this module's existing one to `spec`; returns its ARN. The
    /// trust policy of an existing role is rewritten only when it differs from `spec`'s.
    ///
    /// # Errors
    /// [`Error::NotOwned`] when a role of that name exists without this module's tags.
    pub(crate) async fn ensure_role(&self, spec: &RoleSpec<'_>) -> Result<String> {
        let what = format!("IAM role `{}`", spec.name);
        let trust = spec.trust.to_string();
        let arn = match self.role(&spec.name).await? {
            Some(role) if !self.owns(role.tags()) => {
                return Err(Error::NotOwned {
                    resource: what,
                    owner: owner_text(role.tags().iter().map(|t| (t.key(), t.value()))),
                    fix: format!(
                        "delete or rename that role, or give this module the ARN of a role to use instead of creating `{}`",
                        spec.name
                    ),
                });
            }
            Some(role) => {
                if !same_document(role.assume_role_policy_document(), &spec.trust) {
                    self.client
                        .update_assume_role_policy()
                        .role_name(&spec.name)
                        .policy_document(&trust)
                        .send()
                        .await
                        .map_err(|e| Error::aws("updating the role's trust policy", &what, e))?;
                }
                let missing: Vec<Tag> = spec
                    .tags
                    .iter()
                    .filter(|(k, v)| {
                        !role
                            .tags()
                            .iter()
                            .any(|t| t.key() == k.as_str() && t.value() == v.as_str())
                    })
                    .map(|(k, v)| tag(k, v))
                    .collect();
                if !missing.is_empty() {
                    self.client
                        .tag_role()
                        .role_name(&spec.name)
                        .set_tags(Some(missing))
                        .send()
                        .await
                        .map_err(|e| Error::aws("tagging the role", &what, e))?;
                }
                role.arn
            }
            None => self
                .client
                .create_role()
                .role_name(&spec.name)
                .assume_role_policy_document(&trust)
                .description(spec.description)
                .set_tags(Some(
                    self.tags()
                        .into_iter()
                        .chain(spec.tags.iter().map(|(k, v)| tag(k, v)))
                        .collect(),
                ))
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

/// What both workload identities know of their cluster: its name, region and account, and how
/// to reach AWS (`None` for a cluster known only from a plan, which names roles but cannot make
/// them).
#[derive(Debug, Clone)]
pub(crate) struct IdentityCluster {
    pub(crate) name: String,
    pub(crate) region: String,
    pub(crate) account: String,
    pub(crate) aws: Option<AwsConfig>,
}

impl IdentityCluster {
    /// A cluster of a plan: its account is not known yet.
    pub(crate) fn planned(name: String, region: String) -> Self {
        IdentityCluster {
            name,
            region,
            account: "(known after apply)".into(),
            aws: None,
        }
    }

    /// The ARN of the role `name` in the cluster's account.
    pub(crate) fn role_arn(&self, name: &str) -> String {
        format!(
            "arn:{}:iam::{}:role/{name}",
            partition(&self.region),
            self.account
        )
    }

    /// The ARNs of the AWS managed policies `request` names.
    pub(crate) fn managed_arns(&self, request: &RoleRequest) -> Vec<String> {
        request
            .managed_policies
            .iter()
            .map(|name| format!("arn:{}:iam::aws:policy/{name}", partition(&self.region)))
            .collect()
    }

    /// The role `request` describes, named `name`, trusting what `trust` says.
    pub(crate) fn role_spec<'a>(
        &self,
        request: &RoleRequest,
        name: String,
        trust: Value,
        description: &'a str,
        tags: BTreeMap<String, String>,
    ) -> RoleSpec<'a> {
        RoleSpec {
            name,
            trust,
            managed: self.managed_arns(request),
            // IAM refuses a policy without statements: a role of managed policies only has none
            inline: (!request.policy.statements.is_empty()).then(|| policy_json(&request.policy)),
            description,
            tags,
        }
    }

    /// Refuses a policy with a wildcard resource not said on purpose, or an empty statement.
    pub(crate) fn check_policy(owner: &RoleOwner, request: &RoleRequest) -> Result<()> {
        let bad = request.policy.unscoped_statements();
        if bad.is_empty() {
            return Ok(());
        }
        Err(Error::Config {
            problem: format!(
                "the policy asked by module `{}` for {} has statements {bad:?} with no action, no resource, or a wildcard resource",
                owner.module, request.service_account
            ),
            fix: "scope each statement to resource ARNs; use `Statement::allow_unscoped` only for actions AWS cannot scope".into(),
        })
    }

    /// The AWS configuration and the loaded SDK configuration.
    ///
    /// # Errors
    /// [`Error::Client`] for a cluster of a plan.
    pub(crate) async fn sdk(&self) -> Result<(&AwsConfig, aws_config::SdkConfig)> {
        let aws = self.aws.as_ref().ok_or_else(|| Error::Client {
            cluster: self.name.clone(),
            reason: "this cluster comes from an offline plan; apply the stack first".into(),
        })?;
        Ok((aws, aws.load().await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use devops_stack_core::interfaces::Statement;

    #[test]
    fn names_documents_and_policies() {
        assert_eq!(role_name("prod-eks-node"), "prod-eks-node");
        let long = role_name(&"a".repeat(100));
        assert_eq!(long.len(), 64);
        assert_ne!(long, role_name(&format!("{}b", "a".repeat(99))));
        assert_eq!(cut(&"a".repeat(200), 128).len(), 128);
        let policy = policy_json(
            &PolicyDocument::new()
                .statement(Statement::allow(["s3:GetObject"], ["arn:aws:s3:::b/*"])),
        );
        assert_eq!(policy["Statement"][0]["Resource"][0], "arn:aws:s3:::b/*");
        assert_eq!(partition("cn-north-1"), "aws-cn");
        // IAM returns documents URL-encoded; spacing and key order do not make them differ
        let trust = service_trust("eks.amazonaws.com");
        let encoded = "%7B%22Statement%22%3A%20%5B%7B%22Action%22%3A%22sts%3AAssumeRole%22%2C%22Effect%22%3A%22Allow%22%2C%22Principal%22%3A%7B%22Service%22%3A%22eks.amazonaws.com%22%7D%7D%5D%2C%22Version%22%3A%222012-10-17%22%7D";
        assert!(same_document(Some(encoded), &trust));
        assert!(same_document(Some(&trust.to_string()), &trust));
        assert!(!same_document(
            Some(encoded),
            &service_trust("ec2.amazonaws.com")
        ));
        assert!(!same_document(None, &trust));
        assert_eq!(percent_decode("100%"), "100%");
    }
}
