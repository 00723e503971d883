//! The `S3Bucket` module against moto: created encrypted, private, tagged, with the retention;
//! a re-apply changes nothing; destroy empties every version and deletes it, or keeps it; a
//! bucket it did not create is never touched.

mod common;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use common::recorder::Recorder;
use common::replay::{Canned, ReplayClient};
use devops_stack_aws::AwsConfig;
use devops_stack_aws::s3::{Bucket, OnDestroy, S3Bucket};
use devops_stack_aws::tags::{MODULE_TAG, PART_TAG, STACK_TAG};
use devops_stack_core::interfaces::ObjectStoreProvider;
use devops_stack_core::{BuiltStack, Event, Handle, RunOptions, Stack, Status};

const STACK: &str = "buckets";

fn built(bucket: S3Bucket) -> (BuiltStack, Handle<Bucket>) {
    let mut stack = Stack::new(STACK);
    let handle = stack.add(bucket);
    (stack.build().expect("a valid stack"), handle)
}

async fn exists(s3: &aws_sdk_s3::Client, bucket: &str) -> bool {
    s3.head_bucket().bucket(bucket).send().await.is_ok()
}

async fn object_versions(s3: &aws_sdk_s3::Client, bucket: &str) -> usize {
    let mut count = 0;
    let (mut key, mut version) = (None, None);
    loop {
        let page = s3
            .list_object_versions()
            .bucket(bucket)
            .set_key_marker(key.take())
            .set_version_id_marker(version.take())
            .send()
            .await
            .unwrap();
        count += page.versions().len() + page.delete_markers().len();
        if page.is_truncated() != Some(true) {
            return count;
        }
        key = page.next_key_marker().map(ToOwned::to_owned);
        version = page.next_version_id_marker().map(ToOwned::to_owned);
    }
}

async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, body: &str) {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body.as_bytes().to_vec()))
        .send()
        .await
        .unwrap();
}

fn with_events() -> (RunOptions, tokio::sync::mpsc::UnboundedReceiver<Event>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    (RunOptions::new().events(tx), rx)
}

fn progress(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Event>) -> Vec<String> {
    let mut messages = Vec::new();
    while let Ok(event) = rx.try_recv() {
        if let Event::Progress { message, .. } = event {
            messages.push(message);
        }
    }
    messages
}

fn module(aws: &AwsConfig, name: &str) -> S3Bucket {
    S3Bucket::new("loki-bucket", name).aws(aws.clone())
}

