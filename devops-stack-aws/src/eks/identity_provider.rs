//! [`EksOidcIdentityProvider`]: makes an EKS cluster trust the stack's OIDC provider, so that
//! the groups of its tokens are Kubernetes groups and a team's RoleBindings to them work.

use aws_sdk_eks::types::{
    ConfigStatus, IdentityProviderConfig, OidcIdentityProviderConfig,
    OidcIdentityProviderConfigRequest,
};
use devops_stack_core::interfaces::{ClusterOidc, Oidc};
use devops_stack_core::{
    Context, Handle, Input, Module, ModuleResult, Needs, Planned, Resource, Validation,
};
use serde_json::json;

use super::EksCluster;
use crate::error::{Error, Result, is_not_found};
use crate::tags::{owned_by, ownership};
use crate::wait::{Backoff, Polling};

/// The identity provider config's type, as EKS names it.
const OIDC: &str = "oidc";

/// Associates the stack's OIDC provider with an EKS cluster as an identity provider
/// (`AssociateIdentityProviderConfig`), so that the API server authenticates its tokens: a
/// token's groups become the Kubernetes groups `<groups prefix><group>`, which a team's
/// RoleBindings name when the team is given this module's output
/// (`Team::cluster_oidc(&handle)`).
///
/// | Input | Default |
/// |---|---|
/// | the cluster and the OIDC settings of the provider's client (`new`) | required: `cognito.oidc("kubernetes")`, a client added with `OidcClient::kubernetes()` |
/// | [`name`](Self::name) | `devops-stack` |
/// | [`username_claim`](Self::username_claim) | `email` |
/// | [`username_prefix`](Self::username_prefix), [`groups_prefix`](Self::groups_prefix) | `oidc:` (never empty: a provider's group could otherwise name one of Kubernetes' own, like `system:masters`) |
///
/// The groups claim is the provider's (`cognito:groups`, `groups`) unless
/// [`groups_claim`](Self::groups_claim) says otherwise; an empty claim or prefix is an error of
/// the stack's build (a provider's empty claim is refused before any AWS call). Output:
/// [`ClusterOidc`].
///
/// The config carries the stack's ownership tags. Apply creates it when missing and waits until
/// EKS reports it `ACTIVE` (EKS takes several minutes); a config of that name with other
/// settings fails with `ReplacementRequired` (EKS cannot update one in place), and one without
/// the module's tags with `NotOwned`: neither is touched. Destroy disassociates only the
/// module's own config and waits until it is gone.
///
/// ```
/// use devops_stack_aws::cognito::Cognito;
/// use devops_stack_aws::eks::{Eks, EksOidcIdentityProvider};
/// use devops_stack_core::Stack;
/// use devops_stack_core::interfaces::{Hostnames, OidcClient};
/// let mut stack = Stack::new("prod");
/// let eks = stack.add(Eks::new("eks", "prod", "example.com").subnets(["subnet-a", "subnet-b"]));
/// let cognito = stack.add(
///     Cognito::new("cognito", Hostnames::new("prod", "example.com")).client(OidcClient::kubernetes()),
/// );
/// let trust = stack.add(EksOidcIdentityProvider::new(&eks, cognito.oidc("kubernetes")));
/// // a team given `&trust` (`Team::cluster_oidc`) binds its groups as `oidc:<group>`
/// assert!(stack.build().is_ok());
/// ```
#[derive(Debug, Clone)]
pub struct EksOidcIdentityProvider {
    id: String,
    cluster: Input<EksCluster>,
    oidc: Input<Oidc>,
    name: String,
    username_claim: String,
    username_prefix: String,
    groups_claim: Option<String>,
    groups_prefix: String,
    polling: Polling,
}

impl EksOidcIdentityProvider {
    /// Makes `cluster` trust the provider whose client `oidc` is (its issuer and client id),
    /// with the module id `eks-oidc-identity-provider`.
    pub fn new(cluster: &Handle<EksCluster>, oidc: Input<Oidc>) -> Self {
        EksOidcIdentityProvider {
            id: "eks-oidc-identity-provider".into(),
            cluster: cluster.input(),
            oidc,
            name: "devops-stack".into(),
            username_claim: "email".into(),
            username_prefix: "oidc:".into(),
            groups_claim: None,
            groups_prefix: "oidc:".into(),
            polling: Polling::default(),
        }
    }

    /// Another module id.
    #[must_use]
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// The identity provider config's name (default `devops-stack`).
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The claim of user names (default `email`).
    #[must_use]
    pub fn username_claim(mut self, claim: impl Into<String>) -> Self {
        self.username_claim = claim.into();
        self
    }

