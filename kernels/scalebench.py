"""The laws of six ScaleBench tasks as formula laws (Li et al. 2026, "Spend Less, Fit Better",
arXiv:2604.22753; repository PlanarG/active-sl, MIT; data CC-BY-4.0).

Each law is written here from the formula, parameter order and bounds of `benchmark/dataset/<task>/
laws.py` in that repository (commit e0a58ff), including the guards those functions apply (inputs
and intermediate quantities clamped at a small epsilon, exponents clipped to +-50), so that a fit
here solves the same problem as the benchmark's own fitter. Laws keep the benchmark's ids
(`sl_1` ... `sl_10`) and parameter order.
"""

from __future__ import annotations

import dataclasses
import functools

from .base import Law
from .formula import from_formula


@dataclasses.dataclass(frozen=True)
class Task:
    """One ScaleBench task: its columns (in the laws' input order), the short names the formulas use
    for them, its target column(s) and its laws (id -> (formula or per-output formulas, parameter
    names, bounds))."""

    name: str
    columns: tuple[str, ...]
    symbols: tuple[str, ...]
    targets: tuple[str, ...]
    laws: dict[str, tuple[object, tuple[str, ...], list[tuple[float, float]]]]


def _names(text: str) -> tuple[str, ...]:
    return tuple(text.split())


def _lse(a: str, b: str) -> str:
    return f"logaddexp({a}, {b})"


def _clipped_exp(x: str) -> str:
    return f"exp(clip({x}, -50, 50))"


PARALLEL = Task(
    name="parallel_scaling_law",
    columns=("num_params", "parallel_size"),
    symbols=("N", "S"),
    targets=("loss",),
    laws={
        "sl_1": (
            "c0 + cN*N**-alpha + cS*S**-beta + cNS*N**-alpha*S**-beta",
            _names("c0 cN alpha cS beta cNS"),
            [(-5, 5), (0, 500), (0, 2), (-50, 50), (0, 2), (-100, 100)],
        ),
        "sl_2": (
            "c0 + cN*N**-alpha + cS*S**-beta",
            _names("c0 cN alpha cS beta"),
            [(-5, 5), (0, 500), (0, 2), (-50, 50), (0, 2)],
        ),
        "sl_3": ("a*N**b + c/(1 + S) + d", _names("a b c d"), [(0, 500), (-2, 0), (-5, 5), (-5, 5)]),
        "sl_4": ("a*N**b + c*S**-0.5 + d", _names("a b c d"), [(0, 500), (-2, 0), (-5, 5), (-5, 5)]),
        "sl_5": (
            "max(A/max(N*(k*log(max(S, 1)) + 1), 1e-12), 1e-12)**alpha + E",
            _names("A k alpha E"),
            [(0, 1e9), (-100, 100), (0, 3), (-5, 5)],
        ),
        "sl_6": (
            "c0 + c1*(N**-alpha + S**-beta)",
            _names("c0 c1 alpha beta"),
            [(-200, 200), (-200, 200), (0, 2), (0, 2)],
        ),
        "sl_7": (
            "L0 + A*N**-alpha/max(1 + k*log(max(S, 1)), 1e-12)",
            _names("L0 A alpha k"),
            [(-5, 5), (0, 500), (0, 2), (-50, 50)],
        ),
        "sl_8": (
            "(a*N**b + c)/max(1 + d*log(max(S, 1)), 1e-12)",
            _names("a b c d"),
            [(0, 500), (-2, 0), (-5, 5), (-10, 10)],
        ),
        "sl_9": ("A*N**-alpha*S**-beta", _names("A alpha beta"), [(0, 5000), (0, 2), (0, 2)]),
        "sl_10": ("(A*N**-alpha + E)*S**-beta", _names("A alpha E beta"), [(0, 500), (0, 2), (-5, 5), (0, 2)]),
    },
)

