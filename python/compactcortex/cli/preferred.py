"""``compactcortex preferred``: preferred stimuli of compact models."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from .args import deprecated_alias, int_arg


def register(sub) -> None:
    for name, fn in (("preferred", run), ("synth", deprecated_alias(run, "synth", "preferred"))):
        st = sub.add_parser(
            name, help="synthesise preferred stimuli (gradient ascent) and a PNG gallery" if name == "preferred" else "deprecated: use 'preferred'",
            description="Synthesise images that drive each model hard: gradient ascent on the torch model with "
                        "jitter, blur, a norm bound and the valid pixel range, then rounded to uint8 and scored by "
                        "the engine (responses in the model's units, spike counts per 100 ms for the published "
                        "models). The gallery shows them beside the best of a pool of procedural images.")
        st.add_argument("--model", nargs="+", help="CompactModel .safetensors or authors' .pt files")
        st.add_argument("--data", default="../shared/data/v4", help="published data folder (without --model)")
        st.add_argument("--session", default="190923")
        st.add_argument("--neurons", type=int_arg(0, 1_000_000), nargs="+", default=[0, 1, 2, 3])
        st.add_argument("--n", type=int_arg(1, 10_000), default=2, help="images per neuron")
        st.add_argument("--steps", type=int_arg(0, 10_000_000), default=200)
        st.add_argument("--pool", type=int_arg(1, 10_000_000), default=500, help="procedural candidate images")
        st.add_argument("--from-pool", action="store_true", help="start from each neuron's best pool images")
        st.add_argument("--out", default="preferred_stimuli.png", help="gallery PNG")
        st.set_defaults(fn=fn)


def run(args: argparse.Namespace) -> int:
    from ..analysis import preferred_stimuli
    from ..plots.analysis import save_gallery
    from ..data.procedural import procedural

    if args.model:
        from ..models.compact import CompactModel
        from ..models.published import load_published

        models = [load_published(m) if Path(m).suffix == ".pt" else CompactModel.load(m) for m in args.model]
        labels = [Path(m).stem for m in args.model]
    else:
        from ..models.published import load_published_session

        session = load_published_session(args.data, args.session)
        models = [session[k] for k in args.neurons]
        labels = [f"{args.session} neuron {k}" for k in args.neurons]
    result = preferred_stimuli(models, n=args.n, steps=args.steps, pool=procedural(args.pool, seed=1),
                               init="pool" if args.from_pool else None)
    save_gallery(result, args.out, labels=labels)
    for label, r, b in zip(labels, result.responses, result.pool_best):
        print(f"{label}: synthesised {np.array2string(r, precision=2)} vs best of {args.pool} pool images {b:.2f}")
    print(f"gallery -> {args.out}")
    return 0
