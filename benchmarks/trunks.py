"""Backbones compared on sessions no part of ours was fitted to: transfer teachers on each trunk.

For each backbone -- none (``fit_teacher`` from scratch), our trunks (``--trunks FILE ...``, from
``compactcortex trunk`` on train sessions only; each member alone and, for a file of several members,
all of them: one transfer teacher per member, their predictions averaged), and each of the authors' seven kinds of shared
compact model at ``--shared-filters`` (marked ``fitted_to_test``: they were fitted to the neurons of
190923, 201025, 210225 and 211022) -- a transfer teacher (4 factorised readouts, the default) is
fitted to each session's fit half and scored on its test half: median Pearson r with the
repeat-averaged responses, and median R2_ER where raw repeats exist (210325). The published
compact models' median r on the same test halves is measured too.

    python benchmarks/trunks.py --trunks trunk.safetensors --threads 2
Results: ``benchmarks/results/trunks.json`` (rewritten after every row) and a table on stdout.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

import common
from compactcortex.data import load_session
from compactcortex.engine.population import PopulationPredictor
from compactcortex.fit import TrainConfig, fit_teacher, fit_transfer_teacher
from compactcortex.fit.transfer import resolve_backbone
from compactcortex.models.published import load_published_session
from compactcortex.models.trunk import load_trunks

KINDS = ("from_ensemble_model", "from_V4data_direct_fit", "from_resnet50", "from_resnet50_robust", "from_vgg19",
         "from_cornets", "linear_from_ensemble_model")


def backbones(args) -> list[tuple[str, list, bool]]:
    """(name, trunks whose teachers are averaged, fitted to the test sessions) for every backbone."""
    out: list[tuple[str, list, bool]] = []
    for path in args.trunks:
        trunks, _ = load_trunks(path)
        cores = [resolve_backbone(path, member=k) for k in range(len(trunks))]
        for k, core in enumerate(cores[: args.single_members]):
            out.append((f"ours {Path(path).name} member {k}", [core], False))
        if len(cores) > 1:
            out.append((f"ours {Path(path).name} all {len(cores)} members", cores, False))
    for kind in args.kinds:
        f = args.data / "shared_compact_models" / kind / f"shared_compact_model_{args.shared_filters}filters.keras"
        out.append((f"{kind} {args.shared_filters}", [resolve_backbone(f)], True))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=common.DATA)
    ap.add_argument("--sessions", nargs="+", default=["190923", "201025", "210325"])
    ap.add_argument("--trunks", nargs="*", default=[], help="trunk files of compactcortex trunk")
    ap.add_argument("--single-members", type=int, default=1, help="members of each trunk file scored alone")
    ap.add_argument("--kinds", nargs="*", default=list(KINDS))
    ap.add_argument("--shared-filters", type=int, default=200)
    ap.add_argument("--members", type=int, default=4, help="readouts per transfer teacher")
    ap.add_argument("--scratch-epochs", type=int, default=20)
    ap.add_argument("--no-scratch", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=common.RESULTS / "trunks.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    result = {"machine": common.machine_info(threads=args.threads), "command": common.command_line(),
              "members": args.members, "rows": []}

    def record(row: dict) -> None:
        result["rows"].append(row)
        print(json.dumps(row), flush=True)
        common.write_json(args.out, result)

    sessions = {name: load_session(args.data, name) for name in args.sessions}
    for name, s in sessions.items():
        try:
            models = load_published_session(args.data, name)
        except ValueError:
            continue
        pred = PopulationPredictor(models, threads=args.threads).predict(s.images[s.test_indices])
        record({"session": name, "backbone": "published compact models", "fitted_to_test": True,
                **common.test_half_score(s, pred)})
    if not args.no_scratch:
        for name, s in sessions.items():
            t0 = time.perf_counter()
            teacher = fit_teacher(s, args.members, config=TrainConfig(epochs=args.scratch_epochs), progress=False)
            pred = teacher.predict(s.images[s.test_indices])
            record({"session": name, "backbone": "none (from scratch)", "fitted_to_test": False,
                    "fit_s": round(time.perf_counter() - t0, 1), **common.test_half_score(s, pred)})
    for label, trunks, fitted in backbones(args):
        for name, s in sessions.items():
            t0 = time.perf_counter()
            pred = np.mean([fit_transfer_teacher(s, trunk, args.members, progress=False, threads=args.threads)
                            .predict(s.images[s.test_indices]) for trunk in trunks], axis=0)
            record({"session": name, "backbone": label, "fitted_to_test": fitted,
                    "fit_s": round(time.perf_counter() - t0, 1), **common.test_half_score(s, pred)})
    print(f"\n{'backbone':<48} {'fitted to test':>14} " + " ".join(f"{n:>14}" for n in sessions))
    for label in dict.fromkeys(r["backbone"] for r in result["rows"]):
        rows = {r["session"]: r for r in result["rows"] if r["backbone"] == label}
        cells = []
        for n in sessions:
            r = rows.get(n)
            cells.append("" if r is None else f"r {r['r_median']:.3f}" + (f" R2 {r['r2er_median']:.3f}" if "r2er_median" in r else ""))
        fitted = next(iter(rows.values()))["fitted_to_test"]
        print(f"{label:<48} {'yes' if fitted else 'no':>14} " + " ".join(f"{c:>14}" for c in cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
