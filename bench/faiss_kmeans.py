#!/usr/bin/python3
"""Time faiss.Kmeans on the same .npy as bench/kmeans.ts.

usage: faiss_kmeans.py POINTS.npy K NITER SEED [INIT_CENTROIDS.npy|-] [CENTROIDS_OUT.npy]
With INIT_CENTROIDS (a [K, D] float32 .npy) Faiss starts from those centres instead of its own
random pick, so that both tools run the same Lloyd iterations.
Prints one JSON line: {"faiss", "seconds", "per_iter_s", "iter_s", "search_s_per_iter", "obj": [...], "omp_threads"}.
Exits with status 3 when faiss or numpy is not importable (the caller reports "skipped").
"""
import json
import sys
import time

try:
    import faiss
    import numpy as np
except ImportError as exc:  # depends on the machine
    print(json.dumps({"error": f"import failed: {exc}"}))
    sys.exit(3)


def main() -> None:
    path, k, niter, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    init = sys.argv[5] if len(sys.argv) > 5 and sys.argv[5] != "-" else None
    x = np.ascontiguousarray(np.load(path), dtype=np.float32)
    init_centroids = np.ascontiguousarray(np.load(init), dtype=np.float32) if init else None
    km = faiss.Kmeans(x.shape[1], k, niter=niter, seed=seed, verbose=False)
    t0 = time.perf_counter()
    km.train(x, init_centroids=init_centroids)
    seconds = time.perf_counter() - t0
    if len(sys.argv) > 6:
        np.save(sys.argv[6], km.centroids.astype(np.float32))
    stats = km.iteration_stats
    # iteration_stats[i]["time"] is cumulative; "time_search" is per iteration.
    cumulative = [s["time"] for s in stats]
    print(json.dumps({
        "faiss": faiss.__version__,
        "seconds": seconds,
        "per_iter_s": cumulative[-1] / len(stats),
        "iter_s": [b - a for a, b in zip([0.0] + cumulative[:-1], cumulative)],
        "search_s_per_iter": sum(s["time_search"] for s in stats) / len(stats),
        "obj": [s["obj"] for s in stats],
        "omp_threads": faiss.omp_get_max_threads(),
    }))


if __name__ == "__main__":
    main()
