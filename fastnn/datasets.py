"""The small classification data sets of the command line, split and encoded.

Every data set ships with scikit-learn, so nothing is downloaded.  The split is
the tutorial's: ``train_test_split(test_size=0.1, random_state=20)``.

Inputs are scaled to a range the default sigmoid network trains well on:

* ``digits``: pixel intensities 0..16 divided by 16 (so the inputs lie in [0, 1]);
* ``iris``, ``breast_cancer``, ``wine``: standardised with a ``StandardScaler``
  fitted on the training split only, so no test statistics leak into training.

Targets are one-hot encoded with ``OneHotEncoder`` (fitted on the training
labels): one column per class, also for two classes, as a softmax head needs.
A sigmoid head on a two-class problem gets the single column "is the second
class" instead.
"""

from dataclasses import dataclass

import numpy as np
from sklearn import datasets as _sk_datasets
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import OneHotEncoder, StandardScaler

#: Data set name -> scikit-learn loader.
LOADERS = {
    "digits": _sk_datasets.load_digits,
    "iris": _sk_datasets.load_iris,
    "breast_cancer": _sk_datasets.load_breast_cancer,
    "wine": _sk_datasets.load_wine,
}

#: The tutorial's split.
TEST_SIZE = 0.1
SPLIT_SEED = 20


@dataclass
class Dataset:
    """A split, scaled and encoded classification data set.

    Attributes
    ----------
    name : str
    X_train : ndarray of shape (n_train, n_features), float64
    X_test : ndarray of shape (n_test, n_features), float64
    Y_train : ndarray of shape (n_train, n_outputs), float64
        Encoded targets (one-hot, or one 0/1 column, see ``encode_targets``).
    Y_test : ndarray of shape (n_test, n_outputs), float64
    y_train : ndarray of shape (n_train,)
        Class labels.
    y_test : ndarray of shape (n_test,)
    classes : ndarray of shape (n_classes,)
        The labels in column order of ``Y_train``.
    preprocessing : dict
        How the inputs were scaled, JSON-serialisable, so a saved model can be
        applied to new data the same way.
    """

    name: str
    X_train: np.ndarray
    X_test: np.ndarray
    Y_train: np.ndarray
    Y_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    classes: np.ndarray
    preprocessing: dict

    @property
    def n_features(self):
        return self.X_train.shape[1]

    @property
    def n_outputs(self):
        return self.Y_train.shape[1]


def load_dataset(name="digits", *, head="softmax", test_size=TEST_SIZE, random_state=SPLIT_SEED):
    """Load data set ``name``, split it, scale the inputs and encode the targets.

    Parameters
    ----------
    name : {"digits", "iris", "breast_cancer", "wine"}
    head : str
        Output head the targets are encoded for (see ``encode_targets``).
    test_size : float or int
        Passed to ``sklearn.model_selection.train_test_split``.
    random_state : int
        Seed of the split (the tutorial's 20 by default).

    Returns
    -------
    Dataset
    """
    if name not in LOADERS:
        raise ValueError(f"unknown data set {name!r}; choose from {', '.join(LOADERS)}")
    bunch = LOADERS[name]()
    X_train, X_test, y_train, y_test = train_test_split(
        bunch.data, bunch.target, test_size=test_size, random_state=random_state
    )
    if name == "digits":
        X_train, X_test = X_train / 16.0, X_test / 16.0
        preprocessing = {"kind": "divide", "by": 16.0}
    else:
        scaler = StandardScaler().fit(X_train)
        X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
        preprocessing = {"kind": "standardize", "mean": scaler.mean_.tolist(),
                         "scale": scaler.scale_.tolist()}
    Y_train, Y_test, classes = encode_targets(y_train, y_test, head)
    return Dataset(name, X_train, X_test, Y_train, Y_test, y_train, y_test, classes,
                   preprocessing)


def encode_targets(y_train, y_test, head="softmax"):
    """One-hot encode class labels for an output head.

    Returns ``(Y_train, Y_test, classes)``: float64 arrays of shape (n, n_classes),
    except for a ``"sigmoid"`` head on two classes, which gets shape (n, 1) (1 for
    ``classes[1]``).  The encoder is fitted on ``y_train``; a label seen only in
    ``y_test`` raises ValueError.
    """
    encoder = OneHotEncoder(sparse_output=False, dtype=np.float64)
    Y_train = encoder.fit_transform(np.asarray(y_train).reshape(-1, 1))
    Y_test = encoder.transform(np.asarray(y_test).reshape(-1, 1))
    classes = encoder.categories_[0]
    if head == "sigmoid" and len(classes) == 2:
        Y_train, Y_test = Y_train[:, 1:], Y_test[:, 1:]
    return Y_train, Y_test, classes


def predict_labels(output, classes):
    """Class labels from head outputs of shape (n_samples, n_outputs).

    One output column means a sigmoid head on two classes (threshold 0.5);
    otherwise the class of the largest output wins.
    """
    output = np.asarray(output)
    if output.shape[1] == 1:
        return classes[(output[:, 0] > 0.5).astype(np.intp)]
    return classes[np.argmax(output, axis=1)]
