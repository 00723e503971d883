//! Test support shared by the crates of devops-stack (as `tower-test` is tower's): what the
//! tests of several crates need and no user does. The crates it tests take it as a
//! dev-dependency only (it depends on them).
//!
//! - [`live`]: the live tier's gate on `DEVOPS_STACK_TEST_KUBECONFIG`, a cluster whose client
//!   counts its requests, whole-cluster sweeps by label and clean-up that survives a failed
//!   assertion.
//! - [`argocd_standin`]: a stand-in playing Argo CD's application controller on a cluster
//!   without Argo CD.
//! - [`fake_api`]: an in-memory Kubernetes API server behind a `kube::Client`.
//! - [`real_argocd`]: Argo CD's install for the tests on the test environment's real Argo CD.
//! - `fixture_charts`, `platform`, `seven_modules` (feature `modules`): fixture Helm
//!   charts, the platform tier's stack and the seven-module stack, built from the component
//!   modules.
//! - `aws` (feature `aws`): moto's side of the AWS tests.
//! - [`git`]: `git` as the live tests run it against the test environment's git server.
//! - [`stats`]: medians for the live benchmarks.
//! - [`tls`]: a TLS server on 127.0.0.1 whose certificate a certificate authority made in the
//!   test signed, and kubeconfig files that trust one certificate authority or another, to see
//!   what a run says when TLS fails against a real server.
//!
//! A live test is marked `#[ignore = "needs ..."]` (`cargo test` reports it ignored) and asks
//! for what it needs through a gate such as [`live::kubeconfig`], which panics, naming the
//! variable and how to set it, when the test is run without it (`--include-ignored`).
//!
//! ```
//! use devops_stack_test::tls::{TestCa, TlsServer, kubeconfig};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let ca = TestCa::new("cluster CA");
//! let server = TlsServer::start(ca.server_certificate(&["127.0.0.1"])).await;
//! let other = TestCa::new("another CA");
//! let file = kubeconfig(&server.url(), &other.pem(), &["lab"]);
//! assert!(std::fs::read_to_string(file.path()).unwrap().contains("current-context: lab"));
//! # }
//! ```

pub mod argocd_standin;
#[cfg(feature = "aws")]
pub mod aws;
pub mod fake_api;
#[cfg(feature = "modules")]
pub mod fixture_charts;
pub mod git;
pub mod live;
#[cfg(feature = "modules")]
pub mod platform;
pub mod real_argocd;
#[cfg(feature = "modules")]
pub mod seven_modules;
pub mod stats;
pub mod tls;
