"""Models: Swin encoder, HyperIQA head, Swin-HyperIQA, CLIP prompt anchors, pretraining heads."""

from models.clip_anchors import (
    QUALICLIP_PROMPT_PAIRS,
    TINY_CLIP_MODEL,
    build_tiny_clip,
    embed_prompt_pairs,
    encode_prompt_pairs,
)
from models.errors import EncoderMismatchError, WeightsUnavailableError
from models.hyper_net import HyperIQAHead
from models.pretrain_heads import ClipQualityHead, ScalarQualityHead, build_pretrain_head
from models.pretrain_model import (
    QualityPretrainModel,
    make_encoder_checkpoint,
    pretrain_model_from_checkpoint,
)
from models.swin_encoder import MODEL_SIZES, SwinEncoder, build_encoder, canonical_model_size
from models.swin_hyperiqa import (
    SwinHyperIQA,
    build_swin_hyperiqa,
    load_encoder,
    model_from_checkpoint,
)

__all__ = [
    "MODEL_SIZES",
    "QUALICLIP_PROMPT_PAIRS",
    "TINY_CLIP_MODEL",
    "ClipQualityHead",
    "EncoderMismatchError",
    "HyperIQAHead",
    "QualityPretrainModel",
    "ScalarQualityHead",
    "SwinEncoder",
    "SwinHyperIQA",
    "WeightsUnavailableError",
    "build_encoder",
    "build_pretrain_head",
    "build_swin_hyperiqa",
    "build_tiny_clip",
    "canonical_model_size",
    "embed_prompt_pairs",
    "encode_prompt_pairs",
    "load_encoder",
    "make_encoder_checkpoint",
    "model_from_checkpoint",
    "pretrain_model_from_checkpoint",
]
