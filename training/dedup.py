"""Perceptual hashes and near-duplicate groups (the unit a leakage-aware split keeps whole)."""

from pathlib import Path

import numpy as np
from PIL import Image
from scipy.fft import dctn

HASH_SIZE = 8  # 64-bit pHash
NEAR_DUPLICATE_DISTANCE = 4


def phash(image: Image.Image) -> int:
    """64-bit DCT perceptual hash (as in the ``imagehash`` library): low frequencies vs median."""
    small = np.asarray(image.convert("L").resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
    low = dctn(small, type=2, norm="ortho")[:HASH_SIZE, :HASH_SIZE]
    bits = (low > np.median(low)).flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


def phash_file(path: Path) -> int:
    with Image.open(path) as image:
        return phash(image)


def hamming_matrix(hashes: np.ndarray) -> np.ndarray:
    """Pairwise Hamming distances of uint64 hashes (N x N, uint8)."""
    return np.bitwise_count(hashes[:, None] ^ hashes[None, :]).astype(np.uint8)


def near_duplicate_pairs(hashes: list[int], max_distance: int = NEAR_DUPLICATE_DISTANCE) -> np.ndarray:
    """Index pairs (i < j) whose hashes differ in at most ``max_distance`` bits."""
    distances = hamming_matrix(np.asarray(hashes, dtype=np.uint64))
    i, j = np.nonzero(np.triu(distances <= max_distance, k=1))
    return np.stack([i, j], axis=1)


def group_ids(n: int, pairs: np.ndarray) -> np.ndarray:
    """Connected components of the near-duplicate graph (union-find): one id per sample."""
    parent = np.arange(n)

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = find(int(a)), find(int(b))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return np.array([find(i) for i in range(n)])
