"""Frozen feature extractors (image: DINOv2 ViT-B/14; depth: DINO-Depth ViT-S/14; weight-free: ``patch14``,
``geometric``, ``texture``) and their preprocessing."""

from mv3dad.encoders.dinov3 import DinoV3Config, DinoV3ViT
from mv3dad.encoders.preprocess import (PREPROCESS_MODES, DepthScaling, SquareFit, depth_validity_input,
                                        preprocess_depth, preprocess_depth_modmap, preprocess_image,
                                        preprocess_image_modmap, scale_depth, to_original, to_original_valid,
                                        token_validity)
from mv3dad.encoders.vit import (DEFAULT_DEPTH_ENCODER, DEFAULT_IMAGE_ENCODER, PRECISIONS, Encoder, EncoderError,
                                 EncoderSpec, bf16_agreement, bf16_supported, build_encoder, check_token_grids,
                                 list_encoders, load_encoder, load_weights, register_encoder, save_encoder,
                                 set_precision)
from mv3dad.encoders.release import load_authors_release, save_as_authors_release  # noqa: E402  (after vit)

__all__ = ["DEFAULT_DEPTH_ENCODER", "DEFAULT_IMAGE_ENCODER", "PRECISIONS", "PREPROCESS_MODES", "DepthScaling",
           "DinoV3Config", "DinoV3ViT", "Encoder", "EncoderError", "EncoderSpec", "SquareFit", "bf16_agreement",
           "bf16_supported", "build_encoder", "check_token_grids", "depth_validity_input", "list_encoders",
           "load_authors_release", "load_encoder", "load_weights", "preprocess_depth", "preprocess_depth_modmap",
           "preprocess_image", "preprocess_image_modmap", "register_encoder", "save_as_authors_release",
           "save_encoder", "scale_depth", "set_precision", "to_original", "to_original_valid", "token_validity"]
