//! AWS SDK clients against the test bed's emulator, for checking what the operator did
//! independently of the operator's own view.

use aws_config::{BehaviorVersion, Region};

use super::TestBed;

async fn base(bed: &TestBed) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(bed.var("AWS_REGION").to_string()))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            bed.var("AWS_ACCESS_KEY_ID"),
            bed.var("AWS_SECRET_ACCESS_KEY"),
            None,
            None,
            "testbed",
        ))
        .endpoint_url(bed.var("BUCKETWIRE_AWS_ENDPOINT_URL"))
        .load()
        .await
}

pub async fn s3(bed: &TestBed, region: &str) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(&base(bed).await)
        .region(Region::new(region.to_string()))
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// IAM of the partition that `region` belongs to.
pub async fn iam(bed: &TestBed, region: &str) -> aws_sdk_iam::Client {
    let conf = aws_sdk_iam::config::Builder::from(&base(bed).await)
        .region(Region::new(region.to_string()))
        .build();
    aws_sdk_iam::Client::from_conf(conf)
}

/// The bucket's default encryption: (algorithm, KMS key).
pub async fn default_encryption(s3: &aws_sdk_s3::Client, bucket: &str) -> (String, Option<String>) {
    let out = s3
        .get_bucket_encryption()
        .bucket(bucket)
        .send()
        .await
        .expect("encryption");
    let rule = &out.server_side_encryption_configuration().expect("sse").rules()[0];
    let default = rule.apply_server_side_encryption_by_default().expect("default");
    (
        default.sse_algorithm().as_str().to_string(),
        default.kms_master_key_id().map(str::to_string),
    )
}

/// Creates a bucket out of band (as the administrator), in `region`.
pub async fn create_bucket(s3: &aws_sdk_s3::Client, name: &str, region: &str) {
    let mut req = s3.create_bucket().bucket(name);
    if region != "us-east-1" {
        req = req.create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(region))
                .build(),
        );
    }
    req.send().await.expect("bucket created out of band");
}
