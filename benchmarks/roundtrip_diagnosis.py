"""What separates the hard neurons of a ``compress`` run: per-session distributions and, per
neuron, where its r with the teacher was lost.

Reads the per-neuron rows of one or more ``compactcortex compress`` output folders (``--runs``;
their ``neurons/neuron<k>.json``, so a run still in progress can be read) and reports:

* the distribution (min, 10%, 25%, median) of r with the teacher (held-out test half), of
  compact / published parameters and of the compact models' r with the recordings as a fraction
  of the published models' (where recordings exist);
* per neuron, from ``r_teacher_trace`` (r with the teacher of the shared student's neuron before
  pruning, then after each pruned and re-trained layer): ``r_shared`` (stage 1's quality for it),
  ``loss_pruning`` (r_shared minus r after the last pruned layer) and ``gain_final`` (what the final
  fine-tuning added), and the pass in which most r was lost;
* per neuron, how its teacher responds on the distillation images (the session's fit half,
  through the published model with the C++ engine): the response's excess kurtosis and the
  fraction of images above half its maximum (a sparse neuron answers to few images);
* the Spearman correlation, across neurons, of the final r with each of these, and which stage
  lost most for the neurons below ``--hard`` (default 0.9).

Nothing here changes a run; the trace is recorded, never used to decide.

    python benchmarks/roundtrip_diagnosis.py --runs /work/runs/rt190923 [--runs DIR ...]

Writes ``benchmarks/results/roundtrip_diagnosis_<stamp>.json`` (and ``_latest.json``) and a plot
of every neuron's trace beside it (``.png``).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import common


def quantiles(v) -> dict | None:
    v = np.asarray([x for x in v if x is not None], float)
    if not len(v):
        return None
    return {"n": int(len(v)), "min": float(v.min()), "p10": float(np.quantile(v, 0.1)),
            "p25": float(np.quantile(v, 0.25)), "median": float(np.median(v))}


def spearman(a, b) -> float:
    """Rank correlation (ties broken by order: the values here are continuous)."""
    rank = lambda v: np.argsort(np.argsort(np.asarray(v, float)))  # noqa: E731
    return float(np.corrcoef(rank(a), rank(b))[0, 1])


def read_rows(run: Path) -> tuple[dict, list[dict]]:
    settings = json.loads((run / "settings.json").read_text())
    rows = [json.loads(p.read_text()) for p in sorted((run / "neurons").glob("neuron*.json"))]
    rows = [r for r in rows if r.get("r_teacher_trace")]
    if not rows:
        raise SystemExit(f"{run}: no finished neuron with an r_teacher_trace (run with this version)")
    return settings, sorted(rows, key=lambda r: r["neuron"])


def teacher_response_stats(data: Path, session: str, images_from: str | None, neurons: list[int],
                           threads: int) -> dict[int, dict]:
    """Sparseness of each published model's response on the distillation (fit-half) images."""
    from compactcortex.data.session import load_session
    from compactcortex.engine.population import PopulationPredictor
    from compactcortex.models.published import load_published_session

    src = load_session(data, images_from or session)
    fit = src.images[src.fit_indices]
    models = load_published_session(data, session)
    y = PopulationPredictor([models[k] for k in neurons], threads=threads).predict(fit)
    out = {}
    for j, k in enumerate(neurons):
        v = y[:, j].astype(np.float64)
        z = (v - v.mean()) / max(v.std(), 1e-12)
        top = v.max() - v.min()
        out[k] = {"kurtosis": float((z ** 4).mean() - 3.0),
                  "frac_above_half_max": float(np.mean(v - v.min() > 0.5 * top)) if top > 0 else 1.0}
    return out


def neuron_record(row: dict, stats: dict) -> dict:
    trace = row["r_teacher_trace"]
    r_shared, r_pruned, r_final = trace[0]["r"], trace[-1]["r"], row["r_teacher_test"]
    # r lost by each pass over the layers (its first step starts from the previous pass's end)
    passes: dict[int, float] = {}
    prev = r_shared
    for s in trace[1:]:
        passes[s["round"]] = passes.get(s["round"], 0.0) + (prev - s["r"])
        prev = s["r"]
    rec = {"neuron": row["neuron"], "r_final": r_final, "r_shared": r_shared, "r_after_pruning": r_pruned,
           "loss_pruning": r_shared - r_pruned, "gain_final": r_final - r_pruned,
           "loss_by_pass": passes, "min_r_in_trace": min(s["r"] for s in trace),
           "params_ratio": (row["compact_params"] / row["published_params"]) if row.get("published_params") else None,
           "rec_ratio": (row["r_test"] / row["r_teacher_model_test"]) if row.get("r_test") is not None
           and row.get("r_teacher_model_test") else None,
           "r_teacher_model_test": row.get("r_teacher_model_test"), **stats.get(row["neuron"], {})}
    rec["worst_stage"] = max((("shared student", 1.0 - r_shared), ("pruning", r_shared - r_pruned)),
                             key=lambda t: t[1])[0]
    return rec


