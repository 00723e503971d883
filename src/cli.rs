//! The command line every embedding tool gets: `plan [--json]`, `graph`, `diff`, `apply`,
//! `destroy [--abandon-in-cluster]`, `state` and `unlock [--force]`, with progress per module,
//! Ctrl-C that stops cleanly (the next run resumes), and the stack's lock held for the whole run.
//!
//! A tool gives its platform definition: a function that builds the stack, all of it or only
//! what lies outside the cluster ([`Part`]), and says which module is the cluster and with which
//! [`RunOptions`] it runs ([`Built`]). Then one call:
//!
//! ```no_run
//! use devops_stack::cli::{Built, Cli, Part};
//! use devops_stack::clusters::Kind;
//! use devops_stack::modules::ArgoCd;
//! use devops_stack::{Error, RunOptions, Stack};
//!
//! fn platform(_part: Part) -> Result<Built<devops_stack::clusters::LocalCluster>, Error> {
//!     let mut stack = Stack::new("dev");
//!     let cluster = stack.add(Kind::new("dev"));
//!     stack.add(ArgoCd::new(&cluster));
//!     Ok(Built::new(stack.build()?, RunOptions::new()).cluster(cluster))
//! }
//!
//! #[tokio::main]
//! async fn main() -> std::process::ExitCode {
//!     Cli::new(platform).main().await
//! }
//! ```
//!
//! Exit codes: 0 when the command succeeded, 1 when it failed, 2 from `diff` when an apply would
//! change something (as `terraform plan -detailed-exitcode`) and for a command line clap refuses.
//!
//! # The lock
//! Two runs of one stack never change it at once. When the tool gives a lock outside the cluster
//! ([`Cli::lock`], such as `devops_stack::aws::lock::S3Lock`), `apply` and `destroy` hold it
//! for the whole run, a first apply too, before the cluster exists; a second run is refused with
//! the holder's name. Once the cluster exists, the run also holds the Kubernetes engine's Lease
//! in it ([`StackLock`]). `unlock` breaks a stale lock, naming its holder and age; a live one
//! only with `--force`.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use devops_stack_core::interfaces::{ClusterProvider, ClusterRef};
use devops_stack_core::k8s::{
    KubeEngine, KubeOptions, StackLock, diff_stack, preflight_stack, read_state,
};
use devops_stack_core::run_lock::{HeldLock, LockInfo, RunLock, holder_identity};
use devops_stack_core::{BuiltStack, CancellationToken, Error, Handle, Report, RunOptions};

use crate::progress::{Progress, Style};

/// Which part of the platform to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Part {
    /// Everything.
    Whole,
    /// Only what lies outside the cluster (the cloud resources and the cluster itself): what
    /// `destroy --abandon-in-cluster` destroys when the cluster's API no longer answers.
    OutsideCluster,
}

/// A built platform: the stack, the module that is its cluster, and how it runs.
pub struct Built<C> {
    stack: BuiltStack,
    cluster: Option<Handle<C>>,
    options: RunOptions,
}

impl<C> Built<C> {
    /// `stack`, run with `options` (concurrency, timeouts by handle, engines). The command
    /// line adds its events, cancellation, lock and abandon flag.
    pub fn new(stack: BuiltStack, options: RunOptions) -> Self {
        Built {
            stack,
            cluster: None,
            options,
        }
    }

    /// The module that makes the cluster: where the stack's state and Lease live, what `diff`
    /// compares against and `destroy` checks for reachability first.
    #[must_use]
    pub fn cluster(mut self, cluster: Handle<C>) -> Self {
        self.cluster = Some(cluster);
        self
    }
}

