"""Weighted kNN classification on frozen features (Wu et al. 2018 InstDisc; Caron et al. 2021 DINO, sec. 4.1).

Features are l2-normalised, similarity is cosine, each of the k nearest training features votes for its
class with weight exp(s / T) (or 1 with `weights="uniform"`), and classes are ranked by total vote (ties to
the lower class index). One search for the largest k serves every k. Two backends find the neighbours:
faiss (IndexFlatIP; faiss-gpu where installed) and chunked torch matmul + topk (on the GPU when present).
Banks are searched in chunks, so a bank larger than memory can be a numpy memmap.
"""
import numpy as np
import torch

from sslt_core.errors import ConfigError, DatasetError


def normalize(features):
    features = np.asarray(features, dtype=np.float32)
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


def _torch_search(bank, queries, k, bank_chunk, query_chunk, device):
    sims, idx = [], []
    for q0 in range(0, len(queries), query_chunk):
        q = torch.from_numpy(normalize(queries[q0:q0 + query_chunk])).to(device)
        best_s = torch.full((len(q), 0), -float("inf"), device=device)
        best_i = torch.zeros((len(q), 0), dtype=torch.long, device=device)
        for b0 in range(0, len(bank), bank_chunk):
            b = torch.from_numpy(normalize(bank[b0:b0 + bank_chunk])).to(device)
            s, i = (q @ b.T).topk(min(k, len(b)), dim=1)
            best_s, order = torch.cat([best_s, s], 1).topk(min(k, best_s.shape[1] + s.shape[1]), dim=1)
            best_i = torch.cat([best_i, i + b0], 1).gather(1, order)
        sims.append(best_s.cpu())
        idx.append(best_i.cpu())
    return torch.cat(sims).numpy(), torch.cat(idx).numpy()


def _faiss_search(bank, queries, k, bank_chunk):
    import faiss

    queries = normalize(queries)
    heap = faiss.ResultHeap(len(queries), k, keep_max=True)
    for b0 in range(0, len(bank), bank_chunk):
        chunk = normalize(bank[b0:b0 + bank_chunk])
        index = faiss.IndexFlatIP(chunk.shape[1])
        if hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
            index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
        index.add(chunk)
        sims, idx = index.search(queries, min(k, len(chunk)))
        heap.add_result(sims, idx + b0)  # keeps the k best over all chunks so far
    heap.finalize()
    return heap.D, heap.I


def search(bank, queries, k, backend="faiss", bank_chunk=1 << 16, query_chunk=1024, device=None):
    """(similarities [Q, k], indices [Q, k]) of the k most cosine-similar bank rows per query, best first."""
    if backend == "faiss":
        return _faiss_search(bank, queries, k, bank_chunk)
    if backend == "torch":
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        return _torch_search(bank, queries, k, bank_chunk, query_chunk, device)
    raise ValueError(f"unknown kNN backend '{backend}'; choose faiss or torch")


def vote(similarities, neighbour_labels, num_classes, temperature=0.07, weights="exp"):
    """Class ranking [Q, num_classes] from each query's neighbours (best first)."""
    s = torch.from_numpy(np.asarray(similarities, dtype=np.float64))
    w = torch.exp(s / temperature) if weights == "exp" else torch.ones_like(s)
    scores = torch.zeros(len(s), num_classes, dtype=torch.float64)
    scores.scatter_add_(1, torch.from_numpy(np.asarray(neighbour_labels, dtype=np.int64)), w)
    return torch.argsort(scores, dim=1, descending=True, stable=True).numpy()


def knn_classify(train_features, train_labels, test_features, ks=(10, 20, 100, 200), temperature=0.07,
                 num_classes=None, backend="faiss", weights="exp", **search_kwargs):
    """{k: class ranking [Q, num_classes]} for every k, from one search for max(ks) neighbours."""
    train_labels = np.asarray(train_labels, dtype=np.int64)
    if not ks or any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 for k in ks):
        raise ConfigError(f"kNN needs k >= 1 neighbours, got {list(ks)}")
    if not (temperature > 0 and np.isfinite(temperature)):
        raise ConfigError(f"the kNN temperature must be > 0 (vote weights exp(s / T)), got {temperature}")
    if len(train_features) == 0 or len(test_features) == 0:
        raise DatasetError("kNN needs a non-empty training bank and test split; got "
                           f"{len(train_features)} training and {len(test_features)} test features")
    num_classes = num_classes or int(train_labels.max()) + 1
    k_max = min(max(ks), len(train_features))  # a small bank: every k beyond its size uses the whole bank
    similarities, indices = search(train_features, test_features, k_max, backend, **search_kwargs)
    labels = train_labels[indices]
    return {k: vote(similarities[:, :min(k, k_max)], labels[:, :min(k, k_max)], num_classes, temperature, weights)
            for k in ks}


def accuracy(rankings, labels, topk=(1, 5)):
    """{"top1": %, "top5": %} of class rankings against labels (top-k capped at the number of classes)."""
    labels = np.asarray(labels)
    return {f"top{k}": float(100.0 * (rankings[:, :k] == labels[:, None]).any(1).mean()) for k in topk}
