//! The AWS tests' side of moto (the emulator `scripts/test.sh` starts): its endpoint, dummy
//! credentials, resets and the lock that serialises the tests of one binary around them.

use std::io::{Read, Write};
use std::net::TcpStream;

use aws_credential_types::Credentials;
use devops_stack_aws::AwsConfig;
use devops_stack_aws::Polling;
use std::time::Duration;

/// The variable `scripts/test.sh` sets to moto's URL.
pub const ENDPOINT_VAR: &str = "DEVOPS_STACK_TEST_AWS_ENDPOINT";

/// The region of every test.
pub const REGION: &str = "us-east-1";

/// Resets are global to moto: the tests of one binary take this lock in turn.
pub static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// moto's endpoint (`DEVOPS_STACK_TEST_AWS_ENDPOINT`).
///
/// # Panics
/// When the variable is unset, saying how to set it (see [`crate::live::required_var`]).
pub fn endpoint() -> String {
    crate::live::required_var(
        ENDPOINT_VAR,
        "scripts/test.sh starts moto and sets it; or start moto \
         (`MOTO_IAM_LOAD_MANAGED_POLICIES=true target/moto-venv/bin/moto_server -H 127.0.0.1 -p 5124`) \
         and set it to http://127.0.0.1:5124",
    )
    .trim_end_matches('/')
    .to_owned()
}

/// Dummy credentials and the endpoint, without touching the process environment.
pub fn aws(endpoint: &str) -> AwsConfig {
    AwsConfig::new()
        .region(REGION)
        .endpoint_url(endpoint)
        .credentials(Credentials::new(
            "testing",
            "testing",
            Some("testing-session".into()),
            None,
            "tests",
        ))
        .max_attempts(2)
}

/// Fast polling: moto finishes everything at once.
pub fn polling() -> Polling {
    Polling {
        initial_interval: Duration::from_millis(20),
        max_interval: Duration::from_millis(100),
        timeout: Duration::from_secs(20),
    }
}

/// `POST <endpoint>/moto-api/reset`: forgets every resource.
pub fn reset(endpoint: &str) {
    let host = endpoint.trim_start_matches("http://");
    let mut stream = TcpStream::connect(host).expect("moto is reachable");
    write!(
        stream,
        "POST /moto-api/reset HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("reset request sent");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("reset response read");
    assert!(
        response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200"),
        "reset failed: {response}"
    );
}

/// An SDK configuration for direct checks.
pub async fn sdk(endpoint: &str) -> aws_config::SdkConfig {
    aws(endpoint).load().await.expect("config loads")
}

/// An S3 client for direct checks, addressing buckets by path (moto has no bucket subdomains),
/// as the `S3Bucket` module does with an endpoint override.
pub fn s3(sdk: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(true)
            .build(),
    )
}
