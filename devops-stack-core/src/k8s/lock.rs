//! The per-stack lock: a `coordination.k8s.io/v1` Lease in the state namespace; see [`StackLock`].

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams, Preconditions};
use tokio_util::sync::CancellationToken;

use super::KubeError;
use super::KubeOptions;
use super::retry::{Retry, code};
use super::state::ensure_namespace;
use crate::error::{Error, Result};
use crate::run_lock::LockInfo;

/// The name of the Lease that locks `stack`.
pub fn lock_name(stack: &str) -> String {
    format!("devops-stack-lock-{stack}")
}

/// Who holds a Lease, as seen at one moment.
#[derive(Debug, PartialEq, Eq)]
enum Holder {
    /// Nobody, or a holder whose lease expired.
    Free,
    /// The one asking.
    Me,
    /// Someone else, live.
    Other {
        holder: String,
        renewed_ago: u64,
        expires_in: u64,
    },
}

fn holder_of(lease: &Lease, me: &str, now: Timestamp) -> Holder {
    let Some(spec) = &lease.spec else {
        return Holder::Free;
    };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder.is_empty() {
        return Holder::Free;
    }
    if holder == me {
        return Holder::Me;
    }
    let renewed = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map_or(0, |t| t.0.as_second());
    let renewed_ago = (now.as_second() - renewed).max(0);
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(0));
    if renewed_ago >= duration {
        Holder::Free
    } else {
        Holder::Other {
            holder,
            renewed_ago: renewed_ago.unsigned_abs(),
            expires_in: (duration - renewed_ago).unsigned_abs(),
        }
    }
}

/// Fails with [`Error::LockHeld`] when another live holder has `stack`'s lock (one GET, no write).
pub(crate) async fn check_unlocked(
    client: &kube::Client,
    namespace: &str,
    stack: &str,
    retry: &Retry,
) -> Result<()> {
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let name = lock_name(stack);
    let lease = retry
        .run(false, "reading the stack lock", || api.get_opt(&name))
        .await
        .map_err(|e| Error::kube(format!("reading Lease {namespace}/{name}"), e))?;
    match lease.map(|l| holder_of(&l, "", Timestamp::now())) {
        Some(Holder::Other {
            holder,
            renewed_ago,
            expires_in,
        }) => Err(Error::LockHeld {
            stack: stack.to_owned(),
            holder,
            lease: format!("{namespace}/{name}"),
            renewed_secs_ago: renewed_ago,
            expires_in_secs: expires_in,
        }),
        _ => Ok(()),
    }
}

/// How to take a [`StackLock`]; made by [`StackLock::builder`].
#[derive(Clone)]
pub struct LockBuilder {
    client: kube::Client,
    stack: String,
    namespace: String,
    holder: String,
    duration: Duration,
    retry: Retry,
}

impl std::fmt::Debug for LockBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockBuilder")
            .field("stack", &self.stack)
            .field("namespace", &self.namespace)
            .field("holder", &self.holder)
            .field("duration", &self.duration)
            .finish_non_exhaustive()
    }
}

impl LockBuilder {
    /// The namespace of the Lease (default `devops-stack-system`, like [`KubeOptions`]).
    #[must_use]
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// The holder identity written to the Lease (default: host name, process id and a random
    /// suffix, unique per lock).
    #[must_use]
    pub fn holder(mut self, holder: impl Into<String>) -> Self {
        self.holder = holder.into();
        self
    }

    /// How long the lock stays valid without renewal (default 60 s, at least 3 s). A crashed
    /// holder's lock is taken over after this long.
    #[must_use]
    pub fn lease_duration(mut self, d: Duration) -> Self {
        self.duration = d.max(Duration::from_secs(3));
        self
    }

