-- metrics_scrape: queue health for Prometheus, one statement per scrape: $1
-- rows looked at per queue at most (the sample), $2 seconds without a heartbeat
-- after which a running worker no longer counts as alive.
-- The statement is the function of the same name, in sql/functions/metrics_scrape.sql
-- (SECURITY DEFINER: the read_only role gets EXECUTE on it, never privileges on the tables).
SELECT * FROM :"schema".metrics_scrape($1::integer, $2::float8)
