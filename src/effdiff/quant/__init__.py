"""Quantization (survey §3.4.1): a fake-quant core (quantizer, observers, removable layer hooks),
timestep-aware post-training quantization registered as Techniques (``ptq``, ``ptq-naive``; BRECQ /
AdaRound rounding, PTQD), SVDQuant (``svdquant``), EfficientDM-style LoRA quantization-aware
fine-tuning (``qat``) and a real int8 execution path (``int8``). See docs/compression.md."""
from .quantizer import QuantSpec, qparams, quantize, dequantize, fake_quant
from .observers import OBSERVERS
from .layers import ActQuant, QuantHook, apply_weight_quant, quant_layers, weight_qparams
from .calibration import calibrate, scheme_steps
from .ptq import PTQConfig, NaivePTQConfig, apply_ptq, prepare_ptq
from .stats import QuantStats
from .int8 import Int8Config, Int8Linear, Int8Conv2d, apply_int8, held_bytes
from .svdquant import SVDQuantConfig, SVDQuantHook, SVDQuantStats, apply_svdquant, decompose, prepare_svdquant, smoothing
from .qat import QATConfig, QATSession, TemporalLSQ, apply_qat, lsq, prepare_qat

__all__ = ["QuantSpec", "qparams", "quantize", "dequantize", "fake_quant", "OBSERVERS", "ActQuant", "QuantHook",
           "apply_weight_quant", "quant_layers", "weight_qparams", "calibrate", "scheme_steps", "PTQConfig",
           "NaivePTQConfig", "apply_ptq", "prepare_ptq", "QuantStats", "Int8Config", "Int8Linear", "Int8Conv2d",
           "apply_int8", "held_bytes", "SVDQuantConfig", "SVDQuantHook", "SVDQuantStats", "apply_svdquant", "decompose",
           "prepare_svdquant", "smoothing", "QATConfig", "QATSession", "TemporalLSQ", "apply_qat", "lsq", "prepare_qat"]
