"""The released datasets shipped with lawfit as Parquet files next to this module (see NOTICE)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import polars as pl

HERE = Path(__file__).parent


@dataclasses.dataclass(frozen=True)
class Bundled:
    name: str
    file: str
    description: str
    licence: str
    citation: str


BUNDLED = {
    b.name: b
    for b in (
        Bundled(
            "epoch-chinchilla",
            "epoch_chinchilla.parquet",
            "Chinchilla Fig. 4 final losses (245 runs) as extracted by Epoch AI; tokens = C / (6N)",
            "MIT (via mcleish7/gemstone-scaling-laws; the Epoch original carries no licence)",
            "Besiroglu et al. 2024, arXiv:2404.10102; Hoffmann et al. 2022, arXiv:2203.15556",
        ),
        Bundled(
            "hitchhiker",
            "hitchhiker.parquet",
            "The Hitchhiker's-guide collection (ColPret) rebuilt: one row per checkpoint evaluation, metric `perf` = "
            "each family's fitting target; `scaled_set` names the scaled family (null: not part of one); Pythia "
            "v0/v1 from EleutherAI/pythia evals",
            "MIT (IBM/ColPret; re-hosted third-party data, see NOTICE); Pythia evals Apache-2.0 (EleutherAI/pythia)",
            "Choshen, Zhang, Andreas 2025, ICML (PMLR 267:10683-10699), arXiv:2410.11840; Biderman et al. 2023, "
            "arXiv:2304.01373",
        ),
        Bundled(
            "overtraining",
            "overtraining.parquet",
            "Gadre et al. open_lm runs (104 runs x 8 eval losses + 2 downstream error averages); "
            "families overtrain-{c4_original,rpj,rw_original}",
            "MIT (mlfoundations/scaling)",
            "Gadre et al. 2024, arXiv:2403.08540",
        ),
        Bundled(
            "datablations",
            "datablations.parquet",
            "Muennighoff et al. data-constrained runs (296 finished runs; fit_subset marks the 182 of the fit)",
            "Apache-2.0 (huggingface/datablations)",
            "Muennighoff et al. 2023, arXiv:2305.16264",
        ),
        Bundled(
            "revisiting",
            "revisiting.parquet",
            "Alabdulmohsin et al. learning curves (92 curves; x = seen examples in `tokens`; `train` split flag)",
            "Apache-2.0 (google-research/revisiting_neural_scaling_laws)",
            "Alabdulmohsin, Neyshabur, Zhai 2022, arXiv:2209.06640",
        ),
        Bundled(
            "porian-isoflop",
            "porian_isoflop.parquet",
            "Porian et al. IsoFLOP points (1,745; loss of each model size at 11-12 FLOP budgets 1.25e16-2.56e19) for "
            "15 settings on the way from Kaplan's to Chinchilla's compute-optimal exponent: families "
            "porian-{rw,owt2}-{kaplan,kaplan-head,short-warmup,cosine-decay,tuned}, attention-FLOPs variants, "
            "porian-rw-kaplan-tuned; the authors' exponents in porian_published.json",
            "MIT (formll/resolving-scaling-law-discrepancies)",
            "Porian, Wortsman, Jitsev, Schmidt, Carmon 2024, NeurIPS, arXiv:2406.19146",
        ),
    )
}


def path(name: str) -> Path:
    if name not in BUNDLED:
        raise ValueError(f"unknown dataset {name!r}; bundled datasets: {', '.join(sorted(BUNDLED))}")
    return HERE / BUNDLED[name].file


def load(name: str) -> pl.DataFrame:
    """A bundled dataset as a Polars DataFrame in the observation schema."""
    return pl.read_parquet(path(name))


SCALEBENCH = HERE / "scalebench"


def scalebench(task: str, split: str = "train") -> pl.DataFrame:
    """A ScaleBench task's train or test split as shipped (one row per run, the task's own columns)."""
    tasks = sorted(p.name for p in SCALEBENCH.iterdir() if p.is_dir())
    if task not in tasks:
        raise ValueError(f"unknown ScaleBench task {task!r}; bundled: {', '.join(tasks)}")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return pl.read_parquet(SCALEBENCH / task / f"{split}.parquet")


def porian_published() -> dict[str, dict[str, float]]:
    """Porian et al.'s exponent a per setting of `porian-isoflop` (family -> a, a_low, a_high, budgets):
    the median of their weighted bootstrap power-law fits and its 2.5-97.5 % range, read from their
    released analysis (data/build_porian.py)."""
    return json.loads((HERE / "porian_published.json").read_text())
