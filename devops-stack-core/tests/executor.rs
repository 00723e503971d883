//! The executor's scheduling, failure, cancellation and timeout behaviour, on tokio's paused
//! clock: sleeps advance virtual time exactly, so timings are asserted to the millisecond.

mod support;

use std::sync::atomic::Ordering;

use devops_stack_core::{CancellationToken, Error, Event, Phase, RunOptions, Stack, Status};
use support::{Probe, Recorder, ms};

#[tokio::test(start_paused = true)]
async fn modules_run_after_their_inputs_and_outputs_flow() {
    let r = Recorder::new();
    let mut s = Stack::new("t");
    let a = s.add(Probe::new("a", &r).sleep_ms(30));
    let b = s.add(Probe::new("b", &r).after(a.input()).sleep_ms(20));
    let c = s.add(Probe::new("c", &r).after(a.input()).after(b.input()));
    let report = s.build().unwrap().apply(&RunOptions::new()).await.unwrap();

    assert_eq!(r.start_of("b").unwrap(), r.end_of("a").unwrap());
    assert_eq!(r.start_of("c").unwrap(), r.end_of("b").unwrap());
    assert_eq!(*report.output(&a).unwrap(), 1);
    assert_eq!(*report.output(&b).unwrap(), 2);
    assert_eq!(*report.output(&c).unwrap(), 4);
    assert_eq!(report.critical_path, ["a", "b", "c"]);
    assert_eq!(report.critical_path_time, ms(60));
    assert_eq!(report.wall_time, ms(60));
}