MOE = Task(
    name="moe_scaling_law",
    columns=("num_experts", "dense_parameter_count"),
    symbols=("E", "N"),
    targets=("loss_validation",),
    laws={
        "sl_1": (
            "L_inf + B/max(N**alpha*E**beta, 1e-12)",
            _names("L_inf B alpha beta"),
            [(0, 3), (0.1, 500), (0, 1.5), (-0.5, 1.5)],
        ),
        "sl_2": (
            "L + K*max(N**alpha*E**beta, 1e-12)**-gamma",
            _names("L K alpha beta gamma"),
            [(0, 3), (0, 500), (0, 2), (0, 2), (0, 2)],
        ),
        "sl_3": (
            "A*N**alpha/(1 + B*E**beta) + C*N**(0.6*alpha) + D",
            _names("A alpha B beta C D"),
            [(0, 5000), (-1.5, 0), (0, 20), (0, 2), (-1e4, 1e4), (-5, 5)],
        ),
        "sl_4": (
            "a/(N**alpha*max(max(1 + b*max(E, 1), 1e-12)**gamma, 1e-12)) + c + d*(log(N) - 0.4*log(1 + max(E, 1)))",
            _names("a alpha b gamma c d"),
            [(0.1, 500), (0, 1.5), (0, 20), (0, 1.5), (-5, 5), (-1, 1)],
        ),
        "sl_5": (
            "p0 + exp(clip(p1 + p2*log(max(E, 1)) + p3*log(N) + p4*log(max(E, 1))*log(N), -50, 50))"
            " + p5*log(max(E, 1))",
            _names("p0 p1 p2 p3 p4 p5"),
            [(0, 3), (-5, 10), (-1, 1), (-1, 1), (-0.1, 0.1), (-1, 1)],
        ),
        "sl_6": (
            "a*N**-b*(1 + c*max(E, 1)**-d) + e + f/(max(E, 1)*N**0.05)",
            _names("a b c d e f"),
            [(0, 200), (0, 1.5), (-5, 20), (-0.5, 2), (-5, 5), (-20, 20)],
        ),
        "sl_7": (
            "p0*E**p1*N**p2 + p3*N**p4 + p5",
            _names("p0 p1 p2 p3 p4 p5"),
            [(-500, 500), (-1, 0.5), (-1.5, 0.5), (-500, 500), (-1.5, 0.5), (-5, 5)],
        ),
        "sl_8": ("a*N**b*E**c + d", _names("a b c d"), [(0, 500), (-1.5, 0.5), (-1.5, 0.5), (0, 3)]),
        "sl_9": ("c0 + A*max(N*E**g, 1e-12)**-a", _names("c0 A g a"), [(0, 3), (0, 500), (-1, 2), (0, 2)]),
        "sl_10": (
            "bias + A*max(N/1e9, 1e-12)**-alpha*max((1 + B*E**gamma)/max(1 + B, 1e-12), 1e-12)**-beta",
            _names("bias A alpha B gamma beta"),
            [(0, 3), (0, 15), (0, 2), (0, 100), (0, 6), (0, 2)],
        ),
    },
)

