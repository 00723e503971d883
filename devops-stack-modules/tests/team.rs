//! Application teams: rendered objects (snapshots), isolation between teams, secrets kept out
//! of plans, and the build-time errors of bad team configurations.

mod support;

use devops_stack_core::interfaces::{IdentityGroup, IssuerKind};
use devops_stack_core::{ConfigError, Handle, Secret, Stack};
use devops_stack_modules::team::*;
use devops_stack_modules::*;
use serde_json::{Value, json};
use support::*;

const REPO: &str = "https://github.com/acme/shop.git";
const TOKEN: &str = "ghp_do_not_print_me";
const APP_KEY: &str = "-----BEGIN RSA PRIVATE KEY-----do-not-print";
const FORGE_TOKEN: &str = "glpat_do_not_print";

/// A team with every feature: two namespaces (one customised), three groups, a sync window,
/// an HTTPS repository with a token and an SSH one with a key from an existing Secret, a
/// published Helm app, a directory ApplicationSet and pull-request previews, and a CI token.
fn full_team(
    cluster: &Handle<TestCluster>,
    argocd: &Handle<ArgoCdOutput>,
    ingress: &Handle<IngressController>,
    sso: &Handle<TinyClients>,
    certs: &Handle<ClusterIssuers>,
) -> Team {
    Team::new("shop", cluster, argocd)
        .namespace(TeamNamespace::new("shop"))
        .namespace(
            TeamNamespace::new("shop-previews")
                .quota(Quota::none().hard("requests.cpu", "2").hard("pods", "20"))
                .network(NetworkBaseline::AllowAll),
        )
        .access(AccessRole::Viewer, sso.group("shop-viewers"))
        .access(AccessRole::Deployer, sso.group("shop-deployers"))
        .access(AccessRole::Admin, sso.group("shop-admins"))
        .kubernetes_group_prefix("oidc:")
        .sync_window(
            SyncWindow::deny("0 18 * * 5", "62h")
                .manual_sync(true)
                .time_zone("Europe/Paris"),
        )
        .repository(Repository::new(
            REPO,
            RepoAccess::HttpsToken {
                username: "git".into(),
                token: Secret::new(TOKEN).into(),
            },
        ))
        .repository(Repository::new(
            "git@github.com:acme/storefront.git",
            RepoAccess::SshKey {
                private_key: SecretSource::existing("argocd", "acme-deploy-key", "sshPrivateKey"),
            },
        ))
        .app(
            App::new("storefront", "git@github.com:acme/storefront.git", "shop")
                .path("deploy")
                .revision("v1.2.3")
                .manifests(Manifests::Helm {
                    value_files: vec!["values-prod.yaml".into()],
                    values: json!({"replicas": 2}),
                })
                .publish("shop", "storefront", "http"),
        )
        .application_set(
            AppSet::directories("services", REPO, "shop", ["services/*"])
                .exclude(["services/legacy"]),
        )
        .application_set(
            AppSet::pull_requests(
                "previews",
                REPO,
                "shop-previews",
                Forge::GitHub {
                    owner: "acme".into(),
                    repo: "shop".into(),
                    api: None,
                },
                ["preview"],
                Secret::new(FORGE_TOKEN),
            )
            .manifests(Manifests::Kustomize { images: vec![] }),
        )
        .ingress(ingress)
        .issuer(certs.issuer(IssuerKind::LetsEncryptProduction))
        .ci_token(AccessRole::Deployer, argocd)
}

/// A platform with Traefik, cert-manager and an OIDC provider, plus `teams`.
fn platform_with(
    teams: impl FnOnce(
        &Handle<TestCluster>,
        &Handle<ArgoCdOutput>,
        &Handle<IngressController>,
        &Handle<TinyClients>,
        &Handle<ClusterIssuers>,
    ) -> Vec<Team>,
) -> Stack {
    let mut stack = Stack::new("test");
    let cluster = stack.add(ClusterModule::new("prod", "example.com"));
    let argocd = stack.add(ArgoCd::new(&cluster));
    let ingress = stack.add(Traefik::new(&cluster, &argocd));
    let certs = stack.add(
        CertManager::new(&cluster, &argocd)
            .letsencrypt("ops@example.com")
            .http01_ingress(&ingress),
    );
    let sso = stack.add(TinyOidc);
    for team in teams(&cluster, &argocd, &ingress, &sso, &certs) {
        stack.add(team);
    }
    stack
}

