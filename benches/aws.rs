//! AWS benchmark against an emulator (moto).
//!
//! - `aws/apply_destroy`: apply, then destroy, a stack of an EKS cluster with one managed node
//!   group and a Cognito user pool with its domain, four app clients, an admin group and one
//!   user. Each iteration starts from an empty emulator and leaves it empty.
//!
//! Run: `DEVOPS_STACK_TEST_AWS_ENDPOINT=http://127.0.0.1:5055 cargo bench --bench aws`
//! (start moto first: `target/moto-venv/bin/moto_server -H 127.0.0.1 -p 5055`). Without the
//! variable the benchmark prints why and does nothing.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use criterion::{Criterion, criterion_group};
use devops_stack_aws::cognito::{Cognito, User};
use devops_stack_aws::eks::{Eks, NodeGroup};
use devops_stack_aws::{AwsConfig, Polling};
use devops_stack_core::interfaces::Hostnames;
use devops_stack_core::{RunOptions, Stack};

const ENDPOINT_VAR: &str = "DEVOPS_STACK_TEST_AWS_ENDPOINT";

fn endpoint() -> Option<String> {
    std::env::var(ENDPOINT_VAR)
        .ok()
        .filter(|e| !e.is_empty())
        .map(|e| e.trim_end_matches('/').to_owned())
}

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

fn stack(endpoint: &str) -> devops_stack_core::BuiltStack {
    let aws = AwsConfig::new()
        .region("us-east-1")
        .endpoint_url(endpoint)
        .static_credentials("testing", "testing", None);
    let polling = Polling {
        initial_interval: Duration::from_millis(20),
        max_interval: Duration::from_millis(100),
        timeout: Duration::from_secs(30),
    };
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
    let Some(endpoint) = endpoint() else { return };
    reset(&endpoint);
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    let stack = stack(&endpoint);
    let options = RunOptions::new();
    let mut group = c.benchmark_group("aws");
    group.sample_size(10);
    group.bench_function("apply_destroy", |b| {
        b.to_async(&rt).iter(|| async {
            stack.apply(&options).await.expect("applied");
            stack.destroy(&options).await.expect("destroyed");
        });
    });
    group.finish();
}

criterion_group!(benches, apply_destroy);

fn main() {
    if endpoint().is_none() {
        eprintln!(
            "skipping the AWS benchmark: {ENDPOINT_VAR} is not set (start moto and set it to its URL)"
        );
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
