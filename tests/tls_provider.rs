//! The root package links both of rustls's crypto providers (ring through kube, aws-lc-rs through
//! the AWS SDK), so rustls cannot choose one by itself and building a kube client would panic.
//! The clusters install one first; this builds a client the way a kubeconfig cluster does.

use devops_stack::clusters::LocalCluster;

#[tokio::test]
async fn a_kubeconfig_client_builds_with_both_crypto_providers_linked() {
    assert!(
        rustls::crypto::CryptoProvider::get_default().is_none(),
        "nothing installed a provider before the cluster did"
    );
    let path = std::env::temp_dir().join(format!("devops-stack-tls-{}.yaml", std::process::id()));
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:9\n    insecure-skip-tls-verify: true\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\nusers:\n- name: u\n  user: {token: t}\n",
    )
    .unwrap();
    let cluster = LocalCluster {
        name: "dev".into(),
        base_domain: "example.com".into(),
        kubeconfig: path.clone(),
        context: None,
    };
    let client = cluster.connect().await;
    std::fs::remove_file(&path).unwrap();
    assert!(client.is_ok(), "{:?}", client.err());
    assert!(rustls::crypto::CryptoProvider::get_default().is_some());
}
