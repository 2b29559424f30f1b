"""IsoFLOP profile laws: loss against model size at ONE fixed compute budget (Chinchilla approach 2).

The input `x` is the log of the model size relative to a reference size of the profile (its
geometric mean): x = log(N / N_ref). Centring keeps the normal equations well conditioned (log N
itself is ~20, so [1, log N, log^2 N] spans eight orders of magnitude) and makes the fit-space
coefficients readable. The vertex is then x* = -c1 / (2 c2), at N* = N_ref e^{x*}.
"""

from __future__ import annotations

import jax.numpy as jnp

from .base import Law


def _identity(raw):
    return raw


def parabola_predict(theta, feats):
    """L(x) = c0 + c1 x + c2 x^2 with x = log(N / N_ref).  theta = (c0, c1, c2)."""
    x = feats[:, 0]
    return theta[0] + x * (theta[1] + x * theta[2])


def parabola_jac(theta, feats):
    # Linear in theta: the Jacobian is the basis itself (saves the autodiff trace).
    x = feats[:, 0]
    return parabola_predict(theta, feats), (jnp.ones_like(x), x, x * x)


parabola = Law(
    name="isoflop_parabola",
    param_names=("c0", "c1", "c2"),
    inputs=("x",),
    predict=parabola_predict,
    predict_jac=parabola_jac,
    features=_identity,
    positive_inputs=(),
    formula="L = c0 + c1 x + c2 x^2,  x = log(N / N_ref)",
    reference="Hoffmann et al. 2022, arXiv:2203.15556, approach 2 (IsoFLOP profiles)",
    init_grid={"c0": (0.0,), "c1": (0.0,), "c2": (0.0,)},
)
