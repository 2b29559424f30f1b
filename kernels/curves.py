"""One-input laws: compute power law, broken power laws, learning-curve estimators M1-M4,
and the loss-curve law with learning-rate annealing."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .base import Law, VarPro

_EXPONENTS = tuple(float(v) for v in np.linspace(0.0, 2.0, 401))


def compute_predict(theta, feats):
    """L(C) = E + A C^-alpha with A = e^a, E = e^e.  theta = (a, e, alpha).

    Kaplan et al. 2020 (eq. 1.4 without E); with the irreducible term as in Hoffmann et al. 2022.
    """
    a, e, alpha = theta[0], theta[1], theta[2]
    return jnp.exp(e) + jnp.exp(a - alpha * feats[:, 0])


def compute_log_predict(theta, feats):
    a, e, alpha = theta[0], theta[1], theta[2]
    u = a - alpha * feats[:, 0]
    top = jnp.maximum(u, e)
    return top + jnp.log(jnp.exp(u - top) + jnp.exp(e - top))


compute = Law(
    name="compute",
    param_names=("a", "e", "alpha"),
    inputs=("flops",),
    predict=compute_predict,
    log_predict=compute_log_predict,
    formula="L = E + A C^-alpha",
    reference="Kaplan et al. 2020, arXiv:2001.08361; Hoffmann et al. 2022, arXiv:2203.15556",
    init_grid={"a": (0.0, 5.0, 10.0, 20.0), "e": (-1.0, 0.0, 1.0), "alpha": (0.05, 0.2, 0.5, 1.0)},
    derived=lambda p: {"A": np.exp(p["a"]), "E": np.exp(p["e"])},
    varpro=VarPro(
        nonlinear=("alpha",),
        grid=(_EXPONENTS,),
        basis=lambda nl, f: jnp.stack([jnp.exp(-nl[0] * f[:, 0]), jnp.ones_like(f[:, 0])], axis=1),
        assemble=lambda nl, coef: jnp.stack([jnp.log(coef[0]), jnp.log(coef[1]), nl[0]]),
        depends=(0, None),
    ),
)


def _bnsl_predict(n_breaks):
    def predict(theta, feats):
        """Broken neural scaling law (Caballero et al. 2022, arXiv:2210.14891, eq. 1):

        y = a + b x^-c0 prod_i (1 + (x/d_i)^(1/f_i))^(-c_i f_i),  i = 1 .. n_breaks,
        with b = e^log_b, d_i = e^log_d_i, f_i = e^log_f_i.
        theta = (a, log_b, c0, [log_d_i, c_i, log_f_i] for each break).
        """
        log_x = feats[:, 0]
        log_term = theta[1] - theta[2] * log_x
        for i in range(n_breaks):
            log_d, c, log_f = theta[3 + 3 * i], theta[4 + 3 * i], theta[5 + 3 * i]
            f = jnp.exp(log_f)
            log_term = log_term - c * f * jax.nn.softplus((log_x - log_d) / f)
        return theta[0] + jnp.exp(log_term)

    return predict


LOG_F_MIN = -5.0


def _bnsl(n_breaks: int) -> Law:
    names = ["a", "log_b", "c0"]
    grid = {"a": (0.0, 1.0), "log_b": (0.0, 3.0, 6.0), "c0": (0.05, 0.3)}
    # Breaks are numbered from 1 (c0 is the first segment's exponent). The law reads compute, so the
    # break locations start across log FLOPs of today's training runs (1e15 .. 1e21).
    for i in range(1, n_breaks + 1):
        names += [f"log_d{i}", f"c{i}", f"log_f{i}"]
        grid |= {f"log_d{i}": (35.0, 42.0, 49.0), f"c{i}": (0.1, 0.5), f"log_f{i}": (0.0,)}
    # A break narrower than f = e^-5 (under 1 % of an e-fold of x) is a kink: fits that want a sharper
    # one otherwise crawl towards f -> 0 without end; at the bound they are reported `bound-hit`.
    lower = tuple(LOG_F_MIN if name.startswith("log_f") else -np.inf for name in names)
    return Law(
        name=f"bnsl_{n_breaks}",
        param_names=tuple(names),
        inputs=("flops",),
        predict=_bnsl_predict(n_breaks),
        formula="y = a + b x^-c0 prod_{i>=1} (1 + (x/d_i)^(1/f_i))^(-c_i f_i)",
        reference="Caballero et al. 2022, arXiv:2210.14891",
        init_grid=grid,
        lower=lower,
    )


bnsl_1 = _bnsl(1)
bnsl_2 = _bnsl(2)


def lr_annealing_predict(theta, feats):
    """L(s) = L0 + A S1^-alpha - C S2 (Tissue et al. 2024, "Scaling Law with Learning Rate
    Annealing", arXiv:2408.11029, eq. 1). S1 = sum of learning rates so far (forward area),
    S2 = annealing area. Inputs: (lr_area, lr_annealing_area); theta = (l0, a, alpha, c)."""
    l0, a, alpha, c = theta[0], theta[1], theta[2], theta[3]
    return l0 + jnp.exp(a - alpha * feats[:, 0]) - c * feats[:, 1]


lr_annealing = Law(
    name="lr_annealing",
    param_names=("l0", "a", "alpha", "c"),
    inputs=("lr_area", "lr_annealing_area"),
    positive_inputs=("lr_area",),
    features=lambda raw: jnp.stack([jnp.log(raw[:, 0]), raw[:, 1]], axis=1),
    predict=lr_annealing_predict,
    formula="L = L0 + A S1^-alpha - C S2",
    reference="Tissue et al. 2024, arXiv:2408.11029",
    init_grid={"l0": (1.0, 2.0, 3.0), "a": (0.0, 1.0, 2.0), "alpha": (0.2, 0.5, 1.0), "c": (0.0, 0.5)},
    derived=lambda p: {"A": np.exp(p["a"])},
)


def m1_predict(theta, feats):
    """M1 (Alabdulmohsin et al. 2022, "Revisiting Neural Scaling Laws", arXiv:2209.06640):
    eps = beta x^c, beta = e^log_beta.  theta = (log_beta, c)."""
    return jnp.exp(theta[0] + theta[1] * feats[:, 0])


def m2_predict(theta, feats):
    """M2 (Alabdulmohsin et al. 2022): eps = eps_inf + beta x^c.  theta = (log_beta, c, eps_inf)."""
    return theta[2] + jnp.exp(theta[0] + theta[1] * feats[:, 0])


def m3_predict(theta, feats):
    """M3 (Alabdulmohsin et al. 2022): eps = beta (1/x + gamma)^c with c >= 0.
    theta = (log_beta, c, log_gamma)."""
    log_x = feats[:, 0]
    u1, u2 = -log_x, theta[2]
    top = jnp.maximum(u1, u2)
    log_inner = top + jnp.log(jnp.exp(u1 - top) + jnp.exp(u2 - top))
    return jnp.exp(theta[0] + theta[1] * log_inner)


def m4_predict(theta, feats):
    """M4 (Alabdulmohsin et al. 2022): (eps - eps_inf) / (eps_0 - eps)^alpha = beta x^c,
    solved for eps in (eps_inf, eps_0). theta = (log_beta, c, alpha, eps_inf, eps_0).

    The implicit equation is solved by bisection (monotone in eps for alpha >= 0); one Newton
    step on the live parameters after it gives the right derivatives (implicit function theorem).
    """
    log_beta, c, alpha, eps_inf, eps_0 = (theta[i] for i in range(5))
    rhs = log_beta + c * feats[:, 0]

    def gap(eps, alpha, eps_inf, eps_0, rhs):
        return jnp.log(eps - eps_inf) - alpha * jnp.log(eps_0 - eps) - rhs

    frozen = jax.lax.stop_gradient((alpha, eps_inf, eps_0, rhs))
    lo = jnp.full_like(rhs, 0.0)
    hi = jnp.full_like(rhs, 1.0)

    def bisect(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        eps = frozen[1] + mid * (frozen[2] - frozen[1])
        above = gap(eps, *frozen) > 0
        return jnp.where(above, lo, mid), jnp.where(above, mid, hi)

    lo, hi = jax.lax.fori_loop(0, 60, bisect, (lo, hi))
    eps = jax.lax.stop_gradient(frozen[1] + 0.5 * (lo + hi) * (frozen[2] - frozen[1]))
    slope = 1.0 / (eps - eps_inf) + alpha / (eps_0 - eps)
    return eps - gap(eps, alpha, eps_inf, eps_0, rhs) / slope


_M_GRID_C = (-1.0, -0.5, -0.2, -0.05)
m1 = Law(
    name="m1",
    param_names=("log_beta", "c"),
    inputs=("tokens",),
    predict=m1_predict,
    log_predict=lambda theta, feats: theta[0] + theta[1] * feats[:, 0],
    formula="eps = beta x^c",
    reference="Alabdulmohsin et al. 2022, arXiv:2209.06640",
    init_grid={"log_beta": (-2.0, 0.0, 2.0, 5.0), "c": _M_GRID_C},
    derived=lambda p: {"beta": np.exp(p["log_beta"])},
)
m2 = Law(
    name="m2",
    param_names=("log_beta", "c", "eps_inf"),
    inputs=("tokens",),
    predict=m2_predict,
    formula="eps = eps_inf + beta x^c",
    reference="Alabdulmohsin et al. 2022, arXiv:2209.06640",
    init_grid={"log_beta": (-2.0, 0.0, 2.0, 5.0), "c": _M_GRID_C, "eps_inf": (0.0, 0.5, 1.0)},
    lower=(-np.inf, -np.inf, 0.0),
    derived=lambda p: {"beta": np.exp(p["log_beta"])},
    varpro=VarPro(
        nonlinear=("c",),
        grid=(tuple(float(v) for v in np.linspace(-2.0, 0.0, 401)),),
        basis=lambda nl, f: jnp.stack([jnp.exp(nl[0] * f[:, 0]), jnp.ones_like(f[:, 0])], axis=1),
        assemble=lambda nl, coef: jnp.stack([jnp.log(coef[0]), nl[0], coef[1]]),
        depends=(0, None),
    ),
)
m3 = Law(
    name="m3",
    param_names=("log_beta", "c", "log_gamma"),
    inputs=("tokens",),
    predict=m3_predict,
    formula="eps = beta (1/x + gamma)^c",
    reference="Alabdulmohsin et al. 2022, arXiv:2209.06640",
    init_grid={"log_beta": (-2.0, 0.0, 2.0), "c": (0.05, 0.2, 0.5), "log_gamma": (-20.0, -10.0, -5.0)},
    lower=(-np.inf, 0.0, -np.inf),
    derived=lambda p: {"beta": np.exp(p["log_beta"]), "gamma": np.exp(p["log_gamma"])},
)
m4 = Law(
    name="m4",
    param_names=("log_beta", "c", "alpha", "eps_inf", "eps_0"),
    inputs=("tokens",),
    predict=m4_predict,
    formula="(eps - eps_inf)/(eps_0 - eps)^alpha = beta x^c",
    reference="Alabdulmohsin et al. 2022, arXiv:2209.06640",
    init_grid={
        "log_beta": (-2.0, 0.0, 2.0, 5.0),
        "c": (-1.0, -0.5, -0.2),
        "alpha": (0.0, 0.5, 1.0),
        "eps_inf": (0.0,),
        "eps_0": (1.0, 10.0),
    },
    lower=(-np.inf, -np.inf, 0.0, 0.0, -np.inf),
    derived=lambda p: {"beta": np.exp(p["log_beta"])},
)