fn with_full_team() -> Stack {
    platform_with(|c, a, i, s, t| vec![full_team(c, a, i, s, t)])
}

#[tokio::test]
async fn team_objects() {
    let plan = plan(with_full_team()).await;
    insta::assert_yaml_snapshot!("team_shop", module(&plan, "team-shop"));
}

#[tokio::test]
async fn a_minimal_team_has_safe_defaults() {
    let plan = plan(platform_with(|c, a, _, _, _| {
        vec![
            Team::new("blog", c, a)
                .namespace(TeamNamespace::new("blog"))
                .repository(Repository::new(
                    "https://github.com/acme/blog.git",
                    RepoAccess::Public,
                )),
        ]
    }))
    .await;
    insta::assert_yaml_snapshot!("team_blog", module(&plan, "team-blog"));
    let objects = objects(&plan);
    let project = &objects["argoproj.io/v1alpha1 AppProject argocd/blog"]["spec"];
    assert_eq!(
        project["destinations"],
        json!([{"server": "https://kubernetes.default.svc", "namespace": "blog"}])
    );
    assert_eq!(
        project["sourceRepos"],
        json!(["https://github.com/acme/blog.git"])
    );
    // no cluster-scoped kind at all, and the guards on the deny-list
    assert!(project.get("clusterResourceWhitelist").is_none());
    let denied: Vec<&str> = project["namespaceResourceBlacklist"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        denied,
        [
            "ResourceQuota",
            "LimitRange",
            "NetworkPolicy",
            "Role",
            "RoleBinding"
        ]
    );
    // without an ingress controller the baseline admits the namespace itself only
    let policy = &objects["networking.k8s.io/v1 NetworkPolicy blog/team-baseline"]["spec"];
    assert_eq!(policy["ingress"], json!([{"from": [{"podSelector": {}}]}]));
    assert!(objects.contains_key("v1 ResourceQuota blog/team-quota"));
    assert!(objects.contains_key("v1 LimitRange blog/team-limits"));
}

