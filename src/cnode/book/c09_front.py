"""Chapter 9, is contractivity worth it: every training recipe on the accuracy-robustness front of a dataset.

The runs (``plan``): the init crossed with the regularizer (the vanilla CNODE with the authors' -5 I init, the
regularized CNODEs with PyTorch's default), adversarial training (FGSM with a random start, Wong et al.) of the
CNN, the vanilla and the weight-regularized CNODE, and the vanilla CNODE at more weight decays; the chapter also
reuses the stored configurations of chapters 3, 4, 6 and 8. Here: the runs, the points of a front, its
summary, the init table and the figure; the rule and its words are in ``front_rule``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from cnode.book.front_rule import family, non_dominated
from cnode.book.tables import DATASET_NAMES
from cnode.core import stats
from cnode.core.config import RunConfig
from cnode.core.front import robust
from cnode.runs.plans import Plan, checked_seeds


def front_runs(profile: str, datasets: list[str], seeds: list[int], rho: float, weight_decays: list[float],
               adv_eps: Mapping[str, float], device: str = "auto",
               certifiable: Mapping[str, Any] | None = None) -> list[RunConfig]:
    """The chapter's new runs in their priority order: the init ablation, adversarial training at
    ``adv_eps[dataset]``, the weight-decay curve (per dataset and seed within each), then the certifiable point
    on ``certifiable["dataset"]``: a weight-regularized CNODE over ``T`` with ``steps`` Euler steps whose input
    layer and head have operator norm at most 1 and whose flow kernels at most ``flow_norm`` (so that each Euler
    step contracts once the weight condition holds), beside a CNN whose every layer has operator norm at most 1."""
    groups: list[list[tuple[str, dict[str, Any]]]] = [
        [("init", dict(init="contractive")), ("init", dict(regularizer="weight", rho=rho, init="default")),
         ("init", dict(regularizer="jacobian", rho=rho, init="default"))],
        [("adv", dict(model="cnn")), ("adv", {}), ("adv", dict(regularizer="weight", rho=rho))],
        [("wd", dict(weight_decay=wd)) for wd in weight_decays],
    ]
    runs = []
    for group in groups:
        for dataset in datasets:
            for seed in checked_seeds(seeds):
                for kind, extra in group:
                    adv = {"adv_eps": adv_eps[dataset]} if kind == "adv" else {}
                    runs.append(RunConfig.from_profile(profile, dataset=dataset, seed=seed, device=device,
                                                       **extra, **adv))
    if certifiable:
        for seed in checked_seeds(seeds):
            common = dict(dataset=certifiable["dataset"], seed=seed, device=device, op_norm=1.0)
            runs.append(RunConfig.from_profile(profile, regularizer="weight", rho=rho, T=certifiable["T"],
                                               steps=certifiable["steps"], flow_norm=certifiable["flow_norm"],
                                               **common))
            runs.append(RunConfig.from_profile(profile, model="cnn", **common))
    return runs


def not_run_text(not_run: list[RunConfig], planned: int, trained: set[str], measured: frozenset[str] = frozenset()
                 ) -> str:
    """What the budget did not reach, in one sentence: runs not trained yet by family (``group``), stored runs
    (keys in ``trained``) whose front is not measured yet, and measured ones (keys in ``measured``) that wait for
    the other seeds of their recipe; or that every planned run is shown."""
    if not not_run:
        return "Every planned run is on the fronts."

    def runs(n: int, what: str) -> str:
        return f"{n} {what}{'' if n == 1 else 's'}"

    new = pd.Series([group(c) for c in not_run if c.key() not in trained]).value_counts()
    old = sum(c.key() in trained and c.key() not in measured for c in not_run)
    waiting = sum(c.key() in trained and c.key() in measured for c in not_run)
    parts = ([f"{runs(new.sum(), 'run')} not trained ({', '.join(f'{g} {n}' for g, n in new.items())})"]
             if len(new) else []) + ([f"{runs(old, 'trained run')} not measured on the front yet"] if old else []) \
        + ([f"{runs(waiting, 'measured run')} waiting for the other seeds of {'its' if waiting == 1 else 'their'} "
            "recipe"] if waiting else [])
    listed = ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0]
    return (f"Not run yet ({len(not_run)} of {planned} planned runs; the budget did not reach them): "
            + listed + ". The fronts show what ran; a baseline still to come can only lower a "
            "contractive recipe's mean margin, but it can make the seed-level interval narrower or wider, and a "
            "contractive recipe still to come makes Holm's correction stricter for the others, so a verdict can still "
            "change either way.")


#: the figure's marker per group of recipes
MARKERS = {"paper's setting": "*", "contractive": "o", "init ablation": "s", "weight decay": "v",
           "adversarial training": "D", "CNN": "P", "vanilla": "X", "certifiable": "h"}


def recipe(cfg: RunConfig) -> str:
    """The recipe's name on the page: model or regularizer, then what differs from the book's default (rate,
    weight, horizon, init, weight decay, adversarial training); seeds are not part of it."""
    name = "CNN" if cfg.model == "cnn" else "vanilla" if cfg.regularizer == "none" else cfg.regularizer
    if cfg.regularizer != "none":
        name += f" rho={cfg.rho:g}"
        if cfg.gamma != 1.0:
            name += f" gamma={cfg.gamma:g}"
    if cfg.T != 0.1:
        name += f" T={cfg.T:g}"
    if cfg.model == "cnode" and cfg.steps != RunConfig.from_profile(cfg.profile).steps:
        name += f" (N={cfg.steps})"
    if cfg.op_norm:
        name += " (norms bounded)"
    if cfg.model == "cnode" and cfg.init != ("default" if cfg.regularizer == "none" else "contractive"):
        name += " (-5I init)" if cfg.init == "contractive" else " (default init)"
    if cfg.weight_decay:
        name += f" + wd {cfg.weight_decay:g}"
    if cfg.adv_eps:
        name += f" + adv {cfg.adv_eps:g}"
    return name


def group(cfg: RunConfig) -> str:
    """The figure's family of a recipe (``MARKERS``)."""
    if cfg.op_norm:
        return "certifiable"
    if cfg.adv_eps:
        return "adversarial training"
    if cfg.model == "cnn":
        return "CNN"
    if cfg.model == "cnode" and cfg.init != ("default" if cfg.regularizer == "none" else "contractive"):
        return "init ablation"
    if cfg.weight_decay:
        return "weight decay"
    if cfg.regularizer == "none":
        return "vanilla"
    paper = cfg.rho == 1.0 and cfg.gamma == 1.0 and cfg.T == 0.1
    return "paper's setting" if paper else "contractive"