#[tokio::test(start_paused = true)]
async fn independent_modules_overlap() {
    let r = Recorder::new();
    let mut s = Stack::new("t");
    for id in ["a", "b", "c"] {
        s.add(Probe::new(id, &r).sleep_ms(100));
    }
    let report = s.build().unwrap().apply(&RunOptions::new()).await.unwrap();
    assert_eq!(
        report.wall_time,
        ms(100),
        "three 100 ms modules ran side by side"
    );
    assert_eq!(r.max_running.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn a_module_starts_when_its_own_inputs_are_done_not_its_level() {
    // a (10 ms) -> c ; b (200 ms) has nothing to do with c. Level-by-level would start c at 200 ms.
    let r = Recorder::new();
    let mut s = Stack::new("t");
    let a = s.add(Probe::new("a", &r).sleep_ms(10));
    s.add(Probe::new("b", &r).sleep_ms(200));
    s.add(Probe::new("c", &r).after(a.input()).sleep_ms(10));
    s.build().unwrap().apply(&RunOptions::new()).await.unwrap();
    assert_eq!(r.start_of("c").unwrap(), ms(10));
    assert_eq!(r.end_of("c").unwrap(), ms(20));
}

#[tokio::test(start_paused = true)]
async fn the_concurrency_bound_holds() {
    let r = Recorder::new();
    let mut s = Stack::new("t");
    for i in 0..10 {
        s.add(Probe::new(&format!("m{i}"), &r).sleep_ms(100));
    }
    let report = s
        .build()
        .unwrap()
        .apply(&RunOptions::new().concurrency(3))
        .await
        .unwrap();
    assert_eq!(r.max_running.load(Ordering::SeqCst), 3);
    assert_eq!(
        report.wall_time,
        ms(400),
        "10 modules, 3 at a time: 4 rounds"
    );
}

#[tokio::test(start_paused = true)]
async fn bootstrap_modules_start_first_when_concurrency_is_bounded() {
    let r = Recorder::new();
    let mut s = Stack::new("t");
    s.add(Probe::new("plain", &r).sleep_ms(50));
    s.add(Probe::new("boot", &r).sleep_ms(50).phase(Phase::Bootstrap));
    s.build()
        .unwrap()
        .apply(&RunOptions::new().concurrency(1))
        .await
        .unwrap();
    assert_eq!(r.start_of("boot").unwrap(), ms(0));
    assert_eq!(r.start_of("plain").unwrap(), ms(50));
}

#[tokio::test(start_paused = true)]
async fn final_modules_run_after_all_others() {
    let r = Recorder::new();
    let mut s = Stack::new("t");
    let boot = s.add(Probe::new("boot", &r).phase(Phase::Bootstrap).sleep_ms(10));
    s.add(Probe::new("slow", &r).sleep_ms(300));
    s.add(Probe::new("app", &r).after(boot.input()).sleep_ms(20));
    s.add(
        Probe::new("fin", &r)
            .after(boot.input())
            .phase(Phase::Final),
    );
    let built = s.build().unwrap();
    assert_eq!(built.order().last(), Some(&"fin"));
    built.apply(&RunOptions::new()).await.unwrap();
    assert_eq!(
        r.start_of("fin").unwrap(),
        ms(300),
        "waited for the unrelated slow module"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failure_skips_only_its_dependents() {
    let r = Recorder::new();
    let mut s = Stack::new("t");
    let a = s.add(Probe::new("a", &r));
    let b = s.add(Probe::new("b", &r).after(a.input()).failing());
    s.add(Probe::new("c", &r).after(b.input()));
    let d = s.add(Probe::new("d", &r).sleep_ms(100));
    s.add(Probe::new("e", &r).after(d.input()));
    let err = s
        .build()
        .unwrap()
        .apply(&RunOptions::new())
        .await
        .unwrap_err();
    let Error::RunFailed { report, failed, .. } = err else {
        panic!("expected RunFailed")
    };
    assert!(
        failed
            .iter()
            .any(|f| f.to_string().contains("b was told to fail")),
        "{failed:?}"
    );
    let status = |id: &str| report.module(id).unwrap().status.clone();
    assert_eq!(status("a"), Status::Succeeded);
    assert!(
        matches!(status("b"), Status::Failed { error } if error.to_string().contains("module `b` failed to apply") && matches!(error.error(), Some(Error::Module { .. })))
    );
    assert_eq!(
        status("c"),
        Status::Skipped {
            reason: "`b` did not apply".into()
        }
    );
    assert_eq!(status("d"), Status::Succeeded);
    assert_eq!(
        status("e"),
        Status::Succeeded,
        "independent branch finished"
    );
    assert!(r.start_of("c").is_none());
}

#[tokio::test(start_paused = true)]
async fn cancellation_interrupts_running_modules_and_starts_no_more() {
    let r = Recorder::new();
    let mut s = Stack::new("t");
    let a = s.add(Probe::new("a", &r).sleep_ms(1_000));
    s.add(Probe::new("b", &r).after(a.input()));
    let token = CancellationToken::new();
    let t2 = token.clone();
    tokio::spawn(async move {
        tokio::time::sleep(ms(100)).await;
        t2.cancel();
    });
    let built = s.build().unwrap();
    let err = built
        .apply(&RunOptions::new().cancel_token(token))
        .await
        .unwrap_err();
    let Error::RunFailed { report, .. } = err else {
        panic!()
    };
    assert_eq!(report.module("a").unwrap().status, Status::Cancelled);
    assert!(matches!(
        &report.module("b").unwrap().status,
        Status::Skipped { .. }
    ));
    assert_eq!(report.wall_time, ms(100));
    assert!(r.end_of("a").is_none(), "a was interrupted");
}

#[tokio::test(start_paused = true)]
async fn a_module_that_overruns_its_timeout_fails_and_its_dependents_are_skipped() {
    let r = Recorder::new();
    let mut s = Stack::new("t");
    let slow = s.add(Probe::new("slow", &r).sleep_ms(10_000));
    s.add(Probe::new("after", &r).after(slow.input()));
    let quick = s.add(Probe::new("quick", &r).sleep_ms(100));
    let options = RunOptions::new()
        .timeout(ms(500))
        .module_timeout(&quick, ms(50));
    let Error::RunFailed { report, .. } = s.build().unwrap().apply(&options).await.unwrap_err()
    else {
        panic!()
    };
    assert!(
        matches!(&report.module("slow").unwrap().status, Status::TimedOut { error } if error.to_string().contains("500ms") && matches!(error.error(), Some(Error::Timeout { .. }))),
        "{report:?}"
    );
    assert!(
        matches!(
            &report.module("quick").unwrap().status,
            Status::TimedOut { .. }
        ),
        "per-module timeout wins"
    );
    assert!(matches!(
        &report.module("after").unwrap().status,
        Status::Skipped { .. }
    ));
    assert_eq!(report.wall_time, ms(500));
}

#[tokio::test(start_paused = true)]
async fn events_tell_the_whole_story_with_durations() {
    let r = Recorder::new();
    let mut s = Stack::new("t");
    let a = s.add(Probe::new("a", &r).sleep_ms(40).failing());
    s.add(Probe::new("b", &r).after(a.input()));
    s.add(Probe::new("c", &r).sleep_ms(10));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let _ = s
        .build()
        .unwrap()
        .apply(&RunOptions::new().events(tx))
        .await;
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    let finished_c = events.iter().find_map(|e| match e {
        Event::Finished {
            module, duration, ..
        } if module == "c" => Some(*duration),
        _ => None,
    });
    assert_eq!(finished_c, Some(ms(10)));
    assert!(events.iter().any(|e| matches!(e, Event::Failed { module, duration, .. } if module == "a" && *duration == ms(40))));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Skipped { module, .. } if module == "b"))
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, Event::Started { .. }))
            .count(),
        2
    );
    let lines: Vec<String> = events.iter().map(ToString::to_string).collect();
    assert!(
        lines.contains(&"[    0.0s] c: apply finished in 0.0s".to_string()),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("[    0.0s] a: apply FAILED after 0.0s: module `a` failed")),
        "{lines:#?}"
    );
}

