//! Bad input is caught by `Stack::build`, before anything runs, with the field and the fix.

mod support;

use devops_stack_core::validate::{self, Capability, Interface};
use devops_stack_core::{
    ConfigError, Context, Error, Module, ModuleResult, Phase, Planned, Stack, Validation,
};
use support::{Probe, Recorder};

fn errors(stack: Stack) -> Vec<ConfigError> {
    match stack.build() {
        Err(Error::Invalid(errors)) => errors,
        Err(e) => panic!("expected Invalid, got {e}"),
        Ok(_) => panic!("expected Invalid, got a valid stack"),
    }
}

fn one(stack: Stack) -> ConfigError {
    let mut e = errors(stack);
    assert_eq!(e.len(), 1, "{e:#?}");
    e.remove(0)
}

#[test]
fn stack_names_must_be_dns_labels() {
    for bad in ["", "Prod", "prod_eu", "-prod", &"x".repeat(64)] {
        let e = one(Stack::new(bad));
        assert_eq!(e.field, "stack.name", "{bad:?}");
        assert!(e.fix.contains("lowercase"));
    }
    assert!(Stack::new("prod-eu-1").build().is_ok());
}

#[test]
fn module_ids_must_be_dns_labels() {
    let r = Recorder::new();
    let mut s = Stack::new("t");
    s.add(Probe::new("Traefik_1", &r));
    let e = one(s);
    assert_eq!(
        (e.module.as_deref(), e.field.as_str()),
        (Some("Traefik_1"), "id")
    );
    assert!(e.problem.contains("`T`"), "{e}");

    let mut s = Stack::new("t");
    s.add(Probe::new("", &r));
    assert!(one(s).problem.contains("empty"));
}

#[test]
fn duplicate_module_ids_are_refused() {
    let r = Recorder::new();
    let mut s = Stack::new("t");
    s.add(Probe::new("traefik", &r));
    s.add(Probe::new("other", &r));
    s.add(Probe::new("traefik", &r));
    let e = one(s);
    assert_eq!(e.field, "id");
    assert!(
        e.problem
            .contains("modules #1 and #3 both have the id `traefik`"),
        "{e}"
    );
    assert!(e.fix.contains("`.id(..)`"));
}

#[test]
fn two_controllers_cannot_both_claim_the_default_ingress_class() {
    let r = Recorder::new();
    let mut s = Stack::new("t");
    let mut a = Probe::new("traefik", &r);
    a.provides.push(Capability::IngressClass {
        name: "traefik".into(),
        default: true,
    });
    let mut b = Probe::new("ingress-nginx", &r);
    b.provides.push(Capability::IngressClass {
        name: "nginx".into(),
        default: true,
    });
    s.add(a);
    s.add(b);
    let e = one(s);
    assert_eq!(e.field, "default_class");
    assert!(
        e.problem
            .contains("`traefik` (traefik), `ingress-nginx` (nginx)"),
        "{e}"
    );
    assert!(e.fix.contains("default_class(false)"));
}

#[test]
fn two_controllers_cannot_serve_one_class() {
    let r = Recorder::new();
    let mut s = Stack::new("t");
    for id in ["a", "b"] {
        let mut p = Probe::new(id, &r);
        p.provides.push(Capability::IngressClass {
            name: "nginx".into(),
            default: false,
        });
        s.add(p);
    }
    let e = one(s);
    assert_eq!(
        (e.module.as_deref(), e.field.as_str()),
        (Some("b"), "ingress_class")
    );
    assert!(e.problem.contains("also served by `a`"));
}

#[test]
fn a_required_interface_must_be_provided() {
    let r = Recorder::new();
    let mut s = Stack::new("t");
    let mut p = Probe::new("cert-manager", &r);
    p.requires.push(Interface::Ingress);
    s.add(p);
    let e = one(s);
    assert_eq!(e.field, "requires");
    assert!(
        e.problem
            .contains("needs an ingress controller (the test says so)"),
        "{e}"
    );

    // provided by any ingress class
    let mut s = Stack::new("t");
    let mut p = Probe::new("cert-manager", &r);
    p.requires.push(Interface::Ingress);
    s.add(p);
    let mut t = Probe::new("traefik", &r);
    t.provides.push(Capability::IngressClass {
        name: "traefik".into(),
        default: true,
    });
    s.add(t);
    assert!(s.build().is_ok());
}

#[test]
fn handles_of_another_stack_are_refused() {
    let r = Recorder::new();
    let mut other = Stack::new("other");
    let foreign = other.add(Probe::new("cluster", &r));
    let mut s = Stack::new("t");
    s.add(Probe::new("cluster", &r));
    s.add(Probe::new("app", &r).after(foreign.input()));
    let e = one(s);
    assert_eq!(
        (e.module.as_deref(), e.field.as_str()),
        (Some("app"), "needs")
    );
    assert!(e.problem.contains("from another stack"));
}

