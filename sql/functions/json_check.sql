-- json_check: $1 unchanged, after checking it against the payload rules
-- (docs/payloads.md), raising SQLSTATE 22023 (PayloadError in both clients)
-- naming $2 ('payload', 'headers', ...) when it breaks one:
--   * arrays and objects nest at most 64 levels (serde_json stops at 128,
--     Python's decoder near its recursion limit);
--   * every number's magnitude is below 2^1024 - 2^970, what rounds to the
--     largest 64-bit float: finite for every client (at most 309 integer
--     digits; Python refuses integers over 4,300 digits).
-- $3 true: $1 is an array whose elements are the documents to check (one
-- call for message_insert's whole batch).
-- The clients check the same rules before sending; this is for rows sent by
-- other means (a role calling the functions directly). Internal: called by
-- message_insert and message_enqueue, granted to no role.
-- Cost (docs/payloads.md): a jsonb_path_exists walk for the depth and a
-- regular expression over the text for the numbers, in C.
CREATE OR REPLACE FUNCTION :"schema".json_check(jsonb, text, boolean DEFAULT false)
RETURNS jsonb
LANGUAGE plpgsql
IMMUTABLE
SECURITY DEFINER
SET search_path = :"schema", pg_temp
AS $function$
DECLARE
    written text;
BEGIN
    -- Not STRICT: PostgreSQL folds a strict call on a NULL constant without
    -- checking EXECUTE, and no role may call this at all.
    IF $1 IS NULL THEN
        RETURN NULL;
    END IF;
    IF jsonb_path_exists($1, CASE WHEN $3
            THEN 'strict $[*].**{64} ? (@.type() == "array" || @.type() == "object")'
            ELSE 'strict $.**{64} ? (@.type() == "array" || @.type() == "object")' END::jsonpath) THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('%s is nested deeper than 64 levels (the limit, so that every client can decode it)', $2);
    END IF;
    -- Numbers: jsonb writes them without exponents, so one too large shows as
    -- 309 digits in a row; a regular expression on the text (~4 us a payload)
    -- spares the per-value comparison (~14 us) unless such a run appears.
    written := $1::text;
    IF octet_length(written) > 308 AND written ~ '[0-9]{200}[0-9]{109}'
       AND jsonb_path_exists($1, 'strict $.** ? (@.type() == "number" && (@ >= 179769313486231580793728971405303415079934132710037826936173778980444968292764750946649017977587207096330286416692887910946555547851940402630657488671505820681908902000708383676273854845817711531764475730270069855571366959622842914819860834936475292719074168444365510704342711559699508093042880177904174497792 || @ <= -179769313486231580793728971405303415079934132710037826936173778980444968292764750946649017977587207096330286416692887910946555547851940402630657488671505820681908902000708383676273854845817711531764475730270069855571366959622842914819860834936475292719074168444365510704342711559699508093042880177904174497792))') THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('%s holds a number beyond the range of a 64-bit float (the limit, so that every client reads it as a finite number); send it as a string', $2);
    END IF;
    RETURN $1;
END
$function$;

REVOKE ALL ON FUNCTION :"schema".json_check(jsonb, text, boolean) FROM PUBLIC;
