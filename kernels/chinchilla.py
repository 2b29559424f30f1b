"""Two-term power laws in model size N and data D: Chinchilla, data-constrained, over-training."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from .base import FLOPS_PER_PARAM_TOKEN, Law, Separable, VarPro, size_for_budget


def _lse3(u1, u2, u3):
    # Expanded log-sum-exp of three terms: much faster under vmap than stack + logsumexp.
    top = jnp.maximum(jnp.maximum(u1, u2), u3)
    return top + jnp.log(jnp.exp(u1 - top) + jnp.exp(u2 - top) + jnp.exp(u3 - top))


def chinchilla_log_predict(theta, feats):
    """log L = LSE(a - alpha log N, b - beta log D, e).  theta = (a, b, e, alpha, beta)."""
    a, b, e, alpha, beta = theta[0], theta[1], theta[2], theta[3], theta[4]
    log_n, log_d = feats[:, 0], feats[:, 1]
    return _lse3(a - alpha * log_n, b - beta * log_d, e)


# The log-sum-exp below is shifted by E's exponent, a per-lane constant, instead of the largest term at
# each point: two exponentials a point instead of three and no maxima (1.5x faster per lane-point on
# the CPU). The shift is floored so that E -> 0 cannot push the other terms past overflow.
_SHIFT_FLOOR = -600.0


def chinchilla_log_predict_jac(theta, feats):
    """log L and d log L / d(a, b, e, alpha, beta): the softmax weights of the three terms."""
    a, b, e, alpha, beta = theta[0], theta[1], theta[2], theta[3], theta[4]
    log_n, log_d = feats[:, 0], feats[:, 1]
    shift = jnp.maximum(e, _SHIFT_FLOOR)
    e1, e2, e3 = jnp.exp(a - shift - alpha * log_n), jnp.exp(b - shift - beta * log_d), jnp.exp(e - shift)
    total = e1 + e2 + e3
    inverse = 1.0 / total
    w1, w2, w3 = e1 * inverse, e2 * inverse, e3 * inverse
    return shift + jnp.log(total), (w1, w2, w3, -w1 * log_n, -w2 * log_d)


def chinchilla_predict_jac(theta, feats):
    """L and dL / d(a, b, e, alpha, beta): the three terms and the exponents' log-input weights."""
    a, b, e, alpha, beta = theta[0], theta[1], theta[2], theta[3], theta[4]
    log_n, log_d = feats[:, 0], feats[:, 1]
    t1, t2, t3 = jnp.exp(a - alpha * log_n), jnp.exp(b - beta * log_d), jnp.exp(e + 0.0 * log_n)
    return t1 + t2 + t3, (t1, t2, t3, -t1 * log_n, -t2 * log_d)


def chinchilla_predict(theta, feats):
    """L(N, D) = E + A / N^alpha + B / D^beta with A = e^a, B = e^b, E = e^e.

    Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models", Approach 3 (eq. 2);
    the log-sum-exp parametrisation follows Besiroglu et al. 2024 (Epoch AI replication).
    """
    a, b, e, alpha, beta = theta[0], theta[1], theta[2], theta[3], theta[4]
    log_n, log_d = feats[:, 0], feats[:, 1]
    return jnp.exp(e) + jnp.exp(a - alpha * log_n) + jnp.exp(b - beta * log_d)


def compute_optimal_frontier(A, B, alpha, beta):
    """(G, a) of Chinchilla's compute-optimal frontier N*(C) = G (C / 6)^a, D*(C) = C / (6 N*(C)):
    the minimum of E + A/N^alpha + B/D^beta subject to C = 6 N D (Hoffmann et al. 2022, eq. 4),
    a = beta / (alpha + beta), G = (alpha A / (beta B))^(1 / (alpha + beta)). Broadcasts (numpy)."""
    g = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
    return g, beta / (alpha + beta)


def compute_optimal(A, B, alpha, beta, flops):
    """(N*, D*) at the budgets `flops` on Chinchilla's frontier (`compute_optimal_frontier`)."""
    g, a = compute_optimal_frontier(A, B, alpha, beta)
    n_opt = g * (np.asarray(flops) / FLOPS_PER_PARAM_TOKEN) ** a
    return n_opt, size_for_budget(np.asarray(flops), n_opt)


