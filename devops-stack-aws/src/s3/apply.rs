//! The S3 calls of the [`S3Bucket`] module: apply, read and destroy.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, BucketLocationConstraint,
    CreateBucketConfiguration, Delete, ExpirationStatus, LifecycleExpiration, LifecycleRule,
    LifecycleRuleFilter, NoncurrentVersionExpiration, ObjectIdentifier,
    PublicAccessBlockConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule, Tag, Tagging,
};
use devops_stack_core::Context;

use super::{Bucket, LIFECYCLE_RULE_ID, OnDestroy, S3Bucket};
use crate::config::region_of;
use crate::error::{Error, Result};
use crate::tags::{PART_TAG, owned_by, ownership};
use crate::wait::{Backoff, Polling};

/// The part tag of the bucket.
const PART: &str = "bucket";

/// How long a bucket just created may take to show up (S3's bucket listing is eventually
/// consistent).
const SHOW_UP: Polling = Polling {
    initial_interval: Duration::from_secs(1),
    max_interval: Duration::from_secs(8),
    timeout: Duration::from_secs(60),
};

struct Api<'a> {
    client: Client,
    bucket: &'a S3Bucket,
    region: String,
    endpoint: Option<String>,
    stack: String,
    module: String,
    what: String,
}

async fn api<'a>(bucket: &'a S3Bucket, ctx: &Context) -> Result<Api<'a>> {
    let sdk = bucket.aws.load().await?;
    let client = bucket.aws.s3_addressed(&sdk);
    Ok(Api {
        client,
        bucket,
        region: region_of(&sdk),
        endpoint: sdk.endpoint_url().map(ToOwned::to_owned),
        stack: ctx.stack_name().to_owned(),
        module: ctx.module_id().to_owned(),
        what: format!("S3 bucket `{}`", bucket.name),
    })
}

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder()
        .key(key)
        .value(value)
        .build()
        .expect("key and value set")
}

