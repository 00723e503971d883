//! The one error type of `devops-stack-aws`.

use std::time::Duration;

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use devops_stack_core::BoxError;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while applying, reading or destroying AWS resources.
///
/// Every variant names the resource concerned. No variant ever carries a secret (client
/// secrets and EKS tokens stay in [`Secret`](devops_stack_core::Secret)s).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The AWS configuration is incomplete (no region, say).
    #[error("AWS configuration: {problem}; fix: {fix}")]
    Config {
        /// What is missing or wrong.
        problem: String,
        /// How to fix it.
        fix: String,
    },

    /// The caller's credentials may not perform the action.
    #[error(
        "access denied while {action} ({resource}): {message}; grant the permission to the caller's IAM identity"
    )]
    AccessDenied {
        /// What was being done.
        action: String,
        /// The resource concerned.
        resource: String,
        /// AWS's message.
        message: String,
    },

    /// The resource exists already or is busy with another operation.
    #[error("{resource} is in use while {action}: {message}")]
    ResourceInUse {
        /// What was being done.
        action: String,
        /// The resource concerned.
        resource: String,
        /// AWS's message.
        message: String,
    },

    /// An account or service quota was reached.
    #[error(
        "limit exceeded while {action} ({resource}): {message}; raise the quota or remove unused resources"
    )]
    LimitExceeded {
        /// What was being done.
        action: String,
        /// The resource concerned.
        resource: String,
        /// AWS's message.
        message: String,
    },

    /// The resource does not exist.
    #[error("{resource} does not exist ({action}): {message}")]
    NotFound {
        /// What was being done.
        action: String,
        /// The resource concerned.
        resource: String,
        /// AWS's message.
        message: String,
    },

    /// The endpoint does not implement the operation (an AWS emulator without it, typically).
    #[error(
        "the AWS endpoint does not implement the operation for {action} ({resource}): HTTP {status}"
    )]
    Unsupported {
        /// What was being done.
        action: String,
        /// The resource concerned.
        resource: String,
        /// The HTTP status returned.
        status: u16,
    },

    /// Any other AWS API error, throttling included once the retries are spent.
    #[error("AWS error while {action} ({resource}): {code}: {message}")]
    Aws {
        /// What was being done.
        action: String,
        /// The resource concerned.
        resource: String,
        /// The AWS error code, or `unknown`.
        code: String,
        /// AWS's message.
        message: String,
        /// The SDK's error, boxed.
        #[source]
        source: BoxError,
    },

    /// The live resource differs from the configuration in fields that cannot be updated in place.
    #[error("{resource} would need a replacement to change {}; delete it (destroy) and apply again, or set these fields back to their live values", .fields.join(", "))]
    ReplacementRequired {
        /// The resource concerned.
        resource: String,
        /// The fields that differ, each as `field: live -> wanted`.
        fields: Vec<String>,
    },

    /// The resource reached a failed state.
    #[error("{resource} is {status}: {detail}")]
    Failed {
        /// The resource concerned.
        resource: String,
        /// Its status (`FAILED`, `DEGRADED`, `DELETING`...).
        status: String,
        /// What AWS reports about it.
        detail: String,
    },

    /// A wait for a resource's state did not end in time.
    #[error("{resource} did not become {wanted} within {waited:?} (last status: {last})")]
    Timeout {
        /// The resource concerned.
        resource: String,
        /// The state waited for.
        wanted: String,
        /// The last status seen.
        last: String,
        /// How long it was waited for.
        waited: Duration,
    },

    /// The run was cancelled while waiting.
    #[error("cancelled while waiting for {resource}")]
    Cancelled {
        /// The resource being waited for.
        resource: String,
    },

    /// Signing the EKS token failed.
    #[error("cannot sign the EKS token for cluster `{cluster}`: {reason}")]
    Token {
        /// The cluster's name.
        cluster: String,
        /// Why.
        reason: String,
    },

    /// A resource of the name the module would use exists and was not created by it (no
    /// ownership tags, or another stack's or module's): it is never taken over or deleted.
    #[error(
        "{resource} exists and is not this module's (tags: {owner}); it is left alone. Fix: {fix}"
    )]
    NotOwned {
        /// The resource concerned.
        resource: String,
        /// Who owns it, as its ownership tags say (`none` when untagged).
        owner: String,
        /// How to go on.
        fix: String,
    },

    /// An EKS cluster authenticates only through the `aws-auth` ConfigMap, so it takes no access
    /// entry: nothing was written.
    #[error(
        "EKS cluster `{cluster}` authenticates through the aws-auth ConfigMap only (mode {mode}) and takes no access entry; nothing was written. Fix: switch it to access entries and the ConfigMap (`aws eks update-cluster-config --name {cluster} --access-config authenticationMode=API_AND_CONFIG_MAP`, which cannot be undone), or create it with an `Eks::access_entry`, which makes the module create it in that mode"
    )]
    AccessEntriesDisabled {
        /// The cluster's name.
        cluster: String,
        /// Its authentication mode, as EKS names it (`CONFIG_MAP`).
        mode: String,
    },

    /// No Route 53 hosted zone of the domain exists (of the kind asked: public or private).
    #[error(
        "no {} Route 53 hosted zone for `{domain}`; fix: create the hosted zone for `{domain}` in Route 53, or give the base domain of an existing zone",
        if *.private { "private" } else { "public" }
    )]
    HostedZoneNotFound {
        /// The domain looked up, without the trailing dot.
        domain: String,
        /// Whether a private zone was asked for.
        private: bool,
    },

    /// More than one Route 53 hosted zone of the domain exists (of the kind asked), and the
    /// module cannot tell which one serves it.
    #[error(
        "{} {} Route 53 hosted zones for `{domain}` exist ({}); fix: delete the zone not delegated to, or ask for the other kind (`.private(..)`)",
        .ids.len(),
        if *.private { "private" } else { "public" },
        .ids.join(", ")
    )]
    AmbiguousHostedZone {
        /// The domain looked up, without the trailing dot.
        domain: String,
        /// Whether private zones were asked for.
        private: bool,
        /// The ids of the zones found.
        ids: Vec<String>,
    },

    /// The S3 bucket name is taken by another AWS account (bucket names are global), or the
    /// caller may not read that bucket.
    #[error(
        "the S3 bucket name `{bucket}` is taken by another AWS account, or this caller may not read that bucket (bucket names are global across all accounts); fix: choose another bucket name, or grant s3:ListBucket and s3:GetBucketTagging on it"
    )]
    BucketTaken {
        /// The bucket's name.
        bucket: String,
    },

    /// The cluster's Kubernetes API cannot be reached during a destroy, and in-cluster objects
    /// may not be abandoned: nothing was deleted.
    #[error(
        "cannot reach the Kubernetes API of cluster `{cluster}` ({reason}); nothing was deleted, because objects in the cluster may hold cloud resources. Make the API reachable and destroy again, or, {}",
        devops_stack_core::interfaces::AbandonInCluster::HINT
    )]
    ClusterUnreachable {
        /// The cluster's name.
        cluster: String,
        /// Why it cannot be reached.
        reason: String,
    },

    /// Load balancers or volumes Kubernetes made for the cluster's objects were still in AWS when
    /// the wait before deleting the cluster ended: the cluster was not deleted.
    #[error(
        "cluster `{cluster}` still has cloud resources made for its objects after {waited:?}: {}; the cluster was not deleted, so that they are not orphaned. Fix: delete the objects named (those outside the stack's namespaces are not deleted by the stack), or wait for their controllers, then destroy again",
        .remaining.join(", ")
    )]
    CloudResourcesRemain {
        /// The cluster's name.
        cluster: String,
        /// Each resource still there, with what it was made for.
        remaining: Vec<String>,
        /// How long it was waited for.
        waited: Duration,
    },

    /// A call to a cluster's Kubernetes API failed.
    #[error("Kubernetes API: {action}: {source}")]
    Kubernetes {
        /// What was being done.
        action: String,
        /// The client's error.
        #[source]
        source: Box<kube::Error>,
    },

    /// The Kubernetes client for a cluster could not be built.
    #[error("cannot build a Kubernetes client for cluster `{cluster}`: {reason}")]
    Client {
        /// The cluster's name.
        cluster: String,
        /// Why.
        reason: String,
    },
}

