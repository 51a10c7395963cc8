#!/bin/bash
# Optional write load on the compose source database (`docker compose --profile traffic up -d`):
# every second a few inserts, updates and a delete on public.orders, so a change stream
# (dags/syncs/shop_stream.yaml) has something to apply. Stop it with `docker compose stop traffic`.
set -euo pipefail
echo "traffic: writing to ${PGHOST}/${PGDATABASE} every second"
while true; do
  psql -v ON_ERROR_STOP=1 -q <<'SQL'
BEGIN;
INSERT INTO public.orders (customer_id, sku, quantity, amount, status, ordered_at)
SELECT 1 + (random() * 49999)::int, 'SKU-' || lpad((1 + (random() * 1999)::int)::text, 5, '0'),
       1 + (random() * 4)::int, round((random() * 500)::numeric, 2), 'new', now()
FROM generate_series(1, 5);
UPDATE public.orders SET status = 'paid'
WHERE id IN (SELECT id FROM public.orders WHERE status = 'new' ORDER BY random() LIMIT 3);
DELETE FROM public.orders WHERE id = (SELECT min(id) FROM public.orders WHERE status = 'returned');
COMMIT;
SQL
  sleep 1
done
