//! `infra/template.yaml` read as data, so tests can hold the template and the code to each other:
//! which rule feeds which consumer with which event pattern, and which environment variables each
//! function gets. Each consumer's row in the consumer table (`orderflow-consumers`) says which Rust
//! type it reads.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context as _, Result};
use serde_json::Value as Json;
use serde_norway::Value;

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// One function of the template.
#[derive(Debug, Clone)]
pub struct Function {
    /// Its logical id, e.g. `BillingFunction`.
    pub logical_id: String,
    /// `Metadata.BuildProperties.Binary`.
    pub binary: String,
    /// Its own `Environment.Variables` names (not the globals).
    pub env: BTreeSet<String>,
    /// The logical id of the SQS queue its `SQS` event reads, if it is a queue consumer.
    pub queue: Option<String>,
    /// Its `CONSUMER_NAME`, if set to a plain string.
    pub consumer_name: Option<String>,
}

/// One EventBridge rule of the template.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Its logical id.
    pub logical_id: String,
    /// Its event pattern, as JSON (what `PutRule` takes).
    pub pattern: Json,
    /// Logical ids of the queues it targets.
    pub target_queues: Vec<String>,
}

/// The template, parsed.
pub struct Template {
    resources: BTreeMap<String, Value>,
    globals_env: BTreeSet<String>,
}

/// The logical id a `!Ref X` or `!GetAtt X.Attr` names.
pub fn tagged_ref(v: &Value) -> Option<String> {
    // `!GetAtt X.Arn` or `!Ref X`: the logical id X.
    match v {
        Value::Tagged(t) => t.value.as_str().map(|s| s.split('.').next().unwrap_or(s).to_string()),
        _ => None,
    }
}

