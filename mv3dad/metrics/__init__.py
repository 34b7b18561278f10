"""Anomaly detection metrics for 2D maps and 3D volumes: I-AUROC, P-AUROC / V-AUROC and (V-)AUPRO.

See docs/metrics.md for the definitions (evaluated elements, regions, exact and MVTec-compatible modes).
"""

from mv3dad.metrics.pro import DEFAULT_LIMITS, ProCurve, aupro, aupro_at, pro_curve
from mv3dad.metrics.roc import auroc, instance_scores, pixel_auroc
from mv3dad.metrics.evaluate import EVALUATE_LIMITS, MetricsConfig, aupro_key, evaluate
from mv3dad.metrics.inputs import EVALUATE_MODES
from mv3dad.metrics.localisation import (OutlineShare, TwinContrast, argmax_on_defect, oracle_ceiling,
                                         outline_share, twin_contrast)

__all__ = ["DEFAULT_LIMITS", "EVALUATE_LIMITS", "EVALUATE_MODES", "MetricsConfig", "OutlineShare", "ProCurve",
           "TwinContrast", "argmax_on_defect", "aupro", "aupro_at", "aupro_key", "auroc", "evaluate",
           "instance_scores", "oracle_ceiling", "outline_share", "pixel_auroc", "pro_curve", "twin_contrast"]