    /// How transient API faults are retried.
    #[must_use]
    pub fn retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// Takes the lock: creates the Lease, or takes it over when it is free or stale, and starts
    /// renewing it in the background.
    ///
    /// # Errors
    /// [`Error::LockHeld`] naming the holder when another live run has it; API errors.
    pub async fn acquire(self) -> Result<StackLock> {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), &self.namespace);
        let name = lock_name(&self.stack);
        let what = format!("Lease {}/{name}", self.namespace);
        // Each turn reads the Lease and tries one write; losing a race (409) means reading again.
        for _ in 0..5 {
            let current = self
                .retry
                .run(false, "reading the stack lock", || api.get_opt(&name))
                .await
                .map_err(|e| Error::kube(format!("reading {what}"), e))?;
            let now = Timestamp::now();
            let result = match current {
                None => {
                    let lease = Lease {
                        metadata: ObjectMeta {
                            name: Some(name.clone()),
                            namespace: Some(self.namespace.clone()),
                            ..ObjectMeta::default()
                        },
                        spec: Some(self.spec(now, 0)),
                    };
                    let pp = PostParams::default();
                    let created = self
                        .retry
                        .run(true, "creating the stack lock", || api.create(&pp, &lease))
                        .await;
                    if matches!(&created, Err(e) if code(e) == Some(404)) {
                        ensure_namespace(
                            &self.client,
                            &self.namespace,
                            "devops-stack-lock",
                            &self.retry,
                        )
                        .await?;
                        continue;
                    }
                    created
                }
                Some(mut lease) => match holder_of(&lease, &self.holder, now) {
                    Holder::Other {
                        holder,
                        renewed_ago,
                        expires_in,
                    } => {
                        return Err(Error::LockHeld {
                            stack: self.stack,
                            holder,
                            lease: format!("{}/{name}", self.namespace),
                            renewed_secs_ago: renewed_ago,
                            expires_in_secs: expires_in,
                        });
                    }
                    Holder::Free | Holder::Me => {
                        let transitions = lease
                            .spec
                            .as_ref()
                            .and_then(|s| s.lease_transitions)
                            .unwrap_or(0);
                        lease.spec = Some(self.spec(now, transitions + 1));
                        if let Some(prev) = &lease.metadata.resource_version {
                            tracing::info!("taking over {what} (resourceVersion {prev})");
                        }
                        let pp = PostParams::default();
                        self.retry
                            .run(true, "taking over the stack lock", || {
                                api.replace(&name, &pp, &lease)
                            })
                            .await
                    }
                },
            };
            match result {
                Ok(_) => return Ok(self.start()),
                Err(e) if matches!(code(&e), Some(409)) => continue,
                Err(e) => return Err(Error::kube(format!("taking {what}"), e)),
            }
        }
        Err(KubeError::KeptChanging {
            object: what,
            action: "the lock was being taken".into(),
            fix: "other runs keep changing it; try again".into(),
        }
        .into())
    }

    fn spec(&self, now: Timestamp, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.holder.clone()),
            lease_duration_seconds: Some(
                i32::try_from(self.duration.as_secs()).unwrap_or(i32::MAX),
            ),
            acquire_time: Some(MicroTime(now)),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    fn start(self) -> StackLock {
        let inner = Arc::new(Inner {
            stop: CancellationToken::new(),
            lost: Mutex::new(None),
            builder: self,
        });
        tokio::spawn(renew(Arc::downgrade(&inner), inner.stop.clone()));
        StackLock { inner }
    }
}

struct Inner {
    builder: LockBuilder,
    stop: CancellationToken,
    /// Set when the lease was taken by someone else: their identity.
    lost: Mutex<Option<String>>,
}

