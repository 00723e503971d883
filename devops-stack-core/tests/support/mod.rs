//! A configurable test module that records when it runs.
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use devops_stack_core::validate::{Capability, Interface};
use devops_stack_core::{Context, Input, Module, ModuleResult, Needs, Phase, Planned, Validation};
use tokio::time::Instant;

/// What happened to whom, and when (tokio time, so virtual under `start_paused`).
#[derive(Debug, Clone, PartialEq)]
pub enum Mark {
    Start(String, Duration),
    End(String, Duration),
    Destroyed(String),
}

/// Shared between the probes of one test.
#[derive(Clone)]
pub struct Recorder {
    origin: Instant,
    pub marks: Arc<Mutex<Vec<Mark>>>,
    running: Arc<AtomicUsize>,
    pub max_running: Arc<AtomicUsize>,
}

impl Recorder {
    pub fn new() -> Self {
        Recorder {
            origin: Instant::now(),
            marks: Arc::default(),
            running: Arc::default(),
            max_running: Arc::default(),
        }
    }

    pub fn marks(&self) -> Vec<Mark> {
        self.marks.lock().unwrap().clone()
    }

    pub fn start_of(&self, id: &str) -> Option<Duration> {
        self.marks().into_iter().find_map(|m| match m {
            Mark::Start(i, t) if i == id => Some(t),
            _ => None,
        })
    }

    pub fn end_of(&self, id: &str) -> Option<Duration> {
        self.marks().into_iter().find_map(|m| match m {
            Mark::End(i, t) if i == id => Some(t),
            _ => None,
        })
    }

    pub fn destroyed(&self) -> Vec<String> {
        self.marks()
            .into_iter()
            .filter_map(|m| match m {
                Mark::Destroyed(i) => Some(i),
                _ => None,
            })
            .collect()
    }
}

/// A module that sleeps, optionally fails, and outputs 1 + the sum of its inputs.
pub struct Probe {
    pub id: String,
    pub inputs: Vec<Input<u64>>,
    pub sleep: Duration,
    pub fail: bool,
    pub phase: Phase,
    pub absent: bool,
    pub provides: Vec<Capability>,
    pub requires: Vec<Interface>,
    pub recorder: Recorder,
}

impl Probe {
    pub fn new(id: &str, recorder: &Recorder) -> Self {
        Probe {
            id: id.into(),
            inputs: Vec::new(),
            sleep: Duration::from_millis(10),
            fail: false,
            phase: Phase::Main,
            absent: false,
            provides: Vec::new(),
            requires: Vec::new(),
            recorder: recorder.clone(),
        }
    }
    pub fn after(mut self, input: Input<u64>) -> Self {
        self.inputs.push(input);
        self
    }
    pub fn sleep_ms(mut self, ms: u64) -> Self {
        self.sleep = Duration::from_millis(ms);
        self
    }
    pub fn failing(mut self) -> Self {
        self.fail = true;
        self
    }
    pub fn phase(mut self, phase: Phase) -> Self {
        self.phase = phase;
        self
    }
    pub fn absent(mut self) -> Self {
        self.absent = true;
        self
    }

    async fn run(&self, ctx: &Context) -> ModuleResult<u64> {
        let r = &self.recorder;
        r.marks
            .lock()
            .unwrap()
            .push(Mark::Start(self.id.clone(), r.origin.elapsed()));
        let now = r.running.fetch_add(1, Ordering::SeqCst) + 1;
        r.max_running.fetch_max(now, Ordering::SeqCst);
        let mut sum = 1;
        for i in &self.inputs {
            sum = ctx.get(i)?.wrapping_add(sum);
        }
        tokio::time::sleep(self.sleep).await;
        r.running.fetch_sub(1, Ordering::SeqCst);
        r.marks
            .lock()
            .unwrap()
            .push(Mark::End(self.id.clone(), r.origin.elapsed()));
        if self.fail {
            return Err(format!("{} was told to fail", self.id).into());
        }
        Ok(sum)
    }
}

impl Module for Probe {
    type Output = u64;
    fn id(&self) -> &str {
        &self.id
    }
    fn kind(&self) -> &'static str {
        "probe"
    }
    fn needs(&self, needs: &mut Needs) {
        needs.add(&self.inputs);
    }
    fn phase(&self) -> Phase {
        self.phase
    }
    fn validate(&self, v: &mut Validation) {
        for c in &self.provides {
            v.provides(c.clone());
        }
        for i in &self.requires {
            v.requires(*i, "the test says so");
        }
    }
    async fn plan(&self, ctx: &Context) -> ModuleResult<Planned<u64>> {
        let mut sum = 1;
        for i in &self.inputs {
            sum = ctx.get(i)?.wrapping_add(sum);
        }
        Ok(Planned::new(sum))
    }
    async fn apply(&self, ctx: &Context) -> ModuleResult<u64> {
        self.run(ctx).await
    }
    async fn read(&self, ctx: &Context) -> ModuleResult<Option<u64>> {
        if self.absent {
            return Ok(None);
        }
        let mut sum = 1;
        for i in &self.inputs {
            sum = ctx.get(i)?.wrapping_add(sum);
        }
        Ok(Some(sum))
    }
    async fn destroy(&self, _ctx: &Context) -> ModuleResult<()> {
        self.recorder
            .marks
            .lock()
            .unwrap()
            .push(Mark::Destroyed(self.id.clone()));
        if self.fail {
            return Err(format!("{} was told to fail", self.id).into());
        }
        Ok(())
    }
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