impl Error {
    /// Wraps a Kubernetes client error with what was being done.
    pub(crate) fn kubernetes(action: impl Into<String>, source: kube::Error) -> Self {
        Error::Kubernetes {
            action: action.into(),
            source: Box::new(source),
        }
    }

    /// Wraps an SDK error, classifying it by its AWS error code.
    pub(crate) fn aws<E>(
        action: impl Into<String>,
        resource: impl Into<String>,
        err: SdkError<E, HttpResponse>,
    ) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let action = action.into();
        let resource = resource.into();
        let message = err.message().unwrap_or("no message").to_owned();
        let status = err.raw_response().map(|r| r.status().as_u16());
        match err.code() {
            Some(
                "AccessDeniedException"
                | "AccessDenied"
                | "NotAuthorizedException"
                | "UnauthorizedOperation"
                | "UnrecognizedClientException",
            ) => Error::AccessDenied {
                action,
                resource,
                message,
            },
            Some(
                "ResourceInUseException"
                | "ResourceConflictException"
                | "GroupExistsException"
                | "UsernameExistsException"
                | "DependencyViolation"
                | "DeleteConflict"
                | "EntityAlreadyExists"
                | "InvalidParameterValue.InUse",
            ) => Error::ResourceInUse {
                action,
                resource,
                message,
            },
            Some(
                "LimitExceededException"
                | "ResourceLimitExceededException"
                | "ServiceQuotaExceededException",
            ) => Error::LimitExceeded {
                action,
                resource,
                message,
            },
            Some(code) if not_found_code(code) => Error::NotFound {
                action,
                resource,
                message,
            },
            None if matches!(status, Some(404 | 405 | 501)) => Error::Unsupported {
                action,
                resource,
                status: status.unwrap_or_default(),
            },
            code => Error::Aws {
                action,
                resource,
                code: code.unwrap_or("unknown").to_owned(),
                message,
                source: Box::new(err),
            },
        }
    }
}