/// A held lock on a stack: one run at a time may apply or destroy it.
///
/// # How the lock spans a run
///
/// A run of a stack has many modules, several in parallel, each with its own [`Deployer`]. A
/// lock taken by each deployer would make the modules of one run exclude each other, and one
/// released between two modules would let another run slip in. So the lock belongs to the
/// *caller*: take a [`StackLock`] before [`BuiltStack::apply`](crate::BuiltStack::apply) or
/// `destroy`, hand it to the run with [`KubeEngine::lock`](super::KubeEngine::lock),
/// and [`release`](StackLock::release) it after. While held, a background task renews the Lease
/// every third of its duration; the deployers of the run check before writing that it was not
/// lost. A deployer whose run holds no `StackLock` takes none, but still refuses to write while
/// another holder's lease is live, so an unlocked run never interleaves with a locked one.
///
/// A holder that died stops renewing; once `renewTime + leaseDurationSeconds` has passed, the
/// next [`StackLock::acquire`] takes the Lease over (with a `resourceVersion` precondition, so
/// that two takers cannot both win).
///
/// [`Deployer`]: super::Deployer
///
/// ```no_run
/// use devops_stack_core::k8s::{KubeEngine, KubeOptions, StackLock};
/// use devops_stack_core::{RunOptions, Stack};
/// # async fn run(client: kube::Client, stack: devops_stack_core::BuiltStack) -> devops_stack_core::Result<()> {
/// let options = KubeOptions::default();
/// let lock = StackLock::acquire(client, stack.name(), &options).await?;
/// let engine = KubeEngine::new(options).lock(lock.clone());
/// let result = stack.apply(&RunOptions::new().engine(engine)).await;
/// lock.release().await?;
/// result?;
/// # Ok(())
/// # }
/// ```
///
/// Dropping the last clone without [`release`](StackLock::release) stops the renewal; the
/// Lease is then free once its duration has passed.
#[derive(Clone)]
pub struct StackLock {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for StackLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StackLock")
            .field("stack", &self.inner.builder.stack)
            .field("holder", &self.inner.builder.holder)
            .finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl StackLock {
    /// How to lock `stack` on the cluster of `client`.
    pub fn builder(client: kube::Client, stack: impl Into<String>) -> LockBuilder {
        LockBuilder {
            client,
            stack: stack.into(),
            namespace: KubeOptions::default().state_namespace,
            holder: default_holder(),
            duration: Duration::from_secs(60),
            retry: Retry::default(),
        }
    }

    /// Locks `stack` with the defaults, in `options.state_namespace`.
    ///
    /// # Errors
    /// As [`LockBuilder::acquire`].
    pub async fn acquire(
        client: kube::Client,
        stack: &str,
        options: &KubeOptions,
    ) -> Result<StackLock> {
        StackLock::builder(client, stack)
            .namespace(&options.state_namespace)
            .acquire()
            .await
    }

    /// Runs `f` while holding `stack`'s lock (taken with [`StackLock::acquire`]) and releases it
    /// after, whether `f` succeeded or not.
    ///
    /// ```no_run
    /// use devops_stack_core::k8s::{KubeEngine, KubeOptions, StackLock};
    /// use devops_stack_core::RunOptions;
    /// # async fn run(client: kube::Client, stack: devops_stack_core::BuiltStack) -> devops_stack_core::Result<()> {
    /// let options = KubeOptions::default();
    /// let report = StackLock::scope(client, stack.name(), &options, async |lock| {
    ///     stack.apply(&RunOptions::new().engine(KubeEngine::new(options.clone()).lock(lock))).await
    /// })
    /// .await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::LockHeld`] when another run holds the lock; `f`'s error; API errors of the release.
    pub async fn scope<T>(
        client: kube::Client,
        stack: &str,
        options: &KubeOptions,
        f: impl AsyncFnOnce(StackLock) -> Result<T>,
    ) -> Result<T> {
        let lock = StackLock::acquire(client, stack, options).await?;
        let result = f(lock.clone()).await;
        let released = lock.release().await;
        let value = result?;
        released.map(|()| value)
    }

    /// The stack.
    pub fn stack(&self) -> &str {
        &self.inner.builder.stack
    }

    /// Who holds the Lease of `stack` in `options.state_namespace`, live or stale; `None` when
    /// there is none.
    ///
    /// # Errors
    /// API errors.
    pub async fn inspect(
        client: &kube::Client,
        stack: &str,
        options: &KubeOptions,
    ) -> Result<Option<LockInfo>> {
        Ok(Self::read_lease(client, stack, options)
            .await?
            .and_then(|(_, info)| info))
    }

    /// The Lease of `stack` and what it says of its holder.
    async fn read_lease(
        client: &kube::Client,
        stack: &str,
        options: &KubeOptions,
    ) -> Result<Option<(Lease, Option<LockInfo>)>> {
        let ns = &options.state_namespace;
        let api: Api<Lease> = Api::namespaced(client.clone(), ns);
        let name = lock_name(stack);
        let lease = Retry::default()
            .run(false, "reading the stack lock", || api.get_opt(&name))
            .await
            .map_err(|e| Error::kube(format!("reading Lease {ns}/{name}"), e))?;
        Ok(lease.map(|l| {
            let info = lease_info(&l, &format!("Lease {ns}/{name}"));
            (l, info)
        }))
    }

    /// Breaks the lock of `stack`: deletes its Lease and returns who held it. A holder that
    /// renewed within its lease (a live run) is refused with [`Error::LockHeld`] unless `force`.
    /// Unforced, the Lease is deleted only as it was read: a holder that renewed in between is
    /// refused too, as live.
    ///
    /// # Errors
    /// [`Error::LockHeld`]; API errors.
    pub async fn unlock(
        client: &kube::Client,
        stack: &str,
        options: &KubeOptions,
        force: bool,
    ) -> Result<Option<LockInfo>> {
        let Some((lease, Some(info))) = Self::read_lease(client, stack, options).await? else {
            return Ok(None);
        };
        if info.is_live() && !force {
            return Err(info.held_error(stack));
        }
        let ns = &options.state_namespace;
        let api: Api<Lease> = Api::namespaced(client.clone(), ns);
        let name = lock_name(stack);
        let dp = DeleteParams {
            preconditions: (!force).then_some(Preconditions {
                resource_version: lease.metadata.resource_version,
                uid: None,
            }),
            ..DeleteParams::default()
        };
        match Retry::default()
            .run(true, "breaking the stack lock", || api.delete(&name, &dp))
            .await
        {
            Ok(_) => Ok(Some(info)),
            Err(e) if code(&e) == Some(404) => Ok(Some(info)),
            // renewed since it was read: live
            Err(e) if code(&e) == Some(409) => {
                let renewed = LockInfo {
                    renewed_ago: std::time::Duration::ZERO,
                    ..info
                };
                Err(renewed.held_error(stack))
            }
            Err(e) => Err(Error::kube(format!("deleting Lease {ns}/{name}"), e)),
        }
    }

    /// The holder identity in the Lease.
    pub fn holder(&self) -> &str {
        &self.inner.builder.holder
    }

    /// Fails with [`Error::LockLost`] when the lock was taken over since it was acquired.
    pub(crate) fn ensure_held(&self) -> Result<()> {
        match &*self
            .inner
            .lost
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            None => Ok(()),
            Some(holder) => Err(Error::LockLost {
                stack: self.stack().to_owned(),
                holder: holder.clone(),
            }),
        }
    }

