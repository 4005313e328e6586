"""Quality heads of the QualiCLIP pretraining stage, on mean-pooled last-stage Swin features."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from common.errors import InvalidValueError
from common.vocabulary import SCORE_ACTIVATIONS

SCALAR_HIDDEN = 256


class ScalarQualityHead(nn.Module):
    """Learned scalar quality (simplified loss): pooled features (B, C) -> score (B,).

    activation "none" gives the raw output (any real number); "sigmoid" squashes it into (0, 1),
    where a saturated sigmoid passes almost no ranking gradient (docs/STAGE1.md, deviations).
    The head runs in float32 under any autocast, so scores are not rounded to bf16 steps.
    """

    def __init__(self, in_features: int, hidden: int = SCALAR_HIDDEN,
                 activation: str = "none") -> None:
        super().__init__()
        if activation not in SCORE_ACTIVATIONS:
            raise InvalidValueError(f"unknown score activation {activation!r}; expected one of "
                                    f"{SCORE_ACTIVATIONS}")
        self.in_features = int(in_features)
        self.hidden = int(hidden)
        self.activation = activation
        # The stage maps are not layer-normalised (the encoder has no final norm), hence the norm.
        self.net = nn.Sequential(
            nn.LayerNorm(in_features),
            nn.Linear(in_features, hidden),
            nn.GELU(),
            nn.Linear(hidden, 1),
        )

    @property
    def config(self) -> dict:
        """JSON-able description from which build_pretrain_head rebuilds this head."""
        return {"type": "scalar", "in_features": self.in_features, "hidden": self.hidden,
                "activation": self.activation}

    def forward(self, pooled: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"score": (B,) float32; in (0, 1) with the sigmoid}."""
        with torch.autocast(device_type=pooled.device.type, enabled=False):
            score = self.net(pooled.float()).squeeze(-1)
        return {"score": torch.sigmoid(score) if self.activation == "sigmoid" else score}


class ClipQualityHead(nn.Module):
    """Projection into CLIP's joint space scored against frozen antonym prompt anchors (full loss).

    The anchors (P, 2, D) and the logit scale are buffers, so a checkpoint scores zero-shot
    without CLIP.
    """

    def __init__(
        self,
        in_features: int,
        text_embeddings: torch.Tensor,
        logit_scale: float | torch.Tensor,
        prompt_pairs: list | tuple | None = None,
    ) -> None:
        super().__init__()
        if text_embeddings.ndim != 3 or text_embeddings.shape[1] != 2:
            raise InvalidValueError(
                "text_embeddings must be (P, 2, D) antonym pairs, got "
                f"{tuple(text_embeddings.shape)}"
            )
        self.in_features = int(in_features)
        self.num_pairs, _, self.embed_dim = (int(n) for n in text_embeddings.shape)
        self.prompt_pairs = [list(p) for p in prompt_pairs] if prompt_pairs is not None else None
        self.proj = nn.Sequential(nn.LayerNorm(in_features), nn.Linear(in_features, self.embed_dim))
        anchors = F.normalize(text_embeddings.detach().float(), dim=-1)
        self.register_buffer("text_embeddings", anchors.clone())
        self.register_buffer(
            "logit_scale", torch.as_tensor(logit_scale, dtype=torch.float32).clone()
        )

    @property
    def config(self) -> dict:
        """JSON-able description from which build_pretrain_head rebuilds this head."""
        return {
            "type": "clip",
            "in_features": self.in_features,
            "num_pairs": self.num_pairs,
            "embed_dim": self.embed_dim,
            "prompt_pairs": self.prompt_pairs,
        }

    def forward(self, pooled: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"sims": (B, P, 2) cosine similarities, "score": (B,) mean over pairs of p(positive)}."""
        # Projection, cosines and softmax in float32: bf16 rounding would blur the small
        # differences between the two prompts of a pair.
        with torch.autocast(device_type=pooled.device.type, enabled=False):
            image = F.normalize(self.proj(pooled.float()), dim=-1)
            sims = torch.einsum("bd,pkd->bpk", image, self.text_embeddings)
            score = (self.logit_scale * sims).softmax(dim=-1)[..., 0].mean(dim=-1)
        return {"sims": sims, "score": score}


def build_pretrain_head(config: dict) -> nn.Module:
    """Head from its config (ScalarQualityHead/ClipQualityHead.config); anchors are zero until a
    state dict is loaded."""
    kind = config.get("type")
    if kind == "scalar":
        # checkpoints written before the activation was configurable used the sigmoid
        return ScalarQualityHead(config["in_features"], config.get("hidden", SCALAR_HIDDEN),
                                 config.get("activation", "sigmoid"))
    if kind == "clip":
        anchors = torch.zeros(config["num_pairs"], 2, config["embed_dim"])
        return ClipQualityHead(config["in_features"], anchors, 0.0, config.get("prompt_pairs"))
    raise InvalidValueError(f"unknown pretraining head type {kind!r}; expected 'scalar' or 'clip'")
