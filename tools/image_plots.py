"""Plots that need the models and the images: t-SNE of encoder features, activation and stage
attention maps, and a quality-ranking strip of test images."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from tools.plots import LABELS, PlotSkipped, save_figure
from tools.reference import dataset_name
from tools.rundata import MATCHED, RunData, read_predictions

STAGES = ("stage 1", "stage 2", "stage 3", "stage 4")


def load_models(run: RunData) -> dict[str, object]:
    """The fine-tuned models (and the zero-shot encoder's model) of a run, on the CPU, eval mode."""
    from common.checkpoint import load_checkpoint
    from models.pretrain_model import pretrain_model_from_checkpoint
    from models.swin_hyperiqa import model_from_checkpoint

    models: dict[str, object] = {}
    for name, ft in run.finetunes.items():
        if name == MATCHED:  # the same encoder start as the pretrained run
            continue
        path = ft.path / "best_model.pkl"
        if path.is_file():
            models[name] = model_from_checkpoint(load_checkpoint(path, expected_kind="full")).eval()
    if run.pretrain is not None and run.pretrain.encoder is not None:
        ckpt = load_checkpoint(run.pretrain.encoder, expected_kind="encoder")
        models["zero_shot"] = pretrain_model_from_checkpoint(ckpt).eval()
    if not models:
        raise PlotSkipped("no best_model.pkl or pretrained encoder checkpoint in the run folder")
    return models


def sample_rows(dataset: str, data_root: Path, n: int) -> list:
    """Up to `n` test rows of a dataset (validation and train rows top up a small test split)."""
    from data.registry import read_rows

    rows = read_rows(dataset, data_root)
    ordered = sorted(rows, key=lambda r: {"test": 0, "val": 1}.get(r.split, 2))[:n]
    if len(ordered) < 5:
        raise PlotSkipped(
            f"only {len(ordered)} images of {dataset_name(dataset)} under {data_root}")
    return ordered


def crop_side(models: dict) -> int:
    """The largest input side among the models (each was trained at its own crop size)."""
    return max(int(model.encoder.crop_size) for model in models.values())


def _center(images: np.ndarray, size: int) -> np.ndarray:
    """(N, size, size, 3) centre crops of (N, H, W, 3) images at least `size` on each side."""
    top, left = (images.shape[1] - size) // 2, (images.shape[2] - size) // 2
    return images[:, top:top + size, left:left + size]


def center_crops(rows: list, dataset: str, size: int) -> np.ndarray:
    """(N, size, size, 3) uint8 centre crops of the rows' images, resized as in training."""
    from data.images import ImageCache
    from data.registry import resize_policy

    cache, policy = ImageCache(None), resize_policy(dataset)
    return np.stack([_center(cache.load(row.path, policy, size)[None], size)[0] for row in rows])


def _model_crops(model: object, crops: np.ndarray) -> np.ndarray:
    """The centre of `crops` at the model's own input size."""
    return _center(crops, int(model.encoder.crop_size))


def _features(model: object, crops: np.ndarray) -> list:
    import torch

    x = torch.from_numpy(np.ascontiguousarray(_model_crops(model, crops)))
    with torch.inference_mode():
        return model.encoder(x.permute(0, 3, 1, 2).float().div_(255))


def tsne_plot(models: dict, crops: np.ndarray, mos: np.ndarray, out_dir: Path) -> Path:
    """t-SNE of the pooled last-stage encoder features, one panel per model, coloured by MOS."""
    from sklearn.manifold import TSNE

    n = len(crops)
    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 4), squeeze=False)
    for ax, (name, model) in zip(axes[0], models.items(), strict=True):
        pooled = _features(model, crops)[-1].mean(dim=(2, 3)).numpy()  # (N, C)
        perplexity = max(2.0, min(30.0, (n - 1) / 3))
        emb = TSNE(n_components=2, perplexity=perplexity, init="pca", max_iter=500,
                   random_state=0).fit_transform(pooled)
        points = ax.scatter(emb[:, 0], emb[:, 1], c=mos, cmap="viridis", s=18)
        ax.set(title=LABELS.get(name, name), xticks=[], yticks=[])
    fig.colorbar(points, ax=axes[0].tolist(), label="MOS")
    fig.suptitle(f"t-SNE of encoder features ({n} test images)")
    out_dir.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_dir / "tsne_features.png", dpi=110)
    plt.close(fig)
    return out_dir / "tsne_features.png"


