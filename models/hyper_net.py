"""HyperIQA head (Su et al., CVPR 2020) on the four stage maps of a Swin encoder.

A content vector (the target network's input) comes from local distortion-aware (LDA) pooling of
all four stages, or from the last stage alone; the hyper network turns a 112-channel 7x7 map into
the weights and biases of a target network FC 224 -> 112 -> 56 -> 28 -> 14 -> 1 with sigmoids
between layers, one set of weights per image.
"""

from __future__ import annotations

import itertools
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from common.errors import InvalidValueError
from common.vocabulary import ATTENTION_SCOPES, HEAD_POOLINGS

TARGET_SIZES = (224, 112, 56, 28, 14)  # target network widths; a last linear layer maps 14 -> 1
HYPER_CHANNELS = 112
FEATURE_SIZE = 7  # side of the hyper network's feature map
LDA_OUT = 16  # LDA vector length of stages 1-3; the last stage fills the rest of TARGET_SIZES[0]
LDA_CHANNELS = (16, 32, 64)
LDA_GRIDS = (8, 4, 2)
ATTENTION_HIDDEN = 256
# generator_gain 1: the official kaiming init of the weight/bias generators. Under the hyper map's
# small activations (rms ~0.03 with the default-initialised 1x1 convs) the target weights come
# out with std ~0.05 and the score of mini (random init, 64-px crops) varies by ~0.01 across
# images; the five sigmoid layers pass the content vector on so weakly that it carries ~1/2000
# of the score's variation and of the encoder's gradient, the rest coming from the hyper map.
# A gain of 8 (weights std ~0.35) gives the score a usable range from the start and lets that
# model learn (mean_std pooling: test SRCC ~0 -> ~0.5-0.6 in 300-600 steps).


def cell_statistics(x: torch.Tensor, grid: int, with_std: bool) -> torch.Tensor:
    """(B, C, H, W) -> average over each cell of a grid x grid partition (B, C, g, g); with_std
    appends each cell's spatial standard deviation (B, 2C, g, g)."""
    mean = F.adaptive_avg_pool2d(x, grid)
    if not with_std:
        return mean
    square = F.adaptive_avg_pool2d(x * x, grid)
    return torch.cat([mean, (square - mean * mean).clamp_min(0).add(1e-6).sqrt()], dim=1)