    /// Stops renewing and deletes the Lease (if this run still holds it).
    ///
    /// # Errors
    /// API errors.
    pub async fn release(self) -> Result<()> {
        self.inner.stop.cancel();
        let b = &self.inner.builder;
        let api: Api<Lease> = Api::namespaced(b.client.clone(), &b.namespace);
        let name = lock_name(&b.stack);
        let lease = b
            .retry
            .run(false, "reading the stack lock", || api.get_opt(&name))
            .await
            .map_err(|e| Error::kube(format!("reading Lease {}/{name}", b.namespace), e))?;
        let Some(lease) = lease.filter(|l| holder_of(l, &b.holder, Timestamp::now()) == Holder::Me)
        else {
            return Ok(());
        };
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: lease.metadata.resource_version,
                uid: None,
            }),
            ..DeleteParams::default()
        };
        match b
            .retry
            .run(true, "releasing the stack lock", || api.delete(&name, &dp))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if matches!(code(&e), Some(404 | 409)) => Ok(()),
            Err(e) => Err(Error::kube(
                format!("deleting Lease {}/{name}", b.namespace),
                e,
            )),
        }
    }
}

/// What a Lease says of its holder; `None` for a Lease nobody holds.
fn lease_info(lease: &Lease, location: &str) -> Option<LockInfo> {
    let spec = lease.spec.as_ref()?;
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty())?;
    let now = Timestamp::now().as_second();
    let ago = |t: Option<&MicroTime>| {
        Duration::from_secs(t.map_or(0, |t| (now - t.0.as_second()).max(0).unsigned_abs()))
    };
    Some(LockInfo {
        holder,
        location: location.to_owned(),
        held_for: ago(spec.acquire_time.as_ref()),
        renewed_ago: ago(spec.renew_time.as_ref().or(spec.acquire_time.as_ref())),
        lease: Duration::from_secs(
            u64::try_from(spec.lease_duration_seconds.unwrap_or(0)).unwrap_or(0),
        ),
    })
}

