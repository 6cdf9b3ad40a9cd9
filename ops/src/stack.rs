//! Finding a consumer's resources in the stack: its function (by `CONSUMER_NAME`), whose
//! environment names its queue and dead-letter queue, and the stack's outputs.

use std::collections::HashMap;

use anyhow::{anyhow, bail, Context, Result};

/// What the commands need to know about one consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerResources {
    /// Its `CONSUMER_NAME`.
    pub name: String,
    /// Its Lambda function.
    pub function: String,
    /// Its queue (`QUEUE_URL`).
    pub queue_url: String,
    /// Its dead-letter queue (`DEAD_LETTER_QUEUE_URL`).
    pub dead_letter_queue_url: String,
}

/// The stack's outputs, by key.
pub async fn outputs(cfn: &aws_sdk_cloudformation::Client, stack: &str) -> Result<HashMap<String, String>> {
    let out =
        cfn.describe_stacks().stack_name(stack).send().await.with_context(|| format!("describing stack {stack}"))?;
    let stack = out.stacks().first().ok_or_else(|| anyhow!("no stack {stack}"))?;
    Ok(stack
        .outputs()
        .iter()
        .filter_map(|o| Some((o.output_key()?.to_string(), o.output_value()?.to_string())))
        .collect())
}

/// The consumer named `name` in `stack`; the error lists the consumers there are.
pub async fn consumer(
    cfn: &aws_sdk_cloudformation::Client,
    lambda: &aws_sdk_lambda::Client,
    stack: &str,
    name: &str,
) -> Result<ConsumerResources> {
    let resources = cfn
        .describe_stack_resources()
        .stack_name(stack)
        .send()
        .await
        .with_context(|| format!("listing the resources of stack {stack}"))?;
    let mut known = Vec::new();
    for resource in resources.stack_resources() {
        if resource.resource_type() != Some("AWS::Lambda::Function") {
            continue;
        }
        let Some(function) = resource.physical_resource_id() else { continue };
        let config = lambda
            .get_function_configuration()
            .function_name(function)
            .send()
            .await
            .with_context(|| format!("reading the configuration of {function}"))?;
        let env = config.environment().and_then(|e| e.variables()).cloned().unwrap_or_default();
        let Some(consumer) = env.get("CONSUMER_NAME") else { continue };
        if consumer != name {
            known.push(consumer.clone());
            continue;
        }
        let var = |key: &str| env.get(key).cloned().ok_or_else(|| anyhow!("{function} has no {key}"));
        return Ok(ConsumerResources {
            name: name.to_string(),
            function: function.to_string(),
            queue_url: var("QUEUE_URL")?,
            dead_letter_queue_url: var("DEAD_LETTER_QUEUE_URL")?,
        });
    }
    known.sort();
    bail!("no consumer `{name}` in stack {stack}; there are: {}", known.join(", "))
}

/// The ARN of a queue.
pub async fn queue_arn(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Result<String> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .with_context(|| format!("reading the ARN of {queue_url}"))?;
    out.attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .cloned()
        .ok_or_else(|| anyhow!("{queue_url} has no QueueArn"))
}
