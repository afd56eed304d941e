"""The activations after relu (leaky_relu, elu, selu, gelu, softplus, silu): kernels against
their NumPy twins, against float64 math, their derivatives against central differences,
and their place in every front end.

Tolerances.  The twin comparisons use the suite's table (conftest.TOLERANCES).  The
float32 accuracy test bounds the error against the float64 kernel element by element:

* forward, |a32 - a64| <= (4 + z**2) * eps * |a64| + tiny: four roundings (fast_exp
  is below half an ulp, libm's expm1 / log1p / erfc within one, then a product and a
  sum), and for gelu the rounding of z / sqrt(2) in float32, which erfc's tail
  amplifies by 2 * (z / sqrt(2))**2 = z**2 (measured: 83 ulp at z = -9, where
  gelu(z) = -1e-18 is far below anything a network would notice); tiny, float32's
  smallest normal number, for the values that underflow (gelu(-38) = -4e-322);
* derivative, |d32 - d64| <= (4 + |z|) * eps * max(1, |d64|): silu' = s (1 + z (1 - s))
  multiplies the rounding of 1 - s by z; elu' and selu' computed from the output,
  a + lambda * alpha, cancel for z << 0 and keep an absolute error of an ulp of
  lambda * alpha (their relative error there is unbounded, as sigmoid's a (1 - a) is).
"""

import numba
import numpy as np
import pytest

from fastnn import FastMLPClassifier, Sequential, load, reference, trainer
from fastnn.cli.options import build_parser
from fastnn.kernels import epoch, layers
from fastnn.kernels.activations import saves_derivative, unfused_argument
from fastnn.models import Dense
from fastnn.network import ACTIVATION_CODES, HIDDEN_ACTIVATIONS, Architecture, init_params

from .conftest import FD_EPS, FD_TOL, TRAINING_RTOL, assert_close, make_problem, seed_of

NEW = ("leaky_relu", "elu", "selu", "gelu", "softplus", "silu")
DTYPES = ("float32", "float64")
#: Pre-activations: a fine grid, the extremes where exp overflows, and around zero.
Z = np.concatenate([np.linspace(-40, 40, 4001), [-400, -300, -100, 100, 300, 400, 0.0, -1e-8,
                                                 1e-8]])


def kernel_values(name, z, slope=0.2):
    """(act(z), act'(z)) through the compiled layer kernels, as training computes them.

    The layer is 1 -> 1 with weight 1 and bias 0, so its pre-activation is z; the
    derivative is the delta that backward_layer gives for a delta of ones.
    """
    dtype = z.dtype.type
    code = ACTIVATION_CODES[name]
    a_prev, W, b = np.ascontiguousarray(z[:, None]), np.ones((1, 1), z.dtype), np.zeros(1, z.dtype)
    a, deriv = np.empty_like(a_prev), np.empty_like(a_prev)
    saved = np.empty_like(a_prev)
    unfused = unfused_argument([code], slope, dtype)
    if saves_derivative(code):
        layers.forward_layer_saving(a_prev, W, b, code, unfused, a, saved)
    else:
        layers.forward_layer(a_prev, W, b, code, unfused, a)
    layers.backward_layer(np.ones_like(a), W, a, code, unfused, saved, deriv)
    return a[:, 0], deriv[:, 0]


@pytest.mark.parametrize("name", NEW)
def test_float64_values_match_the_formulas(name):
    """float64 kernels against the twins' formulas (SciPy's erfc and expit, NumPy's expm1)."""
    a, d = kernel_values(name, Z)
    exact = reference.ACTIVATIONS[name](Z)
    exact_d = (reference.Z_DERIVATIVES[name](Z) if name in reference.Z_DERIVATIVES
               else reference.DERIVATIVES[name](exact))
    assert np.isfinite(a).all() and np.isfinite(d).all()
    eps = np.finfo(np.float64).eps
    assert (np.abs(a - exact) <= (4 + Z**2) * eps * np.abs(exact) + 1e-300).all()
    assert (np.abs(d - exact_d) <= (4 + np.abs(Z)) * eps * np.maximum(1, np.abs(exact_d))).all()