def points(runs: list[tuple[RunConfig, dict[str, Any], dict[str, Any], dict[str, Any]]], eps: float
           ) -> pd.DataFrame:
    """One row per run: dataset, recipe, family, group, seed, clean (all test images), robust (the front's attack
    suite at ``eps``, its images), and certificates: ``weight condition`` (final R_W = 0 and certified rate >= rho),
    ``Euler map`` (every step contracts), ``Jacobian target`` (``core.target``'s ``met``; Jacobian runs).
    ``runs``: (config, evaluation, front measurement, final record with ``euler_h_limit`` and, for Jacobian
    runs, ``target_met``)."""
    rows = []
    for cfg, ev, front, final in runs:
        rates = final.get("certified_rate") or [float("-inf")]
        rows.append({"dataset": cfg.dataset, "recipe": recipe(cfg), "family": family(cfg), "group": group(cfg),
                     "seed": cfg.seed, "clean": float(ev["clean"]), "robust": robust(front, eps),
                     "weight condition": cfg.model == "cnode" and final.get("weight_reg", 1.0) == 0
                     and min(rates) >= cfg.rho,
                     "Euler map": cfg.model == "cnode" and cfg.h < final.get("euler_h_limit", 0.0),
                     "Jacobian target": bool(final.get("target_met", False))})
    return pd.DataFrame(rows)


def summary(front: pd.DataFrame) -> pd.DataFrame:
    """Per recipe of one front: family, group, mean and seed sd of both accuracies, seeds, and in how many seeds
    each certificate holds."""
    grouped = front.groupby("recipe", sort=False)
    out = grouped.agg(family=("family", "first"), group=("group", "first"), clean=("clean", "mean"),
                      clean_sd=("clean", "std"), robust=("robust", "mean"), robust_sd=("robust", "std"),
                      seeds=("seed", "count"), weight_condition=("weight condition", "sum"),
                      euler_map=("Euler map", "sum"), jacobian_target=("Jacobian target", "sum"))
    return out.fillna({"clean_sd": 0.0, "robust_sd": 0.0})


