"""class_weight on Sequential.fit (Keras) and FastMLPClassifier (scikit-learn): the same
weights, bitwise, as passing each row's class weight times its sample weight."""

import warnings

import numpy as np
import pytest
from sklearn.utils.class_weight import compute_sample_weight

from fastnn import FastMLPClassifier, Sequential
from fastnn.models import Dense

RNG = np.random.default_rng(0)
X = RNG.standard_normal((70, 4))
LABELS = RNG.integers(0, 3, 70)
SAMPLE_WEIGHT = RNG.random(70) + 0.5


def sequential_params(y, units, head, **fit_kwargs):
    model = Sequential([Dense(6, input_dim=4, activation="tanh"), Dense(units, activation=head)],
                       random_state=0)
    model.compile(optimizer="adam",
                  loss="categorical_crossentropy" if head == "softmax" else "binary_crossentropy")
    model.fit(X, y, epochs=3, batch_size=16, verbose=0, **fit_kwargs)
    return model.params


@pytest.mark.parametrize("class_weight", ["balanced", {0: 3.0, 2: 0.25}])
@pytest.mark.parametrize("with_sample_weight", [False, True])
def test_sequential_equals_sample_weights(class_weight, with_sample_weight):
    base = SAMPLE_WEIGHT if with_sample_weight else None
    explicit = compute_sample_weight(class_weight, LABELS) * (1 if base is None else base)
    y = np.eye(3)[LABELS]
    a = sequential_params(y, 3, "softmax", class_weight=class_weight, sample_weight=base)
    b = sequential_params(y, 3, "softmax", sample_weight=explicit)
    assert a.tobytes() == b.tobytes()


def test_sequential_one_sigmoid_unit():
    y = (LABELS > 0).astype(float)
    a = sequential_params(y, 1, "sigmoid", class_weight={0: 2.0, 1: 1.0})
    b = sequential_params(y, 1, "sigmoid", sample_weight=np.where(y > 0, 1.0, 2.0))
    assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
@pytest.mark.parametrize("class_weight", ["balanced", {"b": 4.0}])
def test_classifier_equals_sample_weights(class_weight, solver):
    y = np.array(["a", "b", "c"])[LABELS]
    explicit = compute_sample_weight(class_weight, y) * SAMPLE_WEIGHT
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = FastMLPClassifier((6,), solver=solver, max_iter=4, random_state=0,
                              class_weight=class_weight).fit(X, y, sample_weight=SAMPLE_WEIGHT)
        b = FastMLPClassifier((6,), solver=solver, max_iter=4, random_state=0).fit(
            X, y, sample_weight=explicit)
    for u, v in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        assert u.tobytes() == v.tobytes()


def test_unseen_class_and_other_errors():
    y = np.eye(3)[LABELS]
    with pytest.raises(ValueError, match=r"class_weight names \[7\], which the targets do not "
                                         r"hold; their classes are \[0, 1, 2\]"):
        sequential_params(y, 3, "softmax", class_weight={7: 1.0})
    with pytest.raises(ValueError, match="class_weight names \\['z'\\]"):
        FastMLPClassifier(class_weight={"z": 1.0}).fit(X, np.array(["a", "b", "c"])[LABELS])
    with pytest.raises(ValueError, match="finite number >= 0"):
        sequential_params(y, 3, "softmax", class_weight={0: -1.0})
    with pytest.raises(ValueError, match="multilabel"):
        FastMLPClassifier(class_weight="balanced").fit(X, np.eye(3)[LABELS].astype(int))
    model = Sequential([Dense(2, input_dim=4)], random_state=0).compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match="softmax output or a single sigmoid unit"):
        model.fit(X, RNG.standard_normal((70, 2)), class_weight="balanced", verbose=0)


def test_classifier_class_weight_survives_save_and_load(tmp_path):
    """Integer class labels as dict keys come back as integers (not JSON's strings)."""
    from fastnn import load

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = FastMLPClassifier((6,), max_iter=3, random_state=0, warm_start=True,
                                class_weight={0: 2.0, 2: 0.5}).fit(X, LABELS)
        clf.save(tmp_path / "clf.npz")
        loaded = load(tmp_path / "clf.npz")
        assert loaded.get_params()["class_weight"] == {0: 2.0, 2: 0.5}
        for model in (clf, loaded):
            model.fit(X, LABELS)
    for u, v in zip(clf.coefs_, loaded.coefs_):
        assert u.tobytes() == v.tobytes()
