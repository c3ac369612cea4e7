-- Synthetic event store for the rebuild figure (`lathe replay`), written straight into `events` with SQL because
-- sending 500,000 webhook deliveries through the service would take longer than the rest of the benchmark.
--
-- The events are copies of the events the service itself wrote for one webhook delivery in this run (the
-- "template": `BuildReceived` + `BuildQueued` of one build, passed in as JSON rows), one copy per synthetic build
-- with its own aggregate id, build number, request id and delivery id, and with the organization and API key of
-- the database they are written to. Every other column is copied from the template, or left to its default
-- (identity/global-order columns). When `events` has a `hash` column (a per-stream SHA-256 chain), each copy is
-- chained the way migration 20261126000003 chains existing events: sha256(field(previous) || field(type) ||
-- field(id) || field(sequence) || field(event_type) || field(event_version) || field(payload) || field(metadata)),
-- field(v) = octet_length(v) || ':' || v.
--
-- psql variables: streams (how many synthetic builds), template (JSON array of the template's `events` rows).
-- Run by bench/run.sh against a database that `lathe migrate` and `lathe org create` prepared.
\set ON_ERROR_STOP on
SET client_min_messages = warning;

CREATE TEMP TABLE bench_template AS SELECT * FROM events WITH NO DATA;
INSERT INTO bench_template SELECT * FROM json_populate_recordset(NULL::bench_template, :'template');

-- The values to put in place of the template's own.
CREATE TEMP TABLE bench_values AS
SELECT t.aggregate_id                                                   AS old_id,
       substring(t.payload -> 'BuildReceived' ->> 'source_key' FROM '([0-9]+)$') AS old_build,
       t.payload -> 'BuildReceived' ->> 'organization_id'               AS old_org,
       t.metadata ->> 'actor.api_key_id'                                AS old_key_id,
       t.metadata ->> 'actor.api_key_prefix'                            AS old_prefix,
       t.metadata ->> 'request_id'                                      AS old_request,
       t.metadata ->> 'delivery.id'                                     AS old_delivery,
       (SELECT aggregate_id FROM events WHERE aggregate_type = 'Organization' ORDER BY recorded_at LIMIT 1)
                                                                        AS new_org,
       (SELECT aggregate_id FROM events WHERE aggregate_type = 'ApiKey' ORDER BY recorded_at LIMIT 1)
                                                                        AS new_key_id,
       (SELECT payload -> 'ApiKeyCreated' ->> 'prefix' FROM events WHERE aggregate_type = 'ApiKey'
        ORDER BY recorded_at LIMIT 1)                                   AS new_prefix
FROM bench_template t
WHERE t.event_type = 'BuildReceived';

DO $$
BEGIN
    IF (SELECT count(*) FROM bench_values) <> 1
       OR EXISTS (SELECT FROM bench_values WHERE old_build IS NULL OR new_org IS NULL OR new_key_id IS NULL) THEN
        RAISE EXCEPTION 'the template must be one webhook-delivered build (BuildReceived with a numeric source key) '
                        'and the database must hold an organization and an API key';
    END IF;
END $$;

CREATE FUNCTION pg_temp.bench_field(value text) RETURNS text LANGUAGE sql IMMUTABLE AS
$$ SELECT octet_length(value)::text || ':' || value $$;

SELECT set_config('bench.streams', :'streams', false) \g /dev/null

DO $$
DECLARE
    streams  bigint := current_setting('bench.streams')::bigint;
    steps    int;
    columns  text;
    exprs    text;
    chained  boolean;
    step     int;
BEGIN
    SELECT max(sequence) INTO steps FROM bench_template;
    SELECT EXISTS (SELECT FROM pg_attribute WHERE attrelid = 'events'::regclass AND attname = 'hash'
                   AND NOT attisdropped) INTO chained;
    -- Every column the service writes itself; identity, generated and defaulted ones are left to the table.
    SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum),
           string_agg(CASE a.attname
                          WHEN 'aggregate_id' THEN 's.id'
                          WHEN 'payload' THEN 'x.payload::json'
                          WHEN 'metadata' THEN 'x.metadata::json'
                          WHEN 'recorded_at' THEN 'now() + s.g * interval ''1 microsecond'''
                          WHEN 'organization_id' THEN 'v.new_org::uuid'
                          WHEN 'hash' THEN
                              'encode(sha256(convert_to(pg_temp.bench_field(coalesce(p.hash, '''')) '
                              '|| pg_temp.bench_field(t.aggregate_type) || pg_temp.bench_field(s.id) '
                              '|| pg_temp.bench_field(t.sequence::text) || pg_temp.bench_field(t.event_type) '
                              '|| pg_temp.bench_field(t.event_version) || pg_temp.bench_field(x.payload) '
                              '|| pg_temp.bench_field(x.metadata), ''UTF8'')), ''hex'')'
                          ELSE 't.' || quote_ident(a.attname)
                      END, ', ' ORDER BY a.attnum)
      INTO columns, exprs
      FROM pg_attribute a
     WHERE a.attrelid = 'events'::regclass AND a.attnum > 0 AND NOT a.attisdropped
       AND a.attidentity = '' AND a.attgenerated = '' AND (NOT a.atthasdef OR a.attname = 'recorded_at');
    -- One statement per position in the stream, so that a chained event can read its predecessor's hash.
    FOR step IN 1..steps LOOP
        EXECUTE format(
            'INSERT INTO events (%s)
             SELECT %s
               FROM generate_series(1, $1) AS n(g)
              CROSS JOIN bench_values v
              CROSS JOIN LATERAL (SELECT n.g,
                                         md5(''lathe-bench-replay/'' || n.g)::uuid::text AS id,
                                         (100000000 + n.g)::text AS build,
                                         md5(''lathe-bench-request/'' || n.g)::uuid::text AS request,
                                         md5(''lathe-bench-delivery/'' || n.g)::uuid::text AS delivery) s
               JOIN bench_template t ON t.sequence = $2
              CROSS JOIN LATERAL (SELECT
                     replace(replace(replace(replace(t.payload::text, v.old_id, s.id), v.old_org, v.new_org),
                             ''/'' || v.old_build || ''"'', ''/'' || s.build || ''"''),
                             ''buildId='' || v.old_build || ''"'', ''buildId='' || s.build || ''"'') AS payload,
                     replace(replace(replace(replace(replace(t.metadata::text, v.old_request, s.request),
                             v.old_delivery, s.delivery), v.old_key_id, v.new_key_id), v.old_prefix, v.new_prefix),
                             v.old_org, v.new_org) AS metadata) x
              %s
              ORDER BY s.g',
            columns, exprs,
            CASE WHEN chained THEN
                'LEFT JOIN events p ON p.aggregate_type = t.aggregate_type AND p.aggregate_id = s.id
                                   AND p.sequence = t.sequence - 1'
            ELSE '' END)
        USING streams, step;
    END LOOP;
END $$;
