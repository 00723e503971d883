//! Bad input is rejected by `Stack::build`, before any AWS call, naming the field.

use devops_stack_aws::cognito::{Cognito, User};
use devops_stack_aws::eks::{Eks, NodeGroup};
use devops_stack_core::interfaces::Hostnames;
use devops_stack_core::{Module, Stack};

fn fields<M: Module>(module: M) -> Vec<String> {
    let mut stack = Stack::new("test");
    stack.add(module);
    match stack.build() {
        Ok(_) => Vec::new(),
        Err(e) => e.config_errors().iter().map(|c| c.field.clone()).collect(),
    }
}

#[test]
fn eks_rejects_bad_input() {
    let eks = Eks::new("eks", "-bad.name", "example.com")
        .version("1.12")
        .role_arn("not-an-arn")
        .subnets(["subnet-only-one"])
        .public_access_cidrs(["10.0.0.0/40", "not-a-cidr"])
        .node_group(
            NodeGroup::new("ng", "not-an-arn")
                .instance_types(["m6i.huge", "zz9.large"])
                .scaling(3, 2, 1)
                .disk_size(0),
        );
    let f = fields(eks);
    for field in [
        "name",
        "version",
        "role_arn",
        "subnets",
        "public_access_cidrs[0]",
        "public_access_cidrs[1]",
        "node_groups.ng.node_role_arn",
        "node_groups.ng.instance_types",
        "node_groups.ng.scaling",
        "node_groups.ng.disk_size",
    ] {
        assert!(
            f.iter().any(|x| x == field),
            "no error for `{field}` in {f:?}"
        );
    }
    let good = Eks::new("eks", "prod", "example.com")
        .role_arn("arn:aws:iam::1:role/r")
        .subnets(["a", "b"])
        .node_group(NodeGroup::new("ng", "arn:aws:iam::1:role/n"));
    assert_eq!(fields(good), Vec::<String>::new());
    assert_eq!(
        fields(Eks::adopt("eks", "prod", "example.com")),
        Vec::<String>::new()
    );
    // Without role ARNs, the module creates the roles: no error.
    let created = Eks::new("eks", "prod", "example.com")
        .subnets(["a", "b"])
        .node_group(NodeGroup::named("ng"));
    assert_eq!(fields(created), Vec::<String>::new());
}

#[test]
fn cognito_rejects_bad_input() {
    let cognito = Cognito::new("cognito", Hostnames::new("prod", "example.com"))
        .domain_prefix("my-cognito-login")
        .pool_name("bad/name")
        .user(User::new("alice", "alice-at-example.com"))
        .user(User::new("bob", "bob@localhost"));
    let f = fields(cognito);
    for field in [
        "domain_prefix",
        "pool_name",
        "users.alice.email",
        "users.bob.email",
    ] {
        assert!(
            f.iter().any(|x| x == field),
            "no error for `{field}` in {f:?}"
        );
    }
    let adopted =
        Cognito::new("cognito", Hostnames::new("prod", "example.com")).existing_pool("nope");
    assert_eq!(fields(adopted), ["existing_pool"]);
    let good = Cognito::new("cognito", Hostnames::new("prod", "example.com"))
        .user(User::new("alice", "alice@example.com").admin());
    assert_eq!(fields(good), Vec::<String>::new());
}

#[test]
fn errors_explain_the_fix() {
    let mut stack = Stack::new("test");
    stack.add(Eks::new("eks", "prod", "example.com"));
    let text = stack.build().unwrap_err().to_string();
    assert!(text.contains("module `eks`, field `subnets`"), "{text}");
    assert!(text.contains("fix:"), "{text}");
}

