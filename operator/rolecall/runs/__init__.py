"""Carrying out requests: bounded fan-out with retries, the request ledger in status, Events, work queue."""