/// The devops-stack tags among `tags`, as `k=v, ...`, or `none`.
fn owner_text(tags: &BTreeMap<String, String>) -> String {
    crate::tags::owner_text(tags.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// Whether an S3 error has one of `codes`.
fn code_is<E: ProvideErrorMetadata>(err: &E, codes: &[&str]) -> bool {
    err.code().is_some_and(|c| codes.contains(&c))
}

impl Api<'_> {
    fn ours(&self, tags: &BTreeMap<String, String>) -> bool {
        owned_by(
            tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            &self.stack,
            &self.module,
        )
    }

    fn wanted_tags(&self) -> BTreeMap<String, String> {
        let mut tags = ownership(&self.stack, &self.module);
        tags.insert(PART_TAG.into(), PART.into());
        tags
    }

    /// The bucket's tags, or `None` when it does not exist.
    ///
    /// # Errors
    /// [`Error::BucketTaken`] when the name belongs to another account (or cannot be read).
    async fn tags(&self) -> Result<Option<BTreeMap<String, String>>> {
        match self
            .client
            .head_bucket()
            .bucket(&self.bucket.name)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) => {
                let status = e.raw_response().map(|r| r.status().as_u16());
                if e.as_service_error().is_some_and(|s| s.is_not_found()) || status == Some(404) {
                    return Ok(None);
                }
                if status == Some(301) {
                    let region = e
                        .raw_response()
                        .and_then(|r| r.headers().get("x-amz-bucket-region"))
                        .unwrap_or("another region")
                        .to_owned();
                    return Err(Error::Config {
                        problem: format!(
                            "{} exists in {region}, not in {}",
                            self.what, self.region
                        ),
                        fix: format!(
                            "set the module's region to {region}, or choose another bucket name"
                        ),
                    });
                }
                if status == Some(403) {
                    return Err(Error::BucketTaken {
                        bucket: self.bucket.name.clone(),
                    });
                }
                return Err(Error::aws("looking up the bucket", &self.what, e));
            }
        }
        match self
            .client
            .get_bucket_tagging()
            .bucket(&self.bucket.name)
            .send()
            .await
        {
            Ok(out) => Ok(Some(
                out.tag_set.into_iter().map(|t| (t.key, t.value)).collect(),
            )),
            Err(e) if code_is(&e, &["NoSuchTagSet", "NoSuchTagSetError"]) => {
                Ok(Some(BTreeMap::new()))
            }
            Err(e) if code_is(&e, &["NoSuchBucket"]) => Ok(None),
            Err(e) => Err(Error::aws("reading the bucket's tags", &self.what, e)),
        }
    }

    fn not_owned(&self, tags: &BTreeMap<String, String>) -> Error {
        let untagged = owner_text(tags) == "none";
        Error::NotOwned {
            resource: self.what.clone(),
            owner: owner_text(tags),
            fix: if untagged {
                format!(
                    "give the module another bucket name, or call `.adopt()` on it to take `{}` over (it is then emptied and deleted by destroy unless `.on_destroy(OnDestroy::Keep)`); if an interrupted apply of this module created it (it is then empty), `.adopt()` or deleting it both let the apply go on",
                    self.bucket.name
                )
            } else {
                "give the module another bucket name; a bucket of another stack or module is never taken over".into()
            },
        }
    }

    /// Creates the bucket with the ownership tags. A bucket of this account that exists already
    /// (`BucketAlreadyOwnedByYou`; `us-east-1` even answers success) is not an error here: the
    /// caller checks its tags next.
    async fn create(&self, ctx: &Context) -> Result<()> {
        ctx.progress(format!("creating {} in {}", self.what, self.region));
        let tags: Vec<Tag> = self.wanted_tags().iter().map(|(k, v)| tag(k, v)).collect();
        let config = |with_tags: bool| {
            let mut config = CreateBucketConfiguration::builder();
            if self.region != "us-east-1" {
                config = config
                    .location_constraint(BucketLocationConstraint::from(self.region.as_str()));
            }
            if with_tags {
                config = config.set_tags(Some(tags.clone()));
            }
            config.build()
        };
        let create = |with_tags: bool| {
            self.client
                .create_bucket()
                .bucket(&self.bucket.name)
                .create_bucket_configuration(config(with_tags))
                .send()
        };
        let result = match create(true).await {
            // Tags on CreateBucket need s3:TagResource; a caller without it still creates the
            // bucket, tagged right after.
            Err(e) if code_is(&e, &["AccessDenied"]) => {
                ctx.progress("CreateBucket with tags was denied (no s3:TagResource): creating the bucket, then tagging it");
                create(false).await
            }
            other => other,
        };
        match result {
            Ok(_) => {}
            Err(e) if code_is(&e, &["BucketAlreadyExists"]) => {
                return Err(Error::BucketTaken {
                    bucket: self.bucket.name.clone(),
                });
            }
            Err(e) if code_is(&e, &["BucketAlreadyOwnedByYou"]) => {}
            Err(e) => return Err(Error::aws("creating the bucket", &self.what, e)),
        }
        Ok(())
    }

    async fn put_tags(&self, tags: &BTreeMap<String, String>) -> Result<()> {
        let tagging = Tagging::builder()
            .set_tag_set(Some(tags.iter().map(|(k, v)| tag(k, v)).collect()))
            .build()
            .expect("tag set given");
        self.client
            .put_bucket_tagging()
            .bucket(&self.bucket.name)
            .tagging(tagging)
            .send()
            .await
            .map_err(|e| Error::aws("tagging the bucket", &self.what, e))?;
        Ok(())
    }

    async fn ensure_public_access_blocked(&self, ctx: &Context) -> Result<()> {
        let live = match self
            .client
            .get_public_access_block()
            .bucket(&self.bucket.name)
            .send()
            .await
        {
            Ok(out) => out.public_access_block_configuration,
            Err(e) if code_is(&e, &["NoSuchPublicAccessBlockConfiguration"]) => None,
            Err(e) => return Err(Error::aws("reading the public access block", &self.what, e)),
        };
        let blocked = live.is_some_and(|c| {
            c.block_public_acls() == Some(true)
                && c.ignore_public_acls() == Some(true)
                && c.block_public_policy() == Some(true)
                && c.restrict_public_buckets() == Some(true)
        });
        if blocked {
            return Ok(());
        }
        ctx.progress(format!("blocking all public access to {}", self.what));
        self.client
            .put_public_access_block()
            .bucket(&self.bucket.name)
            .public_access_block_configuration(
                PublicAccessBlockConfiguration::builder()
                    .block_public_acls(true)
                    .ignore_public_acls(true)
                    .block_public_policy(true)
                    .restrict_public_buckets(true)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| Error::aws("blocking public access", &self.what, e))?;
        Ok(())
    }

    async fn ensure_encryption(&self, ctx: &Context) -> Result<()> {
        let (algorithm, key) = match &self.bucket.kms_key {
            Some(key) => (ServerSideEncryption::AwsKms, Some(key.as_str())),
            None => (ServerSideEncryption::Aes256, None),
        };
        let live = match self
            .client
            .get_bucket_encryption()
            .bucket(&self.bucket.name)
            .send()
            .await
        {
            Ok(out) => out
                .server_side_encryption_configuration
                .map(|c| c.rules)
                .unwrap_or_default(),
            Err(e) if code_is(&e, &["ServerSideEncryptionConfigurationNotFoundError"]) => {
                Vec::new()
            }
            Err(e) => return Err(Error::aws("reading the default encryption", &self.what, e)),
        };
        let matches = live.iter().any(|r| {
            r.apply_server_side_encryption_by_default()
                .is_some_and(|d| d.sse_algorithm() == &algorithm && d.kms_master_key_id() == key)
        });
        if matches {
            return Ok(());
        }
        ctx.progress(format!(
            "setting default encryption of {} to {}",
            self.what,
            self.bucket.encryption()
        ));
        let default = ServerSideEncryptionByDefault::builder()
            .sse_algorithm(algorithm)
            .set_kms_master_key_id(key.map(ToOwned::to_owned))
            .build()
            .expect("algorithm set");
        let config = ServerSideEncryptionConfiguration::builder()
            .rules(
                ServerSideEncryptionRule::builder()
                    .apply_server_side_encryption_by_default(default)
                    .bucket_key_enabled(key.is_some())
                    .build(),
            )
            .build()
            .expect("rule set");
        self.client
            .put_bucket_encryption()
            .bucket(&self.bucket.name)
            .server_side_encryption_configuration(config)
            .send()
            .await
            .map_err(|e| Error::aws("setting the default encryption", &self.what, e))?;
        Ok(())
    }

    fn retention_rule(&self) -> LifecycleRule {
        let days = i32::try_from(self.bucket.retention_days).unwrap_or(i32::MAX);
        LifecycleRule::builder()
            .id(LIFECYCLE_RULE_ID)
            .status(ExpirationStatus::Enabled)
            .filter(LifecycleRuleFilter::builder().prefix("").build())
            .expiration(LifecycleExpiration::builder().days(days).build())
            .noncurrent_version_expiration(
                NoncurrentVersionExpiration::builder()
                    .noncurrent_days(1)
                    .build(),
            )
            .abort_incomplete_multipart_upload(
                AbortIncompleteMultipartUpload::builder()
                    .days_after_initiation(1)
                    .build(),
            )
            .build()
            .expect("status set")
    }

    async fn ensure_lifecycle(&self, ctx: &Context) -> Result<()> {
        let live = match self
            .client
            .get_bucket_lifecycle_configuration()
            .bucket(&self.bucket.name)
            .send()
            .await
        {
            Ok(out) => out.rules.unwrap_or_default(),
            Err(e) if code_is(&e, &["NoSuchLifecycleConfiguration"]) => Vec::new(),
            Err(e) => return Err(Error::aws("reading the lifecycle rules", &self.what, e)),
        };
        let wanted = self.retention_rule();
        let same = |r: &LifecycleRule| {
            r.status() == wanted.status()
                && r.expiration().and_then(LifecycleExpiration::days)
                    == wanted.expiration().and_then(LifecycleExpiration::days)
                && r.noncurrent_version_expiration()
                    .and_then(NoncurrentVersionExpiration::noncurrent_days)
                    == Some(1)
                && r.abort_incomplete_multipart_upload()
                    .and_then(AbortIncompleteMultipartUpload::days_after_initiation)
                    == Some(1)
                && r.filter()
                    .is_none_or(|f| f.prefix().unwrap_or_default().is_empty() && f.tag().is_none())
        };
        if live
            .iter()
            .any(|r| r.id() == Some(LIFECYCLE_RULE_ID) && same(r))
        {
            return Ok(());
        }
        ctx.progress(format!(
            "setting the lifecycle of {}: objects expire after {} days",
            self.what, self.bucket.retention_days
        ));
        // Rules of other ids (added by hand) are kept.
        let mut rules: Vec<LifecycleRule> = live
            .into_iter()
            .filter(|r| r.id() != Some(LIFECYCLE_RULE_ID))
            .collect();
        rules.push(wanted);
        self.client
            .put_bucket_lifecycle_configuration()
            .bucket(&self.bucket.name)
            .lifecycle_configuration(
                BucketLifecycleConfiguration::builder()
                    .set_rules(Some(rules))
                    .build()
                    .expect("rules set"),
            )
            .send()
            .await
            .map_err(|e| Error::aws("setting the lifecycle rules", &self.what, e))?;
        Ok(())
    }

    /// Deletes every object version and delete marker, and aborts unfinished multipart uploads.
    ///
    /// Each round lists the first page (at most 1000 versions and delete markers) and deletes
    /// it in one `DeleteObjects` call, until the bucket lists nothing: no pagination marker
    /// points at a version already deleted.
    async fn empty(&self, ctx: &Context) -> Result<usize> {
        let mut deleted = 0;
        let mut previous_first: Option<(String, Option<String>)> = None;
        loop {
            let page = self
                .client
                .list_object_versions()
                .bucket(&self.bucket.name)
                .max_keys(1000)
                .send()
                .await
                .map_err(|e| Error::aws("listing object versions", &self.what, e))?;
            let ids: Vec<ObjectIdentifier> = page
                .versions()
                .iter()
                .map(|v| (v.key(), v.version_id()))
                .chain(
                    page.delete_markers()
                        .iter()
                        .map(|m| (m.key(), m.version_id())),
                )
                .filter_map(|(key, version)| {
                    ObjectIdentifier::builder()
                        .set_key(key.map(ToOwned::to_owned))
                        .set_version_id(version.map(ToOwned::to_owned))
                        .build()
                        .ok()
                })
                .take(1000)
                .collect();
            let Some(first) = ids.first() else {
                break;
            };
            let first = (
                first.key().to_owned(),
                first.version_id().map(ToOwned::to_owned),
            );
            if previous_first.as_ref() == Some(&first) {
                return Err(Error::Failed {
                    resource: self.what.clone(),
                    status: "not emptied".into(),
                    detail: format!(
                        "`{}` is still listed after it was deleted; destroy again",
                        first.0
                    ),
                });
            }
            previous_first = Some(first);
            let out = self
                .client
                .delete_objects()
                .bucket(&self.bucket.name)
                .delete(
                    Delete::builder()
                        .set_objects(Some(ids.clone()))
                        .quiet(true)
                        .build()
                        .expect("objects set"),
                )
                .send()
                .await
                .map_err(|e| Error::aws("deleting objects", &self.what, e))?;
            if let Some(first) = out.errors().first() {
                return Err(Error::Failed {
                    resource: self.what.clone(),
                    status: "not emptied".into(),
                    detail: format!(
                        "{} object version(s) could not be deleted; first: `{}` ({}: {})",
                        out.errors().len(),
                        first.key().unwrap_or_default(),
                        first.code().unwrap_or("unknown"),
                        first.message().unwrap_or_default()
                    ),
                });
            }
            deleted += ids.len();
            ctx.progress(format!(
                "{}: {deleted} object version(s) deleted",
                self.what
            ));
        }
        let uploads = self
            .client
            .list_multipart_uploads()
            .bucket(&self.bucket.name)
            .send()
            .await
            .map_err(|e| Error::aws("listing multipart uploads", &self.what, e))?;
        for upload in uploads.uploads() {
            let (Some(key), Some(id)) = (upload.key(), upload.upload_id()) else {
                continue;
            };
            crate::error::deleted(
                self.client
                    .abort_multipart_upload()
                    .bucket(&self.bucket.name)
                    .key(key)
                    .upload_id(id)
                    .send()
                    .await,
                "aborting a multipart upload",
                &self.what,
            )?;
        }
        Ok(deleted)
    }

    fn output(&self) -> Bucket {
        self.bucket
            .output(self.region.clone(), self.endpoint.clone())
    }
}

