"""Benchmarks of buyerjourney's replay paths; run them with ``bash bench/run``."""