def init_share(front: pd.DataFrame, regularizer: str) -> dict[str, Any]:
    """How much of a regularized model's robust gain over the vanilla CNODE the init alone gives: per seed,
    (acc(vanilla, -5I) - acc(vanilla, default)) / (acc(regularizer, -5I) - acc(vanilla, default)), then the mean
    with its seed-level t-interval (``stats.seed_interval`` of the per-seed shares)."""
    by = front.set_index(["recipe", "seed"])["robust"]
    base, init, reg = "vanilla", "vanilla (-5I init)", f"{regularizer} rho=1"
    seeds = sorted(set(by[base].index) & set(by[init].index) & set(by[reg].index))
    shares = [(by[(init, s)] - by[(base, s)]) / (by[(reg, s)] - by[(base, s)]) for s in seeds]
    return stats.seed_interval(shares) if len(shares) > 1 else {"diff": float(np.mean(shares)), "lo": np.nan,
                                                                  "hi": np.nan, "seeds": len(shares)}


def init_table(front: pd.DataFrame) -> pd.DataFrame:
    """2 inits x 3 regularizers of one front: mean robust accuracy (and clean in brackets) over seeds."""
    cells = {}
    for reg, name in (("none", "vanilla"), ("weight", "weight rho=1"), ("jacobian", "jacobian rho=1")):
        default = name if reg == "none" else f"{name} (default init)"
        authors = f"{name} (-5I init)" if reg == "none" else name
        cells[reg] = {}
        for init, rec in (("default", default), ("-5 I", authors)):
            part = front[front["recipe"] == rec]
            cells[reg][init] = (f"{part['robust'].mean():.3f} ({part['clean'].mean():.3f})" if len(part) else "not run")
    return pd.DataFrame(cells).rename_axis("init").rename(columns={"none": "vanilla"})


def cert_answer(cert: pd.DataFrame, table: pd.DataFrame, planned: list[str], images: int, dataset: str) -> str:
    """The certifiable point in words: per planned certifiable recipe (``planned``, names), its certified L2
    accuracy per radius (``cert``: mean over seeds, index recipe, columns "certified at <r>"), its clean and robust
    accuracy and Euler certificates on the front (``table``: the dataset's ``summary``), beside the front's most
    accurate recipe; or that it is not measured yet."""
    parts = []
    for name in planned:
        if name not in cert.index or name not in table.index:
            parts.append(f"the {name} is not measured yet (not all its seeds have run)")
            continue
        row = table.loc[name]
        radii = ", ".join(f"{v:.3f} at radius {c.split()[-1]}" for c, v in cert.loc[name].items())
        euler = (f"; its Euler map contracts in {int(row['euler_map'])} of {int(row['seeds'])} seeds"
                 if not name.startswith("CNN") else "")  # recipe() names every CNN "CNN ..."
        parts.append(f"the {name} certifies {radii}, at a clean accuracy of {row['clean']:.3f} and a robust "
                     f"accuracy of {row['robust']:.3f} on the front{euler}")
    best, measured = table["clean"].idxmax(), [n for n in planned if n in cert.index and n in table.index]
    gap = table.loc[best, "clean"] - table.loc[measured, "clean"].max() if measured else 0.0
    cost = ((": the certifiable recipe gives up" if len(measured) == 1 else ": the certifiable recipes give up")
            + f" {gap:.3f} of clean accuracy{'' if len(measured) == 1 else ' or more'}" if measured else "")
    return (f"On {dataset} (certified accuracy on the first {images} test images, mean over seeds): "
            + "; ".join(parts) + f". The front's most accurate recipe, {best}, reaches a clean accuracy of "
            f"{table.loc[best, 'clean']:.3f}{cost}.")


def split_stored(cfgs: list[RunConfig], suite: str, front: str) -> tuple[list[RunConfig], list[RunConfig]]:
    """(runs trained, evaluated and measured under the front's suite, runs the budget has not reached): the
    chapter shows the first and lists the second as not run. A recipe is shown once all its planned seeds are
    stored (on fewer it would be judged on other seeds than its rivals)."""
    from collections import Counter

    from cnode.runs.store import METRICS, eval_file, front_file, run_dir

    done = [cfg for cfg in cfgs if all((run_dir(cfg) / name).exists()
                                       for name in (METRICS, eval_file(suite), front_file(front)))]
    planned, stored = (Counter((c.dataset, recipe(c)) for c in group) for group in (cfgs, done))
    done = [c for c in done if stored[(c.dataset, recipe(c))] == planned[(c.dataset, recipe(c))]]
    keys = {cfg.key() for cfg in done}
    return done, [cfg for cfg in cfgs if cfg.key() not in keys]


def text_box(note: Any, renderer: Any) -> Any:
    """The display box of an annotation's text alone, not its leader line, where its offset puts it (matplotlib
    places an annotation's text only when it draws)."""
    note.update_positions(renderer)
    return Text.get_window_extent(note, renderer)