_R = "max(r, 1e-6)"
_Q = "max(q, 1e-6)"
VOCAB = Task(
    name="vocab_scaling_law",
    columns=("non_vocab_parameters", "vocab_size", "num_characters"),
    symbols=("P", "V", "D"),
    targets=("unigram_normalized_loss",),
    laws={
        "sl_1": (
            "c0 + A*V**b*P**e*D**g",
            _names("c0 A b e g"),
            [(-100, 100), (-1e4, 1e4), (-5, 5), (-5, 5), (-5, 5)],
        ),
        "sl_2": (
            f"L + A*exp(clip(({_lse(f'-alpha*{_R}*log(P)', f'-beta*{_R}*log(D)')} - log(2))/{_R}, -50, 50))"
            "*(1 + C*(log(V) - v0)**2)",
            _names("L A alpha beta C v0 r"),
            [(-100, 100), (-1e4, 1e4), (-5, 5), (-5, 5), (-100, 100), (-10, 30), (0.1, 10)],
        ),
        "sl_3": (
            "L0 + exp(clip("
            + _lse(f"{_Q}*(log(max(a, 1e-6)) - alpha*log(P))", f"{_Q}*(log(max(b, 1e-6)) - beta*(log(D) + phi*log(V)))")
            + f"/{_Q}, -50, 50))",
            _names("L0 a alpha b beta phi q"),
            [(-100, 100), (-1e4, 1e4), (-5, 5), (-1e4, 1e4), (-5, 5), (-5, 5), (0.1, 10)],
        ),
        "sl_4": (
            "L_inf + " + _clipped_exp("log(max(A, 1e-6)) - d*max(a*log(P), log(max(lam, 1e-6)) + b*log(D)) - g*log(V)"),
            _names("L_inf A a b d lam g"),
            [(-100, 100), (-1e4, 1e4), (-5, 5), (-5, 5), (-5, 5), (1e-6, 1e4), (-5, 5)],
        ),
        "sl_5": (
            "sign(p0)*"
            + _clipped_exp("log(max(abs(p0), 1e-6)) + p1*log(P) + p2*log(V) + p3*log(D)")
            + " + sign(p4)*"
            + _clipped_exp("log(max(abs(p4), 1e-6)) + p5*log(P)")
            + " + p6",
            _names("p0 p1 p2 p3 p4 p5 p6"),
            [(-1e4, 1e4), (-5, 5), (-5, 5), (-5, 5), (-1e4, 1e4), (-5, 5), (-100, 100)],
        ),
        "sl_6": (
            _clipped_exp("log(max(A, 1e-6)) - alpha*(log(P) + k1*log(V))")
            + " + "
            + _clipped_exp("log(max(B, 1e-6)) - beta*(log(D) + k2*log(V))")
            + " + c0",
            _names("A alpha k1 B beta k2 c0"),
            [(-1e4, 1e4), (-5, 5), (-5, 5), (-1e4, 1e4), (-5, 5), (-5, 5), (-100, 100)],
        ),
        "sl_7": (
            _clipped_exp("log(max(A, 1e-6)) - alpha*log(P) - beta*log(D)")
            + " + "
            + _clipped_exp("log(max(B, 1e-6)) + gamma*log(V) - delta*log(D)")
            + " + c0",
            _names("A alpha beta B gamma delta c0"),
            [(-1e4, 1e4), (-5, 5), (-5, 5), (-1e4, 1e4), (-5, 5), (-5, 5), (-100, 100)],
        ),
        "sl_8": (
            "c0 + c1*log(V) + c2*"
            + _clipped_exp("beta*log(V) - alpha*log(P)")
            + " + c3*"
            + _clipped_exp("beta*log(V) - gamma*log(D)"),
            _names("c0 c1 c2 alpha c3 gamma beta"),
            [(-100, 100), (-100, 100), (-1e4, 1e4), (-5, 5), (-1e4, 1e4), (-5, 5), (-5, 5)],
        ),
        "sl_9": (
            _clipped_exp("log(max(A, 1e-6)) - alpha*log(P) - beta*log(D)")
            + "*(1 + gamma*log(V))"
            + " + sign(delta)*"
            + _clipped_exp("log(max(abs(delta), 1e-6)) + epsilon*log(V)")
            + " + L_inf",
            _names("A alpha beta gamma delta epsilon L_inf"),
            [(-1e4, 1e4), (-5, 5), (-5, 5), (-100, 100), (-1e4, 1e4), (-5, 5), (-100, 100)],
        ),
        "sl_10": (
            "L_min + " + _clipped_exp("a + bP*log(P) + bV1*log(V) + bV2*log(V)**2 + bD*log(D) + bVD*log(V)*log(D)"),
            _names("L_min a bP bV1 bV2 bD bVD"),
            [(-100, 100), (-20, 20), (-2, 2), (-2, 2), (-0.1, 0.1), (-2, 2), (-0.1, 0.1)],
        ),
    },
)


