"""Webhooks: presence and view events pushed to an app's backend, signed (Standard
Webhooks), retried with backoff, delivered at least once and in order per artifact.

``catalogue`` (the event types), ``store`` (endpoints and the delivery queue in the
database), ``events`` (the outbox and views entries turned into events), ``streams`` (the
consumer groups that exist while endpoints do), ``signing``, ``schedule`` (retries),
``ssrf`` (addresses refused at delivery time), ``sender`` (one HTTP delivery) and
``dispatcher`` (the worker's loops).
"""
