//! The [`HostedZone`] module: the user's Route 53 hosted zone of the stack's base domain, looked
//! up (never created or deleted), for cert-manager's DNS-01 challenges and the records modules
//! own (the ingress's wildcard record).
//!
//! | Input | Default |
//! |---|---|
//! | id, domain (`lookup`) | required |
//! | [`HostedZone::private`] | `false`: the public zone |
//! | [`HostedZone::aws`], [`HostedZone::region`], [`HostedZone::endpoint_url`] | the SDK's chain |
//!
//! Output: [`Route53Zone`], which implements
//! [`DnsZoneProvider`]: `handle.dns_zone()` gives a component the [`DnsZone`] (cert-manager's
//! Route 53 solver block, [`dns01_solver`]; the policy its service account needs; and the
//! records, which show in a plan as `aws route53:RecordSet <name>`).
//!
//! **Preflight** (before any module of the stack is applied) looks the zone up with
//! `ListHostedZonesByName`: a missing zone is [`Error::HostedZoneNotFound`] naming the domain,
//! two zones of the kind asked are [`Error::AmbiguousHostedZone`] naming both; either stops the
//! apply before anything is created. Apply looks it up again and outputs it; destroy deletes
//! nothing (the zone is the user's; records are deleted by the modules that created them). A
//! zone deleted by hand still reads as an output before a destroy (its records' deletion
//! succeeds), so that cert-manager and the ingress controller are destroyed all the same.
//!
//! **Records** ([`Route53Records`]) carry no tags, so each record a module creates has an
//! ownership TXT record beside it, at [`owner_record_name`] (`_devops-stack-owner.<name>`, with a
//! leading `*` spelled `_wildcard`), holding `"devops-stack/stack=<s>,module=<m>,type=CNAME"`. A
//! record without that TXT, or whose TXT names another owner, is never changed or deleted
//! ([`Error::NotOwned`]). Both are changed in one change batch, so they never part.
//!
//! ```
//! use devops_stack_aws::route53::HostedZone;
//! use devops_stack_core::Stack;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let mut stack = Stack::new("prod");
//! let zone = stack.add(HostedZone::lookup("zone", "example.com").region("eu-west-1"));
//! let _zone = zone.dns_zone(); // an Input<DnsZone> for cert-manager and the ingress
//!
//! // Planning is offline: the zone id is known after apply.
//! let plan = stack.build()?.plan().await?;
//! assert!(plan.to_text().contains("aws route53:HostedZone example.com"));
//! # Ok::<_, devops_stack_core::Error>(())
//! # }).unwrap();
//! ```

mod records;

use std::sync::Arc;

use aws_sdk_route53::Client;
use devops_stack_core::interfaces::{
    Dns01Solver, DnsZone, DnsZoneProvider, PolicyDocument, Statement,
};
use devops_stack_core::plan::unknown;
use devops_stack_core::{Context, Module, ModuleResult, Planned, Resource, Validation};
use serde::Serialize;
use serde_json::json;

use crate::config::{AwsConfig, region_of};
use crate::error::{Error, Result};
pub use records::{Route53Records, owner_marker, owner_record_name};

/// A Route 53 hosted zone the stack uses and never creates or deletes.
///
/// ```
/// use devops_stack_aws::route53::HostedZone;
/// let zone = HostedZone::lookup("zone", "example.com").private(true).region("eu-west-1");
/// # let _ = zone;
/// ```
#[derive(Debug, Clone)]
pub struct HostedZone {
    id: String,
    domain: String,
    private: bool,
    aws: AwsConfig,
}

/// The hosted zone found: what the [`HostedZone`] module outputs.
#[derive(Debug, Clone, Serialize)]
pub struct Route53Zone {
    /// The zone's domain, without the trailing dot.
    pub domain: String,
    /// The zone's id, without the `/hostedzone/` prefix (`Z0123456789ABCDEFGHIJ`).
    pub hosted_zone_id: String,
    /// The region the SDK calls use (Route 53 itself is global).
    pub region: String,
    /// Whether it is a private zone.
    pub private: bool,
    #[serde(skip)]
    records: Arc<Route53Records>,
}

impl Route53Zone {
    /// The zone's records, to create and delete the ones a module owns.
    pub fn records(&self) -> Arc<Route53Records> {
        self.records.clone()
    }
}

impl DnsZoneProvider for Route53Zone {
    fn dns_zone(&self) -> DnsZone {
        DnsZone {
            domain: self.domain.clone(),
            solver: dns01_solver(&self.region, &self.hosted_zone_id),
            change_policy: change_policy(&self.region, &self.hosted_zone_id),
            records: self.records.clone(),
        }
    }
}