pub(super) async fn apply(bucket: &S3Bucket, ctx: &Context) -> Result<Bucket> {
    let api = api(bucket, ctx).await?;
    let wanted = api.wanted_tags();
    match api.tags().await? {
        None => {
            api.create(ctx).await?;
            // Tagged right away: an endpoint that ignored the tags of CreateBucket gets them
            // here. An untagged bucket at this point is the one just created (a bucket made by
            // someone else of this account in the same instant could not be told apart).
            // S3 may take a moment to show a new bucket: wait for it, briefly.
            let mut backoff = Backoff::new(ctx, &SHOW_UP, &api.what, "visible");
            let tags = loop {
                match api.tags().await? {
                    Some(tags) => break tags,
                    None => backoff.pause("not visible yet").await?,
                }
            };
            if owner_text(&tags) == "none" {
                let mut tags = tags;
                tags.extend(wanted.clone());
                api.put_tags(&tags).await?;
            } else if !api.ours(&tags) {
                return Err(api.not_owned(&tags));
            }
        }
        Some(tags) if api.ours(&tags) => {
            if wanted.iter().any(|(k, v)| tags.get(k) != Some(v)) {
                let mut merged = tags;
                merged.extend(wanted);
                api.put_tags(&merged).await?;
            }
        }
        Some(tags) if bucket.adopt && owner_text(&tags) == "none" => {
            ctx.progress(format!(
                "adopting {} (tagging it as this module's)",
                api.what
            ));
            let mut merged = tags;
            merged.extend(wanted);
            api.put_tags(&merged).await?;
        }
        Some(tags) => return Err(api.not_owned(&tags)),
    }
    api.ensure_public_access_blocked(ctx).await?;
    api.ensure_encryption(ctx).await?;
    api.ensure_lifecycle(ctx).await?;
    Ok(api.output())
}

