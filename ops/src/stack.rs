//! A consumer's resources in the stack, read from the stack's outputs: the consumer table
//! (`orderflow-consumers`) says which outputs name its queue, dead-letter queues, rule and function,
//! and the template's generated outputs carry them. One `DescribeStacks`, no discovery.

use std::collections::HashMap;

use anyhow::{anyhow, bail, Context, Result};
use orderflow_consumers::{Consumer, Output};

/// What the commands need to know about one consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerResources {
    /// Its `CONSUMER_NAME`.
    pub name: String,
    /// Its Lambda function.
    pub function: String,
    /// Its queue.
    pub queue_url: String,
    /// Its dead-letter queue.
    pub dead_letter_queue_url: String,
    /// Its rule on the bus, if a rule feeds it.
    pub rule_arn: Option<String>,
    /// Where the bus keeps what it could not put on the queue, if a rule feeds it.
    pub rule_dead_letter_queue_url: Option<String>,
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

/// The consumer named `name` in the table; the error lists the consumers there are.
pub fn row(name: &str) -> Result<&'static Consumer> {
    orderflow_consumers::find(name)
        .ok_or_else(|| anyhow!("no consumer `{name}`; the consumers are: {}", orderflow_consumers::names().join(", ")))
}

/// The resources of `consumer` among the `outputs` of `stack`.
pub fn consumer(consumer: &Consumer, stack: &str, outputs: &HashMap<String, String>) -> Result<ConsumerResources> {
    let get = |output: Output| outputs.get(&consumer.output(output)).cloned();
    let Some(queue_url) = get(Output::QueueUrl) else {
        match consumer.condition {
            Some(condition) => bail!(
                "consumer `{}` is not deployed in stack {stack}: the template creates it only when {condition} holds \
                 (its store is configured)",
                consumer.name
            ),
            None => bail!(
                "stack {stack} has no output {}: deploy it from this version of infra/template.yaml",
                consumer.output(Output::QueueUrl)
            ),
        }
    };
    let required =
        |output: Output| get(output).ok_or_else(|| anyhow!("stack {stack} has no output {}", consumer.output(output)));
    let (rule_arn, rule_dead_letter_queue_url) = match consumer.routes() {
        Some(_) => (Some(required(Output::RuleArn)?), Some(required(Output::RuleDeadLetterQueueUrl)?)),
        None => (None, None),
    };
    Ok(ConsumerResources {
        name: consumer.name.to_string(),
        function: required(Output::FunctionName)?,
        queue_url,
        dead_letter_queue_url: required(Output::DeadLetterQueueUrl)?,
        rule_arn,
        rule_dead_letter_queue_url,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn outputs_of(consumer: &Consumer, with_rule: bool) -> HashMap<String, String> {
        let mut outputs: HashMap<String, String> = [
            (Output::QueueUrl, "q"),
            (Output::DeadLetterQueueUrl, "dlq"),
            (Output::FunctionName, "fn"),
            (Output::RuleArn, "rule"),
            (Output::RuleDeadLetterQueueUrl, "rule-dlq"),
        ]
        .into_iter()
        .map(|(o, v)| (consumer.output(o), v.to_string()))
        .collect();
        if !with_rule {
            outputs.remove(&consumer.output(Output::RuleArn));
        }
        outputs
    }

    #[test]
    fn a_consumer_is_read_from_the_outputs_the_table_names() {
        let billing = row("billing").unwrap();
        let found = consumer(billing, "s", &outputs_of(billing, true)).unwrap();
        assert_eq!(found.queue_url, "q");
        assert_eq!(found.dead_letter_queue_url, "dlq");
        assert_eq!(found.rule_arn.as_deref(), Some("rule"));
        assert_eq!(found.rule_dead_letter_queue_url.as_deref(), Some("rule-dlq"));
        assert_eq!(found.function, "fn");
        let missing = consumer(billing, "s", &outputs_of(billing, false)).unwrap_err().to_string();
        assert!(missing.contains("BillingRuleArn"), "{missing}");
        // Fed by the fan-out, not by a rule: no rule to ask for.
        let delivery = row("webhooks-delivery").unwrap();
        assert_eq!(consumer(delivery, "s", &outputs_of(delivery, false)).unwrap().rule_arn, None);
    }

    #[test]
    fn an_undeployed_or_unknown_consumer_is_named_with_why() {
        let cache = row("cache").unwrap();
        let err = consumer(cache, "s", &HashMap::new()).unwrap_err().to_string();
        assert!(err.contains("HasCache"), "{err}");
        let err = row("biling").unwrap_err().to_string();
        assert!(err.contains("billing") && err.contains("reporting"), "{err}");
    }
}