def _dc_sl3() -> str:
    u_d = "max(U, 1e-12)"
    u_n = f"max(min(rho*{u_d}, N), 1e-12)"
    r_n = f"max(N/{u_n} - 1, 0)"
    r_d = f"(D/{u_d} - 1)"
    eff_n = f"max({u_n} + tau_N*{u_n}*(1 - exp(-{r_n}/tau_N)), 1e-12)"
    eff_d = f"max({u_d} + tau_D*{u_d}*(1 - exp(-{r_d}/tau_D)), 1e-12)"
    return f"A*{eff_n}**-alpha + B*{eff_d}**-alpha + C"


def _dc_sl10() -> str:
    bq = "(b*max(q, 1e-12))"
    total = f"max(D**-{bq} + max(k*U, 1e-12)**-{bq}, 1e-12)"
    return f"L0 + A*N**-a + B*{total}**(1/max(q, 1e-12))"


DATA_CONSTRAINED = Task(
    name="data_constrained_scaling_law",
    columns=("unique_tokens", "params", "tokens"),
    symbols=("U", "N", "D"),
    targets=("loss",),
    laws={
        "sl_1": (
            "A*N**-alpha + B*D**-beta + E*U**gamma*N**delta",
            _names("A alpha B beta E gamma delta"),
            [(1e-3, 1e9), (0.05, 2), (1e-3, 1e8), (0.05, 2), (-100, 200), (-0.5, 0.5), (-0.5, 0.5)],
        ),
        "sl_2": (
            "a + b*U**p + c*N**q + d*D**r",
            _names("a b c d p q r"),
            [(-3, 10), (-1e6, 1e6), (-1e6, 1e6), (-1e7, 1e7), (-1.5, 0.5), (-1.5, 0.5), (-1.5, 0.5)],
        ),
        "sl_3": (
            _dc_sl3(),
            _names("A tau_N B tau_D alpha C rho"),
            [(1e-3, 1e7), (1e-3, 500), (1e-3, 1e7), (1e-3, 500), (0.05, 2), (-3, 10), (1e-3, 100)],
        ),
        "sl_4": (
            "L0 + A*N**-a + B*max(D/(1 + D/max(s*U*N**d, 1e-12)), 1e-12)**-b",
            _names("L0 A a B b s d"),
            [(-3, 8), (1e-3, 1e11), (0.05, 2.5), (1e-3, 1e9), (0.05, 2.5), (1e-5, 1e7), (-2, 1.5)],
        ),
        "sl_5": (
            "A*N**-alpha + B*max(U**gamma*D**(1 - gamma), 1e-12)**-beta + E",
            _names("A alpha B beta E gamma"),
            [(1e-3, 1e10), (0.05, 2), (1e-3, 1e10), (0.05, 2), (-3, 10), (0, 1)],
        ),
        "sl_6": (
            "E + A*N**-alpha + B*max(D/max(1 + C*max(D/U - 1, 0)**c*N**d, 1e-12), 1e-12)**-beta",
            _names("E A alpha B beta C c d"),
            [(-3, 10), (1e-3, 1e11), (0.05, 2), (1e-3, 1e12), (0.05, 2), (0, 1e4), (0, 2), (-1, 1)],
        ),
        "sl_7": (
            "L0 + A*max(N*U, 1e-12)**alpha_pu + B*D**alpha_t + C*N**alpha_p",
            _names("L0 A alpha_pu B alpha_t C alpha_p"),
            [(-3, 10), (1e-3, 1e9), (-2, 0.5), (1e-3, 1e9), (-2, 0.5), (-1e13, 1e13), (-2.5, 0.5)],
        ),
        "sl_8": (
            "a + b*D**-alpha + c*N**-beta + d*max(abs(log(U/D + 1)), 1e-12)**gamma",
            _names("a b c d alpha beta gamma"),
            [(-3, 10), (-1e8, 1e8), (-1e8, 1e8), (-200, 200), (0.05, 2), (0.05, 2), (0.05, 5)],
        ),
        "sl_9": (
            "A*N**-alpha + B*D**-beta*(1 + C*U**-gamma) + L_inf",
            _names("A alpha B beta C gamma L_inf"),
            [(1e-3, 1e7), (0.05, 2), (1e-3, 1e7), (0.05, 2), (0, 1e11), (0.05, 2), (-3, 10)],
        ),
        "sl_10": (
            _dc_sl10(),
            _names("L0 A B a b k q"),
            [(-3, 8), (1e-3, 1e9), (1e-3, 1e9), (0.05, 2), (0.05, 2), (1e-3, 1e4), (0.1, 50)],
        ),
    },
)


