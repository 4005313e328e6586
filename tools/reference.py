"""Published figures quoted beside our measurements (never mixed into our own numbers)."""

from __future__ import annotations

PUBLIC_SWIN = "public Swin-HyperIQA code, model picked on test set"

# (method, backbone, KonIQ SRCC, KonIQ PLCC, source)
KONIQ_PUBLISHED = (
    ("HyperIQA", "ResNet-50", 0.906, 0.917, "Su et al., CVPR 2020 (paper)"),
    ("Swin-HyperIQA", "Swin-T", 0.925, 0.936, PUBLIC_SWIN),
    ("Swin-HyperIQA", "Swin-S", 0.934, 0.946, PUBLIC_SWIN),
    ("Swin-HyperIQA", "Swin-B", 0.938, 0.949, PUBLIC_SWIN),
    ("QualiCLIP zero-shot", "CLIP RN50", 0.82, None, "Agnolucci et al. (paper), opinion-unaware"),
)

# Cross-dataset SRCC of the public Swin-HyperIQA trained on KonIQ (dataset key -> SRCC).
CROSS_PUBLISHED = {"spaq": 0.870, "kadid10k": 0.541, "agiqa3k": 0.648}
CROSS_SOURCE = "public Swin-HyperIQA code, trained on KonIQ-10k"

# Linear probe anchors: KonIQ-10k SRCC of a linear regressor on frozen self-supervised features.
PROBE_PUBLISHED = (
    ("CONTRIQUE", 0.894, "Madhusudana et al., IEEE TIP 2022"),
    ("Re-IQA", 0.914, "Saha et al., CVPR 2023"),
)

DATASET_NAMES = {
    "koniq10k": "KonIQ-10k",
    "spaq": "SPAQ",
    "kadid10k": "KADID-10K",
    "agiqa3k": "AGIQA-3K",
    "livec": "LIVE-C",
}


def dataset_name(key: str) -> str:
    """Display name of a dataset key (the key itself for csv: datasets)."""
    return DATASET_NAMES.get(key, key)
