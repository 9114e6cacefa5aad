"""Engine: MONAI trainers and evaluators built from a validated configuration."""

from pipeline.engine.evaluate import evaluate_run, load_run_config, predict_split
from pipeline.engine.train import TrainResult, create_run_dir, train

__all__ = ["TrainResult", "create_run_dir", "evaluate_run", "load_run_config", "predict_split", "train"]
