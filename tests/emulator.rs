//! The test bed's AWS emulator evaluates the TLS condition of bucket policies as AWS does
//! (tests/testbed/authorization.py): the deny-plain-HTTP statement bucketwire writes does not
//! block traffic on the endpoint that stands for AWS's HTTPS ones, denies the same request on the
//! plain-HTTP endpoint, and a statement whose condition matches still denies.

mod common;

use aws_sdk_s3::primitives::ByteStream;
use common::{TestBed, aws};
use serde_json::json;

async fn put(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<(), u16> {
    s3.put_object()
        .bucket(bucket)
        .key("probe")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| e.raw_response().map(|r| r.status().as_u16()).unwrap_or(0))
}

#[tokio::test]
async fn secure_transport_conditions_apply_only_when_they_match() {
    let bed = TestBed::load();
    let s3 = aws::s3(&bed, "us-east-1").await;
    let bucket = format!("emulator-tls-{}", std::process::id());
    s3.create_bucket().bucket(&bucket).send().await.expect("bucket");
    let policy = |secure: &str| {
        json!({"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Principal": "*", "Action": "s3:*",
            "Resource": [format!("arn:aws:s3:::{bucket}"), format!("arn:aws:s3:::{bucket}/*")],
            "Condition": {"Bool": {"aws:SecureTransport": secure}}}]})
        .to_string()
    };

    s3.put_bucket_policy()
        .bucket(&bucket)
        .policy(policy("false"))
        .send()
        .await
        .expect("policy");
    assert_eq!(
        put(&s3, &bucket).await,
        Ok(()),
        "deny-plain-HTTP does not apply to SDK traffic"
    );
    let plain_http = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&aws::sdk_config(&bed, "us-east-1").await)
            .endpoint_url(bed.var("BUCKETWIRE_TESTBED_INSECURE_ENDPOINT_URL"))
            .force_path_style(true)
            .build(),
    );
    assert_eq!(
        put(&plain_http, &bucket).await,
        Err(403),
        "deny-plain-HTTP applies on the plain-HTTP endpoint"
    );

    s3.put_bucket_policy()
        .bucket(&bucket)
        .policy(policy("true"))
        .send()
        .await
        .expect("policy");
    assert_eq!(
        put(&s3, &bucket).await,
        Err(403),
        "a matching condition still denies"
    );
}

#[tokio::test]
async fn iam_enforcement_is_on_so_unknown_credentials_are_refused() {
    let bed = TestBed::load();
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "AKIANOTAUSER0000000",
            "nope",
            None,
            None,
            "test",
        ))
        .endpoint_url(bed.var("BUCKETWIRE_AWS_ENDPOINT_URL"))
        .force_path_style(true)
        .build();
    let stranger = aws_sdk_s3::Client::from_conf(conf);
    let status = stranger
        .list_buckets()
        .send()
        .await
        .err()
        .and_then(|e| e.raw_response().map(|r| r.status().as_u16()));
    assert_eq!(status, Some(403));
}
