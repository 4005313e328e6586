"""QualiCLIP losses: hand-computed values, ordering, gradients and shape checks."""

from __future__ import annotations

import pytest
import torch

from losses import LossTerms, qualiclip_full_loss, qualiclip_simplified_loss
from losses.qualiclip import level_ranking_accuracy, level_spread

# One image, levels 0..2, crop a has levels 1 and 2 in the wrong order.
SCORES_A = torch.tensor([[0.9, 0.5, 0.6]])
SCORES_B = torch.tensor([[0.8, 0.5, 0.2]])


def test_simplified_hand_computed() -> None:
    terms = qualiclip_simplified_loss(SCORES_A, SCORES_B, margin=0.05)
    # consistency: |0.9-0.8|, |0.5-0.5|, |0.6-0.2| = 0.1, 0, 0.4 -> mean 0.5 / 3
    assert terms.consistency.item() == pytest.approx(0.5 / 3, abs=1e-6)
    # ranking: pairs (0,1) (0,2) (1,2) per crop, relu(0.05 - (q_i - q_j)):
    # crop a gaps 0.4, 0.3, -0.1 -> 0, 0, 0.15; crop b gaps 0.3, 0.6, 0.3 -> 0, 0, 0 -> 0.15 / 6
    assert terms.ranking.item() == pytest.approx(0.025, abs=1e-6)
    assert terms.total.item() == pytest.approx(0.5 / 3 + 0.025, abs=1e-6)


def test_simplified_weights_and_consistency_margin() -> None:
    terms = qualiclip_simplified_loss(
        SCORES_A, SCORES_B, margin=0.05, consistency_weight=2.0, ranking_weight=0.5
    )
    assert terms.total.item() == pytest.approx(2.0 * 0.5 / 3 + 0.5 * 0.025, abs=1e-6)
    hinged = qualiclip_simplified_loss(SCORES_A, SCORES_B, consistency_margin=0.05)
    # relu(|d| - 0.05): 0.05, 0, 0.35 -> 0.4 / 3
    assert hinged.consistency.item() == pytest.approx(0.4 / 3, abs=1e-6)
    # margin 0.2: crop a 0, 0, 0.3; crop b 0, 0, 0 -> 0.3 / 6
    wide = qualiclip_simplified_loss(SCORES_A, SCORES_B, margin=0.2)
    assert wide.ranking.item() == pytest.approx(0.05, abs=1e-6)


def test_full_hand_computed() -> None:
    # (B=1, L+1=2, P=1, 2): [positive, negative] similarity per level.
    sims_a = torch.tensor([[[[0.30, 0.20]], [[0.25, 0.24]]]])
    sims_b = torch.tensor([[[[0.28, 0.21]], [[0.27, 0.20]]]])
    terms = qualiclip_full_loss(sims_a, sims_b, margin=0.05)
    # consistency: level 0: 0.02 + 0.01, level 1: 0.02 + 0.04 -> mean over levels 0.045
    assert terms.consistency.item() == pytest.approx(0.045, abs=1e-6)
    # positive must fall: a 0.30->0.25 gap 0.05 -> 0; b 0.28->0.27 gap 0.01 -> 0.04; mean 0.02
    # negative must rise: a 0.20->0.24 gap 0.04 -> 0.01; b 0.21->0.20 gap -0.01 -> 0.06; mean 0.035
    assert terms.ranking.item() == pytest.approx(0.055, abs=1e-6)
    assert terms.total.item() == pytest.approx(0.1, abs=1e-6)


def _ordered_scores(generator: torch.Generator, batch: int, levels: int) -> torch.Tensor:
    """Scores falling with the level, spaced wider than the margin."""
    steps = 0.2 + 0.05 * torch.rand(batch, levels, generator=generator)
    return 1.0 - steps.cumsum(dim=1)


def test_ordered_batch_beats_shuffled() -> None:
    g = torch.Generator().manual_seed(0)
    a = _ordered_scores(g, 4, 6)
    b = a + 0.01 * torch.randn(a.shape, generator=g)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    ordered = qualiclip_simplified_loss(a, b)
    shuffled = qualiclip_simplified_loss(a[:, perm], b[:, perm])
    assert ordered.ranking.item() == pytest.approx(0.0, abs=1e-7)
    assert ordered.total.item() < shuffled.total.item()
    assert shuffled.consistency.item() == pytest.approx(ordered.consistency.item(), abs=1e-6)

    pos = torch.stack([_ordered_scores(g, 4, 6) for _ in range(3)], dim=2)  # (B, L+1, P)
    sims_a = torch.stack((pos, 1.0 - pos), dim=-1)  # negative similarity rises with level
    sims_b = sims_a + 0.01 * torch.randn(sims_a.shape, generator=g)
    full_ordered = qualiclip_full_loss(sims_a, sims_b)
    full_shuffled = qualiclip_full_loss(sims_a[:, perm], sims_b[:, perm])
    assert full_ordered.ranking.item() == pytest.approx(0.0, abs=1e-7)
    assert full_ordered.total.item() < full_shuffled.total.item()


