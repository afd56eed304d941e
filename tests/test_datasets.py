"""The command line's data layer (fastnn.datasets): reading, task, split, scaling, encoding."""

import numpy as np
import pytest

from fastnn.datasets import (DataError, DataSource, decode, encode_labels, load_dataset,
                             load_source, prepare, transform)


def write(path, text):
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("text, target, X0, y", [
    ("a,b,label\n1,2,x\n3,4,y\n", "label", [1, 2], ["x", "y"]),   # header, target by name
    ("a,b,label\n1,2,x\n3,4,y\n", "-1", [1, 2], ["x", "y"]),      # ... or by index
    ("0;1.5;2\n1;2.5;3\n", "0", [1.5, 2], [0, 1]),                # no header, ';'
    ("x\ty\n0.5\t1.25\n1.5\t2.5\n", "y", [0.5], [1.25, 2.5]),     # tab, numeric target
])
def test_csv_header_delimiter_and_target(tmp_path, text, target, X0, y):
    raw = load_source(DataSource(path=write(tmp_path / "d.csv", text), target=target))
    np.testing.assert_array_equal(raw.X[0], X0)
    assert raw.y.tolist() == y
    assert raw.X.dtype == np.float64


def test_task_inference(tmp_path):
    labels = DataSource(path=write(tmp_path / "c.csv", "a,y\n1,0\n2,1\n3,2\n"), target="y")
    assert load_source(labels).task == "classification"      # integral numbers: labels
    assert load_source(labels).y.dtype == np.int64
    values = DataSource(path=write(tmp_path / "r.csv", "a,y\n1,0.5\n2,1\n3,2\n"), target="y")
    assert load_source(values).task == "regression"
    forced = DataSource(path=labels.path, target="y", task="regression")
    assert load_source(forced).task == "regression"
    with pytest.raises(DataError, match="text targets cannot be regressed"):
        load_source(DataSource(path=write(tmp_path / "t.csv", "a,y\n1,u\n2,v\n"), target="y",
                               task="regression"))


def test_split_is_stratified_and_scaled_with_training_statistics():
    data = load_dataset("wine")
    counts = lambda y: np.bincount(y, minlength=3) / len(y)  # noqa: E731
    full = counts(np.concatenate([data.y_train, data.y_test]))
    np.testing.assert_allclose(counts(data.y_test), full, atol=0.06)
    # standardised with the training split's statistics only
    np.testing.assert_allclose(data.X_train.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(data.X_train.std(axis=0), 1, atol=1e-12)
    assert np.abs(data.X_test.mean(axis=0)).max() > 1e-3
    assert data.preprocessing["inputs"]["kind"] == "standardize"
    # digits: divided by 16, as the tutorial
    digits = load_dataset("digits", stratify=False)
    assert digits.preprocessing["inputs"] == {"kind": "divide", "by": 16.0}
    assert digits.X_train.max() == 1.0 and digits.X_test.shape == (180, 64)


def test_regression_targets_are_standardised_and_decoded_back():
    raw = load_source(DataSource(dataset="synthetic", task="regression", samples=200,
                                 features=5, seed=3))
    data = prepare(raw, head="identity")
    np.testing.assert_allclose(data.Y_train.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(data.Y_train.std(axis=0), 1, atol=1e-12)
    np.testing.assert_allclose(decode(data.preprocessing, data.Y_test)[:, 0], data.y_test,
                               rtol=1e-12)


def test_labels_encoded_in_sorted_order_and_decoded():
    classes = np.array(["cat", "dog", "eel"])
    Y = encode_labels(["eel", "cat", "eel"], classes)
    np.testing.assert_array_equal(Y, [[0, 0, 1], [1, 0, 0], [0, 0, 1]])
    preprocessing = {"classes": classes.tolist()}
    assert decode(preprocessing, Y).tolist() == ["eel", "cat", "eel"]
    # a sigmoid head on two classes: one column, "is classes[1]"
    np.testing.assert_array_equal(encode_labels([0, 1, 1], np.array([0, 1]), "sigmoid"),
                                  [[0], [1], [1]])
    assert decode({"classes": [0, 1]}, np.array([[0.2], [0.7]])).tolist() == [0, 1]
    with pytest.raises(DataError, match="not among the model's classes"):
        encode_labels(["fox"], classes)


def test_transform_applies_a_saved_preprocessing():
    data = load_dataset("iris")
    X, Y = transform(data.preprocessing, data.X_train * 0 + np.asarray(
        data.preprocessing["inputs"]["mean"]), data.y_train)
    np.testing.assert_allclose(X, 0, atol=1e-12)
    np.testing.assert_array_equal(Y, data.Y_train)
    with pytest.raises(DataError, match="5 features; the model was trained on 4"):
        transform(data.preprocessing, np.zeros((2, 5)))


def test_fingerprint_follows_the_data():
    a, b = load_dataset("iris"), load_dataset("iris")
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != load_dataset("iris", random_state=1).fingerprint()


@pytest.mark.parametrize("source, message", [
    (DataSource(dataset="synthetic", classes=40, features=4), "needs at least 7 features"),
    (DataSource(dataset="nope"), "unknown data set 'nope'"),
    (DataSource(task="regression"), "digits is a classification data set"),
])
def test_bad_sources(source, message):
    with pytest.raises(DataError, match=message):
        load_source(source)