# --- domain mixture: five losses from five proportions; parameters packed per domain ---
_DOMAINS = range(1, 6)


def _p(j: int) -> str:
    return f"max(p{j}, 1e-12)"


def _others(i: int) -> list[int]:
    return [j for j in _DOMAINS if j != i]


def _per_domain(
    build, names: str, box: list[tuple[float, float]], shared: str = "", shared_box=()
) -> tuple[object, tuple[str, ...], list]:
    """A multi-output law: `build(i)` is domain i's expression over parameters named `<name><i>`
    (and `<name><i>_<j>` for per-pair weights); parameters are packed domain by domain, after the
    shared ones, as the benchmark packs them."""
    formulas = {f"loss_domain_{i}": build(i) for i in _DOMAINS}
    params = list(_names(shared))
    for i in _DOMAINS:
        for name in names.split():
            if name.endswith("_j"):
                params += [f"{name[:-2]}{i}_{j}" for j in _others(i)]
            elif name.endswith("_k"):
                params += [f"{name[:-2]}{i}_{k}" for k in _DOMAINS]
            else:
                params.append(f"{name}{i}")
    return formulas, tuple(params), list(shared_box) + box * 5


def _cross(weight: str, i: int) -> str:
    return " + ".join(f"{weight}{i}_{j}*p{j}" for j in _others(i))


DOMAIN_MIXTURE = Task(
    name="domain_mixture_scaling_law",
    columns=tuple(f"proportion_domain_{i}" for i in _DOMAINS),
    symbols=tuple(f"p{i}" for i in _DOMAINS),
    targets=tuple(f"loss_domain_{i}" for i in _DOMAINS),
    laws={
        "sl_1": _per_domain(
            lambda i: f"a{i} + b{i}*log({_p(i)}) + {_cross('c', i)}",
            "a b c_j",
            [(-3, 6), (-10, 5)] + [(-10, 10)] * 4,
        ),
        "sl_2": _per_domain(
            lambda i: f"A{i}*max(p{i} + eps{i}, 1e-12)**-alpha{i}*exp(clip({_cross('w', i)}, -20, 20))",
            "A eps alpha w_j",
            [(0, 10), (-0.03, 0.2), (0, 2)] + [(-5, 5)] * 4,
        ),
        "sl_3": _per_domain(
            lambda i: f"base{i} + coeff{i}*{_p(i)}**power{i} + {_cross('W', i)}",
            "base coeff power W_j",
            [(-3, 6), (-20, 20), (-2, 4)] + [(-10, 10)] * 4,
        ),
        "sl_4": _per_domain(
            lambda i: "exp(clip(bias{i} + {terms}, -50, 50))".format(
                i=i, terms=" + ".join(f"C{i}_{k}*{_p(k)}**alpha{k}" for k in _DOMAINS)
            ),
            "bias C_k",
            [(-3, 3)] + [(-10, 10)] * 5,
            shared="alpha1 alpha2 alpha3 alpha4 alpha5",
            shared_box=[(-1, 3)] * 5,
        ),
        "sl_5": _per_domain(
            lambda i: f"b{i} + " + " + ".join(f"W{i}_{k}*{_p(k)}**alpha{k}" for k in _DOMAINS),
            "b W_k",
            [(-3, 6)] + [(-25, 25)] * 5,
            shared="alpha1 alpha2 alpha3 alpha4 alpha5",
            shared_box=[(-1, 3)] * 5,
        ),
        "sl_6": _per_domain(
            lambda i: f"C{i} + A{i}*max(p{i} + {_cross('T', i)}, 1e-12)**-alpha{i}",
            "C A alpha T_j",
            [(-3, 6), (0, 10), (0, 3)] + [(-5, 5)] * 4,
        ),
        "sl_7": _per_domain(
            lambda i: (
                f"a{i} + b{i}*p{i} + c{i}*log({_p(i)}) + "
                + " + ".join(f"d{i}_{j}*p{j} + e{i}*log({_p(j)})" for j in _others(i))
            ),
            "a b c d_j e",
            [(-5, 8), (-10, 15), (-5, 5)] + [(-10, 10)] * 4 + [(-5, 5)],
        ),
        "sl_8": _per_domain(lambda i: f"c{i} - a{i}*{_p(i)}**b{i}", "c a b", [(0, 6), (0, 5), (0, 3)]),
        "sl_9": _per_domain(
            lambda i: f"a{i} + b{i}*log({_p(i)}) + c{i}*log({_p(i)})**2", "a b c", [(-3, 6), (-2, 1), (-1, 1)]
        ),
        "sl_10": _per_domain(
            lambda i: f"a{i} + b{i}/max(p{i} + eps{i}, 1e-12)", "a b eps", [(-3, 6), (-1, 1), (-0.03, 0.3)]
        ),
    },
)


