"""The Keras-like Sequential model: the tutorial's Keras script, Keras's summary table,
identity with ``trainer.fit``, exact save / load / resume, and clear errors."""

import os
import signal

import numpy as np
import pytest

import fastnn
from fastnn import reference, trainer
from fastnn.models import Adadelta, Adam, Dense, EarlyStopping, Sequential
from fastnn.network import Architecture, init_params, layer_views
from fastnn.optimizers import SGD, Optimizer, RMSprop, make_optimizer
from fastnn.schedules import StepDecay

from .conftest import assert_close, make_targets


def tutorial_model(random_state=0, **kwargs):
    """The tutorial's Keras network, 64-128-128-10, compiled as the tutorial compiles it."""
    model = Sequential(random_state=random_state, **kwargs)
    model.add(Dense(128, input_dim=64, activation="sigmoid"))
    model.add(Dense(128, activation="sigmoid"))
    model.add(Dense(10, activation="softmax"))
    return model


def small_problem(rng, head="softmax", n=120, n_features=7, n_outputs=4):
    X = rng.standard_normal((n, n_features))
    Y = make_targets(rng, head, n, n_outputs)
    return X, Y


# ---------------------------------------------------------------------------
# The tutorial
# ---------------------------------------------------------------------------


def test_tutorial_keras_script_on_digits(digits, capsys):
    """The tutorial's "easy way", imports changed, all 50 epochs (about half a second)."""
    x_train, x_test, y_train, y_test = digits

    model = Sequential(random_state=0)
    model.add(Dense(128, input_dim=x_train.shape[1], activation="sigmoid"))
    model.add(Dense(128, activation="sigmoid"))
    model.add(Dense(10, activation="softmax"))
    model.compile(optimizer=Adadelta(), loss="categorical_crossentropy",
                  metrics=["categorical_accuracy"])
    history = model.fit(x_train, y_train, epochs=50, batch_size=64, threads=1)
    scores = model.evaluate(x_test, y_test)
    model.summary()

    assert history is model.history and history.epochs == 50
    assert history.history["loss"][-1] < history.history["loss"][0] / 10
    assert history.history["accuracy"][-1] > 0.95
    loss, accuracy = scores
    assert loss < 0.2 and accuracy > 0.95
    assert model.metrics_names == ["loss", "categorical_accuracy"]
    assert "Total params: 26,122" in capsys.readouterr().out


KERAS_SUMMARY = """\
Model: "sequential"
_________________________________________________________________
Layer (type)                 Output Shape              Param #
=================================================================
dense (Dense)                (None, 128)               8320
_________________________________________________________________
dense_1 (Dense)              (None, 128)               16512
_________________________________________________________________
dense_2 (Dense)              (None, 10)                1290
=================================================================
Total params: 26,122
Trainable params: 26,122
Non-trainable params: 0
_________________________________________________________________"""


def test_summary_is_keras_table():
    """tf.keras 2's table for the tutorial's network (Keras pads every row to 65 columns)."""
    lines = []
    tutorial_model().summary(print_fn=lines.append)
    assert [line.rstrip() for line in lines] == KERAS_SUMMARY.splitlines()
    assert all(len(line) == 65 for line in lines[1:9])
    # Named layers and an input width known only after build.
    model = Sequential([Dense(3, activation="relu", name="hidden"), Dense(1)], name="reg")
    with pytest.raises(ValueError, match="not yet been built"):
        model.summary()
    lines = []
    model.build(5).summary(print_fn=lines.append)
    assert lines[0] == 'Model: "reg"'
    assert lines[4].split() == ["hidden", "(Dense)", "(None,", "3)", "18"]
    assert lines[6].split() == ["dense", "(Dense)", "(None,", "1)", "4"]
    assert lines[8] == "Total params: 22"
    assert model.count_params() == 22 == model.arch.n_params


# ---------------------------------------------------------------------------
# Identity with trainer.fit, evaluate against the trainer's loss
# ---------------------------------------------------------------------------