/// cert-manager's Route 53 DNS-01 solver for zone `hosted_zone_id`: its `dns01.route53` block,
/// `{region, hostedZoneID}`. The credentials are the workload role's (IRSA), so the block names
/// none.
///
/// ```
/// let solver = devops_stack_aws::route53::dns01_solver("eu-west-1", "Z123");
/// assert_eq!(
///     solver.cert_manager_dns01(),
///     serde_json::json!({"route53": {"region": "eu-west-1", "hostedZoneID": "Z123"}})
/// );
/// ```
pub fn dns01_solver(region: &str, hosted_zone_id: &str) -> Dns01Solver {
    Dns01Solver::new(
        "route53",
        json!({"region": region, "hostedZoneID": hosted_zone_id}),
    )
}

/// What cert-manager's Route 53 DNS-01 solver needs in zone `hosted_zone_id`, and nothing more:
/// change and list the records of that zone only, read the status of its changes, and find the
/// zone by name (an action AWS cannot scope to a zone).
///
/// ```
/// let policy = devops_stack_aws::route53::change_policy("eu-west-1", "Z123");
/// assert_eq!(policy.statements[0].resources, ["arn:aws:route53:::hostedzone/Z123"]);
/// assert_eq!(policy.unscoped_statements(), Vec::<usize>::new());
/// ```
pub fn change_policy(region: &str, hosted_zone_id: &str) -> PolicyDocument {
    let partition = crate::iam::partition(region);
    PolicyDocument::new()
        .statement(Statement::allow(
            [
                "route53:ChangeResourceRecordSets",
                "route53:ListResourceRecordSets",
            ],
            [format!(
                "arn:{partition}:route53:::hostedzone/{hosted_zone_id}"
            )],
        ))
        .statement(Statement::allow(
            ["route53:GetChange"],
            [format!("arn:{partition}:route53:::change/*")],
        ))
        .statement(Statement::allow_unscoped(["route53:ListHostedZonesByName"]))
}

/// `name` as Route 53 spells it back, made comparable: lowercase, no trailing dot, `\052` as `*`.
pub(crate) fn normalize(name: &str) -> String {
    name.trim_end_matches('.')
        .replace("\\052", "*")
        .to_ascii_lowercase()
}

/// The id of the one zone of `domain` (public or private as asked).
///
/// # Errors
/// [`Error::HostedZoneNotFound`], [`Error::AmbiguousHostedZone`], or the call's error.
pub(crate) async fn find_zone(client: &Client, domain: &str, private: bool) -> Result<String> {
    let wanted = normalize(domain);
    let mut ids = Vec::new();
    let mut next: Option<(String, Option<String>)> = None;
    loop {
        let mut request = client
            .list_hosted_zones_by_name()
            .dns_name(format!("{wanted}."))
            .max_items(100);
        if let Some((name, id)) = next.take() {
            request = request.dns_name(name).set_hosted_zone_id(id);
        }
        let out = request.send().await.map_err(|e| {
            Error::aws(
                "looking up the hosted zone",
                format!("Route 53 zone `{wanted}`"),
                e,
            )
        })?;
        // Zones come in name order from the one asked: stop at the first other name.
        let mut passed = false;
        for zone in out.hosted_zones() {
            if normalize(zone.name()) != wanted {
                passed = true;
                break;
            }
            if zone.config().is_some_and(|c| c.private_zone()) == private {
                ids.push(zone.id().trim_start_matches("/hostedzone/").to_owned());
            }
        }
        match out.next_dns_name() {
            Some(name) if out.is_truncated() && !passed && normalize(name) == wanted => {
                next = Some((
                    name.to_owned(),
                    out.next_hosted_zone_id().map(ToOwned::to_owned),
                ));
            }
            _ => break,
        }
    }
    match ids.len() {
        0 => Err(Error::HostedZoneNotFound {
            domain: wanted,
            private,
        }),
        1 => Ok(ids.remove(0)),
        _ => Err(Error::AmbiguousHostedZone {
            domain: wanted,
            private,
            ids,
        }),
    }
}

crate::config::aws_setters!(HostedZone);

impl HostedZone {
    /// The existing hosted zone of `domain` (the stack's base domain, like `example.com`).
    pub fn lookup(id: impl Into<String>, domain: impl Into<String>) -> Self {
        HostedZone {
            id: id.into(),
            domain: domain.into(),
            private: false,
            aws: AwsConfig::new(),
        }
    }

