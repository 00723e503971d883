//! A cluster that cannot be reached fails at once, with an error that names the cluster, its
//! server, the kubeconfig file and context, the cause and its fix, instead of being retried for
//! half a minute. Real sockets on loopback: a port nobody listens on, a server that does not
//! speak TLS, and real TLS servers whose certificates a certificate authority made in the test
//! signed, reached through kubeconfigs that trust another certificate authority, or with a
//! certificate for another name, or an expired one.

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use devops_stack_core::clusters::{Kubeconfig, LocalCluster};
use devops_stack_core::interfaces::ClusterRef;
use devops_stack_core::k8s::{Deployer, KubeError, UnreachableCause, unreachable_cause};
use devops_stack_core::{Context, Error, Input, Module, ModuleResult, Planned, RunOptions, Stack};
use devops_stack_test::tls::{TestCa, TlsServer, kubeconfig};
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

/// A stack of cluster `lab` (a kubeconfig for the server at `port`, its TLS not verified) and
/// module `one`, with the kubeconfig file, which must outlive the stack's runs.
fn stack_on(port: u16) -> (devops_stack_core::BuiltStack, tempfile::NamedTempFile) {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    write!(
        file,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: 'https://127.0.0.1:{port}', insecure-skip-tls-verify: true}}\nusers:\n- name: u\n  user: {{token: t}}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n"
    )
    .unwrap();
    let stack = stack_through(file.path(), None);
    (stack, file)
}

/// A stack of cluster `lab`, reached through the kubeconfig at `path` (in `context`, or its
/// current context), and module `one`.
fn stack_through(path: &Path, context: Option<&str>) -> devops_stack_core::BuiltStack {
    let mut stack = Stack::new("s");
    let mut kubeconfig = Kubeconfig::new("lab", path, "example.com");
    if let Some(context) = context {
        kubeconfig = kubeconfig.context(context);
    }
    let cluster = stack.add(kubeconfig);
    stack.add(One {
        cluster: cluster.cluster(),
    });
    stack.build().unwrap()
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
    apply(&stack).await
}

/// Applies `stack`, which must fail in module `one`, and returns the error and how long the
/// apply took.
async fn apply(stack: &devops_stack_core::BuiltStack) -> (Error, Duration) {
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
    assert!(text.contains("(kubeconfig "), "{text}");
    assert!(
        text.contains(
            "fix: check that the API server is running, and that the `server` of context `x` in "
        ),
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
    assert!(
        text.contains("TLS failed: what answers there does not speak TLS"),
        "{text}"
    );
    assert!(
        text.contains("the API server's `https://` address and port"),
        "{text}"
    );
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
        options.abandon_in_cluster()
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
        err.contains("abandon_in_cluster()"),
        "the error names the option: {err}"
    );
    let report = destroy_on(port, true).await.unwrap();
    assert_eq!(
        report.module("one").unwrap().status,
        devops_stack_core::Status::Succeeded
    );
}

/// The context of the kubeconfigs of the TLS tests (not the file's current context, which is
/// `other`, so that the error shows the context the cluster names).
const CONTEXT: &str = "lab-admin";

/// A kubeconfig for `server` whose `certificate-authority-data` is `ca`, with the current
/// context `other` and [`CONTEXT`], both of the same cluster.
fn kubeconfig_for(server: &TlsServer, ca: &TestCa) -> tempfile::NamedTempFile {
    kubeconfig(&server.url(), &ca.pem(), &["other", CONTEXT])
}

/// Asserts that `text` names cluster `lab`, the server, the kubeconfig and [`CONTEXT`], and the
/// `kubectl` command that checks the fix.
fn assert_names_where(text: &str, server: &TlsServer, file: &Path) {
    let file = file.display();
    assert!(
        text.contains(&format!(
            "cannot reach the API server of cluster `lab` at {} (kubeconfig {file}, context `{CONTEXT}`): ",
            server.url()
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "`kubectl --kubeconfig {file} --context {CONTEXT} cluster-info` fails the same way until it is fixed"
        )),
        "{text}"
    );
}

/// The case: the kubeconfig's certificate authority did not sign the server's
/// certificate. The run fails in a fraction of a second (no retry: one connection), and says
/// so in plain words, with the server, the kubeconfig, the context and the fix.
#[tokio::test]
async fn a_kubeconfig_whose_ca_did_not_sign_the_server_fails_at_once_naming_all_and_the_fix() {
    let server_ca = TestCa::new("cluster CA");
    let server = TlsServer::start(server_ca.server_certificate(&["127.0.0.1"])).await;
    let file = kubeconfig_for(&server, &TestCa::new("another CA"));
    let stack = stack_through(file.path(), Some(CONTEXT));
    let (err, elapsed) = apply(&stack).await;
    let text = err.to_string();
    assert_names_where(&text, &server, file.path());
    assert!(
        text.contains(
            "TLS failed: the server's certificate is signed by an unknown certificate authority"
        ),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "fix: the `certificate-authority-data` of context `{CONTEXT}` in {} is not the certificate authority that signed the server's certificate",
            file.path().display()
        )),
        "{text}"
    );
    assert!(!text.contains("ServiceError"), "{text}");
    eprintln!("unknown authority: failed after {elapsed:?}: {text}");
    assert!(
        elapsed < Duration::from_millis(500),
        "took {elapsed:?}: a TLS failure is not retried"
    );
    assert_eq!(server.connections(), 1, "one connection, not retried");
}

