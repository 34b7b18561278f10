"""Scoring: the detection methods' registry, N x N pair engine with min-ensembling, memory-bank baseline,
modality fusion, foreground filter."""

from mv3dad.scoring.background import foreground_mask, support_plane_mask
from mv3dad.scoring.fuse import FUSIONS, fuse
from mv3dad.scoring.knn import MemoryBank, build_memory, greedy_coreset, knn_score_views, nearest_distance
from mv3dad.scoring.methods import create_method, list_methods, load_method, register_method
from mv3dad.scoring.pairs import all_sources, default_sources, diagonal_sources, random_sources, score_views

__all__ = ["foreground_mask", "support_plane_mask", "fuse", "FUSIONS", "MemoryBank", "build_memory",
           "greedy_coreset", "knn_score_views", "nearest_distance", "all_sources", "default_sources",
           "diagonal_sources", "random_sources", "score_views", "create_method", "list_methods", "load_method",
           "register_method"]
