//! Records in a Route 53 zone, each with an ownership TXT record beside it.

use aws_sdk_route53::Client;
use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType,
};
use devops_stack_core::interfaces::{DnsRecord, DnsRecords, RecordKind, RoleOwner};
use devops_stack_core::{BoxError, Resource};
use futures::future::BoxFuture;
use serde_json::json;

use super::normalize;
use crate::config::AwsConfig;
use crate::error::{Error, Result};

/// The id a zone found gone shows in place of its own.
pub(crate) const GONE_ZONE_ID: &str = "(gone)";

/// The first label of every ownership TXT record.
const OWNER_LABEL: &str = "_devops-stack-owner";

/// The name of the TXT record that says who owns the record `name`:
/// `_devops-stack-owner.<name>`, with a leading `*` label spelled `_wildcard` (a TXT record under
/// a wildcard name would itself be a wildcard).
///
/// ```
/// use devops_stack_aws::route53::owner_record_name;
/// assert_eq!(owner_record_name("grafana.example.com"), "_devops-stack-owner.grafana.example.com");
/// assert_eq!(
///     owner_record_name("*.apps.prod.example.com."),
///     "_devops-stack-owner._wildcard.apps.prod.example.com"
/// );
/// ```
pub fn owner_record_name(name: &str) -> String {
    let name = normalize(name);
    match name.strip_prefix("*.") {
        Some(rest) => format!("{OWNER_LABEL}._wildcard.{rest}"),
        None => format!("{OWNER_LABEL}.{name}"),
    }
}

/// The text of the ownership TXT record of a record of `kind` made for `owner`:
/// `devops-stack/stack=<stack>,module=<module>,type=<TYPE>` (without the quotes Route 53 adds).
///
/// ```
/// use devops_stack_aws::route53::owner_marker;
/// use devops_stack_core::interfaces::{RecordKind, RoleOwner};
/// let owner = RoleOwner { stack: "prod".into(), module: "traefik".into() };
/// assert_eq!(owner_marker(&owner, RecordKind::Cname), "devops-stack/stack=prod,module=traefik,type=CNAME");
/// ```
pub fn owner_marker(owner: &RoleOwner, kind: RecordKind) -> String {
    format!(
        "devops-stack/stack={},module={},type={}",
        owner.stack,
        owner.module,
        type_name(kind)
    )
}

fn type_name(kind: RecordKind) -> &'static str {
    match kind {
        RecordKind::Cname => "CNAME",
        _ => "UNSUPPORTED",
    }
}

fn rr_type(kind: RecordKind) -> Result<RrType> {
    match kind {
        RecordKind::Cname => Ok(RrType::Cname),
        other => Err(Error::Config {
            problem: format!("Route 53 records of kind {other:?} are not supported"),
            fix: "use a CNAME record".into(),
        }),
    }
}

/// The records of one Route 53 zone, as modules change them: the [`DnsRecords`] of a
/// [`Route53Zone`](super::Route53Zone).
///
/// A planned zone (from an offline plan) has no id: its calls fail, asking to apply first. The
/// records of a zone found gone before a destroy cannot be created, and deleting them succeeds
/// (they went with the zone).
#[derive(Debug, Clone)]
pub struct Route53Records {
    domain: String,
    /// The zone's id; a placeholder in a planned zone or one that is gone.
    zone_id: String,
    zone: ZoneState,
}

#[derive(Debug, Clone)]
enum ZoneState {
    Planned,
    Live { aws: AwsConfig },
    Gone { private: bool },
}

/// What is at a record's name: the record of the kind asked, the other record sets of the name,
/// and the ownership TXT.
struct Live {
    record: Option<ResourceRecordSet>,
    others: Vec<ResourceRecordSet>,
    owner: Option<ResourceRecordSet>,
}

/// The values of a TXT record set, without Route 53's quotes.
fn txt_values(set: &ResourceRecordSet) -> Vec<String> {
    set.resource_records()
        .iter()
        .map(|r| r.value().trim_matches('"').to_owned())
        .collect()
}

