//! Executor benchmarks.
//!
//! - `build_validate_plan/10000`: build, validate and plan a synthetic stack of 10,000 modules
//!   with random DAG edges (target: median under 100 ms). Peak heap of one run is printed.
//! - `execute/1000`: apply a 1,000-module random DAG whose modules each wait 5-20 ms, with
//!   unbounded concurrency. Prints the median ratio of wall time to the critical path computed
//!   from the measured module durations (target: within 2%, i.e. ratio <= 1.02).
//!
//! Run: `cargo bench --bench stack`

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use devops_stack_core::{
    Context, Handle, Input, Module, ModuleResult, Needs, Planned, RunOptions, Stack,
};
use peak_alloc::PeakAlloc;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[global_allocator]
static PEAK: PeakAlloc = PeakAlloc;

/// A synthetic module: reads its inputs, optionally waits, outputs a number.
struct Node {
    id: String,
    inputs: Vec<Input<u64>>,
    wait: Duration,
}

impl Node {
    fn sum(&self, ctx: &Context) -> ModuleResult<u64> {
        let mut s = 1u64;
        for i in &self.inputs {
            s = s.wrapping_add(ctx.get(i)?);
        }
        Ok(s)
    }
}

impl Module for Node {
    type Output = u64;
    fn id(&self) -> &str {
        &self.id
    }
    fn kind(&self) -> &'static str {
        "node"
    }
    fn needs(&self, n: &mut Needs) {
        n.add(&self.inputs);
    }
    async fn plan(&self, ctx: &Context) -> ModuleResult<Planned<u64>> {
        Ok(Planned::new(self.sum(ctx)?))
    }
    async fn apply(&self, ctx: &Context) -> ModuleResult<u64> {
        let s = self.sum(ctx)?;
        tokio::time::sleep(self.wait).await;
        Ok(s)
    }
    async fn destroy(&self, _: &Context) -> ModuleResult<()> {
        Ok(())
    }
}

/// A stack of `n` modules; each reads up to 3 random modules among the 50 added before it.
fn random_stack(n: usize, seed: u64, wait: impl Fn(&mut StdRng) -> Duration) -> Stack {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut stack = Stack::new("bench");
    let mut handles: Vec<Handle<u64>> = Vec::with_capacity(n);
    for i in 0..n {
        let k = if i == 0 {
            0
        } else {
            rng.random_range(0..=3usize)
        };
        let inputs = (0..k)
            .map(|_| handles[rng.random_range(i.saturating_sub(50)..i)].input())
            .collect();
        let w = wait(&mut rng);
        handles.push(stack.add(Node {
            id: format!("m{i}"),
            inputs,
            wait: w,
        }));
    }
    stack
}

fn build_validate_plan(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let once = || async {
        let stack = random_stack(10_000, 7, |_| Duration::ZERO).build().unwrap();
        stack.plan().await.unwrap()
    };
    PEAK.reset_peak_usage();
    let before = PEAK.current_usage();
    let plan = rt.block_on(once());
    println!(
        "build_validate_plan/10000: {} modules planned; peak heap {:.1} MiB above the {:.1} MiB baseline",
        plan.modules.len(),
        (PEAK.peak_usage() - before) as f64 / 1048576.0,
        before as f64 / 1048576.0
    );
    drop(plan);
    c.bench_function("build_validate_plan/10000", |b| b.to_async(&rt).iter(once));
}

fn execute(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut ratios = Vec::new();
    let mut group = c.benchmark_group("execute");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.bench_function("1000", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for i in 0..iters {
                let stack = random_stack(1_000, 11 + i, |rng| {
                    Duration::from_millis(rng.random_range(5..=20))
                })
                .build()
                .unwrap();
                let report = rt.block_on(stack.apply(&RunOptions::new())).unwrap();
                ratios
                    .push(report.wall_time.as_secs_f64() / report.critical_path_time.as_secs_f64());
                total += report.wall_time;
            }
            total
        })
    });
    group.finish();
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    println!(
        "execute/1000: wall time / critical path: median {median:.4} (min {:.4}, max {:.4}, {} runs)",
        ratios[0],
        ratios[ratios.len() - 1],
        ratios.len()
    );
}

criterion_group!(benches, build_validate_plan, execute);
criterion_main!(benches);