#[tokio::test(start_paused = true)]
async fn destroy_runs_in_reverse_and_keeps_what_a_failed_destroy_needs() {
    let r = Recorder::new();
    let mut s = Stack::new("t");
    let cluster = s.add(Probe::new("cluster", &r));
    let app = s.add(Probe::new("app", &r).after(cluster.input()));
    s.add(Probe::new("web", &r).after(app.input()));
    s.build()
        .unwrap()
        .destroy(&RunOptions::new())
        .await
        .unwrap();
    assert_eq!(r.destroyed(), ["web", "app", "cluster"]);

    let r = Recorder::new();
    let mut s = Stack::new("t");
    let cluster = s.add(Probe::new("cluster", &r));
    s.add(Probe::new("app", &r).after(cluster.input()).failing());
    let err = s
        .build()
        .unwrap()
        .destroy(&RunOptions::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("app was told to fail"), "{err}");
    assert_eq!(
        r.destroyed(),
        ["app"],
        "the cluster stays while something in it could not be destroyed"
    );
}

#[tokio::test(start_paused = true)]
async fn destroy_skips_what_does_not_exist_and_everything_that_went_with_it() {
    let r = Recorder::new();
    let mut s = Stack::new("t");
    let cluster = s.add(Probe::new("cluster", &r).absent());
    s.add(Probe::new("app", &r).after(cluster.input()));
    s.add(Probe::new("pool", &r));
    let report = s
        .build()
        .unwrap()
        .destroy(&RunOptions::new())
        .await
        .unwrap();
    assert_eq!(r.destroyed(), ["pool"]);
    assert_eq!(report.module("app").unwrap().status, Status::Absent);
    assert_eq!(report.module("cluster").unwrap().status, Status::Absent);
}