@pytest.mark.parametrize("kind", ["simplified", "full"])
def test_gradients_flow(kind: str) -> None:
    g = torch.Generator().manual_seed(1)
    shape = (3, 4) if kind == "simplified" else (3, 4, 2, 2)
    a = torch.rand(shape, generator=g, requires_grad=True)
    b = torch.rand(shape, generator=g, requires_grad=True)
    loss_fn = qualiclip_simplified_loss if kind == "simplified" else qualiclip_full_loss
    terms = loss_fn(a, b)
    assert isinstance(terms, LossTerms)
    assert terms.total.dim() == 0
    terms.total.backward()
    for t in (a, b):
        assert t.grad is not None
        assert torch.isfinite(t.grad).all()
        assert t.grad.abs().sum() > 0


def test_shape_errors_are_clear() -> None:
    with pytest.raises(ValueError, match=r"\(B, L\+1\).*found shape \(4,\)"):
        qualiclip_simplified_loss(torch.rand(4), torch.rand(4))
    with pytest.raises(ValueError, match="same shape"):
        qualiclip_simplified_loss(torch.rand(2, 3), torch.rand(2, 4))
    with pytest.raises(ValueError, match="at least 2 levels"):
        qualiclip_simplified_loss(torch.rand(2, 1), torch.rand(2, 1))
    with pytest.raises(ValueError, match="floating-point"):
        qualiclip_simplified_loss(torch.ones(2, 3, dtype=torch.long), torch.rand(2, 3))
    with pytest.raises(ValueError, match=r"\(B, L\+1, P, 2\)"):
        qualiclip_full_loss(torch.rand(2, 3), torch.rand(2, 3))
    with pytest.raises(ValueError, match="last dim 3"):
        qualiclip_full_loss(torch.rand(2, 3, 1, 3), torch.rand(2, 3, 1, 3))
    with pytest.raises(ValueError, match="margins must be >= 0"):
        qualiclip_simplified_loss(torch.rand(2, 3), torch.rand(2, 3), margin=-0.1)


def test_level_ranking_accuracy_and_spread() -> None:
    # crop a ranks 2 of its 3 pairs right (0 > 1, 0 > 2, but 1 < 2); crop b all three
    scores = torch.stack((SCORES_A, SCORES_B))  # (2, 1, 3)
    assert level_ranking_accuracy(scores).item() == pytest.approx(5 / 6)
    expected = (SCORES_A.std() + SCORES_B.std()).item() / 2
    assert level_spread(scores).item() == pytest.approx(expected, abs=1e-6)
    constant = torch.full((4, 6), 0.3)  # a collapsed head: ties are never ranked correctly
    assert level_ranking_accuracy(constant).item() == 0.0
    assert level_spread(constant).item() == 0.0


def test_standardised_consistency_is_the_gap_in_units_of_the_level_spread() -> None:
    terms = qualiclip_simplified_loss(SCORES_A, SCORES_B, consistency_form="standardised")
    spread = (SCORES_A.std().item() + SCORES_B.std().item()) / 2  # each crop across its levels
    assert terms.consistency.item() == pytest.approx(0.5 / 3 / spread, abs=1e-6)
    sims_a, sims_b = torch.randn(3, 4, 2, 2), torch.randn(3, 4, 2, 2)
    full = qualiclip_full_loss(sims_a, sims_b, consistency_form="standardised")
    per_prompt = torch.cat((sims_a, sims_b)).std(dim=1).mean(dim=0)  # (P, 2)
    expected = ((sims_a - sims_b).abs() / per_prompt).sum(-1).mean()
    assert full.consistency.item() == pytest.approx(expected.item(), abs=1e-6)


@pytest.mark.parametrize("kind", ["simplified", "full"])
def test_only_the_absolute_form_pulls_scores_towards_a_constant(kind: str) -> None:
    # The derivative of the consistency term along "scale every score by k" at k = 1: the
    # absolute form pays less for any smaller scale, the standardised form is indifferent.
    torch.manual_seed(0)
    shape = (4, 6) if kind == "simplified" else (4, 6, 2, 2)
    loss = qualiclip_simplified_loss if kind == "simplified" else qualiclip_full_loss
    a = torch.randn(shape)
    b = a + 0.2 * torch.randn(shape)
    slopes = {}
    for form in ("absolute", "standardised"):
        k = torch.tensor(1.0, requires_grad=True)
        loss(a * k, b * k, ranking_weight=0.0, consistency_form=form).total.backward()
        slopes[form] = k.grad.item()
    assert slopes["absolute"] > 0.05
    assert slopes["standardised"] == pytest.approx(0.0, abs=1e-6)


def test_unknown_consistency_form_is_refused() -> None:
    with pytest.raises(ValueError, match="consistency form must be one of standardised, absolute"):
        qualiclip_simplified_loss(SCORES_A, SCORES_B, consistency_form="relative")
