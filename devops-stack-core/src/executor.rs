//! The executor: runs a stack's modules on tokio as a dependency queue.
//!
//! One coordinator owns all scheduling state, as cargo's job queue does. It keeps, for every
//! module, the number of predecessors not yet finished; a module whose count reaches zero goes
//! to the ready queue (bootstrap-phase modules first, then stack order) and is spawned as a
//! task as long as fewer than `concurrency` tasks run. A task reports back when its step ends;
//! the coordinator records the output, and each successor whose count drops to zero becomes
//! ready at once. So a module starts the moment its own inputs are done, not when a whole
//! "level" of the graph is.
//!
//! When a module fails (or times out, or is cancelled), all its transitive successors are
//! marked skipped right away; independent branches keep running to the end. Cancellation stops
//! new starts and interrupts running steps. Every change is sent as an [`Event`]; the final
//! [`Report`] has per-module timings and the critical path through the measured durations.
//!
//! Plan, preflight, read and apply run the queue over the graph, destroy over the reversed
//! graph: one scheduler for every step. The coordinator's state is one struct ([`Coordinator`])
//! with a named method for each thing it does.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::task::JoinError;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::error::Error;
use crate::events::{Event, EventSink};
use crate::layout::Layout;
use crate::output::{ErasedOutput, Outputs};
use crate::plan::Resource;
use crate::report::{Failure, ModuleReport, Report, Status};
use crate::run::{RunOptions, RunShared};
use crate::step::{Phase, Step};

/// What one pass over the stack is given.
pub(crate) struct Pass<'a> {
    pub(crate) step: Step,
    pub(crate) options: &'a RunOptions,
    pub(crate) shared: Arc<RunShared>,
    /// Where outputs go (and, for a destroy, the outputs its read found).
    pub(crate) outputs: Outputs,
    /// Destroy: modules whose resources the read found absent, skipped as already gone.
    pub(crate) absent: Vec<bool>,
    /// Plan: the live outputs the modules after each module see instead of its planned one,
    /// where they exist.
    pub(crate) live: Option<Outputs>,
}

/// What a module's plan rendered, kept for the [`Plan`](crate::Plan).
pub(crate) struct Rendered {
    pub(crate) resources: Vec<Resource>,
    pub(crate) output: serde_json::Value,
}

/// The outcome of a pass: its report, and for a plan what each module rendered.
pub(crate) struct Ran {
    pub(crate) report: Report,
    pub(crate) rendered: Vec<Option<Rendered>>,
}

/// What a module's task hands back.
enum Outcome {
    Done(Option<ErasedOutput>, Option<Vec<Resource>>),
    Failed(Error),
}

type Joined = (usize, std::result::Result<(Outcome, Duration), JoinError>);

/// Runs `pass.step` over the stack.
pub(crate) async fn run(layout: &Layout, pass: Pass<'_>) -> Ran {
    let mut c = Coordinator::new(layout, pass);
    loop {
        c.spawn_work_if_possible();
        let Some((i, joined)) = c.wait_for_events().await else {
            break;
        };
        c.handle_finished(i, joined);
    }
    c.into_ran()
}

/// The scheduling state of one pass.
struct Coordinator<'a> {
    layout: &'a Layout,
    pass: Pass<'a>,
    start: Instant,
    /// The edges the pass follows (reversed for a destroy, none for a preflight).
    succs: Vec<Vec<usize>>,
    /// Per module: predecessors not finished yet.
    waiting: Vec<usize>,
    status: Vec<Option<Status>>,
    started: Vec<Option<Duration>>,
    durations: Vec<Option<Duration>>,
    rendered: Vec<Option<Rendered>>,
    ready: BinaryHeap<Reverse<(u8, usize)>>,
    running: FuturesUnordered<BoxFuture<'static, Joined>>,
    finished_order: Vec<usize>,
    limit: usize,
    cancel: CancellationToken,
    events: EventSink,
}

impl<'a> Coordinator<'a> {
    fn new(layout: &'a Layout, pass: Pass<'a>) -> Self {
        let n = layout.modules.len();
        let (preds, succs) = match pass.step {
            // preflight checks read no input: every module starts at once
            Step::Preflight => (vec![Vec::new(); n], vec![Vec::new(); n]),
            Step::Destroy => (layout.graph.succs.clone(), layout.graph.preds.clone()),
            _ => (layout.graph.preds.clone(), layout.graph.succs.clone()),
        };
        let mut c = Coordinator {
            layout,
            start: Instant::now(),
            limit: pass.options.concurrency.unwrap_or(usize::MAX),
            cancel: pass.options.cancel.clone(),
            events: pass.options.events.clone(),
            pass,
            waiting: preds.iter().map(Vec::len).collect(),
            succs,
            status: vec![None; n],
            started: vec![None; n],
            durations: vec![None; n],
            rendered: (0..n).map(|_| None).collect(),
            ready: BinaryHeap::new(),
            running: FuturesUnordered::new(),
            finished_order: Vec::with_capacity(n),
        };
        for i in 0..n {
            if c.waiting[i] == 0 {
                c.make_ready(i);
            }
        }
        c
    }

