"""The demo's datasets: ones scikit-learn ships (nothing is downloaded), and the shift that
``--drift`` applies to them in new data versions and in traffic alike."""

from __future__ import annotations

#: Datasets scikit-learn ships (no download) and where the registry keeps them.
DATASETS = {
    "breast_cancer": "data/breast_cancer.csv",
    "diabetes": "data/diabetes.csv",
}


def dataset_frame(name: str):
    """The named scikit-learn dataset as a DataFrame with a ``target`` column."""
    from sklearn import datasets

    if name == "breast_cancer":
        return datasets.load_breast_cancer(as_frame=True).frame
    if name == "diabetes":
        return datasets.load_diabetes(as_frame=True, scaled=False).frame
    raise KeyError(f"unknown demo dataset {name!r}; known: {sorted(DATASETS)}")


#: Features shifted by ``drift`` (the dataset's first N: the ten "mean ..." columns of the
#: breast-cancer data, a third of its features, so the default ``drift_share`` of 0.3 trips)
#: and the factor applied.
DRIFT_FEATURES = 10
DRIFT_FACTOR = 1.6
