//! The deployed stack: its outputs and clients (`Local`), its queues (deliver again, wait until
//! drained), its consumers (down and up again), its secrets, and the sentinel event.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use serde_json::{json, Value};

use reqwest::Method;

use crate::aws_api::{AwsApi, LOGS};
use crate::twilio;
use crate::wait::eventually;

/// Lambda's path of the event source mappings.
const ESM: [&str; 3] = ["2015-03-31", "event-source-mappings", ""];

/// The local emulator's dummy credentials, for the SDK's clients and the tests' own signed calls.
pub fn local_credentials() -> aws_sdk_sqs::config::Credentials {
    aws_sdk_sqs::config::Credentials::new("test", "test", None, None, "orderflow-local")
}

/// The SDK configuration for the local emulator at `endpoint`, with its dummy credentials.
pub async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(orderflow_harness::aws::https_client())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new(std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into())))
        .credentials_provider(local_credentials())
        .load()
        .await
}

/// A connection to the deployed stack.
pub struct Local {
    outputs: HashMap<String, String>,
    /// HTTP client for the API.
    pub http: reqwest::Client,
    /// DynamoDB.
    pub dynamo: aws_sdk_dynamodb::Client,
    /// SQS.
    pub sqs: aws_sdk_sqs::Client,
    /// EventBridge.
    pub events: aws_sdk_eventbridge::Client,
    /// S3 (path-style, as the emulator needs).
    pub s3: aws_sdk_s3::Client,
    /// The APIs no function calls: Cognito, CloudWatch Logs, Athena, Lambda (`aws_api`).
    pub aws: AwsApi,
    /// The SDK configuration the clients share (for other clients).
    pub sdk: aws_config::SdkConfig,
    /// The users this process signed in.
    pub(crate) users: crate::identity::Users,
    /// Who placed each order this process placed (their token reads it).
    pub(crate) owners: std::sync::Mutex<HashMap<String, crate::identity::SignedIn>>,
}

