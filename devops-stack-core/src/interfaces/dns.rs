//! DNS: a hosted zone of the stack's base domain, for ACME DNS-01 challenges and for the record
//! that points the stack's hostnames at the ingress load balancer.
//!
//! A zone module (Route 53 in `devops-stack-aws`) outputs a [`DnsZone`]: the zone, how
//! cert-manager solves DNS-01 in it ([`Dns01Solver`]), the policy a workload needs to change its
//! records, and [`DnsRecords`], through which a module creates and deletes the records it owns
//! and which says how they show in an offline plan. Records carry no tags, so an implementation
//! keeps ownership beside them (a TXT record) and never changes or deletes a record it did not
//! create.
//!
//! Nothing here names a cloud: the zone's provider writes cert-manager's solver block and its
//! records' plan resources, so a second cloud touches neither core nor the components.
//!
//! ```
//! use devops_stack_core::interfaces::{Dns01Solver, DnsRecord, RecordKind};
//! let record = DnsRecord::cname("*.apps.prod.example.com", "nlb-1.elb.eu-west-1.amazonaws.com");
//! assert_eq!(record.kind, RecordKind::Cname);
//! assert_eq!(record.ttl, 300);
//!
//! let solver = Dns01Solver::new("cloudDNS", serde_json::json!({"project": "prod-dns"}));
//! assert_eq!(solver.cert_manager_dns01(), serde_json::json!({"cloudDNS": {"project": "prod-dns"}}));
//! ```

use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::Serialize;
use serde_json::Value;

use super::{PolicyDocument, RoleOwner};
use crate::error::BoxError;
use crate::plan::Resource;

/// How cert-manager solves an ACME DNS-01 challenge in a zone: one provider block of its
/// `dns01` solver, written by the zone's provider. Components embed it as given and never look
/// inside, so a new cloud's zone needs no change to them.
///
/// ```
/// use devops_stack_core::interfaces::Dns01Solver;
/// use serde_json::json;
/// let solver = Dns01Solver::new("route53", json!({"region": "eu-west-1", "hostedZoneID": "Z1"}));
/// assert_eq!(solver.provider, "route53");
/// assert_eq!(solver.cert_manager_dns01()["route53"]["hostedZoneID"], "Z1");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dns01Solver {
    /// cert-manager's name of the provider, the key of its block under `dns01` (`route53`,
    /// `cloudDNS`, `azureDNS`...).
    pub provider: String,
    /// The provider's block, as cert-manager's `dns01.<provider>` takes it. It names the zone
    /// and, where the provider needs one, a Secret by reference: never a secret value.
    pub config: Value,
}

impl Dns01Solver {
    /// The solver of cert-manager provider `provider`, configured by `config`.
    pub fn new(provider: impl Into<String>, config: Value) -> Self {
        Dns01Solver {
            provider: provider.into(),
            config,
        }
    }

    /// cert-manager's `dns01` block: `{"<provider>": <config>}`.
    pub fn cert_manager_dns01(&self) -> Value {
        let mut block = serde_json::Map::new();
        block.insert(self.provider.clone(), self.config.clone());
        Value::Object(block)
    }
}

/// The type of a DNS record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
#[non_exhaustive]
pub enum RecordKind {
    /// A name pointing at another name (a load balancer's hostname).
    Cname,
}

/// A DNS record a module owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsRecord {
    /// The fully qualified name, without the trailing dot (`*.apps.prod.example.com`).
    pub name: String,
    /// Its type.
    pub kind: RecordKind,
    /// What it points to.
    pub target: String,
    /// Its time to live, in seconds.
    pub ttl: u32,
}

impl DnsRecord {
    /// A CNAME record `name` → `target`, with a TTL of 300 s.
    pub fn cname(name: impl Into<String>, target: impl Into<String>) -> Self {
        DnsRecord {
            name: name.into(),
            kind: RecordKind::Cname,
            target: target.into(),
            ttl: 300,
        }
    }
}

