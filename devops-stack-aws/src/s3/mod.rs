//! The [`S3Bucket`] module: a bucket a component keeps its data in (Loki's chunks and index).
//!
//! | Input | Default |
//! |---|---|
//! | id, bucket name (`new`) | required |
//! | [`S3Bucket::retention_days`] | 31 |
//! | [`S3Bucket::on_destroy`] | [`OnDestroy::Delete`] |
//! | [`S3Bucket::kms_key`] | none: SSE-S3 (`AES256`) |
//! | [`S3Bucket::adopt`] | off: a bucket of the name without this module's tags is refused |
//! | [`S3Bucket::aws`], [`S3Bucket::region`], [`S3Bucket::endpoint_url`] | the SDK's chain |
//!
//! Output: [`Bucket`], which implements
//! [`ObjectStoreProvider`]: `handle.object_store()` gives a component the bucket's
//! [`ObjectStore`] (name, region, endpoint override, and the policy a workload needs), and the
//! handle makes the component run after the bucket exists.
//!
//! **Apply** creates the bucket (in the configured region) carrying the stack's and the module's
//! tags, blocks all public access, sets default encryption, and sets one lifecycle rule
//! (`devops-stack-retention`): current objects expire after the retention, noncurrent versions
//! and incomplete multipart uploads after one day. Versioning is left as it is (off for a new
//! bucket). A second apply reads each setting and changes only what differs; lifecycle rules of
//! other ids are kept.
//!
//! **Ownership.** A bucket of the name that exists without this module's tags (made by hand, or
//! by another stack or module) is never changed, emptied or deleted ([`Error::NotOwned`]), unless
//! [`S3Bucket::adopt`] says so for an untagged one. The tags are sent with `CreateBucket` itself,
//! so on AWS a bucket is never created untagged; endpoints that ignore tags on `CreateBucket`
//! (moto, some S3-compatible stores) get them from `PutBucketTagging` right after. On those, an
//! apply killed between the two calls leaves an empty untagged bucket that cannot be told apart
//! from one a person made: the next apply refuses it and says how to go on (`.adopt()`, or delete
//! the empty bucket), rather than guess.
//!
//! **Destroy**, unless [`OnDestroy::Keep`], and only for a bucket with this module's tags:
//! deletes every object version and delete marker (in batches of at most 1000), aborts unfinished
//! multipart uploads, then deletes the bucket. A missing bucket is success; a destroy can be run
//! again. The read before a destroy gives the output whether the bucket exists or not, so that
//! the modules using it (Loki) are destroyed even when the bucket was deleted by hand.
//!
//! ```
//! use devops_stack_aws::s3::{OnDestroy, S3Bucket};
//! use devops_stack_core::Stack;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let mut stack = Stack::new("prod");
//! let bucket = stack.add(
//!     S3Bucket::new("loki-bucket", "prod-example-loki")
//!         .region("eu-west-1")
//!         .retention_days(14)
//!         .on_destroy(OnDestroy::Keep),
//! );
//! let _store = bucket.object_store(); // an Input<ObjectStore> for Loki
//!
//! // Planning is offline: no AWS call is made.
//! let plan = stack.build()?.plan().await?;
//! let text = plan.to_text();
//! assert!(text.contains("aws s3:Bucket prod-example-loki"));
//! # Ok::<_, devops_stack_core::Error>(())
//! # }).unwrap();
//! ```

mod apply;

use std::net::Ipv4Addr;

use devops_stack_core::interfaces::{
    ObjectStore, ObjectStoreKind, ObjectStoreProvider, PolicyDocument, Statement,
};
use devops_stack_core::plan::unknown;
use devops_stack_core::{Context, Module, ModuleResult, Planned, Resource, Validation};
use serde::Serialize;
use serde_json::json;

use crate::config::AwsConfig;
#[cfg(doc)]
use crate::error::Error;

/// The default retention, in days.
pub const DEFAULT_RETENTION_DAYS: u32 = 31;

/// The id of the lifecycle rule the module manages.
pub const LIFECYCLE_RULE_ID: &str = "devops-stack-retention";

