"""Frozen feature extractors (image: DINOv2 ViT-B/14; depth: DINO-Depth ViT-S/14) and their preprocessing."""

from mv3dad.encoders.preprocess import (DepthScaling, SquareFit, preprocess_depth, preprocess_image, scale_depth,
                                        to_original, token_validity)
from mv3dad.encoders.vit import (DEFAULT_DEPTH_ENCODER, DEFAULT_IMAGE_ENCODER, Encoder, EncoderError, EncoderSpec,
                                 build_encoder, check_token_grids, list_encoders, load_encoder, load_weights,
                                 register_encoder, save_encoder)

__all__ = ["DEFAULT_DEPTH_ENCODER", "DEFAULT_IMAGE_ENCODER", "DepthScaling", "Encoder", "EncoderError",
           "EncoderSpec", "SquareFit", "build_encoder", "check_token_grids", "list_encoders", "load_encoder",
           "load_weights", "preprocess_depth", "preprocess_image", "register_encoder", "save_encoder",
           "scale_depth", "to_original", "token_validity"]
