//! AWS benchmark against an emulator (moto).
//!
//! - `aws/apply_destroy`: apply, then destroy, a stack of an EKS cluster with one managed node
//!   group and a Cognito user pool with its domain, four app clients, an admin group and one
//!   user. Each iteration starts from an empty emulator and leaves it empty.
//! - `aws/from_zero_apply`: the whole AWS half from an empty account: a `Vpc` (3 zones, a NAT
//!   gateway per zone), an `Eks` that creates its IAM roles, OIDC provider and a node group, and
//!   the same `Cognito`. Only the apply is timed; each iteration starts from an empty emulator.
//! - `aws/destroy`: the destroy (read and destroy passes) of that AWS half, timed alone after an
//!   untimed apply; it leaves the emulator empty.
//!
//! The number of AWS calls of one from-zero apply and of one destroy is printed before the
//! timings (counted by an SDK interceptor).
//!
//! Run: `DEVOPS_STACK_TEST_AWS_ENDPOINT=http://127.0.0.1:5055 cargo bench --bench aws`
//! (start moto first: `target/moto-venv/bin/moto_server -H 127.0.0.1 -p 5055`). Without the
//! variable the benchmark fails, saying how to set it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use devops_stack_aws::vpc::Vpc;

use criterion::{Criterion, criterion_group};
use devops_stack_aws::cognito::{Cognito, User};
use devops_stack_aws::eks::{Eks, NodeGroup};
use devops_stack_aws::{AwsConfig, Polling};
use devops_stack_core::interfaces::Hostnames;
use devops_stack_core::{RunOptions, Stack};

/// `POST /moto-api/reset`.
fn reset(endpoint: &str) {
    let host = endpoint.trim_start_matches("http://");
    let mut stream = TcpStream::connect(host).expect("the emulator is reachable");
    write!(stream, "POST /moto-api/reset HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .expect("reset sent");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("reset answered");
    assert!(response.contains(" 200 "), "reset failed: {response}");
}

/// Counts the AWS operations called (retries not included).
#[derive(Debug, Clone, Default)]
struct Calls(Arc<AtomicUsize>);

impl Calls {
    fn take(&self) -> usize {
        self.0.swap(0, Ordering::SeqCst)
    }
}

impl Intercept for Calls {
    fn name(&self) -> &'static str {
        "Calls"
    }
    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn aws(endpoint: &str) -> AwsConfig {
    AwsConfig::new()
        .region("us-east-1")
        .endpoint_url(endpoint)
        .static_credentials("testing", "testing", None)
}

fn polling() -> Polling {
    Polling {
        initial_interval: Duration::from_millis(20),
        max_interval: Duration::from_millis(100),
        timeout: Duration::from_secs(30),
    }
}

/// The AWS half from an empty account: network, cluster with its roles, Cognito.
fn aws_half(aws: &AwsConfig) -> devops_stack_core::BuiltStack {
    let mut stack = Stack::new("bench");
    let vpc = stack.add(
        Vpc::create("vpc", "bench", "10.0.0.0/16")
            .aws(aws.clone())
            .polling(polling())
            .max_nodes(6),
    );
    stack.add(
        Eks::new("eks", "bench", "example.com")
            .aws(aws.clone())
            .polling(polling())
            .network(&vpc)
            .node_group(NodeGroup::named("default").scaling(1, 2, 6)),
    );
    stack.add(
        Cognito::new("cognito", Hostnames::new("bench", "example.com"))
            .aws(aws.clone())
            .domain_prefix("bench-example-login")
            .user(User::new("alice", "alice@example.com").admin()),
    );
    stack.build().expect("a valid stack")
}

fn stack(endpoint: &str) -> devops_stack_core::BuiltStack {
    let aws = aws(endpoint);
    let polling = polling();
    let mut stack = Stack::new("bench");
    stack.add(
        Eks::new("eks", "bench", "example.com")
            .aws(aws.clone())
            .polling(polling)
            .role_arn("arn:aws:iam::123456789012:role/eks-cluster")
            .subnets(["subnet-aaa", "subnet-bbb"])
            .node_group(
                NodeGroup::new("default", "arn:aws:iam::123456789012:role/eks-nodes")
                    .scaling(1, 2, 3),
            ),
    );
    stack.add(
        Cognito::new("cognito", Hostnames::new("bench", "example.com"))
            .aws(aws)
            .domain_prefix("bench-example-login")
            .user(User::new("alice", "alice@example.com").admin()),
    );
    stack.build().expect("a valid stack")
}

fn apply_destroy(c: &mut Criterion) {
    // without moto, fails saying how to start it: a benchmark that measured nothing must not
    // look like one that ran
    let endpoint = devops_stack_test::aws::endpoint();
    reset(&endpoint);
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    let stack = stack(&endpoint);
    let options = RunOptions::new();
    // moto's cluster has no Kubernetes API behind it.
    let abandon = RunOptions::new().abandon_in_cluster();
    let mut group = c.benchmark_group("aws");
    group.sample_size(10);
    group.bench_function("apply_destroy", |b| {
        b.to_async(&rt).iter(|| async {
            stack.apply(&options).await.expect("applied");
            stack.destroy(&abandon).await.expect("destroyed");
        });
    });
    group.finish();
}

fn aws_half_from_zero(c: &mut Criterion) {
    // without moto, fails saying how to start it: a benchmark that measured nothing must not
    // look like one that ran
    let endpoint = devops_stack_test::aws::endpoint();
    reset(&endpoint);
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    let calls = Calls::default();
    let stack = aws_half(&aws(&endpoint).interceptor(calls.clone()));
    let options = RunOptions::new();
    let abandon = RunOptions::new().abandon_in_cluster();
    rt.block_on(async {
        stack.apply(&options).await.expect("applied");
        let applied = calls.take();
        stack.destroy(&abandon).await.expect("destroyed");
        let destroyed = calls.take();
        eprintln!("AWS calls: from-zero apply of the AWS half {applied}, its destroy {destroyed}");
    });
    let mut group = c.benchmark_group("aws");
    group.sample_size(10);
    group.bench_function("from_zero_apply", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (stack, options, abandon) = (&stack, &options, &abandon);
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    stack.apply(options).await.expect("applied");
                    total += start.elapsed();
                    stack.destroy(abandon).await.expect("destroyed");
                }
                total
            }
        });
    });
    group.bench_function("destroy", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (stack, options, abandon) = (&stack, &options, &abandon);
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    stack.apply(options).await.expect("applied");
                    let start = Instant::now();
                    stack.destroy(abandon).await.expect("destroyed");
                    total += start.elapsed();
                }
                total
            }
        });
    });
    group.finish();
}

criterion_group!(benches, apply_destroy, aws_half_from_zero);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