#[tokio::test]
async fn reading_an_undeclared_input_is_an_error() {
    use devops_stack_core::{Context, Input, Module, ModuleResult, Planned};
    struct Sneaky(Input<u64>);
    impl Module for Sneaky {
        type Output = u64;
        fn id(&self) -> &str {
            "sneaky"
        }
        fn kind(&self) -> &'static str {
            "sneaky"
        }
        // needs() deliberately not overridden
        async fn plan(&self, ctx: &Context) -> ModuleResult<Planned<u64>> {
            Ok(Planned::new(ctx.get(&self.0)?))
        }
        async fn apply(&self, ctx: &Context) -> ModuleResult<u64> {
            Ok(ctx.get(&self.0)?)
        }
        async fn destroy(&self, _: &Context) -> ModuleResult<()> {
            Ok(())
        }
    }
    let r = Recorder::new();
    let mut s = Stack::new("t");
    let a = s.add(Probe::new("a", &r));
    s.add(Sneaky(a.input()));
    let err = s.build().unwrap().plan().await.unwrap_err();
    assert!(
        err.to_string()
            .contains("did not declare it; add it in `Module::needs`"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_modules_on_a_real_runtime_all_finish_in_dependency_order() {
    let r = Recorder::new();
    let mut s = Stack::new("t");
    let mut handles: Vec<devops_stack_core::Handle<u64>> = Vec::new();
    for i in 0..200usize {
        let mut p = Probe::new(&format!("m{i}"), &r).sleep_ms(1);
        for back in [1, 7, 31] {
            if i >= back {
                p = p.after(handles[i - back].input());
            }
        }
        handles.push(s.add(p));
    }
    let report = s
        .build()
        .unwrap()
        .apply(&RunOptions::new().concurrency(16))
        .await
        .unwrap();
    assert!(r.max_running.load(Ordering::SeqCst) <= 16);
    for i in 1..200usize {
        assert!(r.start_of(&format!("m{i}")).unwrap() >= r.end_of(&format!("m{}", i - 1)).unwrap());
    }
    assert!(report.is_success());
}

/// When each module was applied, by id.
type Applied = std::sync::Arc<std::sync::Mutex<Vec<(String, std::time::Duration)>>>;

/// A module whose preflight check takes `check_ms` and fails when told; its apply records when it
/// started.
struct Checked {
    id: String,
    check_ms: u64,
    fail: bool,
    applied_at: Applied,
    start: tokio::time::Instant,
}

impl devops_stack_core::Module for Checked {
    type Output = ();
    fn id(&self) -> &str {
        &self.id
    }
    fn kind(&self) -> &'static str {
        "checked"
    }
    async fn preflight(
        &self,
        ctx: &devops_stack_core::Context,
    ) -> devops_stack_core::ModuleResult<()> {
        assert_eq!(ctx.step(), devops_stack_core::Step::Preflight);
        tokio::time::sleep(ms(self.check_ms)).await;
        if self.fail {
            return Err(format!("the hosted zone of `{}` does not exist", self.id).into());
        }
        Ok(())
    }
    async fn plan(
        &self,
        _ctx: &devops_stack_core::Context,
    ) -> devops_stack_core::ModuleResult<devops_stack_core::Planned<()>> {
        Ok(devops_stack_core::Planned::new(()))
    }
    async fn apply(
        &self,
        _ctx: &devops_stack_core::Context,
    ) -> devops_stack_core::ModuleResult<()> {
        self.applied_at
            .lock()
            .unwrap()
            .push((self.id.clone(), self.start.elapsed()));
        Ok(())
    }
    async fn destroy(
        &self,
        _ctx: &devops_stack_core::Context,
    ) -> devops_stack_core::ModuleResult<()> {
        Ok(())
    }
}

fn checked_stack(fail: Option<&str>) -> (Stack, Applied) {
    let applied = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let start = tokio::time::Instant::now();
    let mut s = Stack::new("t");
    for (id, check_ms) in [("zone", 50), ("bucket", 10), ("vpc", 0)] {
        s.add(Checked {
            id: id.into(),
            check_ms,
            fail: fail == Some(id),
            applied_at: applied.clone(),
            start,
        });
    }
    (s, applied)
}

#[tokio::test(start_paused = true)]
async fn every_preflight_runs_at_once_before_the_first_apply() {
    let (s, applied) = checked_stack(None);
    s.build().unwrap().apply(&RunOptions::new()).await.unwrap();
    let applied = applied.lock().unwrap();
    assert_eq!(applied.len(), 3);
    // the checks ran side by side (50 ms in all, not 60), and nothing was applied before the
    // slowest one passed
    for (id, at) in applied.iter() {
        assert_eq!(*at, ms(50), "{id} applied at {at:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_preflight_stops_the_apply_before_anything_is_created() {
    let (s, applied) = checked_stack(Some("zone"));
    let err = s
        .build()
        .unwrap()
        .apply(&RunOptions::new())
        .await
        .unwrap_err();
    let Error::RunFailed { step, failed, .. } = &err else {
        panic!("unexpected error: {err}");
    };
    assert_eq!(*step, devops_stack_core::Step::Preflight);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0]
            .to_string()
            .contains("the hosted zone of `zone` does not exist"),
        "{err}"
    );
    assert!(applied.lock().unwrap().is_empty(), "nothing was applied");
}

/// Run settings that contradict the stack get a typed error naming each setting and its fix,
/// before any module step runs (apply, destroy and read alike).
#[tokio::test(start_paused = true)]
async fn contradicting_run_settings_are_refused_before_anything_runs() {
    let r = Recorder::new();
    let mut s = Stack::new("t");
    let a = s.add(Probe::new("a", &r));
    let s = s.build().unwrap();
    let mut other = Stack::new("other");
    let foreign = other.add(Probe::new("x", &r));

    // a module timeout for a handle of another stack, and abandoning with no cluster module
    let options = RunOptions::new()
        .module_timeout(&foreign, ms(10))
        .module_timeout(&a, ms(10))
        .abandon_in_cluster();
    for result in [
        s.apply(&options).await,
        s.destroy(&options).await,
        s.read(&options).await,
    ] {
        let Err(Error::Invalid(errors)) = result else {
            panic!("expected the settings refused, got {result:?}")
        };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["run.module_timeout", "run.abandon_in_cluster"]);
        assert_eq!(errors[0].module.as_deref(), Some("x"));
        assert!(errors.iter().all(|e| !e.fix.is_empty()));
    }
    assert!(r.marks().is_empty(), "a module ran: {:?}", r.marks());

    // this stack's own handle is fine
    s.apply(&RunOptions::new().module_timeout(&a, ms(10)))
        .await
        .unwrap();
}