#[tokio::test]
async fn access_and_isolation() {
    let plan = plan(with_full_team()).await;
    let objects = objects(&plan);
    let project = &objects["argoproj.io/v1alpha1 AppProject argocd/shop"]["spec"];
    let role = |name: &str| -> Value {
        project["roles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no role {name}"))
    };
    assert_eq!(role("deployer")["groups"], json!(["shop-deployers"]));
    assert!(
        role("deployer")["policies"]
            .as_array()
            .unwrap()
            .contains(&json!(
                "p, proj:shop:deployer, applications, sync, shop/*, allow"
            ))
    );
    assert!(role("ci")["groups"].is_null(), "CI's role has no group");
    // the baseline admits the ingress controller's namespace
    let policy = &objects["networking.k8s.io/v1 NetworkPolicy shop/team-baseline"]["spec"];
    assert_eq!(
        policy["ingress"][0]["from"][1]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "traefik"
    );
    // AllowAll renders no policy
    assert!(
        !objects.contains_key("networking.k8s.io/v1 NetworkPolicy shop-previews/team-baseline")
    );
    // a RoleBinding per role and namespace, to the team's own Role, with the API server's prefix
    for ns in ["shop", "shop-previews"] {
        let binding =
            &objects[&format!("rbac.authorization.k8s.io/v1 RoleBinding {ns}/team-deployer")];
        assert_eq!(binding["roleRef"]["kind"], "Role");
        assert_eq!(binding["subjects"][0]["name"], "oidc:shop-deployers");
        assert!(objects.contains_key(&format!(
            "rbac.authorization.k8s.io/v1 Role {ns}/team-admin"
        )));
    }
    // everything generated stays in the team's project and namespaces, with safe deletion
    for set in ["shop-services", "shop-previews"] {
        let spec = &objects[&format!("argoproj.io/v1alpha1 ApplicationSet argocd/{set}")]["spec"];
        assert_eq!(spec["template"]["spec"]["project"], "shop");
        assert!(
            ["shop", "shop-previews"].contains(
                &spec["template"]["spec"]["destination"]["namespace"]
                    .as_str()
                    .unwrap()
            )
        );
        assert_eq!(spec["goTemplate"], true);
        assert_eq!(spec["goTemplateOptions"], json!(["missingkey=error"]));
        let options = &spec["template"]["spec"]["syncPolicy"]["syncOptions"];
        assert!(!options.to_string().contains("CreateNamespace"));
    }
    // every credential is the team's project's alone, the one the directory generator reads
    // included (Argo CD 3 passes the set's literal project to the repo-server)
    for i in 0..2 {
        let repo = &objects[&format!("v1 Secret argocd/team-shop-repo-{i}")];
        assert_eq!(repo["stringData"]["project"], "shop");
        assert_eq!(
            repo["metadata"]["labels"]["argocd.argoproj.io/secret-type"],
            "repository"
        );
        assert_eq!(
            repo["metadata"]["annotations"][CREDENTIALS_SCOPE],
            "project:shop"
        );
    }
    // the published app: an Ingress through Traefik with TLS from the issuer
    let ingress = &objects["networking.k8s.io/v1 Ingress shop/storefront"];
    assert_eq!(ingress["spec"]["ingressClassName"], "traefik");
    assert_eq!(
        ingress["spec"]["tls"][0]["hosts"][0],
        "shop.apps.prod.example.com"
    );
    assert_eq!(
        ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"],
        "letsencrypt-production"
    );
    assert_eq!(
        module(&plan, "team-shop").output["urls"]["storefront"],
        "https://shop.apps.prod.example.com"
    );
}

#[tokio::test]
async fn plans_never_show_team_secrets() {
    let plan = plan(with_full_team()).await;
    let text = plan.to_text();
    let json = plan.to_json();
    for secret in [TOKEN, APP_KEY, FORGE_TOKEN] {
        assert!(
            !text.contains(secret) && !json.contains(secret),
            "{secret} leaked"
        );
    }
    assert!(text.contains("v1 Secret argocd/team-shop-repo-0"));
    // the engine receives the value; a referenced Secret is read only when applying
    let objects = objects(&plan);
    assert_eq!(
        objects["v1 Secret argocd/team-shop-repo-0"]["stringData"]["password"],
        TOKEN
    );
    assert_eq!(
        objects["v1 Secret argocd/shop-previews-forge-token"]["stringData"]["token"],
        FORGE_TOKEN
    );
    assert!(
        objects["v1 Secret argocd/team-shop-repo-1"]["stringData"]["sshPrivateKey"]
            .as_str()
            .unwrap()
            .contains("known after apply")
    );
    // a GitHub App's key is never in Debug output nor in a build error
    let app = Repository::new(
        "ftp://github.com/acme/shop.git",
        RepoAccess::GitHubApp {
            app_id: 1,
            installation_id: 2,
            private_key: Secret::new(APP_KEY).into(),
            enterprise_base_url: None,
        },
    );
    assert!(!format!("{app:?}").contains(APP_KEY));
    let e = errors(|s, c, a| {
        s.add(team(c, a).repository(app));
    });
    assert!(!format!("{e:?}").contains(APP_KEY) && !e.is_empty());
}

/// A valid team to break.
fn team(c: &Handle<TestCluster>, a: &Handle<ArgoCdOutput>) -> Team {
    Team::new("shop", c, a)
        .namespace(TeamNamespace::new("shop"))
        .repository(Repository::new(REPO, RepoAccess::Public))
        .access(
            AccessRole::Deployer,
            IdentityGroup::external("shop-deployers"),
        )
}

