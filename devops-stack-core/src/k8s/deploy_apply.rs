//! [`Deployer::apply`]: the writes of an apply, CRDs and namespaces first, and the
//! inventory kept before and after them.

use super::*;

impl Deployer {
    /// Applies `objects`: surveys what is live, refuses to take over what is not the module's,
    /// writes what changed or drifted (CRDs first and waited for, then namespaces, then the
    /// rest, in parallel), records the module's inventory, prunes what it no longer renders and
    /// waits for readiness. See the [module documentation](crate::k8s) for the steps.
    ///
    /// # Errors
    /// [`KubeError::NotOwned`] before any write, API errors, [`KubeError::Unreachable`],
    /// [`KubeError::FieldConflict`], [`KubeError::UnknownKind`], [`KubeError::NotReady`] naming the object,
    /// [`Error::LockHeld`], and [`Error::Cancelled`].
    pub async fn apply(&self, objects: Vec<Value>) -> Result<ApplyReport> {
        self.guard().await?;
        let desired = self.render(objects)?;
        let mut survey = self.survey(&desired, Depth::Metadata).await?;
        let conflicts = survey.conflicts();
        if !conflicts.is_empty() {
            return Err(Error::from(KubeError::NotOwned {
                module: self.module.clone(),
                objects: conflicts,
            }));
        }
        let store = self.store();
        self.widen(&store, &survey).await?;
        let mut report = ApplyReport::default();
        let mut applied: HashMap<ObjectRef, Option<String>> = HashMap::new();
        let deadline = Instant::now() + self.options.wait_timeout;

        // CRDs, then their kinds are served; then namespaces; then the rest.
        let crds = survey.items.partition_point(|i| i.id.class() == Class::Crd);
        self.write_all(&survey.items[..crds], &mut report, &mut applied)
            .await?;
        if crds > 0 {
            self.wait_crds(&survey.resolver, &survey.items[..crds], deadline)
                .await?;
            for item in &survey.items[..crds] {
                if let Some(group) = item.desired.body["spec"]["group"].as_str() {
                    survey.resolver.forget_group(group);
                }
            }
            for item in &mut survey.items[crds..] {
                if item.resolved.is_none() {
                    item.resolved = Some(
                        self.await_served(&mut survey.resolver, &item.desired.id, deadline)
                            .await?,
                    );
                }
            }
        }
        let namespaces =
            crds + survey.items[crds..].partition_point(|i| i.id.class() == Class::Namespace);
        self.write_all(&survey.items[crds..namespaces], &mut report, &mut applied)
            .await?;
        self.write_all(&survey.items[namespaces..], &mut report, &mut applied)
            .await?;

        // Prune what the module no longer renders, if it is still the module's.
        let stale = std::mem::take(&mut survey.stale);
        let removal = self.remove(stale, deadline).await?;
        report.pruned = removal.deleted;
        report.left_alone = removal.left_alone;

        let entry = ModuleState {
            objects: survey
                .items
                .iter()
                .filter(|i| i.action != Action::NotManaged)
                .map(|i| InventoryEntry {
                    object: i.id.clone(),
                    hash: Some(i.desired.hash.clone()),
                    fields: applied.get(&i.id).cloned().flatten(),
                })
                .collect(),
            output: survey.previous.output.clone(),
            needs: self.needs(),
        };
        if entry != survey.previous {
            store.write(Some(&entry)).await?;
        }
        if self.options.wait {
            self.wait_ready(&survey.items, deadline).await?;
        }
        Ok(report)
    }

    /// Before the first write, records the new objects in the inventory (without hashes), so
    /// that a crash in the middle leaves no object the state does not know of.
    pub(super) async fn widen(&self, store: &StateStore, survey: &Survey<'_>) -> Result<()> {
        let mut entry = survey.previous.clone();
        for i in &survey.items {
            let writes = !matches!(i.action, Action::Unchanged { .. } | Action::NotManaged);
            if writes && !entry.objects.iter().any(|e| e.object == i.id) {
                entry.objects.push(InventoryEntry {
                    object: i.id.clone(),
                    hash: None,
                    fields: None,
                });
            }
        }
        if entry != survey.previous {
            store.write(Some(&entry)).await?;
        }
        Ok(())
    }