/// The S3 bucket `bucket` in `region` as an [`ObjectStore`], with the access a workload needs
/// to keep data in it, and nothing more: list the bucket, read, write and delete its objects
/// (ARNs of the region's partition: China and GovCloud have their own). For a bucket the stack
/// does not make; the output of [`S3Bucket`] gives its own store, endpoint and KMS key included.
///
/// ```
/// use devops_stack_core::interfaces::ObjectStoreKind;
/// let store = devops_stack_aws::s3::object_store("prod-loki", "eu-west-1");
/// assert_eq!(store.kind, ObjectStoreKind::S3);
/// assert_eq!(store.access.statements[1].resources, ["arn:aws:s3:::prod-loki/*"]);
/// assert!(store.access.unscoped_statements().is_empty());
/// let china = devops_stack_aws::s3::object_store("logs", "cn-north-1");
/// assert_eq!(china.access.statements[0].resources, ["arn:aws-cn:s3:::logs"]);
/// ```
pub fn object_store(bucket: &str, region: &str) -> ObjectStore {
    let arn = bucket_arn(bucket, region);
    let access = PolicyDocument::new()
        .statement(Statement::allow(
            ["s3:ListBucket", "s3:GetBucketLocation"],
            [arn.clone()],
        ))
        .statement(Statement::allow(
            ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
            [format!("{arn}/*")],
        ));
    ObjectStore::new(ObjectStoreKind::S3, bucket, region, access)
}

/// The ARN of bucket `bucket` of `region`'s partition.
fn bucket_arn(bucket: &str, region: &str) -> String {
    format!("arn:{}:s3:::{bucket}", crate::iam::partition(region))
}

/// What destroy does with the bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OnDestroy {
    /// Delete every object version, then the bucket (the default).
    #[default]
    Delete,
    /// Leave the bucket and its data; destroy says so and deletes nothing.
    Keep,
}

/// An S3 bucket created and owned by the stack.
///
/// ```
/// use devops_stack_aws::s3::{OnDestroy, S3Bucket};
/// let bucket = S3Bucket::new("loki-bucket", "prod-example-loki")
///     .region("eu-west-1")
///     .retention_days(90)
///     .on_destroy(OnDestroy::Keep);
/// # let _ = bucket;
/// ```
#[derive(Debug, Clone)]
pub struct S3Bucket {
    id: String,
    name: String,
    retention_days: u32,
    on_destroy: OnDestroy,
    kms_key: Option<String>,
    adopt: bool,
    aws: AwsConfig,
}

/// The bucket: what the [`S3Bucket`] module outputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bucket {
    /// The bucket's name.
    pub name: String,
    /// Its region.
    pub region: String,
    /// Its ARN.
    pub arn: String,
    /// The endpoint override the module used, if any (an emulator or S3-compatible store), so
    /// that a workload talks to the same endpoint.
    pub endpoint: Option<String>,
    /// How long objects are kept, in days.
    pub retention_days: u32,
    /// What destroy does with it.
    pub on_destroy: OnDestroy,
    /// The ARN of the KMS key of its default encryption, if not SSE-S3.
    pub kms_key: Option<String>,
}

impl ObjectStoreProvider for Bucket {
    /// The store; with a KMS key, its access also allows the key's use for the bucket's
    /// objects (S3 calls KMS on the workload's behalf).
    fn object_store(&self) -> ObjectStore {
        let mut store = object_store(&self.name, &self.region);
        if let Some(url) = &self.endpoint {
            store = store.endpoint(url);
        }
        if let Some(key) = &self.kms_key {
            store.access = store.access.statement(Statement::allow(
                ["kms:GenerateDataKey", "kms:Decrypt"],
                [key.clone()],
            ));
        }
        store
    }
}

crate::config::aws_setters!(S3Bucket);

impl S3Bucket {
    /// The bucket `name` (global across all AWS accounts), managed by module `id`.
    pub fn new(id: impl Into<String>, name: impl Into<String>) -> Self {
        S3Bucket {
            id: id.into(),
            name: name.into(),
            retention_days: DEFAULT_RETENTION_DAYS,
            on_destroy: OnDestroy::Delete,
            kms_key: None,
            adopt: false,
            aws: AwsConfig::new(),
        }
    }

    /// How many days objects are kept (default [`DEFAULT_RETENTION_DAYS`]); at least 1.
    #[must_use]
    pub fn retention_days(mut self, days: u32) -> Self {
        self.retention_days = days;
        self
    }