    /// A private zone (associated with VPCs) instead of the public one (default `false`).
    #[must_use]
    pub fn private(mut self, private: bool) -> Self {
        self.private = private;
        self
    }

    fn domain(&self) -> String {
        normalize(&self.domain)
    }

    /// Looks the zone up and returns it.
    ///
    /// # Errors
    /// [`Error::HostedZoneNotFound`], [`Error::AmbiguousHostedZone`], configuration and call
    /// errors.
    async fn find(&self) -> Result<Route53Zone> {
        let sdk = self.aws.load().await?;
        let client = self.aws.route53_client(&sdk);
        let id = find_zone(&client, &self.domain, self.private).await?;
        let domain = self.domain();
        Ok(Route53Zone {
            records: Arc::new(Route53Records::live(&domain, &id, self.aws.clone())),
            domain,
            hosted_zone_id: id,
            region: region_of(&sdk),
            private: self.private,
        })
    }
}

impl Module for HostedZone {
    type Output = Route53Zone;

    fn id(&self) -> &str {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "route53-zone"
    }

    fn validate(&self, v: &mut Validation) {
        v.check(
            "domain",
            devops_stack_core::validate::base_domain(&self.domain()),
            "give the domain of an existing Route 53 hosted zone, like `example.com`",
        );
    }

    async fn plan(&self, ctx: &Context) -> ModuleResult<Planned<Route53Zone>> {
        let id = ctx.module_id();
        let domain = self.domain();
        let region = self
            .aws
            .region_name()
            .map_or_else(|| unknown(id, "region"), ToOwned::to_owned);
        let hosted_zone_id = unknown(id, "hosted_zone_id");
        let output = Route53Zone {
            records: Arc::new(Route53Records::planned(&domain, &hosted_zone_id)),
            domain: domain.clone(),
            hosted_zone_id,
            region,
            private: self.private,
        };
        let resource = Resource::cloud(
            "aws",
            "route53:HostedZone",
            &domain,
            json!({
                "lookup": true,
                "created": false,
                "private": self.private,
                "aws": self.aws.plan_properties(),
            }),
        );
        Ok(Planned::new(output).with_resources([resource]))
    }

    async fn preflight(&self, ctx: &Context) -> ModuleResult<()> {
        let zone = self.find().await?;
        ctx.progress(format!(
            "Route 53 zone `{}` is {}",
            zone.domain, zone.hosted_zone_id
        ));
        Ok(())
    }

    async fn apply(&self, _ctx: &Context) -> ModuleResult<Route53Zone> {
        Ok(self.find().await?)
    }

    /// The zone, looked up; one that is gone is still an output (with records that cannot be
    /// created, and whose deletion succeeds), never `None`: `None` would mark the modules that
    /// depend on it as gone, and cert-manager or the ingress controller do not go with a zone.
    async fn read(&self, _ctx: &Context) -> ModuleResult<Option<Route53Zone>> {
        match self.find().await {
            Ok(zone) => Ok(Some(zone)),
            Err(Error::HostedZoneNotFound { .. }) => {
                let sdk = self.aws.load().await?;
                let domain = self.domain();
                Ok(Some(Route53Zone {
                    records: Arc::new(Route53Records::gone(&domain, self.private)),
                    domain,
                    hosted_zone_id: records::GONE_ZONE_ID.into(),
                    region: region_of(&sdk),
                    private: self.private,
                }))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The zone is the user's and stays. The modules using it delete their records before it
    /// is destroyed (they depend on it); what a module left (its destroy was skipped, as with
    /// an abandoned cluster) is deleted here: every record whose ownership TXT names this stack.
    async fn destroy(&self, ctx: &Context) -> ModuleResult<()> {
        match self.find().await {
            Ok(zone) => {
                for name in zone.records().delete_all_of_stack(ctx.stack_name()).await? {
                    ctx.progress(format!("deleted the record `{name}` the stack left"));
                }
            }
            Err(Error::HostedZoneNotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        ctx.progress(format!(
            "Route 53 zone `{}` is the user's: left as it is",
            self.domain()
        ));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_compared_as_route53_spells_them() {
        assert_eq!(normalize("\\052.Apps.Example.com."), "*.apps.example.com");
        let policy = change_policy("us-gov-west-1", "Z1");
        assert_eq!(
            policy.statements[0].resources,
            ["arn:aws-us-gov:route53:::hostedzone/Z1"]
        );
        assert!(policy.statements[2].unscoped);
    }
}
