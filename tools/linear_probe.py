"""Linear probe of a frozen encoder: pooled stage features -> ridge regression (penalty chosen by
cross-validation on the training split only) -> SRCC/PLCC on the test split."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from common.errors import InvalidValueError
from common.metrics import evaluate_predictions
from data.images import ImageCache, ResizePolicy
from data.iqa_dataset import IQACropDataset, collate_crops
from data.rows import Row
from engine.evaluate import EVAL_SEED
from engine.loop import to_device_images

FEATURES = ("last", "all")  # last stage; all four stages concatenated
ALPHAS = tuple(float(a) for a in np.logspace(-2, 5, 15))
CV_FOLDS = 5


def pooled_features(encoders: Mapping[str, nn.Module], rows: Sequence[Row], *,
                    policy: ResizePolicy, cache: ImageCache, crop_size: int, patches: int,
                    batch_size: int, device: torch.device, num_workers: int = 0
                    ) -> dict[str, dict[str, np.ndarray]]:
    """Per encoder and feature kind, (N, C) features averaged over `patches` fixed crops and the
    spatial positions of each stage map; rows of undecodable images are NaN.

    Every image is decoded once and fed to all encoders.
    """
    dataset = IQACropDataset(list(rows), policy, cache, crop_size=crop_size, patches=patches,
                             train=False, seed=EVAL_SEED)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=collate_crops)
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in encoders}
    seen: list[torch.Tensor] = []
    for encoder in encoders.values():
        encoder.eval()
    with torch.inference_mode():
        for batch in loader:
            if batch is None:
                continue
            images = batch["image"]  # (B, P, 3, H, W) uint8
            b, p = images.shape[:2]
            x = to_device_images(images.flatten(0, 1), device)
            for name, encoder in encoders.items():
                stages = encoder(x)  # four (B*P, C_i, h_i, w_i) maps
                pooled = torch.cat([s.float().mean(dim=(2, 3)) for s in stages], dim=1)
                parts[name].append(pooled.view(b, p, -1).mean(dim=1).cpu())
            seen.append(batch["index"])
    index = torch.cat(seen).numpy() if seen else np.zeros(0, dtype=np.int64)
    out = {}
    for name, encoder in encoders.items():
        last = int(encoder.stage_channels[-1])
        full = np.full((len(rows), int(sum(encoder.stage_channels))), np.nan)
        if seen:
            full[index] = torch.cat(parts[name]).numpy()
        out[name] = {"all": full, "last": full[:, -last:]}
    return out


def fit_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
              groups: Sequence[str] | None = None, alphas: Sequence[float] = ALPHAS,
              folds: int = CV_FOLDS) -> tuple[np.ndarray, float]:
    """Ridge on standardised features with the penalty chosen by (group) k-fold CV on the
    training rows only; returns the test predictions and the chosen penalty."""
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import GridSearchCV, GroupKFold, KFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n_groups = len(set(groups)) if groups is not None else len(train_y)
    k = min(folds, n_groups)
    if k < 2:
        raise InvalidValueError(f"the linear probe needs at least 2 training images (or content "
                                f"groups) for cross-validation, got {n_groups}")
    splitter = GroupKFold(n_splits=k) if groups is not None else KFold(k, shuffle=True,
                                                                        random_state=0)
    search = GridSearchCV(make_pipeline(StandardScaler(), Ridge()),
                          {"ridge__alpha": list(alphas)}, cv=splitter,
                          scoring="neg_mean_squared_error")
    search.fit(train_x, train_y, groups=list(groups) if groups is not None else None)
    return search.predict(test_x), float(search.best_params_["ridge__alpha"])


def probe_dataset(features: Mapping[str, np.ndarray], rows: Sequence[Row]) -> dict[str, dict]:
    """Fit and score the probe of every feature kind on one dataset's train/test split.

    Returns per kind the metrics, the penalty, the split sizes and the test predictions.
    """
    mos = np.array([r.mos for r in rows], dtype=np.float64)
    split = np.array([r.split for r in rows])
    out = {}
    for kind, x in features.items():
        ok = np.all(np.isfinite(x), axis=1)
        train, test = ok & (split == "train"), ok & (split == "test")
        groups = [r.group for r, keep in zip(rows, train, strict=True) if keep]
        grouped = len(set(groups)) < int(train.sum())  # several images share content
        pred, alpha = fit_probe(x[train], mos[train], x[test], groups if grouped else None)
        metrics = evaluate_predictions(pred, mos[test], strict=False)
        names = [rows[i].name for i in np.flatnonzero(test)]
        out[kind] = {"srcc": metrics["srcc"], "plcc": metrics["plcc"], "alpha": alpha,
                     "n_train": int(train.sum()), "n_test": int(test.sum()),
                     "predictions": list(zip(names, mos[test].tolist(), pred.tolist(),
                                             strict=True))}
    return out