    fn step(&self) -> Step {
        self.pass.step
    }

    fn name(&self, i: usize) -> String {
        self.layout.names[i].to_string()
    }

    fn make_ready(&mut self, i: usize) {
        // bootstrap-phase modules first, then stack order
        let priority = u8::from(self.layout.phases[i] != Phase::Bootstrap);
        self.ready.push(Reverse((priority, i)));
    }

    /// Starts ready modules while fewer than the limit run and the run is not cancelled.
    fn spawn_work_if_possible(&mut self) {
        while self.running.len() < self.limit && !self.cancel.is_cancelled() {
            let Some(Reverse((_, i))) = self.ready.pop() else {
                break;
            };
            if self.status[i].is_some() {
                continue;
            }
            if self.pass.absent.get(i).copied().unwrap_or(false) {
                self.skip_absent(i);
                continue;
            }
            self.spawn(i);
        }
    }

    /// A module a destroy's read found absent: nothing to destroy, what it depends on can go.
    fn skip_absent(&mut self, i: usize) {
        self.events.send(Event::Skipped {
            module: self.name(i),
            step: self.step(),
            elapsed: self.start.elapsed(),
            reason: "its resources do not exist".into(),
        });
        self.status[i] = Some(Status::Absent);
        self.finished_order.push(i);
        self.release(i);
    }

    fn spawn(&mut self, i: usize) {
        let step = self.step();
        self.started[i] = Some(self.start.elapsed());
        self.events.send(Event::Started {
            module: self.name(i),
            step,
            elapsed: self.start.elapsed(),
        });
        let ctx = Context {
            module: self.layout.names[i].clone(),
            stack: self.layout.name.clone(),
            step,
            outputs: self.pass.outputs.clone(),
            declared: self.layout.graph.declared[i].clone(),
            names: self.layout.names.clone(),
            groups: self.layout.groups[i].clone(),
            cancel: self.cancel.clone(),
            events: self.events.clone(),
            run: self.pass.shared.clone(),
            start: self.start,
        };
        let module = self.layout.modules[i].clone();
        let timeout = self.pass.options.timeout_of(i);
        let task = tokio::spawn(async move {
            let t = Instant::now();
            let id = ctx.module.to_string();
            let work = async {
                match step {
                    Step::Plan => module
                        .plan(&ctx)
                        .await
                        .map(|p| (Some(p.output), Some(p.resources))),
                    Step::Read => module.read(&ctx).await.map(|o| (o, None)),
                    Step::Apply => module.apply(&ctx).await.map(|o| (o, None)),
                    Step::Destroy => module.destroy(&ctx).await.map(|o| (o, None)),
                    Step::Preflight => module.preflight(&ctx).await.map(|()| (None, None)),
                }
            };
            let guarded = async {
                tokio::select! {
                    r = work => r.map_err(|source| Error::Module { module: id.clone(), step, source }),
                    () = ctx.cancel.cancelled() => Err(Error::Cancelled { module: id.clone() }),
                }
            };
            let result = match timeout {
                Some(limit) => tokio::time::timeout(limit, guarded)
                    .await
                    .unwrap_or_else(|_| {
                        Err(Error::Timeout {
                            module: id.clone(),
                            step,
                            timeout: limit,
                        })
                    }),
                None => guarded.await,
            };
            let outcome = match result {
                Ok((out, resources)) => Outcome::Done(out, resources),
                Err(e) => Outcome::Failed(e),
            };
            (outcome, t.elapsed())
        });
        self.running.push(Box::pin(async move { (i, task.await) }));
    }

    /// The next module step to end, or `None` when none runs.
    async fn wait_for_events(&mut self) -> Option<Joined> {
        self.running.next().await
    }

    /// Records how module `i`'s step ended and what that frees or skips.
    fn handle_finished(
        &mut self,
        i: usize,
        joined: std::result::Result<(Outcome, Duration), JoinError>,
    ) {
        let (outcome, duration) = joined.unwrap_or_else(|e| {
            (
                Outcome::Failed(Error::Module {
                    module: self.name(i),
                    step: self.step(),
                    source: format!("the task panicked: {e}").into(),
                }),
                Duration::ZERO,
            )
        });
        self.durations[i] = Some(duration);
        self.finished_order.push(i);
        match outcome {
            Outcome::Done(out, resources) => self.succeeded(i, out, resources, duration),
            Outcome::Failed(e) => self.failed(i, e, duration),
        }
    }

