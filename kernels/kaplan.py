"""Kaplan et al. 2020 joint laws: L(N, D) and L(N, S)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from .base import Law


def kaplan_nd_log_predict(theta, feats):
    """log L = alpha_D * log((N_c/N)^(alpha_N/alpha_D) + D_c/D).  theta = (log_nc, log_dc, alpha_n, alpha_d)."""
    log_nc, log_dc, alpha_n, alpha_d = theta[0], theta[1], theta[2], theta[3]
    u1 = (alpha_n / alpha_d) * (log_nc - feats[:, 0])
    u2 = log_dc - feats[:, 1]
    top = jnp.maximum(u1, u2)
    return alpha_d * (top + jnp.log(jnp.exp(u1 - top) + jnp.exp(u2 - top)))


def kaplan_nd_predict(theta, feats):
    """L(N, D) = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D.

    Kaplan et al. 2020, "Scaling Laws for Neural Language Models", arXiv:2001.08361, eq. (1.5).
    """
    return jnp.exp(kaplan_nd_log_predict(theta, feats))


kaplan_nd = Law(
    name="kaplan_nd",
    param_names=("log_nc", "log_dc", "alpha_n", "alpha_d"),
    inputs=("params", "tokens"),
    predict=kaplan_nd_predict,
    log_predict=kaplan_nd_log_predict,
    formula="L = [(Nc/N)^(alpha_N/alpha_D) + Dc/D]^alpha_D",
    reference="Kaplan et al. 2020, arXiv:2001.08361, eq. 1.5",
    init_grid={
        "log_nc": (20.0, 25.0, 30.0, 35.0),
        "log_dc": (20.0, 25.0, 30.0, 35.0),
        "alpha_n": (0.05, 0.1, 0.3),
        "alpha_d": (0.05, 0.1, 0.3),
    },
    lower=(-np.inf, -np.inf, 1e-4, 1e-4),
    derived=lambda p: {"Nc": np.exp(p["log_nc"]), "Dc": np.exp(p["log_dc"])},
)


def kaplan_ns_predict(theta, feats):
    """L(N, S) = (N_c/N)^alpha_N + (S_c/S)^alpha_S, S = optimisation steps.

    Kaplan et al. 2020, arXiv:2001.08361, eq. (1.6) (S here is the step count, not S_min).
    theta = (log_nc, alpha_n, log_sc, alpha_s).
    """
    log_nc, alpha_n, log_sc, alpha_s = theta[0], theta[1], theta[2], theta[3]
    return jnp.exp(alpha_n * (log_nc - feats[:, 0])) + jnp.exp(alpha_s * (log_sc - feats[:, 1]))


kaplan_ns = Law(
    name="kaplan_ns",
    param_names=("log_nc", "alpha_n", "log_sc", "alpha_s"),
    inputs=("params", "step"),
    predict=kaplan_ns_predict,
    formula="L = (Nc/N)^alpha_N + (Sc/S)^alpha_S",
    reference="Kaplan et al. 2020, arXiv:2001.08361, eq. 1.6",
    init_grid={
        "log_nc": (15.0, 25.0, 35.0),
        "alpha_n": (0.05, 0.1, 0.3),
        "log_sc": (5.0, 10.0, 15.0),
        "alpha_s": (0.1, 0.5, 1.0),
    },
    lower=(-np.inf, 1e-4, -np.inf, 1e-4),
    derived=lambda p: {"Nc": np.exp(p["log_nc"]), "Sc": np.exp(p["log_sc"])},
)
