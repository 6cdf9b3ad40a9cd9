-- The data lake as an Athena table. Replace the LOCATION's bucket with your stack's LakeBucketName
-- output (locally: orderflow-lake-000000000000-us-east-1). Partitions come from the object paths
-- (partition projection on AWS; the local emulator reads the paths directly).
CREATE EXTERNAL TABLE IF NOT EXISTS orderflow_events (
  event_id       string,
  order_id       string,
  correlation_id string,
  causation_id   string,
  occurred_at    string,
  schema_version int,
  source         string,
  producer       string,
  data           string
)
PARTITIONED BY (event_type string, dt string)
ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'
LOCATION 's3://orderflow-lake-000000000000-us-east-1/events/'
TBLPROPERTIES (
  'classification' = 'json',
  'projection.enabled' = 'true',
  'projection.event_type.type' = 'enum',
  'projection.event_type.values' = 'OrderPlaced,OrderBilled,PaymentDeclined,ShippingLabelCreated,StockAllocationFailed,OrderStatusChanged,OrderCancelled,PaymentRefunded,StockReceived,StockReleased',
  'projection.dt.type' = 'date',
  'projection.dt.format' = 'yyyy-MM-dd',
  'projection.dt.range' = '2024-01-01,NOW',
  'storage.location.template' = 's3://orderflow-lake-000000000000-us-east-1/events/event_type=${event_type}/dt=${dt}/'
)