class LocalDistortionAware(nn.Module):
    """LDA module of one early stage: pool to a grid, 1x1 conv, FC to a short vector."""

    def __init__(self, in_channels: int, mid_channels: int, grid: int, out_features: int,
                 with_std: bool = False) -> None:
        super().__init__()
        self.grid, self.with_std = grid, with_std
        self.conv = nn.Conv2d(in_channels * (2 if with_std else 1), mid_channels, kernel_size=1,
                              bias=False)
        self.fc = nn.Linear(mid_channels * grid * grid, out_features)
        nn.init.kaiming_normal_(self.conv.weight)
        nn.init.kaiming_normal_(self.fc.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, out_features)."""
        # Pooling before the bias-free 1x1 conv gives the same result (both are linear) with far
        # less memory, the trick the official code uses with its strided average pool.
        return self.fc(self.conv(cell_statistics(x, self.grid, self.with_std)).flatten(1))


class StageAttention(nn.Module):
    """Per-image softmax weights over the four stages, from the pooled last-stage features."""

    def __init__(self, in_channels: int, num_stages: int = 4) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_channels, ATTENTION_HIDDEN),
            nn.ReLU(inplace=True),
            nn.Linear(ATTENTION_HIDDEN, num_stages),
        )
        # Small weights and zero biases: the stages start out weighted almost equally.
        for layer in self.net:
            if isinstance(layer, nn.Linear):
                nn.init.normal_(layer.weight, std=0.01)
                nn.init.zeros_(layer.bias)

    def forward(self, last_stage: torch.Tensor) -> torch.Tensor:
        """(B, C4, h, w) -> (B, num_stages), rows summing to 1."""
        return self.net(last_stage.mean(dim=(2, 3))).softmax(dim=-1)


def run_target_network(
    x: torch.Tensor, params: list[tuple[torch.Tensor, torch.Tensor]]
) -> torch.Tensor:
    """Apply per-image FC layers [(W (B, out, in), b (B, out)), ...] to x (B, in) -> (B,).

    Every layer but the last is followed by a sigmoid.
    """
    q = x.unsqueeze(-1)  # (B, in, 1)
    for i, (weight, bias) in enumerate(params):
        q = torch.baddbmm(bias.unsqueeze(-1), weight, q)  # (B, out, 1)
        if i < len(params) - 1:
            q = torch.sigmoid(q)
    return q.reshape(-1)


class HyperIQAHead(nn.Module):
    """HyperIQA hyper network + target network on four stage maps -> one score per image."""

    def __init__(
        self,
        stage_channels: tuple[int, ...] | list[int],
        use_multiscale: bool = True,
        use_attention: bool = True,
        dropout: float = 0.0,
        attention_scope: str = "hyper",
        pooling: str = "mean",
        generator_gain: float = 1.0,
    ) -> None:
        super().__init__()
        if not generator_gain > 0:
            raise InvalidValueError(f"generator_gain must be positive, got {generator_gain!r}")
        if pooling not in HEAD_POOLINGS:
            raise InvalidValueError(f"pooling must be one of {HEAD_POOLINGS}, got {pooling!r}")
        if attention_scope not in ATTENTION_SCOPES:
            raise InvalidValueError(
                f"attention_scope must be one of {ATTENTION_SCOPES}, got {attention_scope!r}"
            )
        channels = tuple(int(c) for c in stage_channels)
        if len(channels) != 4:
            raise InvalidValueError(f"expected the channels of 4 stages, got {channels}")
        if use_attention and not use_multiscale:
            warnings.warn(
                "use_attention weights the four stages and has no effect without use_multiscale; "
                "building the head without attention",
                stacklevel=2,
            )
        self.stage_channels = channels
        self.use_multiscale = bool(use_multiscale)
        self.use_attention = bool(use_attention and use_multiscale)
        self.attention_scope = attention_scope
        self.pooling = pooling
        self.generator_gain = float(generator_gain)
        self.with_std = pooling == "mean_std"
        width = 2 if self.with_std else 1  # channels per stage channel after pooling
        target_in = TARGET_SIZES[0]

        if self.use_multiscale:
            self.lda = nn.ModuleList(
                LocalDistortionAware(c, mid, grid, LDA_OUT, self.with_std)
                for c, mid, grid in zip(channels[:3], LDA_CHANNELS, LDA_GRIDS, strict=True)
            )
            self.last_fc = nn.Linear(width * channels[3], target_in - 3 * LDA_OUT)  # 176 for 224
            hyper_in = width * sum(channels)
        else:
            self.lda = None
            self.last_fc = nn.Linear(width * channels[3], target_in)
            hyper_in = width * channels[3]
        nn.init.kaiming_normal_(self.last_fc.weight)
        self.attention = StageAttention(channels[3]) if self.use_attention else None

        # 1x1 convs halving the width twice, then to the hyper map, as in the official network.
        self.hyper_in = nn.Sequential(
            nn.Conv2d(hyper_in, hyper_in // 2, kernel_size=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hyper_in // 2, hyper_in // 4, kernel_size=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hyper_in // 4, HYPER_CHANNELS, kernel_size=1),
            nn.ReLU(inplace=True),
        )
        pairs = list(itertools.pairwise(TARGET_SIZES))  # (in, out) per layer
        self.weight_convs = nn.ModuleList(
            nn.Conv2d(HYPER_CHANNELS, fan_in * fan_out // FEATURE_SIZE**2, 3, padding=1)
            for fan_in, fan_out in pairs
        )
        self.bias_fcs = nn.ModuleList(nn.Linear(HYPER_CHANNELS, fan_out) for _, fan_out in pairs)
        self.last_weight_fc = nn.Linear(HYPER_CHANNELS, TARGET_SIZES[-1])
        self.last_bias_fc = nn.Linear(HYPER_CHANNELS, 1)
        generators = [*self.weight_convs, *self.bias_fcs, self.last_weight_fc, self.last_bias_fc]
        for module in generators:
            nn.init.kaiming_normal_(module.weight)
            if self.generator_gain != 1.0:  # scaled after drawing: gain 1 keeps the old init
                with torch.no_grad():
                    module.weight.mul_(self.generator_gain)
        self.dropout = nn.Dropout(dropout)

    def content_modules(self) -> list[nn.Module]:
        """The layers making the target network's input (LDA branch; HyperIQA's backbone part)."""
        return [self.lda, self.last_fc] if self.lda is not None else [self.last_fc]

    def hyper_modules(self) -> list[nn.Module]:
        """Every other layer: attention, hyper network and target-weight generators."""
        content = self.content_modules()
        return [m for m in self.children() if all(m is not c for c in content)]

    def content_vector(
        self, features: list[torch.Tensor], attention: torch.Tensor | None
    ) -> torch.Tensor:
        """Target-network input (B, 224): LDA vectors of all stages, or the pooled last stage.

        The attention scales the four parts only with attention_scope "hyper_lda".
        """
        last = cell_statistics(features[-1], 1, self.with_std).flatten(1)
        if self.lda is None:
            return self.last_fc(last)
        parts = [lda(f) for lda, f in zip(self.lda, features[:3], strict=True)]
        parts.append(self.last_fc(last))
        if attention is not None and self.attention_scope == "hyper_lda":
            parts = [p * attention[:, i : i + 1] for i, p in enumerate(parts)]
        return torch.cat(parts, dim=1)

    def hyper_map(
        self, features: list[torch.Tensor], attention: torch.Tensor | None
    ) -> torch.Tensor:
        """Hyper network feature map (B, 112, 7, 7)."""
        if not self.use_multiscale:
            return self.hyper_in(cell_statistics(features[-1], FEATURE_SIZE, self.with_std))
        pooled = [cell_statistics(f, FEATURE_SIZE, self.with_std) for f in features]
        if attention is not None:
            pooled = [p * attention[:, i].view(-1, 1, 1, 1) for i, p in enumerate(pooled)]
        return self.hyper_in(torch.cat(pooled, dim=1))

    def target_params(self, hyper: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per-image target-network layers [(W (B, out, in), b (B, out)), ...] from a hyper map."""
        batch = hyper.shape[0]
        pooled = hyper.mean(dim=(2, 3))  # (B, 112)
        params = []
        layers = zip(
            self.weight_convs, self.bias_fcs, itertools.pairwise(TARGET_SIZES), strict=False
        )
        for conv, fc, (fan_in, fan_out) in layers:
            # (B, in*out/49, 7, 7) read in channel-major order as (out, in), as the official code
            params.append((conv(hyper).reshape(batch, fan_out, fan_in), fc(pooled)))
        last_weight = self.last_weight_fc(pooled).reshape(batch, 1, TARGET_SIZES[-1])
        params.append((last_weight, self.last_bias_fc(pooled)))
        return params

    def forward_details(self, features: list[torch.Tensor]) -> dict:
        """score (B,), attention (B, 4) or None, target_in (B, 224), target_params (per layer)."""
        attention = self.attention(features[-1]) if self.attention is not None else None
        target_in = self.content_vector(features, attention)
        params = self.target_params(self.hyper_map(features, attention))
        score = run_target_network(self.dropout(target_in), params)
        return {
            "score": score,
            "attention": attention,
            "target_in": target_in,
            "target_params": params,
        }

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Quality score per image (B,) from the four stage maps."""
        return self.forward_details(features)["score"]
