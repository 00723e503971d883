//! A cluster that cannot be reached fails at once, with an error that names the cluster, its
//! server and the cause, instead of being retried for half a minute. Real sockets on loopback:
//! a port nobody listens on, and a server that does not speak TLS.

use std::io::Write as _;
use std::time::{Duration, Instant};

use devops_stack_core::clusters::Kubeconfig;
use devops_stack_core::interfaces::ClusterRef;
use devops_stack_core::k8s::Deployer;
use devops_stack_core::{Context, Error, Input, Module, ModuleResult, Planned, RunOptions, Stack};
use serde_json::json;
use tokio::io::AsyncWriteExt as _;

/// Applies one ConfigMap to its cluster, and destroys it through the engine.
struct One {
    cluster: Input<ClusterRef>,
}

impl Module for One {
    type Output = ();
    fn id(&self) -> &str {
        "one"
    }
    fn kind(&self) -> &'static str {
        "one"
    }
    fn needs(&self, needs: &mut devops_stack_core::Needs) {
        needs.add(&self.cluster);
    }
    async fn plan(&self, _: &Context) -> ModuleResult<Planned<()>> {
        Ok(Planned::new(()))
    }
    async fn apply(&self, ctx: &Context) -> ModuleResult<()> {
        let cluster = ctx.get(&self.cluster)?;
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "default"}});
        Deployer::for_module(ctx, &cluster)
            .await?
            .apply(vec![cm])
            .await
            .map_err(|e| Box::new(e) as _)
            .map(drop)
    }
    async fn destroy(&self, ctx: &Context) -> ModuleResult<()> {
        let cluster = ctx.get(&self.cluster)?;
        let report = Deployer::for_module(ctx, &cluster).await?.destroy().await?;
        assert!(report.deleted.is_empty());
        Ok(())
    }
}

/// A stack of cluster `lab` (a kubeconfig for the server at `port`) and module `one`, with the
/// kubeconfig file, which must outlive the stack's runs.
fn stack_on(port: u16) -> (devops_stack_core::BuiltStack, tempfile::NamedTempFile) {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    write!(
        file,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: 'https://127.0.0.1:{port}', insecure-skip-tls-verify: true}}\nusers:\n- name: u\n  user: {{token: t}}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n"
    )
    .unwrap();
    let mut stack = Stack::new("s");
    let cluster = stack.add(Kubeconfig::new("lab", file.path(), "example.com"));
    stack.add(One {
        cluster: cluster.cluster(),
    });
    (stack.build().unwrap(), file)
}

/// A loopback port nobody listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Applies a one-module stack to the server at `port` and returns the module's error and how
/// long the apply took.
async fn apply_to(port: u16) -> (Error, Duration) {
    let (stack, _kubeconfig) = stack_on(port);
    let start = Instant::now();
    let err = stack.apply(&RunOptions::new()).await.unwrap_err();
    let elapsed = start.elapsed();
    let Error::RunFailed { report, .. } = &err else {
        panic!("{err}")
    };
    let failed = report.module("one").unwrap();
    assert!(
        matches!(failed.status, devops_stack_core::Status::Failed { .. }),
        "{err}"
    );
    (err, elapsed)
}

#[tokio::test]
async fn a_refused_connection_fails_at_once_naming_cluster_server_and_cause() {
    let port = closed_port();
    let (err, elapsed) = apply_to(port).await;
    let text = err.to_string();
    assert!(
        text.contains(&format!(
            "cannot reach the API server of cluster `lab` at https://127.0.0.1:{port}"
        )),
        "{text}"
    );
    assert!(text.contains("the connection was refused"), "{text}");
    assert!(
        text.contains("check the kubeconfig's context and server"),
        "{text}"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "took {elapsed:?}: a refused connection is not retried"
    );
}

#[tokio::test]
async fn a_server_that_does_not_speak_tls_fails_at_once() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let _ = socket
                .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
    });
    let (err, elapsed) = apply_to(port).await;
    let text = err.to_string();
    assert!(
        text.contains("cannot reach the API server of cluster `lab`"),
        "{text}"
    );
    assert!(text.contains("TLS failed"), "{text}");
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    server.abort();
}

/// Destroys the one-module stack on `port`, with or without `AbandonInCluster`.
async fn destroy_on(
    port: u16,
    abandon: bool,
) -> devops_stack_core::Result<devops_stack_core::Report> {
    let (stack, _kubeconfig) = stack_on(port);
    let options = RunOptions::new();
    let options = if abandon {
        options.extension(devops_stack_core::interfaces::AbandonInCluster)
    } else {
        options
    };
    stack.destroy(&options).await
}

#[tokio::test]
async fn a_destroy_that_cannot_reach_the_cluster_stops_unless_told_to_abandon() {
    let port = closed_port();
    let err = destroy_on(port, false).await.unwrap_err().to_string();
    assert!(
        err.contains("cannot reach the API server of cluster `lab`"),
        "{err}"
    );
    assert!(
        err.contains("AbandonInCluster"),
        "the error names the option: {err}"
    );
    let report = destroy_on(port, true).await.unwrap();
    assert_eq!(
        report.module("one").unwrap().status,
        devops_stack_core::Status::Succeeded
    );
}
