//! The S3 run lock against moto: a second holder is refused naming the first; `unlock` refuses
//! a live lock unless forced, and a forced unlock makes the holder's renewal notice it lost the
//! lock; a stale holder is taken over; release deletes only the holder's own object.

mod common;

use std::time::Duration;

use devops_stack_aws::lock::S3Lock;
use devops_stack_core::Error;
use devops_stack_core::run_lock::RunLock;

const BUCKET: &str = "platform-state";

async fn lock(ep: &str) -> (S3Lock, aws_sdk_s3::Client) {
    let s3 = common::s3(&common::sdk(ep).await);
    let _ = s3.create_bucket().bucket(BUCKET).send().await;
    let lock = S3Lock::new(BUCKET)
        .lease(Duration::from_secs(3))
        .aws(common::aws(ep));
    (lock, s3)
}

#[tokio::test]
#[ignore = "needs moto (DEVOPS_STACK_TEST_AWS_ENDPOINT): scripts/test.sh starts it"]
async fn a_second_holder_is_refused_and_a_live_lock_is_only_broken_by_force() {
    let ep = common::endpoint();
    let _serial = common::LOCK.lock().await;
    let (lock, s3) = lock(&ep).await;
    let stack = "lock-live";
    let first = lock.acquire(stack, "alice@ci pid 1").await.unwrap();

    let second = lock.acquire(stack, "bob@laptop pid 2").await;
    let Err(Error::LockHeld { holder, lease, .. }) = &second else {
        panic!("expected LockHeld, got {:?}", second.map(|_| ()))
    };
    assert_eq!(holder, "alice@ci pid 1");
    assert_eq!(
        lease,
        &format!("s3://{BUCKET}/devops-stack/locks/{stack}.lock.json")
    );

    let info = lock.inspect(stack).await.unwrap().expect("held");
    assert_eq!(info.holder, "alice@ci pid 1");
    assert!(info.is_live());

    // unlock refuses a live holder, naming it, and leaves the lock in place
    let refused = lock.unlock(stack, false).await;
    assert!(
        matches!(&refused, Err(Error::LockHeld { holder, .. }) if holder == "alice@ci pid 1"),
        "{refused:?}"
    );
    assert!(lock.inspect(stack).await.unwrap().is_some());

    // forced: broken; the holder's next renewal (every lease/3 = 1 s) finds it gone
    let broken = lock.unlock(stack, true).await.unwrap().expect("was held");
    assert_eq!(broken.holder, "alice@ci pid 1");
    let lost = first.lost();
    tokio::time::timeout(Duration::from_secs(5), lost.cancelled())
        .await
        .expect("the holder notices it lost the lock");
    // its release does not delete another holder's lock
    let third = lock.acquire(stack, "carol pid 3").await.unwrap();
    first.release().await.unwrap();
    assert_eq!(
        lock.inspect(stack).await.unwrap().map(|i| i.holder),
        Some("carol pid 3".to_owned())
    );
    third.release().await.unwrap();
    assert!(lock.inspect(stack).await.unwrap().is_none());
    let keys = s3.list_objects_v2().bucket(BUCKET).send().await.unwrap();
    assert!(
        keys.contents()
            .iter()
            .all(|o| !o.key().unwrap_or_default().contains(stack)),
        "the lock object is gone"
    );
}

#[tokio::test]
#[ignore = "needs moto (DEVOPS_STACK_TEST_AWS_ENDPOINT): scripts/test.sh starts it"]
async fn a_holder_that_stopped_renewing_is_taken_over_after_its_lease() {
    let ep = common::endpoint();
    let _serial = common::LOCK.lock().await;
    let (lock, s3) = lock(&ep).await;
    let stack = "lock-stale";
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // what a run that crashed leaves: its object, last renewed 10 s ago with a 3 s lease
    let crashed = |renewed: u64| {
        serde_json::json!({"holder": "crashed pid 9", "acquired": now - 60, "renewed": renewed, "lease_secs": 3})
            .to_string()
    };
    let key = format!("devops-stack/locks/{stack}.lock.json");
    s3.put_object()
        .bucket(BUCKET)
        .key(&key)
        .body(crashed(now).into_bytes().into())
        .send()
        .await
        .unwrap();
    // renewed just now: live, refused
    assert!(matches!(
        lock.acquire(stack, "next pid 10").await,
        Err(Error::LockHeld { .. })
    ));
    s3.put_object()
        .bucket(BUCKET)
        .key(&key)
        .body(crashed(now - 10).into_bytes().into())
        .send()
        .await
        .unwrap();
    let info = lock.inspect(stack).await.unwrap().unwrap();
    assert!(!info.is_live(), "{info:?}");
    assert!(info.held_for >= Duration::from_secs(60));
    // stale: taken over
    let next = lock.acquire(stack, "next pid 10").await.unwrap();
    assert_eq!(
        lock.inspect(stack).await.unwrap().map(|i| i.holder),
        Some("next pid 10".to_owned())
    );
    next.release().await.unwrap();
    assert!(lock.inspect(stack).await.unwrap().is_none());
}
