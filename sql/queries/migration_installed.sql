-- migration_installed: does the schema's migration ledger exist?
SELECT to_regclass(format('%I.schema_migrations', :'schema')) IS NOT NULL AS installed
