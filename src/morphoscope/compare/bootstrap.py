"""Paired bootstrap over images: how much of a difference between two models is image-to-image
variation?

Every model is scored on the same N images. One bootstrap replicate draws N images with
replacement (the same draw for all models: the comparison is *paired*) and recomputes each
model's metric on that draw. The spread of ``metric(B) - metric(A)`` over the replicates gives a
percentile confidence interval of the difference; a difference whose interval excludes 0 is
larger than image-to-image variation explains (flagged ``significant``).

Metrics are pooled over images the way the reports pool them (e.g. F1 from TP, FP and FN summed
over the images), so each model contributes a per-image table of additive counts ``(N, M)`` and
each statistic is a function of the column sums. A replicate's sums are ``w @ counts`` with ``w``
the multiplicity of each image in the draw, so thousands of replicates cost one matrix product.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Statistic:
    """A metric computed from summed per-image counts: ``fn(sums (B, M)) -> (B,)``."""

    fn: Callable[[np.ndarray], np.ndarray]
    higher_is_better: bool = True
    label: str = ""


def resample_weights(n: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """``(n_boot, n)`` multiplicities of the images in each bootstrap draw (rows sum to ``n``)."""
    if n < 1:
        raise ValueError("the bootstrap needs at least one image")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(n_boot, n))
    w = np.zeros((n_boot, n), np.float64)
    np.add.at(w, (np.repeat(np.arange(n_boot), n), draws.ravel()), 1.0)
    return w


def _interval(values: np.ndarray, ci: float) -> tuple[float | None, float | None]:
    v = values[np.isfinite(values)]
    if v.size == 0:
        return None, None
    lo, hi = np.percentile(v, [50 * (1 - ci), 50 * (1 + ci)])
    return float(lo), float(hi)


def _num(x) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def paired_bootstrap(per_image: Mapping[str, np.ndarray], statistics: Mapping[str, Statistic], *,
                     n_boot: int = 2000, ci: float = 0.95, seed: int = 0) -> dict:
    """Bootstrap every statistic for every model and every pair of models.

    ``per_image[model]`` is ``(N, M)`` additive counts, the rows of all models in the same image
    order. Returns ``{"images", "n_boot", "ci", "models": {model: {stat: {value, low, high}}},
    "differences": [{metric, a, b, diff (b - a), low, high, significant, better}]}``; ``value``
    and ``diff`` are those of all N images (not bootstrap means).
    """
    names = list(per_image)
    arrays = [np.asarray(per_image[m], np.float64) for m in names]
    n = arrays[0].shape[0]
    if any(a.shape[0] != n for a in arrays):
        raise ValueError("every model needs counts for the same images")
    w = resample_weights(n, n_boot, seed)
    full = {m: {} for m in names}
    boot = {m: {} for m in names}
    for m, a in zip(names, arrays):
        sums = w @ a
        total = a.sum(0, keepdims=True)
        for key, st in statistics.items():
            full[m][key] = float(np.asarray(st.fn(total))[0])
            boot[m][key] = np.asarray(st.fn(sums), np.float64)
    models = {m: {key: {"value": _num(full[m][key]), **dict(zip(("low", "high"), _interval(boot[m][key], ci)))}
                  for key in statistics} for m in names}
    diffs = []
    for key, st in statistics.items():
        for i in range(len(names)):
            for j in range(i + 1, len(names)):
                a, b = names[i], names[j]
                d = full[b][key] - full[a][key]
                lo, hi = _interval(boot[b][key] - boot[a][key], ci)
                sig = lo is not None and (lo > 0 or hi < 0)
                better = None
                if sig:
                    better = b if (d > 0) == st.higher_is_better else a
                diffs.append({"metric": key, "a": a, "b": b, "diff": _num(d), "low": lo, "high": hi,
                              "significant": bool(sig), "better": better})
    return {"images": int(n), "n_boot": int(n_boot), "ci": float(ci), "models": models, "differences": diffs}


def bootstrap_difference(counts_a: np.ndarray, counts_b: np.ndarray, statistic: Statistic, *,
                         n_boot: int = 2000, ci: float = 0.95, seed: int = 0) -> dict:
    """The paired bootstrap of one statistic for two models: ``{diff, low, high, significant}``."""
    res = paired_bootstrap({"a": counts_a, "b": counts_b}, {"s": statistic}, n_boot=n_boot, ci=ci, seed=seed)
    return res["differences"][0]


# ------------------------------------------------------------------------ ratio helpers (vectorised)


def ratio(num: np.ndarray, den: np.ndarray, *, nothing: np.ndarray | None = None, perfect: float = 1.0) -> np.ndarray:
    """``num / den`` with 0 where ``den`` is 0, and ``perfect`` where ``nothing`` is true (the
    convention of :mod:`morphoscope.metrics.matching`: nothing to find and nothing found)."""
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    out = np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den != 0)
    if nothing is not None:
        out = np.where(nothing, perfect, out)
    return out