fn change(action: ChangeAction, set: ResourceRecordSet) -> Change {
    Change::builder()
        .action(action)
        .resource_record_set(set)
        .build()
        .expect("action and record set given")
}

fn record_set(name: &str, kind: RrType, ttl: i64, value: String) -> ResourceRecordSet {
    ResourceRecordSet::builder()
        .name(name)
        .r#type(kind)
        .ttl(ttl)
        .resource_records(
            ResourceRecord::builder()
                .value(value)
                .build()
                .expect("value given"),
        )
        .build()
        .expect("name and type given")
}

impl Route53Records {
    /// The records of a zone known only from a plan, its id the placeholder `zone_id` (see
    /// [`unknown`](devops_stack_core::plan::unknown)): every call fails, asking to apply first;
    /// their plan resources show that placeholder.
    pub fn planned(domain: &str, zone_id: &str) -> Self {
        Route53Records {
            domain: normalize(domain),
            zone_id: zone_id.to_owned(),
            zone: ZoneState::Planned,
        }
    }

    /// The records of a zone that no longer exists: creating fails, deleting succeeds.
    pub(crate) fn gone(domain: &str, private: bool) -> Self {
        Route53Records {
            domain: normalize(domain),
            zone_id: GONE_ZONE_ID.into(),
            zone: ZoneState::Gone { private },
        }
    }

    /// The records of zone `zone_id` of `domain`, changed through `aws`.
    pub fn live(domain: &str, zone_id: &str, aws: AwsConfig) -> Self {
        Route53Records {
            domain: normalize(domain),
            zone_id: zone_id.to_owned(),
            zone: ZoneState::Live { aws },
        }
    }

    fn what(&self, name: &str, kind: RecordKind) -> String {
        format!(
            "DNS record `{}` ({}) in Route 53 zone `{}`",
            normalize(name),
            type_name(kind),
            self.domain
        )
    }

    /// A client and the zone id, or `None` when the zone is gone.
    async fn client(&self, name: &str) -> Result<Option<(Client, &str)>> {
        let (zone_id, aws) = match &self.zone {
            ZoneState::Live { aws } => (&self.zone_id, aws),
            ZoneState::Gone { .. } => return Ok(None),
            ZoneState::Planned => {
                return Err(Error::Config {
                    problem: format!(
                        "the Route 53 zone `{}` comes from an offline plan (planned zone): record `{name}` cannot be changed",
                        self.domain
                    ),
                    fix: "apply the stack first; records are changed with the zone of an apply"
                        .into(),
                });
            }
        };
        let name = normalize(name);
        if name != self.domain && !name.ends_with(&format!(".{}", self.domain)) {
            return Err(Error::Config {
                problem: format!("`{name}` is not in the Route 53 zone `{}`", self.domain),
                fix: format!("use a name ending in `.{}`", self.domain),
            });
        }
        let sdk = aws.load().await?;
        Ok(Some((aws.route53_client(&sdk), zone_id)))
    }

    /// The record sets named exactly `name`.
    async fn sets_at(
        &self,
        client: &Client,
        zone_id: &str,
        name: &str,
    ) -> Result<Vec<ResourceRecordSet>> {
        let name = normalize(name);
        let out = client
            .list_resource_record_sets()
            .hosted_zone_id(zone_id)
            .start_record_name(format!("{name}."))
            .max_items(20)
            .send()
            .await
            .map_err(|e| {
                Error::aws(
                    "listing records",
                    format!("Route 53 zone `{}`", self.domain),
                    e,
                )
            })?;
        Ok(out
            .resource_record_sets
            .into_iter()
            .filter(|s| normalize(s.name()) == name)
            .collect())
    }

