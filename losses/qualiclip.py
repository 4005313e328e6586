"""QualiCLIP pretraining losses: crop consistency plus margin ranking over degradation levels.

Inputs hold one value per degradation level, level 0 being the clean crop and level L the most
degraded one; `_a` and `_b` are the two overlapping crops of the same image, degraded with the same
distortion type at the same intensities.

Definitions (all hinges are `relu`, every term is a mean over its elements):
- ranking, for every level pair i < j of each crop: `relu(margin - (q_i - q_j))`, i.e. the less
  degraded crop must score at least `margin` higher. The full loss applies it to the similarity
  with the positive prompt (falling with level) and, mirrored, to the negative prompt (rising with
  level), and adds the two, as QualiCLIP's L_pos + L_neg.
- consistency, for every level: `relu(|q_a - q_b| / s - consistency_margin)`. In the
  `standardised` form s is the batch's level spread: the standard deviation of a crop's scores
  across its levels, averaged over both crops of every image (per prompt for the full loss). The
  term is then the crops' disagreement in units of how far the levels are told apart: scaling
  every score by k leaves it unchanged, so it has no gradient towards one constant score; it
  falls when the levels spread more than the crops differ, in either direction (at mini that
  ranked blur the wrong way round, docs/STAGE1.md). In the `absolute` form s = 1: the plain
  absolute difference of the public Swin-HyperIQA QualiCLIP branch, which a smaller score scale
  always lowers. With the default
  margin 0 the term is the whole disagreement; a positive margin gives QualiCLIP's margin-ranking
  form, which tolerates differences up to the margin. The full loss adds the positive- and
  negative-prompt terms, as QualiCLIP's L_cons does.
QualiCLIP ranks the L degraded levels only; here the clean crop (level 0) takes part as well.
The official QualiCLIP repository publishes inference code only; the definitions above follow the
paper (Agnolucci et al., arXiv 2403.11176), whose three terms are all margin-ranking losses.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from common.errors import InvalidValueError
from common.vocabulary import CONSISTENCY_FORMS

_MIN_SPREAD = 1e-6  # a batch whose scores are all equal has no disagreement to scale


@dataclass
class LossTerms:
    """Weighted total and its two unweighted parts (0-dim tensors that carry gradients)."""

    total: torch.Tensor
    consistency: torch.Tensor
    ranking: torch.Tensor


def _check_pair(a: torch.Tensor, b: torch.Tensor, name: str, layout: str, ndim: int) -> None:
    """Raise ValueError unless a and b are floating tensors of one shape with >= 2 levels."""
    for label, t in ((f"{name}_a", a), (f"{name}_b", b)):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            found = t.dtype if isinstance(t, torch.Tensor) else type(t).__name__
            raise InvalidValueError(
                f"{label} must be a floating-point tensor {layout}, found {found}")
        if t.dim() != ndim:
            raise InvalidValueError(
                f"{label} must have shape {layout} (level 0 = clean crop), found shape "
                f"{tuple(t.shape)}"
            )
    if a.shape != b.shape:
        raise InvalidValueError(
            f"{name}_a and {name}_b must have the same shape {layout} (one entry per crop pair), "
            f"found {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if a.shape[1] < 2:
        raise InvalidValueError(
            f"{name} need at least 2 levels (the clean crop and one degraded level) on dim 1 of "
            f"{layout}, found {a.shape[1]}; check --num_levels"
        )


def _check_margins(margin: float, consistency_margin: float) -> None:
    """Raise ValueError on negative margins."""
    if margin < 0 or consistency_margin < 0:
        raise InvalidValueError(
            f"margins must be >= 0, found margin={margin} and consistency_margin="
            f"{consistency_margin}"
        )


def ranking_hinge(values: torch.Tensor, margin: float, descending: bool = True) -> torch.Tensor:
    """Hinge of every level pair i < j along the last dim: (..., L+1) -> (..., (L+1)L/2)."""
    n = values.shape[-1]
    i, j = torch.triu_indices(n, n, offset=1, device=values.device)
    gap = values[..., i] - values[..., j]  # positive when level i beats level j
    if not descending:
        gap = -gap
    return F.relu(margin - gap)


def consistency_hinge(a: torch.Tensor, b: torch.Tensor, margin: float = 0.0,
                      form: str = "absolute") -> torch.Tensor:
    """Element-wise `relu(|a - b| / s - margin)` of (B, L+1, ...) values: how far the two crops
    disagree beyond the margin; s is the level spread (dim 1) averaged over both crops of every
    image (`standardised`), or 1 (`absolute`)."""
    if form not in CONSISTENCY_FORMS:
        raise InvalidValueError(
            f"consistency form must be one of {', '.join(CONSISTENCY_FORMS)}, found {form!r}")
    gap = (a - b).abs()
    if form == "standardised":
        spread = torch.cat((a, b)).std(dim=1).mean(dim=0)  # a scalar, or one per prompt
        gap = gap / spread.clamp_min(_MIN_SPREAD)
    return F.relu(gap - margin)


def qualiclip_simplified_loss(
    scores_a: torch.Tensor,
    scores_b: torch.Tensor,
    margin: float = 0.05,
    consistency_weight: float = 1.0,
    ranking_weight: float = 1.0,
    consistency_margin: float = 0.0,
    consistency_form: str = "absolute",
) -> LossTerms:
    """QualiCLIP loss on scalar quality scores of shape (B, L+1) for the two crops."""
    _check_pair(scores_a, scores_b, "scores", "(B, L+1)", 2)
    _check_margins(margin, consistency_margin)
    consistency = consistency_hinge(scores_a, scores_b, consistency_margin,
                                    consistency_form).mean()
    ranking = ranking_hinge(torch.stack((scores_a, scores_b)), margin).mean()  # (2, B, pairs)
    total = consistency_weight * consistency + ranking_weight * ranking
    return LossTerms(total=total, consistency=consistency, ranking=ranking)


def qualiclip_full_loss(
    sims_a: torch.Tensor,
    sims_b: torch.Tensor,
    margin: float = 0.05,
    consistency_weight: float = 1.0,
    ranking_weight: float = 1.0,
    consistency_margin: float = 0.0,
    consistency_form: str = "absolute",
) -> LossTerms:
    """QualiCLIP loss on prompt cosine similarities of shape (B, L+1, P, 2) (positive, negative)."""
    _check_pair(sims_a, sims_b, "sims", "(B, L+1, P, 2)", 4)
    if sims_a.shape[-1] != 2:
        raise InvalidValueError(
            "sims must end with one (positive, negative) similarity pair per prompt pair, "
            f"shape (B, L+1, P, 2); found last dim {sims_a.shape[-1]}"
        )
    _check_margins(margin, consistency_margin)
    # Summed over the two prompts (L_cons covers both), averaged over images, levels and pairs.
    consistency = consistency_hinge(sims_a, sims_b, consistency_margin,
                                    consistency_form).sum(-1).mean()
    sims = torch.stack((sims_a, sims_b)).movedim(2, -1)  # (2, B, P, 2, L+1): levels last
    rank_pos = ranking_hinge(sims[..., 0, :], margin, descending=True).mean()
    rank_neg = ranking_hinge(sims[..., 1, :], margin, descending=False).mean()
    ranking = rank_pos + rank_neg
    total = consistency_weight * consistency + ranking_weight * ranking
    return LossTerms(total=total, consistency=consistency, ranking=ranking)


def level_ranking_accuracy(scores: torch.Tensor) -> torch.Tensor:
    """Fraction of level pairs i < j with q_i > q_j in (..., L+1) scores, averaged over crops."""
    n = scores.shape[-1]
    i, j = torch.triu_indices(n, n, offset=1, device=scores.device)
    return (scores[..., i] > scores[..., j]).float().mean()


def level_spread(scores: torch.Tensor) -> torch.Tensor:
    """Standard deviation of the scores across the levels of each crop, averaged over crops."""
    return scores.float().std(dim=-1).mean()
