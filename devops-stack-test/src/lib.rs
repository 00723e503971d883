//! Test support shared by the crates of devops-stack (as `tower-test` is tower's): what the
//! tests of several crates need and no user does.
//!
//! - [`git`]: `git` as the live tests run it against the test environment's git server.
//! - [`stats`]: medians for the live benchmarks.
//! - [`tls`]: a TLS server on 127.0.0.1 whose certificate a certificate authority made in the
//!   test signed, and kubeconfig files that trust one certificate authority or another, to see
//!   what a run says when TLS fails against a real server.
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

pub mod git;
pub mod stats;
pub mod tls;
