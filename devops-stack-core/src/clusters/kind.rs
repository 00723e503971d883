//! A local kind cluster, created and deleted through the `kind` CLI.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::LocalCluster;
use super::kubeconfig::validate_cluster;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::module::{Module, ModuleResult, Planned};
use crate::plan::Resource;
use crate::validate::Validation;

/// Container engines kind can run its nodes on, in the order they are looked for.
const ENGINES: [&str; 3] = ["docker", "podman", "nerdctl"];

/// A local kind cluster: apply creates it when it does not exist (and writes its kubeconfig),
/// read tells whether it exists, destroy deletes it. Needs the `kind` CLI and a container engine
/// (Docker, Podman or nerdctl).
///
/// ```
/// use devops_stack_core::clusters::Kind;
/// let kind = Kind::new("kind").node_image("kindest/node:v1.33.1");
/// assert_eq!(kind.cluster().context.as_deref(), Some("kind-kind"));
/// assert_eq!(kind.cluster().base_domain, "127-0-0-1.nip.io");
/// ```
#[derive(Debug, Clone)]
pub struct Kind {
    id: String,
    cluster: LocalCluster,
    image: Option<String>,
    config: Option<String>,
    program: PathBuf,
    /// Where programs are looked for; `None`: the `PATH` environment variable.
    search_path: Option<OsString>,
}

impl Kind {
    /// A kind cluster named `id`, with base domain `127-0-0-1.nip.io` and its kubeconfig in
    /// the system's temporary directory (`devops-stack-kind-<name>.kubeconfig`).
    pub fn new(id: impl Into<String>) -> Self {
        let id = id.into();
        Kind {
            cluster: LocalCluster {
                name: id.clone(),
                base_domain: "127-0-0-1.nip.io".into(),
                kubeconfig: default_kubeconfig(&id),
                context: Some(format!("kind-{id}")),
            },
            id,
            image: None,
            config: None,
            program: "kind".into(),
            search_path: None,
        }
    }

