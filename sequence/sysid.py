"""System-identification data: CSV records of inputs u and outputs y, the benchmark
protocol's normalisation, and a linear ARX baseline.

A record is a CSV with a header row, the input columns first (names starting with "u"),
then the output columns (names starting with "y"), one row per time step; any such file
works (`../shared/data/sysid/SOURCES.md` describes the benchmark's five). The protocol of
Doerr et al. 2018 (benchmark experiments) and their code: z-score inputs and outputs with the mean
and std of the TRAINING part, train on the first part, freely simulate the test part and
report the RMSE of the predictive mean in the data's original units.
"""

from __future__ import annotations

import csv
import dataclasses
import os

import numpy as np


class DataError(ValueError):
    """A data file that cannot be used: the message names the file and what is wrong."""


@dataclasses.dataclass(frozen=True)
class SysIdData:
    """One record split in time: arrays are [T, D] float64 in original units."""

    u_train: np.ndarray
    y_train: np.ndarray
    u_test: np.ndarray
    y_test: np.ndarray
    u_names: tuple[str, ...]
    y_names: tuple[str, ...]
    u_mean: np.ndarray
    u_std: np.ndarray
    y_mean: np.ndarray
    y_std: np.ndarray

    def normalized(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(u_train, y_train, u_test, y_test) z-scored with the training statistics."""
        return (
            (self.u_train - self.u_mean) / self.u_std,
            (self.y_train - self.y_mean) / self.y_std,
            (self.u_test - self.u_mean) / self.u_std,
            (self.y_test - self.y_mean) / self.y_std,
        )


def load_sysid_csv(path: str, split: float | int = 0.5) -> SysIdData:
    """Read a u.../y... CSV and split it in time.

    Args:
      path: the CSV file (header row; input columns named u..., then outputs named y...).
      split: where the test part starts: a fraction of the rows in (0, 1) (the benchmark
        uses 0.5), or a row count >= 1.
    Returns:
      SysIdData with training statistics (a constant column gets std 1).
    """
    if not os.path.exists(path):
        raise DataError(f"data: {path!r} does not exist")
    with open(path, newline="") as f:
        reader = csv.reader(f)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise DataError(f"data: {path!r} is empty") from None
        rows = [(reader.line_num, r) for r in reader if r]
    u_cols = [i for i, h in enumerate(header) if h.lower().startswith("u")]
    y_cols = [i for i, h in enumerate(header) if h.lower().startswith("y")]
    if not u_cols or not y_cols:
        raise DataError(
            f"data: {path!r} needs input columns named u... and output columns named y..., "
            f"got header {header}"
        )
    if not rows:
        raise DataError(f"data: {path!r} has a header but no data rows")
    table = np.empty((len(rows), len(header)), np.float64)
    for i, (line, r) in enumerate(rows):
        if len(r) != len(header):
            raise DataError(
                f"data: {path!r} line {line} has {len(r)} values; the header has {len(header)}"
            )
        try:
            table[i] = [float(v) for v in r]
        except ValueError:
            raise DataError(f"data: {path!r} line {line} has a non-numeric value: {r}") from None
    if not np.all(np.isfinite(table)):
        raise DataError(f"data: {path!r} contains NaN or infinite values")
    n = table.shape[0]
    if 0 < split < 1:
        n_train = int(round(split * n))
    elif split >= 1 and float(split).is_integer():
        n_train = int(split)
    else:
        raise DataError(f"split: must be a fraction in (0, 1) or a row count >= 1, got {split}")
    if not 2 <= n_train <= n - 2:
        raise DataError(
            f"split: leaves {n_train} training and {n - n_train} test rows of {n}; both "
            "parts need at least 2"
        )
    u, y = table[:, u_cols], table[:, y_cols]

    def stats(a):
        std = a.std(0)
        return a.mean(0), np.where(std > 0, std, 1.0)

    u_mean, u_std = stats(u[:n_train])
    y_mean, y_std = stats(y[:n_train])
    return SysIdData(
        u_train=u[:n_train],
        y_train=y[:n_train],
        u_test=u[n_train:],
        y_test=y[n_train:],
        u_names=tuple(header[i] for i in u_cols),
        y_names=tuple(header[i] for i in y_cols),
        u_mean=u_mean,
        u_std=u_std,
        y_mean=y_mean,
        y_std=y_std,
    )


def write_sysid_csv(path, u_TU, y_TY, u_names=None, y_names=None) -> None:
    """Write a record that `load_sysid_csv` reads back: u_TU [T, Du] and y_TY [T, Dy] as one
    row per time step under a header of `u_names` then `y_names` (default u0, u1, ... and
    y0, y1, ...), each value with 17 significant digits (a float64 round trip)."""
    u_names = list(u_names or [f"u{i}" for i in range(u_TU.shape[1])])
    y_names = list(y_names or [f"y{i}" for i in range(y_TY.shape[1])])
    np.savetxt(
        path,
        np.concatenate([u_TU, y_TY], axis=1),
        fmt="%.17g",
        delimiter=",",
        header=",".join(u_names + y_names),
        comments="",
    )


def gaussian_metrics(
    y_true_TD: np.ndarray, mean_TD: np.ndarray, var_TD: np.ndarray
) -> dict[str, float]:
    """RMSE of the predictive mean, mean Gaussian log-density per output value, and the
    fraction of values inside mean +- 2 std (95.4% for a calibrated Gaussian). All three
    arrays [T, D] of one shape (no broadcasting: [T, 1] against [T] would compare every pair)."""
    shapes = {np.shape(y_true_TD), np.shape(mean_TD), np.shape(var_TD)}
    if len(shapes) != 1:
        raise ValueError(
            f"y_true_TD, mean_TD, var_TD: must have one shape, got {np.shape(y_true_TD)}, "
            f"{np.shape(mean_TD)} and {np.shape(var_TD)}"
        )
    err = y_true_TD - mean_TD
    var = np.maximum(var_TD, 1e-300)
    return dict(
        rmse=float(np.sqrt(np.mean(err**2))),
        log_likelihood=float(np.mean(-0.5 * (np.log(2 * np.pi * var) + err**2 / var))),
        coverage_2std=float(np.mean(np.abs(err) <= 2 * np.sqrt(var))),
    )


def mixture_moments(mean_KTD: np.ndarray, var_KTD: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of an equal-weight mixture of K predictive distributions (an
    ensemble of K models; equivalently, the moments of their sampled trajectories pooled):
    m = (1/K) sum_k m_k, v = (1/K) sum_k v_k + (1/K) sum_k (m_k - m)^2 (the law of total
    variance). Args: mean_KTD, var_KTD [K, T, D]. Returns (mean [T, D], var [T, D])."""
    mean_KTD, var_KTD = np.asarray(mean_KTD), np.asarray(var_KTD)
    if mean_KTD.shape != var_KTD.shape or mean_KTD.ndim != 3:
        raise ValueError(
            f"mean_KTD and var_KTD: need equal [K, T, D] shapes, got {mean_KTD.shape} and "
            f"{var_KTD.shape}"
        )
    mean = mean_KTD.mean(0)
    return mean, var_KTD.mean(0) + ((mean_KTD - mean) ** 2).mean(0)


def _arx_features(y_TD, u_TD, t, na, nb):
    return np.concatenate([y_TD[t - na : t][::-1].ravel(), u_TD[t - nb : t][::-1].ravel(), [1.0]])


def fit_arx(u_TD: np.ndarray, y_TD: np.ndarray, na: int, nb: int) -> np.ndarray:
    """Least-squares ARX model y_t = sum_i A_i y_{t-i} + sum_j B_j u_{t-j} + c (Ljung 1999,
    eq. 4.7), one-step-ahead fit.

    Args:
      u_TD: [T, Du] inputs; y_TD: [T, Dy] outputs (normalised).
      na, nb: output and input lags (>= 1).
    Returns:
      theta [na*Dy + nb*Du + 1, Dy].
    """
    k = max(na, nb)
    if min(na, nb) < 1 or len(y_TD) <= k or len(u_TD) != len(y_TD):
        raise ValueError(
            f"fit_arx: need na, nb >= 1 and equally long u_TD, y_TD longer than max(na, nb), "
            f"got na={na}, nb={nb}, {len(u_TD)} and {len(y_TD)} rows"
        )
    X = np.stack([_arx_features(y_TD, u_TD, t, na, nb) for t in range(k, len(y_TD))])
    return np.linalg.lstsq(X, y_TD[k:], rcond=None)[0]


def simulate_arx(
    theta: np.ndarray, u_TD: np.ndarray, y_init_KD: np.ndarray, na: int, nb: int
) -> np.ndarray:
    """Free simulation of an ARX model: the first k = max(na, nb) outputs are given, every
    later output is computed from the model's own past outputs and the measured inputs.

    Returns:
      [T, Dy] simulated outputs (the first k equal y_init_KD).
    """
    k = max(na, nb)
    y = np.zeros((len(u_TD), theta.shape[1]))
    y[:k] = y_init_KD[:k]
    for t in range(k, len(u_TD)):
        y[t] = _arx_features(y, u_TD, t, na, nb) @ theta
    return y


def select_arx(
    u_TD: np.ndarray, y_TD: np.ndarray, max_order: int = 8
) -> tuple[np.ndarray, int, int, float]:
    """ARX orders chosen by the free-simulation RMSE on the TRAINING data (the test part is
    never looked at); unstable fits are skipped.

    Returns:
      (theta, na, nb, training free-simulation RMSE in normalised units).
    """
    best = None
    for na in range(1, max_order + 1):
        for nb in range(1, max_order + 1):
            theta = fit_arx(u_TD, y_TD, na, nb)
            with np.errstate(all="ignore"):
                sim = simulate_arx(theta, u_TD, y_TD, na, nb)
            if not np.all(np.isfinite(sim)) or np.abs(sim).max() > 1e3:
                continue
            rmse = float(np.sqrt(np.mean((sim - y_TD) ** 2)))
            if best is None or rmse < best[3]:
                best = (theta, na, nb, rmse)
    if best is None:
        raise DataError("select_arx: every ARX order up to max_order was unstable")
    return best
