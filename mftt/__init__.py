"""mftt — the mean-field-type transformer: norms, attention kernels, MoE, law-weighted blocks, depth as time."""

from . import attention, block, feedforward, model, norms
from .attention import ATTENTION, MultiHeadAttention, causal_mask
from .block import Block
from .feedforward import ACTIVATIONS, FEEDFORWARD, FeedForward, MixtureOfExperts
from .model import MeanFieldTypeTransformer, MFTTConfig
from .norms import BALL_NORMS, NORMS, make_norm

__all__ = [
    "ACTIVATIONS",
    "ATTENTION",
    "BALL_NORMS",
    "Block",
    "FEEDFORWARD",
    "FeedForward",
    "MFTTConfig",
    "MeanFieldTypeTransformer",
    "MixtureOfExperts",
    "MultiHeadAttention",
    "NORMS",
    "attention",
    "block",
    "causal_mask",
    "feedforward",
    "make_norm",
    "model",
    "norms",
]