#[derive(Parser, Debug)]
#[command(about = "Plan, diff, apply and destroy a devops-stack platform")]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug, Clone)]
enum Command {
    /// The offline plan (no cloud account, no cluster) and the dependency graph.
    Plan {
        /// The plan as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The dependency graph as Graphviz DOT.
    Graph,
    /// What an apply would change on what is live; exit code 2 when something would.
    Diff,
    /// Create or update everything, each module as soon as its inputs are ready.
    Apply,
    /// Remove everything the stack created, dependents first.
    Destroy {
        /// When the cluster's API does not answer: abandon the objects in it and destroy the
        /// rest (the cloud resources and the cluster).
        #[arg(long)]
        abandon_in_cluster: bool,
    },
    /// What the stack's state records, module by module.
    State,
    /// Break the stack's lock, naming its holder and age.
    Unlock {
        /// Also when its holder is live (renewed within its lease).
        #[arg(long)]
        force: bool,
    },
}

/// How a command ended, when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Done.
    Done,
    /// `diff`: an apply would change something.
    Changes,
}

impl Outcome {
    fn code(self) -> ExitCode {
        match self {
            Outcome::Done => ExitCode::SUCCESS,
            Outcome::Changes => ExitCode::from(2),
        }
    }
}

type Define<C> = dyn Fn(Part) -> Result<Built<C>, Error> + Send + Sync;

/// The command line of a platform. See the [module documentation](self).
pub struct Cli<C> {
    define: Box<Define<C>>,
    lock: Option<Arc<dyn RunLock>>,
    kube: KubeOptions,
    cancel: CancellationToken,
    holder: String,
    progress: bool,
}

