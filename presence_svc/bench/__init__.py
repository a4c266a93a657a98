"""``presence-svc bench``: a rerunnable load benchmark of the HTTP API.

``loadgen`` (raw-socket clients in their own processes), ``scenarios`` (the requests),
``baseline`` (the bare-aiohttp yardstick and the generator's ceiling), ``runner``
(processes, barrier, percentiles), ``preload`` (many stored sessions), ``report``
(table, JSON lines, progress), ``command`` (the whole run).
"""

from presence_svc.bench.command import BenchConfig, run_bench

__all__ = ["BenchConfig", "run_bench"]
