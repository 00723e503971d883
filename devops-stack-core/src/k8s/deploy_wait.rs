//! The waits of an apply: CRDs until established and served, then each object until ready.

use super::*;

impl Deployer {
    pub(super) fn resolver_api(&self, r: &Resolved, id: &ObjectRef) -> Api<DynamicObject> {
        discovery::api_for(&self.client, r, id)
    }

    /// Resolves a kind a CRD of the bundle defines: API discovery may serve it a moment after
    /// the CRD reports `Established`, so it is asked again until then (bounded by `deadline`).
    pub(super) async fn await_served(
        &self,
        resolver: &mut Resolver,
        id: &ObjectRef,
        deadline: Instant,
    ) -> Result<Resolved> {
        let mut pause = Duration::from_millis(50);
        loop {
            if let Some(r) = resolver.lookup(id).await.map_err(|e| self.reach(e))? {
                return Ok(r);
            }
            if Instant::now() + pause > deadline {
                return resolver.resolve(id).await;
            }
            self.check_cancelled()?;
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    /// Waits for the CRDs until `Established`.
    pub(super) async fn wait_crds(
        &self,
        resolver: &Resolver,
        crds: &[Item<'_>],
        deadline: Instant,
    ) -> Result<()> {
        let waits = crds
            .iter()
            .filter(|i| i.action != Action::Conflict)
            .map(|i| {
                let r = i.resolved.as_ref().expect("CRDs are a served kind");
                self.await_ready(resolver.api(r, &i.id), &i.id, Readiness::Crd, deadline)
            });
        futures::future::try_join_all(waits).await.map(drop)
    }

    /// Waits for Deployments and Applications to be ready, all at once.
    pub(super) async fn wait_ready(&self, items: &[Item<'_>], deadline: Instant) -> Result<()> {
        let waits = items.iter().filter_map(|i| {
            let readiness @ (Readiness::Deployment | Readiness::Application) =
                Readiness::of(&i.id)?
            else {
                return None;
            };
            if i.action == Action::NotManaged {
                return None;
            }
            let r = i.resolved.as_ref()?;
            Some(async move {
                self.progress(&format!("waiting for {} to be ready", i.id));
                self.await_ready(self.resolver_api(r, &i.id), &i.id, readiness, deadline)
                    .await
            })
        });
        futures::future::try_join_all(waits).await.map(drop)
    }

    /// Watches `id` until it is ready, or fails naming it with the last status seen.
    pub(super) async fn await_ready(
        &self,
        api: Api<DynamicObject>,
        id: &ObjectRef,
        readiness: Readiness,
        deadline: Instant,
    ) -> Result<()> {
        // An Application Argo CD refuses for good ends the wait at once, with the reason.
        let refused = std::sync::Mutex::new(None);
        let ready = |o: Option<&DynamicObject>| {
            let Some(o) = o else { return false };
            if readiness == Readiness::Application
                && let Some(r) = wait::refusal(o)
            {
                *refused.lock().expect("not poisoned") = Some(r);
                return true;
            }
            readiness.is_ready(o)
        };
        let watch = wait::until(
            api.clone(),
            &id.name,
            deadline,
            &self.cancel,
            &self.module,
            ready,
        );
        let waited = if readiness == Readiness::Application {
            // Argo CD 3 ignores status-only updates of the resources it watches unless it sees
            // their health change, so an Application can stay Progressing after what it
            // deployed is ready, until its next periodic refresh (up to 3 minutes): ask for a
            // refresh while it waits there.
            tokio::select! {
                waited = watch => waited,
                () = wait::nudge_refresh(&api, &id.name) => unreachable!("the nudge never ends"),
            }
        } else {
            watch.await
        }
        .map_err(|e| self.reach(e))?;
        if let Some(r) = refused.into_inner().expect("not poisoned") {
            return Err(Error::from(KubeError::ApplicationRefused(Box::new(
                ApplicationRefusal {
                    module: self.module.clone(),
                    application: id.to_string(),
                    chart: r.chart,
                    condition: r.condition,
                    message: r.message,
                    fix: r.fix,
                },
            ))));
        }
        match waited {
            Waited::Met => Ok(()),
            Waited::TimedOut(last) => Err(Error::from(KubeError::NotReady {
                object: id.to_string(),
                timeout: self.options.wait_timeout,
                last_status: wait::describe(last.as_deref()),
            })),
        }
    }
}
