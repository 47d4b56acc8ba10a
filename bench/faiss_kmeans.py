#!/usr/bin/python3
"""Time faiss.Kmeans on the same .npy as bench/kmeans.ts.

usage: faiss_kmeans.py POINTS.npy K NITER SEED [CENTROIDS_OUT.npy]
Prints one JSON line: {"faiss", "seconds", "per_iter_s", "search_s_per_iter", "obj": [...], "omp_threads"}.
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
    x = np.ascontiguousarray(np.load(path), dtype=np.float32)
    km = faiss.Kmeans(x.shape[1], k, niter=niter, seed=seed, verbose=False)
    t0 = time.perf_counter()
    km.train(x)
    seconds = time.perf_counter() - t0
    if len(sys.argv) > 5:
        np.save(sys.argv[5], km.centroids.astype(np.float32))
    stats = km.iteration_stats
    # iteration_stats[i]["time"] is cumulative; "time_search" is per iteration.
    print(json.dumps({
        "faiss": faiss.__version__,
        "seconds": seconds,
        "per_iter_s": stats[-1]["time"] / len(stats),
        "search_s_per_iter": sum(s["time_search"] for s in stats) / len(stats),
        "obj": [s["obj"] for s in stats],
        "omp_threads": faiss.omp_get_max_threads(),
    }))


if __name__ == "__main__":
    main()
