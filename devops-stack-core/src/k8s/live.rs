//! Reads what is live for many objects at once: one LIST per kind and namespace (a GET where a
//! kind and namespace hold a single object, and for CustomResourceDefinitions, whose lists carry
//! every CRD's whole schema), with a bounded number of requests in flight.

use std::collections::{BTreeMap, HashMap};

use futures::{StreamExt, TryStreamExt, stream};
use kube::api::{DynamicObject, ListParams};

use super::Deployer;
use super::discovery::{Resolved, Resolver};
use super::object::{Class, ObjectRef};
use crate::error::Result;

/// Live objects by identity; absent objects have no entry.
pub(crate) type LiveObjects = HashMap<ObjectRef, DynamicObject>;

/// `(apiVersion, kind, namespace)`: what one LIST reads.
type GroupKey<'a> = (&'a str, &'a str, Option<&'a str>);

/// Reads the live state of `ids` (resolved, with namespaces scoped).
pub(crate) async fn read(
    d: &Deployer,
    resolver: &Resolver,
    ids: &[(ObjectRef, Resolved)],
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
        .map(|items| read_group(d, resolver, items))
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
) -> Result<Vec<(ObjectRef, DynamicObject)>> {
    let (first, r) = items[0];
    let api = resolver.api(r, first);
    let mut found = Vec::new();
    if items.len() == 1 || first.class() == Class::Crd {
        for (id, _) in items {
            if let Some(o) = d.get(&api, id).await? {
                found.push((id.clone(), o));
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
                o.types.get_or_insert_with(|| kube::core::TypeMeta {
                    api_version: id.api_version.clone(),
                    kind: id.kind.clone(),
                });
                found.push((id.clone(), o));
            }
        }
    }
    Ok(found)
}