@pytest.mark.parametrize("name", NEW)
def test_float32_error_bound(name):
    """float32 kernels within the bounds of the module docstring of the float64 kernels."""
    z32 = Z.astype(np.float32)
    z = z32.astype(np.float64)  # the float32 input, exactly
    a32, d32 = kernel_values(name, z32)
    a64, d64 = kernel_values(name, z)
    eps = float(np.finfo(np.float32).eps)
    tiny = float(np.finfo(np.float32).tiny)
    assert np.isfinite(a32).all() and np.isfinite(d32).all()
    err = np.abs(a32 - a64)
    assert (err <= (4 + z**2) * eps * np.abs(a64) + tiny).all(), err.max()
    err_d = np.abs(d32 - d64)
    assert (err_d <= (4 + np.abs(z)) * eps * np.maximum(1, np.abs(d64))).all(), err_d.max()


@pytest.mark.parametrize("name", NEW)
def test_derivative_by_central_differences(name):
    """The derivative the backward pass uses against (act(z + h) - act(z - h)) / 2h, float64.

    The kinks of leaky_relu, elu and selu at 0 are avoided (|z| > 1e-3).
    """
    z = np.linspace(-8, 8, 1601)
    z = z[np.abs(z) > 1e-3]
    _, d = kernel_values(name, z, slope=0.1)
    plus, _ = kernel_values(name, z + FD_EPS, slope=0.1)
    minus, _ = kernel_values(name, z - FD_EPS, slope=0.1)
    np.testing.assert_allclose(d, (plus - minus) / (2 * FD_EPS), rtol=FD_TOL.rtol,
                               atol=FD_TOL.atol)


