//! The `HostedZone` module and its records against moto: the zone is looked up before anything
//! is created; records carry an ownership TXT record and nothing else is ever changed.

mod common;

use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, HostedZoneConfig, ResourceRecord, ResourceRecordSet, RrType,
    Vpc, VpcRegion,
};
use devops_stack_aws::route53::{HostedZone, Route53Zone, owner_record_name};
use devops_stack_aws::s3::S3Bucket;
use devops_stack_core::interfaces::{DnsRecord, DnsZoneProvider, RecordKind, RoleOwner};
use devops_stack_core::{Handle, RunOptions, Stack, Status};

const STACK: &str = "zones";

async fn create_zone(r53: &aws_sdk_route53::Client, name: &str, vpc: Option<&str>) -> String {
    let mut request = r53
        .create_hosted_zone()
        .name(name)
        .caller_reference(format!("{name}-{}", vpc.unwrap_or("public")));
    if let Some(vpc) = vpc {
        request = request
            .hosted_zone_config(HostedZoneConfig::builder().private_zone(true).build())
            .vpc(
                Vpc::builder()
                    .vpc_id(vpc)
                    .vpc_region(VpcRegion::UsEast1)
                    .build(),
            );
    }
    let id = request.send().await.unwrap().hosted_zone.unwrap().id;
    id.trim_start_matches("/hostedzone/").to_owned()
}

/// The record sets of `zone` named `name`, as `(type, values)`.
async fn sets(r53: &aws_sdk_route53::Client, zone: &str, name: &str) -> Vec<(String, Vec<String>)> {
    r53.list_resource_record_sets()
        .hosted_zone_id(zone)
        .send()
        .await
        .unwrap()
        .resource_record_sets()
        .iter()
        .filter(|s| s.name().trim_end_matches('.').replace("\\052", "*") == name)
        .map(|s| {
            (
                s.r#type().as_str().to_owned(),
                s.resource_records()
                    .iter()
                    .map(|r| r.value().to_owned())
                    .collect(),
            )
        })
        .collect()
}

/// The record sets of one CNAME record to `target`, as [`sets`] gives them.
fn cname(target: &str) -> [(String, Vec<String>); 1] {
    [("CNAME".to_owned(), vec![target.to_owned()])]
}