CONFIGS = [
    pytest.param(dict(layers=[Dense(9, activation="sigmoid"), Dense(4, activation="softmax")],
                      dtype="float32", init="glorot_uniform"),
                 dict(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"]),
                 dict(batch_size=32), id="softmax-adam-float32"),
    pytest.param(dict(layers=[Dense(8, activation="tanh"), Dense(5, activation="relu"),
                              Dense(4, activation="sigmoid")], dtype="float64", init="he_normal"),
                 dict(optimizer=RMSprop(lr=0.01), loss="binary_crossentropy", l2=1e-3,
                      schedule="invscaling"),
                 dict(batch_size=17, validation_split=0.2), id="sigmoid-rmsprop-float64"),
    pytest.param(dict(layers=[Dense(6, activation="relu"), Dense(4)], dtype="float32",
                      init="normal"),
                 dict(optimizer={"name": "sgd", "lr": 0.01, "momentum": 0.9}, loss="mse"),
                 dict(batch_size=None), id="linear-momentum"),
]


def head_of(model_kwargs):
    return {"softmax": "softmax", "sigmoid": "sigmoid", "linear": "identity"}[
        model_kwargs["layers"][-1].activation]


@pytest.mark.parametrize("model_kwargs, compile_kwargs, fit_kwargs", CONFIGS)
def test_same_weights_as_trainer_fit(rng, model_kwargs, compile_kwargs, fit_kwargs):
    """The identity the issue asks for: Sequential is trainer.fit with the seeding documented
    in fastnn.models (one RandomState: init_params, then the row orders)."""
    X, Y = small_problem(rng, head_of(model_kwargs))
    optimizer = compile_kwargs["optimizer"]
    if isinstance(optimizer, Optimizer):  # a fresh one per run: an instance carries state
        optimizer = make_optimizer(optimizer.get_config())
    model = Sequential(random_state=42, **model_kwargs)
    model.compile(**dict(compile_kwargs, optimizer=optimizer))
    history = model.fit(X, Y, epochs=4, verbose=0, threads=1, **fit_kwargs)
    model.fit(X, Y, epochs=2, verbose=0, threads=1, **fit_kwargs)  # continues the run

    arch = Architecture((7,) + tuple(layer.units for layer in model_kwargs["layers"]),
                        model.arch.activations, head_of(model_kwargs), model_kwargs["dtype"])
    assert model.arch == arch
    state = np.random.RandomState(42)
    params = init_params(arch, model_kwargs["init"], random_state=state)
    optimizer = compile_kwargs["optimizer"]
    optimizer = make_optimizer(optimizer.get_config() if isinstance(optimizer, Optimizer)
                               else optimizer)
    direct = dict(batch_size=fit_kwargs.get("batch_size") or 32, optimizer=optimizer,
                  l2=compile_kwargs.get("l2", 0.0), schedule=compile_kwargs.get("schedule"),
                  validation_split=fit_kwargs.get("validation_split", 0.0), random_state=state)
    reference_history = trainer.fit(arch, params, X, Y, epochs=4, **direct)
    trainer.fit(arch, params, X, Y, epochs=2, history=reference_history, **direct)

    assert model.params.tobytes() == params.tobytes()
    assert history.history["loss"] == reference_history.history["loss"]
    assert model.optimizer.iterations == reference_history.optimizer.iterations


def test_unseeded_model_follows_numpy_global_seed(rng):
    X, Y = small_problem(rng)
    weights = []
    for _ in range(2):
        np.random.seed(3)
        model = Sequential([Dense(5, activation="tanh"), Dense(4, activation="softmax")])
        model.compile("sgd", "categorical_crossentropy").fit(X, Y, epochs=2, verbose=0)
        weights.append(model.params)
    assert weights[0].tobytes() == weights[1].tobytes()


def test_evaluate_is_the_trainers_loss(rng):
    X, Y = small_problem(rng)
    X_val, Y_val = small_problem(rng, n=40)
    model = Sequential([Dense(6, activation="sigmoid"), Dense(4, activation="softmax")],
                       random_state=1)
    model.compile(SGD(lr=0.5), "categorical_crossentropy", metrics=["acc", "categorical_accuracy"],
                  l2=0.01)
    history = model.fit(X, Y, epochs=3, validation_data=(X_val, Y_val), verbose=0)

    loss, acc, categorical_acc = model.evaluate(X_val, Y_val, verbose=0)
    assert loss == history.history["val_loss"][-1]  # the same computation, bitwise
    assert acc == categorical_acc == history.history["val_accuracy"][-1]
    assert_close(loss, reference.loss(model.arch, model.params, X_val.astype(np.float32),
                                      Y_val.astype(np.float32)), dtype="float32")
    assert model.evaluate(X_val, Y_val, verbose=0, return_dict=True) == {
        "loss": loss, "acc": acc, "categorical_accuracy": categorical_acc}
    model.compile(SGD(lr=0.5), "categorical_crossentropy")
    assert model.evaluate(X_val, Y_val, verbose=0) == loss  # one float without metrics


# ---------------------------------------------------------------------------
# Weights, saving, resuming
# ---------------------------------------------------------------------------


def test_get_set_weights_round_trip(rng):
    model = tutorial_model(dtype="float64")
    weights = model.get_weights()
    assert [w.shape for w in weights] == [(64, 128), (128,), (128, 128), (128,), (128, 10), (10,)]
    new = [rng.standard_normal(w.shape) for w in weights]
    model.set_weights(new)
    for got, want in zip(model.get_weights(), new):
        np.testing.assert_array_equal(got, want)
    assert model.get_weights()[0] is not model.get_weights()[0]  # copies
    # The flat buffer holds them in the layout of fastnn.network, and predict uses them.
    for (W, b), (W_new, b_new) in zip(layer_views(model.arch, model.params), zip(new[::2], new[1::2])):
        np.testing.assert_array_equal(W, W_new)
        np.testing.assert_array_equal(b, b_new)
    X = rng.standard_normal((5, 64))
    a = X
    for W, b in zip(new[:4:2], new[1:4:2]):
        a = 1 / (1 + np.exp(-(a @ W + b)))
    z = a @ new[4] + new[5]
    expected = np.exp(z - z.max(axis=1, keepdims=True))
    assert_close(model.predict(X), expected / expected.sum(axis=1, keepdims=True))
    # Writing through the views writes the model.
    model.weights[5][:] = 0
    assert not model.params[-10:].any()

    before = model.params.copy()
    with pytest.raises(ValueError, match="needs 6 arrays"):
        model.set_weights(new[:4])
    with pytest.raises(ValueError, match=r"array 3 \(bias of layer 2\) must have shape \(128,\)"):
        model.set_weights(new[:3] + [np.zeros(127)] + new[4:])
    assert model.params.tobytes() == before.tobytes()  # nothing written


def test_save_load_predicts_bitwise(tmp_path, digits):
    x_train, x_test, y_train, _ = digits
    model = tutorial_model(random_state=5)
    model.compile(Adam(lr=0.01), "categorical_crossentropy", metrics=["accuracy"],
                  schedule=StepDecay(2, 0.5))
    model.fit(x_train[:300], y_train[:300], epochs=3, verbose=0)
    path = tmp_path / "model.npz"
    model.save(path)

    loaded = fastnn.load(path)
    assert isinstance(loaded, Sequential)
    assert loaded.predict(x_test).tobytes() == model.predict(x_test).tobytes()
    assert loaded.layers == model.layers and loaded.arch == model.arch
    assert (loaded.loss, loaded.metrics, loaded.l2, loaded.schedule) == (
        "categorical_crossentropy", ["accuracy"], 0.0, StepDecay(2, 0.5))
    assert loaded.optimizer == model.optimizer  # config; the state is checked by resuming
    assert loaded.history.history == model.history.history


def test_resume_from_file_is_bitwise_an_uninterrupted_run(tmp_path, digits):
    """Adam (its moments and step count matter), shuffled batches, a schedule on the epoch."""
    x_train, _, y_train, _ = digits
    x, y = x_train[:400], y_train[:400]

    def new_model():
        model = tutorial_model(random_state=11)
        model.compile("adam", "categorical_crossentropy", schedule=StepDecay(2, 0.5))
        return model

    straight = new_model()
    straight.fit(x, y, epochs=5, batch_size=32, verbose=0)

    first = new_model()
    first.fit(x, y, epochs=2, batch_size=32, verbose=0)
    first.save(tmp_path / "epoch2.npz")
    del first
    resumed = fastnn.load(tmp_path / "epoch2.npz")
    resumed.fit(x, y, epochs=5, batch_size=32, initial_epoch=2, verbose=0)  # Keras's idiom

    assert resumed.params.tobytes() == straight.params.tobytes()
    assert resumed.optimizer.slots.tobytes() == straight.optimizer.slots.tobytes()
    assert resumed.history.history["loss"] == straight.history.history["loss"]
    assert resumed.history.history["lr"] == [0.001, 0.001, 0.0005, 0.0005, 0.00025]
    with pytest.raises(ValueError, match="initial_epoch=2, but the model has trained 5"):
        resumed.fit(x, y, epochs=6, initial_epoch=2)


def test_unbuilt_model_and_custom_schedule_are_not_saved(tmp_path, rng):
    with pytest.raises(RuntimeError, match="not built"):
        Sequential([Dense(2, activation="softmax")]).save(tmp_path / "m.npz")
    model = Sequential([Dense(2, input_dim=3, activation="softmax")])
    model.compile(schedule=lambda epoch, lr, history: lr)
    with pytest.raises(ValueError, match="custom schedule"):
        model.save(tmp_path / "m.npz")
    assert not os.listdir(tmp_path)


# ---------------------------------------------------------------------------
# fit's options
# ---------------------------------------------------------------------------


def test_ctrl_c_warns_and_keeps_the_finished_epochs(rng):
    X, Y = small_problem(rng)

    def model():
        return Sequential([Dense(5, activation="relu"), Dense(4, activation="softmax")],
                          random_state=2).compile("adam", "categorical_crossentropy")

    def press_ctrl_c(epoch, logs):
        if epoch == 2:
            os.kill(os.getpid(), signal.SIGINT)

    interrupted = model()
    with pytest.warns(UserWarning, match="interrupted after epoch 2"):
        history = interrupted.fit(X, Y, epochs=10, callbacks=[press_ctrl_c], verbose=0)
    assert history.stop_reason == "interrupted" and history.epochs == 2
    two_epochs = model()
    two_epochs.fit(X, Y, epochs=2, verbose=0)
    assert interrupted.params.tobytes() == two_epochs.params.tobytes()


def test_verbose_modes(rng, capsys):
    X, Y = small_problem(rng)
    model = Sequential([Dense(4, input_dim=7, activation="softmax")]).compile(
        "sgd", "categorical_crossentropy", metrics=["accuracy"])
    model.fit(X, Y, epochs=2)  # "auto": stderr is not a terminal under pytest
    model.fit(X, Y, epochs=2, verbose=0)
    assert capsys.readouterr() == ("", "")
    model.fit(X, Y, epochs=2, verbose=2)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" - ")[0] for line in lines] == ["Epoch 5/6", "Epoch 6/6"]
    assert "loss: " in lines[0] and "accuracy: " in lines[0]
    model.fit(X, Y, epochs=1, verbose=1)
    assert "epoch 7/7" in capsys.readouterr().err
    with pytest.raises(ValueError, match="verbose"):
        model.fit(X, Y, verbose=3)


