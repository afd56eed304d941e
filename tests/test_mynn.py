"""fastnn.mynn.MyNN against the tutorial's MyNN (tests/tutorial.py, written from its equations).

Both networks start from the same np.random.seed, so they hold bitwise the same weights
before training; after it every weight and bias must agree within ATOL.
"""

import copy

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer

from fastnn.mynn import MyNN
from fastnn.network import layer_views

from . import tutorial

#: Largest absolute difference allowed between any weight or bias of the two networks.
#: Both compute the same sums in a different order (fastnn's reference: expit, a bias
#: gradient through a column of ones; its compiled kernels: their own summation order
#: and a polynomial exp), so they drift apart by rounding only.  Measured on the
#: development machine, for weights of size ~4: 1.8e-15 after 30 per-epoch steps,
#: 3.6e-15 between fit and the per-epoch loop after 50 epochs, 3.1e-15 between fit and
#: the tutorial after 300 epochs.  1e-10 leaves four orders of magnitude, and still
#: fails the first two tests when backprop's step is one part in a million too large.
ATOL = 1e-10

SEED = 0
NAMES = ("w1", "b1", "w2", "b2", "w3", "b3")


@pytest.fixture(scope="module")
def tutorial_data():
    """The tutorial's data, built as its script does: (x_train, y_train, x_val, y_val).

    The tutorial one-hot encodes with pandas' get_dummies (pandas is not installed
    here); LabelBinarizer gives the same table, as 0/1 integers where pandas 2 gives
    booleans (both accepted, see test_constructor_accepts_lists_and_boolean_one_hot).
    """
    digits = load_digits()
    onehot_target = LabelBinarizer().fit_transform(digits.target)
    x_train, x_val, y_train, y_val = train_test_split(digits.data, onehot_target,
                                                      test_size=0.1, random_state=20)
    return x_train / 16.0, np.array(y_train), x_val / 16.0, np.array(y_val)


def oracle(x, y, lr=0.5):
    """The tutorial's network with its initialisation: np.random.randn after seeding."""
    np.random.seed(SEED)
    w1 = np.random.randn(x.shape[1], 128)
    w2 = np.random.randn(128, 128)
    w3 = np.random.randn(128, y.shape[1])
    return tutorial.MyNN(x, y, w1, np.zeros((1, 128)), w2, np.zeros((1, 128)), w3,
                         np.zeros((1, y.shape[1])), lr=lr)


def seeded_mynn(x, y):
    """fastnn's MyNN, constructed as the tutorial's script does, after the same seeding."""
    np.random.seed(SEED)
    return MyNN(x, y)


def max_deviation(model, nn):
    """Largest absolute difference over the six weights and biases of two networks."""
    return max(np.abs(getattr(model, name) - getattr(nn, name)).max() for name in NAMES)


def printed_errors(capsys):
    """The losses printed as ``Error : <loss>`` lines since the last call, as floats."""
    lines = capsys.readouterr().out.splitlines()
    assert all(line.startswith("Error : ") for line in lines), lines[:3]
    return [float(line.removeprefix("Error : ")) for line in lines]


@pytest.fixture(scope="module")
def trained(tutorial_data):
    """(model, nn): fastnn's MyNN after fit(300) and the tutorial's after 300 epochs."""
    x, y, _, _ = tutorial_data
    nn = oracle(x, y).fit(300)
    model = seeded_mynn(x, y)
    model.fit(300)
    return model, nn


def test_tutorial_script_with_only_its_import_changed(tutorial_data, capsys):
    """The tutorial's loop, feedforward(); backprop(), gives the tutorial's weights and errors."""
    x, y, _, _ = tutorial_data
    nn = oracle(x, y)
    model = seeded_mynn(x, y)
    assert max_deviation(model, nn) == 0  # same start
    losses = []
    for _ in range(30):
        model.feedforward()
        model.backprop()
        nn.feedforward()
        nn.backprop()
        losses.append(nn.loss)
    assert max_deviation(model, nn) < ATOL
    np.testing.assert_allclose(printed_errors(capsys), losses, rtol=1e-12)
    assert losses[-1] < 0.5 * losses[0]  # it learnt: the two are not stuck alike


def test_fit_is_the_per_epoch_loop(tutorial_data, capsys):
    """fit(50, verbose=True) takes the loop's 50 steps and prints the loop's 50 errors."""
    x, y, _, _ = tutorial_data
    loop = seeded_mynn(x, y)
    for _ in range(50):
        loop.feedforward()
        loop.backprop()
    loop_errors = printed_errors(capsys)
    model = seeded_mynn(x, y)
    history = model.fit(50, verbose=True)
    assert max_deviation(model, loop) < ATOL
    np.testing.assert_allclose(printed_errors(capsys), loop_errors, rtol=1e-12)
    np.testing.assert_allclose(history.loss, loop_errors, rtol=1e-12)
    # a1..a3 are those of the final weights
    a1, a2, a3 = model.a1, model.a2, model.a3
    model.feedforward()
    for before, after in zip((a1, a2, a3), (model.a1, model.a2, model.a3)):
        np.testing.assert_array_equal(before, after)


def test_fit_matches_the_tutorial_after_300_epochs(trained):
    """Measured: 3.1e-15 at most, for weights of up to about 5 in magnitude."""
    model, nn = trained
    assert max_deviation(model, nn) < ATOL


