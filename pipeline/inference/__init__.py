"""Inference: load a trained model (run directory or bundle), read inputs, predict, and explain with Grad-CAM."""

from pipeline.inference.inputs import IMAGE_SUFFIXES, InputItem, collect_inputs
from pipeline.inference.model import LoadedModel, load_model
from pipeline.inference.predict import Predictions, predict, usable_items, write_predictions
from pipeline.inference.saliency import grad_cam, write_saliency

__all__ = ["IMAGE_SUFFIXES", "InputItem", "LoadedModel", "Predictions", "collect_inputs", "grad_cam",
           "load_model", "predict", "usable_items", "write_predictions", "write_saliency"]
