"""Laws written as formulas: `from_formula("E + A*N**-alpha + B*D**-beta", inputs=("N", "D"), ...)`.

The text is parsed with Python's `ast` into a small whitelisted grammar (numbers, names, + - * / **
(or ^), unary minus and a fixed set of functions) and turned into a jax function of (theta, inputs);
nothing of the user's text is ever executed. The engine differentiates it automatically.

A law may predict several target columns from one parameter vector (`formula` a mapping
output -> expression). Such a law reads one more input, `OUTPUT`, the index of the output a point
belongs to; `melt_outputs` turns a wide table (one column per output) into those points.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import math
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .base import Law, VarPro

Array = jnp.ndarray

# The index column a multi-output law reads (which output each point is a measurement of).
OUTPUT = "_output"


def _sigmoid(x: Array) -> Array:
    return jax.nn.sigmoid(x)


def _softplus(x: Array) -> Array:
    return jax.nn.softplus(x)


# name -> (jax function, number of arguments)
FUNCTIONS: dict[str, tuple[Callable[..., Array], int]] = {
    "exp": (jnp.exp, 1),
    "log": (jnp.log, 1),
    "log10": (jnp.log10, 1),
    "log2": (jnp.log2, 1),
    "log1p": (jnp.log1p, 1),
    "expm1": (jnp.expm1, 1),
    "sqrt": (jnp.sqrt, 1),
    "abs": (jnp.abs, 1),
    "sign": (jnp.sign, 1),
    "tanh": (jnp.tanh, 1),
    "sigmoid": (_sigmoid, 1),
    "softplus": (_softplus, 1),
    "logaddexp": (jnp.logaddexp, 2),
    "max": (jnp.maximum, 2),
    "min": (jnp.minimum, 2),
    "clip": (jnp.clip, 3),
}
CONSTANTS = {"pi": math.pi}
# Functions whose argument must be positive when it is a bare input column.
_NEEDS_POSITIVE = {"log", "log10", "log2", "sqrt"}
_BINARY = {ast.Add: jnp.add, ast.Sub: jnp.subtract, ast.Mult: jnp.multiply, ast.Div: jnp.divide, ast.Pow: jnp.power}


class FormulaError(ValueError):
    """A formula that cannot be a law; the message names the formula and the problem."""


@dataclasses.dataclass(frozen=True)
class Parsed:
    """One parsed expression: its tree, the names it uses (first-use order) and the inputs it
    needs positive (a bare input under log/sqrt or as the base of a non-integer power)."""

    text: str
    tree: ast.expr
    names: tuple[str, ...]
    positive: frozenset[str]


def _fail(text: str, node: ast.AST | None, problem: str) -> FormulaError:
    where = f" (at column {node.col_offset + 1})" if node is not None and hasattr(node, "col_offset") else ""
    return FormulaError(f"formula {text!r}: {problem}{where}")


def _where(text: str, offset: int | None) -> str:
    """Where a syntax error is, as a column of the formula as written: Python's offset counts in the
    parsed source, where each '^' became '**', and is 0 when the text ended too early."""
    written = text.strip()
    if not offset or offset > len(written.replace("^", "**")):
        return "at the end"
    column, parsed = 0, 0
    while column < len(written) and parsed + (2 if written[column] == "^" else 1) < offset:
        parsed += 2 if written[column] == "^" else 1
        column += 1
    return f"at column {column + 1 + len(text) - len(text.lstrip())}"


def parse(text: str) -> Parsed:
    """Parse one expression, refusing everything outside the grammar with a message naming it."""
    if not isinstance(text, str) or not text.strip():
        raise FormulaError(f"formula {text!r}: empty; write an expression such as 'E + A*N**-alpha'")
    source = text.strip().replace("^", "**")  # researchers write N^-alpha; Python's ^ is xor
    try:
        tree = ast.parse(source, mode="eval").body
    except SyntaxError as err:
        raise FormulaError(f"formula {text!r}: syntax error {_where(text, err.offset)}: {err.msg}") from None
    names: dict[str, None] = {}
    positive: set[str] = set()

    def bare_input(node: ast.expr) -> str | None:
        # An input name, possibly scaled by a positive constant (N/1e9 is positive when N is).
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult | ast.Div):
            for inner, other in ((node.left, node.right), (node.right, node.left)):
                if isinstance(other, ast.Constant) and isinstance(other.value, int | float) and other.value > 0:
                    return bare_input(inner)
        return None

    def visit(node: ast.expr) -> None:
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, int | float):
                raise _fail(text, node, f"only numbers may appear as constants, got {node.value!r}")
        elif isinstance(node, ast.Name):
            if node.id in FUNCTIONS:
                raise _fail(text, node, f"{node.id!r} is a function; call it as {node.id}(...)")
            if node.id not in CONSTANTS:
                names.setdefault(node.id)
        elif isinstance(node, ast.BinOp):
            if type(node.op) not in _BINARY:
                raise _fail(text, node, f"operator {type(node.op).__name__} is not allowed; use + - * / **")
            if isinstance(node.op, ast.Pow):
                exponent = node.right
                integer = isinstance(exponent, ast.Constant) and float(exponent.value).is_integer()
                if not integer and (base := bare_input(node.left)) is not None:
                    positive.add(base)
            visit(node.left)
            visit(node.right)
        elif isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, ast.USub | ast.UAdd):
                raise _fail(text, node, f"operator {type(node.op).__name__} is not allowed")
            visit(node.operand)
        elif isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                called = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
                raise _fail(text, node, f"unknown function {called!r}; known: {', '.join(FUNCTIONS)}")
            arity = FUNCTIONS[node.func.id][1]
            if node.keywords or len(node.args) != arity:
                count = len(node.args) + len(node.keywords)
                raise _fail(text, node, f"{node.func.id}() takes {arity} argument(s), got {count}")
            if node.func.id in _NEEDS_POSITIVE and (base := bare_input(node.args[0])) is not None:
                positive.add(base)
            for arg in node.args:
                visit(arg)
        elif isinstance(node, ast.Compare):
            raise _fail(text, node, "comparisons are not allowed; use max(), min() or clip()")
        else:
            raise _fail(text, node, f"{type(node).__name__} is not allowed in a formula")

    visit(tree)
    return Parsed(text, tree, tuple(names), frozenset(positive))


def _evaluate(node: ast.expr, env: Mapping[str, Array]) -> Array:
    # Runs once per trace (under jit), so a tree walk costs nothing at solve time.
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return env[node.id] if node.id in env else CONSTANTS[node.id]
    if isinstance(node, ast.BinOp):
        return _BINARY[type(node.op)](_evaluate(node.left, env), _evaluate(node.right, env))
    if isinstance(node, ast.UnaryOp):
        value = _evaluate(node.operand, env)
        return -value if isinstance(node.op, ast.USub) else value
    assert isinstance(node, ast.Call)
    return FUNCTIONS[node.func.id][0](*(_evaluate(arg, env) for arg in node.args))


def _identity(raw: Array) -> Array:
    return raw


@dataclasses.dataclass(frozen=True)
class _Program:
    """predict(theta [n_params], feats [n_points, n_inputs]) -> [n_points] for parsed expressions."""

    parsed: tuple[Parsed, ...]
    params: tuple[str, ...]
    inputs: tuple[str, ...]

    def __call__(self, theta: Array, feats: Array) -> Array:
        env = {name: theta[i] for i, name in enumerate(self.params)}
        env |= {name: feats[:, j] for j, name in enumerate(self.inputs)}
        ones = jnp.ones_like(feats[:, 0])
        values = [ones * _evaluate(p.tree, env) for p in self.parsed]
        if len(values) == 1:
            return values[0]
        # Multi-output: each point takes the expression of its output (the last input column).
        which = feats[:, len(self.inputs)].astype(jnp.int32)
        return jnp.stack(values)[which, jnp.arange(feats.shape[0])]


# Variable projection for formula laws: at most this many nonlinear parameters, each scanned on
# this many points evenly spread inside its bounds (12^3 = 1728 grid points at most).
VARPRO_MAX_NONLINEAR = 3
VARPRO_POINTS = 12


def _terms(node: ast.expr, sign: float = 1.0) -> list[tuple[float, ast.expr]]:
    """The top-level sum of an expression as (sign, term) pairs."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub):
        right = -sign if isinstance(node.op, ast.Sub) else sign
        return _terms(node.left, sign) + _terms(node.right, right)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return _terms(node.operand, -sign)
    return [(sign, node)]