#[test]
fn a_version_eks_no_longer_offers_is_refused_with_the_fix() {
    let mut stack = Stack::new("test");
    stack.add(
        Eks::new("eks", "prod", "example.com")
            .version("1.30")
            .role_arn("arn:aws:iam::123456789012:role/eks")
            .subnets(["subnet-aaa", "subnet-bbb"]),
    );
    let text = stack.build().unwrap_err().to_string();
    assert!(text.contains("module `eks`, field `version`"), "{text}");
    assert!(text.contains("no longer offered by EKS"), "{text}");
    assert!(text.contains("like `1.35`"), "{text}");
    // the default is accepted
    let mut stack = Stack::new("test");
    stack.add(
        Eks::new("eks", "prod", "example.com")
            .role_arn("arn:aws:iam::123456789012:role/eks")
            .subnets(["subnet-aaa", "subnet-bbb"]),
    );
    assert!(stack.build().is_ok());
}

#[test]
fn bucket_rejects_names_s3_refuses_and_a_zero_retention() {
    use devops_stack_aws::s3::S3Bucket;
    for (name, needle) in [
        ("ab", "3 to 63"),
        ("Prod_Loki", "lowercase letters"),
        ("-prod-loki", "start and end"),
        ("prod..loki", "`..`"),
        ("192.168.5.4", "IP address"),
        ("xn--prod-loki", "reserves"),
        ("prod-loki-s3alias", "reserves"),
        ("prod-loki--x-s3", "reserves"),
    ] {
        let mut stack = Stack::new("test");
        stack.add(S3Bucket::new("bucket", name));
        let text = stack.build().unwrap_err().to_string();
        assert!(
            text.contains("module `bucket`, field `bucket_name`"),
            "{name}: {text}"
        );
        assert!(text.contains(needle), "{name}: {text}");
        assert!(text.contains("fix:"), "{name}: {text}");
    }
    let mut stack = Stack::new("test");
    stack.add(S3Bucket::new("bucket", "prod-loki").retention_days(0));
    let text = stack.build().unwrap_err().to_string();
    assert!(
        text.contains("module `bucket`, field `retention_days`"),
        "{text}"
    );
    assert!(
        text.contains("a retention of zero would delete every object at once"),
        "{text}"
    );
    assert!(text.contains(".retention_days(n)"), "{text}");
    assert_eq!(
        fields(S3Bucket::new("bucket", "prod-example-loki").retention_days(1)),
        Vec::<String>::new()
    );
}

#[test]
fn zone_rejects_a_domain_that_is_not_a_base_domain() {
    use devops_stack_aws::route53::HostedZone;
    assert_eq!(fields(HostedZone::lookup("zone", "localhost")), ["domain"]);
    assert_eq!(
        fields(HostedZone::lookup("zone", "bad_domain.com")),
        ["domain"]
    );
    assert_eq!(
        fields(HostedZone::lookup("zone", "example.com.")),
        Vec::<String>::new()
    );
}

#[test]
fn the_identity_provider_association_refuses_empty_or_kubernetes_prefixes_and_claims() {
    use devops_stack_aws::eks::EksOidcIdentityProvider;
    use devops_stack_core::interfaces::OidcClient;
    let mut stack = Stack::new("test");
    let eks = stack.add(Eks::new("eks", "prod", "example.com").subnets(["subnet-a", "subnet-b"]));
    let sso = stack.add(
        Cognito::new("cognito", Hostnames::new("prod", "example.com"))
            .client(OidcClient::kubernetes()),
    );
    stack.add(
        EksOidcIdentityProvider::new(&eks, sso.oidc("kubernetes"))
            .groups_prefix("")
            .username_prefix("system:")
            .groups_claim(" "),
    );
    let e = stack.build().unwrap_err();
    let mut found: Vec<(String, String)> = e
        .config_errors()
        .iter()
        .map(|c| {
            assert!(!c.fix.is_empty());
            (c.field.clone(), c.problem.clone())
        })
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            ("groups_claim".to_owned(), "is empty".to_owned()),
            ("groups_prefix".to_owned(), "is empty".to_owned()),
            (
                "username_prefix".to_owned(),
                "`system:` is Kubernetes' own prefix".to_owned()
            ),
        ]
    );
}