#[test]
fn every_problem_is_reported_at_once() {
    let r = Recorder::new();
    let mut s = Stack::new("Bad Name");
    s.add(Probe::new("x", &r));
    s.add(Probe::new("x", &r));
    s.add(Probe::new("UPPER", &r));
    let e = errors(s);
    assert_eq!(e.len(), 3, "{e:#?}");
    let text = Error::Invalid(e).to_string();
    assert!(
        text.starts_with("invalid stack configuration (3 problems):"),
        "{text}"
    );
}

#[test]
fn cycles_name_the_modules_on_them() {
    let r = Recorder::new();
    let mut s = Stack::new("t");
    let a = s.add(Probe::new("a", &r));
    let b = s.add(Probe::new("b", &r).after(a.input()));
    let c = s.add(Probe::new("c", &r).after(b.input()));
    s.add(Probe::new("free", &r));
    s.order(&c, &a);
    match s.build() {
        Err(Error::Cycle { cycles }) => assert_eq!(cycles, vec![vec!["a", "b", "c"]]),
        other => panic!("{other:?}"),
    }

    let mut s = Stack::new("t");
    let fin = s.add(Probe::new("fin", &r).phase(Phase::Final));
    s.add(Probe::new("reads-final", &r).after(fin.input()));
    let err = s.build().unwrap_err();
    assert!(err.to_string().contains("fin -> reads-final"), "{err}");
}

/// A module whose configuration has a base domain and an email, as cluster and issuer modules do.
struct Domain {
    base_domain: String,
    email: String,
}

impl Module for Domain {
    type Output = ();
    fn id(&self) -> &str {
        "domain"
    }
    fn kind(&self) -> &'static str {
        "domain"
    }
    fn validate(&self, v: &mut Validation) {
        v.check(
            "base_domain",
            validate::base_domain(&self.base_domain),
            "use a domain you control, like `example.com`",
        );
        v.check(
            "email",
            validate::email(&self.email),
            "use a reachable address",
        );
    }
    async fn plan(&self, _: &Context) -> ModuleResult<Planned<()>> {
        Ok(Planned::new(()))
    }
    async fn apply(&self, _: &Context) -> ModuleResult<()> {
        Ok(())
    }
    async fn destroy(&self, _: &Context) -> ModuleResult<()> {
        Ok(())
    }
}

#[test]
fn module_validation_names_field_and_fix() {
    let mut s = Stack::new("t");
    s.add(Domain {
        base_domain: "example..com".into(),
        email: "ops".into(),
    });
    let e = errors(s);
    assert_eq!(
        e.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(),
        ["base_domain", "email"]
    );
    assert!(e[0].problem.contains("empty label"));
    assert!(
        e[0].to_string()
            .contains("module `domain`, field `base_domain`")
    );
    assert!(e[1].problem.contains("no `@`"));
}

#[test]
fn a_team_namespace_belongs_to_that_team_alone() {
    use devops_stack_core::NamespaceOwner;
    let claim = |id: &str, ns: &str, owner: NamespaceOwner, r: &Recorder| {
        let mut p = Probe::new(id, r);
        p.provides.push(Capability::Namespace {
            name: ns.into(),
            owner,
        });
        p
    };
    let team = |t: &str| NamespaceOwner::Team(t.into());
    let r = Recorder::new();
    // platform modules may share a namespace; teams may not share theirs with anyone
    let mut s = Stack::new("t");
    s.add(claim("kps", "monitoring", NamespaceOwner::Platform, &r));
    s.add(claim("loki", "monitoring", NamespaceOwner::Platform, &r));
    s.add(claim("shop", "shop", team("shop"), &r));
    assert!(s.build().is_ok());

    let mut s = Stack::new("t");
    s.add(claim("shop", "shop", team("shop"), &r));
    s.add(claim("blog", "shop", team("blog"), &r));
    s.add(claim("traefik", "shop", NamespaceOwner::Platform, &r));
    let e = errors(s);
    assert_eq!(e.len(), 2, "{e:#?}");
    assert_eq!(
        (e[0].module.as_deref(), e[0].field.as_str()),
        (Some("blog"), "namespaces")
    );
    assert!(
        e[0].problem
            .contains("by team `blog` (module `blog`) and by team `shop` (module `shop`)"),
        "{}",
        e[0]
    );
    assert!(
        e[1].problem
            .contains("by the platform (module `traefik`) and by team `shop`"),
        "{}",
        e[1]
    );

    let mut s = Stack::new("t");
    s.add(claim("argocd", "argocd", NamespaceOwner::Platform, &r));
    s.add(claim("shop", "argocd", team("shop"), &r));
    assert!(
        one(s)
            .problem
            .contains("and by the platform (module `argocd`)")
    );
}

