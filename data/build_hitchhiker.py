"""Rebuild the harmonised Hitchhiker's-guide collection (Choshen, Zhang, Andreas 2025) as one long table.

The collection is ColPret's (IBM/ColPret, MIT) `get_data()` table re-derived from its raw releases with this
project's own code, following the rules its authors recorded (model names, scaled families, token counts and
the fitting target `perf`). Pythia is not in that copy: it is aggregated here from the per-checkpoint
lm-eval-harness JSONs of EleutherAI/pythia `evals/` (Apache-2.0) in the same way.

Every row is one checkpoint evaluation of one model with metric ``perf``: the family's fitting target,
built as ColPret's `get_perf_df` does (mean of the row's loss columns; perplexities enter as log2; accuracies
are not part of it). Extra columns: ``scaled_set`` (the scaled family the paper fits, null when the model is
not part of one), ``model_type``, ``corpus``, ``arch``, ``source``.

Used by `build_bundled`; never read at run time.
"""

from __future__ import annotations

import functools
import json
import math
import re
import xml.etree.ElementTree as ElementTree
import zipfile
from pathlib import Path

import polars as pl

from lawfit.kernels.base import FLOPS_PER_PARAM_TOKEN, training_flops

from .schema import conform

SIZE_SUFFIX = {"k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}


def parse_size(text: str) -> float:
    """'70m' -> 7e7, '1.4b' -> 1.4e9, '13.0B' -> 1.3e10, '1b1' -> 1.1e9 (BLOOM style)."""
    text = text.strip().lower()
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([kmbt])(\d*)", text)
    if match is None:
        raise ValueError(f"cannot read a model size from {text!r}")
    whole, suffix, decimals = match.groups()
    number = float(f"{whole}.{decimals}") if decimals else float(whole)
    return number * SIZE_SUFFIX[suffix]


def _row_mean(columns: list[str]) -> pl.Expr:
    """The mean of each row's non-null values in `columns`, added left to right: `pl.mean_horizontal`
    adds in an order that depends on Polars' thread count, so its last bits changed with the machine."""
    values = [pl.col(c).cast(pl.Float64) for c in columns]
    total = functools.reduce(lambda acc, value: acc + value.fill_null(0.0), values[1:], values[0].fill_null(0.0))
    count = functools.reduce(lambda acc, value: acc + value.is_not_null().cast(pl.Int64), values, pl.lit(0))
    return pl.when(count > 0).then(total / count)


def _rows(frame: pl.DataFrame, **provenance: str | None) -> pl.DataFrame:
    """Add provenance columns (scaled_set, model_type, corpus, arch, source) the frame does not already carry."""
    return frame.with_columns(
        [pl.lit(value, dtype=pl.String).alias(name) for name, value in provenance.items() if name not in frame.columns]
    )


def opt(folder: Path) -> pl.DataFrame:
    """OPT trajectories (Xia et al. 2023): target = raw validation perplexity, tokens = steps x batch."""
    raw = pl.read_csv(folder / "aggregated_eval" / "opt_trajectories.csv")
    params = pl.col("model_size").map_elements(parse_size, return_dtype=pl.Float64)
    batch = (
        pl.when(params < 1e9)
        .then(5e5)
        .when(params < 6e9)
        .then(1e6)
        .when(params < 1e10)
        .then(2e6)
        .when(params < 6e10)
        .then(4e6)
        .otherwise(2e6)
    )
    frame = raw.select(
        pl.format("OPT-{}", pl.col("model_size")).alias("run_id"),
        params.alias("params"),
        (pl.col("steps") * batch).alias("tokens"),
        pl.col("steps").cast(pl.Int64).alias("step"),
        pl.col("ppl").alias("value"),
    )
    return _rows(frame, model_type="OPT", corpus="OPT", arch="dec", source="training_trajectories", scaled_set="OPT")


def _xlsx_first_columns(path: Path) -> list[list[str]]:
    """Cell texts of the first sheet of a small .xlsx, row by row (shared strings resolved)."""
    ns = {"s": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
    with zipfile.ZipFile(path) as book:
        strings = [
            "".join(t.text or "" for t in item.iter(f"{{{ns['s']}}}t"))
            for item in ElementTree.fromstring(book.read("xl/sharedStrings.xml")).findall("s:si", ns)
        ]
        sheet = ElementTree.fromstring(book.read("xl/worksheets/sheet1.xml"))
    rows = []
    for row in sheet.iter(f"{{{ns['s']}}}row"):
        cells = []
        for cell in row.findall("s:c", ns):
            value = cell.find("s:v", ns).text
            cells.append(strings[int(value)] if cell.get("t") == "s" else value)
        rows.append(cells)
    return rows


def gpt3(folder: Path) -> pl.DataFrame:
    """GPT-3 curves digitised from Brown et al. Fig. 2.1: target = val_loss only, tokens = step (billions) x 1e9."""
    meta = _xlsx_first_columns(folder / "raw_data" / "gpt3" / "gpt3_metadata.xlsx")
    names = [row[0] for row in meta]
    params = {row[0]: parse_size(row[1]) for row in meta}
    raw = pl.read_csv(folder / "raw_data" / "gpt3" / "extracted.csv", infer_schema_length=None).filter(
        pl.col("val_loss").is_not_null()
    )
    # Each digitised label goes to the first Table 2.1 name that contains it ("xl" -> "GPT-3 XL").
    label_to_name = {
        label: next(name for name in names if label.lower() in name.lower()) for label in raw["model"].unique()
    }
    frame = raw.select(
        pl.col("model").replace_strict(label_to_name).alias("run_id"),
        pl.col("model").replace_strict(label_to_name).replace_strict(params, return_dtype=pl.Float64).alias("params"),
        (pl.col("step") * 1e9).alias("tokens"),
        pl.col("val_loss").alias("value"),
    ).filter(pl.col("tokens") != 0)
    return _rows(frame, model_type="gpt3", corpus="gpt3", arch="dec", source="gpt3 arXiv:2005.14165", scaled_set="gpt3")


def chinchilla(folder: Path) -> pl.DataFrame:
    """Chinchilla Fig. 4 points: sizes rounded to 1e7 name the models, tokens = FLOPs / (6 N)."""
    raw = pl.read_csv(folder / "raw_data" / "chinchila_extracted.csv")
    rounded = (pl.col("Model Size").cast(pl.Int64).cast(pl.Float64) / 1e7).round(0) * 1e7
    frame = raw.select(
        pl.format("chin{}", rounded.cast(pl.Int64)).alias("run_id"),
        rounded.alias("params"),
        (pl.col("Training FLOP") / FLOPS_PER_PARAM_TOKEN / rounded).alias("tokens"),
        pl.col("Training FLOP").alias("flops"),
        pl.col("loss").alias("value"),
    ).filter(pl.col("tokens") != 0)
    return _rows(
        frame, model_type="Gopher", corpus="MassiveText", arch="dec", source="chinchilla", scaled_set="chinchilla"
    )


T5_PARAMS = {"base": 247_586_304, "large": 783_173_632, "xl": 2_849_804_288, "xxl": 11_135_426_560}


def t5_pile(folder: Path) -> pl.DataFrame:
    """Pile-T5: target = log2(val_perplexity) (the other t5x summaries are cumulative), tokens = steps x 1e6."""
    raw = pl.read_csv(folder / "aggregated_eval" / "t5_pile.csv", columns=["model_name", "steps", "val_perplexity"])
    frame = raw.filter(pl.col("steps") != 0, pl.col("val_perplexity").is_not_null()).select(
        pl.format("pile-t5-{}", pl.col("model_name")).alias("run_id"),
        pl.col("model_name").replace_strict(T5_PARAMS, return_dtype=pl.Float64).alias("params"),
        (pl.col("steps") * 1e6).alias("tokens"),
        pl.col("steps").cast(pl.Int64).alias("step"),
        pl.col("val_perplexity").log(2).alias("value"),
    )
    return _rows(frame, model_type="t5-pile", corpus="pile", arch="enc-dec", source="t5-pile", scaled_set="t5-pile")


def olmo(folder: Path) -> pl.DataFrame:
    """OLMo W&B exports: target = mean of the logged validation cross-entropies, tokens = Step x 4e6."""
    raw = pl.read_csv(folder / "aggregated_eval" / "olmo.csv", infer_schema_length=None)
    losses = [c for c in raw.columns if "CrossEntropyLoss" in c]
    frame = raw.select(
        pl.col("model_name").alias("run_id"),
        pl.col("num_params").map_elements(parse_size, return_dtype=pl.Float64).alias("params"),
        (pl.col("Step") * 4e6).alias("tokens"),
        pl.col("Step").cast(pl.Int64).alias("step"),
        _row_mean(losses).alias("value"),
    ).filter(pl.col("value").is_not_null(), pl.col("tokens") != 0)
    frame = frame.with_columns(
        pl.when(pl.col("run_id") == "OLMo-7B-Twin-2T").then(None).otherwise(pl.lit("olmo")).alias("scaled_set")
    )
    return _rows(frame, model_type="olmo", corpus="dolma", arch="dec", source="olmo")


def _number_label(value: pl.Expr) -> pl.Expr:
    """1.0 -> '1', 44.0 -> '44', 2.5 -> '2.5' for names built from numbers."""
    return value.cast(pl.Float64).cast(pl.String).str.replace(r"\.0$", "")


def datablations(folder: Path) -> pl.DataFrame:
    """Muennighoff et al. runs: 48 checkpointed runs (16 families by corpus x epochs), 229 contour and 9 code runs."""
    base = folder / "aggregated_eval"
    runs = pl.read_csv(base / "datablations_losses.csv")
    epochs = _number_label(pl.col("epochs"))
    checkpointed = runs.select(
        pl.format("GPT2-{}-{}-{}", pl.col("num_params"), pl.col("data"), epochs).alias("run_id"),
        pl.col("num_params").map_elements(parse_size, return_dtype=pl.Float64).alias("params"),
        pl.col("token_num").cast(pl.Float64).alias("tokens"),
        pl.col("loss").alias("value"),
        pl.col("data").alias("corpus"),
        pl.format("GPT2-{}-{}", pl.col("data"), epochs).alias("scaled_set"),
    )
    contour = pl.read_csv(base / "datablations_contour_losses.csv").select(
        pl.format("GPT2-{}", pl.col("model_args").str.extract(r"'name': '([^']+)'")).alias("run_id"),
        pl.col("num_params").cast(pl.Float64).alias("params"),
        pl.col("token_num").cast(pl.Float64).alias("tokens"),
        pl.col("openLM_loss").alias("value"),
        pl.col("data").alias("corpus"),
        pl.lit(None, dtype=pl.String).alias("scaled_set"),
    )
    # Code mixtures: `epochs` holds the code percentage and Seed 1/2 selects general-text vs code loss.
    code = pl.read_csv(base / "datablations_code_losses.csv")
    corpus = pl.format("{}-{}%-code-{}%", pl.col("data"), pl.col("epochs"), 100 - pl.col("epochs"))
    code = code.select(
        pl.format("GPT2-{}-{}-1-{}", pl.col("num_params"), corpus, pl.col("Seed")).alias("run_id"),
        pl.col("num_params").map_elements(parse_size, return_dtype=pl.Float64).alias("params"),
        pl.col("token_num").cast(pl.Float64).alias("tokens"),
        pl.col("loss").alias("value"),
        corpus.alias("corpus"),
        pl.lit(None, dtype=pl.String).alias("scaled_set"),
    )
    frame = pl.concat([checkpointed, contour, code]).filter(pl.col("tokens") != 0)
    return _rows(frame, model_type="GPT2", arch="dec", source="datablations")


def red_pajama(folder: Path) -> pl.DataFrame:
    """RedPajama-INCITE 2.4B and 6.7B train losses digitised from the release blog; tokens in billions."""
    frames = []
    for size in ("2.4B", "6.7B"):
        raw = pl.read_csv(
            folder / "raw_data" / "redPajama" / f"{size}.csv", has_header=False, new_columns=["tokens_b", "loss"]
        )
        frames.append(
            raw.select(
                pl.lit(f"redPajama{size[:-1]}").alias("run_id"),
                pl.lit(parse_size(size)).alias("params"),
                (pl.col("tokens_b").cast(pl.Float64) * 1e9).floor().alias("tokens"),
                pl.col("loss").str.strip_chars().cast(pl.Float64).alias("value"),
            )
        )
    return _rows(
        pl.concat(frames),
        model_type="pythia",
        corpus="redPajama",
        arch="dec",
        source="blog-redpajama-7b",
        scaled_set="redPajama",
    )


OVERTRAIN_PARAMS = {
    "d=96_l=8_h=4": "0.011B",
    "d=512_l=8_h=4": "0.079B",
    "d=576_l=24_h=8": "0.154B",
    "d=1024_l=24_h=8": "0.411B",
    "open_lm_1b": "1.4B",
    "open_lm_7b": "6.9B",
}
OVERTRAIN_CORPUS = {"c4_original": "C4", "rpj": "RedPajama", "rw_original": "RefinedWeb"}


def overtrain(folder: Path) -> pl.DataFrame:
    """Gadre et al. final checkpoints: target = mean of every eval-loss column; only the most over-trained run of
    each (corpus, size) belongs to the scaled family (the checkpoint curves, overtrain.csv, are not released here)."""
    raw = pl.read_csv(folder / "raw_data" / "overtrain" / "overtrain_downstreams.csv", infer_schema_length=None)
    losses = [c for c in raw.columns if "loss" in c]
    params = pl.col("model_name").replace_strict(OVERTRAIN_PARAMS).map_elements(parse_size, return_dtype=pl.Float64)
    frame = raw.select(
        pl.col("name").alias("run_id"),
        params.alias("params"),
        (pl.col("flops").cast(pl.Float64) / FLOPS_PER_PARAM_TOKEN / params).alias("tokens"),
        pl.col("flops").cast(pl.Float64).alias("flops"),
        _row_mean(losses).alias("value"),
        pl.col("dataset_name").replace_strict(OVERTRAIN_CORPUS).alias("corpus"),
        pl.col("cc_mult").cast(pl.Float64).alias("multiplier"),
    )
    most = pl.col("multiplier") == pl.col("multiplier").max().over("corpus", "params")
    frame = frame.with_columns(
        pl.when(most).then(pl.format("overtrain-{}", pl.col("corpus"))).otherwise(None).alias("scaled_set")
    )
    return _rows(frame.drop("multiplier"), model_type="overtrain", arch="dec", source="overtrain arXiv:2403.08540")


def revisiting(folder: Path) -> pl.DataFrame:
    """Alabdulmohsin et al. language curves: the five decoder sizes form the `lambda` family; NMT curves have no
    size. The BIG-bench accuracies are not losses and are left out."""
    raw = (
        pl.read_csv(folder / "aggregated_eval" / "revisiting_lang.csv")
        .filter(pl.col("Domain") != "BB")
        .unique(maintain_order=True)
    )
    size = pl.col("Model").cast(pl.Float64, strict=False)
    frame = raw.select(
        pl.when(size.is_not_null())
        .then(pl.format("lambda-{}", pl.col("Model")))
        .otherwise(pl.col("Model"))
        .alias("run_id"),
        size.alias("params"),
        pl.col("Seen Examples").cast(pl.Float64).alias("tokens"),
        pl.col("Loss").alias("value"),
        pl.when(size.is_not_null()).then(pl.lit("lambda")).otherwise(None).alias("scaled_set"),
    )
    return _rows(frame, model_type="lambda", corpus="LAMDA", arch="enc-dec", source="revisiting arXiv:2209.06640")


def llm360(folder: Path) -> pl.DataFrame:
    """LLM360: Mamba-3B training loss (step x 500B/176703 tokens), K2-65B training loss and Amber-7B evals."""
    mamba = pl.read_csv(folder / "aggregated_eval" / "llm360Mamba3B.csv").select(
        pl.lit("LLM360Mamba3B").alias("run_id"),
        pl.lit(3e9).alias("params"),
        (pl.col("step") * (500e9 / 176703)).alias("tokens"),
        pl.col("step").cast(pl.Int64).alias("step"),
        pl.col("loss").alias("value"),
    )
    mamba = _rows(
        mamba.filter(pl.col("tokens") != 0),
        model_type="LLM360Mamba",
        corpus="LLM360/AmberDatasets",
        arch="ssm",
        source="llm360",
        scaled_set="llm360Mamba",
    )
    raw = pl.read_csv(folder / "aggregated_eval" / "K2.csv", infer_schema_length=None)
    losses = [c for c in raw.columns if "lm loss" in c and not c.endswith(("__MIN", "__MAX")) and "spike" not in c]
    k2 = raw.select(
        pl.col("model_name").alias("run_id"),
        pl.col("num_params").map_elements(parse_size, return_dtype=pl.Float64).alias("params"),
        pl.col("tokens_seen").alias("tokens"),
        pl.col("flops"),
        pl.col("Step").cast(pl.Int64).alias("step"),
        _row_mean(losses).alias("value"),
    ).filter(pl.col("tokens") != 0, pl.col("value").is_not_null())
    k2 = _rows(
        k2,
        model_type="Lamma",
        corpus="LLM360/K2Datasets",
        arch="dec",
        source="LLM360 arXiv:2312.06550",
        scaled_set=None,
    )
    return pl.concat([mamba, k2, amber(folder)], how="diagonal")


AMBER_CHECKPOINTS = 360  # ckpt_000 ... ckpt_359 over 1.25T tokens (LLM360 Amber model card)


def amber(folder: Path) -> pl.DataFrame:
    """LLM360 Amber-7B from the partial W&B exports (the training-loss export is missing): target = mean of log2 of
    the per-domain Pile perplexities; W&B `Step` is the checkpoint index, tokens = index / 359 x 1.25T."""
    exports = sorted((folder / "raw_data" / "lm360" / "Amber").glob("*.csv"))
    columns = []
    for export in exports:
        raw = pl.read_csv(export)
        metric = raw.columns[1]
        if metric.startswith("perplexity_eval"):
            columns.append(raw.select(pl.col("Step"), pl.col(metric).log(2).alias(metric)))
    wide = columns[0]
    for more in columns[1:]:
        wide = wide.join(more, on="Step", how="full", coalesce=True)
    frame = wide.select(
        pl.lit("Amber").alias("run_id"),
        pl.lit(6.7e9).alias("params"),
        (pl.col("Step") / (AMBER_CHECKPOINTS - 1) * 1.25e12).alias("tokens"),
        pl.col("Step").cast(pl.Int64).alias("step"),
        _row_mean([c for c in wide.columns if c != "Step"]).alias("value"),
    ).filter(pl.col("tokens") != 0, pl.col("value").is_not_null())
    return _rows(
        frame,
        model_type="Lamma",
        corpus="LLM360/AmberDatasets",
        arch="dec",
        source="LLM360 arXiv:2312.06550",
        scaled_set=None,
    )


def bimix(folder: Path) -> pl.DataFrame:
    """DoReMi/BiMix 280M mixes: one model per mixing strategy; target = mean per-domain cross-entropy."""
    frames = []
    for corpus in ("Pile", "SlimPajama"):
        raw = pl.read_csv(folder / "raw_data" / "bimix-law" / corpus / "ppls.csv")
        domains = [c for c in raw.columns if c not in ("mix", "global_step")]
        name = (
            pl.when(pl.col("mix") == "Baseline")
            .then(pl.lit(corpus))
            .otherwise(pl.format("{}_{}_mix", pl.lit(corpus), pl.col("mix")))
        )
        frames.append(
            raw.select(
                name.alias("run_id"),
                pl.lit(2.8e8).alias("params"),
                (pl.col("global_step") * 512.0 * 1024.0).alias("tokens"),
                pl.col("global_step").cast(pl.Int64).alias("step"),
                _row_mean(domains).alias("value"),
            )
        )
    frame = pl.concat(frames).with_columns(pl.col("run_id").alias("corpus"), pl.col("run_id").alias("scaled_set"))
    return _rows(frame, model_type="DoReMi", arch="dec", source="DataMixing arXiv:2405.14908")


def _perplexity_target(results: dict) -> float | None:
    """ColPret's target for an lm-eval result: mean of log2 of its word/token perplexities (byte ones excluded)."""
    logs = [
        math.log2(value)
        for task in results.values()
        for metric, value in task.items()
        if ("ppl" in metric or "perplexity" in metric) and "stderr" not in metric and "byte" not in metric
    ]
    return sum(logs) / len(logs) if logs else None


PYTHIA_BATCH_TOKENS = 2_097_152
STEP = re.compile(r"step_?(\d+)")


def pythia(evals: Path) -> pl.DataFrame:
    """Pythia v1 and v0 zero-shot checkpoint evals (standard and deduplicated Pile) plus the final OPT and BLOOM
    evals shipped beside them; tokens = step x 2,097,152 (OPT 300B, BLOOM 341B)."""
    records = []
    for version in ("pythia-v1", "pythia-v0"):
        for model_dir in sorted((evals / version).iterdir()):
            # Batch-size ablations and WinoBias interventions are not models of the suite. The standard 1B model
            # was trained in bf16 (Pythia README), so its evals sit under pythia-1b-bf16; ColPret kept it apart.
            if not model_dir.name.startswith("pythia-") or "tokBS" in model_dir.name:
                continue
            size = model_dir.name.split("-")[1]
            deduped = "deduped" in model_dir.name
            scaled = "pythia-deduped" if deduped else "pythia"
            if version == "pythia-v0":
                scaled += "-v0"
            run_id = f"pythia-{size}" + ("-deduped" if deduped else "") + ("-v0" if version == "pythia-v0" else "")
            for file in sorted((model_dir / "zero-shot").glob("*.json")):
                step = int(STEP.search(file.name).group(1))
                value = _perplexity_target(json.loads(file.read_text())["results"])
                if step == 0 or value is None:
                    continue
                records.append(
                    {
                        "run_id": run_id,
                        "params": parse_size(size),
                        "tokens": float(step * PYTHIA_BATCH_TOKENS),
                        "step": step,
                        "value": value,
                        "scaled_set": scaled,
                        "corpus": "pile-deduped" if deduped else "pile",
                        "model_type": "pythia",
                    }
                )
    for family, tokens in (("opt", 300e9), ("bloom", 341e9)):
        for file in sorted((evals / family).glob("*.json")):
            value = _perplexity_target(json.loads(file.read_text())["results"])
            if value is None:
                continue
            records.append(
                {
                    "run_id": file.stem,
                    "params": parse_size(file.stem.split("-")[1]),
                    "tokens": tokens,
                    "step": None,
                    "value": value,
                    "scaled_set": family,
                    "corpus": "pile" if family == "opt" else "ROOTS",
                    "model_type": family,
                }
            )
    frame = pl.DataFrame(records, schema_overrides={"step": pl.Int64})
    return frame.with_columns(pl.lit("dec").alias("arch"), pl.lit("pythia evals (EleutherAI/pythia)").alias("source"))


SOURCES = (opt, gpt3, chinchilla, t5_pile, olmo, datablations, red_pajama, overtrain, revisiting, llm360, bimix)


def build(hitchhiker: Path, pythia_evals: Path) -> pl.DataFrame:
    """The whole collection in the observation schema, sorted by family, run and tokens."""
    frame = pl.concat([source(hitchhiker) for source in SOURCES] + [pythia(pythia_evals)], how="diagonal_relaxed")
    frame = frame.with_columns(
        pl.coalesce("scaled_set", pl.format("{}:unscaled", pl.col("model_type"))).alias("family"),
        pl.lit("perf").alias("metric"),
        pl.coalesce("flops", training_flops(pl.col("params"), pl.col("tokens"))).alias("flops"),
    ).filter(pl.col("value").is_not_null() & pl.col("value").is_finite())
    return conform(frame).sort("family", "run_id", "tokens", "step", nulls_last=True)