def label_points(ax: Any, labelled: pd.DataFrame, points: pd.DataFrame, step: float = 10.0, tries: int = 12) -> None:
    """Name each recipe of ``labelled`` (index: name; columns clean, robust) near its point, from the most robust
    down: of the spots right and left of the point, ``step`` points lower or higher at each try, the nearest whose
    box stays inside the axes and overlaps no label placed before and no other marker of ``points`` (else the one
    with the fewest overlaps); a label moved off its point gets a thin leader line. Call it once the axes' limits
    are final."""
    renderer = ax.figure.canvas.get_renderer()
    inside = ax.get_window_extent(renderer)
    xy = ax.transData.transform(points[["clean", "robust"]].to_numpy(float))
    pad = 5.0 * ax.figure.dpi / 72.0
    markers = {name: Bbox.from_extents(x - pad, y - pad, x + pad, y + pad)
               for name, (x, y) in zip(points.index, xy, strict=True)}
    spots = [(side, sign * k) for k in range(tries) for sign in ((0,) if k == 0 else (-1, 1)) for side in (1, -1)]
    boxes: list[Any] = []

    def place(name: str, at: tuple[float, float], spot: int) -> Any:
        side, k = spots[spot]
        return ax.annotate(name, at, xytext=(5 * side, 3 + step * k), textcoords="offset points", fontsize="x-small",
                           ha="left" if side > 0 else "right", va="bottom",
                           arrowprops=dict(arrowstyle="-", lw=0.4, color="0.5") if spot > 1 else None)

    for name, row in labelled.sort_values("robust", ascending=False).iterrows():
        at, others = (row["clean"], row["robust"]), boxes + [b for n, b in markers.items() if n != name]
        scores = []
        for spot in range(len(spots)):
            note = place(name, at, spot)
            box = text_box(note, renderer)
            note.remove()
            fits = inside.contains(box.x0, box.y0) and inside.contains(box.x1, box.y1)
            scores.append((0 if fits else 100) + sum(box.overlaps(b) for b in others))
            if scores[-1] == 0:
                break
        best = int(np.argmin(scores))
        boxes.append(text_box(place(name, at, best), renderer))


def off_scale(table: pd.DataFrame, gap: float = 0.1) -> pd.Index:
    """The recipes of ``table`` (index: name; column clean) whose clean accuracy lies more than ``gap`` below every
    recipe above them, when they are fewer than half: drawn at the panel's left edge so that one far less accurate
    recipe does not squeeze the others into a corner."""
    clean = table["clean"].sort_values()
    jumps = np.flatnonzero(np.diff(clean.to_numpy(float)) > gap)
    cut = int(jumps[-1]) + 1 if len(jumps) else 0
    return clean.index[:cut] if cut < len(clean) / 2 else clean.index[:0]


def edge_marks(ax: Any, far: pd.DataFrame, colors: Mapping[str, Any]) -> dict[str, Any]:
    """Each recipe of ``far`` (off the scale to the left) as a left-pointing marker on the panel's left edge at its
    robust accuracy, named with its clean accuracy on a light box (it may cross other points); returns the marker
    per group, for the legend."""
    x0, handles = ax.get_xlim()[0], {}
    for name, row in far.iterrows():
        handles[row["group"]] = ax.plot([x0], [row["robust"]], "<", ms=6, color=colors[row["group"]], clip_on=False)[0]
        ax.annotate(f"{name}: clean {row['clean']:.3f}", (x0, row["robust"]), xytext=(8, 0), textcoords="offset points",
                    fontsize="x-small", va="center", bbox=dict(fc="white", ec="none", alpha=0.8, pad=1))
    return handles