    /// Writes the items that need it, in parallel; records each one's field fingerprint.
    pub(super) async fn write_all(
        &self,
        items: &[Item<'_>],
        report: &mut ApplyReport,
        applied: &mut HashMap<ObjectRef, Option<String>>,
    ) -> Result<()> {
        let writes = items.iter().filter_map(|item| {
            let force = match item.action {
                Action::Unchanged { ref fields } => {
                    report.unchanged.push(item.id.title());
                    applied.insert(item.id.clone(), Some(fields.clone()));
                    return None;
                }
                Action::NotManaged => {
                    report.not_managed.push(item.id.title());
                    return None;
                }
                Action::Conflict => return None,
                Action::Create => self.options.force_conflicts,
                Action::Update { force } => force,
                Action::Adopt => true,
            };
            Some(async move {
                self.check_cancelled()?;
                let r = item
                    .resolved
                    .as_ref()
                    .expect("kinds are resolved before writes");
                let api = self.resolver_api(r, &item.id);
                let body = scoped_body(item.desired, &item.id);
                let mut params = PatchParams::apply(&self.options.field_manager);
                params.force = force;
                let patch = Patch::Apply(&body);
                let written = self
                    .retry
                    .run(true, "applying", || {
                        api.patch(&item.id.name, &params, &patch)
                    })
                    .await
                    .map_err(|e| self.reach(apply_error(e, &item.id, "applying")))?;
                self.progress(&format!("applied {}", item.id));
                let fields = fields::fingerprint(&written.metadata, &self.options.field_manager);
                Ok::<_, Error>((item, fields))
            })
        });
        let done: Vec<(&Item<'_>, Option<String>)> = stream::iter(writes.collect::<Vec<_>>())
            .buffer_unordered(self.options.max_in_flight.max(1))
            .try_collect()
            .await?;
        for (item, fields) in done {
            let title = item.id.title();
            match item.action {
                Action::Update { force: true } if !self.options.force_conflicts => {
                    report.reverted.push(title.clone())
                }
                Action::Adopt => report.adopted.push(title.clone()),
                _ => {}
            }
            report.changed.push(title);
            applied.insert(item.id.clone(), fields);
        }
        Ok(())
    }
}

/// Whether every value a rendered Secret sets is live (always true for other kinds); a value
/// known only after apply is live when the key is.
pub(super) fn secret_values_live(d: &Desired, live: &DynamicObject) -> bool {
    d.secret_data.as_ref().is_none_or(|data| {
        data.iter().all(|(k, v)| {
            let now = live.data["data"][k].as_str();
            now == Some(v.as_str()) || (now.is_some() && d.unknown_keys.contains(k))
        })
    })
}

/// `body` (a Secret of a plan) with the values known only after apply taken as they are live,
/// so that a diff shows no change for them.
pub(super) fn with_live_unknowns(d: &Desired, mut body: Value, live: &DynamicObject) -> Value {
    for k in &d.unknown_keys {
        for key in ["stringData", "data"] {
            if let Some(values) = body.get_mut(key).and_then(Value::as_object_mut) {
                values.remove(k);
            }
        }
        if let Some(v) = live.data["data"].get(k) {
            body["data"][k] = v.clone();
        }
    }
    body
}

/// The rendered body with its namespace set to match its kind's scope.
pub(super) fn scoped_body(d: &Desired, id: &ObjectRef) -> Value {
    let mut body = d.body.clone();
    let meta = &mut body["metadata"];
    match &id.namespace {
        Some(ns) => meta["namespace"] = Value::String(ns.clone()),
        None => {
            if let Some(m) = meta.as_object_mut() {
                m.remove("namespace");
            }
        }
    }
    body
}

/// Turns a 409 of a server-side apply into [`KubeError::FieldConflict`](crate::k8s::KubeError::FieldConflict) naming the other managers.
pub(super) fn apply_error(e: kube::Error, id: &ObjectRef, action: &str) -> Error {
    match &e {
        kube::Error::Api(s) if s.code == 409 => {
            let mut text = s.message.clone();
            for c in s.details.iter().flat_map(|d| &d.causes) {
                text.push('\n');
                text.push_str(&c.message);
            }
            let mut managers: Vec<String> = text
                .split("with \"")
                .skip(1)
                .filter_map(|rest| rest.split_once('"').map(|(m, _)| m.to_owned()))
                .collect();
            managers.sort();
            managers.dedup();
            Error::from(KubeError::FieldConflict {
                object: id.to_string(),
                managers,
                detail: s.message.clone(),
            })
        }
        _ => Error::kube(format!("{action} {id}"), e),
    }
}