    /// The prefix of user names (default `oidc:`).
    #[must_use]
    pub fn username_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.username_prefix = prefix.into();
        self
    }

    /// The claim of the user's groups (default: the provider's, `cognito:groups` or `groups`).
    #[must_use]
    pub fn groups_claim(mut self, claim: impl Into<String>) -> Self {
        self.groups_claim = Some(claim.into());
        self
    }

    /// The prefix of group names (default `oidc:`).
    #[must_use]
    pub fn groups_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.groups_prefix = prefix.into();
        self
    }

    /// How to wait for EKS (default: [`Polling::default`]).
    #[must_use]
    pub fn polling(mut self, polling: Polling) -> Self {
        self.polling = polling;
        self
    }

    fn wanted(&self, oidc: &Oidc) -> ClusterOidc {
        ClusterOidc {
            issuer_url: oidc.issuer_url.clone(),
            client_id: oidc.client_id.clone(),
            username_claim: self.username_claim.clone(),
            username_prefix: self.username_prefix.clone(),
            groups_claim: self
                .groups_claim
                .clone()
                .unwrap_or_else(|| oidc.groups_claim.clone()),
            groups_prefix: self.groups_prefix.clone(),
        }
    }

    /// The config, as EKS names it in describe and disassociate calls.
    fn config_ref(&self) -> IdentityProviderConfig {
        IdentityProviderConfig::builder()
            .r#type(OIDC)
            .name(&self.name)
            .build()
            .expect("type and name are set")
    }

    fn resource(&self, cluster: &str) -> String {
        format!(
            "OIDC identity provider config `{}` of EKS cluster `{cluster}`",
            self.name
        )
    }

    async fn client(&self, cluster: &EksCluster) -> Result<aws_sdk_eks::Client> {
        let aws = cluster.aws.as_ref().ok_or_else(|| Error::Client {
            cluster: cluster.name.clone(),
            reason: "this cluster comes from an offline plan; apply the stack first".into(),
        })?;
        let sdk = aws.load().await?;
        Ok(aws.eks_client(&sdk))
    }

    async fn describe(
        &self,
        eks: &aws_sdk_eks::Client,
        cluster: &str,
    ) -> Result<Option<OidcIdentityProviderConfig>> {
        match eks
            .describe_identity_provider_config()
            .cluster_name(cluster)
            .identity_provider_config(self.config_ref())
            .send()
            .await
        {
            Ok(out) => Ok(out.identity_provider_config.and_then(|c| c.oidc)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(Error::aws(
                "describing the identity provider config",
                self.resource(cluster),
                e,
            )),
        }
    }

    /// The fields of the live config that differ from `wanted`, as `field: live -> wanted`.
    fn differences(live: &OidcIdentityProviderConfig, wanted: &ClusterOidc) -> Vec<String> {
        let fields = [
            ("issuer_url", live.issuer_url(), &wanted.issuer_url),
            ("client_id", live.client_id(), &wanted.client_id),
            (
                "username_claim",
                live.username_claim(),
                &wanted.username_claim,
            ),
            (
                "username_prefix",
                live.username_prefix(),
                &wanted.username_prefix,
            ),
            ("groups_claim", live.groups_claim(), &wanted.groups_claim),
            ("groups_prefix", live.groups_prefix(), &wanted.groups_prefix),
        ];
        fields
            .into_iter()
            .filter(|(_, live, wanted)| live.unwrap_or_default() != wanted.as_str())
            .map(|(field, live, wanted)| format!("{field}: {} -> {wanted}", live.unwrap_or("none")))
            .collect()
    }

    fn owned(live: &OidcIdentityProviderConfig, ctx: &Context) -> bool {
        live.tags().is_some_and(|t| {
            owned_by(
                t.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                ctx.stack_name(),
                ctx.module_id(),
            )
        })
    }

    async fn associate(
        &self,
        eks: &aws_sdk_eks::Client,
        ctx: &Context,
        cluster: &str,
        wanted: &ClusterOidc,
    ) -> Result<()> {
        let resource = self.resource(cluster);
        ctx.progress(format!("associating {resource}"));
        eks.associate_identity_provider_config()
            .cluster_name(cluster)
            .oidc(
                OidcIdentityProviderConfigRequest::builder()
                    .identity_provider_config_name(&self.name)
                    .issuer_url(&wanted.issuer_url)
                    .client_id(&wanted.client_id)
                    .username_claim(&wanted.username_claim)
                    .username_prefix(&wanted.username_prefix)
                    .groups_claim(&wanted.groups_claim)
                    .groups_prefix(&wanted.groups_prefix)
                    .build()
                    .expect("the required fields are set"),
            )
            .set_tags(Some(
                ownership(ctx.stack_name(), ctx.module_id())
                    .into_iter()
                    .collect(),
            ))
            .send()
            .await
            .map_err(|e| Error::aws("associating the identity provider config", &resource, e))?;
        Ok(())
    }
}

impl Module for EksOidcIdentityProvider {
    type Output = ClusterOidc;

    fn id(&self) -> &str {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "eks-oidc-identity-provider"
    }

    fn needs(&self, n: &mut Needs) {
        n.add(&self.cluster).add(&self.oidc);
    }

