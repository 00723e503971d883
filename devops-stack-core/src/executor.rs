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
//! Destroy runs the same queue over the reversed graph.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use futures::stream::{FuturesUnordered, StreamExt};
use serde::Serialize;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use crate::context::{Context, Extensions, Outputs};
use crate::error::{Error, Result};
use crate::handle::Handle;
use crate::module::{ErasedOutput, Phase, Step};
use crate::stack::BuiltStack;

/// Where events go; a closed or absent receiver is fine.
#[derive(Clone, Default)]
pub(crate) struct EventSink(Option<UnboundedSender<Event>>);

impl EventSink {
    pub(crate) fn send(&self, event: Event) {
        if let Some(tx) = &self.0 {
            let _ = tx.send(event);
        }
    }
}

/// Something that happened during a run. `elapsed` is the time since the run started.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// A module's step started.
    Started {
        /// The module.
        module: String,
        /// The step.
        step: Step,
        /// Since the run started.
        elapsed: Duration,
    },
    /// A module reported progress.
    Progress {
        /// The module.
        module: String,
        /// The step.
        step: Step,
        /// Since the run started.
        elapsed: Duration,
        /// What it said.
        message: String,
    },
    /// A module's step succeeded.
    Finished {
        /// The module.
        module: String,
        /// The step.
        step: Step,
        /// Since the run started.
        elapsed: Duration,
        /// How long the step took.
        duration: Duration,
    },
    /// A module's step failed, timed out or was cancelled.
    Failed {
        /// The module.
        module: String,
        /// The step.
        step: Step,
        /// Since the run started.
        elapsed: Duration,
        /// How long the step ran.
        duration: Duration,
        /// The error.
        error: String,
    },
    /// A module's step was not run.
    Skipped {
        /// The module.
        module: String,
        /// The step.
        step: Step,
        /// Since the run started.
        elapsed: Duration,
        /// Why.
        reason: String,
    },
}

impl std::fmt::Display for Event {
    /// One progress line: `[  12.3s] eks: apply finished in 11.9s`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (module, step, elapsed) = match self {
            Event::Started {
                module,
                step,
                elapsed,
            }
            | Event::Progress {
                module,
                step,
                elapsed,
                ..
            }
            | Event::Finished {
                module,
                step,
                elapsed,
                ..
            }
            | Event::Failed {
                module,
                step,
                elapsed,
                ..
            }
            | Event::Skipped {
                module,
                step,
                elapsed,
                ..
            } => (module, step, elapsed),
        };
        write!(f, "[{:>7.1}s] {module}: ", elapsed.as_secs_f64())?;
        match self {
            Event::Started { .. } => write!(f, "{step} started"),
            Event::Progress { message, .. } => f.write_str(message),
            Event::Finished { duration, .. } => {
                write!(f, "{step} finished in {:.1}s", duration.as_secs_f64())
            }
            Event::Failed {
                duration, error, ..
            } => {
                write!(
                    f,
                    "{step} FAILED after {:.1}s: {error}",
                    duration.as_secs_f64()
                )
            }
            Event::Skipped { reason, .. } => write!(f, "{step} skipped: {reason}"),
        }
    }
}

/// How a run behaves: concurrency, timeouts, cancellation, events and extensions.
///
/// ```
/// use std::time::Duration;
/// use devops_stack_core::RunOptions;
/// let (tx, _events) = tokio::sync::mpsc::unbounded_channel();
/// let options = RunOptions::new()
///     .concurrency(4)
///     .timeout(Duration::from_secs(600))
///     .module_timeout("eks", Duration::from_secs(1800))
///     .events(tx);
/// ```
#[derive(Default, Clone)]
pub struct RunOptions {
    concurrency: Option<usize>,
    timeout: Option<Duration>,
    timeouts: HashMap<String, Duration>,
    pub(crate) cancel: CancellationToken,
    pub(crate) events: EventSink,
    pub(crate) extensions: Arc<Extensions>,
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("concurrency", &self.concurrency)
            .field("timeout", &self.timeout)
            .field("timeouts", &self.timeouts)
            .finish_non_exhaustive()
    }
}

