"""The billing-run benchmark (``manage.py bench_billing``, docs/benchmarks.md).

* ``databases``: the benchmark's own PostgreSQL databases (a built template and one clone per measurement),
  never the one DATABASE_URL names;
* ``customers``: the synthetic customer base, built from a seed with bulk inserts and COPY;
* ``workers``: Celery worker subprocesses on a private queue, and their peak memory;
* ``measure``: one measured run (execute up to Assembling & Posting, wait, time, check what it made).
"""
