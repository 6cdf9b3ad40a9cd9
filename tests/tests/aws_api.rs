//! The tests' own signed AWS calls (`orderflow_e2e::aws_api`) against a stand-in server: what they
//! send (target, content type, signature's scope, path), which answers they try again (as the
//! SDK's standard retry) and which not, and the service's error code read from either protocol.
//! No emulator needed.

use orderflow_e2e::aws_api::{AwsApi, COGNITO};
use orderflow_e2e::stack::local_credentials;
use reqwest::Method;
use serde_json::json;
use wiremock::matchers::{header, header_regex, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn api(server: &MockServer) -> AwsApi {
    AwsApi::new(&server.uri(), "eu-west-2", local_credentials()).unwrap()
}

#[tokio::test]
async fn a_json_call_is_signed_for_its_service_and_tried_again_after_a_5xx_until_it_passes() {
    let server = MockServer::start().await;
    // Answered only when every part is as the SDK sends it: anything else gets wiremock's 404.
    let expected = || {
        Mock::given(method("POST"))
            .and(path("/"))
            .and(header("x-amz-target", "AWSCognitoIdentityProviderService.AdminGetUser"))
            .and(header("content-type", "application/x-amz-json-1.1"))
            .and(header_regex(
                "authorization",
                r"^AWS4-HMAC-SHA256 Credential=test/\d{8}/eu-west-2/cognito-idp/aws4_request, SignedHeaders=[^ ]*host",
            ))
    };
    expected().respond_with(ResponseTemplate::new(503)).up_to_n_times(2).mount(&server).await;
    expected()
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "Username": "ada" })))
        .mount(&server)
        .await;

    let answer = api(&server).json(COGNITO, "AdminGetUser", &json!({ "Username": "ada" })).await.unwrap();

    assert_eq!(answer["Username"], "ada");
    let received = server.received_requests().await.unwrap();
    assert_eq!(received.len(), 3, "two 503s, then the answer");
    assert!(received.iter().all(|r| r.body == br#"{"Username":"ada"}"#), "the same body each time");
}

#[tokio::test]
async fn a_refusal_is_not_tried_again_and_names_the_services_code() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "__type": "com.amazonaws.cognito#UsernameExistsException:http://internal.amazon.com/",
            "message": "User account already exists"
        })))
        .mount(&server)
        .await;

    let refused = api(&server).json(COGNITO, "AdminCreateUser", &json!({})).await.unwrap_err();

    assert_eq!((refused.status, refused.code.as_str()), (Some(400), "UsernameExistsException"));
    assert_eq!(refused.message, "User account already exists");
    assert_eq!(server.received_requests().await.unwrap().len(), 1, "a 400 is final");
}

#[tokio::test]
async fn a_rest_call_encodes_its_path_and_reads_the_error_code_from_its_header() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/2015-03-31/functions/my%20fn/configuration"))
        .and(header_regex("authorization", "/eu-west-2/lambda/aws4_request"))
        .respond_with(
            ResponseTemplate::new(404)
                .insert_header("x-amzn-ErrorType", "ResourceNotFoundException:http://internal.amazon.com/")
                .set_body_json(json!({ "Type": "User", "Message": "Function not found" })),
        )
        .mount(&server)
        .await;

    let segments = ["2015-03-31", "functions", "my fn", "configuration"];
    let missing =
        api(&server).rest("lambda", "GetFunctionConfiguration", Method::GET, &segments, &[], None).await.unwrap_err();

    assert_eq!((missing.status, missing.code.as_str()), (Some(404), "ResourceNotFoundException"));
    assert_eq!(missing.message, "Function not found");
}