    /// What destroy does with the bucket (default [`OnDestroy::Delete`]).
    #[must_use]
    pub fn on_destroy(mut self, on_destroy: OnDestroy) -> Self {
        self.on_destroy = on_destroy;
        self
    }

    /// Default encryption with the KMS key of this ARN
    /// (`arn:aws:kms:<region>:<account>:key/<id>`) instead of SSE-S3; the object store's access
    /// policy then allows workloads to use that key.
    #[must_use]
    pub fn kms_key(mut self, key: impl Into<String>) -> Self {
        self.kms_key = Some(key.into());
        self
    }

    /// Take over an existing bucket of the name that carries no devops-stack tags: it is tagged
    /// as this module's, configured, and from then on deleted by destroy unless
    /// [`OnDestroy::Keep`]. A bucket tagged for another stack or module is still refused.
    #[must_use]
    pub fn adopt(mut self) -> Self {
        self.adopt = true;
        self
    }

    fn encryption(&self) -> String {
        match &self.kms_key {
            Some(key) => format!("aws:kms ({key})"),
            None => "AES256 (SSE-S3)".into(),
        }
    }

    fn output(&self, region: String, endpoint: Option<String>) -> Bucket {
        Bucket {
            arn: bucket_arn(&self.name, &region),
            name: self.name.clone(),
            region,
            endpoint,
            retention_days: self.retention_days,
            on_destroy: self.on_destroy,
            kms_key: self.kms_key.clone(),
        }
    }
}