def test_early_stopping_from_callbacks_and_one_output_targets(rng):
    X = rng.standard_normal((60, 3))
    y = (X[:, 0] > 0).astype(float)  # 1-D targets for one sigmoid unit, as Keras accepts
    model = Sequential([Dense(1, input_shape=(3,), activation="sigmoid")], random_state=0)
    model.compile(SGD(lr=1e-6), "binary_crossentropy", metrics=["binary_accuracy"])
    history = model.fit(X, y, epochs=50, validation_split=0.25, verbose=0,
                        callbacks=[EarlyStopping(monitor="val_binary_accuracy", patience=2)])
    assert history.stop_reason == "early stopping" and history.epochs < 50
    assert model.predict_proba(X).shape == (60, 1)


def test_inputs_are_cast_and_copied_like_keras(rng):
    model = tutorial_model()
    X = np.asfortranarray(rng.standard_normal((6, 64)))[::2]  # float64, not C-contiguous
    out = model.predict(X)
    assert out.dtype == np.float32 and out.shape == (3, 10)
    assert out.tobytes() == model.predict(np.ascontiguousarray(X, dtype=np.float32)).tobytes()
    X_list = X.tolist()
    np.testing.assert_array_equal(model.predict(X_list), out)


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("last, loss", [
    ("softmax", "binary_crossentropy"), ("softmax", "mse"), ("sigmoid", "categorical_crossentropy"),
    ("sigmoid", "mean_squared_error"), ("linear", "categorical_crossentropy"),
    ("linear", "binary_crossentropy"),
])
def test_loss_must_match_the_head(last, loss):
    model = Sequential([Dense(4, activation="tanh"), Dense(3, activation=last)])
    with pytest.raises(ValueError, match=f"loss '{loss}' does not match the last layer's "
                                         f"activation '{last}'"):
        model.compile("sgd", loss)


