"""Engine: MONAI trainers and evaluators built from a validated configuration."""

from pipeline.engine.evaluate import evaluate_run, load_run_config, predict_split
from pipeline.engine.rundir import check_resumable, create_run_dir, find_run_dir
from pipeline.engine.train import TrainResult, train

__all__ = ["TrainResult", "check_resumable", "create_run_dir", "evaluate_run", "find_run_dir", "load_run_config",
           "predict_split", "train"]