    async fn live_state(
        &self,
        client: &Client,
        zone_id: &str,
        name: &str,
        kind: &RrType,
    ) -> Result<Live> {
        let (record, others): (Vec<_>, Vec<_>) = self
            .sets_at(client, zone_id, name)
            .await?
            .into_iter()
            .partition(|s| s.r#type() == kind);
        let owner = self
            .sets_at(client, zone_id, &owner_record_name(name))
            .await?
            .into_iter()
            .find(|s| s.r#type() == &RrType::Txt);
        Ok(Live {
            record: record.into_iter().next(),
            others,
            owner,
        })
    }

    /// Creates `record`, or brings `owner`'s to it, with its ownership TXT, in one change batch.
    ///
    /// # Errors
    /// [`Error::NotOwned`] when a record of that name exists without `owner`'s TXT, or the TXT
    /// names another owner (nothing is changed); [`Error::Config`] for a planned zone or a name
    /// outside the zone; [`Error::HostedZoneNotFound`] for a zone that is gone; the call's error.
    pub async fn ensure(&self, owner: &RoleOwner, record: &DnsRecord) -> Result<()> {
        let Some((client, zone_id)) = self.client(&record.name).await? else {
            let private = matches!(self.zone, ZoneState::Gone { private: true });
            return Err(Error::HostedZoneNotFound {
                domain: self.domain.clone(),
                private,
            });
        };
        let kind = rr_type(record.kind)?;
        let what = self.what(&record.name, record.kind);
        let marker = owner_marker(owner, record.kind);
        let live = self
            .live_state(&client, zone_id, &record.name, &kind)
            .await?;
        match &live.owner {
            Some(txt) if txt_values(txt) != [marker.clone()] => {
                return Err(Error::NotOwned {
                    resource: what,
                    owner: txt_values(txt).join(" "),
                    fix: "give this record another name, or have its owner delete it".into(),
                });
            }
            None if live.record.is_some() || !live.others.is_empty() => {
                let found: Vec<String> = live
                    .record
                    .iter()
                    .chain(&live.others)
                    .map(|s| s.r#type().as_str().to_owned())
                    .collect();
                return Err(Error::NotOwned {
                    resource: what,
                    owner: format!(
                        "none: {} record(s) without an ownership TXT record at `{}`",
                        found.join(", "),
                        owner_record_name(&record.name)
                    ),
                    fix: "delete that record by hand if nothing uses it, or give this record another name".into(),
                });
            }
            _ => {}
        }
        let name = normalize(&record.name);
        let wanted_target = record.target.trim_end_matches('.');
        let current = live.record.as_ref().and_then(|s| {
            let targets: Vec<&str> = s
                .resource_records()
                .iter()
                .map(|r| r.value().trim_end_matches('.'))
                .collect();
            (targets == [wanted_target] && s.ttl() == Some(i64::from(record.ttl))).then_some(())
        });
        if live.owner.is_some() && current.is_some() {
            return Ok(());
        }
        tracing::info!("{what} → {wanted_target} (owned by {marker})");
        let batch = ChangeBatch::builder()
            .comment(format!("devops-stack: {marker}"))
            .changes(change(
                ChangeAction::Upsert,
                record_set(
                    &owner_record_name(&name),
                    RrType::Txt,
                    i64::from(record.ttl),
                    format!("\"{marker}\""),
                ),
            ))
            .changes(change(
                ChangeAction::Upsert,
                record_set(&name, kind, i64::from(record.ttl), wanted_target.to_owned()),
            ))
            .build()
            .expect("changes given");
        client
            .change_resource_record_sets()
            .hosted_zone_id(zone_id)
            .change_batch(batch)
            .send()
            .await
            .map_err(|e| Error::aws("changing the record", &what, e))?;
        Ok(())
    }

    /// Deletes the record `name` of `kind` and its ownership TXT, in one change batch, if the
    /// TXT says `owner` created it. Anything else is left alone; a missing record succeeds.
    ///
    /// # Errors
    /// [`Error::Config`] for a planned zone or a name outside the zone; the call's error. A zone
    /// that is gone is success.
    pub async fn delete(&self, owner: &RoleOwner, name: &str, kind: RecordKind) -> Result<()> {
        let Some((client, zone_id)) = self.client(name).await? else {
            // The zone is gone, and its records with it.
            return Ok(());
        };
        let rr = rr_type(kind)?;
        let what = self.what(name, kind);
        let marker = owner_marker(owner, kind);
        let live = match self.live_state(&client, zone_id, name, &rr).await {
            Err(Error::NotFound { .. }) => return Ok(()),
            other => other?,
        };
        let Some(txt) = live.owner else {
            if live.record.is_some() {
                tracing::info!("{what} has no ownership TXT record: left alone");
            }
            return Ok(());
        };
        if txt_values(&txt) != [marker.clone()] {
            tracing::info!(
                "{what} is owned by `{}`, not `{marker}`: left alone",
                txt_values(&txt).join(" ")
            );
            return Ok(());
        }
        tracing::info!("deleting {what}");
        // Route 53 deletes a record set only when given its exact current values: the live sets.
        let mut batch = ChangeBatch::builder().changes(change(ChangeAction::Delete, txt));
        if let Some(record) = live.record {
            batch = batch.changes(change(ChangeAction::Delete, record));
        }
        match client
            .change_resource_record_sets()
            .hosted_zone_id(zone_id)
            .change_batch(batch.build().expect("changes given"))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_no_such_hosted_zone()) =>
            {
                Ok(())
            }
            Err(e) => Err(Error::aws("deleting the record", &what, e)),
        }
    }
}

impl Route53Records {
    /// Deletes every record of the zone whose ownership TXT names a module of `stack` (each
    /// through [`Route53Records::delete`], so with its owner's marker checked again), and
    /// returns their names. What another stack or a person made is left alone.
    ///
    /// # Errors
    /// The listing's or a deletion's error; a zone that is gone is success.
    pub async fn delete_all_of_stack(&self, stack: &str) -> Result<Vec<String>> {
        let Some((client, zone_id)) = self.client(&self.domain).await? else {
            return Ok(Vec::new());
        };
        let prefix = format!("devops-stack/stack={stack},module=");
        let mut owned = Vec::new();
        let mut next: Option<(String, RrType)> = None;
        loop {
            let mut call = client.list_resource_record_sets().hosted_zone_id(zone_id);
            if let Some((name, kind)) = next.take() {
                call = call.start_record_name(name).start_record_type(kind);
            }
            let page = call.send().await.map_err(|e| {
                Error::aws(
                    "listing records",
                    format!("Route 53 zone `{}`", self.domain),
                    e,
                )
            })?;
            for set in page.resource_record_sets() {
                let name = normalize(set.name());
                let Some(target) = name.strip_prefix(&format!("{OWNER_LABEL}.")) else {
                    continue;
                };
                let target = match target.strip_prefix("_wildcard.") {
                    Some(rest) => format!("*.{rest}"),
                    None => target.to_owned(),
                };
                for value in txt_values(set) {
                    if let Some(rest) = value.strip_prefix(&prefix)
                        && let Some((module, "CNAME")) = rest.split_once(",type=")
                    {
                        owned.push((target.clone(), module.to_owned()));
                    }
                }
            }
            match (page.next_record_name(), page.next_record_type()) {
                (Some(name), Some(kind)) if page.is_truncated() => {
                    next = Some((name.to_owned(), kind.clone()));
                }
                _ => break,
            }
        }
        let mut deleted = Vec::new();
        for (name, module) in owned {
            let owner = RoleOwner {
                stack: stack.to_owned(),
                module,
            };
            self.delete(&owner, &name, RecordKind::Cname).await?;
            deleted.push(name);
        }
        Ok(deleted)
    }
}

impl DnsRecords for Route53Records {
    fn ensure_record<'a>(
        &'a self,
        owner: &'a RoleOwner,
        record: &'a DnsRecord,
    ) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move { self.ensure(owner, record).await.map_err(Into::into) })
    }

    fn delete_record<'a>(
        &'a self,
        owner: &'a RoleOwner,
        name: &'a str,
        kind: RecordKind,
    ) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move { self.delete(owner, name, kind).await.map_err(Into::into) })
    }

    /// `aws route53:RecordSet <name>`, with the zone's id and domain beside the record.
    fn planned_record(&self, record: &DnsRecord) -> Resource {
        Resource::cloud(
            "aws",
            "route53:RecordSet",
            record.name.clone(),
            json!({
                "hosted_zone_id": self.zone_id,
                "zone": self.domain,
                "type": record.kind,
                "target": record.target,
                "ttl": record.ttl,
            }),
        )
    }
}
