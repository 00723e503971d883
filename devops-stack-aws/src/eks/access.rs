//! The EKS access-entry calls, shared by the [`Eks`](super::Eks) module (the entries it
//! declares) and [`EksSpokeAuth`](super::EksSpokeAuth) (the hub's entry on a spoke).

use std::collections::BTreeMap;

use aws_sdk_eks::Client;
use aws_sdk_eks::types::{AccessEntry as SdkAccessEntry, AccessScope, AccessScopeType};
use devops_stack_core::Context;

use super::AccessEntry;
use crate::error::{Error, Result, deleted, is_not_found};

/// How errors and progress name the entry of `principal` on `cluster`.
pub(crate) fn entry_resource(cluster: &str, principal: &str) -> String {
    format!("access entry `{principal}` of EKS cluster `{cluster}`")
}

/// The access entry of `principal` on `cluster`, with its tags; `None` when there is none (or
/// no such cluster).
pub(crate) async fn describe(
    client: &Client,
    cluster: &str,
    principal: &str,
) -> Result<Option<SdkAccessEntry>> {
    match client
        .describe_access_entry()
        .cluster_name(cluster)
        .principal_arn(principal)
        .send()
        .await
    {
        Ok(out) => Ok(out.access_entry),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(Error::aws(
            "reading the access entry",
            entry_resource(cluster, principal),
            e,
        )),
    }
}

/// Creates `entry` on `cluster` unless it `exists`, with `tags` (none when empty), then
/// associates each of its policies cluster-wide (associating an already associated policy is a
/// no-op in EKS).
pub(crate) async fn ensure(
    client: &Client,
    cluster: &str,
    entry: &AccessEntry,
    exists: bool,
    tags: &BTreeMap<String, String>,
    ctx: &Context,
) -> Result<()> {
    let what = entry_resource(cluster, &entry.principal_arn);
    if !exists {
        ctx.progress(format!("creating {what}"));
        client
            .create_access_entry()
            .cluster_name(cluster)
            .principal_arn(&entry.principal_arn)
            .set_kubernetes_groups(Some(entry.kubernetes_groups.clone()))
            .set_tags((!tags.is_empty()).then(|| tags.clone().into_iter().collect()))
            .send()
            .await
            .map_err(|e| Error::aws("creating the access entry", &what, e))?;
    }
    for policy in &entry.policies {
        client
            .associate_access_policy()
            .cluster_name(cluster)
            .principal_arn(&entry.principal_arn)
            .policy_arn(policy)
            .access_scope(
                AccessScope::builder()
                    .r#type(AccessScopeType::Cluster)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| Error::aws(format!("associating policy {policy}"), &what, e))?;
    }
    Ok(())
}

/// Deletes the access entry of `principal` on `cluster`; one that is gone is fine.
pub(crate) async fn delete(
    client: &Client,
    cluster: &str,
    principal: &str,
    ctx: &Context,
) -> Result<()> {
    let what = entry_resource(cluster, principal);
    ctx.progress(format!("deleting {what}"));
    deleted(
        client
            .delete_access_entry()
            .cluster_name(cluster)
            .principal_arn(principal)
            .send()
            .await,
        "deleting the access entry",
        &what,
    )
}
