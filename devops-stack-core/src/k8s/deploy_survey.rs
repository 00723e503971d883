//! The survey of an apply or a diff: what is live for each rendered object, and what to do
//! with it (create, update, adopt, leave alone, refuse).

use super::*;

/// One object of an apply, surveyed: where it goes, what is live, and what to do.
pub(super) struct Item<'a> {
    pub(super) desired: &'a Desired,
    pub(super) id: ObjectRef,
    /// `None` while its kind's CRD (in the same bundle) is not established yet.
    pub(super) resolved: Option<Resolved>,
    pub(super) live: Option<DynamicObject>,
    pub(super) action: Action,
}

/// What an apply does with one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Action {
    Create,
    /// Re-apply; `force` when the module applied this very content last time, so that every
    /// field of it was the module's (drift is put back).
    Update {
        force: bool,
    },
    Adopt,
    /// Managed and as rendered; the fingerprint of the module's fields.
    Unchanged {
        fields: String,
    },
    /// A namespace that exists and is not the module's.
    NotManaged,
    /// Exists and is someone else's.
    Conflict,
}

/// The survey of an apply or diff.
pub(super) struct Survey<'a> {
    pub(super) resolver: Resolver,
    pub(super) previous: ModuleState,
    pub(super) items: Vec<Item<'a>>,
    /// Objects of the previous inventory the module no longer renders, with what is live.
    pub(super) stale: Vec<(ObjectRef, Resolved, Option<DynamicObject>)>,
}

impl Survey<'_> {
    /// The objects that exist and are someone else's.
    pub(super) fn conflicts(&self) -> Vec<OwnershipConflict> {
        self.items
            .iter()
            .filter(|i| i.action == Action::Conflict)
            .filter_map(|i| {
                i.live
                    .as_ref()
                    .map(|l| OwnershipConflict::new(&i.id, &l.metadata))
            })
            .collect()
    }
}

impl Deployer {
    pub(super) fn needs(&self) -> Vec<String> {
        self.run
            .as_ref()
            .map(|r| r.needs.clone())
            .unwrap_or_default()
    }

    /// Resolves kinds, reads what is live and decides what to do with each object. Writes
    /// nothing.
    pub(super) async fn survey<'a>(
        &self,
        desired: &'a [Desired],
        depth: Depth,
    ) -> Result<Survey<'a>> {
        let previous = self
            .store()
            .read()
            .await
            .map_err(|e| self.reach(e))?
            .unwrap_or_default();
        let mut resolver = self.resolver();
        // Kinds the bundle's own CRDs define are not served yet: such objects cannot exist.
        let bundle_kinds: HashSet<(String, String)> = desired
            .iter()
            .filter(|d| d.id.class() == Class::Crd)
            .filter_map(|d| {
                let spec = &d.body["spec"];
                Some((
                    spec["group"].as_str()?.to_owned(),
                    spec["names"]["kind"].as_str()?.to_owned(),
                ))
            })
            .collect();
        let mut items = Vec::with_capacity(desired.len());
        let mut seen = HashSet::new();
        for d in desired {
            let (id, resolved) = match resolver.lookup(&d.id).await.map_err(|e| self.reach(e))? {
                Some(r) => (resolver.scoped(&r, &d.id), Some(r)),
                None if bundle_kinds.contains(&(d.id.group().to_owned(), d.id.kind.clone())) => {
                    (d.id.clone(), None)
                }
                None => {
                    return Err(Error::from(KubeError::UnknownKind {
                        object: d.id.to_string(),
                        api_version: d.id.api_version.clone(),
                        kind: d.id.kind.clone(),
                    }));
                }
            };
            if !seen.insert(id.clone()) {
                return Err(KubeError::InvalidObject {
                    what: id.to_string(),
                    problem: format!("it is rendered twice by module `{}`", self.module),
                    fix: "render each object once".into(),
                }
                .into());
            }
            items.push(Item {
                desired: d,
                id,
                resolved,
                live: None,
                action: Action::Create,
            });
        }
        let mut stale = Vec::new();
        for e in &previous.objects {
            // A kind no longer served took its objects with it.
            let Some(r) = resolver
                .lookup(&e.object)
                .await
                .map_err(|e| self.reach(e))?
            else {
                continue;
            };
            let id = resolver.scoped(&r, &e.object);
            if !seen.contains(&id) && !stale.iter().any(|(s, _, _)| s == &id) {
                stale.push((id, r, None));
            }
        }
        let wanted: Vec<(ObjectRef, Resolved)> = items
            .iter()
            .filter_map(|i| Some((i.id.clone(), i.resolved.clone()?)))
            .chain(stale.iter().map(|(id, r, _)| (id.clone(), r.clone())))
            .collect();
        let mut live: LiveObjects = live::read(self, &resolver, &wanted, depth).await?;
        let recorded: HashMap<&ObjectRef, &InventoryEntry> =
            previous.objects.iter().map(|e| (&e.object, e)).collect();
        for item in &mut items {
            item.live = live.remove(&item.id);
            item.action = self.classify(item, recorded.get(&item.id).copied());
        }
        for (id, _, l) in &mut stale {
            *l = live.remove(id);
        }
        Ok(Survey {
            resolver,
            previous,
            items,
            stale,
        })
    }

    pub(super) fn classify(&self, item: &Item<'_>, recorded: Option<&InventoryEntry>) -> Action {
        let Some(live) = &item.live else {
            return Action::Create;
        };
        let d = item.desired;
        match ownership::owner(&live.metadata, &self.stack, &self.module) {
            Owner::This => {
                let applied_same = recorded.and_then(|e| e.hash.as_deref()) == Some(&d.hash);
                let fields = fields::fingerprint(&live.metadata, &self.options.field_manager);
                match fields {
                    Some(fields)
                        if applied_same
                            && live_hash(&live.metadata) == Some(d.hash.as_str())
                            && recorded.and_then(|e| e.fields.as_deref()) == Some(&fields)
                            && secret_values_live(d, live) =>
                    {
                        Action::Unchanged { fields }
                    }
                    _ => Action::Update {
                        force: applied_same || self.options.force_conflicts,
                    },
                }
            }
            Owner::Other
                if self
                    .options
                    .adopt
                    .iter()
                    .any(|a| a.covers(&self.module, &item.id)) =>
            {
                Action::Adopt
            }
            Owner::Other if item.id.class() == Class::Namespace => Action::NotManaged,
            Owner::Other => Action::Conflict,
        }
    }
}
