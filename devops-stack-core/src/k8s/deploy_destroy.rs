//! [`Deployer::destroy`]: the module's inventory deleted, dependents' deletions awaited.

use super::*;

impl Deployer {
    /// Deletes the module's objects, each only if it still carries the module's labels: Argo CD
    /// Applications first, with Argo CD's resources finalizer, waited for until gone; then the
    /// rest in parallel; namespaces and CRDs finish terminating in the background when this is
    /// part of a stack run (the run waits for them; see [`settle`]), and are waited for here
    /// otherwise. All within [`KubeOptions::wait_timeout`]. Then removes the module's entry from
    /// the state. Objects already gone are fine, so it is safe to run again. In a stack run, the
    /// first destroy on a cluster first destroys the modules the state records and the stack no
    /// longer has.
    ///
    /// # Errors
    /// API errors, [`KubeError::NotDeleted`] for an Application that stays (naming
    /// [`StuckApplications`]), [`KubeError::NamespaceStuck`] naming namespaces stuck in finalizers,
    /// [`Error::LockHeld`], [`KubeError::Unreachable`].
    pub async fn destroy(&self) -> Result<DestroyReport> {
        let abandon = |reason: String| {
            if let Some(run) = &self.run {
                run.tracker.forget(&self.target.cluster);
            }
            self.progress(&format!(
                "abandoning the objects of module `{}` in cluster `{}` (AbandonInCluster): {reason}",
                self.module, self.target.cluster
            ));
            Ok(DestroyReport {
                abandoned: Some(reason),
                ..DestroyReport::default()
            })
        };
        if let Some(reason) = &self.abandoned {
            return abandon(reason.clone());
        }
        match self.guard().await {
            Err(e) if self.abandons(&e) => return abandon(e.to_string()),
            other => other?,
        }
        if let Some(RunLink {
            ctx: Some(ctx),
            tracker,
            ..
        }) = &self.run
        {
            tracker
                .destroy_removed(&self.target.cluster, &self.client, ctx)
                .await?;
        }
        let store = self.store();
        let previous = match store.read().await.map_err(|e| self.reach(e)) {
            Err(e) if self.abandons(&e) => return abandon(e.to_string()),
            other => other?,
        };
        let Some(previous) = previous else {
            return Ok(DestroyReport::default());
        };
        let mut resolver = self.resolver();
        let mut doomed: Vec<(ObjectRef, Resolved)> = Vec::new();
        for e in &previous.objects {
            // A kind no longer served took its objects with it.
            if let Some(r) = resolver
                .lookup(&e.object)
                .await
                .map_err(|e| self.reach(e))?
            {
                let id = resolver.scoped(&r, &e.object);
                if !doomed.iter().any(|(d, _)| d == &id) {
                    doomed.push((id, r));
                }
            }
        }
        let mut live = live::read(self, &resolver, &doomed, Depth::Metadata).await?;
        let targets = doomed
            .into_iter()
            .map(|(id, r)| {
                let l = live.remove(&id);
                (id, r, l)
            })
            .collect();
        let deadline = Instant::now() + self.options.wait_timeout;
        let report = self.remove(targets, deadline).await?;
        store.write(None).await?;
        Ok(report)
    }
}
