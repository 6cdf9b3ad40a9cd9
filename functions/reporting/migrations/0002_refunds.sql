-- Refunds (PaymentRefunded, for cancelled orders): what was given back, whatever the version.
ALTER TABLE orders ADD COLUMN refunded_minor bigint;
ALTER TABLE orders ADD COLUMN refunded_at timestamptz;

-- Revenue nets refunds: what was billed less what was given back.
DROP VIEW daily_order_report;
CREATE VIEW daily_order_report AS
SELECT (placed_at AT TIME ZONE 'UTC')::date                                     AS day,
       currency,
       status,
       count(*)                                                                  AS orders,
       (coalesce(sum(billed_minor), 0) - coalesce(sum(refunded_minor), 0))::bigint AS revenue_minor,
       coalesce(sum(refunded_minor), 0)::bigint                                  AS refunded_minor
FROM orders
WHERE placed_at IS NOT NULL
GROUP BY 1, 2, 3;
