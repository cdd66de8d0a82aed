"""Throughput benchmark of regen-sync against a naive FastStream consumer and the broker's
raw pipe, on a local Tansu broker and the upstream sandbox. Run with `bash scripts/bench.sh`;
see docs/performance.md."""
