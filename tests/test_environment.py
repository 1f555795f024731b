import numpy as np


def test_faiss_inner_product_search_matches_brute_force():
    import faiss

    rng = np.random.default_rng(0)
    bank, queries = rng.normal(size=(500, 32)).astype("float32"), rng.normal(size=(20, 32)).astype("float32")
    index = faiss.IndexFlatIP(32)
    index.add(bank)
    _, found = index.search(queries, 5)
    expected = np.argsort(-(queries @ bank.T), axis=1)[:, :5]
    np.testing.assert_array_equal(found, expected)