/// Exactly one error, on `module`.`field`, whose problem contains `problem` and which has a fix.
fn assert_one(errors: &[ConfigError], module: &str, field: &str, problem: &str) {
    let found: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 1, "{found:#?}");
    let e = &errors[0];
    assert!(
        e.module.as_deref() == Some(module)
            && e.field == field
            && e.problem.contains(problem)
            && !e.fix.is_empty(),
        "expected {module}.{field} with {problem:?}, got {found:#?}"
    );
}

#[test]
fn a_valid_team_builds() {
    assert!(
        errors(|s, c, a| {
            s.add(team(c, a));
        })
        .is_empty()
    );
}

#[test]
fn two_teams_cannot_share_a_namespace() {
    let e = errors(|s, c, a| {
        s.add(team(c, a));
        s.add(
            Team::new("blog", c, a)
                .namespace(TeamNamespace::new("blog"))
                .namespace(TeamNamespace::new("shop")),
        );
    });
    assert_one(
        &e,
        "team-blog",
        "namespaces",
        "claimed by team `blog` (module `team-blog`) and by team `shop`",
    );
}

#[test]
fn a_team_cannot_claim_a_platform_namespace() {
    let e = errors(|s, c, a| {
        s.add(Traefik::new(c, a));
        s.add(team(c, a).namespace(TeamNamespace::new("traefik")));
    });
    assert_one(
        &e,
        "team-shop",
        "namespaces",
        "and by the platform (module `traefik`)",
    );
    // Argo CD's own namespace too, whatever the order of the modules
    let e = errors(|s, c, a| {
        s.add(team(c, a).namespace(TeamNamespace::new("argocd")));
    });
    assert_one(&e, "team-shop", "namespaces", "`argocd`");
    let e = errors(|s, c, a| {
        s.add(team(c, a).namespace(TeamNamespace::new("kube-system")));
    });
    assert_one(
        &e,
        "team-shop",
        "namespaces[1]",
        "namespace of Kubernetes or of the platform",
    );
}

#[test]
fn namespaces_must_be_dns_labels() {
    let e = errors(|s, c, a| {
        s.add(team(c, a).namespace(TeamNamespace::new("Shop_Prod")));
    });
    assert_one(&e, "team-shop", "namespaces[1]", "contains `S`");
}

#[test]
fn apps_deploy_only_inside_the_team() {
    let e = errors(|s, c, a| {
        s.add(team(c, a).app(App::new("web", REPO, "blog")));
    });
    assert_one(
        &e,
        "team-shop",
        "apps[0].namespace",
        "`blog` is not a namespace of team `shop`",
    );
    let e = errors(|s, c, a| {
        s.add(team(c, a).app(App::new("web", "https://github.com/other/repo.git", "shop")));
    });
    assert_one(
        &e,
        "team-shop",
        "apps[0].repo_url",
        "is not a repository of team `shop`",
    );
}

#[test]
fn sync_window_crons_are_checked() {
    let e = errors(|s, c, a| {
        s.add(team(c, a).sync_window(SyncWindow::deny("0 18 * * 8", "1h")));
    });
    assert_one(
        &e,
        "team-shop",
        "sync_windows[0].schedule",
        "`0 18 * * 8` is not a five-field cron expression",
    );
    let e = errors(|s, c, a| {
        s.add(team(c, a).sync_window(SyncWindow::allow("0 18 * * 5", "1 day")));
    });
    assert_one(
        &e,
        "team-shop",
        "sync_windows[0].duration",
        "is not a duration",
    );
}

#[test]
fn repository_urls_are_https_or_ssh() {
    let e = errors(|s, c, a| {
        s.add(team(c, a).repository(Repository::new("github.com/acme/x.git", RepoAccess::Public)));
    });
    assert_one(
        &e,
        "team-shop",
        "repositories[1].url",
        "neither an HTTPS nor an SSH repository URL",
    );
    let e = errors(|s, c, a| {
        s.add(team(c, a).repository(Repository::new(
            "git@github.com:acme/x.git",
            RepoAccess::HttpsToken {
                username: "git".into(),
                token: Secret::new("t").into(),
            },
        )));
    });
    assert_one(&e, "team-shop", "repositories[1].access", "the URL is SSH");
}

