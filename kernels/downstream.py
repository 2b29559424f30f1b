"""Laws that map a loss to another quantity: downstream error/accuracy and loss-to-loss transfer.

Their input column is `loss` (an upstream loss measured on the same model), which may be negative-free
but is not log-transformed."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from .base import Law


def _identity(raw):
    return raw


def sigmoid_predict(theta, feats):
    """y = floor + (ceiling - floor) / (1 + exp(k (L - L0))): downstream accuracy as a logistic
    function of loss (Llama 3 report, arXiv:2407.21783, sec. 3.2.1; Ruan et al. 2024).
    theta = (floor, ceiling, k, l0)."""
    floor, ceiling, k, l0 = theta[0], theta[1], theta[2], theta[3]
    return floor + (ceiling - floor) / (1.0 + jnp.exp(k * (feats[:, 0] - l0)))


sigmoid = Law(
    name="sigmoid",
    param_names=("floor", "ceiling", "k", "l0"),
    inputs=("loss",),
    positive_inputs=(),
    features=_identity,
    predict=sigmoid_predict,
    formula="y = floor + (ceiling - floor)/(1 + exp(k (L - L0)))",
    reference="Dubey et al. 2024 (Llama 3), arXiv:2407.21783",
    init_grid={"floor": (0.0, 0.25), "ceiling": (0.5, 1.0), "k": (1.0, 5.0, 10.0), "l0": (2.0, 3.0, 4.0)},
)


def overtraining_downstream_predict(theta, feats):
    """Err(L) = epsilon - k exp(-gamma L): average top-1 error as a function of loss
    (Gadre et al. 2024, arXiv:2403.08540, eq. 5). theta = (epsilon, k, gamma)."""
    epsilon, k, gamma = theta[0], theta[1], theta[2]
    return epsilon - k * jnp.exp(-gamma * feats[:, 0])


overtraining_downstream = Law(
    name="overtraining_downstream",
    param_names=("epsilon", "k", "gamma"),
    inputs=("loss",),
    positive_inputs=(),
    features=_identity,
    predict=overtraining_downstream_predict,
    formula="Err = epsilon - k exp(-gamma L)",
    reference="Gadre et al. 2024, arXiv:2403.08540",
    init_grid={"epsilon": (0.5, 1.0), "k": (0.5, 1.0, 2.0), "gamma": (0.5, 1.0)},
)


def loss_to_loss_predict(theta, feats):
    """L_y = K (L_x - E_x)^kappa + E_y: shifted power law between two losses of the same models
    (Brandfonbrener et al. 2024, "Loss-to-Loss Prediction", arXiv:2411.12925, eq. 2).
    theta = (log_k, kappa, e_x, e_y)."""
    log_k, kappa, e_x, e_y = theta[0], theta[1], theta[2], theta[3]
    return jnp.exp(log_k + kappa * jnp.log(feats[:, 0] - e_x)) + e_y


loss_to_loss = Law(
    name="loss_to_loss",
    param_names=("log_k", "kappa", "e_x", "e_y"),
    inputs=("loss",),
    positive_inputs=(),
    features=_identity,
    predict=loss_to_loss_predict,
    formula="L_y = K (L_x - E_x)^kappa + E_y",
    reference="Brandfonbrener et al. 2024, arXiv:2411.12925",
    init_grid={"log_k": (-1.0, 0.0, 1.0), "kappa": (0.5, 1.0, 2.0), "e_x": (0.0, 1.0), "e_y": (0.0, 1.0)},
    derived=lambda p: {"K": np.exp(p["log_k"])},
)
