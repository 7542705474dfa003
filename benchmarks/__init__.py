"""Throughput benchmarks: kaleyra_async against three hand-written peers (``make bench``).

See ``benchmarks/README.md``; run with ``python -m benchmarks [--quick|--full]``.
"""
