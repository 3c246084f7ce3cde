"""A/B: message_insert / message_enqueue with json_check (this branch) vs main's bodies, interleaved."""
import json, time, statistics, subprocess, re
import psycopg
import pgqrs
from bench.server import server

def old_body(name):
    text = subprocess.run(["git", "show", f"main:sql/functions/{name}.sql"], capture_output=True, text=True, check=True).stdout
    text = text.replace(':"schema"', 'pgqrs').replace(f"pgqrs.{name}(", f"pgqrs.{name}_old(")
    return text

with server(None) as dsn:
    cfg = pgqrs.Config(dsn=dsn, schema="pgqrs")
    with pgqrs.Admin(cfg) as admin:
        admin.install()
        admin.create_queue("q")
    payloads = [json.dumps({"user_id": i, "email": f"user{i}@example.com", "items": [1, 2, 3], "meta": {"source": "bench", "n": i}, "h": "e3b0c44298fc1c149afbf4c8996fb924"}) for i in range(1000)]
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(old_body("message_insert"))
        c.execute(old_body("message_enqueue"))
        def run(sql, params):
            c.execute("BEGIN")
            t0 = time.perf_counter(); c.execute(sql, params).fetchall(); dt = time.perf_counter() - t0
            c.execute("ROLLBACK")
            return dt
        for size in (100, 1000):
            a = "[" + ",".join(payloads[:size]) + "]"
            for fn, args, sql in (("message_insert", (a,), "SELECT * FROM pgqrs.{f}('q', %s, 0, NULL, NULL, NULL)"),
                                  ("message_enqueue", (payloads[:size], [0]*size), "SELECT * FROM pgqrs.{f}('q', %s, %s, NULL, NULL, NULL, NULL)")):
                new, old = [], []
                for _ in range(40):
                    old.append(run(sql.format(f=fn + "_old"), args))
                    new.append(run(sql.format(f=fn), args))
                o, n = statistics.median(old) * 1000, statistics.median(new) * 1000
                print(f"{fn} batch {size}: main {o:.2f} ms, with json_check {n:.2f} ms ({(n / o - 1) * 100:+.0f}%)")
