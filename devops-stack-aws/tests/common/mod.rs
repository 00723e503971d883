//! Shared test helpers: moto's side (from `devops-stack-test`, which the root crate's
//! `eks_components_live` uses too), and the SDK interceptors of these tests.
#![allow(dead_code, unreachable_pub)]

pub use devops_stack_test::aws::*;

pub mod eks_fake;
pub mod recorder;
pub mod replay;