    /// The cluster's name (default: the module id); also names its kubeconfig context.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        if self.cluster.kubeconfig == default_kubeconfig(&self.cluster.name) {
            self.cluster.kubeconfig = default_kubeconfig(&name);
        }
        self.cluster.context = Some(format!("kind-{name}"));
        self.cluster.name = name;
        self
    }

    /// The base domain of the cluster's hostnames.
    #[must_use]
    pub fn base_domain(mut self, domain: impl Into<String>) -> Self {
        self.cluster.base_domain = domain.into();
        self
    }

    /// The node image (`kindest/node:v1.33.1`); kind's default when unset.
    #[must_use]
    pub fn node_image(mut self, image: impl Into<String>) -> Self {
        self.image = Some(image.into());
        self
    }

    /// A kind cluster configuration (YAML of `kind: Cluster`), for port mappings or more nodes.
    #[must_use]
    pub fn config(mut self, yaml: impl Into<String>) -> Self {
        self.config = Some(yaml.into());
        self
    }

    /// Where kind writes the cluster's kubeconfig.
    #[must_use]
    pub fn kubeconfig(mut self, path: impl Into<PathBuf>) -> Self {
        self.cluster.kubeconfig = path.into();
        self
    }

    /// The `kind` program (default: `kind` from `PATH`).
    #[must_use]
    pub fn program(mut self, program: impl Into<PathBuf>) -> Self {
        self.program = program.into();
        self
    }

    /// The cluster this module outputs.
    pub fn cluster(&self) -> &LocalCluster {
        &self.cluster
    }

    fn search_path(&self) -> Option<OsString> {
        self.search_path
            .clone()
            .or_else(|| std::env::var_os("PATH"))
    }

    /// Finds `kind` and a container engine, naming what is missing.
    fn tools(&self) -> Result<PathBuf> {
        let path = self.search_path();
        let kind = find_program(&self.program, path.as_deref()).ok_or_else(|| Error::ToolMissing {
            program: format!("`{}`", self.program.display()),
            purpose: format!("manage kind cluster `{}`", self.cluster.name),
            fix: "install kind (https://kind.sigs.k8s.io/docs/user/quick-start/#installation) or set `Kind::program`".into(),
        })?;
        container_engine(path.as_deref(), std::env::var("KIND_EXPERIMENTAL_PROVIDER").ok().as_deref()).map_err(|looked_for| {
            Error::ToolMissing {
                program: format!("a container engine ({looked_for})"),
                purpose: format!("run the nodes of kind cluster `{}`", self.cluster.name),
                fix: "install Docker (https://docs.docker.com/engine/install/) or Podman (https://podman.io/docs/installation) and start it".into(),
            }
        })?;
        Ok(kind)
    }

    async fn kind(
        &self,
        kind: &Path,
        args: &[&OsStr],
        cancel: &CancellationToken,
        module: &str,
    ) -> Result<String> {
        let line = format!(
            "{} {}",
            kind.display(),
            args.iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ")
        );
        let mut cmd = tokio::process::Command::new(kind);
        cmd.args(args).stdin(Stdio::null()).kill_on_drop(true);
        if let Some(path) = &self.search_path {
            cmd.env("PATH", path);
        }
        let output = tokio::select! {
            () = cancel.cancelled() => return Err(Error::Cancelled { module: module.to_owned() }),
            out = cmd.output() => out.map_err(|e| Error::Command { command: line.clone(), status: "not started".into(), stderr: e.to_string() })?,
        };
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let tail: String = stderr
                .chars()
                .rev()
                .take(2000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            return Err(Error::Command {
                command: line,
                status: output.status.to_string(),
                stderr: tail.trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    async fn exists(&self, kind: &Path, ctx: &Context) -> Result<bool> {
        let out = self
            .kind(
                kind,
                &[OsStr::new("get"), OsStr::new("clusters")],
                ctx.cancellation(),
                ctx.module_id(),
            )
            .await?;
        Ok(out.lines().any(|l| l.trim() == self.cluster.name))
    }

    /// Writes the existing cluster's kubeconfig.
    async fn export(&self, kind: &Path, ctx: &Context) -> Result<()> {
        let mut args = vec![OsStr::new("export"), OsStr::new("kubeconfig")];
        args.extend(self.name_args());
        self.kind(kind, &args, ctx.cancellation(), ctx.module_id())
            .await
            .map(drop)
    }

    fn name_args(&self) -> Vec<&OsStr> {
        vec![
            OsStr::new("--name"),
            OsStr::new(&self.cluster.name),
            OsStr::new("--kubeconfig"),
            self.cluster.kubeconfig.as_os_str(),
        ]
    }

    fn config_file(&self) -> PathBuf {
        let mut p = self.cluster.kubeconfig.clone().into_os_string();
        p.push(".kind-config.yaml");
        p.into()
    }
}

fn default_kubeconfig(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("devops-stack-kind-{name}.kubeconfig"))
}

/// The program `name` (a path, or a name looked up in `path`).
fn find_program(name: &Path, path: Option<&OsStr>) -> Option<PathBuf> {
    if name.components().count() > 1 {
        return name.is_file().then(|| name.to_owned());
    }
    std::env::split_paths(path?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The container engine kind will use: `provider` (`KIND_EXPERIMENTAL_PROVIDER`) if set, else
/// the first of [`ENGINES`] on `path`. The error lists what was looked for.
fn container_engine(
    path: Option<&OsStr>,
    provider: Option<&str>,
) -> std::result::Result<String, String> {
    let candidates: Vec<&str> = match provider {
        Some(p) if !p.is_empty() => vec![p],
        _ => ENGINES.to_vec(),
    };
    candidates
        .iter()
        .find(|e| find_program(Path::new(e), path).is_some())
        .map(|e| (*e).to_owned())
        .ok_or_else(|| candidates.join(", "))
}

impl Module for Kind {
    type Output = LocalCluster;

    fn id(&self) -> &str {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "kind"
    }

    fn validate(&self, v: &mut Validation) {
        validate_cluster(v, &self.cluster, false);
        if let Some(image) = &self.image
            && (image.is_empty() || image.contains(char::is_whitespace))
        {
            v.error(
                "node_image",
                format!("`{image}` is not an image reference"),
                "use an image like `kindest/node:v1.33.1`",
            );
        }
    }

    async fn plan(&self, _ctx: &Context) -> ModuleResult<Planned<LocalCluster>> {
        let props = json!({"image": self.image, "kubeconfig": self.cluster.kubeconfig, "config": self.config});
        Ok(
            Planned::new(self.cluster.clone()).with_resources([Resource::cloud(
                "kind",
                "kind:Cluster",
                &self.cluster.name,
                props,
            )]),
        )
    }

    async fn apply(&self, ctx: &Context) -> ModuleResult<LocalCluster> {
        let kind = self.tools()?;
        if self.exists(&kind, ctx).await? {
            ctx.progress(format!(
                "kind cluster `{}` exists; exporting its kubeconfig",
                self.cluster.name
            ));
            self.export(&kind, ctx).await?;
            return Ok(self.cluster.clone());
        }
        ctx.progress(format!("creating kind cluster `{}`", self.cluster.name));
        let mut args: Vec<&OsStr> = vec![OsStr::new("create"), OsStr::new("cluster")];
        args.extend(self.name_args());
        args.extend([OsStr::new("--wait"), OsStr::new("5m")]);
        if let Some(image) = &self.image {
            args.extend([OsStr::new("--image"), OsStr::new(image)]);
        }
        let config = self.config_file();
        if let Some(yaml) = &self.config {
            std::fs::write(&config, yaml).map_err(|source| Error::Io {
                action: "write the kind configuration".into(),
                path: config.clone(),
                source,
            })?;
            args.extend([OsStr::new("--config"), config.as_os_str()]);
        }
        self.kind(&kind, &args, ctx.cancellation(), ctx.module_id())
            .await?;
        Ok(self.cluster.clone())
    }

    async fn read(&self, ctx: &Context) -> ModuleResult<Option<LocalCluster>> {
        let kind = self.tools()?;
        if !self.exists(&kind, ctx).await? {
            return Ok(None);
        }
        self.export(&kind, ctx).await?;
        Ok(Some(self.cluster.clone()))
    }

    async fn destroy(&self, ctx: &Context) -> ModuleResult<()> {
        let kind = self.tools()?;
        if self.exists(&kind, ctx).await? {
            ctx.progress(format!("deleting kind cluster `{}`", self.cluster.name));
            let mut args = vec![OsStr::new("delete"), OsStr::new("cluster")];
            args.extend(self.name_args());
            self.kind(&kind, &args, ctx.cancellation(), ctx.module_id())
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::{RunOptions, Stack};

    fn script(dir: &Path, name: &str, body: &str) {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn names_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let mut k = Kind::new("dev");
        k.search_path = Some(dir.path().into());
        let e = k.tools().unwrap_err().to_string();
        assert!(e.starts_with("`kind` is not installed"), "{e}");
        script(dir.path(), "kind", "exit 0");
        let e = k.tools().unwrap_err().to_string();
        assert!(
            e.contains("a container engine (docker, podman, nerdctl)")
                && e.contains("kind cluster `dev`"),
            "{e}"
        );
        assert_eq!(
            container_engine(Some(dir.path().as_os_str()), Some("podman")),
            Err("podman".into())
        );
        script(dir.path(), "podman", "exit 0");
        assert_eq!(
            container_engine(Some(dir.path().as_os_str()), None),
            Ok("podman".into())
        );
    }

    #[test]
    fn validates_names() {
        let mut v = Validation::new("k");
        Kind::new("k")
            .name("Not_Valid")
            .base_domain("localhost")
            .node_image("")
            .validate(&mut v);
        let fields: Vec<&str> = v.errors().iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["name", "base_domain", "node_image"]);
    }

    /// Runs the module's steps against a fake `kind` that logs its arguments.
    #[tokio::test]
    async fn creates_reads_and_deletes_through_the_cli() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let state = dir.path().join("exists");
        script(dir.path(), "docker", "exit 0");
        script(
            dir.path(),
            "kind",
            &format!(
                "echo \"$*\" >> {log}\ncase \"$1 $2\" in\n 'get clusters') [ -s {state} ] && echo dev; exit 0;;\n 'create cluster') echo dev > {state};;\n 'delete cluster') : > {state};;\nesac",
                log = log.display(),
                state = state.display()
            ),
        );
        let mut kind = Kind::new("dev")
            .kubeconfig(dir.path().join("kc"))
            .node_image("kindest/node:v1.33.1");
        kind.search_path = Some(dir.path().into());
        let mut s = Stack::new("t");
        s.add(kind);
        let s = s.build().unwrap();
        s.apply(&RunOptions::new()).await.unwrap();
        s.apply(&RunOptions::new()).await.unwrap();
        s.destroy(&RunOptions::new()).await.unwrap();
        s.destroy(&RunOptions::new()).await.unwrap();
        let kc = dir.path().join("kc");
        let kc = kc.display();
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            format!(
                "get clusters\ncreate cluster --name dev --kubeconfig {kc} --wait 5m --image kindest/node:v1.33.1\n\
                 get clusters\nexport kubeconfig --name dev --kubeconfig {kc}\n\
                 get clusters\nexport kubeconfig --name dev --kubeconfig {kc}\nget clusters\ndelete cluster --name dev --kubeconfig {kc}\n\
                 get clusters\n"
            )
        );
    }
}
