"""ONNX export: any fastnn model as a standard ONNX graph that runs without fastnn.

``to_onnx(model, path)`` writes one ``.onnx`` file for a ``Sequential``, a
``FastMLPClassifier`` or ``FastMLPRegressor``, a ``MyNN``, or a model file written by
``save`` or the command line's ``--save`` (given by its path).  The graph is what a
deployment team expects from torch.onnx or skl2onnx:

* one input ``"input"`` of shape (N, n_features) in the model's dtype (float32 or
  float64), N dynamic;
* per layer a ``Gemm`` (x @ W + b) and the activation's operators: ``Sigmoid``,
  ``Tanh``, ``Relu``, ``LeakyRelu`` (alpha = the negative slope), ``Elu``, ``Selu``,
  ``Softplus``, silu as ``Mul(x, Sigmoid(x))``, gelu in its exact form
  ``0.5 * x * (1 + Erf(x / sqrt(2)))``, and the head's ``Softmax`` (axis 1) or ``Sigmoid``
  (float64 graphs write leaky_relu, elu, selu and softplus with elementary operators,
  which onnxruntime has in float64, and take gelu's Erf in float32);
* outputs: ``"output"`` (the head's output: probabilities, or values) for Sequential
  and MyNN; for classifiers ``"label"`` and ``"probabilities"`` of shape
  (N, n_classes), as skl2onnx names them for MLPClassifier (labels as int64 or
  strings; multilabel: an int64 0/1 matrix); for regressors ``"variable"``.

A file saved by the command line also holds how its data were prepared (the
``preprocessing`` record of ``fastnn.datasets.fit_preprocessing``); its graph then
takes the raw feature rows: it scales them first (``Div`` or ``Sub``/``Div``) and
gives ``"label"`` and ``"probabilities"`` (classification) or ``"variable"`` in the
targets' own units (regression), as the command line's ``--predict`` does.

Operator set 13 (every onnxruntime since 1.7 runs it).  Needs the ``onnx`` package
(``pip install "fastnn[onnx]"``, which also installs onnxruntime to run the files).
"""

import os

import numpy as np

from .names import ACTIVATIONS
from .network import Architecture, layer_views

#: The operator set the graphs use.
OPSET = 13
#: IR version 7 is the one that goes with opset 13 (ONNX 1.8); onnxruntime reads it.
IR_VERSION = 7

#: Activations whose ONNX operators onnxruntime has no float64 kernel for (LeakyRelu,
#: Softplus, Elu, Selu, Erf): float64 graphs spell them with elementary operators.
_FLOAT_ONLY = ("leaky_relu", "softplus", "elu", "selu", "gelu")

#: selu's constants, as in the kernels.
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_LAMBDA = 1.0507009873554804934193349852946


def require_onnx():
    """The onnx module; ImportError with the command that installs it when missing."""
    try:
        import onnx
    except ImportError:
        raise ImportError("ONNX export needs the onnx package: pip install \"fastnn[onnx]\" "
                          "(or pip install onnx onnxruntime)") from None
    return onnx


def to_onnx(model, path, preprocessing=None):
    """Write model to path as an ONNX file; returns the path.

    Parameters
    ----------
    model : Sequential, FastMLPClassifier, FastMLPRegressor, MyNN, or str / os.PathLike
        A fitted (or built) model, or the path of a model file (``model.save``, the
        command line's ``--save``), which is loaded with ``fastnn.load`` first.
    path : str or os.PathLike
        Where to write; an existing file is replaced.
    preprocessing : dict or None
        The command line's record of how inputs are scaled and outputs decoded
        (module docstring); read from the file when model is a path, if it has one.

    Raises
    ------
    ImportError
        When the onnx package is not installed.
    ValueError
        When the model is not a fastnn model, or not fitted or built.
    OSError
        When path cannot be written (the message names it).
    """
    onnx = require_onnx()
    if isinstance(model, (str, os.PathLike)):
        from . import model_io

        stored = model_io.load(model)
        if preprocessing is None:
            record = stored.metadata["extra"].get("config", {}).get("cli") or {}
            preprocessing = record.get("preprocessing")
        model = model_io.model_from_file(stored, model)
    graph = _graph(onnx, model, preprocessing)
    proto = onnx.helper.make_model(graph, producer_name="fastnn",
                                   opset_imports=[onnx.helper.make_opsetid("", OPSET)])
    proto.ir_version = IR_VERSION
    onnx.checker.check_model(proto)
    try:
        with open(path, "wb") as f:
            f.write(proto.SerializeToString())
    except OSError as exc:
        raise type(exc)(exc.errno, f"cannot write the ONNX file {os.fspath(path)!r}: "
                                   f"{exc.strerror or exc}") from None
    return path


