//! The table. Adding a consumer: a crate under `functions/` on the harness, a row here, then
//! `make generate` (the README's "Adding a consumer").

use orderflow_contracts::{AnyEvent, Event, OrderBilled, OrderStatusChanged, ShippingLabelCreated};

use crate::{routes, Allow, Consumer, Feed, Replays, DEFAULTS};

/// Why the consumers that reach people or other systems take no replays.
const REACHES_PEOPLE: &str = "its effects reach people or other systems";

/// Every SQS consumer of the stack, in the template's order.
pub const CONSUMERS: &[Consumer] = &[
    // ------------------------------------------------------------ the workflow, by choreography
    Consumer {
        name: "billing",
        id: "Billing",
        binary: "billing",
        code: "functions/billing",
        does: "OrderPlaced -> invoice, charge -> OrderBilled | PaymentDeclined; OrderCancelled -> refund -> PaymentRefunded",
        feed: Feed::Bus(routes::<billing::handler::BillingInput>()),
        max_concurrency: 5,
        concurrency_why: "a step of the workflow; the Sales API keeps the rest of the account's concurrency",
        env: &[
            ("INVOICES_TABLE", "!Ref InvoicesTable"),
            ("DECLINE_ABOVE_MINOR", "!Ref DeclineAboveMinor"),
            ("DECLINE_EMAIL_MARKER", "!Ref DeclineEmailMarker"),
        ],
        allow: &[
            Allow {
                actions: &["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
                resource: "!GetAtt InvoicesTable.Arn",
                condition: None,
            },
        ],
        publishes: Some(<OrderBilled as Event>::SOURCE),
        // What its handler announces, and nothing else of Billing's source: a bug or a compromise
        // of it cannot announce a label (which would ship an order and text the customer).
        publishes_only: &["OrderBilled", "PaymentDeclined", "PaymentRefunded"],
        replays: Replays::Refused(
            "it charges and refunds customers and announces the outcome: a replay would publish OrderBilled, \
             PaymentDeclined or PaymentRefunded again, as live events, and run the rest of the workflow once more",
        ),
        idempotency: false,
        ..DEFAULTS
    },
    Consumer {
        name: "warehouse",
        id: "Warehouse",
        binary: "warehouse",
        code: "functions/warehouse",
        does: "OrderBilled -> allocate, label -> ShippingLabelCreated | StockAllocationFailed (a backorder); StockReceived -> backorders oldest first; OrderCancelled -> StockReleased",
        feed: Feed::Bus(routes::<warehouse::handler::WarehouseInput>()),
        max_concurrency: 5,
        concurrency_why: "a step of the workflow; the Sales API keeps the rest of the account's concurrency",
        env: &[
            ("STOCK_TABLE", "!Ref StockTable"),
            ("SHIPMENTS_TABLE", "!Ref ShipmentsTable"),
            ("LABELS_BUCKET", "!Ref LabelsBucket"),
        ],
        allow: &[
            // Stock levels, and the receipts kept beside them (`receipt#<id>`).
            Allow {
                actions: &[
                    "dynamodb:GetItem",
                    "dynamodb:PutItem",
                    "dynamodb:UpdateItem",
                    "dynamodb:BatchGetItem",
                ],
                resource: "!GetAtt StockTable.Arn",
                condition: None,
            },
            Allow {
                actions: &["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
                resource: "!GetAtt ShipmentsTable.Arn",
                condition: None,
            },
            Allow { actions: &["dynamodb:Query"], resource: "!Sub \"${ShipmentsTable.Arn}/index/Backorders\"", condition: None },
            Allow {
                actions: &["s3:PutObject", "s3:DeleteObject"],
                resource: "!Sub \"${LabelsBucket.Arn}/labels/*\"",
                condition: None,
            },
        ],
        publishes: Some(<ShippingLabelCreated as Event>::SOURCE),
        // Receipts are the stock route's (WarehouseApiFunction) to announce, not the consumer's.
        publishes_only: &["ShippingLabelCreated", "StockAllocationFailed", "StockReleased"],
        replays: Replays::Refused(
            "it allocates and releases stock and announces the outcome: a replay would publish \
             ShippingLabelCreated, StockAllocationFailed or StockReleased again, as live events",
        ),
        idempotency: false,
        ..DEFAULTS
    },
    Consumer {
        name: "sales-order-status",
        id: "SalesOrderStatus",
        binary: "sales-order-status",
        code: "functions/sales/src/order_status.rs",
        does: "ShippingLabelCreated | PaymentDeclined | StockAllocationFailed | PaymentRefunded | a backorder's deadline -> order status",
        feed: Feed::Bus(routes::<sales::order_status::StatusInput>()),
        max_concurrency: 5,
        concurrency_why: "a step of the workflow; the Sales API keeps the rest of the account's concurrency",
        env: &[
            ("ORDERS_TABLE", "!Ref OrdersTable"),
            ("BACKORDER_DEADLINE_SECONDS", "!Ref BackorderDeadlineSeconds"),
            ("DEADLINE_SCHEDULE_GROUP", "!Ref BackorderDeadlineGroup"),
            // The scheduler delivers a backorder's deadline to this consumer's own queue.
            ("DEADLINE_QUEUE_ARN", "!GetAtt SalesOrderStatusQueue.Arn"),
            ("DEADLINE_ROLE_ARN", "!GetAtt BackorderDeadlineRole.Arn"),
            // A deadline the scheduler could not deliver lands in this consumer's dead-letter queue.
            ("DEADLINE_DEAD_LETTER_ARN", "!GetAtt SalesOrderStatusDeadLetterQueue.Arn"),
            // The outbox's fast path (functions/sales/src/announce.rs), as the Sales API.
            ("OUTBOX_PUBLISH_ON_WRITE", "!Ref OutboxPublishOnWrite"),
            ("OUTBOX_MARKS_TABLE", "!Ref OutboxMarksTable"),
        ],
        allow: &[
            Allow { actions: &["dynamodb:GetItem", "dynamodb:UpdateItem"], resource: "!GetAtt OrdersTable.Arn", condition: None },
            Allow { actions: &["dynamodb:UpdateItem"], resource: "!GetAtt OutboxMarksTable.Arn", condition: None },
            Allow {
                actions: &["scheduler:CreateSchedule", "scheduler:DeleteSchedule"],
                resource: "!Sub \"arn:${AWS::Partition}:scheduler:${AWS::Region}:${AWS::AccountId}:schedule/${BackorderDeadlineGroup}/backorder-*\"",
                condition: None,
            },
            Allow {
                actions: &["iam:PassRole"],
                resource: "!GetAtt BackorderDeadlineRole.Arn",
                condition: Some("{StringEquals: {iam:PassedToService: scheduler.amazonaws.com}}"),
            },
        ],
        // The events of its own writes, on the outbox's fast path (the relay publishes the rest).
        publishes: Some(<OrderStatusChanged as Event>::SOURCE),
        publishes_only: &["OrderStatusChanged", "OrderCancelled"],
        // An order already in the status an event asks for is left alone, so a replay changes nothing
        // and announces nothing; it can repair an order whose status change was lost. Such a repair
        // announces OrderStatusChanged as a live event (email, SMS and webhooks then tell the
        // customer), with an event id derived from its cause, so a repeat is dropped downstream for
        // as long as the consumers remember it (IDEMPOTENCY_TTL_SECONDS, 14 days; the archive keeps 30).
        replays: Replays::Accepted,
        idempotency: false,
        ..DEFAULTS
    },
    // ------------------------------------------------------------ external integrations
    Consumer {
        name: "email",
        id: "Email",
        binary: "email",
        code: "functions/email",
        does: "OrderPlaced | OrderStatusChanged -> an email through SES v2",
        feed: Feed::Bus(routes::<email::handler::EmailInput>()),
        max_concurrency: 2,
        records_at_once: 4,
        concurrency_why: "SES's sending rate (14 a second for a new account): two instances of four sends at a time, each send about 100 ms, stay near it, and SES's throttling is retried",
        // One record may take its budget (the README's "Time budgets") and the batch a second to
        // settle: two waves fit.
        timeout_s: 15,
        depends_on: Some("EmailSenderIdentity"),
        env: &[("EMAIL_FROM", "!Ref EmailSender")],
        allow: &[
            Allow {
                // The suite's own identity only (the address, or its domain if that is what is
                // verified), and only as the sender.
                actions: &["ses:SendEmail", "ses:GetEmailIdentity"],
                resource: "[!Sub \"arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:identity/${EmailSender}\", !Sub [\"arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:identity/${Domain}\", {Domain: !Select [1, !Split [\"@\", !Ref EmailSender]]}]]",
                condition: Some("{StringEqualsIfExists: {ses:FromAddress: !Ref EmailSender}}"),
            },
        ],
        replays: Replays::Refused(REACHES_PEOPLE),
        ..DEFAULTS
    },
    Consumer {
        name: "sms",
        id: "Sms",
        binary: "sms",
        code: "functions/sms",
        does: "OrderStatusChanged (ReadyToShip; Cancelled with a refund) -> a text through Twilio",
        feed: Feed::Bus(routes::<sms::handler::SmsInput>()),
        max_concurrency: 2,
        records_at_once: 4,
        concurrency_why: "Twilio queues what a number cannot send at once: two instances of four texts at a time keep that queue short",
        timeout_s: 15,
        env: &[
            ("TWILIO_SECRET_ID", "!Ref TwilioSecret"),
            ("SECRET_MAX_AGE_SECONDS", "!Ref SecretMaxAgeSeconds"),
            ("TWILIO_FROM", "!Ref TwilioFrom"),
            ("TWILIO_BASE_URL", "!Ref TwilioApiBaseUrl"),
        ],
        allow: &[Allow { actions: &["secretsmanager:GetSecretValue"], resource: "!Ref TwilioSecret", condition: None }],
        replays: Replays::Refused(REACHES_PEOPLE),
        ..DEFAULTS
    },
    Consumer {
        name: "webhooks-fanout",
        id: "WebhookFanout",
        binary: "webhooks-fanout",
        code: "functions/webhooks/src/fanout.rs",
        does: "every event -> one delivery per matching subscription on the deliveries queue",
        feed: Feed::Bus(routes::<AnyEvent>()),
        max_concurrency: 2,
        concurrency_why: "one table scan and one queue send per event",
        env: &[
            ("SUBSCRIPTIONS_TABLE", "!Ref WebhookSubscriptionsTable"),
            ("DELIVERIES_QUEUE_URL", "!Ref WebhookDeliveryQueue"),
        ],
        allow: &[
            // Routes only (id, event types, active, created): never a subscriber's URL or signing secret.
            Allow {
                actions: &["dynamodb:Scan"],
                resource: "!GetAtt WebhookSubscriptionsTable.Arn",
                condition: Some(
                    "{ForAllValues:StringEquals: {dynamodb:Attributes: [id, eventTypes, active, createdAt]}, StringEquals: {dynamodb:Select: SPECIFIC_ATTRIBUTES}}",
                ),
            },
            Allow { actions: &["sqs:SendMessage"], resource: "!GetAtt WebhookDeliveryQueue.Arn", condition: None },
        ],
        replays: Replays::Refused(REACHES_PEOPLE),
        ..DEFAULTS
    },
    Consumer {
        name: "webhooks-delivery",
        id: "WebhookDelivery",
        binary: "webhooks-delivery",
        code: "functions/webhooks/src/delivery.rs",
        does: "one event to one subscriber, signed per Standard Webhooks, behind the SSRF guard",
        feed: Feed::Consumer { name: "webhooks-fanout", env: "DELIVERIES_QUEUE_URL" },
        max_concurrency: 10,
        concurrency_why: "subscribers answer slowly or not at all: more instances keep one slow subscriber from holding up the rest",
        timeout_s: 15,
        env: &[
            ("SUBSCRIPTIONS_TABLE", "!Ref WebhookSubscriptionsTable"),
            ("WEBHOOKS_ALLOW_LOCAL", "!Ref WebhooksAllowLocal"),
        ],
        allow: &[
            // The subscription it delivers to: its URL and signing secret.
            Allow { actions: &["dynamodb:GetItem"], resource: "!GetAtt WebhookSubscriptionsTable.Arn", condition: None },
            // Switching a subscription off (a subscriber's 410), and nothing else of it: never its URL
            // or secret (webhooks::subscriptions::DEACTIVATION_ATTRIBUTES), nor an answer with the
            // item's other attributes.
            Allow {
                actions: &["dynamodb:UpdateItem"],
                resource: "!GetAtt WebhookSubscriptionsTable.Arn",
                condition: Some(
                    "{ForAllValues:StringEquals: {dynamodb:Attributes: [id, active]}, StringEqualsIfExists: {dynamodb:ReturnValues: NONE}}",
                ),
            },
        ],
        // No rule feeds it, so no replay reaches it but through the fan-out, which refuses them.
        replays: Replays::Refused(REACHES_PEOPLE),
        ..DEFAULTS
    },
    // ------------------------------------------------------------ state transfer: the read models
    Consumer {
        name: "cache",
        id: "Cache",
        binary: "cache",
        code: "functions/cache",
        does: "OrderStatusChanged -> the order in Redis, newest version wins",
        feed: Feed::Bus(routes::<OrderStatusChanged>()),
        max_concurrency: 5,
        concurrency_why: "one short Redis script per event",
        condition: Some("HasCache"),
        in_vpc: true,
        env: &[("REDIS_URL", "!Ref RedisUrl"), ("CACHE_TTL_SECONDS", "!Ref CacheTtlSeconds")],
        allow: &[],
        replays: Replays::Accepted,
        idempotency: false,
        ..DEFAULTS
    },
    Consumer {
        name: "reporting",
        id: "Reporting",
        binary: "reporting",
        code: "functions/reporting",
        does: "OrderPlaced | OrderBilled | OrderStatusChanged | PaymentRefunded -> PostgreSQL orders and order lines, by version; revenue nets refunds",
        feed: Feed::Bus(routes::<reporting::handler::ReportingInput>()),
        max_concurrency: 3,
        concurrency_why: "the database's connections: three instances with a pool of two each hold six at most",
        condition: Some("HasReporting"),
        in_vpc: true,
        env: &[
            ("REPORTING_DB_HOST", "!Ref ReportingDbHost"),
            ("REPORTING_DB_PORT", "!Ref ReportingDbPort"),
            ("REPORTING_DB_NAME", "!Ref ReportingDbName"),
            ("REPORTING_DB_USER", "!Ref ReportingDbUser"),
            ("REPORTING_DB_SECRET_ID", "!Ref ReportingDbSecretArn"),
            ("SECRET_MAX_AGE_SECONDS", "!Ref SecretMaxAgeSeconds"),
            ("REPORTING_DB_SSL", "!Ref ReportingDbSsl"),
            ("REPORTING_DB_CA_FILE", "!Ref ReportingDbCaFile"),
        ],
        allow: &[
            Allow {
                actions: &["secretsmanager:GetSecretValue"],
                resource: "!If [HasReportingDbSecret, !Ref ReportingDbSecretArn, !Sub \"arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:none\"]",
                condition: None,
            },
        ],
        replays: Replays::Accepted,
        idempotency: false,
        ..DEFAULTS
    },
    Consumer {
        name: "lake",
        id: "Lake",
        binary: "lake",
        code: "functions/lake",
        does: "every event -> gzip JSON Lines in S3, Hive partitions, one object per batch",
        feed: Feed::Bus(routes::<AnyEvent>()),
        batch_size: 100,
        batching_window_s: 5,
        max_concurrency: 2,
        concurrency_why: "fewer, larger objects: one per batch and partition",
        oldest_message_alarm_s: 1800,
        env: &[("LAKE_BUCKET", "!Ref LakeBucket"), ("CUSTOMER_KEY_SECRET_ID", "!Ref LakeCustomerKeySecret")],
        allow: &[
            Allow { actions: &["s3:PutObject"], resource: "!Sub \"${LakeBucket.Arn}/events/*\"", condition: None },
            Allow { actions: &["secretsmanager:GetSecretValue"], resource: "!Ref LakeCustomerKeySecret", condition: None },
        ],
        // The batch harness keeps no idempotency records: the lake's object names make it idempotent.
        idempotency: false,
        replays: Replays::Accepted,
        ..DEFAULTS
    },
];
