-- The reporting store: one row per order and one per order line, kept from the events (never
-- written by Sales). Applied by sqlx's migrator when the reporting consumer first connects, or by
-- `orderflow-ops migrate`.

-- `version` is the order's own version (OrderPlaced is 1, each OrderStatusChanged carries its own):
-- a row is only ever replaced by a newer version. 0 means "known only from billing so far".
CREATE TABLE orders (
    order_id        text        PRIMARY KEY,
    version         bigint      NOT NULL,
    status          text,
    currency        text,
    subtotal_minor  bigint,
    shipping_minor  bigint,
    tax_minor       bigint,
    total_minor     bigint,
    placed_at       timestamptz,
    status_at       timestamptz,
    tracking_number text,
    -- From OrderBilled, whatever the version.
    invoice_id      text,
    billed_minor    bigint,
    billed_at       timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE order_lines (
    order_id         text    NOT NULL REFERENCES orders (order_id) ON DELETE CASCADE,
    line_no          integer NOT NULL,
    sku              text    NOT NULL,
    quantity         integer NOT NULL,
    unit_price_minor bigint  NOT NULL,
    line_total_minor bigint  NOT NULL,
    PRIMARY KEY (order_id, line_no)
);

CREATE INDEX orders_placed_day ON orders ((placed_at AT TIME ZONE 'UTC'));

-- Daily figures: orders per status, and revenue (what was billed), per UTC day of placing and
-- currency (amounts in minor units: 5743 is 57.43).
CREATE VIEW daily_order_report AS
SELECT (placed_at AT TIME ZONE 'UTC')::date    AS day,
       currency,
       status,
       count(*)                                 AS orders,
       coalesce(sum(billed_minor), 0)::bigint   AS revenue_minor
FROM orders
WHERE placed_at IS NOT NULL
GROUP BY 1, 2, 3;