#[tokio::test]
#[ignore = "needs moto (DEVOPS_STACK_TEST_AWS_ENDPOINT): scripts/test.sh starts it"]
async fn bucket_is_created_private_encrypted_tagged_with_the_retention_and_reapplied_unchanged() {
    let ep = common::endpoint();
    let _guard = common::LOCK.lock().await;
    common::reset(&ep);
    let recorder = Recorder::new();
    let aws = common::aws(&ep).interceptor(recorder.clone());
    let sdk = common::sdk(&ep).await;
    let s3 = common::s3(&sdk);
    let (stack, handle) = built(module(&aws, "buckets-loki").retention_days(14));

    let report = stack.apply(&RunOptions::new()).await.expect("applied");
    let bucket = report.output(&handle).expect("an output");
    assert_eq!(bucket.name, "buckets-loki");
    assert_eq!(bucket.region, common::REGION);
    let store = bucket.object_store();
    assert_eq!(store.bucket, "buckets-loki");
    assert_eq!(store.endpoint.as_deref(), Some(ep.as_str()));
    assert!(store.access.unscoped_statements().is_empty());

    let tags: Vec<(String, String)> = s3
        .get_bucket_tagging()
        .bucket("buckets-loki")
        .send()
        .await
        .unwrap()
        .tag_set
        .into_iter()
        .map(|t| (t.key, t.value))
        .collect();
    for (k, v) in [
        (STACK_TAG, STACK),
        (MODULE_TAG, "loki-bucket"),
        (PART_TAG, "bucket"),
    ] {
        assert!(
            tags.iter().any(|(tk, tv)| tk == k && tv == v),
            "{k}={v} in {tags:?}"
        );
    }
    let block = s3
        .get_public_access_block()
        .bucket("buckets-loki")
        .send()
        .await
        .unwrap()
        .public_access_block_configuration
        .unwrap();
    assert_eq!(
        (
            block.block_public_acls(),
            block.ignore_public_acls(),
            block.block_public_policy(),
            block.restrict_public_buckets()
        ),
        (Some(true), Some(true), Some(true), Some(true))
    );
    let encryption = s3
        .get_bucket_encryption()
        .bucket("buckets-loki")
        .send()
        .await
        .unwrap()
        .server_side_encryption_configuration
        .unwrap();
    assert_eq!(
        encryption.rules()[0]
            .apply_server_side_encryption_by_default()
            .unwrap()
            .sse_algorithm()
            .as_str(),
        "AES256"
    );
    let rules = s3
        .get_bucket_lifecycle_configuration()
        .bucket("buckets-loki")
        .send()
        .await
        .unwrap()
        .rules
        .unwrap();
    assert_eq!(rules.len(), 1, "{rules:?}");
    let rule = &rules[0];
    assert_eq!(rule.id(), Some("devops-stack-retention"));
    assert_eq!(rule.expiration().and_then(|e| e.days()), Some(14));
    assert_eq!(
        rule.noncurrent_version_expiration()
            .and_then(|e| e.noncurrent_days()),
        Some(1)
    );
    assert_eq!(
        rule.abort_incomplete_multipart_upload()
            .and_then(|a| a.days_after_initiation()),
        Some(1)
    );
    let ops = recorder.operations();
    assert!(
        ops.iter().position(|o| o == "CreateBucket")
            < ops.iter().position(|o| o == "PutBucketTagging"),
        "{ops:?}"
    );
    // Versioning is left as it is (off for a new bucket). moto's answer to GetBucketVersioning
    // on a bucket never versioned is not parsed by the SDK, so the calls are checked instead.
    assert!(!ops.iter().any(|o| o == "PutBucketVersioning"), "{ops:?}");

    // A second apply reads and changes nothing.
    recorder.clear();
    stack.apply(&RunOptions::new()).await.expect("re-applied");
    let writes: Vec<String> = recorder
        .operations()
        .into_iter()
        .filter(|o| o.starts_with("Put") || o.starts_with("Create") || o.starts_with("Delete"))
        .collect();
    assert!(writes.is_empty(), "a re-apply wrote: {writes:?}");

    // A changed retention converges, and a lifecycle rule added by hand is kept.
    let (stack, _) = stack_with_rule_added_by_hand(&aws, &s3).await;
    stack.apply(&RunOptions::new()).await.expect("re-applied");
    let rules = s3
        .get_bucket_lifecycle_configuration()
        .bucket("buckets-loki")
        .send()
        .await
        .unwrap()
        .rules
        .unwrap();
    let ours = rules
        .iter()
        .find(|r| r.id() == Some("devops-stack-retention"))
        .unwrap();
    assert_eq!(ours.expiration().and_then(|e| e.days()), Some(60));
    assert!(rules.iter().any(|r| r.id() == Some("by-hand")), "{rules:?}");

    stack.destroy(&RunOptions::new()).await.expect("destroyed");
    assert!(!exists(&s3, "buckets-loki").await);
}