    fn validate(&self, v: &mut Validation) {
        v.check(
            "name",
            super::check_cluster_name(&self.name),
            "use 1-100 letters, digits, `-` or `_`, starting with a letter or digit",
        );
        for (field, value, fix) in [
            (
                "username_claim",
                &self.username_claim,
                "name the claim of user names, like `email` or `sub`",
            ),
            (
                "username_prefix",
                &self.username_prefix,
                "keep the default `oidc:` or give another prefix, so that no OIDC user can be named like a Kubernetes one",
            ),
            (
                "groups_prefix",
                &self.groups_prefix,
                "keep the default `oidc:` or give another prefix, so that no OIDC group can be named like a Kubernetes one (`system:masters`)",
            ),
        ]
        .into_iter()
        .chain(self.groups_claim.as_ref().map(|c| {
            (
                "groups_claim",
                c,
                "name the claim of the provider's tokens that lists the user's groups, or leave the provider's",
            )
        })) {
            if value.trim().is_empty() {
                v.error(field, "is empty", fix);
            } else if value.starts_with("system:") {
                v.error(field, format!("`{value}` is Kubernetes' own prefix"), fix);
            }
        }
    }

    async fn plan(&self, ctx: &Context) -> ModuleResult<Planned<ClusterOidc>> {
        let cluster = ctx.get(&self.cluster)?;
        let oidc = ctx.get(&self.oidc)?;
        let wanted = self.wanted(&oidc);
        if wanted.groups_claim.trim().is_empty() {
            return Err(Error::Config {
                problem: format!(
                    "the OIDC provider's client `{}` names no groups claim",
                    wanted.client_id
                ),
                fix: "give the provider's groups claim (`groups`, `cognito:groups`)".into(),
            }
            .into());
        }
        let resource = Resource::cloud(
            "aws",
            "eks:IdentityProviderConfig",
            format!("{}/{}", cluster.name, self.name),
            json!({
                "type": OIDC,
                "issuer_url": wanted.issuer_url,
                "client_id": wanted.client_id,
                "username_claim": wanted.username_claim,
                "username_prefix": wanted.username_prefix,
                "groups_claim": wanted.groups_claim,
                "groups_prefix": wanted.groups_prefix,
                "tags": ownership(ctx.stack_name(), ctx.module_id()),
            }),
        );
        Ok(Planned::new(wanted).with_resources([resource]))
    }

    async fn apply(&self, ctx: &Context) -> ModuleResult<ClusterOidc> {
        let cluster = ctx.get(&self.cluster)?;
        let oidc = ctx.get(&self.oidc)?;
        let wanted = self.wanted(&oidc);
        let eks = self.client(&cluster).await?;
        let resource = self.resource(&cluster.name);
        if let Some(live) = self.describe(&eks, &cluster.name).await? {
            if !Self::owned(&live, ctx) {
                return Err(Error::NotOwned {
                    resource,
                    owner: crate::tags::owner_text(
                        live.tags()
                            .into_iter()
                            .flatten()
                            .map(|(k, v)| (k.as_str(), v.as_str())),
                    ),
                    fix: "give the module another `name`, or remove that config from the cluster"
                        .into(),
                }
                .into());
            }
            let fields = Self::differences(&live, &wanted);
            if !fields.is_empty() {
                return Err(Error::ReplacementRequired { resource, fields }.into());
            }
        } else {
            self.associate(&eks, ctx, &cluster.name, &wanted).await?;
        }
        let mut backoff = Backoff::new(ctx, &self.polling, &resource, "ACTIVE");
        loop {
            let status = self
                .describe(&eks, &cluster.name)
                .await?
                .and_then(|c| c.status().cloned());
            match status {
                Some(ConfigStatus::Active) => break,
                Some(s) => backoff.pause(s.as_str()).await?,
                None => backoff.pause("not found").await?,
            }
        }
        Ok(wanted)
    }

    async fn read(&self, ctx: &Context) -> ModuleResult<Option<ClusterOidc>> {
        let cluster = ctx.get(&self.cluster)?;
        let oidc = ctx.get(&self.oidc)?;
        let eks = self.client(&cluster).await?;
        Ok(self
            .describe(&eks, &cluster.name)
            .await?
            .filter(|live| Self::owned(live, ctx))
            .map(|_| self.wanted(&oidc)))
    }

    async fn destroy(&self, ctx: &Context) -> ModuleResult<()> {
        let cluster = ctx.get(&self.cluster)?;
        let eks = self.client(&cluster).await?;
        let resource = self.resource(&cluster.name);
        match self.describe(&eks, &cluster.name).await? {
            Some(live) if Self::owned(&live, ctx) => {}
            // Gone, or not the module's: nothing of ours to remove.
            _ => return Ok(()),
        }
        ctx.progress(format!("disassociating {resource}"));
        match eks
            .disassociate_identity_provider_config()
            .cluster_name(&cluster.name)
            .identity_provider_config(self.config_ref())
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) => {
                return Err(Error::aws(
                    "disassociating the identity provider config",
                    &resource,
                    e,
                )
                .into());
            }
        }
        let mut backoff = Backoff::new(ctx, &self.polling, &resource, "gone");
        while let Some(live) = self.describe(&eks, &cluster.name).await? {
            let status = live.status().map_or("present", ConfigStatus::as_str);
            backoff.pause(status).await?;
        }
        Ok(())
    }
}
