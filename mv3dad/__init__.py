"""mv3dad: multiview, multimodal 3D anomaly detection of industrial parts."""

__version__ = "0.1.0"
