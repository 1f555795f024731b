"""Time the kNN backends against scikit-learn on the same features, check they agree, print the ratios.

    python benchmarks/knn_benchmark.py            # 100k x 128 and 50k x 2048 banks, 10k queries, k=20
    python benchmarks/knn_benchmark.py --quick    # 10x smaller, seconds

scikit-learn runs KNeighborsClassifier(algorithm="brute", metric="cosine") with the same vote weight
exp(s/T) (s = 1 - cosine distance), so all three must give identical top-1 predictions.
"""
import argparse
import time

import numpy as np
import torch
from sklearn.neighbors import KNeighborsClassifier

from eval.knn import knn_classify


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def bench(bank_size, dim, queries, k, temperature, classes, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)).astype(np.float32)
    bank_labels = rng.integers(0, classes, bank_size)
    bank = centres[bank_labels] + 2.0 * rng.normal(size=(bank_size, dim)).astype(np.float32)
    query = centres[rng.integers(0, classes, queries)] + 2.0 * rng.normal(size=(queries, dim)).astype(np.float32)
    rows = {}
    for backend in ("faiss", "torch"):
        seconds, rankings = timed(lambda backend=backend: knn_classify(bank, bank_labels, query, (k,), temperature,
                                                                       classes, backend))
        rows[backend] = (seconds, rankings[k][:, 0])
    sklearn = KNeighborsClassifier(n_neighbors=k, algorithm="brute", metric="cosine",
                                   weights=lambda d: np.exp((1 - d) / temperature))
    seconds, predictions = timed(lambda: sklearn.fit(bank, bank_labels).predict(query))
    rows["sklearn"] = (seconds, predictions)
    print(f"\nbank {bank_size} x {dim}, {queries} queries, k={k}, T={temperature}, {torch.get_num_threads()} threads")
    print(f"{'backend':<10}{'seconds':>10}{'vs sklearn':>12}{'same top-1 as sklearn':>24}")
    for name, (secs, preds) in rows.items():
        same = (preds == rows["sklearn"][1]).mean() * 100
        print(f"{name:<10}{secs:>10.2f}{rows['sklearn'][0] / secs:>11.1f}x{same:>23.2f}%")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10x smaller banks and query sets")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--temperature", type=float, default=0.07)
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    for bank_size, dim in ((100_000, 128), (50_000, 2048)):
        bench(bank_size // scale, dim, 10_000 // scale, args.k, args.temperature, classes=100)


if __name__ == "__main__":
    main()
