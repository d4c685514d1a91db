"""The train/test split, identical for the candidate and the production model.

Both the training and the evaluation task call :func:`split_frame` on the same validated
snapshot with the same seed, so the held-out rows are the same ones without passing
indices around; comparing two models on different rows would make the gate a lottery.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from conveyor.config import PipelineConfig


def split_frame(frame: pd.DataFrame, config: PipelineConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ``frame`` into (train, test) frames, stratified for classification.

    Parameters
    ----------
    frame : DataFrame of shape (n_samples, n_columns)
        The validated snapshot, target column included.
    config : PipelineConfig
        Supplies the target, ``split.test_size`` and ``split.seed``.
    """
    from sklearn.model_selection import train_test_split

    stratify = None
    if config.task == "classification":
        counts = frame[config.target].value_counts()
        # Stratifying needs two rows per class in each part; fall back quietly otherwise.
        if len(counts) > 1 and counts.min() >= 2:
            stratify = frame[config.target]
    train, test = train_test_split(
        frame,
        test_size=config.split.test_size,
        random_state=config.split.seed,
        stratify=stratify,
    )
    return train, test


def features_and_target(
    frame: pd.DataFrame, config: PipelineConfig
) -> tuple[pd.DataFrame, pd.Series]:
    """Feature columns (in config order) and the target of ``frame``."""
    return frame[config.feature_columns], frame[config.target]