def test_fit_uses_the_current_learning_rate(tutorial_data):
    x, y, _, _ = tutorial_data
    nn = oracle(x, y, lr=0.1).fit(5)
    model = seeded_mynn(x, y)
    model.lr = 0.1
    model.fit(5)
    assert max_deviation(model, nn) < ATOL


def test_predict_is_the_tutorials(trained, tutorial_data):
    """predict: one row gives its class, several rows a flat index, as in the tutorial."""
    model, nn = trained
    _, _, x_val, y_val = tutorial_data
    predictions = np.array([model.predict(row) for row in x_val])
    np.testing.assert_array_equal(predictions, [nn.predict(row)[0] for row in x_val])
    assert np.mean(predictions == y_val.argmax(axis=1)) > 0.9
    np.testing.assert_array_equal(model.x, x_val[-1])  # predict sets x, as the tutorial's
    nn.predict(x_val[:3])
    assert model.predict(x_val[:3]) == nn.a3.argmax()


def test_predict_classes_is_the_row_wise_argmax(trained, tutorial_data):
    model, nn = trained
    _, _, x_val, _ = tutorial_data
    classes = model.predict_classes(x_val)
    assert classes.shape == (len(x_val),)
    np.testing.assert_array_equal(classes, nn.predict(x_val))


def test_assigned_parameters_are_copied_into_the_flat_buffer(tutorial_data, trained):
    """Assigning the trained tutorial's six arrays makes the model compute its outputs."""
    x, y, _, _ = tutorial_data
    _, nn = trained
    model = seeded_mynn(x, y)
    for name in NAMES:
        setattr(model, name, getattr(nn, name))
    for (W, b), (nn_W, nn_b) in zip(layer_views(model.arch, model.params), nn.layers()):
        np.testing.assert_array_equal(W, nn_W)
        np.testing.assert_array_equal(b, nn_b)
    assert all(np.shares_memory(getattr(model, name), model.params) for name in NAMES)
    model.feedforward()
    nn.x = x
    nn.feedforward()
    np.testing.assert_allclose(model.a3, nn.a3, rtol=0, atol=ATOL)


def test_assigning_a_wrong_shape_is_refused(tutorial_data):
    x, y, _, _ = tutorial_data
    model = seeded_mynn(x, y)
    before = model.params.copy()
    with pytest.raises(ValueError, match=r"w1 must have shape \(64, 128\), got \(128, 64\)"):
        model.w1 = np.zeros((128, 64))
    with pytest.raises(ValueError, match=r"b3 must have shape \(1, 10\), got \(10,\)"):
        model.b3 = np.zeros(10)
    np.testing.assert_array_equal(model.params, before)


def test_in_place_updates_write_the_flat_buffer(tutorial_data):
    x, y, _, _ = tutorial_data
    model = seeded_mynn(x, y)
    model.b2 += 1.0
    np.testing.assert_array_equal(layer_views(model.arch, model.params)[1][1], np.ones(128))


def test_a_copy_keeps_its_own_consistent_buffer(tutorial_data):
    x, y, _, _ = tutorial_data
    model = seeded_mynn(x, y)
    clone = copy.deepcopy(model)
    clone.w1 += 1.0
    assert all(np.shares_memory(getattr(clone, name), clone.params) for name in NAMES)
    np.testing.assert_array_equal(clone.w1, model.w1 + 1.0)


def test_constructor_accepts_lists_and_boolean_one_hot(tutorial_data):
    x, y, _, _ = tutorial_data
    model = MyNN(x[:20].tolist(), y[:20].astype(bool))
    assert model.x.dtype == model.y.dtype == np.float64
    np.testing.assert_array_equal(model.y, y[:20])


@pytest.mark.parametrize("change, message", [
    (lambda x, y: (np.where(x == x.max(), np.nan, x), y), "NaN"),
    (lambda x, y: (x, y.argmax(axis=1)), "y must be one-hot, of shape"),
    (lambda x, y: (x, y + y[::-1]), "y must be one-hot: 0s and 1s"),
    (lambda x, y: (x[:-1], y), "inconsistent numbers of samples"),
    (lambda x, y: (x[0], y), "Expected 2D array"),
])
def test_constructor_rejects_bad_data(tutorial_data, change, message):
    x, y, _, _ = tutorial_data
    with pytest.raises(ValueError, match=message):
        MyNN(*change(x[:20], y[:20]))


def test_save_and_load_round_trip(tmp_path, capsys):
    import fastnn

    X, Y = np.random.default_rng(0).random((12, 5)), np.eye(3)[np.arange(12) % 3]
    np.random.seed(1)
    model = MyNN(X, Y)
    model.lr = 0.25
    model.fit(3, verbose=True)
    assert capsys.readouterr().out.count("Error :") == 3
    state = np.random.get_state()[1].copy()
    model.save(tmp_path / "mynn.npz")
    loaded = fastnn.load(tmp_path / "mynn.npz")
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # no draw on load
    assert isinstance(loaded, MyNN) and loaded.lr == 0.25
    np.testing.assert_array_equal(loaded.params, model.params)
    np.testing.assert_array_equal(loaded.predict_classes(X), model.predict_classes(X))
    model.fit(2)
    loaded.fit(2)
    np.testing.assert_array_equal(loaded.params, model.params)
