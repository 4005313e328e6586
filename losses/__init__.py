"""Training objectives: the QualiCLIP consistency and ranking losses."""

from losses.qualiclip import LossTerms, qualiclip_full_loss, qualiclip_simplified_loss

__all__ = ["LossTerms", "qualiclip_full_loss", "qualiclip_simplified_loss"]