@pytest.mark.parametrize("make, message", [
    (lambda: Dense(0), "units must be an integer >= 1"),
    (lambda: Dense(2.5), "units must be an integer >= 1"),
    (lambda: Dense(3, activation="mish"), "unknown activation 'mish'"),
    (lambda: Dense(3, input_shape=(8, 8)), "input_shape must be a tuple of one int"),
    (lambda: Dense(3, kernel_initializer="orthogonal"), "unknown kernel_initializer"),
    (lambda: Sequential(dtype="int32"), "dtype must be"),
    (lambda: Sequential(init="zeros"), "unknown init"),
    (lambda: Sequential([Dense(3, activation="softmax"), Dense(2)]),
     "softmax is only allowed on the last layer"),
    (lambda: Sequential([Dense(3, input_dim=4), Dense(2, input_dim=5)]),
     "give input_dim on the first layer only"),
    (lambda: Sequential([Dense(3, kernel_initializer="he_normal")]),
     r"use Sequential\(init='he_normal'\)"),
    (lambda: Sequential([Dense(3, activation="relu")]).compile(),
     "activation 'relu' cannot be an output"),
    (lambda: Sequential().compile(), "no layers"),
    (lambda: tutorial_model().compile(loss="hinge"), "unknown loss 'hinge'"),
    (lambda: tutorial_model().compile(metrics=["mae"]), "unknown metric 'mae'"),
    (lambda: tutorial_model().compile(metrics=["binary_accuracy"]),
     "'binary_accuracy' does not apply to a softmax output"),
    (lambda: Sequential([Dense(1)]).compile(metrics=["accuracy"]),
     "'accuracy' does not apply to a linear output"),
    (lambda: tutorial_model().compile(optimizer="adamw"), "unknown optimizer"),
    (lambda: tutorial_model().compile(l2=-1.0), "l2 must be"),
    (lambda: tutorial_model().build(32), "takes 64 input features, not 32"),
])
def test_bad_settings(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_state_errors(rng):
    X, Y = small_problem(rng)
    model = Sequential([Dense(4, activation="softmax")])
    with pytest.raises(RuntimeError, match="compile the model before fit"):
        model.fit(X, Y)
    with pytest.raises(RuntimeError, match="not built yet"):
        model.predict(X)
    model.compile("sgd", "categorical_crossentropy").fit(X, Y, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="already built"):
        model.add(Dense(2))
    with pytest.raises(ValueError, match="add layers before compile"):
        Sequential([Dense(3)]).compile("sgd", "mse").add(Dense(1))
    unbuilt = Sequential([Dense(4, input_dim=7, activation="softmax")])
    unbuilt.compile("sgd", "categorical_crossentropy")
    assert unbuilt.evaluate(X, Y, verbose=0) > 0 and unbuilt.built  # built from input_dim
    with pytest.raises(RuntimeError, match="not built yet"):
        Sequential([Dense(4)]).compile("sgd", "mse").evaluate(X, Y, verbose=0)
    with pytest.raises(ValueError, match="last layer is linear"):
        Sequential([Dense(1, input_dim=2)]).predict_proba(np.ones((1, 2)))


@pytest.mark.parametrize("x, y, message", [
    (lambda X: np.where(np.arange(X.size).reshape(X.shape) == 5, np.nan, X), None,
     "Input x contains NaN"),
    (lambda X: np.where(np.arange(X.size).reshape(X.shape) == 5, np.inf, X), None,
     "Input x contains infinity"),
    (lambda X: X[:, 0], None, "Expected 2D array"),
    (lambda X: X[:, :, None], None, "dim 3"),
    (lambda X: X[:, :5], None, "x has 5 features, but the model takes 7"),
    (lambda X: [["a"] * 7] * len(X), None, "could not convert"),
    (None, lambda Y: Y.argmax(axis=1), "OneHotEncoder or LabelBinarizer"),
    (None, lambda Y: Y[:, :3], r"y must have shape \(n_samples, 4\)"),
    (None, lambda Y: Y[:-1], "inconsistent numbers of samples"),
    (None, lambda Y: 2 * Y, r"values in \[0, 1\]"),
    (None, lambda Y: 0.5 * Y, "must sum to 1"),
    (None, lambda Y: np.where(Y == 1, np.nan, Y), "Input y contains NaN"),
])
def test_bad_data(rng, x, y, message):
    X, Y = small_problem(rng)
    model = Sequential([Dense(5, input_dim=7, activation="tanh"),
                        Dense(4, activation="softmax")]).compile("sgd", "categorical_crossentropy")
    X_bad = X if x is None else x(X)
    Y_bad = Y if y is None else y(Y)
    with pytest.raises(ValueError, match=message):
        model.fit(X_bad, Y_bad, verbose=0)
    if y is None:
        with pytest.raises(ValueError, match=message):
            model.predict(X_bad)
    else:
        with pytest.raises(ValueError, match=message):
            model.evaluate(X, Y_bad, verbose=0)
    assert model.history.epochs == 0


def test_bad_fit_arguments(rng):
    X, Y = small_problem(rng)
    model = Sequential([Dense(4, activation="softmax")]).compile("sgd", "categorical_crossentropy")
    for kwargs, message in [
        (dict(epochs=-1), "epochs must be an integer >= 0"),
        (dict(batch_size=0), "batch_size must be an integer >= 1"),
        (dict(validation_data=(X,)), r"validation_data must be a pair"),
        (dict(validation_data=(X[:, :3], Y)), "x_val has 3 features"),
        (dict(validation_split=1.5), "validation_split"),
        (dict(sample_weight=np.ones(3)), "sample_weight"),
        (dict(early_stopping=EarlyStopping(), callbacks=[EarlyStopping()]),
         "two early stopping rules"),
    ]:
        with pytest.raises(ValueError, match=message):
            model.fit(X, Y, verbose=0, **kwargs)


def test_model_checkpoint_saves_an_interrupted_run_that_resumes_bitwise(tmp_path):
    """Ctrl-C in the middle of an epoch (``trainer.interrupt_after``: the same stop as a
    real SIGINT, at a batch that does not depend on timing): the checkpoint written at
    the end of training holds the unfinished epoch, and loading it and fitting on
    equals never stopping."""
    from fastnn.models import ModelCheckpoint

    rng = np.random.default_rng(5)
    X = rng.standard_normal((4000, 6))
    Y = np.eye(3)[rng.integers(0, 3, 4000)]

    def model():
        return Sequential([Dense(8, input_dim=6, activation="tanh"),
                           Dense(3, activation="softmax")], dtype="float64",
                          random_state=1).compile("adam", "categorical_crossentropy",
                                                  metrics=["accuracy"])

    whole = model()
    whole.fit(X, Y, epochs=2, batch_size=4, verbose=0)

    path = tmp_path / "checkpoint.npz"
    stopped = model()
    checkpoint = ModelCheckpoint(stopped, path)
    with pytest.warns(UserWarning, match="interrupted"), trainer.interrupt_after(1300):
        stopped.fit(X, Y, epochs=2, batch_size=4, verbose=0, callbacks=[checkpoint])
    assert stopped.history.interrupted and stopped.history.epochs == 1
    assert stopped.history.partial.next_row == 300 * 4  # 300 batches into epoch 2
    resumed = fastnn.load(path)
    assert resumed.params.tobytes() == stopped.params.tobytes()
    resumed.fit(X, Y, epochs=2 - resumed.history.epochs, batch_size=4, verbose=0)
    assert resumed.params.tobytes() == whole.params.tobytes()
    assert resumed.history.loss == whole.history.loss
    # The unfinished epoch's running accuracy went through the file too.
    assert resumed.history.history["accuracy"] == whole.history.history["accuracy"]
    with pytest.raises(ValueError, match="every"):
        ModelCheckpoint(stopped, path, every=0)
