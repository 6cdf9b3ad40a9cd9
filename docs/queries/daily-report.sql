-- Daily figures from the reporting database: orders per status and revenue (what was billed, less
-- what was refunded to cancelled orders), in minor units (5743 is 57.43).
SELECT day, currency, status, orders, revenue_minor
FROM daily_order_report
ORDER BY day, currency, status;
