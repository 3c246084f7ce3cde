-- function_list: $1 the names of the functions this client ships (text[]).
-- One row per shipped or recorded function: its checksum in the function
-- ledger (NULL when not recorded) and whether a function of that name exists
-- in the schema (a migration may have dropped it to change its signature).
SELECT coalesce(s.name, f.name) AS name,
       f.checksum,
       EXISTS (
           SELECT 1 FROM pg_proc p
           WHERE p.pronamespace = to_regnamespace(:'schema')
             AND p.proname = coalesce(s.name, f.name)
       ) AS present
FROM unnest($1::text[]) AS s(name)
FULL JOIN :"schema".schema_functions f ON f.name = s.name
ORDER BY 1