async fn create_by_hand(r53: &aws_sdk_route53::Client, zone: &str, name: &str, target: &str) {
    r53.change_resource_record_sets()
        .hosted_zone_id(zone)
        .change_batch(
            ChangeBatch::builder()
                .changes(
                    Change::builder()
                        .action(ChangeAction::Create)
                        .resource_record_set(
                            ResourceRecordSet::builder()
                                .name(name)
                                .r#type(RrType::Cname)
                                .ttl(60)
                                .resource_records(
                                    ResourceRecord::builder().value(target).build().unwrap(),
                                )
                                .build()
                                .unwrap(),
                        )
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

#[tokio::test]
#[ignore = "needs moto (DEVOPS_STACK_TEST_AWS_ENDPOINT): scripts/test.sh starts it"]
async fn a_missing_zone_fails_preflight_naming_the_domain_and_nothing_is_created() {
    let ep = common::endpoint();
    let _guard = common::LOCK.lock().await;
    common::reset(&ep);
    let aws = common::aws(&ep);
    let sdk = common::sdk(&ep).await;
    let r53 = aws_sdk_route53::Client::new(&sdk);
    // A zone of a parent domain and a private zone of the domain do not count.
    create_zone(&r53, "example.com", None).await;
    let vpc = aws_sdk_ec2::Client::new(&sdk)
        .create_vpc()
        .cidr_block("10.9.0.0/16")
        .send()
        .await
        .unwrap()
        .vpc
        .unwrap()
        .vpc_id
        .unwrap();
    create_zone(&r53, "prod.example.com", Some(&vpc)).await;

    let mut stack = Stack::new(STACK);
    stack.add(S3Bucket::new("loki-bucket", "zones-loki").aws(aws.clone()));
    stack.add(HostedZone::lookup("zone", "prod.example.com").aws(aws.clone()));
    let stack = stack.build().unwrap();
    let err = stack
        .apply(&RunOptions::new())
        .await
        .expect_err("no public zone");
    let text = err.to_string();
    assert!(
        text.contains("no public Route 53 hosted zone for `prod.example.com`"),
        "{text}"
    );
    assert!(
        text.contains("create the hosted zone for `prod.example.com` in Route 53"),
        "{text}"
    );
    let s3 = common::s3(&sdk);
    let buckets = s3.list_buckets().send().await.unwrap();
    assert!(
        buckets.buckets().is_empty(),
        "nothing is created: {buckets:?}"
    );

    // The private zone is found when asked for.
    let mut stack = Stack::new(STACK);
    let zone = stack.add(
        HostedZone::lookup("zone", "prod.example.com.")
            .private(true)
            .aws(aws.clone()),
    );
    let report = stack
        .build()
        .unwrap()
        .apply(&RunOptions::new())
        .await
        .expect("found");
    assert!(report.output(&zone).unwrap().private);
}

#[tokio::test]
#[ignore = "needs moto (DEVOPS_STACK_TEST_AWS_ENDPOINT): scripts/test.sh starts it"]
async fn lookup_finds_the_zone_and_gives_a_policy_scoped_to_it() {
    let ep = common::endpoint();
    let _guard = common::LOCK.lock().await;
    common::reset(&ep);
    let aws = common::aws(&ep);
    let sdk = common::sdk(&ep).await;
    let r53 = aws_sdk_route53::Client::new(&sdk);
    create_zone(&r53, "apps.example.com", None).await;
    let id = create_zone(&r53, "example.com", None).await;
    create_zone(&r53, "example.org", None).await;

    let mut stack = Stack::new(STACK);
    let zone = stack.add(HostedZone::lookup("zone", "Example.com").aws(aws.clone()));
    let stack = stack.build().unwrap();
    let report = stack.apply(&RunOptions::new()).await.expect("applied");
    let zone = report.output(&zone).unwrap();
    assert_eq!(zone.hosted_zone_id, id);
    assert_eq!(zone.domain, "example.com");
    let dns = zone.dns_zone();
    assert_eq!(
        dns.solver.cert_manager_dns01(),
        serde_json::json!({"route53": {"region": common::REGION, "hostedZoneID": id}})
    );
    let statements = &dns.change_policy.statements;
    assert_eq!(
        statements[0].resources,
        [format!("arn:aws:route53:::hostedzone/{id}")]
    );
    assert!(
        statements[0]
            .actions
            .contains(&"route53:ChangeResourceRecordSets".to_owned())
    );
    assert_eq!(statements[1].resources, ["arn:aws:route53:::change/*"]);
    assert_eq!(statements[2].actions, ["route53:ListHostedZonesByName"]);
    assert!(dns.change_policy.unscoped_statements().is_empty());
    // Destroy leaves the zone.
    stack.destroy(&RunOptions::new()).await.expect("destroyed");
    assert!(r53.get_hosted_zone().id(&id).send().await.is_ok());

    // Two public zones of the name: refused, naming both.
    let second = create_zone(&r53, "example.org", None).await;
    let mut stack = Stack::new(STACK);
    stack.add(HostedZone::lookup("zone", "example.org").aws(aws.clone()));
    let text = stack
        .build()
        .unwrap()
        .apply(&RunOptions::new())
        .await
        .expect_err("ambiguous")
        .to_string();
    assert!(
        text.contains("2 public Route 53 hosted zones for `example.org`"),
        "{text}"
    );
    assert!(text.contains(&second), "{text}");
}

/// A stack of the `HostedZone` of `example.com`, applied on a fresh moto that has that zone.
struct AppliedZone {
    stack: devops_stack_core::BuiltStack,
    handle: Handle<Route53Zone>,
    zone: devops_stack_core::interfaces::DnsZone,
    r53: aws_sdk_route53::Client,
    id: String,
}

async fn applied_zone(ep: &str) -> AppliedZone {
    common::reset(ep);
    let sdk = common::sdk(ep).await;
    let r53 = aws_sdk_route53::Client::new(&sdk);
    let id = create_zone(&r53, "example.com", None).await;
    let mut stack = Stack::new(STACK);
    let handle: Handle<Route53Zone> =
        stack.add(HostedZone::lookup("zone", "example.com").aws(common::aws(ep)));
    let stack = stack.build().unwrap();
    let report = stack.apply(&RunOptions::new()).await.unwrap();
    let zone = report.output(&handle).unwrap().dns_zone();
    AppliedZone {
        stack,
        handle,
        zone,
        r53,
        id,
    }
}

#[tokio::test]
#[ignore = "needs moto (DEVOPS_STACK_TEST_AWS_ENDPOINT): scripts/test.sh starts it"]
async fn records_are_owned_through_a_txt_record_and_nothing_else_is_touched() {
    let ep = common::endpoint();
    let _guard = common::LOCK.lock().await;
    let AppliedZone {
        stack: built,
        handle,
        zone,
        r53,
        id,
    } = applied_zone(&ep).await;
    let records = &zone.records;
    let traefik = RoleOwner {
        stack: STACK.into(),
        module: "traefik".into(),
    };
    let other = RoleOwner {
        stack: "other".into(),
        module: "traefik".into(),
    };
    let wildcard = "*.apps.prod.example.com";
    let marker = "\"devops-stack/stack=zones,module=traefik,type=CNAME\"";

    // Created, with its ownership TXT record.
    records
        .ensure_record(
            &traefik,
            &DnsRecord::cname(wildcard, "nlb-1.elb.amazonaws.com"),
        )
        .await
        .expect("created");
    assert_eq!(
        sets(&r53, &id, wildcard).await,
        cname("nlb-1.elb.amazonaws.com")
    );
    let owner_name = owner_record_name(wildcard);
    assert_eq!(
        owner_name,
        "_devops-stack-owner._wildcard.apps.prod.example.com"
    );
    assert_eq!(
        sets(&r53, &id, &owner_name).await,
        [("TXT".to_owned(), vec![marker.to_owned()])]
    );
    // Again with a new target: updated.
    records
        .ensure_record(
            &traefik,
            &DnsRecord::cname(wildcard, "nlb-2.elb.amazonaws.com"),
        )
        .await
        .expect("updated");
    assert_eq!(
        sets(&r53, &id, wildcard).await,
        cname("nlb-2.elb.amazonaws.com")
    );
    // Another stack's module may not take it over.
    let err = records
        .ensure_record(
            &other,
            &DnsRecord::cname(wildcard, "nlb-3.elb.amazonaws.com"),
        )
        .await
        .expect_err("not theirs")
        .to_string();
    assert!(err.contains("is not this module's"), "{err}");
    assert!(err.contains("stack=zones,module=traefik"), "{err}");
    assert_eq!(
        sets(&r53, &id, wildcard).await,
        cname("nlb-2.elb.amazonaws.com")
    );

    // A record made by hand (no TXT) is refused and left unchanged.
    create_by_hand(&r53, &id, "grafana.example.com", "somewhere.example.net").await;
    let err = records
        .ensure_record(
            &traefik,
            &DnsRecord::cname("grafana.example.com", "nlb-2.elb.amazonaws.com"),
        )
        .await
        .expect_err("not ours")
        .to_string();
    assert!(
        err.contains("DNS record `grafana.example.com` (CNAME) in Route 53 zone `example.com` exists and is not this module's (tags: none"),
        "{err}"
    );
    assert_eq!(
        sets(&r53, &id, "grafana.example.com").await,
        cname("somewhere.example.net")
    );
    assert!(
        sets(&r53, &id, &owner_record_name("grafana.example.com"))
            .await
            .is_empty()
    );
    // A name outside the zone is refused before any change.
    let err = records
        .ensure_record(
            &traefik,
            &DnsRecord::cname("grafana.example.org", "x.example.com"),
        )
        .await
        .expect_err("outside the zone")
        .to_string();
    assert!(
        err.contains("not in the Route 53 zone `example.com`"),
        "{err}"
    );

    // Delete: another owner's delete and the hand-made record's are no-ops; ours goes with its
    // TXT; a second delete succeeds.
    records
        .delete_record(&other, wildcard, RecordKind::Cname)
        .await
        .expect("left alone");
    assert_eq!(sets(&r53, &id, wildcard).await.len(), 1);
    records
        .delete_record(&traefik, "grafana.example.com", RecordKind::Cname)
        .await
        .expect("left alone");
    records
        .delete_record(&traefik, wildcard, RecordKind::Cname)
        .await
        .expect("deleted");
    assert!(sets(&r53, &id, wildcard).await.is_empty());
    assert!(sets(&r53, &id, &owner_name).await.is_empty());
    records
        .delete_record(&traefik, wildcard, RecordKind::Cname)
        .await
        .expect("already gone");
    assert_eq!(
        sets(&r53, &id, "grafana.example.com").await,
        cname("somewhere.example.net")
    );

    // The zone deleted by hand: a destroy's read still gives it (its dependents are destroyed,
    // not taken for gone), deleting its records succeeds and creating one names the domain.
    r53.change_resource_record_sets()
        .hosted_zone_id(&id)
        .change_batch(
            ChangeBatch::builder()
                .changes(
                    Change::builder()
                        .action(ChangeAction::Delete)
                        .resource_record_set(
                            ResourceRecordSet::builder()
                                .name("grafana.example.com")
                                .r#type(RrType::Cname)
                                .ttl(60)
                                .resource_records(
                                    ResourceRecord::builder()
                                        .value("somewhere.example.net")
                                        .build()
                                        .unwrap(),
                                )
                                .build()
                                .unwrap(),
                        )
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    r53.delete_hosted_zone().id(&id).send().await.unwrap();
    let read = built.read(&RunOptions::new()).await.expect("read");
    assert_eq!(read.module("zone").unwrap().status, Status::Succeeded);
    let gone = read.output(&handle).unwrap().dns_zone().records;
    gone.delete_record(&traefik, wildcard, RecordKind::Cname)
        .await
        .expect("gone with the zone");
    let err = gone
        .ensure_record(&traefik, &DnsRecord::cname(wildcard, "x.example.net"))
        .await
        .expect_err("no zone")
        .to_string();
    assert!(
        err.contains("no public Route 53 hosted zone for `example.com`"),
        "{err}"
    );
}

#[tokio::test]
async fn a_planned_zone_changes_no_record() {
    let mut stack = Stack::new(STACK);
    let zone = stack.add(
        HostedZone::lookup("zone", "example.com")
            .region("eu-west-1")
            .endpoint_url("http://unreachable.invalid"),
    );
    let _ = zone;
    let plan = stack.build().unwrap().plan().await.unwrap();
    let output = &plan.module("zone").unwrap().output;
    assert_eq!(
        output["hosted_zone_id"],
        "(known after apply: zone.hosted_zone_id)"
    );
    let planned = devops_stack_aws::route53::Route53Records::planned(
        "example.com",
        output["hosted_zone_id"].as_str().unwrap(),
    );
    let resource = devops_stack_core::interfaces::DnsRecords::planned_record(
        &planned,
        &DnsRecord::cname("*.apps.example.com", "x.example.net"),
    );
    assert_eq!(resource.title(), "aws route53:RecordSet *.apps.example.com");
    let owner = RoleOwner {
        stack: STACK.into(),
        module: "traefik".into(),
    };
    let err = devops_stack_core::interfaces::DnsRecords::ensure_record(
        &planned,
        &owner,
        &DnsRecord::cname("*.apps.example.com", "x.example.net"),
    )
    .await
    .expect_err("planned")
    .to_string();
    assert!(err.contains("offline plan"), "{err}");
    assert!(err.contains("apply the stack first"), "{err}");
}

#[tokio::test]
#[ignore = "needs moto (DEVOPS_STACK_TEST_AWS_ENDPOINT): scripts/test.sh starts it"]
async fn the_zone_s_destroy_deletes_the_records_its_stack_left_and_nothing_else() {
    // A destroy that abandons the cluster's objects skips the ingress module's destroy: its
    // wildcard record is left for the zone module, which its stack destroys last.
    let ep = common::endpoint();
    let _guard = common::LOCK.lock().await;
    let AppliedZone {
        stack: built,
        zone,
        r53,
        id,
        ..
    } = applied_zone(&ep).await;
    let records = zone.records;
    let ours = RoleOwner {
        stack: STACK.into(),
        module: "traefik".into(),
    };
    let theirs = RoleOwner {
        stack: "other".into(),
        module: "traefik".into(),
    };
    records
        .ensure_record(
            &ours,
            &DnsRecord::cname("*.apps.prod.example.com", "nlb-1.elb.amazonaws.com"),
        )
        .await
        .unwrap();
    records
        .ensure_record(
            &ours,
            &DnsRecord::cname("grafana.example.com", "nlb-1.elb.amazonaws.com"),
        )
        .await
        .unwrap();
    records
        .ensure_record(
            &theirs,
            &DnsRecord::cname("*.apps.test.example.com", "nlb-2.elb.amazonaws.com"),
        )
        .await
        .unwrap();
    create_by_hand(&r53, &id, "shop.example.com", "nlb-3.elb.amazonaws.com").await;

    let destroyed = built.destroy(&RunOptions::new()).await.unwrap();
    assert!(destroyed.is_success());
    for name in ["*.apps.prod.example.com", "grafana.example.com"] {
        assert!(sets(&r53, &id, name).await.is_empty(), "{name} is left");
        assert!(sets(&r53, &id, &owner_record_name(name)).await.is_empty());
    }
    // another stack's record and a hand-made one stay, and so does the zone
    assert_eq!(
        sets(&r53, &id, "*.apps.test.example.com").await,
        cname("nlb-2.elb.amazonaws.com")
    );
    assert_eq!(
        sets(&r53, &id, "shop.example.com").await,
        cname("nlb-3.elb.amazonaws.com")
    );
    assert!(r53.get_hosted_zone().id(&id).send().await.is_ok());
}