/// Adds a lifecycle rule `by-hand` next to the module's, and returns the module with a 60-day
/// retention.
async fn stack_with_rule_added_by_hand(
    aws: &AwsConfig,
    s3: &aws_sdk_s3::Client,
) -> (BuiltStack, Handle<Bucket>) {
    use aws_sdk_s3::types::{
        BucketLifecycleConfiguration, ExpirationStatus, LifecycleExpiration, LifecycleRule,
        LifecycleRuleFilter,
    };
    let mut rules = s3
        .get_bucket_lifecycle_configuration()
        .bucket("buckets-loki")
        .send()
        .await
        .unwrap()
        .rules
        .unwrap();
    rules.push(
        LifecycleRule::builder()
            .id("by-hand")
            .status(ExpirationStatus::Enabled)
            .filter(LifecycleRuleFilter::builder().prefix("tmp/").build())
            .expiration(LifecycleExpiration::builder().days(2).build())
            .build()
            .unwrap(),
    );
    s3.put_bucket_lifecycle_configuration()
        .bucket("buckets-loki")
        .lifecycle_configuration(
            BucketLifecycleConfiguration::builder()
                .set_rules(Some(rules))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    built(module(aws, "buckets-loki").retention_days(60))
}

#[tokio::test]
#[ignore = "needs moto (DEVOPS_STACK_TEST_AWS_ENDPOINT): scripts/test.sh starts it"]
async fn destroy_deletes_every_version_and_delete_marker_then_the_bucket() {
    let ep = common::endpoint();
    let _guard = common::LOCK.lock().await;
    common::reset(&ep);
    let aws = common::aws(&ep);
    let sdk = common::sdk(&ep).await;
    let s3 = common::s3(&sdk);
    let (stack, _) = built(module(&aws, "buckets-versions"));
    stack.apply(&RunOptions::new()).await.expect("applied");

    s3.put_bucket_versioning()
        .bucket("buckets-versions")
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    // More than one page of 1000: several versions of many keys, then delete markers.
    for i in 0..350 {
        for key in ["index/a", "chunks/b", "chunks/c"] {
            put(&s3, "buckets-versions", key, &format!("v{i}")).await;
        }
    }
    for key in ["index/a", "chunks/b"] {
        s3.delete_object()
            .bucket("buckets-versions")
            .key(key)
            .send()
            .await
            .unwrap();
    }
    assert_eq!(object_versions(&s3, "buckets-versions").await, 1052);

    let (options, mut rx) = with_events();
    stack.destroy(&options).await.expect("destroyed");
    assert!(!exists(&s3, "buckets-versions").await, "the bucket is gone");
    let messages = progress(&mut rx);
    assert!(
        messages
            .iter()
            .any(|m| m.contains("1052 object version(s) deleted")),
        "{messages:?}"
    );
    // Safe to run again.
    stack
        .destroy(&RunOptions::new())
        .await
        .expect("destroyed again");
}

#[tokio::test]
#[ignore = "needs moto (DEVOPS_STACK_TEST_AWS_ENDPOINT): scripts/test.sh starts it"]
async fn keep_leaves_the_bucket_and_its_data_and_says_so() {
    let ep = common::endpoint();
    let _guard = common::LOCK.lock().await;
    common::reset(&ep);
    let aws = common::aws(&ep);
    let sdk = common::sdk(&ep).await;
    let s3 = common::s3(&sdk);
    let (stack, _) = built(module(&aws, "buckets-kept").on_destroy(OnDestroy::Keep));
    stack.apply(&RunOptions::new()).await.expect("applied");
    put(&s3, "buckets-kept", "chunks/1", "data").await;

    let (options, mut rx) = with_events();
    stack.destroy(&options).await.expect("destroyed");
    assert!(exists(&s3, "buckets-kept").await);
    assert_eq!(object_versions(&s3, "buckets-kept").await, 1);
    let messages = progress(&mut rx);
    assert!(
        messages
            .iter()
            .any(|m| m.contains("keeping S3 bucket `buckets-kept` and its data")),
        "{messages:?}"
    );

    // The same module with the default deletes it.
    let (stack, handle) = built(module(&aws, "buckets-kept"));
    stack.destroy(&RunOptions::new()).await.expect("destroyed");
    assert!(!exists(&s3, "buckets-kept").await);
    // A missing bucket still reads as an output: the modules using it (Loki) are destroyed
    // too, not taken for gone with it.
    let read = stack.read(&RunOptions::new()).await.expect("read");
    assert_eq!(
        read.module("loki-bucket").unwrap().status,
        Status::Succeeded
    );
    assert_eq!(read.output(&handle).unwrap().name, "buckets-kept");
}

#[tokio::test]
#[ignore = "needs moto (DEVOPS_STACK_TEST_AWS_ENDPOINT): scripts/test.sh starts it"]
async fn a_bucket_the_module_did_not_create_is_refused_and_survives_destroy() {
    let ep = common::endpoint();
    let _guard = common::LOCK.lock().await;
    common::reset(&ep);
    let aws = common::aws(&ep);
    let sdk = common::sdk(&ep).await;
    let s3 = common::s3(&sdk);
    // Untagged, made by hand (or by an apply killed before tagging, on an endpoint that ignores
    // CreateBucket's tags).
    s3.create_bucket()
        .bucket("buckets-theirs")
        .send()
        .await
        .unwrap();
    put(&s3, "buckets-theirs", "precious", "data").await;

    let (stack, _) = built(module(&aws, "buckets-theirs"));
    let err = stack.apply(&RunOptions::new()).await.expect_err("not ours");
    let text = format!("{err}");
    assert!(
        text.contains("S3 bucket `buckets-theirs` exists and is not this module's (tags: none)"),
        "{text}"
    );
    assert!(text.contains(".adopt()"), "{text}");
    stack.destroy(&RunOptions::new()).await.expect("destroyed");
    assert!(exists(&s3, "buckets-theirs").await);
    assert_eq!(object_versions(&s3, "buckets-theirs").await, 1);
    let tags = s3
        .get_bucket_tagging()
        .bucket("buckets-theirs")
        .send()
        .await;
    assert!(
        tags.map(|t| t.tag_set.is_empty()).unwrap_or(true),
        "the bucket was not tagged"
    );

    // Another stack's bucket is refused too, even with `.adopt()`.
    let mut other = Stack::new("other-stack");
    other.add(module(&aws, "buckets-other"));
    let other = other.build().unwrap();
    other.apply(&RunOptions::new()).await.expect("applied");
    let (stack, _) = built(module(&aws, "buckets-other").adopt());
    let text = format!(
        "{:?}",
        stack.apply(&RunOptions::new()).await.expect_err("not ours")
    );
    assert!(text.contains("devops-stack.io/stack=other-stack"), "{text}");
    stack.destroy(&RunOptions::new()).await.expect("destroyed");
    assert!(exists(&s3, "buckets-other").await);

    // `.adopt()` takes the untagged one over, explicitly.
    let (stack, _) = built(module(&aws, "buckets-theirs").adopt());
    stack.apply(&RunOptions::new()).await.expect("adopted");
    assert_eq!(object_versions(&s3, "buckets-theirs").await, 1);
    let tags = s3
        .get_bucket_tagging()
        .bucket("buckets-theirs")
        .send()
        .await
        .unwrap()
        .tag_set;
    assert!(tags.iter().any(|t| t.key == STACK_TAG && t.value == STACK));
    stack.destroy(&RunOptions::new()).await.expect("destroyed");
    assert!(!exists(&s3, "buckets-theirs").await);
    other.destroy(&RunOptions::new()).await.expect("destroyed");
    assert!(!exists(&s3, "buckets-other").await);
}

/// An S3 error document.
fn s3_error(status: u16, code: &str) -> Canned {
    Canned::new(
        status,
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{code}</Message></Error>"
        ),
    )
}

