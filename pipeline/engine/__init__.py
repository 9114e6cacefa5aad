"""Engine: MONAI trainers and evaluators built from a validated configuration, and the run directories they write."""

from pipeline.engine.evaluate import evaluate_run, load_run_config, predict_split
from pipeline.engine.rundir import RunDir, RunSummary, check_resumable, create_run_dir, find_run_dir
from pipeline.engine.train import TrainResult, train

__all__ = ["RunDir", "RunSummary", "TrainResult", "check_resumable", "create_run_dir", "evaluate_run", "find_run_dir",
           "load_run_config", "predict_split", "train"]