def _graph(onnx, model, preprocessing=None):
    """The GraphProto of a model, by its kind."""
    kind = type(model).__name__
    if kind in ("Sequential", "MyNN"):
        arch, params = getattr(model, "arch", None), getattr(model, "params", None)
        if arch is None or params is None:
            raise ValueError("the model is not built yet: fit it (or call build) before export")
        if preprocessing is None:
            return _network_graph(onnx, arch, params, outputs="output")
        classes = preprocessing.get("classes")
        return _network_graph(onnx, arch, params,
                              outputs="variable" if classes is None else "classifier",
                              classes=classes, preprocessing=preprocessing)
    if kind in ("FastMLPClassifier", "FastMLPRegressor"):
        if not hasattr(model, "n_layers_"):
            raise ValueError(f"this {kind} is not fitted yet: call fit before export")
        coefs, intercepts = model.coefs_, model.intercepts_
        hidden = tuple(ACTIVATIONS[model.activation] for _ in coefs[:-1])
        # "exp" (the regressor's poisson loss): exp of the identity head's output.
        head = {"logistic": "sigmoid", "softmax": "softmax", "identity": "identity",
                "exp": "identity"}[model.out_activation_]
        arch = Architecture(tuple([coefs[0].shape[0]] + [W.shape[1] for W in coefs]), hidden,
                            head, coefs[0].dtype.name, float(model.negative_slope))
        params = np.concatenate([np.vstack([W, b[None]]).ravel()
                                 for W, b in zip(coefs, intercepts)])
        if kind == "FastMLPRegressor":
            return _network_graph(onnx, arch, params, outputs="variable",
                                  exp_output=model.out_activation_ == "exp")
        return _network_graph(onnx, arch, params, outputs="classifier",
                              classes=model.classes_, multilabel=_multilabel(model))
    raise ValueError(f"to_onnx takes a fastnn Sequential, FastMLPClassifier, FastMLPRegressor, "
                     f"MyNN or a model file's path, got {type(model).__name__}")


def _multilabel(classifier):
    return classifier.n_outputs_ > 1 and classifier.out_activation_ == "logistic"


class _Builder:
    """Nodes and initialisers of a graph under construction, with fresh names."""

    def __init__(self, onnx, dtype):
        self.onnx, self.dtype = onnx, np.dtype(dtype)
        self.nodes, self.initializers, self.count = [], [], 0

    def name(self, stem):
        self.count += 1
        return f"{stem}_{self.count}"

    def constant(self, stem, value, dtype=None):
        name = self.name(stem)
        array = np.asarray(value, dtype=self.dtype if dtype is None else dtype)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def op(self, op_type, inputs, **attributes):
        out = self.name(op_type.lower())
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), [out], **attributes))
        return out

    def activation(self, name, x, slope):
        """The operators of fastnn's activation name applied to x; the output's name."""
        if name == "identity":
            return x
        if name == "softmax":
            return self.op("Softmax", [x], axis=1)
        simple = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu", "softplus": "Softplus"}
        if self.dtype == np.float64 and name in _FLOAT_ONLY:
            return self.activation_float64(name, x, slope)
        if name in simple:
            return self.op(simple[name], [x])
        if name == "leaky_relu":
            return self.op("LeakyRelu", [x], alpha=float(slope))
        if name == "elu":
            return self.op("Elu", [x], alpha=1.0)
        if name == "selu":
            return self.op("Selu", [x], alpha=_SELU_ALPHA, gamma=_SELU_LAMBDA)
        if name == "silu":
            return self.op("Mul", [x, self.op("Sigmoid", [x])])
        if name == "gelu":  # 0.5 * x * (1 + erf(x / sqrt(2))), Keras's approximate=False
            scaled = self.op("Mul", [x, self.constant("inv_sqrt2", 0.7071067811865476)])
            erf = self.op("Erf", [scaled])
            one_plus = self.op("Add", [erf, self.constant("one", 1.0)])
            return self.op("Mul", [self.op("Mul", [x, self.constant("half", 0.5)]), one_plus])
        raise ValueError(f"no ONNX form for activation {name!r}")

    def activation_float64(self, name, x, slope):
        """The activations whose operators onnxruntime runs in float32 only, from float64 ones."""
        if name == "leaky_relu":  # max(x, s x) for 0 <= s < 1
            return self.op("Max", [x, self.op("Mul", [x, self.constant("slope", slope)])])
        zero = self.constant("zero", 0.0) if name != "gelu" else None
        if name == "softplus":  # max(x, 0) + log(1 + exp(-|x|))
            tail = self.op("Exp", [self.op("Neg", [self.op("Abs", [x])])])
            log1p = self.op("Log", [self.op("Add", [tail, self.constant("one", 1.0)])])
            return self.op("Add", [self.op("Max", [x, zero]), log1p])
        if name in ("elu", "selu"):  # scale * (x if x > 0 else alpha * (exp(min(x, 0)) - 1))
            alpha, scale = (1.0, 1.0) if name == "elu" else (_SELU_ALPHA, _SELU_LAMBDA)
            expm1 = self.op("Sub", [self.op("Exp", [self.op("Min", [x, zero])]),
                                    self.constant("one", 1.0)])
            negative = self.op("Mul", [expm1, self.constant("alpha", alpha)])
            chosen = self.op("Where", [self.op("Greater", [x, zero]), x, negative])
            return chosen if name == "elu" else self.op("Mul", [chosen,
                                                                 self.constant("scale", scale)])
        # gelu: Erf exists in float32 only, so Phi is computed in float32 (relative error
        # ~1e-7 on the output instead of ~1e-16)
        as_float = self.op("Cast", [x], to=self.onnx.TensorProto.FLOAT)
        erf = self.op("Erf", [self.op("Mul", [as_float, self.constant(
            "inv_sqrt2", 0.7071067811865476, np.float32)])])
        erf = self.op("Cast", [erf], to=self.onnx.TensorProto.DOUBLE)
        one_plus = self.op("Add", [erf, self.constant("one", 1.0)])
        return self.op("Mul", [self.op("Mul", [x, self.constant("half", 0.5)]), one_plus])