def _factors(node: ast.expr) -> list[ast.expr]:
    """The multiplicative factors of a term (numerators of divisions included, denominators kept whole)."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        return _factors(node.left) + _factors(node.right)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        return _factors(node.left) + [node]
    return [node]


def _names_in(node: ast.expr) -> list[str]:
    return [n.id for n in ast.walk(node) if isinstance(n, ast.Name)]


def linear_parameters(text: str, params: Sequence[str]) -> dict[str, tuple[float, ast.expr]]:
    """Parameters a formula is linear in, each with (sign, the term it multiplies): a parameter that
    is a bare factor of exactly one top-level term and appears nowhere else. Only formulas in which
    every term has such a coefficient (no free offset) qualify; otherwise {}."""
    tree = parse(text).tree
    uses = {p: _names_in(tree).count(p) for p in params}
    found: dict[str, tuple[float, ast.expr]] = {}
    for sign, term in _terms(tree):
        coefficient = [f.id for f in _factors(term) if isinstance(f, ast.Name) and uses.get(f.id) == 1]
        if not coefficient:
            return {}
        found[coefficient[0]] = (sign, term)
    return found


def _varpro(parsed: Parsed, params, inputs, lower, upper) -> VarPro | None:
    """The linear structure of a one-output formula, when it has one the engine can scan."""
    linear = linear_parameters(parsed.text, params)
    nonlinear = [p for p in params if p not in linear]
    if not linear or not 0 < len(nonlinear) <= VARPRO_MAX_NONLINEAR:
        return None
    index = {p: i for i, p in enumerate(params)}
    if not all(np.isfinite(lower[index[p]]) and np.isfinite(upper[index[p]]) for p in nonlinear):
        return None
    lows = [lower[index[p]] for p in linear]
    if all(lo >= 0 for lo in lows):
        nonneg = True
    elif all(lo == -np.inf for lo in lows):
        nonneg = False
    else:
        return None  # mixed coefficient bounds: the scan's closed form cannot honour them
    grid = tuple(
        tuple(np.linspace(lower[index[p]], upper[index[p]], VARPRO_POINTS + 2)[1:-1].tolist()) for p in nonlinear
    )
    columns = [(name, sign, term) for name, (sign, term) in linear.items()]

    def basis(theta_nl: Array, feats: Array) -> Array:
        env = {p: theta_nl[i] for i, p in enumerate(nonlinear)} | {name: 1.0 for name, _, _ in columns}
        env |= {name: feats[:, j] for j, name in enumerate(inputs)}
        ones = jnp.ones_like(feats[:, 0])
        return jnp.stack([sign * ones * _evaluate(term, env) for _, sign, term in columns], axis=1)

    def assemble(theta_nl: Array, coef: Array) -> Array:
        values = {p: theta_nl[i] for i, p in enumerate(nonlinear)} | {c[0]: coef[j] for j, c in enumerate(columns)}
        return jnp.stack([values[p] for p in params])

    return VarPro(nonlinear=tuple(nonlinear), grid=grid, basis=basis, assemble=assemble, nonneg=nonneg)


def from_formula(
    formula: str | Mapping[str, str],
    *,
    inputs: Sequence[str],
    params: Sequence[str] | None = None,
    bounds: Mapping[str, tuple[float | None, float | None]] | None = None,
    starts: Mapping[str, Sequence[float]] | None = None,
    name: str | None = None,
    reference: str = "user formula",
    random_starts: int = 64,
) -> Law:
    """A `Law` from one expression (or a mapping output column -> expression for a multi-output law).

    inputs: names in the formula that are data columns; every other name is a parameter.
    params: the parameters' order (default: order of first use); each must appear in the formula.
    bounds: name -> (low, high) box bounds (None or +-inf for open); the solvers keep to them.
    starts: name -> start values. When every parameter has a list, the default start set is their
        product; otherwise `random_starts` points are drawn uniformly in each parameter's start box
        (its listed values' range, else its bounds), so such a parameter needs finite bounds.
    """
    outputs = tuple(formula) if isinstance(formula, Mapping) else ()
    texts = tuple(formula.values()) if isinstance(formula, Mapping) else (formula,)
    label = "; ".join(f"{k} = {v}" for k, v in formula.items()) if outputs else str(formula)
    if outputs and not texts:
        raise FormulaError("formula: a multi-output law needs at least one output expression")
    parsed = tuple(parse(text) for text in texts)
    inputs = tuple(inputs)
    if len(set(inputs)) != len(inputs):
        raise FormulaError(f"formula {label!r}: inputs {inputs} repeat a name")
    for given in inputs:
        if given in FUNCTIONS or given in CONSTANTS or not given.isidentifier():
            raise FormulaError(f"formula {label!r}: input name {given!r} is not usable as a symbol")
    used = list(dict.fromkeys(n for p in parsed for n in p.names))
    unused_inputs = [x for x in inputs if x not in used]
    if unused_inputs:
        raise FormulaError(f"formula {label!r}: input(s) {unused_inputs} are never used")
    found = [n for n in used if n not in inputs]
    bounds = dict(bounds or {})
    starts = {k: tuple(float(v) for v in vs) for k, vs in (starts or {}).items()}
    if params is None:
        params = found
    params = tuple(params)
    declared = set(params) | set(bounds) | set(starts)
    for given in declared:
        if given in inputs:
            raise FormulaError(f"formula {label!r}: {given!r} is both an input and a parameter")
        if given not in used:
            raise FormulaError(f"formula {label!r}: parameter {given!r} is never used in the formula")
    unknown = [n for n in found if n not in params]
    if unknown:
        raise FormulaError(
            f"formula {label!r}: unknown symbol(s) {unknown}: neither an input {list(inputs)} "
            f"nor a parameter {list(params)}"
        )
    stray = sorted((set(bounds) | set(starts)) - set(params))
    if stray:
        raise FormulaError(f"formula {label!r}: bounds/starts for {stray}, which are not in params {list(params)}")
    if not params:
        raise FormulaError(f"formula {label!r}: no parameters to fit")

    lower, upper, grid = [], [], {}
    for p in params:
        lo, hi = bounds.get(p, (None, None))
        lo = -np.inf if lo is None else float(lo)
        hi = np.inf if hi is None else float(hi)
        if not lo < hi:
            raise FormulaError(f"formula {label!r}: bounds of {p!r} must have low < high, got ({lo}, {hi})")
        if p in starts:
            values = starts[p]
            if not values or not all(np.isfinite(values)) or any(v < lo or v > hi for v in values):
                raise FormulaError(f"formula {label!r}: starts of {p!r} must be finite values within its bounds")
            grid[p] = values
        elif np.isfinite(lo) and np.isfinite(hi):
            grid[p] = (lo, hi)
        else:
            raise FormulaError(
                f"formula {label!r}: parameter {p!r} needs finite bounds or start values (to draw its starts)"
            )
        lower.append(lo)
        upper.append(hi)
    positive = tuple(x for x in inputs if any(x in p.positive for p in parsed))
    all_grid = all(p in starts for p in params)
    digest = hashlib.sha256(repr((label, inputs, params, lower, upper, grid)).encode()).hexdigest()[:8]
    program = _Program(parsed, params, inputs)
    varpro = None if outputs else _varpro(parsed[0], params, inputs, lower, upper)
    return Law(
        name=name or f"formula_{digest}",
        param_names=params,
        inputs=inputs + ((OUTPUT,) if outputs else ()),
        predict=program,
        formula=label,
        reference=reference,
        init_grid=grid,
        features=_identity,
        positive_inputs=positive,
        lower=tuple(lower),
        upper=tuple(upper),
        outputs=outputs,
        random_starts=0 if all_grid else int(random_starts),
        varpro=varpro,
    )


def spec(law: Law) -> dict:
    """A formula law as plain data (JSON-able): `from_spec(spec(law))` rebuilds it, e.g. in the
    process that later predicts from saved results."""
    if not isinstance(law.predict, _Program):
        raise ValueError(f"law {law.name!r} is not a formula law")
    program = law.predict
    texts = [p.text for p in program.parsed]
    bounds = {p: [lo if np.isfinite(lo) else None, hi if np.isfinite(hi) else None]
              for p, lo, hi in zip(law.param_names, law.lower, law.upper, strict=True)}  # fmt: skip
    out = {
        "name": law.name,
        "formula": dict(zip(law.outputs, texts, strict=True)) if law.outputs else texts[0],
        "inputs": list(program.inputs),
        "params": list(law.param_names),
        "bounds": bounds,
        "reference": law.reference,
        "random_starts": law.random_starts or 64,
    }
    if not law.random_starts:
        out["starts"] = {p: list(v) for p, v in law.init_grid.items()}
    return out


def from_spec(data: Mapping) -> Law:
    """The law `spec` described."""
    bounds = {p: tuple(box) for p, box in data.get("bounds", {}).items()}
    return from_formula(
        data["formula"],
        inputs=data["inputs"],
        params=data.get("params"),
        bounds=bounds,
        starts=data.get("starts"),
        name=data.get("name"),
        reference=data.get("reference", "user formula"),
        random_starts=int(data.get("random_starts", 64)),
    )


@dataclasses.dataclass(frozen=True)
class OutputLaw:
    """One output of a separable multi-output law as a law of its own: `law` predicts output
    `output` from the inputs `inputs` (indices into the full law's inputs) with the parameters
    `params` (indices into the full law's parameters)."""

    output: int
    law: Law
    params: tuple[int, ...]
    inputs: tuple[int, ...]


def separate(law: Law) -> list[OutputLaw] | None:
    """A multi-output formula law whose outputs share no parameter, one law per output; None for
    any other law. Its summed objective is then the sum of the outputs' own, each minimised over
    its own parameters: fitting them one by one reaches the joint optimum, from every output's best
    start instead of the best joint start, on systems of a fifth of the size (for five outputs)."""
    if not law.outputs or not isinstance(law.predict, _Program):
        return None
    program = law.predict
    # Each output's parameters in order of first use.
    used = [tuple(law.param_names.index(n) for n in p.names if n in law.param_names) for p in program.parsed]
    every = [i for params in used for i in params]
    if len(every) != len(set(every)):
        return None
    parts = []
    for k, (parsed, params) in enumerate(zip(program.parsed, used, strict=True)):
        # Names in order of first use, renamed by position: outputs written alike (domain i's terms
        # over its own proportion and the others') become one law, and so one set of programs.
        inputs = tuple(program.inputs.index(n) for n in parsed.names if n in program.inputs)
        rename = {law.param_names[i]: f"q{j}" for j, i in enumerate(params)}
        rename |= {program.inputs[i]: f"x{j}" for j, i in enumerate(inputs)}
        text = ast.unparse(_Renamer(rename).visit(ast.parse(parsed.text, mode="eval")))
        boxes = tuple((law.lower[i], law.upper[i]) for i in params)
        grid = None if law.random_starts else tuple(law.init_grid[law.param_names[i]] for i in params)
        single = _output_law(text, len(inputs), boxes, grid, law.random_starts or 64, law.reference)
        parts.append(OutputLaw(k, single, params, inputs))
    return parts


class _Renamer(ast.NodeTransformer):
    def __init__(self, names: Mapping[str, str]):
        self.names = names

    def visit_Name(self, node: ast.Name) -> ast.Name:
        return ast.copy_location(ast.Name(self.names.get(node.id, node.id), node.ctx), node)


@functools.lru_cache(maxsize=256)
def _output_law(text: str, n_inputs: int, boxes, grid, random_starts: int, reference: str) -> Law:
    """One output's law over positional names (cached: equal outputs share one `Law`)."""
    params = [f"q{j}" for j in range(len(boxes))]
    return from_formula(
        text,
        inputs=[f"x{j}" for j in range(n_inputs)],
        params=params,
        bounds=dict(zip(params, boxes, strict=True)),
        starts=None if grid is None else dict(zip(params, grid, strict=True)),
        reference=reference,
        random_starts=random_starts,
    )


def melt_outputs(frame, law: Law, value: str = "value"):
    """A wide Polars table (one column per output of `law`) -> one row per (row, output), with the
    output's index in `OUTPUT` and its measurement in `value`; rows keep their other columns."""
    import polars as pl

    missing = [c for c in law.outputs if c not in frame.columns]
    if missing:
        raise ValueError(f"law {law.name!r} predicts {list(law.outputs)}; the table lacks {missing}")
    keep = [c for c in frame.columns if c not in law.outputs and c not in (value, OUTPUT)]
    parts = [
        frame.select(keep).with_columns(pl.lit(float(k)).alias(OUTPUT), frame[column].cast(pl.Float64).alias(value))
        for k, column in enumerate(law.outputs)
    ]
    return pl.concat(parts, how="vertical")


def parse_bounds(spec: str | None) -> dict[str, tuple[float | None, float | None]]:
    """`"A=0:1e4,alpha=0:2,E=0:"` -> {"A": (0, 1e4), "alpha": (0, 2), "E": (0, None)} (empty = open)."""
    out: dict[str, tuple[float | None, float | None]] = {}
    for part in filter(None, (p.strip() for p in (spec or "").split(","))):
        name, _, box = part.partition("=")
        low, colon, high = box.partition(":")
        if not name.strip() or not colon:
            raise FormulaError(f"--bounds: expected name=low:high like 'alpha=0:2', got {part!r}")
        try:
            out[name.strip()] = tuple(float(v) if v.strip() else None for v in (low, high))  # type: ignore[assignment]
        except ValueError:
            raise FormulaError(f"--bounds: {part!r} has a bound that is not a number") from None
    return out


def parse_starts(spec: str | None) -> dict[str, tuple[float, ...]]:
    """`"E=1|2,alpha=0.3"` -> {"E": (1.0, 2.0), "alpha": (0.3,)}."""
    out = {}
    for part in filter(None, (p.strip() for p in (spec or "").split(","))):
        name, eq, values = part.partition("=")
        if not name.strip() or not eq:
            raise FormulaError(f"--starts: expected name=v1|v2 like 'alpha=0.2|0.4', got {part!r}")
        try:
            out[name.strip()] = tuple(float(v) for v in values.split("|"))
        except ValueError:
            raise FormulaError(f"--starts: {part!r} has a value that is not a number") from None
    return out


LAW_FILE_KEYS = {"name", "formula", "outputs", "inputs", "params", "bounds", "starts", "reference", "random_starts"}


def laws_from_file(path) -> list[Law]:
    """Laws from a TOML file of `[[law]]` tables::

    [[law]]
    name = "two_term"
    formula = "E + A*N**-alpha + B*D**-beta"      # or: outputs = {loss_a = "...", loss_b = "..."}
    inputs = ["N", "D"]
    bounds = {E = [0, 10], A = [0, 1e4], alpha = [0, 2], B = [0, 1e5], beta = [0, 2]}
    starts = {alpha = [0.2, 0.4]}                  # optional
    """
    import tomllib
    from pathlib import Path

    path = Path(path)
    try:
        spec = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise FormulaError(f"--law-file: no such file: {path}") from None
    except tomllib.TOMLDecodeError as err:
        raise FormulaError(f"--law-file {path}: not valid TOML: {err}") from None
    tables = spec.get("law")
    if not isinstance(tables, list) or not tables:
        raise FormulaError(f"--law-file {path}: expected one or more [[law]] tables")
    laws = []
    for number, table in enumerate(tables, 1):
        where = f"--law-file {path}, law {number}"
        unknown = sorted(set(table) - LAW_FILE_KEYS)
        if unknown:
            raise FormulaError(f"{where}: unknown key(s) {unknown}; expected {sorted(LAW_FILE_KEYS)}")
        if ("formula" in table) == ("outputs" in table):
            raise FormulaError(f"{where}: give exactly one of 'formula' (one target) or 'outputs' (several)")
        if "inputs" not in table:
            raise FormulaError(f"{where}: 'inputs' (the data columns the formula reads) is required")
        bounds = {k: tuple(v) for k, v in table.get("bounds", {}).items()}
        for name, box in bounds.items():
            if len(box) != 2:
                raise FormulaError(f"{where}: bounds of {name!r} must be [low, high], got {list(box)}")
        spec = dict(table, formula=table.get("formula", table.get("outputs")), bounds=bounds)
        spec.setdefault("reference", f"law file {path.name}")
        laws.append(from_spec(spec))
    return laws