fn keys(v: Option<&Value>) -> BTreeSet<String> {
    v.and_then(Value::as_mapping)
        .map(|m| m.keys().filter_map(|k| k.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// A YAML value as JSON (tags dropped: `!Ref X` reads as `"X"`).
pub fn to_json(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Number(n) => serde_json::to_value(n).unwrap_or(Json::Null),
        Value::String(s) => Json::String(s.clone()),
        Value::Sequence(items) => Json::Array(items.iter().map(to_json).collect()),
        Value::Mapping(m) => {
            Json::Object(m.iter().filter_map(|(k, v)| k.as_str().map(|k| (k.to_string(), to_json(v)))).collect())
        }
        Value::Tagged(t) => to_json(&t.value),
    }
}

impl Template {
    /// Reads `infra/template.yaml`.
    pub fn load() -> Result<Self> {
        let path = root().join("infra/template.yaml");
        let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
        let doc: Value = serde_norway::from_str(&text).context("infra/template.yaml is not YAML")?;
        let resources = doc
            .get("Resources")
            .and_then(Value::as_mapping)
            .ok_or_else(|| anyhow!("no Resources"))?
            .iter()
            .filter_map(|(k, v)| k.as_str().map(|k| (k.to_string(), v.clone())))
            .collect();
        let globals_env = keys(
            doc.get("Globals")
                .and_then(|g| g.get("Function"))
                .and_then(|f| f.get("Environment"))
                .and_then(|e| e.get("Variables")),
        );
        Ok(Self { resources, globals_env })
    }

    /// Every resource's logical id.
    pub fn resource_ids(&self) -> Vec<String> {
        self.resources.keys().cloned().collect()
    }

    /// One resource, by logical id.
    pub fn resource(&self, id: &str) -> Option<&Value> {
        self.resources.get(id)
    }

    /// Every resource of the type `kind` (`AWS::CloudWatch::Alarm`), with its logical id.
    pub fn of_type<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = (&'a String, &'a Value)> + 'a {
        self.resources.iter().filter(move |(_, r)| r.get("Type").and_then(Value::as_str) == Some(kind))
    }

    /// Environment variables every function gets.
    pub fn globals_env(&self) -> &BTreeSet<String> {
        &self.globals_env
    }

    /// Every `AWS::Serverless::Function`.
    pub fn functions(&self) -> Vec<Function> {
        self.of_type("AWS::Serverless::Function")
            .map(|(id, r)| {
                let props = r.get("Properties");
                let queue = props
                    .and_then(|p| p.get("Events"))
                    .and_then(Value::as_mapping)
                    .into_iter()
                    .flat_map(|m| m.values())
                    .find(|e| e.get("Type").and_then(Value::as_str) == Some("SQS"))
                    .and_then(|e| e.get("Properties")?.get("Queue"))
                    .and_then(tagged_ref);
                Function {
                    logical_id: id.clone(),
                    binary: r
                        .get("Metadata")
                        .and_then(|m| m.get("BuildProperties"))
                        .and_then(|b| b.get("Binary"))
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    env: keys(props.and_then(|p| p.get("Environment")).and_then(|e| e.get("Variables"))),
                    queue,
                    consumer_name: props
                        .and_then(|p| p.get("Environment"))
                        .and_then(|e| e.get("Variables"))
                        .and_then(|v| v.get(orderflow_harness::config::vars::CONSUMER_NAME))
                        .and_then(Value::as_str)
                        .map(str::to_string),
                }
            })
            .collect()
    }

    /// Every `AWS::Events::Rule`.
    pub fn rules(&self) -> Vec<Rule> {
        self.of_type("AWS::Events::Rule")
            .map(|(id, r)| {
                let props = r.get("Properties");
                Rule {
                    logical_id: id.clone(),
                    pattern: props.and_then(|p| p.get("EventPattern")).map(to_json).unwrap_or(Json::Null),
                    target_queues: props
                        .and_then(|p| p.get("Targets"))
                        .and_then(Value::as_sequence)
                        .into_iter()
                        .flatten()
                        .filter_map(|t| t.get("Arn").and_then(tagged_ref))
                        .collect(),
                }
            })
            .collect()
    }

    /// The rule feeding `queue`, if any.
    pub fn rule_for_queue(&self, queue: &str) -> Option<Rule> {
        self.rules().into_iter().find(|r| r.target_queues.iter().any(|q| q == queue))
    }
}

/// The source file of a Lambda binary: `functions/*/src/bin/<binary>.rs`, or the `main.rs` of the
/// crate named after it.
pub fn main_source(binary: &str) -> Option<PathBuf> {
    let functions = root().join("functions");
    for entry in std::fs::read_dir(&functions).ok()?.flatten() {
        let crate_dir = entry.path();
        let bin = crate_dir.join("src/bin").join(format!("{binary}.rs"));
        if bin.exists() {
            return Some(bin);
        }
        if crate_dir.file_name().and_then(|n| n.to_str()) == Some(binary) && crate_dir.join("src/main.rs").exists() {
            return Some(crate_dir.join("src/main.rs"));
        }
    }
    None
}

/// The environment variables a source file reads through `config::required` (`.0`) and
/// `config::parsed_or` (`.1`), named as a string or as one of the harness's `config::vars`, the
/// consumer harness's when it builds a `ConsumerConfig`, and the order cache's when it opens one.
pub fn variables_read(source: &Path) -> Result<(BTreeSet<String>, BTreeSet<String>)> {
    fn scan(text: &str, call: &str) -> BTreeSet<String> {
        text.match_indices(call)
            .filter_map(|(i, _)| {
                let arg = &text[i + call.len()..];
                if let Some(literal) = arg.strip_prefix('"') {
                    literal.split('"').next().map(str::to_string)
                } else {
                    // `config::vars::NAME` or `vars::NAME`: each constant's value is its own name.
                    let path: String =
                        arg.chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect();
                    path.rsplit("::")
                        .next()
                        .filter(|name| path.contains("vars::") && !name.is_empty())
                        .map(str::to_string)
                }
            })
            .collect()
    }
    let text = std::fs::read_to_string(source).with_context(|| source.display().to_string())?;
    let (mut required, mut optional) = (scan(&text, "required("), scan(&text, "parsed_or("));
    if text.contains("ConsumerConfig::from_env") {
        use orderflow_harness::config::vars;
        required.extend(vars::CONSUMER_REQUIRED.iter().map(|v| v.to_string()));
        optional.extend(vars::CONSUMER_OPTIONAL.iter().map(|v| v.to_string()));
    }
    if text.contains("RedisOrderCache::from_env") {
        optional.extend(orderflow_order_cache::vars::OPTIONAL.iter().map(|v| v.to_string()));
    }
    Ok((required, optional))
}
