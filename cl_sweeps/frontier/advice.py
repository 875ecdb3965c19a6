"""How many seeds would tell neighbouring frontier configurations apart? (`cl-sweeps frontier
--seeds-advice`)

Two neighbours on a front trade one objective for another (the cheaper one has the worse FID).
Both belong there only if each is *really* better than the other somewhere: a is better on some
objective and b on another, each by more than the seed noise. The estimate, per objective j:

    the LEVEL (90 %) intervals of the two seed means, mean ± z·s/√n with z = Φ⁻¹(0.95), do not
    overlap when Δ > z·(s_a + s_b)/√n. If the true difference is the observed Δ and the seed
    spreads are the observed stds s_a, s_b (ddof = 1), the observed difference is normal with
    sd √(s_a² + s_b²)/√n, and the intervals separate with probability POWER (80 %) when

        √n = (z·(s_a + s_b) + z_p·√(s_a² + s_b²)) / Δ,   z_p = Φ⁻¹(POWER).

n seeds per configuration (at least 2, rounded up). A pair needs, on the objectives where a is
better, the cheapest of them, and the same for b; the larger of the two is its advice. Equal
means on every objective where one is better: never separable (n = ∞). It is a normal
approximation at the observed spread, not a promise: with 2 or 3 seeds the stds themselves are
rough, which is one more reason to run more.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise
from statistics import NormalDist

from cl_sweeps.formatting import config_label, fmt_number, text_table
from cl_sweeps.frontier.bootstrap import LEVEL
from cl_sweeps.frontier.build import STRATEGY, Frontier
from cl_sweeps.metrics import is_cost_metric

POWER = 0.8
MIN_SEEDS = 2


def seeds_needed(difference: float, std_a: float, std_b: float, level: float = LEVEL,
                 power: float = POWER) -> float:
    """Seeds per configuration for the two LEVEL intervals to separate with probability
    `power` (see the module); inf for no difference, NaN for an unknown std."""
    if math.isnan(std_a) or math.isnan(std_b):
        return math.nan
    if difference <= 0:
        return math.inf
    z = NormalDist().inv_cdf(1 - (1 - level) / 2)
    z_power = NormalDist().inv_cdf(power)
    root = (z * (std_a + std_b) + z_power * math.hypot(std_a, std_b)) / difference
    return float(max(MIN_SEEDS, math.ceil(root**2)))


@dataclass(frozen=True)
class PairAdvice:
    """Two neighbouring frontier configurations and the seeds that would separate them."""

    first: dict
    second: dict
    objective: str  # the objective that decides: the one needing the most seeds
    difference: float
    std_first: float
    std_second: float
    seeds: float  # seeds per configuration (inf: never; NaN: unknown, a single seed)


def seeds_advice(frontier: Frontier) -> list[PairAdvice]:
    """One entry per pair of neighbouring Pareto configurations (best-first order)."""
    front = frontier.pareto_configs().to_pylist()
    advice = []
    for a, b in pairwise(front):
        sides: list[list[tuple[float, str]]] = [[], []]  # (seeds, objective) where a / b is better
        for i, name in enumerate(frontier.objectives):
            sign = 1.0 if frontier.mode(i) == "min" else -1.0
            gap = sign * (b[f"{name}_mean"] - a[f"{name}_mean"])  # > 0: a is better
            if gap == 0:
                continue
            n = seeds_needed(abs(gap), a[f"{name}_std"], b[f"{name}_std"])
            sides[0 if gap > 0 else 1].append((n, name))
        cheapest = [min(side, key=_order) if side else (math.inf, "") for side in sides]
        n, name = max(cheapest, key=_order)
        name = name or frontier.objectives[0]
        advice.append(PairAdvice(
            a, b, name, abs(a[f"{name}_mean"] - b[f"{name}_mean"]), a[f"{name}_std"],
            b[f"{name}_std"], n,
        ))
    return advice


def _order(item: tuple[float, str]) -> tuple[float, bool]:
    """NaN (unknown) sorts above every number: an unknown need is not a small one. On a tie a
    quality objective wins over a cost: it is the one a reader doubts."""
    seeds, name = item
    return (math.inf if math.isnan(seeds) else seeds, not is_cost_metric(name))


def _name(row: dict) -> str:
    return " ".join(filter(None, [str(row.get(STRATEGY) or ""), config_label(row)])) or row[
        "config_key"]


def seeds_advice_text(frontier: Frontier) -> str:
    """The advice as a table, with one line on how it is computed."""
    advice = seeds_advice(frontier)
    if not advice:
        return "seeds advice: fewer than two configurations on the frontier; nothing to separate"
    rows = []
    for pair in advice:
        have = min(pair.first["n"], pair.second["n"])
        rows.append([
            _name(pair.first), _name(pair.second), pair.objective,
            fmt_number(pair.difference),
            f"{fmt_number(pair.std_first)} / {fmt_number(pair.std_second)}",
            str(have), "unknown (one seed)" if math.isnan(pair.seeds) else fmt_number(pair.seeds),
        ])
    headers = ["configuration", "neighbour", "deciding objective", "mean diff",
               "std (seeds)", "seeds now", "seeds needed"]
    note = (f"seeds needed per configuration so that the {fmt_number(100 * LEVEL)} % intervals "
            f"of the two seed means separate with {fmt_number(100 * POWER)} % probability, at "
            "the observed difference and spread (normal approximation; see docs/selection.md)")
    return f"Seeds advice for neighbouring frontier configurations:\n" \
           f"{text_table(headers, rows)}\n{note}"
