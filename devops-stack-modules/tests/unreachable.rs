//! A module's own API call on a cluster it cannot reach fails as the engine's calls do: at once,
//! as `Unreachable`, naming the cluster, its server, the kubeconfig and context, the cause in
//! plain words and the fix. The case, on a real TLS server on loopback: Argo CD reads
//! its self-managed Application (its first call, before any apply) through a kubeconfig whose
//! certificate authority did not sign the server's certificate.

use std::time::{Duration, Instant};

use devops_stack_core::clusters::Kubeconfig;
use devops_stack_core::k8s::KubeError;
use devops_stack_core::{Error, RunOptions, Stack, Status};
use devops_stack_modules::ArgoCd;
use devops_stack_test::tls::{TestCa, TlsServer, kubeconfig};

#[tokio::test]
async fn argocd_through_a_kubeconfig_of_another_ca_fails_at_once_naming_the_unknown_authority() {
    let server =
        TlsServer::start(TestCa::new("cluster CA").server_certificate(&["127.0.0.1"])).await;
    let file = kubeconfig(
        &server.url(),
        &TestCa::new("another CA").pem(),
        &["lab-admin"],
    );
    let path = file.path().display();
    let mut stack = Stack::new("s");
    let cluster = stack.add(Kubeconfig::new("lab", file.path(), "example.com"));
    stack.add(ArgoCd::new(&cluster));
    let stack = stack.build().unwrap();

    let start = Instant::now();
    let err = stack.apply(&RunOptions::new()).await.unwrap_err();
    let elapsed = start.elapsed();

    let Error::RunFailed { report, .. } = &err else {
        panic!("{err}")
    };
    let Status::Failed { error: failure } = &report.module("argocd").unwrap().status else {
        panic!("{err}")
    };
    // The report keeps the typed cause, not only its text: somewhere down the chain of sources
    // is the engine's `Unreachable`.
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(failure);
    let mut unreachable = false;
    while let Some(c) = cause {
        // the engine's error, as it is or as the module's error carries it
        let core = c.downcast_ref::<Error>().or(match c.downcast_ref() {
            Some(devops_stack_modules::Error::Core(core)) => Some(core),
            _ => None,
        });
        unreachable |= matches!(
            core.and_then(Error::kubernetes),
            Some(KubeError::Unreachable { .. })
        );
        cause = c.source();
    }
    assert!(
        unreachable,
        "no Unreachable among the causes of {failure:?}"
    );
    let error = failure.to_string();
    eprintln!("failed after {elapsed:?}: {error}");
    assert!(
        error.starts_with(&format!(
            "module `argocd` failed to apply: cannot reach the API server of cluster `lab` at {} (kubeconfig {path}, context `lab-admin`): TLS failed: the server's certificate is signed by an unknown certificate authority",
            server.url()
        )),
        "{error}"
    );
    assert!(
        error.contains(&format!(
            "fix: the `certificate-authority-data` of context `lab-admin` in {path} is not the certificate authority that signed the server's certificate"
        )),
        "{error}"
    );
    assert!(
        error.contains(&format!(
            "`kubectl --kubeconfig {path} --context lab-admin cluster-info`"
        )),
        "{error}"
    );
    assert!(!error.contains("Kubernetes API error"), "{error}");
    assert!(
        elapsed < Duration::from_millis(500),
        "took {elapsed:?}: a TLS failure is not retried"
    );
    assert_eq!(server.connections(), 1, "one connection, not retried");
}