/// The records of a zone, as a module changes them. Every call is idempotent.
pub trait DnsRecords: Send + Sync + fmt::Debug + 'static {
    /// Creates `record`, or brings the one `owner` created to it. A record of the same name and
    /// type that `owner` did not create is an error naming its owner, never changed.
    fn ensure_record<'a>(
        &'a self,
        owner: &'a RoleOwner,
        record: &'a DnsRecord,
    ) -> BoxFuture<'a, Result<(), BoxError>>;

    /// Deletes the record `name` of `kind` if `owner` created it; anything else is left alone.
    /// Deleting a record that does not exist succeeds.
    fn delete_record<'a>(
        &'a self,
        owner: &'a RoleOwner,
        name: &'a str,
        kind: RecordKind,
    ) -> BoxFuture<'a, Result<(), BoxError>>;

    /// `record` as a resource of the offline plan, named as this provider names it (Route 53:
    /// `aws route53:RecordSet <name>`, with the zone's id among its properties).
    fn planned_record(&self, record: &DnsRecord) -> Resource;
}

/// A hosted DNS zone the stack may write to.
#[derive(Clone, Serialize)]
pub struct DnsZone {
    /// The zone's domain, without the trailing dot (`example.com`).
    pub domain: String,
    /// How ACME DNS-01 challenges are solved in it.
    pub solver: Dns01Solver,
    /// What a workload needs to solve DNS-01 challenges in this zone, and nothing more (change
    /// records of this zone only).
    pub change_policy: PolicyDocument,
    /// Its records, to create and delete the ones a module owns.
    #[serde(skip)]
    pub records: Arc<dyn DnsRecords>,
}

impl fmt::Debug for DnsZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DnsZone")
            .field("domain", &self.domain)
            .field("solver", &self.solver)
            .finish_non_exhaustive()
    }
}

impl DnsZone {
    /// Whether `name` is in this zone (equal to its domain or under it).
    ///
    /// ```
    /// # use devops_stack_core::interfaces::{DnsZone, Dns01Solver, PolicyDocument, DnsRecords};
    /// # #[derive(Debug)] struct R;
    /// # impl DnsRecords for R {
    /// #   fn ensure_record<'a>(&'a self, _: &'a devops_stack_core::interfaces::RoleOwner, _: &'a devops_stack_core::interfaces::DnsRecord) -> futures::future::BoxFuture<'a, Result<(), devops_stack_core::BoxError>> { Box::pin(async { Ok(()) }) }
    /// #   fn delete_record<'a>(&'a self, _: &'a devops_stack_core::interfaces::RoleOwner, _: &'a str, _: devops_stack_core::interfaces::RecordKind) -> futures::future::BoxFuture<'a, Result<(), devops_stack_core::BoxError>> { Box::pin(async { Ok(()) }) }
    /// #   fn planned_record(&self, r: &devops_stack_core::interfaces::DnsRecord) -> devops_stack_core::Resource { devops_stack_core::Resource::cloud("example", "dns:Record", r.name.clone(), serde_json::json!({})) }
    /// # }
    /// # let zone = DnsZone { domain: "example.com".into(), solver: Dns01Solver::new("example", serde_json::json!({})), change_policy: PolicyDocument::new(), records: std::sync::Arc::new(R) };
    /// assert!(zone.contains("*.apps.prod.example.com"));
    /// assert!(!zone.contains("badexample.com"));
    /// ```
    pub fn contains(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.');
        name == self.domain || name.ends_with(&format!(".{}", self.domain))
    }

    /// `record` as a resource of the offline plan, as the zone's provider writes it
    /// ([`DnsRecords::planned_record`]).
    pub fn planned_record(&self, record: &DnsRecord) -> Resource {
        self.records.planned_record(record)
    }
}

/// A module output that provides a DNS zone (a Route 53 hosted zone).
pub trait DnsZoneProvider {
    /// The zone.
    fn dns_zone(&self) -> DnsZone;
}
