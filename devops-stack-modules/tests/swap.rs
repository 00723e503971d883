//! Swapping one implementation of an interface for another changes exactly the objects that
//! use it, and nothing else.

mod support;

use support::*;

fn app(name: &str) -> String {
    format!("argoproj.io/v1alpha1 Application argocd/{name}")
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test]
async fn traefik_for_ingress_nginx() {
    let traefik = plan(default_stack(IngressChoice::Traefik, OidcChoice::Keycloak)).await;
    let nginx = plan(default_stack(IngressChoice::Nginx, OidcChoice::Keycloak)).await;
    let (removed, added, changed) = diff(&traefik, &nginx);
    assert_eq!(removed, [app("traefik"), "v1 Namespace traefik".into()]);
    assert_eq!(
        added,
        [app("ingress-nginx"), "v1 Namespace ingress-nginx".into()]
    );
    // every module with an ingress follows, and only those: the HTTP-01 solver's class, Keycloak,
    // Grafana and the two OIDC proxies, and Argo CD's own server
    assert_eq!(
        changed,
        sorted(vec![
            app("argocd"),
            app("cert-manager"),
            app("keycloak"),
            app("kube-prometheus-stack"),
            app("kube-prometheus-stack-alertmanager-proxy"),
            app("kube-prometheus-stack-prometheus-proxy"),
        ])
    );
    let objects = objects(&nginx);
    let grafana = &objects[&app("kube-prometheus-stack")]["spec"]["source"]["helm"]["valuesObject"]
        ["grafana"]["ingress"];
    assert_eq!(grafana["ingressClassName"], "nginx");
    assert_eq!(
        grafana["annotations"]["nginx.ingress.kubernetes.io/ssl-redirect"],
        "true"
    );
    assert!(
        grafana["annotations"]
            .get("traefik.ingress.kubernetes.io/router.tls")
            .is_none()
    );
    let argocd =
        &objects[&app("argocd")]["spec"]["source"]["helm"]["valuesObject"]["server"]["ingress"];
    assert_eq!(argocd["ingressClassName"], "nginx");
    let solver =
        &objects[&app("cert-manager")]["spec"]["source"]["helm"]["valuesObject"]["extraObjects"];
    assert!(solver.to_string().contains("ingressClassName: nginx"));
}

#[tokio::test]
async fn keycloak_for_another_oidc_provider() {
    let keycloak = plan(default_stack(IngressChoice::Traefik, OidcChoice::Keycloak)).await;
    let tiny = plan(default_stack(IngressChoice::Traefik, OidcChoice::Tiny)).await;
    let (removed, added, changed) = diff(&keycloak, &tiny);
    assert_eq!(
        removed,
        [
            app("keycloak"),
            "v1 Namespace keycloak".into(),
            "v1 Secret keycloak/keycloak-realm".into(),
            "v1 Secret keycloak/keycloak-secrets".into(),
        ]
    );
    assert!(added.is_empty(), "{added:?}");
    // the consumers of OIDC settings, and only those: Argo CD (config and client secret),
    // Grafana (config and client secret), the two proxies (arguments and client credentials)
    assert_eq!(
        changed,
        sorted(vec![
            app("argocd"),
            app("kube-prometheus-stack"),
            app("kube-prometheus-stack-alertmanager-proxy"),
            app("kube-prometheus-stack-prometheus-proxy"),
            "v1 Secret argocd/argocd-oidc".into(),
            "v1 Secret monitoring/kube-prometheus-stack-alertmanager-proxy".into(),
            "v1 Secret monitoring/kube-prometheus-stack-grafana-oidc".into(),
            "v1 Secret monitoring/kube-prometheus-stack-prometheus-proxy".into(),
        ])
    );
    let objects = objects(&tiny);
    let cm = &objects[&app("argocd")]["spec"]["source"]["helm"]["valuesObject"]["configs"];
    assert!(
        cm["cm"]["oidc.config"]
            .as_str()
            .unwrap()
            .contains("issuer: https://login.example.org")
    );
    assert_eq!(cm["rbac"]["scopes"], "[roles]");
}