fn tagging(stack: &str) -> Canned {
    Canned::new(
        200,
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Tagging><TagSet><Tag><Key>{STACK_TAG}</Key><Value>{stack}</Value></Tag><Tag><Key>{MODULE_TAG}</Key><Value>loki-bucket</Value></Tag><Tag><Key>{PART_TAG}</Key><Value>bucket</Value></Tag></TagSet></Tagging>"
        ),
    )
}

fn replayed(client: &ReplayClient) -> BuiltStack {
    let aws = common::aws("https://s3.replay.test")
        .region("eu-west-1")
        .http_client(client.clone());
    built(module(&aws, "replay-loki")).0
}

fn sent(client: &ReplayClient) -> Vec<(String, String, String)> {
    assert_eq!(client.unused(), 0, "canned responses left over");
    client
        .sent()
        .into_iter()
        .map(|r| {
            (
                r.method,
                r.uri,
                String::from_utf8_lossy(&r.body).into_owned(),
            )
        })
        .collect()
}

/// What moto cannot show: on AWS, `CreateBucket` itself carries the ownership tags (so no
/// bucket is ever created untagged) and the region's location constraint.
#[tokio::test]
async fn create_bucket_carries_the_tags_and_the_location_constraint() {
    let client = ReplayClient::new([
        Canned::new(404, ""),                                            // HeadBucket
        Canned::new(200, ""),                                            // CreateBucket
        Canned::new(200, ""),                                            // HeadBucket
        tagging(STACK), // GetBucketTagging: tagged by CreateBucket
        s3_error(404, "NoSuchPublicAccessBlockConfiguration"), // GetPublicAccessBlock
        Canned::new(200, ""), // PutPublicAccessBlock
        s3_error(404, "ServerSideEncryptionConfigurationNotFoundError"), // GetBucketEncryption
        Canned::new(200, ""), // PutBucketEncryption
        s3_error(404, "NoSuchLifecycleConfiguration"), // GetBucketLifecycleConfiguration
        Canned::new(200, ""), // PutBucketLifecycleConfiguration
    ]);
    replayed(&client)
        .apply(&RunOptions::new())
        .await
        .expect("applied");
    let sent = sent(&client);
    let (method, uri, body) = &sent[1];
    assert_eq!(
        (method.as_str(), uri.as_str()),
        ("PUT", "https://s3.replay.test/replay-loki/")
    );
    assert!(
        body.contains("<LocationConstraint>eu-west-1</LocationConstraint>"),
        "{body}"
    );
    for tag in [
        format!("<Key>{STACK_TAG}</Key><Value>{STACK}</Value>"),
        format!("<Key>{MODULE_TAG}</Key><Value>loki-bucket</Value>"),
    ] {
        assert!(body.contains(&tag), "{tag} in {body}");
    }
    // Already tagged: no PutBucketTagging.
    assert_eq!(
        sent.iter()
            .filter(|(m, u, _)| m == "PUT" && u.contains("tagging"))
            .count(),
        0
    );
    let (_, _, lifecycle) = &sent[9];
    assert!(lifecycle.contains("<Days>31</Days>"), "{lifecycle}");
    assert!(
        lifecycle.contains("<NoncurrentDays>1</NoncurrentDays>"),
        "{lifecycle}"
    );
    assert!(
        lifecycle.contains("<DaysAfterInitiation>1</DaysAfterInitiation>"),
        "{lifecycle}"
    );
}