/// An OIDC provider whose output is the groups its module was asked to create, and which
/// refuses group names with a space.
#[derive(Clone, serde::Serialize)]
struct Groups(Vec<String>);

impl devops_stack_core::interfaces::OidcProvider for Groups {
    fn client(&self, _: &str) -> Option<devops_stack_core::interfaces::Oidc> {
        None
    }
    fn client_names(&self) -> Vec<String> {
        Vec::new()
    }
    fn group_name_problem(name: &str) -> Option<String> {
        name.contains(' ').then(|| "no spaces".to_owned())
    }
}

struct Provider;

impl Module for Provider {
    type Output = Groups;
    fn id(&self) -> &str {
        "sso"
    }
    fn kind(&self) -> &'static str {
        "sso"
    }
    async fn plan(&self, ctx: &Context) -> ModuleResult<Planned<Groups>> {
        Ok(Planned::new(Groups(ctx.requested_groups().to_vec())))
    }
    async fn apply(&self, ctx: &Context) -> ModuleResult<Groups> {
        Ok(Groups(ctx.requested_groups().to_vec()))
    }
    async fn destroy(&self, _: &Context) -> ModuleResult<()> {
        Ok(())
    }
}

/// Names groups of the provider, as a team's roles do.
struct UsesGroups(
    &'static str,
    Vec<devops_stack_core::interfaces::IdentityGroup>,
);

impl Module for UsesGroups {
    type Output = ();
    fn id(&self) -> &str {
        self.0
    }
    fn kind(&self) -> &'static str {
        "uses-groups"
    }
    fn needs(&self, n: &mut devops_stack_core::Needs) {
        for g in &self.1 {
            n.add(g);
        }
    }
    fn validate(&self, v: &mut Validation) {
        for (i, g) in self.1.iter().enumerate() {
            v.uses_group(&format!("groups[{i}]"), g);
        }
    }
    async fn plan(&self, _: &Context) -> ModuleResult<Planned<()>> {
        Ok(Planned::new(()))
    }
    async fn apply(&self, _: &Context) -> ModuleResult<()> {
        Ok(())
    }
    async fn destroy(&self, _: &Context) -> ModuleResult<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_provider_is_asked_for_every_group_its_stack_names_once_and_sorted() {
    use devops_stack_core::interfaces::IdentityGroup;
    let mut stack = Stack::new("groups");
    let sso = stack.add(Provider);
    stack.add(UsesGroups(
        "shop",
        vec![sso.group("shop-deployers"), sso.group("auditors")],
    ));
    stack.add(UsesGroups(
        "blog",
        // a provider outside the stack is not asked
        vec![sso.group("auditors"), IdentityGroup::external("outside")],
    ));
    let stack = stack.build().unwrap();
    assert!(stack.predecessors("shop").contains(&"sso"));
    let plan = stack.plan().await.unwrap();
    let sso_plan = plan.modules.iter().find(|m| m.id == "sso").unwrap();
    assert_eq!(
        sso_plan.output,
        serde_json::json!(["auditors", "shop-deployers"])
    );
    let report = stack
        .apply(&devops_stack_core::RunOptions::new())
        .await
        .unwrap();
    assert_eq!(
        report.module("sso").unwrap().output,
        Some(serde_json::json!(["auditors", "shop-deployers"]))
    );
}

#[test]
fn a_group_name_the_provider_refuses_is_reported_where_it_is_used() {
    let mut stack = Stack::new("groups");
    let sso = stack.add(Provider);
    stack.add(UsesGroups("shop", vec![sso.group("shop deployers")]));
    let e = one(stack);
    assert_eq!(e.module.as_deref(), Some("shop"));
    assert_eq!(e.field, "groups[0]");
    assert!(
        e.problem
            .contains("would refuse the group `shop deployers`: no spaces")
    );
}

#[test]
fn two_modules_making_one_application_is_refused() {
    struct App(&'static str, &'static str);
    impl Module for App {
        type Output = ();
        fn id(&self) -> &str {
            self.0
        }
        fn kind(&self) -> &'static str {
            "app"
        }
        fn validate(&self, v: &mut Validation) {
            v.provides(Capability::Application {
                name: self.1.into(),
            });
        }
        async fn plan(&self, _: &Context) -> ModuleResult<Planned<()>> {
            Ok(Planned::new(()))
        }
        async fn apply(&self, _: &Context) -> ModuleResult<()> {
            Ok(())
        }
        async fn destroy(&self, _: &Context) -> ModuleResult<()> {
            Ok(())
        }
    }
    let mut stack = Stack::new("apps");
    stack.add(App("a", "web"));
    stack.add(App("b", "web"));
    stack.add(App("c", "api"));
    let e = one(stack);
    assert_eq!(e.module.as_deref(), Some("b"));
    assert_eq!(e.field, "applications");
    assert!(
        e.problem.contains("`web` is made by `a` and by `b`"),
        "{}",
        e.problem
    );
}