def plot(records: dict[str, list[dict]], hard: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(records), figsize=(5 * len(records), 4), squeeze=False)
    for ax, (session, recs) in zip(axes[0], records.items()):
        for r in recs:
            ys = [r["r_shared"], r["r_after_pruning"], r["r_final"]]
            bad = r["r_final"] < hard
            ax.plot([0, 1, 2], ys, color="tab:red" if bad else "0.7", lw=1.2 if bad else 0.7, zorder=2 if bad else 1)
        ax.set_xticks([0, 1, 2], ["shared student", "after pruning", "final"])
        ax.axhline(hard, ls="--", color="k", lw=0.6)
        ax.set_title(f"{session}: {sum(r['r_final'] < hard for r in recs)} of {len(recs)} below {hard}")
        ax.set_ylabel("r with the teacher (test half)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=Path, action="append", required=True, help="a compress output folder (repeatable)")
    ap.add_argument("--data", type=Path, default=common.DATA, help="V4 data folder (default ../shared/data/v4)")
    ap.add_argument("--hard", type=float, default=0.9, help="r with the teacher below which a neuron is hard")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    result = {"machine": common.machine_info(), "command": common.command_line(argv), "hard": args.hard,
              "sessions": {}}
    records = {}
    for run in args.runs:
        settings, rows = read_rows(run)
        session = settings["session"]
        stats = teacher_response_stats(args.data, session, settings.get("images_from"),
                                       [r["neuron"] for r in rows], args.threads)
        recs = [neuron_record(r, stats) for r in rows]
        records[session] = recs
        finals = [r["r_final"] for r in recs]
        hard = [r for r in recs if r["r_final"] < args.hard]
        features = ("r_shared", "loss_pruning", "gain_final", "kurtosis", "frac_above_half_max", "r_teacher_model_test")
        result["sessions"][session] = {
            "run": str(run), "neurons": len(recs),
            "r_teacher": quantiles(finals), "params_ratio": quantiles(r["params_ratio"] for r in recs),
            "rec_ratio": quantiles(r["rec_ratio"] for r in recs),
            "spearman_with_final_r": {f: spearman(finals, [r.get(f) for r in recs]) for f in features
                                      if all(r.get(f) is not None for r in recs)},
            "hard": {"count": len(hard), "worst_stage": {s: sum(r["worst_stage"] == s for r in hard)
                                                         for s in ("shared student", "pruning")},
                     "median_r_shared": quantiles(r["r_shared"] for r in hard),
                     "median_loss_pruning": quantiles(r["loss_pruning"] for r in hard)},
            "easy_median_r_shared": quantiles(r["r_shared"] for r in recs if r["r_final"] >= args.hard),
            "easy_median_loss_pruning": quantiles(r["loss_pruning"] for r in recs if r["r_final"] >= args.hard),
            "per_neuron": recs}
        s = result["sessions"][session]
        print(f"{session}: {len(recs)} neurons; r with the teacher min {s['r_teacher']['min']:.3f} "
              f"10% {s['r_teacher']['p10']:.3f} median {s['r_teacher']['median']:.3f}; "
              f"{len(hard)} below {args.hard}")
        for f, v in s["spearman_with_final_r"].items():
            print(f"  spearman(final r, {f}) = {v:+.2f}")
        print("  hard neurons' worst stage:", s["hard"]["worst_stage"])
        print("  neuron  r_shared  after_pruning  final  loss_pruning  kurtosis")
        for r in sorted(recs, key=lambda r: r["r_final"]):
            print(f"  {r['neuron']:6d}  {r['r_shared']:.3f}     {r['r_after_pruning']:.3f}          "
                  f"{r['r_final']:.3f}  {r['loss_pruning']:+.3f}        {r.get('kurtosis', float('nan')):.1f}")
    path = common.write_json(common.RESULTS / f"roundtrip_diagnosis_{common.utc_stamp()}.json", result)
    common.write_json(common.RESULTS / "roundtrip_diagnosis_latest.json", result)
    plot(records, args.hard, path.with_suffix(".png"))
    print(f"wrote {path} and {path.with_suffix('.png').name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
