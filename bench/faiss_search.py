#!/usr/bin/python3
"""Time Faiss IndexFlatL2.search (k=1) on the same data as bench/search.ts.

usage: faiss_search.py QUERIES.npy CENTERS.npy OUT_IDS.npy [REPEATS]
Prints one JSON line: {"faiss": version, "best_s": ..., "times_s": [...], "omp_threads": ...}.
Exits with status 3 when faiss or numpy is not importable (the caller reports "skipped").
"""
import json
import sys
import time

try:
    import faiss
    import numpy as np
except ImportError as exc:  # pragma: no cover - depends on the machine
    print(json.dumps({"error": f"import failed: {exc}"}))
    sys.exit(3)


def main() -> None:
    queries_path, centers_path, out_path = sys.argv[1:4]
    repeats = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    queries = np.ascontiguousarray(np.load(queries_path), dtype=np.float32)
    centers = np.ascontiguousarray(np.load(centers_path), dtype=np.float32)
    index = faiss.IndexFlatL2(centers.shape[1])
    index.add(centers)
    times = []
    ids = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        _, ids = index.search(queries, 1)
        times.append(time.perf_counter() - t0)
    np.save(out_path, ids[:, 0].astype(np.int32))
    print(json.dumps({
        "faiss": faiss.__version__,
        "best_s": min(times),
        "times_s": times,
        "omp_threads": faiss.omp_get_max_threads(),
    }))


if __name__ == "__main__":
    main()