    fn succeeded(
        &mut self,
        i: usize,
        out: Option<ErasedOutput>,
        resources: Option<Vec<Resource>>,
        duration: Duration,
    ) {
        let step = self.step();
        let absent_now = step == Step::Read && out.is_none();
        if let Some(resources) = resources {
            self.rendered[i] = Some(Rendered {
                resources,
                output: out
                    .as_ref()
                    .map_or(serde_json::Value::Null, |o| o.json.clone()),
            });
        }
        if step != Step::Destroy {
            // a plan against what is live: the modules after this one see its live output
            let seen = match self.pass.live.as_ref().and_then(|l| l[i].get()) {
                Some(Some(live)) if step == Step::Plan => Some(live.clone()),
                _ => out,
            };
            let _ = self.pass.outputs[i].set(seen);
        }
        self.events.send(Event::Finished {
            module: self.name(i),
            step,
            elapsed: self.start.elapsed(),
            duration,
        });
        if absent_now {
            self.status[i] = Some(Status::Absent);
            // What depends on it went with it.
            for d in descendants(i, &self.succs) {
                if self.status[d].is_none() {
                    self.status[d] = Some(Status::Absent);
                    let _ = self.pass.outputs[d].set(None);
                    self.events.send(Event::Skipped {
                        module: self.name(d),
                        step,
                        elapsed: self.start.elapsed(),
                        reason: format!("`{}` does not exist", self.layout.names[i]),
                    });
                }
            }
        } else {
            self.status[i] = Some(Status::Succeeded);
        }
        self.release(i);
    }

    fn failed(&mut self, i: usize, e: Error, duration: Duration) {
        let step = self.step();
        self.events.send(Event::Failed {
            module: self.name(i),
            step,
            elapsed: self.start.elapsed(),
            duration,
            error: e.to_string(),
        });
        self.status[i] = Some(match e {
            Error::Cancelled { .. } => Status::Cancelled,
            e @ Error::Timeout { .. } => Status::TimedOut { error: e.into() },
            e => Status::Failed {
                error: Failure::from(e),
            },
        });
        for d in descendants(i, &self.succs) {
            if self.status[d].is_none() {
                let reason = format!("`{}` did not {step}", self.layout.names[i]);
                self.skip(d, reason);
            }
        }
    }

    fn skip(&mut self, i: usize, reason: String) {
        self.events.send(Event::Skipped {
            module: self.name(i),
            step: self.step(),
            elapsed: self.start.elapsed(),
            reason: reason.clone(),
        });
        self.status[i] = Some(Status::Skipped { reason });
    }

    /// Module `i` is done: each successor whose last predecessor it was becomes ready.
    fn release(&mut self, i: usize) {
        for k in 0..self.succs[i].len() {
            let s = self.succs[i][k];
            self.waiting[s] -= 1;
            if self.waiting[s] == 0 && self.status[s].is_none() {
                self.make_ready(s);
            }
        }
    }

    /// The report: every module's status and timing, and the critical path.
    fn into_ran(mut self) -> Ran {
        let n = self.layout.modules.len();
        for i in 0..n {
            if self.status[i].is_none() {
                let reason = if self.cancel.is_cancelled() {
                    "the run was cancelled"
                } else {
                    "not reached"
                };
                self.skip(i, reason.into());
            }
        }
        let forward = self.step() != Step::Destroy;
        let durations = &self.durations;
        let weight = |i: usize| durations[i].map_or(0.0, |d| d.as_secs_f64());
        let (path, total) = self
            .layout
            .graph
            .longest_path(&self.finished_order, forward, weight);
        let outputs = self.pass.outputs.clone();
        let modules = (0..n)
            .map(|i| ModuleReport {
                id: self.name(i),
                kind: self.layout.modules[i].kind().to_owned(),
                status: self.status[i].take().unwrap_or(Status::Skipped {
                    reason: "not reached".into(),
                }),
                started: self.started[i],
                duration: self.durations[i],
                output: outputs[i]
                    .get()
                    .and_then(|o| o.as_ref())
                    .map(|o| o.json.clone()),
            })
            .collect();
        Ran {
            report: Report {
                stack: self.layout.name.to_string(),
                step: self.step(),
                wall_time: self.start.elapsed(),
                modules,
                critical_path: path
                    .iter()
                    .map(|&i| self.layout.names[i].to_string())
                    .collect(),
                critical_path_time: Duration::from_secs_f64(total),
                removed: Vec::new(),
                outputs,
            },
            rendered: self.rendered,
        }
    }
}

fn descendants(i: usize, succs: &[Vec<usize>]) -> Vec<usize> {
    let mut seen = vec![false; succs.len()];
    let mut stack = vec![i];
    let mut out = Vec::new();
    while let Some(x) = stack.pop() {
        for &s in &succs[x] {
            if !seen[s] {
                seen[s] = true;
                out.push(s);
                stack.push(s);
            }
        }
    }
    out
}
