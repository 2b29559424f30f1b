"""Every law's predict against an independent numpy formula, and derivatives against autodiff."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import brentq

import lawfit
from lawfit import kernels

rng = np.random.default_rng(0)
N = rng.uniform(1e7, 1e10, 12)
D = rng.uniform(1e9, 1e12, 12)
U = D / rng.uniform(1, 40, 12)
S = rng.uniform(1e3, 1e5, 12)
C = 6 * N * D
X = rng.uniform(1e4, 1e8, 12)
LOSS = rng.uniform(2.0, 4.0, 12)


def _data_constrained(p, n, d, u):
    a, b, e, alpha, beta, r_d, r_n = p
    big_a, big_b = np.exp(a), np.exp(b)
    g = (alpha * big_a / (beta * big_b)) ** (1 / (alpha + beta))
    n_opt = g * (u * g) ** (beta / alpha)
    u_n = np.minimum(n, n_opt)
    rep_d = np.maximum(d / u - 1, 0)
    rep_n = np.maximum(n / u_n - 1, 0)
    d_eff = u + u * r_d * (1 - np.exp(-rep_d / r_d))
    n_eff = u_n + u_n * r_n * (1 - np.exp(-rep_n / r_n))
    return np.exp(e) + big_a / n_eff**alpha + big_b / d_eff**beta


def _bnsl(p, x, breaks):
    y = np.exp(p[1]) * x ** (-p[2])
    for i in range(breaks):
        d, c, f = np.exp(p[3 + 3 * i]), p[4 + 3 * i], np.exp(p[5 + 3 * i])
        y = y * (1 + (x / d) ** (1 / f)) ** (-c * f)
    return p[0] + y


def _m4(p, x):
    log_beta, c, alpha, e_inf, e_0 = p
    out = []
    for xi in x:
        rhs = np.exp(log_beta) * xi**c
        out.append(
            brentq(
                lambda eps, rhs=rhs: (eps - e_inf) / (e_0 - eps) ** alpha - rhs, e_inf + 1e-15, e_0 - 1e-15, xtol=1e-15
            )
        )
    return np.array(out)


CASES = {
    "chinchilla": (
        [6.0, 7.5, 0.6, 0.34, 0.37],
        np.c_[N, D],
        lambda p: np.exp(p[2]) + np.exp(p[0]) / N ** p[3] + np.exp(p[1]) / D ** p[4],
    ),
    "kaplan_nd": (
        [np.log(8.8e13), np.log(5.4e13), 0.076, 0.095],
        np.c_[N, D],
        lambda p: ((np.exp(p[0]) / N) ** (p[2] / p[3]) + np.exp(p[1]) / D) ** p[3],
    ),
    "kaplan_ns": (
        [np.log(6.5e13), 0.077, np.log(2.1e3), 0.76],
        np.c_[N, S],
        lambda p: (np.exp(p[0]) / N) ** p[1] + (np.exp(p[2]) / S) ** p[3],
    ),
    "compute": ([8.0, 0.5, 0.15], C[:, None], lambda p: np.exp(p[1]) + np.exp(p[0]) * C ** (-p[2])),
    "data_constrained": (
        [6.255, 7.305, 0.625, 0.3527, 0.3527, 15.39, 5.31],
        np.c_[N, D, U],
        lambda p: _data_constrained(p, N, D, U),
    ),
    "overtraining": (
        [166.2, 366.7, -0.2729, 1.8366],
        np.c_[N, D],
        lambda p: p[0] * N ** p[2] + p[1] * 6 ** (p[2] / 2) * D ** p[2] + p[3],
    ),
    "bnsl_1": ([0.5, 3.0, 0.1, 18.0, 0.3, 0.2], C[:, None], lambda p: _bnsl(p, C, 1)),
    "bnsl_2": ([0.5, 3.0, 0.1, 18.0, 0.3, 0.2, 22.0, 0.2, -0.3], C[:, None], lambda p: _bnsl(p, C, 2)),
    "lr_annealing": (
        [2.0, 1.0, 0.5, 0.3],
        np.c_[S / 1e3, rng.uniform(0, 1, 12)],
        None,
    ),  # filled below: needs the raw annealing area
    "m1": ([2.0, -0.3], X[:, None], lambda p: np.exp(p[0]) * X ** p[1]),
    "m2": ([2.0, -0.3, 0.2], X[:, None], lambda p: p[2] + np.exp(p[0]) * X ** p[1]),
    "m3": ([1.0, 0.3, -12.0], X[:, None], lambda p: np.exp(p[0]) * (1 / X + np.exp(p[2])) ** p[1]),
    "m4": ([3.0, -0.4, 0.7, 0.1, 2.0], X[:, None], lambda p: _m4(p, X)),
    "sigmoid": (
        [0.25, 0.9, 3.0, 3.0],
        LOSS[:, None],
        lambda p: p[0] + (p[1] - p[0]) / (1 + np.exp(p[2] * (LOSS - p[3]))),
    ),
    "overtraining_downstream": ([0.857, 2.206, 0.7146], LOSS[:, None], lambda p: p[0] - p[1] * np.exp(-p[2] * LOSS)),
    "loss_to_loss": ([0.2, 1.3, 1.5, 0.4], LOSS[:, None], lambda p: np.exp(p[0]) * (LOSS - p[2]) ** p[1] + p[3]),
    "isoflop_parabola": ([2.5, -0.1, 0.05], np.log(N / 1e9)[:, None],
                         lambda p: p[0] + p[1] * np.log(N / 1e9) + p[2] * np.log(N / 1e9) ** 2),  # fmt: skip
}
_ANNEAL = CASES["lr_annealing"][1]
CASES["lr_annealing"] = (
    CASES["lr_annealing"][0],
    _ANNEAL,
    lambda p: p[0] + np.exp(p[1]) * _ANNEAL[:, 0] ** (-p[2]) - p[3] * _ANNEAL[:, 1],
)


def test_every_registered_law_is_tested():
    assert sorted(CASES) == kernels.names()


def test_parameter_names_are_distinct_and_gridded():
    """Names address parameters (fixed=, result columns, grids): a repeated name would alias two of them."""
    for name in kernels.names():
        law = kernels.get(name)
        assert len(set(law.param_names)) == law.n_params, name
        assert set(law.init_grid) == set(law.param_names), name
    assert kernels.get("bnsl_2").param_names[3:] == ("log_d1", "c1", "log_f1", "log_d2", "c2", "log_f2")


@pytest.mark.parametrize("name", sorted(CASES))
def test_predict_matches_numpy(name):
    theta, raw, reference = CASES[name]
    law = kernels.get(name)
    got = np.asarray(law.predict_raw(jnp.asarray(theta), jnp.asarray(raw)))
    np.testing.assert_allclose(got, reference(np.asarray(theta)), rtol=1e-10)
    log_got = np.asarray(law.log_predict(jnp.asarray(theta), law.features(jnp.asarray(raw))))
    np.testing.assert_allclose(log_got, np.log(reference(np.asarray(theta))), rtol=1e-10, atol=1e-12)
    assert law.__class__ is kernels.Law
    assert law.formula and law.reference and law.predict.__doc__


@pytest.mark.parametrize("name", sorted(CASES))
def test_law_broadcasts_over_lanes(name):
    """The engine evaluates one point for many lanes: theta rows [lanes], feats [1, m]."""
    theta, raw, _ = CASES[name]
    law = kernels.get(name)
    feats = law.features(jnp.asarray(raw))
    lanes = jnp.stack([jnp.asarray(theta) * (1 + 0.01 * k) for k in range(3)], axis=1)  # [p, 3]
    out = law.predict(tuple(lanes), feats[:1])
    expected = [law.predict(lanes[:, k], feats[:1])[0] for k in range(3)]
    np.testing.assert_allclose(np.asarray(out), np.asarray(expected), rtol=1e-12)


def test_chinchilla_analytic_jacobian_matches_autodiff():
    law = kernels.get("chinchilla")
    theta, raw, _ = CASES["chinchilla"]
    feats = law.features(jnp.asarray(raw))
    value, jac = law.log_predict_jac(jnp.asarray(theta), feats)
    auto = jax.jacfwd(law.log_predict)(jnp.asarray(theta), feats)
    np.testing.assert_allclose(np.asarray(value), np.asarray(law.log_predict(jnp.asarray(theta), feats)), rtol=1e-13)
    np.testing.assert_allclose(np.stack([np.asarray(j) for j in jac], 1), np.asarray(auto), rtol=1e-10, atol=1e-14)
    # The raw-space pair (used by least squares on the raw target, e.g. the Hitchhiker protocol).
    value, jac = law.predict_jac(jnp.asarray(theta), feats)
    auto = jax.jacfwd(law.predict)(jnp.asarray(theta), feats)
    np.testing.assert_allclose(np.asarray(value), np.asarray(law.predict(jnp.asarray(theta), feats)), rtol=1e-13)
    np.testing.assert_allclose(np.stack([np.asarray(j) for j in jac], 1), np.asarray(auto), rtol=1e-10, atol=1e-14)


def test_derived_and_registry():
    law = lawfit.laws.get("chinchilla")
    values = law.natural([np.log(400.0), np.log(2000.0), np.log(1.7), 0.3, 0.4])
    assert values["A"] == pytest.approx(400.0) and values["E"] == pytest.approx(1.7)
    assert values["a_opt"] == pytest.approx(0.4 / 0.7)
    with pytest.raises(ValueError, match="unknown law 'nope'.*chinchilla"):
        lawfit.laws.get("nope")
    assert law.grid_starts().shape == (4500, 5)
    one_d = lawfit.laws.get("m2").with_inputs("params")
    assert one_d.inputs == ("params",) and one_d.positive_inputs == ("params",)