# --- learning rate x batch size: polynomials in the logs of (lr, bsz, D, P) and penalties ---
_Z = ("log(lr)", "log(bsz)", "log(D)", "log(P)")
_Z10 = tuple(f"({z}/log(10))" for z in _Z)


def _quadratic(weights: list[str], z: tuple[str, ...] = _Z) -> str:
    """w0 + sum_i w_i z_i + sum_i w z_i^2 + sum_{i<j} w z_i z_j over 15 weights (the benchmark's order)."""
    terms = ["1", *z, *(f"{a}**2" for a in z)] + [f"{z[i]}*{z[j]}" for i in range(4) for j in range(i + 1, 4)]
    return " + ".join(f"{w}*{t}" if t != "1" else w for w, t in zip(weights, terms, strict=True))


def _w(prefix: str, n: int, start: int = 0) -> list[str]:
    return [f"{prefix}{k}" for k in range(start, start + n)]


def _softplus(x: str) -> str:
    return f"log(1 + exp(clip({x}, -20, 20)))"


def _lr_sl2() -> str:
    u, v, s, p = _Z
    base = (
        f"L_inf + {_softplus('Cp')}*exp(-{_softplus('ap')}*{p}) + {_softplus('Cd')}*exp(-{_softplus('ad')}*{s})"
        f" + {_softplus('Cdp')}*exp(-{_softplus('adp')}*({s} - k*{p}))"
        f" + {_softplus('Cbb')}*exp(-{_softplus('abb')}*{v})"
    )
    du = f"({u} - (u0 + up*{p} + us*{s} + uv*{v}))"
    dv = f"({v} - (v0 + vp*{p} + vs*{s}))"
    c_l = _softplus(f"cL0 + cLp*{p} + cLs*{s} + cLv*{v}")
    c_b = _softplus(f"cB0 + cBp*{p} + cBs*{s} + cBv*{v}")
    return f"{base} + {c_l}*{du}**2 + {c_b}*{dv}**2 + 2*tanh(rho)*({c_l}*{c_b})**0.5*{du}*{dv}"


def _lr_sl3() -> str:
    u, v, s, p = _Z
    base = "E + A*P**-alpha + B*D**-beta + F/max(P**wN*D**wD, 1e-30)"
    opt_lr = f"(mu0 + muN*{p} + muD*{s} + muB*{v} + muND*{p}*{s})"
    opt_bsz = f"(nu0 + nuN*{p} + nuD*{s} + nuND*{p}*{s})"
    return (
        f"{base} + C0*exp(CN*{p} + CD*{s} + CB*{v})*({u} - {opt_lr})**2 + G0*exp(GN*{p} + GD*{s})*({v} - {opt_bsz})**2"
    )


