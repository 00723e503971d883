//! The ready command line (`devops_stack::cli`) with its lock in S3 (moto): two first applies
//! of one stack at once, before any cluster exists: the second is refused with the holder's
//! name and nothing of it runs; `unlock` refuses the live lock, naming its holder; once the run
//! ends the lock is gone. Also the offline commands and a refused command line.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use devops_stack::aws::lock::S3Lock;
use devops_stack::cli::{Built, Cli, Outcome};
use devops_stack::clusters::LocalCluster;
use devops_stack::run_lock::RunLock;
use devops_stack::{Context, Error, Module, ModuleResult, Planned, RunOptions, Stack};
use devops_stack_test::aws::{aws, endpoint, s3, sdk};

/// A module whose apply takes a while and counts how often it ran.
struct Slow(Arc<AtomicUsize>);

impl Module for Slow {
    type Output = u64;
    fn id(&self) -> &str {
        "slow"
    }
    fn kind(&self) -> &'static str {
        "slow"
    }
    async fn plan(&self, _: &Context) -> ModuleResult<Planned<u64>> {
        Ok(Planned::new(0))
    }
    async fn apply(&self, _: &Context) -> ModuleResult<u64> {
        self.0.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(2)).await;
        Ok(1)
    }
    async fn destroy(&self, _: &Context) -> ModuleResult<()> {
        Ok(())
    }
}

fn cli(stack: &str, runs: &Arc<AtomicUsize>, lock: &S3Lock, holder: &str) -> Cli<LocalCluster> {
    let (stack, runs) = (stack.to_owned(), runs.clone());
    Cli::new(move |_| {
        let mut s = Stack::new(&stack);
        s.add(Slow(runs.clone()));
        Ok(Built::new(s.build()?, RunOptions::new()))
    })
    .lock(lock.clone())
    .holder(holder)
    .progress(false)
}

#[tokio::test]
#[ignore = "needs moto: scripts/test.sh starts it (DEVOPS_STACK_TEST_AWS_ENDPOINT)"]
async fn two_first_applies_at_once_the_second_is_refused_naming_the_holder() {
    let endpoint = endpoint();
    let s3 = s3(&sdk(&endpoint).await);
    let _ = s3.create_bucket().bucket("cli-state").send().await;
    let lock = S3Lock::new("cli-state").aws(aws(&endpoint));
    let stack = format!("cli-{}", std::process::id());
    let runs = Arc::new(AtomicUsize::new(0));

    let first = cli(&stack, &runs, &lock, "alice@ci pid 1").execute(["apply"]);
    let others = async {
        // the first holds the lock (it runs for 2 s)
        let mut held = None;
        for _ in 0..50 {
            held = lock.inspect(&stack).await.unwrap();
            if held.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(held.map(|h| h.holder).as_deref(), Some("alice@ci pid 1"));

        let second = cli(&stack, &runs, &lock, "bob@laptop pid 2")
            .execute(["apply"])
            .await;
        match &second {
            Err(Error::LockHeld { holder, lease, .. }) => {
                assert_eq!(holder, "alice@ci pid 1");
                assert!(lease.starts_with("s3://cli-state/"), "{lease}");
            }
            other => panic!("expected the second apply refused, got {other:?}"),
        }
        let err = second.unwrap_err().to_string();
        assert!(err.contains("alice@ci pid 1"), "{err}");

        // unlock without --force refuses the live lock, naming its holder
        let unlock = cli(&stack, &runs, &lock, "bob@laptop pid 2")
            .execute(["unlock"])
            .await;
        assert!(
            matches!(&unlock, Err(Error::LockHeld { holder, .. }) if holder == "alice@ci pid 1"),
            "{unlock:?}"
        );
    };
    let (first, ()) = tokio::join!(first, others);
    assert_eq!(first.unwrap(), Outcome::Done);
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "only the first apply ran the module"
    );
    assert!(lock.inspect(&stack).await.unwrap().is_none(), "released");
    // now the second goes through
    let again = cli(&stack, &runs, &lock, "bob@laptop pid 2")
        .execute(["apply"])
        .await
        .unwrap();
    assert_eq!(again, Outcome::Done);
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn offline_commands_run_without_a_cloud_and_a_wrong_command_line_is_refused() {
    let runs = Arc::new(AtomicUsize::new(0));
    let make = || {
        let runs = runs.clone();
        Cli::<LocalCluster>::new(move |_| {
            let mut s = Stack::new("offline");
            s.add(Slow(runs.clone()));
            Ok(Built::new(s.build()?, RunOptions::new()))
        })
    };
    assert_eq!(
        make().execute(["plan", "--json"]).await.unwrap(),
        Outcome::Done
    );
    assert_eq!(make().execute(["graph"]).await.unwrap(), Outcome::Done);
    // `diff` with no cluster: everything would be created
    assert_eq!(make().execute(["diff"]).await.unwrap(), Outcome::Changes);
    let wrong = make().execute(["destroy", "--abandon"]).await.unwrap_err();
    assert!(
        matches!(&wrong, Error::Invalid(e) if e[0].field == "command line"),
        "{wrong}"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 0, "nothing was applied");
}