impl Local {
    /// Reads `.local/stack-outputs.json` (written by `infra/deploy-local.sh`) and builds clients.
    ///
    /// Also makes sure this process runs the Twilio stand-in (`twilio::TwilioStandIn`, where the
    /// local deployment points the SMS consumer): the texts of every order a test places are then
    /// accepted at once, instead of piling up in the SMS queue's growing retry delays, where they
    /// would hold up tests that wait for that queue to drain. Best effort: if another process
    /// holds the port, its stand-in answers instead.
    pub async fn connect() -> Result<Self> {
        let _ = twilio::TwilioStandIn::shared().await;
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.local/stack-outputs.json");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!("{} not found: deploy first with `infra/deploy-local.sh` (or `make demo`)", path.display())
        })?;
        let outputs: HashMap<String, String> = serde_json::from_str(&text)?;
        let endpoint =
            outputs.get("EndpointUrl").cloned().ok_or_else(|| anyhow!("no EndpointUrl in {}", path.display()))?;
        let sdk = sdk_config(&endpoint).await;
        let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&sdk).force_path_style(true).build());
        Ok(Self {
            outputs,
            http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?,
            dynamo: aws_sdk_dynamodb::Client::new(&sdk),
            sqs: aws_sdk_sqs::Client::new(&sdk),
            events: aws_sdk_eventbridge::Client::new(&sdk),
            aws: AwsApi::new(&endpoint, sdk.region().map_or("us-east-1", |r| r.as_ref()), local_credentials())?,
            s3,
            sdk,
            users: Default::default(),
            owners: Default::default(),
        })
    }

    /// The stack's log groups (its functions' logs), from CloudFormation.
    pub async fn log_groups(&self) -> Result<Vec<String>> {
        let stack = std::env::var("ORDERFLOW_STACK").unwrap_or_else(|_| "orderflow".into());
        self.resources(&stack, "AWS::Logs::LogGroup").await
    }

    /// The events logged to `group` (since `since_ms`, if given) as (timestamp in ms if any, message),
    /// every page while there is a next one (an empty page may still have one), with a bound in
    /// case an emulator hands the same token back.
    pub async fn log_events(&self, group: &str, since_ms: Option<i64>) -> Result<Vec<(Option<i64>, String)>> {
        let mut events = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..100_000 {
            let mut request = json!({ "logGroupName": group });
            if let Some(since) = since_ms {
                request["startTime"] = json!(since);
            }
            if let Some(token) = &token {
                request["nextToken"] = json!(token);
            }
            let page = self.aws.json(LOGS, "FilterLogEvents", &request).await?;
            events.extend(
                page["events"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|event| Some((event["timestamp"].as_i64(), event["message"].as_str()?.to_string()))),
            );
            let next = page["nextToken"].as_str().map(str::to_string);
            if next.is_none() || next == token {
                break;
            }
            token = next;
        }
        Ok(events)
    }

    /// The physical ids of `stack`'s resources of `resource_type`, every page of them.
    async fn resources(&self, stack: &str, resource_type: &str) -> Result<Vec<String>> {
        let cfn = aws_sdk_cloudformation::Client::new(&self.sdk);
        let mut ids = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let page = cfn.list_stack_resources().stack_name(stack).set_next_token(next).send().await?;
            ids.extend(
                page.stack_resource_summaries()
                    .iter()
                    .filter(|r| r.resource_type() == Some(resource_type))
                    .filter_map(|r| r.physical_resource_id().map(str::to_string)),
            );
            next = page.next_token().map(str::to_string);
            if next.is_none() {
                return Ok(ids);
            }
        }
    }

    /// Whether the stack has this output (the LocalStack variant lacks the HTTP API's).
    pub fn has_output(&self, key: &str) -> bool {
        self.outputs.contains_key(key)
    }

    /// The names of the stack's outputs.
    pub fn output_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.outputs.keys().cloned().collect();
        names.sort();
        names
    }

    /// A stack output, e.g. `BillingQueueUrl`.
    pub fn output(&self, key: &str) -> &str {
        self.outputs.get(key).map(String::as_str).unwrap_or_else(|| panic!("stack output {key} missing"))
    }

    /// Stops or restarts the delivery of a function's queue to the function (its SQS event source
    /// mapping), as if the consumer were down, and waits until the mapping says so.
    pub async fn set_consumer_enabled(&self, function_output: &str, enabled: bool) -> Result<()> {
        let function = self.output(function_output).to_string();
        let mappings = self
            .aws
            .rest("lambda", "ListEventSourceMappings", Method::GET, &ESM, &[("FunctionName", &function)], None)
            .await?;
        let uuid = mappings["EventSourceMappings"][0]["UUID"]
            .as_str()
            .ok_or_else(|| anyhow!("{function} has no event source mapping"))?
            .to_string();
        let path = [ESM[0], ESM[1], &uuid];
        let enable = json!({ "Enabled": enabled });
        self.aws.rest("lambda", "UpdateEventSourceMapping", Method::PUT, &path, &[], Some(&enable)).await?;
        let want = if enabled { "Enabled" } else { "Disabled" };
        eventually(&format!("the event source mapping of {function} {want}"), Duration::from_secs(30), || async {
            let mapping = self.aws.rest("lambda", "GetEventSourceMapping", Method::GET, &path, &[], None).await?;
            Ok((mapping["State"] == want).then_some(()))
        })
        .await
    }

    /// Runs `body` with the consumer behind `function_output` down (its event source mapping off), and
    /// brings it back afterwards, also when `body` panics, so a failed check never leaves it down.
    pub async fn with_consumer_down<T>(
        &self,
        function_output: &str,
        body: impl std::future::Future<Output = T>,
    ) -> Result<T> {
        use futures::FutureExt;
        self.set_consumer_enabled(function_output, false).await?;
        let outcome = std::panic::AssertUnwindSafe(body).catch_unwind().await;
        self.set_consumer_enabled(function_output, true).await?;
        Ok(outcome.unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
    }

    /// The environment of the deployed function `function`, as it reads it.
    async fn variables(&self, function: &str) -> Result<HashMap<String, String>> {
        let config = self.function_configuration(function).await?;
        match &config["Environment"]["Variables"] {
            Value::Null => Ok(HashMap::new()),
            variables => serde_json::from_value(variables.clone())
                .with_context(|| format!("{function}'s environment variables: {variables}")),
        }
    }

    /// `GetFunctionConfiguration` of `function`.
    async fn function_configuration(&self, function: &str) -> Result<Value> {
        let path = ["2015-03-31", "functions", function, "configuration"];
        Ok(self.aws.rest("lambda", "GetFunctionConfiguration", Method::GET, &path, &[], None).await?)
    }

    /// The environment variable `name` of the deployed function named by the output
    /// `function_output`, as the function reads it.
    pub async fn function_env(&self, function_output: &str, name: &str) -> Result<String> {
        let function = self.output(function_output);
        self.variables(function).await?.remove(name).ok_or_else(|| anyhow!("{function} has no {name}"))
    }

    /// Runs `body` with the function behind `function_output` configured with `name=value` in its
    /// environment (the emulator starts a new process for it, as Lambda would), and puts the old
    /// environment back afterwards, also when `body` panics.
    pub async fn with_function_env<T>(
        &self,
        function_output: &str,
        name: &str,
        value: &str,
        body: impl std::future::Future<Output = T>,
    ) -> Result<T> {
        use futures::FutureExt;
        let function = self.output(function_output).to_string();
        let old = self.variables(&function).await?;
        let mut new = old.clone();
        new.insert(name.to_string(), value.to_string());
        let set = |vars: std::collections::HashMap<String, String>| {
            let function = function.clone();
            async move {
                let path = ["2015-03-31", "functions", &function, "configuration"];
                let env = json!({ "Environment": { "Variables": vars } });
                self.aws.rest("lambda", "UpdateFunctionConfiguration", Method::PUT, &path, &[], Some(&env)).await?;
                eventually(&format!("{function} updated"), Duration::from_secs(30), || async {
                    let now = self.function_configuration(&function).await?;
                    Ok((now["LastUpdateStatus"] == "Successful").then_some(()))
                })
                .await
            }
        };
        set(new).await?;
        let outcome = std::panic::AssertUnwindSafe(body).catch_unwind().await;
        set(old).await?;
        Ok(outcome.unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
    }

    /// The emails SES sent to `to`, as the emulator recorded them (`GET /_ministack/ses/messages`:
    /// `Subject`, `BodyText`, `BodyHtml`, `Source`, ...).
    pub async fn emails_to(&self, to: &str) -> Result<Vec<Value>> {
        let all: Value = self
            .http
            .get(format!("{}/_ministack/ses/messages", self.output("EndpointUrl")))
            .send()
            .await?
            .json()
            .await?;
        Ok(all["messages"]
            .as_object()
            .into_iter()
            .flat_map(|accounts| accounts.values())
            .filter_map(Value::as_array)
            .flatten()
            .filter(|m| m["To"].as_array().is_some_and(|t| t.iter().any(|a| a == to)))
            .cloned()
            .collect())
    }

    /// The value of the stack's secret named by the output `secret_output`.
    pub async fn secret(&self, secret_output: &str) -> Result<String> {
        let out = aws_sdk_secretsmanager::Client::new(&self.sdk)
            .get_secret_value()
            .secret_id(self.output(secret_output))
            .send()
            .await?;
        Ok(out.secret_string().unwrap_or_default().to_string())
    }

    /// The stack's Twilio secret (`accountSid`, `authToken`), as the SMS function reads it.
    pub async fn twilio_secret(&self) -> Result<Value> {
        Ok(serde_json::from_str(&self.secret("TwilioSecretId").await?)?)
    }

    /// Publishes a marker event for a tap: once the tap has it, every event published before it
    /// has been routed (the bus delivers in order here), so a test can check for what did *not*
    /// arrive without sleeping.
    pub async fn sentinel(&self, correlation_id: &str) -> Result<()> {
        let detail = json!({"metadata": {"correlationId": correlation_id}, "data": {"orderId": "sentinel"}});
        let out = self
            .events
            .put_events()
            .entries(
                aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                    .event_bus_name(self.output("EventBusName"))
                    .source("orderflow.e2e")
                    .detail_type("Sentinel")
                    .detail(detail.to_string())
                    .build(),
            )
            .send()
            .await?;
        if out.failed_entry_count() > 0 {
            bail!("sentinel not published: {:?}", out.entries());
        }
        Ok(())
    }

    /// A marker that only the outbox relay publishes: an item of its own in the orders table whose
    /// outbox holds a `Sentinel` event. Once a tap has it, the relay has read the table's stream up
    /// to that write (one shard here, in order), so a test can check what the relay did *not*
    /// publish about earlier writes.
    pub async fn relay_sentinel(&self, correlation_id: &str) -> Result<()> {
        use aws_sdk_dynamodb::types::AttributeValue;
        let id = format!("sentinel-{}", uuid::Uuid::new_v4());
        let detail = json!({"metadata": {"correlationId": correlation_id}, "data": {"orderId": "sentinel"}});
        let outbox =
            json!({"eventId": id, "source": "orderflow.sales", "detailType": "Sentinel", "detail": detail.to_string()});
        self.dynamo
            .put_item()
            .table_name(self.output("OrdersTableName"))
            .item("orderId", AttributeValue::S(id))
            .item("outbox", AttributeValue::S(outbox.to_string()))
            .send()
            .await?;
        Ok(())
    }

    /// Sends `body` to the queue named by the output `queue_output` `times` times, as if SQS delivered
    /// it again, and waits until the consumer has finished with every copy (the queue, and any queue
    /// in `then_drained` that it feeds, holds nothing visible or in flight): after that, what the
    /// consumer did with the copies has been done.
    pub async fn deliver_again(
        &self,
        queue_output: &str,
        body: &str,
        times: usize,
        then_drained: &[&str],
    ) -> Result<()> {
        self.deliver_again_with(queue_output, body, &[], times, then_drained).await
    }

    /// [`Local::deliver_again`], each copy carrying these string message attributes (a webhook
    /// delivery's `subscriptionId`).
    pub async fn deliver_again_with(
        &self,
        queue_output: &str,
        body: &str,
        attributes: &[(&str, &str)],
        times: usize,
        then_drained: &[&str],
    ) -> Result<()> {
        for _ in 0..times {
            self.send_with(queue_output, body, attributes).await?;
        }
        self.drained(&[&[queue_output], then_drained].concat()).await
    }

    /// Sends `body` once to the queue named by the output `queue_output`, with these string message
    /// attributes, and does not wait for it to be handled.
    pub async fn send_with(&self, queue_output: &str, body: &str, attributes: &[(&str, &str)]) -> Result<()> {
        let mut send = self.sqs.send_message().queue_url(self.output(queue_output)).message_body(body);
        for (name, value) in attributes {
            let value = aws_sdk_sqs::types::MessageAttributeValue::builder()
                .data_type("String")
                .string_value(*value)
                .build()?;
            send = send.message_attributes(*name, value);
        }
        send.send().await?;
        Ok(())
    }

    /// Waits (90 s a queue at most) until these queues (stack outputs) hold nothing, visible or in
    /// flight, all in one look: everything sent to them has been handled, retries included.
    pub async fn drained(&self, queue_outputs: &[&str]) -> Result<()> {
        let urls: Vec<&str> = queue_outputs.iter().map(|output| self.output(output)).collect();
        self.all_drained(&urls, Duration::from_secs(90) * queue_outputs.len() as u32).await
    }

    /// Waits until all of these queues are empty in one look (one feeding another, as the
    /// webhooks' fan-out feeds the deliveries, cannot be seen empty before the other fills).
    pub async fn all_drained(&self, urls: &[&str], within: Duration) -> Result<()> {
        eventually(&format!("{} drained", urls.join(", ")), within, || async {
            for url in urls {
                if self.queue_depth(url).await? > 0 {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        })
        .await
    }

    /// The log groups Lambda gives the functions of `stack` that name none of their own
    /// (`/aws/lambda/<function>`): the benchmark's floors'.
    pub async fn function_log_groups(&self, stack: &str) -> Result<Vec<String>> {
        let functions = self.resources(stack, "AWS::Lambda::Function").await?;
        Ok(functions.into_iter().map(|f| format!("/aws/lambda/{f}")).collect())
    }

    /// Messages on a queue, visible or in flight.
    pub async fn queue_depth(&self, queue_url: &str) -> Result<u32> {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let attrs = self
            .sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await?
            .attributes
            .unwrap_or_default();
        let n = |k: A| attrs.get(&k).and_then(|v| v.parse::<u32>().ok()).unwrap_or(0);
        Ok(n(A::ApproximateNumberOfMessages) + n(A::ApproximateNumberOfMessagesNotVisible))
    }
}

/// Creates the SQS queue `name`; its URL and ARN (what an EventBridge target needs).
pub async fn create_queue(sqs: &aws_sdk_sqs::Client, name: &str) -> Result<(String, String)> {
    let url = sqs.create_queue().queue_name(name).send().await?.queue_url.ok_or_else(|| anyhow!("no queue url"))?;
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await?
        .attributes
        .and_then(|mut a| a.remove(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .ok_or_else(|| anyhow!("no queue arn"))?;
    Ok((url, arn))
}