def test_keras_values():
    """The numbers of Keras 3's docs: gelu (approximate=False, erf) and leaky_relu (slope 0.2)."""
    x = np.array([-1.0, 0.0, 1.0])
    np.testing.assert_allclose(kernel_values("gelu", x)[0], [-0.15865525, 0.0, 0.84134475],
                               rtol=1e-7)
    np.testing.assert_allclose(kernel_values("leaky_relu", x)[0], [-0.2, 0.0, 1.0])
    np.testing.assert_allclose(kernel_values("selu", x)[0],
                               [1.0507009873554805 * 1.6732632423543772 * np.expm1(-1), 0,
                                1.0507009873554805])
    np.testing.assert_allclose(kernel_values("elu", x)[0], [np.expm1(-1), 0, 1])
    np.testing.assert_allclose(kernel_values("softplus", x)[0], np.log1p(np.exp(x)))
    np.testing.assert_allclose(kernel_values("silu", x)[0], x / (1 + np.exp(-x)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NEW)
def test_layer_kernels_match_twins(name, dtype):
    """forward_layer (and _saving) and backward_layer against their twins, 7 x 17 -> 33."""
    rng = np.random.default_rng(seed_of(f"layer {name} {dtype}"))
    code = ACTIVATION_CODES[name]
    a_prev = np.ascontiguousarray(rng.standard_normal((7, 17)), dtype=dtype)
    W = np.ascontiguousarray(rng.standard_normal((17, 33)) / 4, dtype=dtype)
    b = np.ascontiguousarray(rng.standard_normal(33), dtype=dtype)
    slope = np.dtype(dtype).type(0.1)
    unfused = unfused_argument([code], slope, np.dtype(dtype).type)
    out, expected = np.full((7, 33), np.nan, dtype), np.empty((7, 33), dtype)
    deriv, expected_deriv = np.full((7, 33), np.nan, dtype), np.empty((7, 33), dtype)
    if saves_derivative(code):
        layers.forward_layer_saving(a_prev, W, b, code, unfused, out, deriv)
        reference.forward_layer_saving(a_prev, W, b, code, expected, expected_deriv)
        assert_close(deriv, expected_deriv)
    else:
        layers.forward_layer(a_prev, W, b, code, unfused, out)
        reference.forward_layer(a_prev, W, b, code, slope, expected)
    assert_close(out, expected)
    delta = np.ascontiguousarray(rng.standard_normal((7, 33)), dtype=dtype)
    WT = np.ascontiguousarray(rng.standard_normal((33, 7)), dtype=dtype)
    back, expected_back = np.full((7, 7), np.nan, dtype), np.empty((7, 7), dtype)
    a_hidden = np.ascontiguousarray(out[:, :7])
    saved = np.ascontiguousarray(deriv[:, :7]) if saves_derivative(code) else a_hidden[:0]
    layers.backward_layer(delta, WT, a_hidden, code, unfused, saved, back)
    reference.backward_layer(delta, WT, a_hidden, code, slope, saved, expected_back)
    assert_close(back, expected_back)


@pytest.mark.parametrize("name", NEW)
def test_network_gradient_by_central_differences(name):
    """reference.backward of a 5-7-6-3 network against central differences of its loss."""
    rng = np.random.default_rng(seed_of(f"gradient {name}"))
    arch, params, X, Y = make_problem(rng, (5, 7, 6, 3), (name, name), "softmax", n=9)
    arch = Architecture(arch.sizes, arch.activations, arch.head, arch.dtype, negative_slope=0.1)
    grads, _ = reference.backward(arch, params, reference.forward(arch, params, X), Y)
    numeric = np.empty_like(params)
    for k in range(params.size):
        p, m = params.copy(), params.copy()
        p[k] += FD_EPS
        m[k] -= FD_EPS
        numeric[k] = (reference.loss(arch, p, X, Y) - reference.loss(arch, m, X, Y)) / (2 * FD_EPS)
    np.testing.assert_allclose(grads, numeric, rtol=FD_TOL.rtol, atol=FD_TOL.atol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NEW)
def test_training_matches_reference_and_threads(name, dtype):
    """3 epochs compiled against the NumPy reference, and bitwise with 1 and 2 threads."""
    rng = np.random.default_rng(seed_of(f"train {name} {dtype}"))
    arch, params, X, Y = make_problem(rng, (6, 19, 11, 4), (name, name), "softmax", dtype, n=53)
    arch = Architecture(arch.sizes, arch.activations, arch.head, dtype, negative_slope=0.1)
    runs = {}
    for key, backend, threads in (("numpy", "numpy", None), ("t1", "numba", 1), ("t2", "numba", 2)):
        p = params.copy()
        trainer.fit(arch, p, X, Y, epochs=3, batch_size=16, optimizer="adam", random_state=1,
                    backend=backend, threads=threads)
        runs[key] = p
    assert runs["t1"].tobytes() == runs["t2"].tobytes()
    scale = np.abs(runs["numpy"]).max()
    assert np.abs(runs["t1"] - runs["numpy"]).max() <= TRAINING_RTOL[dtype] * scale
    out = trainer.predict_output(arch, runs["t1"], X)
    assert_close(out, reference.predict_proba(arch, runs["t1"], X.astype(dtype)))


@pytest.mark.parametrize("hidden", [("elu", "gelu", "leaky_relu"), ("tanh", "selu", "softplus"),
                                    ("silu", "relu", "elu")])
def test_networks_that_mix_activations_train_as_the_reference(hidden):
    """Each network compiles the kernels of its own set of activations only
    (``activations.unfused_argument``): a mix of several, fused ones among them."""
    rng = np.random.default_rng(seed_of(f"mixed {hidden}"))
    arch, params, X, Y = make_problem(rng, (6, 13, 11, 9, 4), hidden, "softmax", n=41)
    arch = Architecture(arch.sizes, arch.activations, arch.head, arch.dtype, negative_slope=0.1)
    compiled, twin = params.copy(), params.copy()
    trainer.fit(arch, compiled, X, Y, epochs=3, batch_size=16, random_state=1)
    trainer.fit(arch, twin, X, Y, epochs=3, batch_size=16, random_state=1, backend="numpy")
    np.testing.assert_allclose(compiled, twin, rtol=1e-9, atol=1e-9)
    assert_close(trainer.predict_output(arch, compiled, X),
                 reference.predict_proba(arch, compiled, X))


@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="compiled code only")
def test_one_epoch_driver_serves_every_mix_of_activations():
    """Which activations a network has is bound into the chunk worker, not an argument
    of the epoch driver (``epoch.chunk_worker``): networks that differ only in their
    activations train through one compiled driver."""
    rng = np.random.default_rng(seed_of("one driver"))
    drivers = []
    for hidden in [("relu", "tanh"), ("leaky_relu", "gelu"), ("selu", "silu"), ("elu", "elu")]:
        arch, params, X, Y = make_problem(rng, (5, 7, 6, 3), hidden, "softmax", n=20)
        trainer.fit(arch, params, X, Y, epochs=1, batch_size=8, random_state=0)
        drivers.append(set(epoch.train_epoch.overloads))
    assert drivers[0] == drivers[1] == drivers[2] == drivers[3]


