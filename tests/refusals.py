"""What ``presence_refusals_total`` has counted in this process, summed over causes."""

from __future__ import annotations

from presence_svc import metrics


def refusals(dependency: str) -> float:
    """503s counted for ``dependency``, whatever the cause (what the 503 alert's panel sums)."""
    return sum(
        sample.value
        for family in metrics.REFUSALS.collect()
        for sample in family.samples
        if sample.name.endswith("_total") and sample.labels["dependency"] == dependency
    )
