//! [`S3Lock`]: a stack's run lock kept in an S3 bucket of the account, so that two runs cannot
//! change one stack at once even before its cluster exists (a first apply).
//!
//! The lock is one object, `<prefix><stack>.lock.json`, written only if absent (`If-None-Match:
//! *`, S3's conditional write, as Terraform's S3 backend locks with `use_lockfile`). The holder
//! renews it every third of its lease by overwriting it only if it is still the object it wrote
//! (`If-Match: <etag>`); a holder that stopped renewing for longer than its lease is taken over
//! the same way, so two takers cannot both win. Release deletes it, again only if it is still
//! the holder's.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::primitives::ByteStream;
use devops_stack_core::run_lock::{HeldLock, LockInfo, RunLock};
use devops_stack_core::{BoxError, CancellationToken};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::config::AwsConfig;

type CoreResult<T> = devops_stack_core::Result<T>;

/// A stack lock in an S3 bucket (which must exist: a state bucket, as for Terraform).
///
/// ```
/// use std::time::Duration;
/// use devops_stack_aws::lock::S3Lock;
/// use devops_stack_core::run_lock::RunLock;
/// let lock = S3Lock::new("acme-platform-state")
///     .prefix("locks/")
///     .lease(Duration::from_secs(60));
/// assert_eq!(lock.location("prod"), "s3://acme-platform-state/locks/prod.lock.json");
/// ```
#[derive(Debug, Clone)]
pub struct S3Lock {
    bucket: String,
    prefix: String,
    lease: Duration,
    aws: AwsConfig,
}

/// What the lock object holds.
#[derive(Debug, Serialize, Deserialize)]
struct Body {
    holder: String,
    /// Seconds since the epoch.
    acquired: u64,
    renewed: u64,
    lease_secs: u64,
}

impl S3Lock {
    /// A lock in `bucket`, under `devops-stack/locks/`, with a 60 s lease and the SDK's
    /// default configuration.
    pub fn new(bucket: impl Into<String>) -> Self {
        S3Lock {
            bucket: bucket.into(),
            prefix: "devops-stack/locks/".into(),
            lease: Duration::from_secs(60),
            aws: AwsConfig::new(),
        }
    }

    /// The key prefix of lock objects.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long a holder that stops renewing keeps the lock (at least 3 s).
    #[must_use]
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_secs(3));
        self
    }

    /// The AWS configuration (region, endpoint, credentials).
    #[must_use]
    pub fn aws(mut self, aws: AwsConfig) -> Self {
        self.aws = aws;
        self
    }

    fn key(&self, stack: &str) -> String {
        format!("{}{stack}.lock.json", self.prefix)
    }

    async fn client(&self, stack: &str) -> CoreResult<aws_sdk_s3::Client> {
        let sdk = self
            .aws
            .load()
            .await
            .map_err(|e| self.failed("loading the AWS configuration for", stack, e))?;
        Ok(self.aws.s3_addressed(&sdk))
    }

    fn failed(
        &self,
        action: &str,
        stack: &str,
        e: impl Into<BoxError>,
    ) -> devops_stack_core::Error {
        devops_stack_core::Error::Lock {
            action: action.to_owned(),
            location: self.location(stack),
            source: e.into(),
        }
    }

    /// The lock object and its ETag, if there is one.
    async fn read(
        &self,
        s3: &aws_sdk_s3::Client,
        stack: &str,
    ) -> CoreResult<Option<(Body, String)>> {
        let got = match s3
            .get_object()
            .bucket(&self.bucket)
            .key(self.key(stack))
            .send()
            .await
        {
            Ok(got) => got,
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(self.failed("reading", stack, e)),
        };
        let etag = got.e_tag().unwrap_or_default().to_owned();
        let bytes = got
            .body
            .collect()
            .await
            .map_err(|e| self.failed("reading", stack, e))?
            .into_bytes();
        let body: Body =
            serde_json::from_slice(&bytes).map_err(|e| self.failed("parsing", stack, e))?;
        Ok(Some((body, etag)))
    }

    /// Writes the lock object: only if absent (`if_match` `None`) or only if it is still the
    /// object with that ETag. `Ok(None)` when the condition failed.
    async fn write(
        &self,
        s3: &aws_sdk_s3::Client,
        stack: &str,
        body: &Body,
        if_match: Option<&str>,
    ) -> CoreResult<Option<String>> {
        let json = serde_json::to_vec(body).map_err(|e| self.failed("writing", stack, e))?;
        let put = s3
            .put_object()
            .bucket(&self.bucket)
            .key(self.key(stack))
            .content_type("application/json")
            .body(ByteStream::from(json));
        let put = match if_match {
            None => put.if_none_match("*"),
            Some(etag) => put.if_match(etag),
        };
        match put.send().await {
            Ok(out) => Ok(Some(out.e_tag().unwrap_or_default().to_owned())),
            Err(e) if condition_failed(&e) => Ok(None),
            // `If-Match` on an object that is gone (the lock was broken)
            Err(e)
                if if_match.is_some()
                    && e.raw_response().is_some_and(|r| r.status().as_u16() == 404) =>
            {
                Ok(None)
            }
            Err(e) => Err(self.failed("writing", stack, e)),
        }
    }

    fn info(&self, stack: &str, body: &Body) -> LockInfo {
        let now = now_secs();
        LockInfo {
            holder: body.holder.clone(),
            location: self.location(stack),
            held_for: Duration::from_secs(now.saturating_sub(body.acquired)),
            renewed_ago: Duration::from_secs(now.saturating_sub(body.renewed)),
            lease: Duration::from_secs(body.lease_secs),
        }
    }

    async fn delete(
        &self,
        s3: &aws_sdk_s3::Client,
        stack: &str,
        if_match: Option<&str>,
    ) -> CoreResult<()> {
        match s3
            .delete_object()
            .bucket(&self.bucket)
            .key(self.key(stack))
            .set_if_match(if_match.map(ToOwned::to_owned))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // someone else's now (taken over after our lease ran out): not ours to delete
            Err(e) if condition_failed(&e) => Ok(()),
            Err(e) => Err(self.failed("deleting", stack, e)),
        }
    }
}

