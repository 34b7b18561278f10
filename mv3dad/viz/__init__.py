"""Pictures of score volumes (PyVista, off-screen)."""

from mv3dad.viz.render import RenderConfig, default_threshold, load_object, render_volume

__all__ = ["RenderConfig", "default_threshold", "load_object", "render_volume"]
