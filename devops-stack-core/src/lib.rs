//! The core of devops-stack: the [`Module`] trait, the typed [`Stack`] builder, the DAG
//! executor, offline [`plan`]s and the [`interfaces`] modules exchange.
//!
//! A stack is a set of modules. Adding a module returns a typed [`Handle`] to its future output;
//! passing that handle to another module's constructor is what makes the dependency edge, so a
//! module cannot depend on something that is not in the stack. [`Stack::build`] validates the
//! whole configuration before anything runs, and the [`BuiltStack`] it returns can be planned
//! offline, applied or destroyed. The executor starts each module the moment its own inputs are
//! ready, runs independent modules in parallel, and skips only the dependents of a failure.
//!
//! ```
//! use devops_stack_core::{Context, Module, ModuleResult, Needs, Planned, Resource, RunOptions, Stack, Input};
//! use serde_json::json;
//!
//! /// Deploys a config map holding a greeting; outputs the greeting.
//! struct Greeting { id: String, to: Input<String> }
//!
//! impl Module for Greeting {
//!     type Output = String;
//!     fn id(&self) -> &str { &self.id }
//!     fn kind(&self) -> &'static str { "greeting" }
//!     fn needs(&self, needs: &mut Needs) { needs.add(&self.to); }
//!     async fn plan(&self, ctx: &Context) -> ModuleResult<Planned<String>> {
//!         let text = format!("hello, {}", ctx.get(&self.to)?);
//!         let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
//!                         "metadata": {"name": self.id, "namespace": "default"},
//!                         "data": {"text": text}});
//!         Ok(Planned::new(text).with_resources([Resource::kubernetes("local", &cm)]))
//!     }
//!     async fn apply(&self, ctx: &Context) -> ModuleResult<String> {
//!         Ok(format!("hello, {}", ctx.get(&self.to)?))
//!     }
//!     async fn destroy(&self, _ctx: &Context) -> ModuleResult<()> { Ok(()) }
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let mut stack = Stack::new("demo");
//! let first = stack.add(Greeting { id: "first".into(), to: Input::value("world".into()) });
//! stack.add(Greeting { id: "second".into(), to: first.input() });
//! let stack = stack.build()?;
//!
//! let plan = stack.plan().await?;
//! assert!(plan.to_text().contains("v1 ConfigMap default/second"));
//!
//! let report = stack.apply(&RunOptions::new()).await?;
//! assert_eq!(report.module("second").unwrap().output.as_ref().unwrap(), "hello, hello, world");
//! # Ok::<_, devops_stack_core::Error>(())
//! # }).unwrap();
//! ```

pub mod argocd;
pub mod clusters;
mod context;
pub mod error;
mod events;
mod executor;
mod graph;
mod handle;
pub mod interfaces;
pub mod k8s;
mod layout;
mod module;
mod output;
pub mod plan;
mod report;
mod run;
pub mod run_lock;
mod scope;
mod secret;
mod stack;
mod step;
pub mod validate;

pub use context::Context;
pub use error::{BoxError, ConfigError, Error, Result};
pub use events::Event;
pub use handle::{AsDependencies, Dependency, Handle, Input, Needs};
pub use k8s::ApplicationRefusal;
pub use module::{Module, ModuleResult, Phase, Planned, Step};
pub use plan::{Plan, Resource};
pub use report::{Failure, ModuleReport, Report, Status};
pub use run::{Engine, EngineRun, RunEnd, RunOptions};
pub use secret::{REDACTED, Secret};
pub use stack::{BuiltStack, Scope, Stack};
pub use validate::{Capability, Interface, NamespaceOwner, Validation};

pub use tokio_util::sync::CancellationToken;
