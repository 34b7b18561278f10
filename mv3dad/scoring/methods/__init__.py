"""Detection methods, one module each, registered by name (:func:`register_method`, :func:`list_methods`)."""

from mv3dad.scoring.methods import deviation, knn, mapping  # noqa: F401  (registration at import)
from mv3dad.scoring.methods.base import (Features, FitContext, Method, ScoreOptions, ViewScores, create_method,
                                         list_methods, load_method, method_class, method_preset, register_method)

__all__ = ["Features", "FitContext", "Method", "ScoreOptions", "ViewScores", "create_method", "list_methods",
           "load_method", "method_class", "method_preset", "register_method"]