def _chinchilla_derived(p):
    alpha, beta = p["alpha"], p["beta"]
    out = {"A": np.exp(p["a"]), "B": np.exp(p["b"]), "E": np.exp(p["e"])}
    with np.errstate(divide="ignore", invalid="ignore"):
        out["a_opt"] = np.where(np.asarray(alpha + beta) != 0, beta / (alpha + beta), np.nan)  # N_opt ~ C^a_opt
    return out


def _two_term_basis(theta_nl, feats):
    alpha, beta = theta_nl[0], theta_nl[1]
    ones = jnp.ones_like(feats[:, 0])
    return jnp.stack([jnp.exp(-alpha * feats[:, 0]), jnp.exp(-beta * feats[:, 1]), ones], axis=1)


def _chinchilla_assemble(theta_nl, coef):
    logs = jnp.log(coef)
    return jnp.stack([logs[0], logs[1], logs[2], theta_nl[0], theta_nl[1]])


def _chinchilla_size_term(theta, log_n):
    term = jnp.exp(theta[0] - theta[3] * log_n)  # A / N^alpha
    return term, {0: term, 3: -log_n * term}


def _chinchilla_data_term(theta, log_d):
    term = jnp.exp(theta[1] - theta[4] * log_d)  # B / D^beta
    return term, {1: term, 4: -log_d * term}


def _chinchilla_constant(theta):
    irreducible = jnp.exp(theta[2])
    return irreducible, {2: irreducible}


_EXPONENT_SCAN = tuple(float(v) for v in np.linspace(0.0, 2.0, 201))

chinchilla = Law(
    name="chinchilla",
    param_names=("a", "b", "e", "alpha", "beta"),
    inputs=("params", "tokens"),
    predict=chinchilla_predict,
    log_predict=chinchilla_log_predict,
    log_predict_jac=chinchilla_log_predict_jac,
    predict_jac=chinchilla_predict_jac,
    formula="L = E + A/N^alpha + B/D^beta  (A=e^a, B=e^b, E=e^e)",
    reference="Hoffmann et al. 2022, arXiv:2203.15556; Besiroglu et al. 2024, arXiv:2404.10102",
    # The Hoffmann/Epoch 4500-start grid.
    init_grid={
        "a": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0),
        "b": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0),
        "e": (-1.0, -0.5, 0.0, 0.5, 1.0),
        "alpha": (0.0, 0.5, 1.0, 1.5, 2.0),
        "beta": (0.0, 0.5, 1.0, 1.5, 2.0),
    },
    derived=_chinchilla_derived,
    varpro=VarPro(
        nonlinear=("alpha", "beta"),
        grid=(_EXPONENT_SCAN, _EXPONENT_SCAN),
        basis=_two_term_basis,
        assemble=_chinchilla_assemble,
        depends=(0, 1, None),
    ),
    separable=Separable(constant=_chinchilla_constant, row=_chinchilla_size_term, column=_chinchilla_data_term),
)


def data_constrained_predict(theta, feats):
    """Muennighoff et al. 2023, "Scaling Data-Constrained Language Models", eq. 5.

    L = E + A / N'^alpha + B / D'^beta with effective data and parameters
      D' = U + U R_D* (1 - exp(-R_D / R_D*)),  R_D = max(D/U - 1, 0)
      N' = U_N + U_N R_N* (1 - exp(-R_N / R_N*)),  U_N = min(N, N_opt(U)),  R_N = max(N/U_N - 1, 0)
    where N_opt(U) = G (U G)^(beta/alpha), G = (alpha A / (beta B))^(1/(alpha+beta)) is the
    compute-optimal size for U tokens. theta = (a, b, e, alpha, beta, r_d, r_n).
    """
    a, b, e, alpha, beta, r_d, r_n = (theta[i] for i in range(7))
    log_n, log_d, log_u = feats[:, 0], feats[:, 1], feats[:, 2]
    log_g = (jnp.log(alpha) + a - jnp.log(beta) - b) / (alpha + beta)
    log_n_opt = log_g + (beta / alpha) * (log_u + log_g)
    log_un = jnp.minimum(log_n, log_n_opt)
    reps_d = jnp.maximum(jnp.exp(log_d - log_u) - 1.0, 0.0)
    reps_n = jnp.maximum(jnp.exp(log_n - log_un) - 1.0, 0.0)
    log_d_eff = log_u + jnp.log1p(r_d * -jnp.expm1(-reps_d / r_d))
    log_n_eff = log_un + jnp.log1p(r_n * -jnp.expm1(-reps_n / r_n))
    return jnp.exp(e) + jnp.exp(a - alpha * log_n_eff) + jnp.exp(b - beta * log_d_eff)