def _lr_sl5() -> str:
    u, v, s, n = _Z
    base = f"L0 + AN*exp(-aN*{n}) + AD*exp(-aD*{s}) + AB*exp(-aB*{v})"
    extra = f"AR*exp(-aR*({s} - {n})**2) + AX*exp(-aX*({s} - {v}))"
    u_star = f"(u0 + kb*{v} + kn*{n} + kd*{s})"
    return f"{base} + {extra} + clr0*exp(-wb*{v} - wn*{n} - ws*{s})*({u} - {u_star})**2"


def _lr_sl8() -> str:
    u, v, s, p = _Z
    terms = (
        f"L0 + {_softplus('t1')}*exp(-{_softplus('t2')}*{p}) + {_softplus('t3')}*exp(-{_softplus('t4')}*{s})"
        f" + {_softplus('t5')}*exp(-{_softplus('t6')}*({s} - {p}))"
    )
    dev_lr = f"({u} - (t7 + t8*{v} + t9*{p} + t10*{s}))"
    dev_ns = f"(({u} - 0.5*{v}) - (t13 + t14*{p} + t15*{s}))"
    lr_pen = f"{_softplus('t11')}*{dev_lr}**2*(1 + tanh(t12)*tanh({dev_lr}))"
    ns_pen = f"{_softplus('t16')}*{dev_ns}**2*(1 + tanh(t17)*tanh({dev_ns}))"
    return f"{terms} + {lr_pen} + {ns_pen} + {_softplus('t19')}*({s} - {p} - t18)**2"


_LR6 = ["1", "log(D)", "log(P)", "log(D)*log(P)", "log(lr)", "log(lr)**2", "log(bsz)", "log(bsz)**2"] + [
    "log(lr)*log(bsz)",
    "log(lr)*log(D)",
    "log(lr)*log(P)",
    "log(bsz)*log(D)",
    "log(bsz)*log(P)",
]

