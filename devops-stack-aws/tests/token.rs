//! The EKS token: its format, and (with moto) that STS answers the presigned request.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use devops_stack_aws::eks::TokenSource;

fn decode(token: &str) -> url::Url {
    let body = token.strip_prefix("k8s-aws-v1.").expect("the prefix");
    assert!(!body.contains('='), "no padding");
    assert!(
        !body.contains('+') && !body.contains('/'),
        "base64url alphabet"
    );
    let url = String::from_utf8(URL_SAFE_NO_PAD.decode(body).expect("base64url")).unwrap();
    url::Url::parse(&url).expect("a URL")
}

fn query(url: &url::Url) -> BTreeMap<String, String> {
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

#[tokio::test]
async fn token_is_a_presigned_get_caller_identity() {
    let sdk = common::aws("http://unused.invalid").load().await.unwrap();
    // Without an endpoint override the regional STS host is signed.
    let sdk = sdk
        .into_builder()
        .endpoint_url("https://sts.us-east-1.amazonaws.com")
        .build();
    let source = TokenSource::new(&sdk, "prod").unwrap();
    let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_760_000_000);
    let token = source.token_at(time).await.unwrap();
    let url = decode(token.expose());
    assert_eq!(url.host_str(), Some("sts.us-east-1.amazonaws.com"));
    let q = query(&url);
    assert_eq!(q["Action"], "GetCallerIdentity");
    assert_eq!(q["Version"], "2011-06-15");
    assert_eq!(q["X-Amz-Expires"], "60");
    assert_eq!(q["X-Amz-Algorithm"], "AWS4-HMAC-SHA256");
    assert_eq!(q["X-Amz-Date"], "20251009T085320Z");
    assert_eq!(
        q["X-Amz-Credential"],
        "testing/20251009/us-east-1/sts/aws4_request"
    );
    let signed: Vec<&str> = q["X-Amz-SignedHeaders"].split(';').collect();
    assert!(
        signed.contains(&"host") && signed.contains(&"x-k8s-aws-id"),
        "{signed:?}"
    );
    assert_eq!(q["X-Amz-Signature"].len(), 64);
    assert!(q["X-Amz-Signature"].chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(q["X-Amz-Security-Token"], "testing-session");
    // Known answer: botocore's SigV4QueryAuth signs the same request, at the same time and with
    // the same credentials, to this signature.
    assert_eq!(
        q["X-Amz-Signature"],
        "db441869edbc76c37d1a2a5cb1b1f70747c416ab016d1865f60a26a2f1dc4568"
    );

    // Signing is deterministic, and bound to the cluster's name.
    assert_eq!(
        source.token_at(time).await.unwrap().expose(),
        token.expose()
    );
    let other = TokenSource::new(&sdk, "staging")
        .unwrap()
        .token_at(time)
        .await
        .unwrap();
    assert_ne!(
        query(&decode(other.expose()))["X-Amz-Signature"],
        q["X-Amz-Signature"]
    );
    // The token is a Secret: never printed.
    assert!(!format!("{token:?} {token}").contains("k8s-aws-v1"));
}

#[tokio::test]
#[ignore = "needs moto (DEVOPS_STACK_TEST_AWS_ENDPOINT): scripts/test.sh starts it"]
async fn token_honours_the_endpoint_override() {
    let ep = common::endpoint();
    let sdk = common::sdk(&ep).await;
    let token = TokenSource::new(&sdk, "prod")
        .unwrap()
        .token()
        .await
        .unwrap();
    let url = decode(token.expose());
    assert_eq!(
        format!("{}://{}", url.scheme(), url.host_str().unwrap()),
        ep.rsplit_once(':').unwrap().0
    );
    assert_eq!(
        url.port().map(|p| p.to_string()).as_deref(),
        ep.rsplit_once(':').map(|(_, p)| p)
    );
    assert_eq!(query(&url)["X-Amz-Expires"], "60");
}
