-- function_record: $1 name, $2 checksum (sha256 of sql/functions/<name>.sql),
-- right after the file was run. Returns how many functions of that name the
-- schema holds: more than one means the file changed the signature and no
-- migration dropped the old one (CREATE OR REPLACE made an overload).
INSERT INTO :"schema".schema_functions (name, checksum)
VALUES ($1, $2)
ON CONFLICT (name) DO UPDATE SET checksum = EXCLUDED.checksum, applied_at = now()
RETURNING (
    SELECT count(*) FROM pg_proc p
    WHERE p.pronamespace = to_regnamespace(:'schema') AND p.proname = $1::text
) AS overloads
