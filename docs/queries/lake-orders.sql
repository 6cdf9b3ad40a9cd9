-- Orders placed per day, from the lake: one row per order, with how many distinct events it has had
-- so far (an event the lake received twice counts once).
SELECT p.dt, p.order_id, count(DISTINCT e.event_id) AS events
FROM orderflow_events p
JOIN orderflow_events e ON e.order_id = p.order_id
WHERE p.event_type = 'OrderPlaced'
GROUP BY p.dt, p.order_id
ORDER BY p.dt, p.order_id