/// Whether an AWS error code says the resource does not exist (EKS, Cognito, IAM, EC2, S3 and
/// Route 53 spellings).
fn not_found_code(code: &str) -> bool {
    matches!(
        code,
        "ResourceNotFoundException"
            | "NotFoundException"
            | "UserNotFoundException"
            | "NoSuchEntity"
            | "NatGatewayNotFound"
            | "NoSuchBucket"
            | "NoSuchHostedZone"
    ) || code.ends_with(".NotFound")
}

/// The outcome of a delete call: done, or already gone, are both success.
///
/// # Errors
/// Any other failure, as [`Error::aws`].
pub(crate) fn deleted<T, E>(
    result: std::result::Result<T, SdkError<E, HttpResponse>>,
    action: &str,
    resource: &str,
) -> Result<()>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match result {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(Error::aws(action, resource, e)),
    }
}

/// Whether `err` says the resource does not exist.
pub(crate) fn is_not_found<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    err.code().is_some_and(not_found_code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sdk_error(
        code: Option<&str>,
        status: u16,
    ) -> SdkError<aws_sdk_eks::operation::describe_cluster::DescribeClusterError, HttpResponse>
    {
        use aws_sdk_eks::operation::describe_cluster::DescribeClusterError;
        use aws_smithy_runtime_api::http::StatusCode;
        use aws_smithy_types::body::SdkBody;
        use aws_smithy_types::error::ErrorMetadata;
        let mut meta = ErrorMetadata::builder().message("the message");
        if let Some(code) = code {
            meta = meta.code(code);
        }
        let raw = HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::empty());
        SdkError::service_error(DescribeClusterError::generic(meta.build()), raw)
    }

    #[test]
    fn aws_errors_are_classified_by_code() {
        let classify = |code, status| {
            Error::aws(
                "describing the cluster",
                "EKS cluster `prod`",
                sdk_error(code, status),
            )
        };
        assert!(matches!(
            classify(Some("AccessDeniedException"), 403),
            Error::AccessDenied { .. }
        ));
        assert!(matches!(
            classify(Some("ResourceInUseException"), 409),
            Error::ResourceInUse { .. }
        ));
        assert!(matches!(
            classify(Some("ResourceLimitExceededException"), 400),
            Error::LimitExceeded { .. }
        ));
        assert!(matches!(
            classify(Some("ResourceNotFoundException"), 404),
            Error::NotFound { .. }
        ));
        assert!(matches!(
            classify(None, 404),
            Error::Unsupported { status: 404, .. }
        ));
        let other = classify(Some("ThrottlingException"), 429);
        assert!(matches!(other, Error::Aws { ref code, .. } if code == "ThrottlingException"));
        let text = classify(Some("AccessDeniedException"), 403).to_string();
        assert!(
            text.contains("EKS cluster `prod`") && text.contains("the message"),
            "{text}"
        );
        assert!(is_not_found(&sdk_error(
            Some("ResourceNotFoundException"),
            404
        )));
        assert!(!is_not_found(&sdk_error(
            Some("AccessDeniedException"),
            403
        )));
    }

    #[test]
    fn replacement_lists_fields() {
        let e = Error::ReplacementRequired {
            resource: "EKS cluster `prod`".into(),
            fields: vec!["subnets: [a] -> [b]".into(), "role_arn: x -> y".into()],
        };
        let text = e.to_string();
        assert!(
            text.contains("subnets: [a] -> [b], role_arn: x -> y"),
            "{text}"
        );
    }
}