impl<C: ClusterProvider + Send + Sync + 'static> Cli<C> {
    /// The command line of the platform `define` builds.
    pub fn new(define: impl Fn(Part) -> Result<Built<C>, Error> + Send + Sync + 'static) -> Self {
        Cli {
            define: Box::new(define),
            lock: None,
            kube: KubeOptions::default(),
            cancel: CancellationToken::new(),
            holder: holder_identity(),
            progress: true,
        }
    }

    /// A lock outside the cluster, held by `apply` and `destroy` for the whole run, a first
    /// apply too.
    #[must_use]
    pub fn lock(mut self, lock: impl RunLock + 'static) -> Self {
        self.lock = Some(Arc::new(lock));
        self
    }

    /// The Kubernetes engine's options (the state namespace, waits, adoption).
    #[must_use]
    pub fn kube_options(mut self, options: KubeOptions) -> Self {
        self.kube = options;
        self
    }

    /// The identity the run's locks name (default `user@host pid N`).
    #[must_use]
    pub fn holder(mut self, holder: impl Into<String>) -> Self {
        self.holder = holder.into();
        self
    }

    /// Cancels the running command when `token` fires, as Ctrl-C does.
    #[must_use]
    pub fn cancel_token(mut self, token: CancellationToken) -> Self {
        self.cancel = token;
        self
    }

    /// Whether to show each module's progress during `apply` and `destroy` (default true).
    #[must_use]
    pub fn progress(mut self, show: bool) -> Self {
        self.progress = show;
        self
    }

    /// Parses the process's arguments, runs the command and returns its exit code; errors are
    /// printed to standard error.
    pub async fn main(self) -> ExitCode {
        let args = match Args::try_parse() {
            Ok(args) => args,
            Err(e) => {
                let _ = e.print();
                return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
            }
        };
        let on_ctrl_c = self.cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!(
                    "interrupted: stopping the running steps; run the command again to resume"
                );
                on_ctrl_c.cancel();
            }
        });
        match self
            .run(args.command.unwrap_or(Command::Plan { json: false }))
            .await
        {
            Ok(outcome) => outcome.code(),
            Err(e) => {
                eprintln!("\nerror: {e}");
                ExitCode::FAILURE
            }
        }
    }

    /// Runs the command line `args` (without the program name): what [`Cli::main`] does,
    /// returning the outcome or the error instead of printing it.
    ///
    /// # Errors
    /// The command's error: [`Error::LockHeld`] naming the holder when another run holds the
    /// stack's lock, [`Error::RunFailed`] with the run's report, [`Error::Invalid`] for a
    /// platform that does not build.
    pub async fn execute<I, S>(self, args: I) -> Result<Outcome, Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<std::ffi::OsString> + Clone,
    {
        let args = Args::try_parse_from(
            std::iter::once(std::ffi::OsString::from("devops-stack"))
                .chain(args.into_iter().map(Into::into)),
        )
        .map_err(|e| {
            Error::Invalid(vec![devops_stack_core::ConfigError::new(
                None,
                "command line",
                e.to_string(),
                "run with --help for the commands and their flags",
            )])
        })?;
        self.run(args.command.unwrap_or(Command::Plan { json: false }))
            .await
    }

    async fn run(self, command: Command) -> Result<Outcome, Error> {
        let built = (self.define)(Part::Whole)?;
        match command {
            Command::Plan { json } => {
                let plan = built.stack.plan().await?;
                let mut out = std::io::stdout().lock();
                if json {
                    let _ = writeln!(out, "{}", plan.to_json());
                } else {
                    let _ = writeln!(out, "{}", plan.to_text());
                    let order = built.stack.order().join(" → ");
                    let _ = writeln!(out, "Execution order: {order}\n");
                    let _ = writeln!(
                        out,
                        "Dependency graph (Graphviz DOT; solid: data, dashed: phase ordering):\n"
                    );
                    let _ = write!(out, "{}", built.stack.to_dot());
                }
                Ok(Outcome::Done)
            }
            Command::Graph => {
                print!("{}", built.stack.to_dot());
                Ok(Outcome::Done)
            }
            Command::Diff => self.diff(&built).await,
            Command::State => self.state(&built).await,
            Command::Unlock { force } => self.unlock(&built, force).await,
            Command::Apply => self.locked(&built.stack, self.apply(&built)).await,
            Command::Destroy { abandon_in_cluster } => {
                self.locked(&built.stack, self.destroy(&built, abandon_in_cluster))
                    .await
            }
        }
    }

    /// The live cluster of `built`, when it has a cluster module whose cluster exists.
    fn live_cluster(&self, built: &Built<C>, live: &Report) -> Option<ClusterRef> {
        let handle = built.cluster.as_ref()?;
        live.output(handle).map(|c| c.cluster())
    }

    async fn client(cluster: &ClusterRef) -> Result<kube::Client, Error> {
        cluster.client().await.map_err(|source| Error::Module {
            module: cluster.name().to_owned(),
            step: devops_stack_core::Step::Read,
            source,
        })
    }

    async fn diff(&self, built: &Built<C>) -> Result<Outcome, Error> {
        let live = built.stack.read(&built.options).await?;
        let clusters: Vec<ClusterRef> = self.live_cluster(built, &live).into_iter().collect();
        if clusters.is_empty() {
            println!("The cluster does not exist yet: an apply creates everything in the plan.\n");
        }
        let diff = diff_stack(&built.stack, &live, &clusters, &self.kube).await?;
        print!("{}", diff.to_text());
        Ok(if diff.is_empty() && !clusters.is_empty() {
            Outcome::Done
        } else {
            Outcome::Changes
        })
    }

    async fn state(&self, built: &Built<C>) -> Result<Outcome, Error> {
        let live = built.stack.read(&built.options).await?;
        let Some(cluster) = self.live_cluster(built, &live) else {
            println!(
                "stack `{}` has no state: its cluster does not exist",
                built.stack.name()
            );
            return Ok(Outcome::Done);
        };
        let client = Self::client(&cluster).await?;
        let entries = read_state(&client, built.stack.name(), &self.kube).await?;
        println!(
            "state of stack `{}` (ConfigMap {}/{} in cluster `{}`): {} module{}",
            built.stack.name(),
            self.kube.state_namespace,
            devops_stack_core::k8s::state_name(built.stack.name()),
            cluster.name(),
            entries.len(),
            if entries.len() == 1 { "" } else { "s" }
        );
        for (module, entry) in &entries {
            let pending = entry.objects.iter().filter(|o| o.hash.is_none()).count();
            let gone = if built.stack.order().contains(&module.as_str()) {
                ""
            } else {
                " (no longer in the stack: the next apply destroys it)"
            };
            println!(
                "  {module}: {} object{}{}{}{gone}",
                entry.objects.len(),
                if entry.objects.len() == 1 { "" } else { "s" },
                if pending == 0 {
                    String::new()
                } else {
                    format!(", {pending} being applied when a run stopped")
                },
                if entry.needs.is_empty() {
                    String::new()
                } else {
                    format!("; needs {}", entry.needs.join(", "))
                }
            );
            for o in &entry.objects {
                println!("    {}", o.object);
            }
        }
        Ok(Outcome::Done)
    }

    async fn unlock(&self, built: &Built<C>, force: bool) -> Result<Outcome, Error> {
        let stack = built.stack.name();
        let mut broke = Vec::new();
        if let Some(lock) = &self.lock {
            broke.extend(lock.unlock(stack, force).await?);
        }
        let live = built.stack.read(&built.options).await;
        if let Ok(live) = live
            && let Some(cluster) = self.live_cluster(built, &live)
        {
            let client = Self::client(&cluster).await?;
            broke.extend(StackLock::unlock(&client, stack, &self.kube, force).await?);
        }
        if broke.is_empty() {
            println!("stack `{stack}` is not locked");
        }
        for info in broke {
            println!("{}", describe_broken(&info));
        }
        Ok(Outcome::Done)
    }

    /// Runs `work` holding the lock outside the cluster, if the tool gave one; the run is
    /// cancelled if the lock is taken away.
    async fn locked(
        &self,
        stack: &BuiltStack,
        work: impl std::future::Future<Output = Result<Outcome, Error>>,
    ) -> Result<Outcome, Error> {
        let Some(lock) = &self.lock else {
            return work.await;
        };
        let held: Box<dyn HeldLock> = lock.acquire(stack.name(), &self.holder).await?;
        println!(
            "holding the lock {} as `{}`",
            lock.location(stack.name()),
            self.holder
        );
        let lost = held.lost();
        let cancel = self.cancel.clone();
        let watch = tokio::spawn(async move {
            lost.cancelled().await;
            eprintln!("the stack's lock was taken away: stopping the run");
            cancel.cancel();
        });
        let result = work.await;
        watch.abort();
        if let Err(e) = held.release().await {
            eprintln!("note: the stack lock was not released ({e}); it expires by itself");
        }
        result
    }

    async fn apply(&self, built: &Built<C>) -> Result<Outcome, Error> {
        let live = built.stack.read(&built.options).await?;
        let cluster = self.live_cluster(built, &live);
        if let Some(cluster) = &cluster {
            // Every module's objects checked for ownership before the first module writes.
            preflight_stack(
                &built.stack,
                &live,
                std::slice::from_ref(cluster),
                &self.kube,
            )
            .await?;
        }
        self.run_step(&built.stack, &built.options, cluster, false)
            .await
    }

    async fn destroy(&self, built: &Built<C>, abandon: bool) -> Result<Outcome, Error> {
        let live = built.stack.read(&built.options).await?;
        let cluster = self.live_cluster(built, &live);
        let unreachable = match &cluster {
            Some(cluster) => probe(cluster).await,
            None => None,
        };
        match unreachable {
            None => {
                self.run_step(&built.stack, &built.options, cluster, true)
                    .await
            }
            Some(reason) if abandon => {
                println!(
                    "cannot reach the cluster's API ({reason}); abandoning the objects in it (--abandon-in-cluster) and destroying the rest\n"
                );
                let outside = (self.define)(Part::OutsideCluster)?;
                let options = outside.options.clone().abandon_in_cluster();
                self.run_step(&outside.stack, &options, None, true).await
            }
            Some(reason) => Err(reason.into_error(cluster.as_deref())),
        }
    }

    /// Applies or destroys, showing each module's progress, holding the cluster's Lease when
    /// the cluster answers.
    async fn run_step(
        &self,
        stack: &BuiltStack,
        options: &RunOptions,
        cluster: Option<ClusterRef>,
        destroy: bool,
    ) -> Result<Outcome, Error> {
        let lease = match &cluster {
            Some(cluster) => {
                let client = Self::client(cluster).await?;
                let lock = StackLock::builder(client, stack.name())
                    .namespace(&self.kube.state_namespace)
                    .holder(format!("{}/{}", self.holder, short_id()))
                    .acquire()
                    .await?;
                println!(
                    "holding the Lease of stack `{}` in cluster `{}` as `{}`",
                    stack.name(),
                    cluster.name(),
                    lock.holder()
                );
                Some(lock)
            }
            None => None,
        };
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let printer = self
            .progress
            .then(|| Progress::new(Style::detect()).spawn(rx));
        let engine = KubeEngine::new(self.kube.clone());
        let options = options
            .clone()
            .cancel_token(self.cancel.clone())
            .events(tx)
            .engine(match &lease {
                Some(lock) => engine.lock(lock.clone()),
                None => engine,
            });
        let result = if destroy {
            stack.destroy(&options).await
        } else {
            stack.apply(&options).await
        };
        drop(options);
        if let Some(lock) = lease
            && let Err(e) = lock.release().await
        {
            // After a destroy the cluster, and the Lease with it, may be gone.
            eprintln!("note: the stack's Lease was not released ({e}); it expires by itself");
        }
        if let Some(printer) = printer {
            let _ = printer.await;
        }
        match result {
            Ok(report) => {
                println!("\n{}", report.to_text());
                Ok(Outcome::Done)
            }
            Err(Error::RunFailed {
                report,
                step,
                failed,
            }) => {
                println!("\n{}", report.to_text());
                if self.cancel.is_cancelled() {
                    eprintln!("the run was interrupted: run the same command again to resume");
                }
                Err(Error::RunFailed {
                    report,
                    step,
                    failed,
                })
            }
            Err(e) => Err(e),
        }
    }
}