impl RunOptions {
    /// Unbounded concurrency, no timeout, a fresh cancellation token, no events.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs at most `n` module steps at once (at least 1).
    #[must_use]
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = Some(n.max(1));
        self
    }

    /// The timeout of every module step that has no timeout of its own.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The timeout of module `id`'s steps.
    #[must_use]
    pub fn module_timeout(mut self, id: impl Into<String>, timeout: Duration) -> Self {
        self.timeouts.insert(id.into(), timeout);
        self
    }

    /// Cancels the run when `token` fires: no new module starts and running ones are interrupted.
    #[must_use]
    pub fn cancel_token(mut self, token: CancellationToken) -> Self {
        self.cancel = token;
        self
    }

    /// Sends every [`Event`] of the run to `tx`.
    #[must_use]
    pub fn events(mut self, tx: UnboundedSender<Event>) -> Self {
        self.events = EventSink(Some(tx));
        self
    }

    /// Makes `value` available to every module through [`Context::extension`].
    #[must_use]
    pub fn extension<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        Arc::make_mut(&mut self.extensions).insert(value);
        self
    }
}

/// How a module's step ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Status {
    /// It succeeded.
    Succeeded,
    /// Read found that the module's resources do not exist.
    Absent,
    /// It returned an error.
    Failed {
        /// The error.
        error: String,
    },
    /// It exceeded its timeout.
    TimedOut {
        /// The error.
        error: String,
    },
    /// The run was cancelled while it ran.
    Cancelled,
    /// It was not run.
    Skipped {
        /// Why.
        reason: String,
    },
}

impl Status {
    fn is_ok(&self) -> bool {
        matches!(self, Status::Succeeded | Status::Absent)
    }
}

/// One module's part of a [`Report`].
#[derive(Debug, Clone, Serialize)]
pub struct ModuleReport {
    /// The module's id.
    pub id: String,
    /// Its kind.
    pub kind: String,
    /// How its step ended.
    pub status: Status,
    /// When it started, since the run started.
    pub started: Option<Duration>,
    /// How long it ran.
    pub duration: Option<Duration>,
    /// Its output (secrets redacted), when it produced one.
    pub output: Option<serde_json::Value>,
}

/// The outcome of a run: every module's status and timing, and the critical path.
#[derive(Clone, Serialize)]
pub struct Report {
    /// The stack's name.
    pub stack: String,
    /// The step that was run.
    pub step: Step,
    /// From the start of the run to its end.
    pub wall_time: Duration,
    /// One entry per module, in stack order.
    pub modules: Vec<ModuleReport>,
    /// The chain of modules whose measured durations add up to the longest path.
    pub critical_path: Vec<String>,
    /// The sum of the measured durations along the critical path: the shortest wall time any
    /// schedule could reach. `wall_time - critical_path_time` is the executor's own overhead.
    pub critical_path_time: Duration,
    /// Modules the stack's state recorded that the stack no longer has, destroyed by this run
    /// (see [`RemovedModules`](crate::k8s::RemovedModules)).
    pub removed: Vec<String>,
    #[serde(skip)]
    pub(crate) outputs: Outputs,
}

impl std::fmt::Debug for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Report")
            .field("stack", &self.stack)
            .field("step", &self.step)
            .field("wall_time", &self.wall_time)
            .field("modules", &self.modules)
            .field("critical_path", &self.critical_path)
            .field("removed", &self.removed)
            .finish()
    }
}

impl Report {
    /// Whether every module succeeded (or, for a read, was found absent).
    pub fn is_success(&self) -> bool {
        self.modules.iter().all(|m| m.status.is_ok())
    }

    /// The report of module `id`.
    pub fn module(&self, id: &str) -> Option<&ModuleReport> {
        self.modules.iter().find(|m| m.id == id)
    }

    /// The typed output a module produced in this run.
    pub fn output<T: Send + Sync + 'static>(&self, handle: &Handle<T>) -> Option<Arc<T>> {
        let slot = self.outputs.get(handle.dep.index)?.get()?.as_ref()?;
        slot.value.clone().downcast::<T>().ok()
    }

    /// `Ok(self)` when the run succeeded, otherwise [`Error::RunFailed`] naming each failure.
    ///
    /// # Errors
    /// As described.
    pub fn into_result(self) -> Result<Report> {
        if self.is_success() {
            return Ok(self);
        }
        let failed = self
            .modules
            .iter()
            .filter_map(|m| match &m.status {
                Status::Failed { error } | Status::TimedOut { error } => Some(error.clone()),
                Status::Cancelled => Some(format!("`{}` was cancelled", m.id)),
                Status::Skipped { reason } => Some(format!("`{}` skipped: {reason}", m.id)),
                _ => None,
            })
            .collect();
        Err(Error::RunFailed {
            step: self.step,
            failed,
            report: Box::new(self),
        })
    }

    /// A table of modules with status and timings, and the critical path.
    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = format!(
            "{} of stack `{}` in {:.2?}\n",
            self.step, self.stack, self.wall_time
        );
        for m in &self.modules {
            let status = match &m.status {
                Status::Succeeded => "ok".to_owned(),
                Status::Absent => "absent".to_owned(),
                Status::Failed { error } => format!("FAILED: {error}"),
                Status::TimedOut { error } => format!("TIMED OUT: {error}"),
                Status::Cancelled => "cancelled".to_owned(),
                Status::Skipped { reason } => format!("skipped: {reason}"),
            };
            let d = m
                .duration
                .map(|d| format!("{d:.2?}"))
                .unwrap_or_else(|| "-".into());
            let _ = writeln!(out, "  {:<28} {:>10}  {status}", m.id, d);
        }
        if !self.removed.is_empty() {
            let _ = writeln!(
                out,
                "  removed from the stack, destroyed: {}",
                self.removed.join(", ")
            );
        }
        let _ = writeln!(
            out,
            "critical path ({:.2?}): {}",
            self.critical_path_time,
            self.critical_path.join(" -> ")
        );
        out
    }
}

