"""``presence-svc bench``: a rerunnable load benchmark of the HTTP API.

``loadgen`` (raw-socket clients in their own processes), ``scenarios`` (the requests),
``baseline`` (the bare-aiohttp yardstick and the generator's ceiling), ``runner``
(processes, barrier, percentiles), ``preload`` (many stored sessions), ``report``
(table, JSON lines, progress), ``command`` (the whole run); ``pgserver`` (a private
PostgreSQL server, for ``benchmarks/*.py`` and the test suite).

Nothing in the service imports this package; the CLI imports ``scenarios`` (the names, for
its argument parser) and the rest only when ``bench`` runs.
"""
