//! [`Deployer::diff`]: what an apply would change, field by field, without writing.

use super::*;

impl Deployer {
    /// What [`Deployer::apply`] would do, object by object and field by field. Objects that
    /// would be written are compared through a server-side dry-run apply (`dryRun=All`);
    /// managed objects unchanged since the module applied them need no request; objects that do
    /// not exist are shown whole; objects another manager changed show each changed field with
    /// the manager that changed it (the apply will put them back); objects that belong to
    /// someone else are shown as conflicts, adoptions or (namespaces) as not managed; objects
    /// that would be pruned are listed. Secret values are redacted. Writes nothing, and never
    /// fails because of the drift or the conflicts it shows.
    ///
    /// # Errors
    /// API errors, and [`KubeError::UnknownKind`].
    pub async fn diff(&self, objects: Vec<Value>) -> Result<Diff> {
        let desired = self.render(objects)?;
        let survey = self.survey(&desired, Depth::Full).await?;
        let manager = &self.options.field_manager;
        let compares = survey.items.iter().map(|item| async move {
            let body = scoped_body(item.desired, &item.id);
            let (Some(live), Some(r)) = (&item.live, &item.resolved) else {
                return ObjectDiff::between(None, &body);
            };
            let body = with_live_unknowns(item.desired, body, live);
            let mut note = None;
            let force = match item.action {
                Action::Unchanged { .. } => {
                    return ObjectDiff::between(Some(&to_json(live)?), &to_json(live)?);
                }
                Action::NotManaged | Action::Conflict => {
                    let mut d = ObjectDiff::between(Some(&to_json(live)?), &to_json(live)?)?;
                    d.action = if item.action == Action::Conflict {
                        DiffAction::Conflict
                    } else {
                        DiffAction::NotManaged
                    };
                    d.note = Some(if item.action == Action::Conflict {
                        format!(
                            "{}; apply will fail: adopt it with `Adopt::object(\"{}\", ..)` or rename it",
                            OwnershipConflict::new(&item.id, &live.metadata).owner,
                            self.module
                        )
                    } else {
                        "exists, not managed by this stack".into()
                    });
                    return Ok(d);
                }
                Action::Adopt => true,
                Action::Update { force } => force,
                Action::Create => false,
            };
            let api = self.resolver_api(r, &item.id);
            let dry_run = |force: bool| {
                let api = api.clone();
                let body = &body;
                async move {
                    let mut params = PatchParams::apply(manager).dry_run();
                    params.force = force;
                    let patch = Patch::Apply(body);
                    self.retry
                        .run(true, "dry-run apply", || api.patch(&item.id.name, &params, &patch))
                        .await
                }
            };
            let after = match dry_run(force).await {
                Ok(after) => after,
                Err(e) if code(&e) == Some(409) => {
                    // A field another manager owns: show the change all the same, and say it.
                    let conflict = apply_error(e, &item.id, "dry-run applying");
                    note = Some(format!("{conflict}"));
                    dry_run(true)
                        .await
                        .map_err(|e| self.api_error(format!("dry-run applying {}", item.id), e))?
                }
                Err(e) => return Err(self.reach(apply_error(e, &item.id, "dry-run applying"))),
            };
            let mut d = ObjectDiff::between(Some(&to_json(live)?), &to_json(&after)?)?;
            for c in &mut d.changes {
                c.changed_by = fields::owners(&live.metadata, &c.path, manager);
            }
            if item.action == Action::Adopt {
                d.action = DiffAction::Adopt;
                note = Some(OwnershipConflict::new(&item.id, &live.metadata).owner);
            }
            d.note = note;
            Ok(d)
        });
        let mut objects: Vec<ObjectDiff> = stream::iter(compares)
            .buffered(self.options.max_in_flight.max(1))
            .try_collect()
            .await?;
        for (id, _, live) in &survey.stale {
            let Some(live) = live else { continue };
            if ownership::owner(&live.metadata, &self.stack, &self.module) == Owner::This {
                objects.push(ObjectDiff {
                    object: id.clone(),
                    action: DiffAction::Delete,
                    changes: Vec::new(),
                    note: None,
                });
            }
        }
        Ok(Diff { objects })
    }
}