LR_BSZ = Task(
    name="lr_bsz_scaling_law",
    columns=("lr", "bsz", "data_size", "non_embedding_param_size"),
    symbols=("lr", "bsz", "D", "P"),
    targets=("lm_loss",),
    laws={
        "sl_1": (
            f"exp({_quadratic(_w('w', 15))})",
            tuple(_w("w", 15)),
            [(-15, 15)] + [(-0.35, 0.35)] * 4 + [(-0.025, 0.025)] * 10,
        ),
        "sl_2": (
            _lr_sl2(),
            _names("L_inf Cp ap Cd ad Cdp adp k u0 up us uv v0 vp vs cL0 cLp cLs cB0 cBp cBs rho cLv cBv Cbb abb"),
            [(0, 3), (-5, 15), (-5, 5), (-5, 15), (-5, 5), (-5, 15), (-5, 5), (-5, 3), (-20, 2)]
            + [(-3, 3)] * 3
            + [(0, 20)]
            + [(-3, 3)] * 2
            + [(-12, 12)] * 6
            + [(-8, 8)]
            + [(-12, 12)] * 2
            + [(-5, 15), (-5, 5)],
        ),
        "sl_3": (
            _lr_sl3(),
            _names("E A alpha B beta F wN wD C0 CN CD CB mu0 muN muD muB muND G0 GN GD nu0 nuN nuD nuND"),
            [(0.5, 3), (0, 5e5), (0.05, 2), (0, 5e5), (0.05, 2), (0, 2e7), (0.05, 2), (0.05, 2), (0, 3)]
            + [(-3, 3)] * 3
            + [(-20, 5)]
            + [(-10, 3)] * 4
            + [(0, 3)]
            + [(-3, 3)] * 2
            + [(0, 15)]
            + [(-3, 3)] * 3,
        ),
        "sl_4": (
            f"exp({_quadratic(_w('w', 15))} + w15*(log(D) - log(P)) + w16/bsz + w17/bsz**2 + w18/D + w19/P)",
            tuple(_w("w", 20)),
            [(-15, 15)]
            + [(-0.35, 0.35)] * 4
            + [(-0.025, 0.025)] * 10
            + [(-0.3, 0.3), (-10, 10), (-200, 200), (-1.5e9, 1.5e9), (-5e7, 5e7)],
        ),
        "sl_5": (
            _lr_sl5(),
            _names("L0 AN aN AD aD AB aB clr0 u0 kb kn kd wb wn ws AR aR AX aX"),
            [(0, 3), (0, 2e4), (0.01, 2), (0, 2e4), (0.01, 2), (0, 20), (0.01, 2), (0, 200), (-12, 3)]
            + [(-2, 2)] * 6
            + [(0, 5), (0, 2), (0, 2000), (0, 2)],
        ),
        "sl_6": (
            "L_inf + exp(clip("
            + " + ".join(f"w{k}*{t}" if t != "1" else f"w{k}" for k, t in enumerate(_LR6))
            + ", -50, 50))",
            ("L_inf", *_w("w", 13)),
            [(0, 3), (-8, 8), (-0.5, 0.5), (-0.5, 0.5), (-0.025, 0.025), (-0.6, 0.6), (-0.6, 0.6), (-0.5, 0.5)]
            + [(-0.5, 0.5), (-0.04, 0.04), (-0.02, 0.02), (-0.04, 0.04), (-0.05, 0.05), (-0.02, 0.02)],
        ),
        "sl_7": (
            f"E + exp(clip({_quadratic(_w('u', 15))}, -50, 50)) + exp(clip({_quadratic(_w('v', 15))}, -50, 50))",
            ("E", *_w("u", 15), *_w("v", 15)),
            [(0, 2.5)] + ([(-15, 15)] + [(-0.35, 0.35)] * 4 + [(-0.03, 0.03)] * 10) * 2,
        ),
        "sl_8": (
            _lr_sl8(),
            ("L0", *_w("t", 19, start=1)),
            [(-1, 3), (-3, 12), (-5, 5), (-3, 12), (-5, 5), (-3, 12), (-5, 5), (-20, 3)]
            + [(-5, 5)] * 3
            + [(-5, 10), (-5, 5), (-15, 5), (-5, 5), (-5, 5), (-5, 10), (-5, 5), (-5, 10), (-5, 10)],
        ),
        "sl_9": (
            _quadratic(_w("w", 15), _Z10),
            tuple(_w("w", 15)),
            [(-5, 30)] + [(-4, 4)] * 4 + [(-0.3, 0.3)] * 10,
        ),
        "sl_10": (
            f"{_quadratic(_w('w', 15))} + wD*D**-0.5 + wP*P**-0.5 + wB/bsz",
            (*_w("w", 15), "wD", "wP", "wB"),
            [(-5, 35)] + [(-2, 2)] * 4 + [(-0.1, 0.1)] * 10 + [(-5e4, 5e4), (-2e4, 2e4), (-15, 15)],
        ),
    },
)

TASKS: dict[str, Task] = {task.name: task for task in (PARALLEL, VOCAB, MOE, DATA_CONSTRAINED, LR_BSZ, DOMAIN_MIXTURE)}


@functools.cache
def law(task: str, law_id: str) -> Law:
    """ScaleBench's law `law_id` of `task` as a formula law reading the task's columns (short names
    in the formula), with the benchmark's parameter order and bounds; starts are uniform in them."""
    spec = TASKS[task]
    formula, params, bounds = spec.laws[law_id]
    if len(params) != len(bounds):
        raise AssertionError(f"{task}/{law_id}: {len(params)} parameters but {len(bounds)} bounds")
    return from_formula(
        formula,  # type: ignore[arg-type]
        inputs=spec.symbols,
        params=params,
        bounds=dict(zip(params, bounds, strict=True)),
        name=f"scalebench/{task.removesuffix('_scaling_law')}/{law_id}",
        reference="ScaleBench (Li et al. 2026, arXiv:2604.22753), PlanarG/active-sl benchmark/dataset",
    )
