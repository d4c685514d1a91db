"""The train/test split, identical for the candidate and the production model.

Both the training and the evaluation task call :func:`split_frame` on the same validated
snapshot with the same seed, so the held-out rows are the same ones without passing
indices around; comparing two models on different rows would make the gate a lottery.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from conveyor.config import PipelineConfig


def split_indices(frame: pd.DataFrame, config: PipelineConfig) -> tuple[np.ndarray, np.ndarray]:
    """Row positions of the (train, test) parts, stratified for classification.

    Parameters
    ----------
    frame : DataFrame of shape (n_samples, n_columns)
        The validated snapshot, target column included.
    config : PipelineConfig
        Supplies the target, ``split.test_size`` and ``split.seed``.
    """
    import numpy as np
    from sklearn.model_selection import train_test_split

    stratify = None
    if config.task == "classification":
        counts = frame[config.target].value_counts()
        # Stratifying needs two rows per class in each part; fall back quietly otherwise.
        if len(counts) > 1 and counts.min() >= 2:
            stratify = frame[config.target].to_numpy()
    train, test = train_test_split(
        np.arange(len(frame)),
        test_size=config.split.test_size,
        random_state=config.split.seed,
        stratify=stratify,
    )
    return train, test


def split_frame(frame: pd.DataFrame, config: PipelineConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ``frame`` into (train, test) frames (see :func:`split_indices`)."""
    train, test = split_indices(frame, config)
    return frame.iloc[train], frame.iloc[test]


def split_part(
    frame: pd.DataFrame, config: PipelineConfig, part: Literal["train", "test"]
) -> pd.DataFrame:
    """Only one part of :func:`split_frame`: the same rows, without copying the other
    part (the training task needs no test rows, the evaluation task no training rows)."""
    train, test = split_indices(frame, config)
    return frame.iloc[train if part == "train" else test]


def features_and_target(
    frame: pd.DataFrame, config: PipelineConfig
) -> tuple[pd.DataFrame, pd.Series]:
    """Feature columns (in config order) and the target of ``frame``."""
    return frame[config.feature_columns], frame[config.target]
