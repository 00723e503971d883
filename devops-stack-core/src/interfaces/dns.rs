//! DNS: a hosted zone of the stack's base domain, for ACME DNS-01 challenges and for the record
//! that points the stack's hostnames at the ingress load balancer.
//!
//! A zone module (Route 53 in `devops-stack-aws`) outputs a [`DnsZone`]: the zone, how
//! cert-manager solves DNS-01 in it ([`Dns01Solver`]), the policy a workload needs to change its
//! records, and [`DnsRecords`], through which a module creates and deletes the records it owns.
//! Records carry no tags, so an implementation keeps ownership beside them (a TXT record) and never
//! changes or deletes a record it did not create.
//!
//! ```
//! use devops_stack_core::interfaces::{DnsRecord, RecordKind};
//! let record = DnsRecord::cname("*.apps.prod.example.com", "nlb-1.elb.eu-west-1.amazonaws.com");
//! assert_eq!(record.kind, RecordKind::Cname);
//! assert_eq!(record.ttl, 300);
//! ```

use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::Serialize;

use super::{PolicyDocument, RoleOwner};
use crate::error::BoxError;
use crate::plan::Resource;

/// How cert-manager solves an ACME DNS-01 challenge in a zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "provider", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Dns01Solver {
    /// Amazon Route 53.
    Route53 {
        /// The zone's region (Route 53 is global; the SDK still needs one).
        region: String,
        /// The hosted zone's id (`Z0123456789ABCDEFGHIJ`).
        hosted_zone_id: String,
    },
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
    /// # }
    /// # let zone = DnsZone { domain: "example.com".into(), solver: Dns01Solver::Route53 { region: "eu-west-1".into(), hosted_zone_id: "Z1".into() }, change_policy: PolicyDocument::new(), records: std::sync::Arc::new(R) };
    /// assert!(zone.contains("*.apps.prod.example.com"));
    /// assert!(!zone.contains("badexample.com"));
    /// ```
    pub fn contains(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.');
        name == self.domain || name.ends_with(&format!(".{}", self.domain))
    }

    /// `record` as a resource of the offline plan (`aws route53:RecordSet <name>`).
    pub fn planned_record(&self, record: &DnsRecord) -> Resource {
        match &self.solver {
            Dns01Solver::Route53 { hosted_zone_id, .. } => Resource::cloud(
                "aws",
                "route53:RecordSet",
                record.name.clone(),
                serde_json::json!({
                    "hosted_zone_id": hosted_zone_id,
                    "zone": self.domain,
                    "type": record.kind,
                    "target": record.target,
                    "ttl": record.ttl,
                }),
            ),
        }
    }
}

/// A module output that provides a DNS zone (a Route 53 hosted zone).
pub trait DnsZoneProvider {
    /// The zone.
    fn dns_zone(&self) -> DnsZone;
}
