//! Lambda entry point of `lake`: wiring only. The handler is `lake::handler`.

use std::sync::Arc;

use lake::handler::LakeHandler;
use lake::objects::CustomerKeys;
use lake::store::S3ObjectStore;
use orderflow_contracts::AnyEvent;
use orderflow_harness::aws::connections::Service;
use orderflow_harness::config::{self, ConsumerConfig};
use orderflow_harness::secret::{SecretSource, SecretsManagerSource};
use orderflow_harness::{aws, telemetry, BatchConsumer};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let consumer_config = ConsumerConfig::from_env()?;
    let bucket = config::required("LAKE_BUCKET")?;
    // Secrets Manager: its connection is opened by the keys' read below.
    let sdk = aws::sdk_config_opening(&[Service::S3Bucket(bucket.clone())]).await?;
    let store = S3ObjectStore::new(aws_sdk_s3::Client::new(&sdk), bucket);
    // Read once: the key is part of every line written (see CustomerKeys on changing it).
    let secret_id = config::required("CUSTOMER_KEY_SECRET_ID")?;
    let keys = CustomerKeys::new(&SecretsManagerSource::new(&sdk, secret_id).fetch().await?)?;
    BatchConsumer::<AnyEvent>::from_config(&consumer_config, &sdk, Arc::new(LakeHandler::new(Arc::new(store), keys)))
        .run()
        .await
}