@pytest.mark.parametrize("name", NEW)
def test_only_the_activations_named_are_compiled(name):
    """The kernels apply only the activations their ``unfused`` argument names: Numba
    prunes the others' code, so an activation left out of it leaves z as it is."""
    code = ACTIVATION_CODES[name]
    others = [c for c in (ACTIVATION_CODES[n] for n in NEW) if c != code]
    z = np.linspace(-2.0, 2.0, 12).reshape(3, 4)
    W, b, out = np.eye(4), np.zeros(4), z.copy()
    layers.forward_layer(z, W, b, code, unfused_argument(others, 0.1, np.float64), out)
    np.testing.assert_array_equal(out, z)
    layers.forward_layer(z, W, b, code, unfused_argument([code], 0.1, np.float64), out)
    assert not np.array_equal(out, z)


def test_front_ends_take_every_name(tmp_path):
    """Sequential (with Keras's "swish"), the estimators and the CLI's choices; saved slope kept."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 5))
    y = (X[:, 0] > 0).astype(int)
    for name in (*NEW, "swish"):
        model = Sequential([Dense(8, input_dim=5, activation=name), Dense(2, activation="softmax")],
                           random_state=0)
        model.compile(optimizer="adam", loss="categorical_crossentropy")
        model.fit(X, np.eye(2)[y], epochs=1, verbose=0)
        assert np.isfinite(model.predict(X)).all()
    for name in NEW:
        clf = FastMLPClassifier((8,), activation=name, max_iter=2, random_state=0)
        with pytest.warns(Warning):
            clf.fit(X, y)
        assert clf.predict(X).shape == (40,)
    choices = next(a for a in build_parser()._actions if a.dest == "activation").choices
    assert set(NEW) <= set(choices)
    assert set(HIDDEN_ACTIVATIONS) == set(choices)


def test_negative_slope_is_saved(tmp_path):
    from fastnn import model_io

    arch = Architecture((3, 4, 2), ("leaky_relu",), "softmax", "float64", negative_slope=0.05)
    params = init_params(arch, "normal", 0)
    model_io.save(tmp_path / "m.npz", arch, params)
    assert model_io.load(tmp_path / "m.npz")[0].negative_slope == 0.05


def test_unknown_activation_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown activation 'mish'.*gelu"):
        Dense(3, activation="mish")
    with pytest.raises(ValueError, match="unknown hidden activation 'mish'"):
        Architecture((3, 4, 2), ("mish",))
    with pytest.raises(ValueError, match="negative_slope must be a number in \\[0, 1\\)"):
        Architecture((3, 4, 2), ("leaky_relu",), negative_slope=1.5)
    with pytest.raises(ValueError, match="activation"):
        FastMLPClassifier(activation="mish").fit([[0.0], [1.0]], [0, 1])


def test_negative_slope_in_every_front_end(tmp_path):
    """negative_slope reaches the network from Sequential, the estimators and the CLI, and is
    saved with each."""
    from fastnn.cli import main

    rng = np.random.default_rng(1)
    X = rng.standard_normal((40, 5))
    y = (X[:, 0] > 0).astype(int)
    clf = FastMLPClassifier((8,), activation="leaky_relu", negative_slope=0.05, max_iter=2,
                            random_state=0)
    with pytest.warns(Warning):
        clf.fit(X, y)
    assert clf.coefs_ and clf._arch.negative_slope == 0.05
    clf.save(tmp_path / "clf.npz")
    assert load(tmp_path / "clf.npz").get_params()["negative_slope"] == 0.05
    model = Sequential([Dense(8, input_dim=5, activation="leaky_relu"),
                        Dense(2, activation="softmax")], negative_slope=0.01, random_state=0)
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    model.fit(X, np.eye(2)[y], epochs=2, batch_size=8, verbose=0)
    model.save(tmp_path / "seq.npz")
    assert load(tmp_path / "seq.npz").arch.negative_slope == 0.01
    assert main(["--dataset", "iris", "--layers", "4", "--activation", "leaky_relu",
                 "--negative-slope", "0.1", "--epochs", "1", "--quiet", "--save",
                 str(tmp_path / "cli.npz")]) == 0
    assert load(tmp_path / "cli.npz").arch.negative_slope == 0.1