/// A caller without `s3:TagResource` is refused tags on `CreateBucket`: the bucket is created
/// without, then tagged as soon as S3 shows it. A name another account holds is a clear error.
#[tokio::test]
async fn create_without_tag_permission_tags_after_and_a_taken_name_is_named() {
    let client = ReplayClient::new([
        Canned::new(404, ""),          // HeadBucket
        s3_error(403, "AccessDenied"), // CreateBucket with tags
        Canned::new(200, ""),          // CreateBucket without
        Canned::new(404, ""),          // HeadBucket: not visible yet
        Canned::new(200, ""),          // HeadBucket
        s3_error(404, "NoSuchTagSet"), // GetBucketTagging
        Canned::new(204, ""),          // PutBucketTagging
        Canned::new(
            200,
            "<PublicAccessBlockConfiguration><BlockPublicAcls>true</BlockPublicAcls><IgnorePublicAcls>true</IgnorePublicAcls><BlockPublicPolicy>true</BlockPublicPolicy><RestrictPublicBuckets>true</RestrictPublicBuckets></PublicAccessBlockConfiguration>",
        ),
        Canned::new(
            200,
            "<ServerSideEncryptionConfiguration><Rule><ApplyServerSideEncryptionByDefault><SSEAlgorithm>AES256</SSEAlgorithm></ApplyServerSideEncryptionByDefault></Rule></ServerSideEncryptionConfiguration>",
        ),
        Canned::new(
            200,
            "<LifecycleConfiguration><Rule><ID>devops-stack-retention</ID><Filter><Prefix></Prefix></Filter><Status>Enabled</Status><Expiration><Days>31</Days></Expiration><NoncurrentVersionExpiration><NoncurrentDays>1</NoncurrentDays></NoncurrentVersionExpiration><AbortIncompleteMultipartUpload><DaysAfterInitiation>1</DaysAfterInitiation></AbortIncompleteMultipartUpload></Rule></LifecycleConfiguration>",
        ),
    ]);
    replayed(&client)
        .apply(&RunOptions::new())
        .await
        .expect("applied");
    let sent = sent(&client);
    assert!(sent[1].2.contains("<Tags>"), "{}", sent[1].2);
    assert!(!sent[2].2.contains("<Tags>"), "{}", sent[2].2);
    let (method, uri, body) = &sent[6];
    assert_eq!(method, "PUT");
    assert!(uri.ends_with("?tagging"), "{uri}");
    assert!(
        body.contains(&format!("<Key>{STACK_TAG}</Key><Value>{STACK}</Value>")),
        "{body}"
    );

    let client = ReplayClient::new([
        Canned::new(404, ""),                 // HeadBucket
        s3_error(409, "BucketAlreadyExists"), // CreateBucket
    ]);
    let text = replayed(&client)
        .apply(&RunOptions::new())
        .await
        .expect_err("taken")
        .to_string();
    assert!(
        text.contains("the S3 bucket name `replay-loki` is taken by another AWS account"),
        "{text}"
    );
    assert!(text.contains("choose another bucket name"), "{text}");
}