/// Checks `name` against S3's naming rules for general purpose buckets.
///
/// ```
/// use devops_stack_aws::s3::check_bucket_name;
/// assert!(check_bucket_name("prod-example-loki").is_ok());
/// assert!(check_bucket_name("Prod_Loki").is_err());
/// assert!(check_bucket_name("192.168.5.4").is_err());
/// ```
///
/// # Errors
/// What is wrong with the name, as a sentence.
pub fn check_bucket_name(name: &str) -> Result<(), String> {
    if !(3..=63).contains(&name.len()) {
        return Err(format!(
            "`{name}` has {} characters; S3 bucket names have 3 to 63",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '.' || *c == '-'))
    {
        return Err(format!(
            "`{name}` contains `{c}`; S3 bucket names use only lowercase letters, digits, `.` and `-`"
        ));
    }
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !alnum(name.chars().next()) || !alnum(name.chars().last()) {
        return Err(format!(
            "`{name}` must start and end with a lowercase letter or a digit"
        ));
    }
    if name.contains("..") {
        return Err(format!("`{name}` contains `..`"));
    }
    if name.parse::<Ipv4Addr>().is_ok() {
        return Err(format!(
            "`{name}` is formatted as an IP address, which S3 refuses"
        ));
    }
    if let Some(prefix) = ["xn--", "sthree-", "amzn-s3-demo-"]
        .into_iter()
        .find(|p| name.starts_with(p))
    {
        return Err(format!(
            "`{name}` starts with `{prefix}`, a prefix S3 reserves"
        ));
    }
    if let Some(suffix) = ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"]
        .into_iter()
        .find(|s| name.ends_with(s))
    {
        return Err(format!(
            "`{name}` ends with `{suffix}`, a suffix S3 reserves"
        ));
    }
    Ok(())
}

impl Module for S3Bucket {
    type Output = Bucket;

    fn id(&self) -> &str {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "s3-bucket"
    }

    fn validate(&self, v: &mut Validation) {
        v.check(
            "bucket_name",
            check_bucket_name(&self.name),
            "use 3-63 lowercase letters, digits, `-` or `.`, starting and ending with a letter or digit, like `prod-example-loki` (names are global: include the stack and your domain)",
        );
        if self.retention_days == 0 {
            v.error(
                "retention_days",
                "a retention of zero would delete every object at once (S3 lifecycle rules count whole days, from 1)",
                "set `.retention_days(n)` with n ≥ 1, like 31; to keep data forever, manage the bucket outside the stack",
            );
        } else if i32::try_from(self.retention_days).is_err() {
            v.error(
                "retention_days",
                format!("{} days is more than S3 accepts", self.retention_days),
                "use a number of days below 2147483648",
            );
        }
        if let Some(key) = &self.kms_key
            && !(key.starts_with("arn:") && key.contains(":kms:") && key.contains(":key/"))
        {
            v.error(
                "kms_key",
                format!("`{key}` is not a KMS key ARN"),
                "give the key's ARN, like `arn:aws:kms:eu-west-1:123456789012:key/<id>` (workloads' roles are allowed that key), or leave it unset for SSE-S3",
            );
        }
    }

    async fn plan(&self, ctx: &Context) -> ModuleResult<Planned<Bucket>> {
        let region = self
            .aws
            .region_name()
            .map_or_else(|| unknown(ctx.module_id(), "region"), ToOwned::to_owned);
        let resource = Resource::cloud(
            "aws",
            "s3:Bucket",
            &self.name,
            json!({
                "region": region,
                "encryption": self.encryption(),
                "public_access_blocked": true,
                "versioning": "unchanged (off when created)",
                "lifecycle": {
                    "rule": LIFECYCLE_RULE_ID,
                    "expire_current_after_days": self.retention_days,
                    "expire_noncurrent_after_days": 1,
                    "abort_incomplete_multipart_after_days": 1,
                },
                "on_destroy": self.on_destroy,
                "adopt": self.adopt,
                "aws": self.aws.plan_properties(),
            }),
        );
        let output = self.output(region, self.aws.endpoint().map(ToOwned::to_owned));
        Ok(Planned::new(output).with_resources([resource]))
    }

    async fn apply(&self, ctx: &Context) -> ModuleResult<Bucket> {
        Ok(apply::apply(self, ctx).await?)
    }

    async fn read(&self, ctx: &Context) -> ModuleResult<Option<Bucket>> {
        Ok(apply::read(self, ctx).await?)
    }

    async fn destroy(&self, ctx: &Context) -> ModuleResult<()> {
        Ok(apply::destroy(self, ctx).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_follow_s3_rules() {
        for good in ["abc", "prod-example-loki", "a.b-c.1", &"a".repeat(63)] {
            assert!(check_bucket_name(good).is_ok(), "{good}");
        }
        for (bad, needle) in [
            ("ab", "3 to 63"),
            (&*"a".repeat(64), "3 to 63"),
            ("Prod", "`P`"),
            ("a_b", "`_`"),
            ("-abc", "start and end"),
            ("abc.", "start and end"),
            ("a..b", "`..`"),
            ("10.0.0.1", "IP address"),
            ("xn--abc", "`xn--`"),
            ("sthree-abc", "`sthree-`"),
            ("amzn-s3-demo-x", "`amzn-s3-demo-`"),
            ("abc-s3alias", "`-s3alias`"),
            ("abc--ol-s3", "`--ol-s3`"),
            ("abc.mrap", "`.mrap`"),
            ("abc--x-s3", "`--x-s3`"),
        ] {
            let e = check_bucket_name(bad).unwrap_err();
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }

    #[test]
    fn the_store_carries_the_endpoint_override() {
        let b = S3Bucket::new("b", "prod-loki");
        let store = b
            .output("eu-west-1".into(), Some("http://127.0.0.1:5000".into()))
            .object_store();
        assert_eq!(store.bucket, "prod-loki");
        assert_eq!(store.endpoint.as_deref(), Some("http://127.0.0.1:5000"));
        let store = b.output("cn-north-1".into(), None);
        assert_eq!(store.arn, "arn:aws-cn:s3:::prod-loki");
        assert!(store.object_store().endpoint.is_none());
        assert_eq!(store.object_store().access.statements.len(), 2);
    }

    #[test]
    fn a_kms_key_is_an_arn_and_its_use_is_in_the_access_policy() {
        let arn = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd";
        let b = S3Bucket::new("b", "prod-loki").kms_key(arn);
        let mut v = Validation::new("b");
        b.validate(&mut v);
        assert!(v.errors().is_empty(), "{:?}", v.errors());
        let access = b.output("eu-west-1".into(), None).object_store().access;
        let kms = access.statements.last().unwrap();
        assert_eq!(kms.resources, [arn]);
        assert!(kms.actions.contains(&"kms:GenerateDataKey".to_owned()));
        assert!(access.unscoped_statements().is_empty());
        let mut v = Validation::new("b");
        S3Bucket::new("b", "prod-loki")
            .kms_key("alias/loki")
            .validate(&mut v);
        assert_eq!(v.errors()[0].field, "kms_key");
    }
}
