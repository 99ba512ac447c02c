"""Pairwise covering arrays for test grids: every value of every factor meets every value of
every other factor in at least one case, in far fewer cases than the cartesian product.
Deterministic (seeded), so test ids are stable across runs and machines."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

Case = dict[str, Any]


def pairwise(
    factors: Mapping[str, Sequence[Any]],
    valid: Callable[[Case], bool] = lambda case: True,
    seed: int = 0,
    candidates: int = 40,
) -> list[Case]:
    """Cases covering every feasible pair of (factor, value) settings. `valid` rejects
    impossible combinations (e.g. proj_size >= hidden_size); pairs that no valid case can hold
    are not required. Greedy: each new case is the candidate covering the most uncovered pairs."""
    names = list(factors)
    rng = random.Random(seed)

    def random_case(fixed: Case) -> Case | None:
        for _ in range(200):
            case = {n: fixed[n] if n in fixed else rng.choice(list(factors[n])) for n in names}
            if valid(case):
                return case
        return None

    def pairs_of(case: Case) -> set[tuple[tuple[str, Any], tuple[str, Any]]]:
        return {((a, case[a]), (b, case[b])) for a, b in itertools.combinations(names, 2)}

    uncovered = set()
    for a, b in itertools.combinations(names, 2):
        for va, vb in itertools.product(factors[a], factors[b]):
            if random_case({a: va, b: vb}) is not None:
                uncovered.add(((a, va), (b, vb)))
    cases: list[Case] = []
    while uncovered:
        (a, va), (b, vb) = min(uncovered, key=repr)  # deterministic choice of the pair to cover
        options = [random_case({a: va, b: vb}) for _ in range(candidates)]
        best = max(
            (case for case in options if case is not None),
            key=lambda case: len(pairs_of(case) & uncovered),
        )
        cases.append(best)
        uncovered -= pairs_of(best)
    return cases


def case_id(case: Case) -> str:
    """A short, readable pytest id such as 'L2-bi-bf-nobias-I17-H3-T7'."""
    return "-".join(f"{key}={value}" for key, value in case.items())