impl RunLock for S3Lock {
    fn location(&self, stack: &str) -> String {
        format!("s3://{}/{}", self.bucket, self.key(stack))
    }

    fn acquire<'a>(
        &'a self,
        stack: &'a str,
        holder: &'a str,
    ) -> BoxFuture<'a, CoreResult<Box<dyn HeldLock>>> {
        Box::pin(async move {
            let s3 = self.client(stack).await?;
            let now = now_secs();
            let body = Body {
                holder: holder.to_owned(),
                acquired: now,
                renewed: now,
                lease_secs: self.lease.as_secs(),
            };
            // Each turn: write if absent; else take over a stale holder's object by its ETag.
            for _ in 0..5 {
                if let Some(etag) = self.write(&s3, stack, &body, None).await? {
                    return Ok(self.hold(s3, stack, body, etag));
                }
                let Some((current, etag)) = self.read(&s3, stack).await? else {
                    continue; // released in between
                };
                let info = self.info(stack, &current);
                if info.is_live() && current.holder != holder {
                    return Err(info.held_error(stack));
                }
                tracing::info!(
                    "taking over the stale lock {} of `{}`",
                    info.location,
                    info.holder
                );
                if let Some(etag) = self.write(&s3, stack, &body, Some(&etag)).await? {
                    return Ok(self.hold(s3, stack, body, etag));
                }
            }
            Err(self.failed(
                "taking (other runs keep changing it; try again)",
                stack,
                "conditional writes kept failing",
            ))
        })
    }

    fn inspect<'a>(&'a self, stack: &'a str) -> BoxFuture<'a, CoreResult<Option<LockInfo>>> {
        Box::pin(async move {
            let s3 = self.client(stack).await?;
            Ok(self
                .read(&s3, stack)
                .await?
                .map(|(body, _)| self.info(stack, &body)))
        })
    }

    fn unlock<'a>(
        &'a self,
        stack: &'a str,
        force: bool,
    ) -> BoxFuture<'a, CoreResult<Option<LockInfo>>> {
        Box::pin(async move {
            let s3 = self.client(stack).await?;
            let Some((body, etag)) = self.read(&s3, stack).await? else {
                return Ok(None);
            };
            let info = self.info(stack, &body);
            if info.is_live() && !force {
                return Err(info.held_error(stack));
            }
            self.delete(&s3, stack, Some(&etag)).await?;
            Ok(Some(info))
        })
    }
}

impl S3Lock {
    /// A held lock renewed in the background.
    fn hold(
        &self,
        s3: aws_sdk_s3::Client,
        stack: &str,
        body: Body,
        etag: String,
    ) -> Box<dyn HeldLock> {
        let held = Arc::new(Held {
            lock: self.clone(),
            stack: stack.to_owned(),
            s3,
            state: tokio::sync::Mutex::new((body, etag)),
            stop: CancellationToken::new(),
            lost: CancellationToken::new(),
        });
        tokio::spawn(renew(held.clone()));
        Box::new(HeldS3(held))
    }
}

struct Held {
    lock: S3Lock,
    stack: String,
    s3: aws_sdk_s3::Client,
    /// The object as last written, and its ETag.
    state: tokio::sync::Mutex<(Body, String)>,
    stop: CancellationToken,
    lost: CancellationToken,
}

struct HeldS3(Arc<Held>);

impl HeldLock for HeldS3 {
    fn lost(&self) -> CancellationToken {
        self.0.lost.clone()
    }

    fn release(self: Box<Self>) -> BoxFuture<'static, CoreResult<()>> {
        let held = self.0.clone();
        Box::pin(async move {
            held.stop.cancel();
            let state = held.state.lock().await;
            if held.lost.is_cancelled() {
                return Ok(());
            }
            held.lock
                .delete(&held.s3, &held.stack, Some(&state.1))
                .await
        })
    }
}

/// Renews every third of the lease until released; a failed condition means the lock was
/// broken or taken over: `lost` fires.
async fn renew(held: Arc<Held>) {
    let period = held.lock.lease / 3;
    loop {
        tokio::select! {
            () = held.stop.cancelled() => return,
            () = tokio::time::sleep(period) => {}
        }
        let mut state = held.state.lock().await;
        if held.stop.is_cancelled() {
            return;
        }
        state.0.renewed = now_secs();
        let etag = state.1.clone();
        match held
            .lock
            .write(&held.s3, &held.stack, &state.0, Some(&etag))
            .await
        {
            Ok(Some(new)) => state.1 = new,
            Ok(None) => {
                tracing::warn!(
                    "the lock {} was taken away",
                    held.lock.location(&held.stack)
                );
                held.lost.cancel();
                return;
            }
            // a transient failure: the next turn tries again, within the lease
            Err(e) => tracing::warn!("renewing the lock failed: {e}"),
        }
    }
}

/// Whether S3 refused a conditional request (412 Precondition Failed; 409 for a concurrent
/// conditional write).
fn condition_failed<E>(
    e: &aws_smithy_runtime_api::client::result::SdkError<
        E,
        aws_smithy_runtime_api::client::orchestrator::HttpResponse,
    >,
) -> bool {
    e.raw_response()
        .is_some_and(|r| matches!(r.status().as_u16(), 412 | 409))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
