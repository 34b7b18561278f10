"""The synthetic SiM3D-style benchmark generator (``mv3dad synth``) and the synthetic depth corpus.

Modules: ``shapes`` (procedural categories, user meshes), ``textures`` and ``materials`` (appearance),
``render`` (open3d ray casting + shading), ``artefacts`` (scanner artefacts), ``defects`` (defects + ground
truth), ``generate`` (orchestration, :class:`SynthConfig`), ``preview`` (contact sheet), ``corpus``
(endless depth maps for pretraining).
"""

from mv3dad.synth.generate import SynthConfig, generate_benchmark

__all__ = ["SynthConfig", "generate_benchmark"]