enum Outcome {
    Done(Option<ErasedOutput>),
    Failed(Error),
}

/// Runs `step` over the stack. `absent` marks modules to skip as already gone (destroy).
pub(crate) async fn run(
    stack: &BuiltStack,
    step: Step,
    options: &RunOptions,
    outputs: Outputs,
    absent: &[bool],
) -> Report {
    let n = stack.modules.len();
    let start = Instant::now();
    let forward = step != Step::Destroy;
    // preflight checks read no input: every module starts at once
    let unordered;
    let (preds, succs) = if step == Step::Preflight {
        unordered = vec![Vec::new(); n];
        (&unordered, &unordered)
    } else if forward {
        (&stack.graph.preds, &stack.graph.succs)
    } else {
        (&stack.graph.succs, &stack.graph.preds)
    };
    let limit = options.concurrency.unwrap_or(usize::MAX);
    let cancel = options.cancel.clone();
    let events = options.events.clone();
    let priority = |i: usize| {
        if stack.phases[i] == Phase::Bootstrap {
            0
        } else {
            1
        }
    };

    let mut waiting: Vec<usize> = preds.iter().map(Vec::len).collect();
    let mut status: Vec<Option<Status>> = vec![None; n];
    let mut started: Vec<Option<Duration>> = vec![None; n];
    let mut durations: Vec<Option<Duration>> = vec![None; n];
    let mut ready: BinaryHeap<Reverse<(u8, usize)>> = (0..n)
        .filter(|&i| waiting[i] == 0)
        .map(|i| Reverse((priority(i), i)))
        .collect();
    let mut running = FuturesUnordered::new();
    let mut finished_order = Vec::with_capacity(n);

    let skip = |i: usize, reason: String, status: &mut Vec<Option<Status>>| {
        events.send(Event::Skipped {
            module: stack.names[i].to_string(),
            step,
            elapsed: start.elapsed(),
            reason: reason.clone(),
        });
        status[i] = Some(Status::Skipped { reason });
    };

    loop {
        while running.len() < limit && !cancel.is_cancelled() {
            let Some(Reverse((_, i))) = ready.pop() else {
                break;
            };
            if status[i].is_some() {
                continue;
            }
            if absent.get(i).copied().unwrap_or(false) {
                // Nothing to destroy; what it depends on can go now.
                events.send(Event::Skipped {
                    module: stack.names[i].to_string(),
                    step,
                    elapsed: start.elapsed(),
                    reason: "its resources do not exist".into(),
                });
                status[i] = Some(Status::Absent);
                finished_order.push(i);
                release(i, succs, &mut waiting, &status, &mut ready, &priority);
                continue;
            }
            started[i] = Some(start.elapsed());
            events.send(Event::Started {
                module: stack.names[i].to_string(),
                step,
                elapsed: start.elapsed(),
            });
            let ctx = Context {
                module: stack.names[i].clone(),
                stack: stack.name.clone(),
                step,
                outputs: outputs.clone(),
                declared: stack.graph.declared[i].clone(),
                names: stack.names.clone(),
                groups: stack.groups[i].clone(),
                cancel: cancel.clone(),
                events: events.clone(),
                extensions: options.extensions.clone(),
                start,
            };
            let module = stack.modules[i].clone();
            let timeout = options
                .timeouts
                .get(&*stack.names[i])
                .copied()
                .or(options.timeout);
            let task = tokio::spawn(async move {
                let t = Instant::now();
                let id = ctx.module.to_string();
                let work = async {
                    match step {
                        Step::Plan => module.plan(&ctx).await.map(|p| Some(p.output)),
                        Step::Read => module.read(&ctx).await,
                        Step::Apply => module.apply(&ctx).await,
                        Step::Destroy => module.destroy(&ctx).await,
                        Step::Preflight => module.preflight(&ctx).await.map(|()| None),
                    }
                };
                let guarded = async {
                    tokio::select! {
                        r = work => r.map_err(|source| Error::Module { module: id.clone(), step, source }),
                        () = ctx.cancel.cancelled() => Err(Error::Cancelled { module: id.clone() }),
                    }
                };
                let result = match timeout {
                    Some(limit) => {
                        tokio::time::timeout(limit, guarded)
                            .await
                            .unwrap_or_else(|_| {
                                Err(Error::Timeout {
                                    module: id.clone(),
                                    step,
                                    timeout: limit,
                                })
                            })
                    }
                    None => guarded.await,
                };
                let outcome = match result {
                    Ok(out) => Outcome::Done(out),
                    Err(e) => Outcome::Failed(e),
                };
                (outcome, t.elapsed())
            });
            running.push(async move { (i, task.await) });
        }
        if running.is_empty() {
            break;
        }
        let Some((i, joined)) = running.next().await else {
            break;
        };
        let (outcome, duration) = joined.unwrap_or_else(|e| {
            (
                Outcome::Failed(Error::Module {
                    module: stack.names[i].to_string(),
                    step,
                    source: format!("the task panicked: {e}").into(),
                }),
                Duration::ZERO,
            )
        });
        durations[i] = Some(duration);
        finished_order.push(i);
        match outcome {
            Outcome::Done(out) => {
                let absent_now = step == Step::Read && out.is_none();
                if step != Step::Destroy {
                    let _ = outputs[i].set(out);
                }
                events.send(Event::Finished {
                    module: stack.names[i].to_string(),
                    step,
                    elapsed: start.elapsed(),
                    duration,
                });
                if absent_now {
                    status[i] = Some(Status::Absent);
                    // What depends on it went with it.
                    for d in descendants(i, succs) {
                        if status[d].is_none() {
                            status[d] = Some(Status::Absent);
                            let _ = outputs[d].set(None);
                            events.send(Event::Skipped {
                                module: stack.names[d].to_string(),
                                step,
                                elapsed: start.elapsed(),
                                reason: format!("`{}` does not exist", stack.names[i]),
                            });
                        }
                    }
                } else {
                    status[i] = Some(Status::Succeeded);
                }
                release(i, succs, &mut waiting, &status, &mut ready, &priority);
            }
            Outcome::Failed(e) => {
                let error = e.to_string();
                events.send(Event::Failed {
                    module: stack.names[i].to_string(),
                    step,
                    elapsed: start.elapsed(),
                    duration,
                    error: error.clone(),
                });
                status[i] = Some(match e {
                    Error::Timeout { .. } => Status::TimedOut { error },
                    Error::Cancelled { .. } => Status::Cancelled,
                    _ => Status::Failed { error },
                });
                for d in descendants(i, succs) {
                    if status[d].is_none() {
                        skip(
                            d,
                            format!("`{}` did not {step}", stack.names[i]),
                            &mut status,
                        );
                    }
                }
            }
        }
    }
    for i in 0..n {
        if status[i].is_none() {
            let reason = if cancel.is_cancelled() {
                "the run was cancelled"
            } else {
                "not reached"
            };
            skip(i, reason.into(), &mut status);
        }
    }

    let weight = |i: usize| durations[i].map_or(0.0, |d| d.as_secs_f64());
    let (path, total) = stack.graph.longest_path(&finished_order, forward, weight);
    let modules = (0..n)
        .map(|i| ModuleReport {
            id: stack.names[i].to_string(),
            kind: stack.modules[i].kind().to_owned(),
            status: status[i].take().unwrap_or(Status::Skipped {
                reason: "not reached".into(),
            }),
            started: started[i],
            duration: durations[i],
            output: outputs[i]
                .get()
                .and_then(|o| o.as_ref())
                .map(|o| o.json.clone()),
        })
        .collect();
    Report {
        stack: stack.name.to_string(),
        step,
        wall_time: start.elapsed(),
        modules,
        critical_path: path.iter().map(|&i| stack.names[i].to_string()).collect(),
        critical_path_time: Duration::from_secs_f64(total),
        removed: Vec::new(),
        outputs,
    }
}

fn release(
    i: usize,
    succs: &[Vec<usize>],
    waiting: &mut [usize],
    status: &[Option<Status>],
    ready: &mut BinaryHeap<Reverse<(u8, usize)>>,
    priority: &impl Fn(usize) -> u8,
) {
    for &s in &succs[i] {
        waiting[s] -= 1;
        if waiting[s] == 0 && status[s].is_none() {
            ready.push(Reverse((priority(s), s)));
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