#[test]
fn application_sets_generate_only_into_the_project() {
    let e = errors(|s, c, a| {
        s.add(team(c, a).application_set(AppSet::directories("svc", REPO, "blog-pr", ["apps/*"])));
    });
    assert_one(
        &e,
        "team-shop",
        "application_sets[0].namespace",
        "`blog-pr` is not a namespace of team `shop`",
    );
}

#[test]
fn group_names_are_not_empty() {
    let e = errors(|s, c, a| {
        s.add(team(c, a).access(AccessRole::Viewer, IdentityGroup::external("")));
    });
    assert_one(
        &e,
        "team-shop",
        "access[1].group",
        "the group name is empty",
    );
}

#[test]
fn groups_of_the_stack_provider_order_the_team_after_it() {
    let mut stack = Stack::new("order");
    let cluster = stack.add(ClusterModule::new("prod", "example.com"));
    let argocd = stack.add(ArgoCd::new(&cluster));
    let sso = stack.add(TinyOidc);
    stack.add(
        Team::new("shop", &cluster, &argocd)
            .namespace(TeamNamespace::new("shop"))
            .access(AccessRole::Viewer, sso.group("shop")),
    );
    let built = stack.build().unwrap();
    assert!(built.predecessors("team-shop").contains(&"tiny-oidc"));
}

#[tokio::test]
async fn rbac_in_team_namespaces_is_opt_in() {
    let plan = plan(platform_with(|c, a, _, _, _| {
        vec![team(c, a).namespaced_rbac(true)]
    }))
    .await;
    let denied = &objects(&plan)["argoproj.io/v1alpha1 AppProject argocd/shop"]["spec"]["namespaceResourceBlacklist"];
    assert_eq!(denied.as_array().unwrap().len(), 3);
    assert!(!denied.to_string().contains("RoleBinding"));
}

#[tokio::test]
async fn an_argo_cd_outside_the_stack_keeps_its_namespace() {
    use devops_stack_core::Input;
    use devops_stack_core::interfaces::{ArgoCdTarget, IN_CLUSTER};
    let mut stack = Stack::new("ext");
    let cluster = stack.add(ClusterModule::new("prod", "example.com"));
    stack.add(
        Team::new(
            "shop",
            &cluster,
            Input::value(ArgoCdTarget {
                namespace: "gitops".into(),
                project: "default".into(),
                destination_server: IN_CLUSTER.into(),
            }),
        )
        .namespace(TeamNamespace::new("gitops")),
    );
    let e = stack.build().unwrap().plan().await.unwrap_err().to_string();
    assert!(e.contains("`gitops` is Argo CD's namespace"), "{e}");
}

/// The ApplicationSet `name` of a plan's objects.
fn set_spec(objects: &std::collections::BTreeMap<String, Value>, name: &str) -> Value {
    objects[&format!("argoproj.io/v1alpha1 ApplicationSet argocd/{name}")]["spec"].clone()
}

#[tokio::test]
async fn previews_go_with_their_pull_request_and_other_sets_never_delete() {
    let plan = plan(with_full_team()).await;
    let objects = objects(&plan);
    // a closed pull request's preview is deleted by the controller, with what it deployed
    let previews = set_spec(&objects, "shop-previews");
    assert_eq!(previews["syncPolicy"]["applicationsSync"], "sync");
    // false, and left out as Argo CD writes it back (no field taken from the engine)
    assert_eq!(
        previews["syncPolicy"].get("preserveResourcesOnDeletion"),
        None
    );
    assert_eq!(
        previews["template"]["metadata"]["finalizers"],
        json!(["resources-finalizer.argocd.argoproj.io"])
    );
    // a directory set keeps the protection: no deletion on an edit, resources kept
    let services = set_spec(&objects, "shop-services");
    assert_eq!(services["syncPolicy"]["applicationsSync"], "create-update");
    assert_eq!(services["syncPolicy"]["preserveResourcesOnDeletion"], true);
}

