"""Benchmarks that span the apps: the web server, ingest over REST, CSR pages (docs/benchmarks.md)."""
