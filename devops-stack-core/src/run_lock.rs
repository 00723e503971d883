//! A lock that keeps two runs of one stack apart wherever the stack has somewhere to keep it:
//! before its cluster exists, that is the cloud account (an S3 object written only if absent,
//! in `devops_stack_aws::lock`); the Kubernetes engine's own is a Lease in the cluster
//! ([`StackLock`](crate::k8s::StackLock)). The command line holds it for a whole run.

use std::time::Duration;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

/// Who holds a lock, as seen at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockInfo {
    /// The holder's identity (`user@host pid 123`).
    pub holder: String,
    /// Where the lock is kept (`s3://bucket/key`, `Lease ns/name`).
    pub location: String,
    /// Since the holder took it.
    pub held_for: Duration,
    /// Since the holder last renewed it.
    pub renewed_ago: Duration,
    /// How long a holder that stops renewing keeps it.
    pub lease: Duration,
}

impl LockInfo {
    /// Whether the holder renewed it within its lease: a live run holds it.
    pub fn is_live(&self) -> bool {
        self.renewed_ago < self.lease
    }

    /// [`Error::LockHeld`] for this holder, on `stack`.
    pub fn held_error(&self, stack: &str) -> Error {
        Error::LockHeld {
            stack: stack.to_owned(),
            holder: self.holder.clone(),
            lease: self.location.clone(),
            renewed_secs_ago: self.renewed_ago.as_secs(),
            expires_in_secs: self.lease.saturating_sub(self.renewed_ago).as_secs(),
        }
    }
}

/// A place that keeps a stack's lock.
pub trait RunLock: Send + Sync {
    /// Where it keeps the lock of `stack`, for messages.
    fn location(&self, stack: &str) -> String;

    /// Takes the lock of `stack` for `holder`, or fails with [`Error::LockHeld`] naming the live
    /// holder. A holder that stopped renewing longer than its lease ago is taken over.
    fn acquire<'a>(
        &'a self,
        stack: &'a str,
        holder: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn HeldLock>>>;

    /// Who holds the lock of `stack`, if anyone.
    fn inspect<'a>(&'a self, stack: &'a str) -> BoxFuture<'a, Result<Option<LockInfo>>>;

    /// Removes the lock of `stack` and returns who held it. A live holder is refused with
    /// [`Error::LockHeld`] unless `force`.
    fn unlock<'a>(&'a self, stack: &'a str, force: bool)
    -> BoxFuture<'a, Result<Option<LockInfo>>>;
}

/// A held lock: renewed in the background until released.
pub trait HeldLock: Send + Sync {
    /// Fires when the lock was taken away (broken by a forced unlock): the run should stop.
    fn lost(&self) -> CancellationToken;

    /// Stops renewing and removes the lock, if it is still this holder's.
    fn release(self: Box<Self>) -> BoxFuture<'static, Result<()>>;
}

/// The identity a run holds locks as: `user@host pid N`.
pub fn holder_identity() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "someone".into());
    format!("{user}@{} pid {}", host_name(), std::process::id())
}

/// This machine's name (`HOSTNAME`, else `/etc/hostname`, else `localhost`).
pub(crate) fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