def activation_plot(models: dict, crops: np.ndarray, mos: np.ndarray, out_dir: Path) -> Path:
    """Last-stage activation maps of each fine-tuned model and its attention over the 4 stages."""
    import torch

    tuned = {k: m for k, m in models.items() if k != "zero_shot"}
    if not tuned:
        raise PlotSkipped("no fine-tuned model checkpoint (best_model.pkl) in the run folder")
    n = min(4, len(crops))
    fig, axes = plt.subplots(n, 1 + 2 * len(tuned), figsize=(3 * (1 + 2 * len(tuned)), 2.8 * n),
                             squeeze=False)
    for i in range(n):
        axes[i][0].imshow(crops[i])
        axes[i][0].set(title=f"MOS {mos[i]:.2f}", xticks=[], yticks=[])
    for j, (name, model) in enumerate(tuned.items()):
        feats = _features(model, crops[:n])
        with torch.inference_mode():
            details = model.head.forward_details(feats)
        seen = _model_crops(model, crops[:n])  # what this model was shown
        act = feats[-1].norm(dim=1, keepdim=True)  # (n, 1, h, w)
        act = torch.nn.functional.interpolate(act, size=seen.shape[1:3], mode="bilinear")[:, 0]
        attention = details.get("attention")
        for i in range(n):
            ax_map, ax_att = axes[i][1 + 2 * j], axes[i][2 + 2 * j]
            ax_map.imshow(seen[i])
            ax_map.imshow(act[i].numpy(), cmap="inferno", alpha=0.55)
            ax_map.set(title=f"{LABELS[name]}\npred {float(details['score'][i]):.2f}",
                       xticks=[], yticks=[])
            if attention is None:
                ax_att.text(0.5, 0.5, "model trained\nwithout stage\nattention",
                            ha="center", va="center")
                ax_att.set(xticks=[], yticks=[])
            else:
                ax_att.bar(range(4), attention[i].numpy(), color="tab:purple")
                ax_att.set(title="stage attention", xticks=range(4), ylim=(0, 1))
                ax_att.set_xticklabels(STAGES, fontsize=7)
    fig.suptitle("Last-stage activation (feature norm) and attention over Swin stages")
    return save_figure(fig, out_dir / "activation_maps.png")


def _resolve_images(names: list[str], dataset: str, data_root: Path) -> dict[str, Path]:
    from data.registry import read_rows

    found = {n: Path(n) for n in names if Path(n).is_file()}
    if len(found) < len(names):
        for row in read_rows(dataset, data_root):
            for key in (row.name, str(row.path)):
                if key in names:
                    found[key] = row.path
    return found


def ranking_strip(run: RunData, data_root: Path, out_dir: Path, n: int = 8) -> Path:
    """Test images ordered by the pretrained model's prediction, ground-truth MOS annotated."""
    from data.images import load_rgb

    source = next((run.evals[k] for k in ("pretrained", "baseline", "zero_shot")
                   if k in run.evals and run.evals[k].predictions), None)
    if source is None:
        raise PlotSkipped("no predictions CSV from test_swin.py in eval/")
    preds = source.predictions
    dataset = "koniq10k" if "koniq10k" in preds else sorted(preds)[0]
    rows = sorted(read_predictions(preds[dataset]), key=lambda r: r["prediction"])
    if len(rows) < 2:
        raise PlotSkipped(f"fewer than 2 predictions for {dataset_name(dataset)}")
    picks = [rows[i] for i in np.unique(np.linspace(0, len(rows) - 1, n).round().astype(int))]
    paths = _resolve_images([r["image"] for r in picks], dataset, data_root)
    picks = [r for r in picks if r["image"] in paths]
    if not picks:
        raise PlotSkipped(f"the images of {dataset_name(dataset)} were not found under {data_root}")
    fig, axes = plt.subplots(1, len(picks), figsize=(2.2 * len(picks), 2.8), squeeze=False)
    for ax, row in zip(axes[0], picks, strict=True):
        img = load_rgb(paths[row["image"]], draft_size=(256, 256))
        img.thumbnail((256, 256))
        ax.imshow(img)
        ax.set(title=f"pred {row['prediction']:.2f}\nMOS {row['mos']:.2f}", xticks=[], yticks=[])
    name = Path(source.path).stem
    fig.suptitle(f"{dataset_name(dataset)} images ranked by the {LABELS.get(name, name)} "
                 "prediction (worst to best)")
    return save_figure(fig, out_dir / "ranking_strip.png")
