"""A sample-quality metric that needs no download: the Frechet distance between Gaussians
fitted to the penultimate-layer features of a small CNN classifier that we train on the
training images (an FID in the sense of Heusel et al. 2017, eq. in Sec. 3 "FID", with our
classifier in place of Inception-v3; the numbers are comparable only with each other).

The floor is the distance between the test split's features and the training split's;
`frechet_distance` between two sets of generated and real features is the reported number.
"""

from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax


class FeatureClassifier(nn.Module):
    """Two conv layers, a 128-unit feature layer, 10 logits; input NHWC in [-1, 1]."""

    num_classes: int = 10
    features: int = 128

    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.Conv(32, (3, 3))(x))
        h = nn.max_pool(h, (2, 2), (2, 2))
        h = nn.relu(nn.Conv(64, (3, 3))(h))
        h = nn.max_pool(h, (2, 2), (2, 2))
        feats = nn.relu(nn.Dense(self.features)(h.reshape(h.shape[0], -1)))
        return nn.Dense(self.num_classes)(feats), feats


class TrainedClassifier(NamedTuple):
    """The feature classifier of the Frechet distance: its params and test accuracy."""

    params: dict
    test_accuracy: float


def train_classifier(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    seed: int = 0,
    epochs: int = 8,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
) -> TrainedClassifier:
    """Adam on softmax cross-entropy; returns the parameters and the test accuracy."""
    net = FeatureClassifier(int(max(y_train.max(), y_test.max())) + 1)
    key = jax.random.PRNGKey(seed)
    params = net.init(key, jnp.asarray(x_train[:1]))["params"]
    opt = optax.adam(learning_rate)
    opt_state = opt.init(params)

    @jax.jit
    def step(params, opt_state, xb, yb):
        def loss_fn(p):
            logits, _ = net.apply({"params": p}, xb)
            return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

        grads = jax.grad(loss_fn)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    rng = np.random.default_rng(seed)
    n = len(x_train)
    for _ in range(epochs):
        order = rng.permutation(n)
        for i in range(0, n - batch_size + 1, batch_size):
            idx = order[i : i + batch_size]
            params, opt_state = step(params, opt_state, x_train[idx], y_train[idx])
    logits = np.concatenate(
        [
            np.asarray(net.apply({"params": params}, x_test[i : i + 500])[0])
            for i in range(0, len(x_test), 500)
        ]
    )
    return TrainedClassifier(params, float(np.mean(logits.argmax(-1) == y_test)))


def classifier_features(params: dict, x: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """[N, 128] penultimate features of NHWC images in [-1, 1]."""
    num_classes = params["Dense_1"]["bias"].shape[0]
    net = FeatureClassifier(num_classes)
    apply = jax.jit(lambda p, xb: net.apply({"params": p}, xb)[1])
    return np.concatenate(
        [np.asarray(apply(params, x[i : i + batch_size])) for i in range(0, len(x), batch_size)]
    ).astype(np.float64)


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """d^2 = ||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)) between Gaussians fitted
    to two feature sets [N, F] (Heusel et al. 2017; Dowson & Landau 1982).

    tr((S_a S_b)^(1/2)) is computed as the sum of the square roots of the eigenvalues of the
    symmetric PSD matrix S_a^(1/2) S_b S_a^(1/2), which has the same spectrum as S_a S_b: no
    square root of a non-symmetric matrix, so singular covariances (N <= F, dead ReLU
    features) give no complex round-off."""
    if feats_a.ndim != 2 or feats_b.ndim != 2 or feats_a.shape[1] != feats_b.shape[1]:
        raise ValueError(
            f"feats_a, feats_b: must be [N, F] with the same F, got {feats_a.shape} and "
            f"{feats_b.shape}"
        )
    if len(feats_a) < 2 or len(feats_b) < 2:
        raise ValueError(
            f"feats_a, feats_b: need at least 2 rows each to fit a covariance, got "
            f"{len(feats_a)} and {len(feats_b)}"
        )
    for name, feats in (("feats_a", feats_a), ("feats_b", feats_b)):
        if not np.all(np.isfinite(feats)):
            bad = int(np.sum(~np.all(np.isfinite(feats), axis=1)))
            raise ValueError(f"{name}: {bad} rows hold NaN or inf (diverged samples?)")
    feats_a, feats_b = np.asarray(feats_a, np.float64), np.asarray(feats_b, np.float64)
    mu_a, mu_b = feats_a.mean(0), feats_b.mean(0)
    s_a = np.cov(feats_a, rowvar=False)
    s_b = np.cov(feats_b, rowvar=False)
    evals, evecs = np.linalg.eigh(s_a)
    sqrt_a = (evecs * np.sqrt(np.clip(evals, 0.0, None))) @ evecs.T
    middle = sqrt_a @ s_b @ sqrt_a
    tr_covmean = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)))
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(s_a) + np.trace(s_b) - 2.0 * tr_covmean)