/// Renews the lease every third of its duration until stopped, lost, or the lock is dropped.
async fn renew(inner: Weak<Inner>, stop: CancellationToken) {
    loop {
        let Some(period) = inner.upgrade().map(|i| i.builder.duration / 3) else {
            return;
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(period) => {}
        }
        let Some(inner) = inner.upgrade() else { return };
        let b = &inner.builder;
        let api: Api<Lease> = Api::namespaced(b.client.clone(), &b.namespace);
        let name = lock_name(&b.stack);
        let step = async {
            let Some(mut lease) = api.get_opt(&name).await? else {
                return Ok(Some(String::new()));
            };
            let now = Timestamp::now();
            if holder_of(&lease, &b.holder, now) != Holder::Me {
                return Ok(lease.spec.and_then(|s| s.holder_identity));
            }
            if let Some(spec) = lease.spec.as_mut() {
                spec.renew_time = Some(MicroTime(now));
            }
            api.replace(&name, &PostParams::default(), &lease)
                .await
                .map(|_| None)
        };
        match step.await {
            Ok(None) => {}
            Ok(Some(other)) => {
                tracing::error!("the lock of stack `{}` was taken by `{other}`", b.stack);
                *inner
                    .lost
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(other);
                return;
            }
            Err(e) => tracing::warn!(
                "renewing the lock of stack `{}` failed (will retry): {e}",
                b.stack
            ),
        }
    }
}

fn default_holder() -> String {
    let host = crate::run_lock::host_name();
    let suffix: u32 = rand::random();
    format!("{host}/{}/{suffix:08x}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, renewed_ago: i64, duration: i32) -> Lease {
        let now = Timestamp::now().as_second();
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                lease_duration_seconds: Some(duration),
                renew_time: Some(MicroTime(
                    Timestamp::from_second(now - renewed_ago).unwrap(),
                )),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn holder_states() {
        let now = Timestamp::now();
        assert_eq!(
            holder_of(&lease("a", 10, 60), "me", now),
            Holder::Other {
                holder: "a".into(),
                renewed_ago: 10,
                expires_in: 50
            }
        );
        assert_eq!(
            holder_of(&lease("a", 61, 60), "me", now),
            Holder::Free,
            "stale"
        );
        assert_eq!(holder_of(&lease("me", 1, 60), "me", now), Holder::Me);
        assert_eq!(holder_of(&lease("", 1, 60), "me", now), Holder::Free);
        assert!(
            default_holder() != default_holder(),
            "holders are unique per lock"
        );
    }
}
