"""pgqrs benchmark suite (not part of the test suite): ``scripts/bench`` runs it.

Every pgqrs figure is measured next to two references on the same server in
the same run: a minimal hand-written psycopg 3 client doing the same steps
(``bench.hand``) and pgbench running the same statements (``bench.pgbench``).
See docs/performance.md.
"""
