"""``compactcortex consolidation``: how much a session's published models share."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .args import int_arg


def register(sub) -> None:
    cs = sub.add_parser(
        "consolidation", help="analyse a session's published models: layer-0 filter sharing, layer-1 consolidation",
        description="How much the published compact models of a session share: similarity of layer-0 filters "
                    "across neurons against shuffled, phase-randomised and random surrogate filters, clusters of those filters, and the "
                    "consolidation of layer 1 (participation ratio, effective rank; also weighted by the input "
                    "RMS on procedural images). Writes OUT/consolidation_SESSION.json and three PNG plots.")
    cs.add_argument("--data", default="../shared/data/v4", help="published V4 data folder")
    cs.add_argument("--session", default="190923")
    cs.add_argument("--k", type=int_arg(1, 10_000), default=16, help="clusters of layer-0 filters")
    cs.add_argument("--images", type=int_arg(0, 100_000), default=32, help="procedural images for the input RMS (0: raw weights)")
    cs.add_argument("--out", default="benchmarks/results", help="output folder")
    cs.set_defaults(fn=run)


def run(args: argparse.Namespace) -> int:
    from ..plots.analysis import plot_consolidation, plot_filter_clusters, plot_filter_similarity
    from ..analysis.consolidation import NULLS, cluster_filters, filter_similarity, summarise
    from ..data.procedural import procedural
    from ..files import write_json
    from ..models.published import load_published_session

    models = load_published_session(args.data, args.session)
    images = procedural(args.images, seed=2) if args.images else None
    out = Path(args.out)
    sims = {kind: filter_similarity(models, kind) for kind in NULLS}
    clusters = cluster_filters(models, args.k)
    numbers = summarise(models, sims, clusters, images=images)
    write_json(out / f"consolidation_{args.session}.json", numbers)
    plot_filter_similarity(models, out / f"filter_similarity_{args.session}.png", similarities=list(sims.values()))
    plot_filter_clusters(models, out / f"filter_clusters_{args.session}.png", clusters=clusters)
    plot_consolidation(models, out / f"consolidation_{args.session}.png", images=images)
    print(json.dumps(numbers, indent=1))
    print(f"numbers and plots -> {out}")
    return 0