/// Why the cluster's API does not answer within 20 s, if it does not.
async fn probe(cluster: &ClusterRef) -> Option<Unanswered> {
    let client = match cluster.client().await {
        Ok(client) => client,
        Err(e) => return Some(Unanswered::Client(e)),
    };
    match tokio::time::timeout(Duration::from_secs(20), client.apiserver_version()).await {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(Unanswered::Api(e)),
        Err(_) => Some(Unanswered::Silent),
    }
}

/// Why a cluster did not answer before a destroy.
#[derive(Debug)]
enum Unanswered {
    Client(devops_stack_core::BoxError),
    Api(kube::Error),
    Silent,
}

impl std::fmt::Display for Unanswered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unanswered::Client(e) => write!(f, "{e}"),
            Unanswered::Api(e) => write!(f, "{e}"),
            Unanswered::Silent => f.write_str("no answer within 20 s"),
        }
    }
}

impl Unanswered {
    /// The typed error of a destroy that stopped before anything was destroyed.
    fn into_error(self, cluster: Option<&dyn devops_stack_core::interfaces::Cluster>) -> Error {
        let action = "checking that the cluster's API answers before destroying (nothing was destroyed; make it reachable and run again, or, if the cluster is going away and the objects in it may be abandoned, run `destroy --abandon-in-cluster`)";
        match (self, cluster) {
            (Unanswered::Api(e), Some(cluster)) => {
                match devops_stack_core::k8s::unreachable_cause(&e) {
                    Some(cause) => Error::unreachable(cluster, cause, Box::new(e)),
                    None => Error::kube(action, e),
                }
            }
            (Unanswered::Api(e), None) => Error::kube(action, e),
            (other, cluster) => Error::Module {
                module: cluster.map_or_else(|| "cluster".to_owned(), |c| c.name().to_owned()),
                step: devops_stack_core::Step::Destroy,
                source: format!("{action}: {other}").into(),
            },
        }
    }
}

/// What `unlock` says of a lock it broke: where, whose, how old.
fn describe_broken(info: &LockInfo) -> String {
    format!(
        "broke the lock {} held by `{}` (taken {} s ago, last renewed {} s ago{})",
        info.location,
        info.holder,
        info.held_for.as_secs(),
        info.renewed_ago.as_secs(),
        if info.is_live() {
            "; it was live: that run will stop when it next renews"
        } else {
            "; stale"
        }
    )
}

/// A short random id, so that two runs of one tool on one machine hold different Leases.
fn short_id() -> String {
    format!(
        "{:06x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
            & 0xff_ffff
    )
}