def _network_graph(onnx, arch, params, outputs, classes=None, multilabel=False,
                   preprocessing=None, exp_output=False):
    """GraphProto: input -> (scaling) -> layers -> (exp) -> the outputs named by ``outputs``."""
    b = _Builder(onnx, arch.dtype)
    elem = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(arch.dtype))
    x = "input"
    inputs = (preprocessing or {}).get("inputs", {"kind": "none"})
    if inputs["kind"] == "divide":
        x = b.op("Div", [x, b.constant("by", inputs["by"])])
    elif inputs["kind"] == "standardize":
        x = b.op("Div", [b.op("Sub", [x, b.constant("mean", inputs["mean"])]),
                         b.constant("scale", inputs["scale"])])
    for layer, ((W, bias), name) in enumerate(zip(layer_views(arch, params),
                                                  arch.layer_activations)):
        z = b.op("Gemm", [x, b.constant(f"W{layer}", W), b.constant(f"b{layer}", bias)])
        x = b.activation(name, z, arch.negative_slope)
    if exp_output:
        x = b.op("Exp", [x])
    n_out = arch.sizes[-1]
    graph_outputs = []
    targets = (preprocessing or {}).get("targets")
    if outputs == "variable" and targets is not None:  # back to the targets' units
        x = b.op("Add", [b.op("Mul", [x, b.constant("scale", targets["scale"])]),
                         b.constant("mean", targets["mean"])])
    if outputs in ("output", "variable"):
        b.nodes.append(onnx.helper.make_node("Identity", [x], [outputs]))
        graph_outputs.append(onnx.helper.make_tensor_value_info(outputs, elem, ["N", n_out]))
    else:
        graph_outputs += _classifier_outputs(onnx, b, x, arch, classes, multilabel, elem)
    inputs = [onnx.helper.make_tensor_value_info("input", elem, ["N", arch.sizes[0]])]
    return onnx.helper.make_graph(b.nodes, "fastnn", inputs, graph_outputs, b.initializers)


def _classifier_outputs(onnx, b, p, arch, classes, multilabel, elem):
    """Nodes for "label" and "probabilities" from the head's output p; their value infos."""
    helper = onnx.helper
    n_classes = len(classes)
    if multilabel:
        b.nodes.append(helper.make_node("Identity", [p], ["probabilities"]))
        above = b.op("Greater", [p, b.constant("half", 0.5)])
        b.nodes.append(helper.make_node("Cast", [above], ["label"], to=onnx.TensorProto.INT64))
        return [helper.make_tensor_value_info("label", onnx.TensorProto.INT64, ["N", n_classes]),
                helper.make_tensor_value_info("probabilities", elem, ["N", n_classes])]
    if arch.sizes[-1] == 1:  # binary: one sigmoid output is P(classes_[1])
        p = b.op("Concat", [b.op("Sub", [b.constant("one", 1.0), p]), p], axis=1)
    b.nodes.append(helper.make_node("Identity", [p], ["probabilities"]))
    index = b.op("ArgMax", [p], axis=1, keepdims=0)
    classes = np.asarray(classes)
    if classes.dtype.kind in "iub":
        table, label_type = classes.astype(np.int64), onnx.TensorProto.INT64
    elif classes.dtype.kind in "UO" and all(isinstance(c, str) for c in classes):
        table, label_type = classes.astype(object), onnx.TensorProto.STRING
    else:
        raise ValueError(f"ONNX labels are int64 or strings; these classes have dtype "
                         f"{classes.dtype}: {classes.tolist()}")
    name = b.name("classes")
    b.initializers.append(onnx.numpy_helper.from_array(np.array(table), name))
    b.nodes.append(helper.make_node("Gather", [name, index], ["label"], axis=0))
    return [helper.make_tensor_value_info("label", label_type, ["N"]),
            helper.make_tensor_value_info("probabilities", elem, ["N", n_classes])]