#[tokio::test]
async fn the_forge_token_is_labelled_as_scm_credentials() {
    let plan = plan(with_full_team()).await;
    let token = &objects(&plan)["v1 Secret argocd/shop-previews-forge-token"];
    assert_eq!(
        token["metadata"]["labels"]["argocd.argoproj.io/secret-type"],
        "scm-creds"
    );
    let previews = set_spec(&objects(&plan), "shop-previews");
    assert_eq!(
        previews["generators"][0]["pullRequest"]["github"]["tokenRef"]["secretName"],
        "shop-previews-forge-token"
    );
}

#[tokio::test]
async fn argo_cd_grants_say_what_the_kubernetes_roles_say() {
    let plan = plan(with_full_team()).await;
    let objects = objects(&plan);
    let project = &objects["argoproj.io/v1alpha1 AppProject argocd/shop"]["spec"];
    let policies = |role: &str| -> Vec<String> {
        project["roles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == role)
            .unwrap()["policies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_owned())
            .collect()
    };
    // the deployer deletes pods in Argo CD as its Kubernetes Role lets it
    assert!(
        policies("deployer").contains(
            &"p, proj:shop:deployer, applications, delete/*/Pod/*/*, shop/*, allow".into()
        )
    );
    let role = &objects["rbac.authorization.k8s.io/v1 Role shop/team-deployer"]["rules"];
    assert!(role.as_array().unwrap().iter().any(|r| {
        r["resources"] == json!(["pods"]) && r["verbs"].to_string().contains("delete")
    }));
    // nothing grants Argo CD's web terminal, which the stack's Argo CD leaves off
    for role in ["viewer", "deployer", "admin", "ci"] {
        assert!(
            !policies(role).iter().any(|p| p.contains(", exec,")),
            "{role} is granted exec"
        );
    }
    let cm = &module(&plan, "argocd").output["values"]["configs"]["cm"];
    assert!(cm.is_object(), "{cm}");
    assert!(cm.get("exec.enabled").is_none_or(|v| v != "true"));
}

#[test]
fn a_prefix_credential_is_refused_unless_shared() {
    let e = errors(|s, c, a| {
        s.add(team(c, a).repository(Repository::prefix(
            "https://gitlab.example.com/group/",
            RepoAccess::Public,
        )));
    });
    assert_one(&e, "team-shop", "repositories[1]", "is a prefix credential");
    assert!(e[0].fix.contains("share_with_every_project"));
}

#[tokio::test]
async fn a_shared_prefix_is_shown_and_admits_nested_repositories() {
    let prefix = "https://gitlab.example.com/group/";
    let nested = "https://gitlab.example.com/group/sub/repo.git";
    let plan = plan(platform_with(|c, a, _, _, _| {
        vec![
            team(c, a)
                .repository(
                    Repository::prefix(prefix, RepoAccess::Public).share_with_every_project(),
                )
                .app(App::new("api", nested, "shop")),
        ]
    }))
    .await;
    let objects = objects(&plan);
    let creds = &objects["v1 Secret argocd/team-shop-repo-1"];
    assert_eq!(
        creds["metadata"]["labels"]["argocd.argoproj.io/secret-type"],
        "repo-creds"
    );
    // Argo CD ignores a template's project: the stack says so instead of pretending
    assert!(creds["stringData"].get("project").is_none());
    assert_eq!(
        creds["metadata"]["annotations"][CREDENTIALS_SCOPE],
        "every-project"
    );
    assert!(plan.to_text().contains("every-project"));
    // `*` stops at `/` in Argo CD's glob; `**` admits subgroups
    let repos = &objects["argoproj.io/v1alpha1 AppProject argocd/shop"]["spec"]["sourceRepos"];
    assert_eq!(repos, &json!([REPO, format!("{prefix}**")]));
}

#[test]
fn application_names_cannot_collide_across_teams() {
    let e = errors(|s, c, a| {
        s.add(
            Team::new("a", c, a)
                .namespace(TeamNamespace::new("a"))
                .repository(Repository::new(REPO, RepoAccess::Public))
                .app(App::new("b-c", REPO, "a")),
        );
        s.add(
            Team::new("a-b", c, a)
                .namespace(TeamNamespace::new("a-b"))
                .repository(Repository::new(REPO, RepoAccess::Public))
                .app(App::new("c", REPO, "a-b")),
        );
    });
    assert_one(
        &e,
        "team-a-b",
        "applications",
        "the Argo CD Application `a-b-c` is made by `team-a` and by `team-a-b`",
    );
    // a team's Application named like a platform module's is refused too
    let e = errors(|s, c, a| {
        s.add(CertManager::new(c, a));
        s.add(
            Team::new("cert", c, a)
                .namespace(TeamNamespace::new("cert"))
                .repository(Repository::new(REPO, RepoAccess::Public))
                .app(App::new("manager", REPO, "cert")),
        );
    });
    assert_one(
        &e,
        "team-cert",
        "applications",
        "`cert-manager` is made by `cert-manager` and by `team-cert`",
    );
}

#[tokio::test]
async fn keycloak_creates_the_groups_the_teams_name_with_its_realm() {
    let mut stack = Stack::new("groups");
    let cluster = stack.add(ClusterModule::new("prod", "example.com"));
    let argocd = stack.add(ArgoCd::new(&cluster));
    let ingress = stack.add(Traefik::new(&cluster, &argocd));
    let sso = stack.add(Keycloak::new(&cluster, &argocd, &ingress));
    for (team, role) in [("shop", "deployers"), ("blog", "viewers")] {
        stack.add(
            Team::new(team, &cluster, &argocd)
                .namespace(TeamNamespace::new(team))
                .access(AccessRole::Viewer, sso.group(format!("{team}-{role}")))
                // a group named twice is created once
                .access(AccessRole::Deployer, sso.group("release-managers")),
        );
    }
    let plan = plan(stack).await;
    assert_eq!(
        module(&plan, "keycloak").output["groups"],
        json!([
            DEFAULT_ADMIN_GROUP,
            "blog-viewers",
            "release-managers",
            "shop-deployers"
        ])
    );
    let realm = objects(&plan)["v1 Secret keycloak/keycloak-realm"]["stringData"]["realm.json"]
        .as_str()
        .unwrap()
        .to_owned();
    let realm: Value = serde_json::from_str(&realm).unwrap();
    let names: Vec<&str> = realm["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            DEFAULT_ADMIN_GROUP,
            "blog-viewers",
            "release-managers",
            "shop-deployers"
        ]
    );
    // and the teams run after the provider
    let mut stack = Stack::new("bad-group");
    let cluster = stack.add(ClusterModule::new("prod", "example.com"));
    let argocd = stack.add(ArgoCd::new(&cluster));
    let ingress = stack.add(Traefik::new(&cluster, &argocd));
    let sso = stack.add(Keycloak::new(&cluster, &argocd, &ingress));
    stack.add(
        Team::new("shop", &cluster, &argocd)
            .namespace(TeamNamespace::new("shop"))
            .access(AccessRole::Viewer, sso.group("shop/viewers")),
    );
    let e = stack.build().unwrap_err();
    assert_one(
        e.config_errors(),
        "team-shop",
        "access[0].group",
        "would refuse the group `shop/viewers`",
    );
}

#[test]
fn an_empty_kubernetes_group_prefix_is_refused() {
    let e = errors(|s, c, a| {
        s.add(team(c, a).kubernetes_group_prefix(""));
    });
    assert_one(&e, "team-shop", "kubernetes_group_prefix", "is empty");
}

#[tokio::test]
async fn role_bindings_take_the_prefix_of_the_cluster_s_oidc_authentication() {
    use devops_stack_core::Input;
    use devops_stack_core::interfaces::ClusterOidc;
    let trust = ClusterOidc {
        groups_prefix: "corp-oidc:".into(),
        ..ClusterOidc::new("https://id.example.com", "kubernetes", "groups")
    };
    let plan = plan(platform_with(|c, a, _, _, _| {
        vec![team(c, a).cluster_oidc(Input::value(trust))]
    }))
    .await;
    let binding = &objects(&plan)["rbac.authorization.k8s.io/v1 RoleBinding shop/team-deployer"];
    assert_eq!(binding["subjects"][0]["name"], "corp-oidc:shop-deployers");
}