/// What modules use: [`unreachable_cause`] and [`Error::unreachable`] on their own API calls
/// give the same typed error, with the cause to match on and the client's error as its source.
/// The same server with the right certificate authority answers: the CA alone is at fault.
#[tokio::test]
async fn the_unreachable_error_is_typed_with_its_cause_kubeconfig_and_context() {
    let server_ca = TestCa::new("cluster CA");
    let server = TlsServer::start(server_ca.server_certificate(&["127.0.0.1"])).await;
    let file = kubeconfig_for(&server, &TestCa::new("another CA"));
    let cluster = LocalCluster {
        name: "lab".into(),
        base_domain: "example.com".into(),
        kubeconfig: file.path().to_owned(),
        context: Some(CONTEXT.into()),
    };
    let client = cluster.connect().await.unwrap();
    let e = client.apiserver_version().await.unwrap_err();
    let cause = unreachable_cause(&e).expect("unreachable");
    assert_eq!(cause, UnreachableCause::UnknownAuthority);
    assert!(cause.is_tls());
    let err = Error::unreachable(&cluster, cause, Box::new(e));
    let Some(KubeError::Unreachable {
        cluster: name,
        server: url,
        kubeconfig,
        context,
        cause,
        ..
    }) = err.kubernetes()
    else {
        panic!("{err}")
    };
    assert_eq!(name, "lab");
    assert_eq!(url, &server.url());
    assert_eq!(kubeconfig.as_deref(), Some(file.path()));
    assert_eq!(context.as_deref(), Some(CONTEXT));
    assert_eq!(**cause, UnreachableCause::UnknownAuthority);
    let source = std::error::Error::source(&err).expect("the client's error is kept");
    assert!(source.to_string().starts_with("ServiceError: "), "{source}");

    // the file's current context, when the cluster names none
    let current = LocalCluster {
        context: None,
        ..cluster.clone()
    };
    let e = current
        .connect()
        .await
        .unwrap()
        .apiserver_version()
        .await
        .unwrap_err();
    let err = Error::unreachable(&current, unreachable_cause(&e).unwrap(), Box::new(e));
    assert!(
        matches!(err.kubernetes(), Some(KubeError::Unreachable { context: Some(c), .. }) if c == "other"),
        "{err}"
    );

    let right = kubeconfig_for(&server, &server_ca);
    let cluster = LocalCluster {
        kubeconfig: right.path().to_owned(),
        ..cluster
    };
    let version = cluster
        .connect()
        .await
        .unwrap()
        .apiserver_version()
        .await
        .expect("the right CA is trusted");
    assert_eq!(version.git_version, "v1.33.0");
}

/// A certificate the right authority issued for another name: the error names the name the
/// client checked and the names of the certificate, and the fix offers `tls-server-name`.
#[tokio::test]
async fn a_certificate_for_another_name_fails_at_once_naming_both_names() {
    let ca = TestCa::new("cluster CA");
    let server = TlsServer::start(ca.server_certificate(&["other.example"])).await;
    let file = kubeconfig_for(&server, &ca);
    let stack = stack_through(file.path(), Some(CONTEXT));
    let (err, elapsed) = apply(&stack).await;
    let text = err.to_string();
    assert_names_where(&text, &server, file.path());
    assert!(
        text.contains(
            "TLS failed: the server's certificate is not valid for the name 127.0.0.1 (its subject alternative names do not include it: it is for other.example)"
        ),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "fix: make the `server` of context `{CONTEXT}` in {} a name the certificate is issued for (other.example), or set `tls-server-name` to one of them",
            file.path().display()
        )),
        "{text}"
    );
    eprintln!("wrong name: failed after {elapsed:?}: {text}");
    assert!(elapsed < Duration::from_millis(500), "took {elapsed:?}");
    assert_eq!(server.connections(), 1, "one connection, not retried");
}

/// An expired certificate of the right authority: the error says it expired and how long ago.
#[tokio::test]
async fn an_expired_certificate_fails_at_once_saying_so() {
    let ca = TestCa::new("cluster CA");
    let server = TlsServer::start(ca.expired_server_certificate(&["127.0.0.1"])).await;
    let file = kubeconfig_for(&server, &ca);
    let stack = stack_through(file.path(), Some(CONTEXT));
    let (err, elapsed) = apply(&stack).await;
    let text = err.to_string();
    assert_names_where(&text, &server, file.path());
    assert!(
        text.contains("TLS failed: the server's certificate has expired ("),
        "{text}"
    );
    assert!(text.contains(" days ago)"), "{text}");
    assert!(
        text.contains("fix: renew the API server's certificate"),
        "{text}"
    );
    eprintln!("expired: failed after {elapsed:?}: {text}");
    assert!(elapsed < Duration::from_millis(500), "took {elapsed:?}");
    assert_eq!(server.connections(), 1, "one connection, not retried");
}
