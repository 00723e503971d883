//! Reads what is live for many objects at once: one LIST per kind and namespace (a GET where a
//! kind and namespace hold a single object, and for CustomResourceDefinitions, whose lists carry
//! every CRD's whole schema), with a bounded number of requests in flight.

use std::collections::{BTreeMap, HashMap};

use futures::{StreamExt, TryStreamExt, stream};
use kube::api::{DynamicObject, ListParams};
use kube::core::{PartialObjectMeta, TypeMeta};
use serde_json::Value;

use super::Deployer;
use super::discovery::{Resolved, Resolver};
use super::object::{Class, ObjectRef, is_secret};
use crate::error::Result;

/// Live objects by identity; absent objects have no entry.
pub(crate) type LiveObjects = HashMap<ObjectRef, DynamicObject>;

/// `(apiVersion, kind, namespace)`: what one LIST reads.
type GroupKey<'a> = (&'a str, &'a str, Option<&'a str>);

/// How much of each live object to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Depth {
    /// Whole objects (what a diff compares).
    Full,
    /// Metadata only (labels, annotations, `managedFields`: what ownership and drift need),
    /// except for Secrets, whose values are compared.
    Metadata,
}

/// Reads the live state of `ids` (resolved, with namespaces scoped).
pub(crate) async fn read(
    d: &Deployer,
    resolver: &Resolver,
    ids: &[(ObjectRef, Resolved)],
    depth: Depth,
) -> Result<LiveObjects> {
    // (apiVersion, kind, namespace) -> the objects wanted there.
    let mut groups: BTreeMap<GroupKey<'_>, Vec<&(ObjectRef, Resolved)>> = BTreeMap::new();
    for item in ids {
        let id = &item.0;
        groups
            .entry((&id.api_version, &id.kind, id.namespace.as_deref()))
            .or_default()
            .push(item);
    }
    // Collected first: a stream over a closure that takes borrowed items would not be `Send`
    // for every lifetime, which the modules' futures must be.
    let reads: Vec<_> = groups
        .into_values()
        .map(|items| read_group(d, resolver, items, depth))
        .collect();
    let found: Vec<Vec<(ObjectRef, DynamicObject)>> = stream::iter(reads)
        .buffer_unordered(d.options.max_in_flight.max(1))
        .try_collect()
        .await?;
    Ok(found.into_iter().flatten().collect())
}

/// Reads the objects of one kind in one namespace.
async fn read_group(
    d: &Deployer,
    resolver: &Resolver,
    items: Vec<&(ObjectRef, Resolved)>,
    depth: Depth,
) -> Result<Vec<(ObjectRef, DynamicObject)>> {
    let (first, r) = items[0];
    let api = resolver.api(r, first);
    let metadata = depth == Depth::Metadata && !is_secret(first);
    let whole = |id: &ObjectRef, p: PartialObjectMeta<DynamicObject>| DynamicObject {
        types: Some(TypeMeta {
            api_version: id.api_version.clone(),
            kind: id.kind.clone(),
        }),
        metadata: p.metadata,
        data: Value::Object(serde_json::Map::new()),
    };
    let mut found = Vec::new();
    if items.len() == 1 || first.class() == Class::Crd {
        for (id, _) in items {
            let o = if metadata {
                d.retry
                    .run(false, "reading", || api.get_metadata_opt(&id.name))
                    .await
                    .map_err(|e| d.api_error(format!("reading {id}"), e))?
                    .map(|p| whole(id, p))
            } else {
                d.get(&api, id).await?
            };
            if let Some(o) = o {
                found.push((id.clone(), o));
            }
        }
    } else if metadata {
        let what = format!(
            "listing the metadata of {} {}",
            first.api_version, first.kind
        );
        let params = ListParams::default();
        let list = d
            .retry
            .run(false, &what, || api.list_metadata(&params))
            .await
            .map_err(|e| d.api_error(what.clone(), e))?;
        let mut by_name: HashMap<String, PartialObjectMeta<DynamicObject>> = list
            .items
            .into_iter()
            .filter_map(|o| Some((o.metadata.name.clone()?, o)))
            .collect();
        for (id, _) in items {
            if let Some(p) = by_name.remove(&id.name) {
                found.push((id.clone(), whole(id, p)));
            }
        }
    } else {
        let what = match &first.namespace {
            Some(ns) => format!(
                "listing {} {} in namespace {ns}",
                first.api_version, first.kind
            ),
            None => format!("listing {} {}", first.api_version, first.kind),
        };
        let params = ListParams::default();
        let list = d
            .retry
            .run(false, &what, || api.list(&params))
            .await
            .map_err(|e| d.api_error(what.clone(), e))?;
        let mut by_name: HashMap<String, DynamicObject> = list
            .items
            .into_iter()
            .filter_map(|o| Some((o.metadata.name.clone()?, o)))
            .collect();
        for (id, _) in items {
            if let Some(mut o) = by_name.remove(&id.name) {
                // The items of a list of a built-in kind come without their type.
                o.types.get_or_insert_with(|| TypeMeta {
                    api_version: id.api_version.clone(),
                    kind: id.kind.clone(),
                });
                found.push((id.clone(), o));
            }
        }
    }
    Ok(found)
}