data_constrained = Law(
    name="data_constrained",
    param_names=("a", "b", "e", "alpha", "beta", "r_d", "r_n"),
    inputs=("params", "tokens", "unique_tokens"),
    predict=data_constrained_predict,
    formula="L = E + A/N'^alpha + B/D'^beta, D' = U(1 + R_D*(1-exp(-R_D/R_D*))), N' likewise",
    reference="Muennighoff et al. 2023, arXiv:2305.16264, eq. 5",
    init_grid={
        "a": (0.0, 6.25, 12.5),
        "b": (0.0, 6.25, 12.5),
        "e": (-1.0, 0.33, 1.0),
        "alpha": (0.3, 0.7),
        "beta": (0.3, 0.7),
        "r_d": (5.0, 15.0),
        "r_n": (5.0, 15.0),
    },
    lower=(-np.inf, -np.inf, -np.inf, 1e-3, 1e-3, 1e-3, 1e-3),
    upper=(np.inf, np.inf, np.inf, 5.0, 5.0, 1e4, 1e4),
    derived=lambda p: {"A": np.exp(p["a"]), "B": np.exp(p["b"]), "E": np.exp(p["e"])},
)


def overtraining_predict(theta, feats):
    """Gadre et al. 2024, "Language models scale reliably with over-training", eq. (4):

    L(C, M) = E + (a M^eta' + b M^-eta') C^-eta' with C = 6ND, M = D/N, written as in their code
    L = a N^eta + b 6^(eta/2) D^eta + E  (eta = -2 eta' < 0).  theta = (a, b, eta, E).
    """
    a, b, eta, e_irr = theta[0], theta[1], theta[2], theta[3]
    log_n, log_d = feats[:, 0], feats[:, 1]
    return a * jnp.exp(eta * log_n) + b * jnp.exp(eta * (0.5 * np.log(FLOPS_PER_PARAM_TOKEN) + log_d)) + e_irr


def _overtraining_basis(theta_nl, feats):
    eta = theta_nl[0]
    ones = jnp.ones_like(feats[:, 0])
    log_d = 0.5 * np.log(FLOPS_PER_PARAM_TOKEN) + feats[:, 1]
    return jnp.stack([jnp.exp(eta * feats[:, 0]), jnp.exp(eta * log_d), ones], axis=1)


overtraining = Law(
    name="overtraining",
    param_names=("a", "b", "eta", "E"),
    inputs=("params", "tokens"),
    predict=overtraining_predict,
    formula="L = E + (a M^eta' + b M^-eta') C^-eta'  (C = 6ND, M = D/N)",
    reference="Gadre et al. 2024, arXiv:2403.08540",
    # The 128-start grid of the authors' fitting code.
    init_grid={
        "a": (1e2, 3e2, 1e3, 3e3),
        "b": (1e2, 3e2, 1e3, 3e3),
        "eta": (-0.1, -0.3),
        "E": (0.0, 1.0, 2.0, 10.0),
    },
    derived=lambda p: {"eta_prime": -0.5 * p["eta"]},
    varpro=VarPro(
        nonlinear=("eta",),
        grid=(tuple(float(v) for v in np.linspace(-1.0, -0.01, 199)),),
        basis=_overtraining_basis,
        assemble=lambda theta_nl, coef: jnp.stack([coef[0], coef[1], theta_nl[0], coef[2]]),
        nonneg=False,
        depends=(0, 0, None),
    ),
)
