"""Teachers fitted to a session's fit half, scored on its test half: from scratch vs transfer.

For each session: ``fit_teacher`` from scratch (an ensemble of small population CNNs), and
transfer teachers (``fit_transfer_teacher``: readouts on the frozen trunk of the authors' shared
compact model with ``--backbones`` filters, readout ``factorised`` or ``ridge``). Reported per
teacher: the median over neurons of the test-half Pearson r with the repeat-averaged responses,
the median R2_ER where raw repeats exist (210325), and the fitting time. The published compact
models' median r (``compactcortex evaluate``) is 0.636 on 190923 and 0.688 on 201025.

    python benchmarks/teachers.py --sessions 210325 190923 201025 --threads 2
Results: ``benchmarks/results/teachers.json`` (rewritten atomically after every teacher).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import common
from compactcortex.data import load_session
from compactcortex.fit import TrainConfig, fit_teacher, fit_transfer_teacher
from compactcortex.fit.transfer import resolve_backbone, trunk_features


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=common.DATA)
    ap.add_argument("--sessions", nargs="+", default=["210325", "190923", "201025"])
    ap.add_argument("--backbones", type=int, nargs="+", default=[100, 200])
    ap.add_argument("--readouts", nargs="+", default=["factorised", "ridge"])
    ap.add_argument("--members", type=int, default=4)
    ap.add_argument("--scratch-epochs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=common.RESULTS / "teachers.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    result = {"machine": common.machine_info(), "threads": args.threads,
              "members": args.members, "rows": []}

    def record(row: dict) -> None:
        result["rows"].append(row)
        print(json.dumps(row), flush=True)
        common.write_json(args.out, result)

    for name in args.sessions:
        s = load_session(args.data, name)
        test = s.images[s.test_indices]
        t0 = time.perf_counter()
        scratch = fit_teacher(s, args.members, config=TrainConfig(epochs=args.scratch_epochs), progress=False)
        fit_s = time.perf_counter() - t0
        record({"session": name, "teacher": "scratch", "fit_s": round(fit_s, 1),
                **common.test_half_score(s, scratch.predict(test))})
        for filters in args.backbones:
            trunk = resolve_backbone(f"shared_compact_{filters}", args.data)
            t0 = time.perf_counter()
            feats = trunk_features(trunk, s.images[s.fit_indices], progress=False)
            feat_s = time.perf_counter() - t0
            for readout in args.readouts:
                t0 = time.perf_counter()
                teacher = fit_transfer_teacher(s, trunk, args.members, readout=readout, features=feats, progress=False)
                fit_s = time.perf_counter() - t0 + feat_s
                record({"session": name, "teacher": f"transfer shared_compact_{filters} {readout}",
                        "fit_s": round(fit_s, 1), **common.test_half_score(s, teacher.predict(test))})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
