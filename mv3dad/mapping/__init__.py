"""Mapping: FiLM view modulators + crossmodal mappers (ModMap / CFM / CPIR), their training and checkpoints."""

from mv3dad.mapping.checkpoint import check_meta, load_checkpoint, read_record, save_checkpoint
from mv3dad.mapping.film import FiLM
from mv3dad.mapping.fit import PRESETS, FeatureSet, FitConfig, fit_feature_sets, fit_mapping, preset_config
from mv3dad.mapping.mappers import Mapper, build_mapper, list_mappers, register_mapper
from mv3dad.mapping.model import ModMapModel

__all__ = ["FiLM", "Mapper", "build_mapper", "list_mappers", "register_mapper", "ModMapModel", "FitConfig",
           "FeatureSet", "PRESETS", "preset_config", "fit_mapping", "fit_feature_sets", "save_checkpoint",
           "load_checkpoint", "read_record", "check_meta"]