/// The output, whether the bucket exists or not: it follows from the configuration, and `None`
/// would mark the modules that use the bucket as gone, so that a Loki whose bucket was deleted
/// by hand would keep its Application and role on destroy. Nothing is called but the
/// configuration's loading (no S3 call).
pub(super) async fn read(bucket: &S3Bucket, _ctx: &Context) -> Result<Option<Bucket>> {
    let sdk = bucket.aws.load().await?;
    Ok(Some(bucket.output(
        region_of(&sdk),
        sdk.endpoint_url().map(ToOwned::to_owned),
    )))
}

pub(super) async fn destroy(bucket: &S3Bucket, ctx: &Context) -> Result<()> {
    let what = format!("S3 bucket `{}`", bucket.name);
    if bucket.on_destroy == OnDestroy::Keep {
        ctx.progress(format!(
            "keeping {what} and its data (on_destroy = Keep): nothing deleted"
        ));
        return Ok(());
    }
    let api = api(bucket, ctx).await?;
    match api.tags().await? {
        None => return Ok(()),
        Some(tags) if !api.ours(&tags) => {
            ctx.progress(format!(
                "{what} is not this module's (tags: {}): left alone",
                owner_text(&tags)
            ));
            return Ok(());
        }
        Some(_) => {}
    }
    ctx.progress(format!("emptying {what} (every version)"));
    api.empty(ctx).await?;
    ctx.progress(format!("deleting {what}"));
    crate::error::deleted(
        api.client.delete_bucket().bucket(&bucket.name).send().await,
        "deleting the bucket",
        &what,
    )
}
