//! TokenRequest on the test bed: the apiserver issues a ServiceAccount token for the
//! audience `sts.amazonaws.com`, signed by the issuer that the emulated EKS cluster reports,
//! exactly what IRSA hands to AssumeRoleWithWebIdentity.

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{TestBed, namespace};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

#[tokio::test]
async fn token_for_a_service_account_carries_its_subject_and_the_sts_audience() {
    let bed = TestBed::load();
    let client = bed.client().await;
    let ns = namespace(&client, "token").await;
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "milvus-s3-access-sa"}})).expect("sa");
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    api.create(&PostParams::default(), &sa)
        .await
        .expect("ServiceAccount is created");

    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec!["sts.amazonaws.com".into()],
            expiration_seconds: Some(600),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = api
        .create_token_request("milvus-s3-access-sa", &PostParams::default(), &request)
        .await
        .expect("TokenRequest succeeds");
    let token = answer.status.expect("token status").token;

    let claims = jwt_claims(&token);
    assert_eq!(
        claims["sub"],
        format!("system:serviceaccount:{ns}:milvus-s3-access-sa")
    );
    assert_eq!(claims["aud"], json!(["sts.amazonaws.com"]));
    assert_eq!(
        claims["iss"],
        bed.var("BUCKETWIRE_TESTBED_OIDC_ISSUER"),
        "signed by the EKS cluster's issuer"
    );
    let lifetime = claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat");
    assert_eq!(lifetime, 600, "the requested expiry is honoured");
    let header: Value = decode_segment(token.split('.').next().expect("header"));
    assert_eq!(header["alg"], "RS256", "RS256, as EKS signs");
}

#[tokio::test]
async fn token_request_for_a_missing_service_account_is_refused() {
    let client = TestBed::load().client().await;
    let ns = namespace(&client, "token-missing").await;
    let api: Api<ServiceAccount> = Api::namespaced(client, &ns);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec!["sts.amazonaws.com".into()],
            ..Default::default()
        },
        ..Default::default()
    };
    match api
        .create_token_request("nobody", &PostParams::default(), &request)
        .await
    {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 404),
        other => panic!("expected 404, got {other:?}"),
    }
}

fn jwt_claims(token: &str) -> Value {
    let parts: Vec<_> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWT has three parts");
    decode_segment(parts[1])
}

fn decode_segment(segment: &str) -> Value {
    let bytes = URL_SAFE_NO_PAD.decode(segment).expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON")
}
