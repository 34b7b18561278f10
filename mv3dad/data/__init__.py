"""The scene model and every on-disk layout (mv3dad, SiM3D, pretraining corpora)."""

from mv3dad.data.layout import (CategoryData, Dataset, SampleSequence, open_dataset, read_sample,
                                write_benchmark_info, write_sample)
from mv3dad.data.rig import Rig, builtin_rig, hemisphere_rig, load_rig, save_rig
from mv3dad.data.scene import DataError, Sample, View
from mv3dad.data.sim3d import SIM3D_CLASSES, open_sim3d

__all__ = ["CategoryData", "DataError", "Dataset", "Rig", "SIM3D_CLASSES", "Sample", "SampleSequence", "View",
           "builtin_rig", "hemisphere_rig", "load_rig", "open_dataset", "open_sim3d", "read_sample", "save_rig",
           "write_benchmark_info", "write_sample"]