def front_figure(summaries: dict[str, pd.DataFrame], eps: float,
                 named: tuple[str, ...] = ("paper's setting", "init ablation")) -> Figure:
    """One panel per dataset, one below the other: every recipe at (mean clean, mean robust) with seed sd bars in
    both axes, marked by group; the non-dominated recipes joined by a line; those and the groups ``named`` by name;
    recipes far less accurate than the rest (``off_scale``) on the left edge with their clean accuracy."""
    import seaborn as sns

    colors = dict(zip(MARKERS, sns.color_palette("colorblind", len(MARKERS)), strict=True))  # same in every panel
    fig, axes = plt.subplots(len(summaries), 1, figsize=(7.0, 4.2 * len(summaries) + 0.6), squeeze=False)
    legend: dict[str, Any] = {}
    lines: dict[str, pd.DataFrame] = {}
    far = {dataset: off_scale(table) for dataset, table in summaries.items()}
    for ax, (dataset, table) in zip(axes[:, 0], summaries.items(), strict=True):
        for grp, marker in MARKERS.items():
            part = table[(table["group"] == grp) & ~table.index.isin(far[dataset])]
            if len(part):
                legend[grp] = ax.errorbar(part["clean"], part["robust"], xerr=part["clean_sd"], yerr=part["robust_sd"],
                                          fmt=marker, ms=7 if marker == "*" else 5, capsize=2, color=colors[grp],
                                          alpha=0.85)
        line = lines[dataset] = table.loc[non_dominated(table[["clean", "robust"]])].drop(far[dataset], errors="ignore")
        legend["non-dominated"] = ax.plot(line["clean"], line["robust"], "k--", lw=0.8)[0]
        ax.margins(x=0.05, y=0.12)
        ax.xaxis.set_major_locator(plt.MaxNLocator(4))
        ax.set_title(DATASET_NAMES.get(dataset, dataset), fontsize="small")
        ax.set_xlabel("clean accuracy (all test images)")
        ax.set_ylabel(f"robust accuracy, APGD eps = {eps:g}")
    fig.tight_layout(rect=(0, 0.6 / fig.get_figheight() + 0.04, 1, 1))
    for ax, (dataset, table) in zip(axes[:, 0], summaries.items(), strict=True):  # once the axes are laid out
        ax.set_xlim(ax.get_xlim()), ax.set_ylim(ax.get_ylim())  # labels must not move the limits they were fit to
        shown = table.drop(far[dataset])
        label_points(ax, shown[shown["group"].isin(named) | shown.index.isin(lines[dataset].index)], shown)
        for grp, handle in edge_marks(ax, table.loc[far[dataset]], colors).items():
            legend.setdefault(grp, handle)
    legend["non-dominated"] = legend.pop("non-dominated")  # last in the legend
    fig.legend(list(legend.values()), list(legend), loc="lower center", ncol=4, fontsize="small", frameon=False)
    return fig


def reused_runs(profile: str, datasets: list[str], seeds: list[int], device: str = "auto") -> list[RunConfig]:
    """The stored configurations the front reuses, for ``seeds``: chapter 3's models, chapter 4's rates, chapter
    6's horizons and weight decay, chapter 8's gamma = 10 settings (its dataset only), each once, and none whose
    stored model is bit-identical to another of the same setting and seed (chapter 8: a hinge that never switched
    off trains the same weights at every rate)."""
    import json

    from cnode.book import registry
    from cnode.runs.store import METRICS, run_dir

    wanted = {"03_robustness": {"datasets": datasets}, "04_rho_sweep": {"datasets": datasets},
              "06_horizon": {"datasets": datasets}, "08_rho_search": {}}
    found: dict[str, RunConfig] = {}
    models: set[tuple[Any, ...]] = set()
    for chapter, extra in wanted.items():
        for cfg in registry.plan(chapter, {"profile": profile, "device": device, **extra}).runs:
            if cfg.seed in seeds and cfg.dataset in datasets and cfg.steps == RunConfig.from_profile(profile).steps \
                    and (chapter != "08_rho_search" or cfg.gamma != 1.0):
                stored = run_dir(cfg) / METRICS
                if stored.exists():
                    model = (cfg.dataset, cfg.regularizer, cfg.T, cfg.gamma, cfg.seed,
                             json.loads(stored.read_text())["model_sha256"])
                    if model in models:
                        continue
                    models.add(model)
                found.setdefault(cfg.key(), cfg)
    return list(found.values())


def plan(p: Mapping[str, Any]) -> Plan:
    """The chapter's new runs (``front_runs``), then the reused stored ones (``reused_runs``, with ``reuse``), each
    evaluated under
    ``suite`` and measured under the front's attack suite ``front`` (none when empty: training first)."""
    adv = {"mnist": p["adv_eps_mnist"], "fashion": p["adv_eps_fashion"]}
    certifiable = ({"dataset": p["cert_dataset"], "T": p["cert_T"], "steps": p["cert_steps"],
                    "flow_norm": p["cert_flow_norm"]} if p["cert_dataset"] in p["datasets"] else None)
    new = front_runs(p["profile"], p["datasets"], p["seeds"], p["rho"], p["weight_decays"], adv, p["device"],
                     certifiable)
    reused = reused_runs(p["profile"], p["datasets"], p["seeds"], p["device"]) if p["reuse"] else []
    keys = {cfg.key() for cfg in new}
    return Plan("09_front", tuple(new + [cfg for cfg in reused if cfg.key() not in keys]), p["suite"],
                front=p["front"] or None)
