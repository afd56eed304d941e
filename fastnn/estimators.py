"""scikit-learn estimators: ``FastMLPClassifier`` and ``FastMLPRegressor``.

Drop-in counterparts of ``sklearn.neural_network.MLPClassifier`` and
``MLPRegressor`` (same parameter names and defaults, same fitted attributes), whose
every training run is one call of ``fastnn.trainer.fit``: the compiled whole-epoch
kernels, the optimizers of ``fastnn.optimizers`` and the schedules of
``fastnn.schedules``.

How scikit-learn's parameters map onto the trainer
--------------------------------------------------
* ``hidden_layer_sizes``, ``activation`` -> ``network.Architecture`` (scikit-learn's
  ``"logistic"`` is fastnn's ``"sigmoid"``; both names are accepted).  The head is
  chosen from the targets: one sigmoid output for a binary problem, softmax for
  multiclass, one sigmoid per label for a multilabel indicator matrix, identity
  (squared error) for regression.
* ``solver`` -> the optimizer: ``"sgd"`` (``momentum``, ``nesterovs_momentum``),
  ``"adam"`` (``beta_1``, ``beta_2``, ``epsilon``), and fastnn's ``"rmsprop"`` and
  ``"adadelta"`` (``rho``, ``epsilon``); ``learning_rate_init`` is the learning rate
  of all four.  ``"lbfgs"`` runs as scikit-learn runs it: ``scipy.optimize.minimize(
  method="L-BFGS-B")`` with ``maxiter=max_iter``, ``maxfun=max_fun``, ``gtol=tol``,
  on the compiled full-batch loss and gradient (``fastnn.kernels.objective``; all
  rows, the L2 term included), through ``trainer.fit_lbfgs``, the L-BFGS run that
  ``Sequential`` and the command line share; ``n_iter_`` is its iteration count, ``loss_`` its
  final loss, and it sets no ``loss_curve_`` and has no ``partial_fit``.
* Sparse X (CSR or CSC), as scikit-learn, with every solver: the first layer reads
  the non-zeros only (``fastnn.kernels.sparse``), the rest is the dense engine; a
  network without hidden layers takes X made dense.  ``predict`` takes it from any
  model.
* ``alpha`` -> ``l2``: ``0.5 * alpha * sum(W**2) / n_batch_rows`` is added to each
  batch's loss, as scikit-learn does (biases are not penalised); with sample
  weights scikit-learn divides by the batch's total weight instead.
* ``learning_rate``: scikit-learn's three names change the rate of ``"sgd"`` only, as
  there (other solvers keep ``learning_rate_init``): ``"constant"``;
  ``"invscaling"``: after each epoch the rate is ``learning_rate_init / (t + 1) **
  power_t``, t the rows seen (``t_``); ``"adaptive"``: when the stopping rule below
  fires, the rate is divided by 5 instead, and training stops only when the rate is
  already <= 1e-6.  fastnn's own schedules apply to every solver: ``"step"``
  (``StepDecay()``: x0.1 every 10 epochs), ``"cosine"`` (``Cosine(t_max=max_iter)``)
  and ``"plateau"`` (``ReduceOnPlateau()`` on the training loss: x0.1 after 10 epochs
  without an improvement of 1e-4).
* Convergence, scikit-learn's rule: after each epoch, the no-improvement count goes
  up when the training loss is not below the best loss seen minus ``tol`` (with
  ``early_stopping``: the validation accuracy or R^2 not above the best score plus
  ``tol``), and back to 0 otherwise; training stops once the count exceeds
  ``n_iter_no_change``.  The best value and the count carry over to ``warm_start``
  fits, as there.  With ``early_stopping``, ``validation_fraction`` of the rows are
  held out with ``train_test_split`` (stratified only for binary y, as scikit-learn
  does), and at the end the weights of the epoch with the best validation score are
  put back.  Reaching ``max_iter`` without stopping issues scikit-learn's
  ``ConvergenceWarning``.
* A ``y`` of a single class is fitted (one sigmoid output trained towards 0) and
  ``predict`` returns that class, as in scikit-learn.
* ``verbose`` prints scikit-learn's lines on stdout ("Iteration N, loss = ...", the
  validation score, why training stopped; L-BFGS-B's own report with lbfgs);
  ``progress=True`` draws fastnn's progress bar on stderr instead.
* The regressor's ``loss``: ``"squared_error"``, or ``"poisson"`` (scikit-learn's exp
  output and half Poisson deviance), with every solver: the network is an identity
  head with the poisson code (``Architecture(..., loss="poisson")``), whose compiled
  output delta is ``exp(z) - y`` (``kernels.dense.output_delta``); ``predict`` returns
  exp(z), ``loss_`` and ``loss_curve_`` are scikit-learn's ``poisson_loss`` (its
  constant ``y log y - y`` included), and with ``early_stopping`` the validation R^2
  is that of exp(z).  A negative target is refused (ValueError; scikit-learn's
  MLPRegressor trains on it with a NaN loss).
* ``batch_size="auto"`` is ``min(200, n_samples)``.
* ``dtype=None`` keeps float32 input in float32 (weights, outputs and all); any
  other input is converted to float64.  ``"float32"`` or ``"float64"`` force one.
* ``threads`` is the trainer's.

Seeding
-------
The first ``fit`` (or ``partial_fit``) makes one generator,
``check_random_state(random_state)``, and draws from it, in this order: the
initial weights (``network.init_params(arch, init, rng)``: ``init`` is one of
``network.INITIALIZERS``; the default, "sklearn", draws scikit-learn's initial
weights and biases from the same generator), the validation split (only with
``early_stopping``; as scikit-learn's ``train_test_split``), and the row order of every
epoch (``trainer.fit(..., random_state=rng)``: a fresh permutation each epoch, where
scikit-learn permutes the previous epoch's order, so the stochastic solvers' runs
differ from scikit-learn's from the second epoch on; lbfgs, which draws nothing
more, reproduces scikit-learn's fit to rounding).  The same generator is kept by
``warm_start`` fits and ``partial_fit`` calls (and saved with the model), so training
in several calls gives bitwise the weights of one longer call.  A fit that starts afresh makes a new
generator from ``random_state``.  (scikit-learn re-seeds at every call, so with an
integer random_state each of its warm-start calls draws its row orders from the
same starting state.)

``warm_start`` and ``partial_fit`` keep the weights, the optimizer with its state
(moments, step count) and the ``History``, which every call continues; a changed
optimizer hyperparameter (``set_params``) is honoured with the state carried over
when the state has the same layout.  A ``warm_start`` fit starts again from
``learning_rate_init``, ``partial_fit`` goes on with the rate "invscaling" or
"adaptive" reached (both as scikit-learn; scikit-learn's warm-start fit also resets
the momentum and moments, which fastnn keeps).

Interrupting ``fit`` with Ctrl-C (SIGINT) or SIGTERM ends training at the next
mini-batch boundary: the estimator keeps the weights reached, with all fitted
attributes consistent (``n_iter_`` and ``loss_curve_`` count finished epochs, ``t_``
every row trained on), warns ``"training interrupted after epoch N ..."`` and
returns.  A later ``fit`` with ``warm_start=True`` and the same data first
finishes the interrupted epoch (the weights then equal those of an uninterrupted
run), also after ``save`` and ``fastnn.load``; ``partial_fit`` abandons it.
A non-finite loss or weight raises ``fastnn.DivergenceError``, which is also a
``ValueError``, with scikit-learn's message ("Solver produced non-finite parameter
weights...") followed by fastnn's; the estimator then holds the weights of the last
finished epoch.  With ``early_stopping`` a diverging run ends as scikit-learn's
does: the diverged epoch's validation score is NaN, the best weights are put back,
and there is no error (a ``DivergenceWarning``, a RuntimeWarning, says so).

``coefs_`` and ``intercepts_`` are lists of *views* into the flat parameter buffer:
writing into them, assigning one of them (``coefs_[0] = W``) or assigning the whole
list (``coefs_ = [...]``, arrays of the same shapes) changes the model, and a later
``warm_start`` fit or ``partial_fit`` updates them in place; a fit that starts
afresh allocates a new buffer.
"""

import dataclasses
import math
import numbers
import sys
import warnings

import numpy as np
from scipy.sparse import issparse
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state, column_or_1d
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.fixes import _get_additional_lbfgs_options_dict
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import (_check_partial_fit_first_call,
                                      check_classification_targets, type_of_target,
                                      unique_labels)
from sklearn.utils.optimize import _check_optimize_result
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from . import model_io, trainer
from .checks import check_weights, class_sample_weight
from .kernels.sparse import sparse_readable
from .metrics import scores
from .names import ACTIVATIONS, SKLEARN_ACTIVATIONS, SKLEARN_OUT_ACTIVATIONS
from .network import INITIALIZERS, Architecture, init_params, layer_views
from .optimizers import make_optimizer
from .schedules import make_schedule

#: sklearn's "adaptive" rule: divide by 5; stop when a reduction would start at <= 1e-6.
_ADAPTIVE_DIVISOR = 5.0
_ADAPTIVE_MIN_LR = 1e-6

#: scikit-learn's learning_rate names, which (as there) only the "sgd" solver follows;
#: the others are fastnn's schedules, applied with every solver.
_SKLEARN_SCHEDULES = ("constant", "invscaling", "adaptive")

#: scikit-learn's message for a fit whose weights are no longer finite.
_NON_FINITE_MESSAGE = ("Solver produced non-finite parameter weights. The input data may contain "
                       "large values and need to be preprocessed.")


class _BaseFastMLP(BaseEstimator):
    """Shared parameters, training and persistence of the two estimators."""

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(numbers.Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(SKLEARN_ACTIVATIONS))],
        "solver": [StrOptions({"lbfgs", "sgd", "adam", "rmsprop", "adadelta"})],
        "alpha": [Interval(numbers.Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(numbers.Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive", "step", "cosine",
                                      "plateau"})],
        "learning_rate_init": [Interval(numbers.Real, 0, None, closed="neither")],
        "power_t": [Interval(numbers.Real, 0, None, closed="left")],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(numbers.Real, 0, 1, closed="left")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="left")],
        "beta_1": [Interval(numbers.Real, 0, 1, closed="left")],
        "beta_2": [Interval(numbers.Real, 0, 1, closed="left")],
        "epsilon": [Interval(numbers.Real, 0, None, closed="neither")],
        "rho": [None, Interval(numbers.Real, 0, 1, closed="left")],
        "n_iter_no_change": [Interval(numbers.Integral, 1, None, closed="left"),
                             Options(numbers.Real, {np.inf})],
        "max_fun": [Interval(numbers.Integral, 1, None, closed="left")],
        "progress": ["boolean"],
        "dropout": [Interval(numbers.Real, 0, 1, closed="left")],
        "negative_slope": [Interval(numbers.Real, 0, 1, closed="left")],
        "init": [StrOptions(set(INITIALIZERS))],
        "dtype": [None, StrOptions({"float32", "float64"}),
                  Options(type, {np.float32, np.float64})],
        "threads": [None, Interval(numbers.Integral, 1, None, closed="left")],
    }

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 rho=None, progress=False, init="sklearn", dtype=None, threads=None,
                 dropout=0.0, negative_slope=0.2):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.rho = rho
        self.progress = progress
        self.init = init
        self.dtype = dtype
        self.threads = threads
        self.dropout = dropout
        self.negative_slope = negative_slope

    # ------------------------------------------------------------------
    # Fitted attributes backed by the flat buffer
    # ------------------------------------------------------------------

    @property
    def coefs_(self):
        """list of ndarray of shape (fan_in, fan_out): views into the flat parameter buffer.

        Assigning a list of arrays of those shapes (or one item, ``coefs_[i] = W``)
        writes them into the buffer.
        """
        self._require_fitted("coefs_")
        return _BufferViews("coefs_", [W for W, _ in layer_views(self._arch, self._params)])

    @coefs_.setter
    def coefs_(self, values):
        self.coefs_[:] = values

    @property
    def intercepts_(self):
        """list of ndarray of shape (fan_out,): views into the flat parameter buffer.

        Assignable as ``coefs_`` is.
        """
        self._require_fitted("intercepts_")
        return _BufferViews("intercepts_", [b for _, b in layer_views(self._arch, self._params)])

    @intercepts_.setter
    def intercepts_(self, values):
        self.intercepts_[:] = values

    def _require_fitted(self, name):
        if "_params" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__} has no attribute {name!r} before fit")

    # ------------------------------------------------------------------
    # Training
    # ------------------------------------------------------------------

    def _hidden_sizes(self):
        sizes = self.hidden_layer_sizes
        sizes = [sizes] if np.ndim(sizes) == 0 else list(sizes)
        if not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) and s > 0
                   for s in sizes):
            raise ValueError(f"hidden_layer_sizes must hold integers > 0, got "
                             f"{self.hidden_layer_sizes!r}")
        return [int(s) for s in sizes]

    def _make_optimizer(self):
        """A fresh Optimizer from the solver parameters (None for "lbfgs", which has none)."""
        if self.solver == "lbfgs":
            return None
        lr = float(self.learning_rate_init)
        if self.solver == "sgd":
            momentum = float(self.momentum)
            spec = {"name": "sgd", "momentum": momentum,
                    "nesterov": bool(self.nesterovs_momentum and momentum > 0)}
        elif self.solver == "adam":
            spec = {"name": "adam", "beta1": float(self.beta_1), "beta2": float(self.beta_2),
                    "eps": float(self.epsilon)}
        else:
            spec = {"name": self.solver, "eps": float(self.epsilon)}
            if self.rho is not None:
                spec["rho"] = float(self.rho)
        return make_optimizer(spec, lr)

    def _continued_optimizer(self, incremental):
        """The kept Optimizer; with changed hyperparameters a new one holding the old state.

        ``fit`` starts from learning_rate_init again (scikit-learn makes a new optimizer
        there); ``partial_fit`` goes on with the rate the schedule had reached.
        """
        old, new = self._optimizer, self._make_optimizer()
        if old is None or new is None:
            return new
        if incremental:
            new.lr = old.lr
        if new.get_config() == old.get_config():
            return old
        if type(new) is type(old) and new.n_slots == old.n_slots:
            new.slots, new.iterations = old.slots, old.iterations
        return new

    def _monitor(self):
        return f"val_{self._metric}" if self.early_stopping else "loss"

    def _schedule(self):
        """The trainer's schedule: fastnn's own by name, or constant for scikit-learn's names
        (``_ScikitLearnRule`` then sets the optimizer's rate as scikit-learn does)."""
        name = self.learning_rate
        if name in _SKLEARN_SCHEDULES:
            return make_schedule("constant")
        settings = {"cosine": {"t_max": int(self.max_iter)}}.get(name, {})
        return make_schedule({"name": name, **settings})

    def _fit(self, X, y, sample_weight, incremental):
        if _is_dask_collection(X) or _is_dask_collection(y):
            if incremental:
                raise ValueError("partial_fit does not take Dask arrays; fit trains on them "
                                 "data-parallel (fastnn.distributed)")
            return self._fit_dask(X, y, sample_weight)
        fitted = "_params" in self.__dict__
        first = not (fitted and (incremental or self.warm_start))
        hidden = self._hidden_sizes()
        if incremental and self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        if self.dtype is not None:
            dtype = np.dtype(self.dtype).type
        elif first:
            dtype = (np.float64, np.float32)
        else:  # the network's dtype
            dtype = np.dtype(self._arch.dtype).type
        X, y = validate_data(self, X, y, multi_output=True, dtype=dtype, reset=first,
                             accept_sparse=["csr", "csc"],
                             y_numeric=not isinstance(self, ClassifierMixin))
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        self._check_targets(y)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=X.dtype,
                                                 ensure_non_negative=True, copy=True)
        class_weight = getattr(self, "class_weight", None)  # classifiers only
        if class_weight is not None:
            if y.ndim != 1:
                raise ValueError("class_weight is not supported for multilabel targets")
            sample_weight = class_sample_weight(class_weight, y, sample_weight).astype(X.dtype)
        Y, encoder = self._encode_targets(y, sample_weight, first, incremental)
        activations = tuple(ACTIVATIONS[self.activation] for _ in hidden)
        arch = Architecture((X.shape[1], *hidden, Y.shape[1]), activations, self._head(encoder),
                            X.dtype.name, float(self.negative_slope), self._arch_loss())
        if issparse(X) and not sparse_readable(arch):  # no hidden layer to read it
            X = X.toarray()
        if first:
            rng = check_random_state(self.random_state)
            params = init_params(arch, self.init, rng)
            optimizer, history, t = self._make_optimizer(), trainer.History(), 0
            no_improvement_count, best_params = 0, params.copy()
        else:
            if arch != self._arch:
                raise ValueError(
                    f"warm_start and partial_fit continue the network {self._arch}, but the "
                    f"parameters and data now ask for {arch}; fit with warm_start=False to "
                    f"start afresh")
            rng, params, history, t = self._rng, self._params, self._history, self.t_
            optimizer = self._continued_optimizer(incremental)
            no_improvement_count = getattr(self, "_no_improvement_count", 0)
            best_params = getattr(self, "_best_params", None)
            if best_params is None or best_params.shape != params.shape:
                best_params = params.copy()
        if self.solver == "lbfgs":
            if self.dropout:
                raise ValueError("dropout needs a mini-batch solver ('sgd', 'adam', 'rmsprop' or "
                                 "'adadelta'), not 'lbfgs'")
            return self._fit_lbfgs(arch, params, X, Y, sample_weight, optimizer, history, rng,
                                   encoder, t)
        # The dropout masks' seed: drawn once, after the weights, and kept by later calls.
        if first or getattr(self, "_dropout_seed", None) is None:
            self._dropout_seed = (int(rng.randint(0, 2**63 - 1, dtype=np.int64)) if self.dropout
                                  else None)
        dropout = (0.0, *[float(self.dropout)] * len(hidden)) if self.dropout else None

        X_train, Y_train, weights, validation = X, Y, sample_weight, None
        if self.early_stopping:
            if self.validation_fraction == 0:
                raise ValueError("early_stopping=True needs validation_fraction > 0")
            # As scikit-learn: stratified on the labels only with one output column (binary
            # y), never for multiclass or multilabel y; on the same bool column, so that
            # the error for a class of one member names it as scikit-learn does ('True').
            binary = isinstance(self, ClassifierMixin) and Y.shape[1] == 1
            stratify = Y.astype(bool) if binary else None
            arrays = [X, Y] if sample_weight is None else [X, Y, sample_weight]
            parts = train_test_split(*arrays, test_size=self.validation_fraction,
                                     random_state=rng, stratify=stratify)
            X_train, Y_train, validation = parts[0], parts[2], (parts[1], parts[3])
            weights = parts[4] if sample_weight is not None else None
            if validation[0].shape[0] < 2:
                raise ValueError("The validation set is too small. Increase 'validation_fraction' "
                                 "or the size of your dataset.")
        n_train = X_train.shape[0]
        if self.batch_size == "auto":
            batch_size = min(200, n_train)
        else:
            if self.batch_size > n_train:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is "
                              "going to be clipped")
            batch_size = min(int(self.batch_size), n_train)

        self._drop_unfinishable_epoch(history, n_train, batch_size, incremental)
        epochs_before, rows_before = history.epochs, _partial_rows(history)
        # The trainer scores validation rows on the head's output, which for poisson is z,
        # not the prediction exp(z): the rule scores them then (_ScikitLearnRule).
        own_scores = validation is not None and self._exp_output()
        rule = _ScikitLearnRule(self, params, n_train, t, no_improvement_count, best_params,
                                (arch, validation) if own_scores else None)

        def commit():
            n_iter = history.epochs - epochs_before
            rows = n_iter * n_train - rows_before + _partial_rows(history)
            self._commit(arch, params, optimizer, history, rng, encoder, n_iter, t + rows)
            self._no_improvement_count = rule.no_improvement_count
            self._best_params = rule.best_params

        # With early_stopping a diverging run ends as scikit-learn's does: the diverged
        # epoch scores NaN, the best weights come back, and there is no error (only
        # trainer.DivergenceWarning, a RuntimeWarning); without, DivergenceError.
        on_divergence = "stop" if self.early_stopping else "raise"
        try:
            trainer.fit(arch, params, X_train, Y_train,
                        epochs=1 if incremental else int(self.max_iter), batch_size=batch_size,
                        optimizer=optimizer, schedule=self._schedule(), l2=float(self.alpha),
                        sample_weight=weights,
                        validation_data=None if own_scores else validation,
                        metrics=[self._metric] if self.early_stopping and not own_scores else (),
                        train_metrics=False, on_divergence=on_divergence, callbacks=[rule],
                        progress=bool(self.progress), history=history, random_state=rng,
                        shuffle=self.shuffle, threads=self.threads, dropout=dropout,
                        dropout_seed=self._dropout_seed or 0)
        except trainer.DivergenceError as error:
            commit()  # params hold the last finished epoch (or the initial weights)
            raise trainer.DivergenceError(f"{_NON_FINITE_MESSAGE} ({error})") from error
        except BaseException:
            # A continued model was changed in place: keep its attributes in step with it.
            # A first fit that trained nothing leaves the estimator as it was.
            if not first or history.epochs > epochs_before:
                commit()
            raise
        commit()
        if history.stop_reason == "interrupted":
            rows = _partial_rows(history)
            partial = "" if getattr(history, "partial", None) is None else (
                f" and {rows} of {n_train} rows of epoch {history.epochs + 1} (fit again with "
                f"warm_start=True and the same data to finish it)")
            warnings.warn(f"training interrupted after epoch {history.epochs}{partial}",
                          UserWarning, stacklevel=4)
        elif not incremental and history.stop_reason is None and self.n_iter_ == self.max_iter:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached "
                          f"and the optimization hasn't converged yet.", ConvergenceWarning,
                          stacklevel=4)
        return self

    def _fit_lbfgs(self, arch, params, X, Y, sample_weight, optimizer, history, rng, encoder, t):
        """scikit-learn's L-BFGS run: ``trainer.fit_lbfgs`` (scipy's L-BFGS-B on the
        full-batch loss) with maxfun=max_fun, maxiter=max_iter, gtol=tol, as scikit-learn
        sets them; its ConvergenceWarning.  Returns self.

        The objective is fit_lbfgs's own (the compiled full-batch one, for sparse X
        and loss="poisson" too).  Its iterations are not added to the estimator's
        history (scikit-learn's lbfgs keeps no loss curve).
        """
        weights = check_weights(sample_weight, X.shape[0], arch.dtype)
        iprint = 1 if self.verbose is True or self.verbose >= 1 else -1
        iterations = trainer.History()
        try:
            result = trainer.fit_lbfgs(
                arch, params, X, Y, max_iter=self.max_iter, max_fun=self.max_fun, tol=self.tol,
                l2=float(self.alpha), sample_weight=weights,
                history=iterations, threads=self.threads, catch_signals=False,
                scipy_options=_get_additional_lbfgs_options_dict("iprint", iprint))
        except trainer.DivergenceError as error:
            # params hold the last finite iterate (or the starting point)
            self._lbfgs_loss = iterations.loss[-1] if iterations.loss else None
            self._commit(arch, params, optimizer, history, rng, encoder, iterations.epochs, t)
            raise trainer.DivergenceError(f"{_NON_FINITE_MESSAGE} ({error})") from error
        n_iter = _check_optimize_result("lbfgs", result, self.max_iter)
        self._lbfgs_loss = float(result.fun)
        self._commit(arch, params, optimizer, history, rng, encoder, n_iter, t)
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    def _arch_loss(self):
        """The network's ``Architecture.loss``: None (the head's own) but for the
        regressor's poisson."""
        return None

    def _exp_output(self):
        """Whether the output is exp of the identity head's (the regressor's poisson)."""
        return self._arch_loss() == "poisson"

    def _check_targets(self, y):
        """Refuse targets outside the loss's range (negative ones for poisson)."""
        if self._exp_output() and bool((y < 0).any()):
            raise ValueError("Some value(s) of y are out of the valid range of the loss "
                             "'poisson': it needs y >= 0")

    def _validation_scores(self, arch, params, X, Y):
        """{"val_loss", "val_" + _metric}: the loss and score of the prediction exp(z) on
        validation rows, for poisson (the trainer's scores see z)."""
        z = trainer.predict_output(arch, params, X, threads=self.threads)
        values = scores("poisson", z, Y, prefix="val_")
        with np.errstate(over="ignore"):  # an infinite prediction scores NaN
            values.update(scores(arch.head, np.exp(z), Y, [self._metric], "val_",
                                 with_loss=False))
        return values

    def _check_solver(self):
        """partial_fit's availability: only stochastic solvers have it, as in scikit-learn."""
        if self.solver == "lbfgs":
            raise AttributeError(f"partial_fit is only available for stochastic optimizers. "
                                 f"{self.solver} is not stochastic.")
        return True

    def _fit_dask(self, X, y, sample_weight=None):
        """Train data-parallel on Dask arrays (``fastnn.distributed.fit``); return self.

        The estimator's parameters mean what they mean for ``fit`` (the seeding
        included: with one partition the fitted weights are bitwise those of ``fit``
        on the same NumPy arrays), except that ``early_stopping`` and ``warm_start``
        are not supported here, and ``batch_size="auto"`` is ``min(200, n_samples)``
        rows per batch of each partition.  Classifiers take 1-D labels; the classes
        are found with one ``dask.array.unique`` pass.
        """
        import dask
        import dask.array as da

        from . import distributed  # needs the dask extra

        self._validate_params()
        self._check_targets(y)
        if self.solver == "lbfgs":
            raise ValueError("solver='lbfgs' is not supported with Dask arrays")
        if self.dropout:
            raise ValueError("dropout is not supported with Dask arrays (data-parallel training)")
        if self.early_stopping:
            raise ValueError("early_stopping=True is not supported with Dask arrays: pass "
                             "validation data to fastnn.distributed.fit instead")
        if self.warm_start and "_params" in self.__dict__:
            raise ValueError("warm_start is not supported with Dask arrays")
        if not dask.is_dask_collection(X):
            X = np.asarray(X)
        if X.ndim != 2:
            raise ValueError(f"X must have 2 dimensions, got shape {X.shape}")
        if self.dtype is not None:
            dtype = np.dtype(self.dtype).name
        else:
            dtype = "float32" if X.dtype == np.float32 else "float64"
        if isinstance(self, ClassifierMixin):
            if y.ndim != 1:
                raise ValueError("with Dask arrays, classifiers take 1-D labels y")
            classes = da.unique(y).compute() if dask.is_dask_collection(y) else np.unique(y)
            if len(classes) < 2:
                raise ValueError(f"{type(self).__name__} needs at least two classes to train; "
                                 f"y has one class: {classes.tolist()}")
            encoder = LabelBinarizer().fit(classes)
            encode, n_outputs = encoder.transform, (1 if len(classes) == 2 else len(classes))
            head = self._head(encoder)
        else:
            encoder, head = None, "identity"
            n_outputs = 1 if y.ndim == 1 else y.shape[1]
            encode = _column if y.ndim == 1 else None
        hidden = self._hidden_sizes()
        arch = Architecture((X.shape[1], *hidden, n_outputs),
                            tuple(ACTIVATIONS[self.activation] for _ in hidden), head, dtype,
                            float(self.negative_slope), self._arch_loss())
        rng = check_random_state(self.random_state)
        params = init_params(arch, self.init, rng)
        optimizer = self._make_optimizer()
        rule = _ScikitLearnRule(self, params, X.shape[0], 0, 0, None)
        n = X.shape[0]
        batch_size = min(200 if self.batch_size == "auto" else int(self.batch_size), n)
        history = distributed.fit(arch, params, X, y, epochs=int(self.max_iter),
                                  batch_size=batch_size, optimizer=optimizer,
                                  schedule=self._schedule(), l2=float(self.alpha),
                                  sample_weight=sample_weight, callbacks=[rule], random_state=rng,
                                  shuffle=self.shuffle, encode=encode, threads=self.threads)
        self.n_features_in_ = X.shape[1]
        self._commit(arch, params, optimizer, history, rng, encoder, history.epochs,
                     history.epochs * n)
        self._no_improvement_count = rule.no_improvement_count
        if history.stop_reason is None and self.n_iter_ == self.max_iter:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached "
                          f"and the optimization hasn't converged yet.", ConvergenceWarning,
                          stacklevel=3)
        return self

    def _commit(self, arch, params, optimizer, history, rng, encoder, n_iter, t):
        """Make a training run's state the estimator's fitted state."""
        self._arch, self._params, self._optimizer = arch, params, optimizer
        self._history, self._rng = history, rng
        self._set_encoder(encoder)
        self.n_iter_, self.t_ = int(n_iter), int(t)
        self._set_derived_attributes()

    @staticmethod
    def _drop_unfinishable_epoch(history, n_train, batch_size, incremental):
        """Forget an epoch interrupted part-way that this call cannot finish.

        ``fit`` with warm_start finishes it when given the same number of rows and
        batch size (the same data, for a result identical to an uninterrupted run);
        ``partial_fit`` makes one pass over its own data, so it always starts afresh.
        """
        partial = getattr(history, "partial", None)
        if partial is None:
            return
        if not incremental:
            if partial.order.shape[0] == n_train and partial.next_row % batch_size == 0:
                return
            warnings.warn(f"the epoch interrupted after {partial.next_row} of "
                          f"{partial.order.shape[0]} rows is abandoned: this fit has {n_train} "
                          f"rows in batches of {batch_size}", UserWarning, stacklevel=5)
        history.partial = None

    def _set_derived_attributes(self):
        """Attributes that follow from the architecture, the history and the parameters."""
        self.n_outputs_ = self._arch.sizes[-1]
        self.n_layers_ = len(self._arch.sizes)
        self.out_activation_ = ("exp" if self._exp_output()
                                else SKLEARN_OUT_ACTIVATIONS[self._arch.head])
        if self.solver == "lbfgs":  # scikit-learn's lbfgs sets loss_ only, no curves
            self.loss_ = getattr(self, "_lbfgs_loss", None)
            for name in ("loss_curve_", "best_loss_", "validation_scores_",
                         "best_validation_score_"):
                self.__dict__.pop(name, None)
            return
        self.loss_curve_ = list(self._history.loss)
        self.loss_ = self.loss_curve_[-1] if self.loss_curve_ else None
        if self.early_stopping:
            self.validation_scores_ = list(self._history.history.get(self._monitor(), []))
            if self._history.stop_reason == "diverged":  # the epoch dropped, as scikit-learn
                self.validation_scores_.append(float("nan"))  # scores a non-finite network
            finite = [v for v in self.validation_scores_ if not math.isnan(v)]
            self.best_validation_score_ = (max(finite, default=-np.inf)  # NaN never best
                                           if self.validation_scores_ else None)
            self.best_loss_ = None
        else:
            self.validation_scores_ = self.best_validation_score_ = None
            self.best_loss_ = min(self.loss_curve_) if self.loss_curve_ else None

    def _output(self, X):
        """Head output for X, ndarray of shape (n_samples, n_outputs) in the network's dtype."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.dtype(self._arch.dtype).type,
                          accept_sparse=["csr", "csc"])
        return trainer.predict_output(self._arch, self._params, X, threads=self.threads)

    # ------------------------------------------------------------------
    # Pickling and saving
    # ------------------------------------------------------------------

    def __setstate__(self, state):
        super().__setstate__(state)
        # A read-only copy (joblib's memmaps) could not be trained further, and would make
        # Numba compile its kernels again for read-only arrays.
        if "_params" in self.__dict__ and not self._params.flags.writeable:
            self._params = np.array(self._params)
        arch = self.__dict__.get("_arch")
        if arch is not None and arch.loss != self._arch_loss():  # pickled before Architecture.loss
            self._arch = dataclasses.replace(arch, loss=self._arch_loss())
        slots = getattr(self.__dict__.get("_optimizer"), "slots", None)
        if slots is not None and not slots.flags.writeable:
            self._optimizer.slots = np.array(slots)

    def save(self, path):
        """Write the fitted estimator to path (one ``.npz`` file; ``fastnn.load`` reads it).

        Stored: ``get_params()``, the weights, the optimizer with its state, the shuffling
        generator, the history and the fitted attributes, so the loaded estimator predicts
        bitwise identically and continues training (``warm_start``, ``partial_fit``)
        exactly as this one would.  Class labels are stored as a JSON list with their
        dtype and come back with the same dtype and values (labels of object dtype that
        are neither strings nor numbers would come back as their ``str()``).  A
        RandomState given as random_state is stored as None; the generator used for
        shuffling is stored with its state.
        """
        return model_io.save_model(path, self)

    def _saved_state(self):
        check_is_fitted(self)
        fitted = {"n_iter_": self.n_iter_, "t_": self.t_, "n_features_in_": self.n_features_in_,
                  "no_improvement_count": int(getattr(self, "_no_improvement_count", 0))}
        if self.solver == "lbfgs":
            fitted["loss_"] = self.loss_
        if getattr(self, "_dropout_seed", None) is not None:
            fitted["dropout_seed"] = self._dropout_seed
        if hasattr(self, "feature_names_in_"):
            fitted["feature_names_in_"] = [str(name) for name in self.feature_names_in_]
        fitted.update(self._encoder_config())
        config = {"params": {name: _to_json(value) for name, value in self.get_params().items()},
                  "fitted": fitted}
        return model_io.SavedModel(type(self).__name__, self._arch, self._params, config,
                                   self._optimizer, self._rng, self._history)

    @classmethod
    def _from_saved(cls, saved):
        if saved.kind != cls.__name__:
            raise ValueError(f"a {saved.kind} file, not a {cls.__name__}")
        params = {name: _from_json(value) for name, value in saved.config["params"].items()}
        model = cls(**params)
        fitted = saved.config["fitted"]
        # A model file keeps the head, not the loss it trains (Architecture.loss).
        model._arch = dataclasses.replace(saved.arch, loss=model._arch_loss())
        model._params = saved.params
        optimizer = saved.optimizer
        model._optimizer = optimizer if optimizer is not None else model._make_optimizer()
        model._rng = saved.rng if saved.rng is not None else check_random_state(None)
        model._history = saved.history if saved.history is not None else trainer.History()
        model._history.optimizer = model._optimizer
        model.n_features_in_ = int(fitted["n_features_in_"])
        if "feature_names_in_" in fitted:
            model.feature_names_in_ = np.array(fitted["feature_names_in_"], dtype=object)
        model._set_encoder(model._encoder_from_config(fitted))
        model.n_iter_, model.t_ = int(fitted["n_iter_"]), int(fitted["t_"])
        model._no_improvement_count = int(fitted.get("no_improvement_count", 0))
        model._dropout_seed = fitted.get("dropout_seed")
        if "loss_" in fitted:
            model._lbfgs_loss = fitted["loss_"]
        model._set_derived_attributes()
        return model


class _ScikitLearnRule(trainer.Callback):
    """The end of every epoch as scikit-learn's ``_fit_stochastic`` has it.

    In order: with verbose, the line "Iteration N, loss = ..." on stdout (N counts
    this call's epochs); the no-improvement count, against the best value seen in
    the whole history (the training loss, or with early_stopping the validation
    score, whose best weights are kept); for "sgd" with "invscaling", the rate
    learning_rate_init / (rows seen + 1) ** power_t; and once the count exceeds
    n_iter_no_change, a stop (StopTraining), or for "sgd" with "adaptive" the rate
    divided by 5 and the count restarted, until a rate <= 1e-6 would be divided.
    The rate is the optimizer's (``history.optimizer.lr``), which the trainer reads
    at the start of every epoch.

    params is the flat buffer trained (its best copy is restored at the end with
    early_stopping), n_train the training rows per epoch, rows_seen scikit-learn's t_
    before this call, no_improvement_count and best_params (or None: params now) the
    state an earlier call left.  validation is None, or (arch, (X_val, Y_val)) for the
    rule to score first, into the logs and the history (``_validation_scores``: the
    poisson regressor's, which the trainer cannot score).
    """

    def __init__(self, estimator, params, n_train, rows_seen, no_improvement_count, best_params,
                 validation=None):
        self.estimator, self.params, self.n_train = estimator, params, n_train
        self.validation = validation
        self.prints_epochs = bool(estimator.verbose)  # its lines: the compile notice first
        self.rows_seen = rows_seen
        self.no_improvement_count = no_improvement_count
        self.best_params = params.copy() if best_params is None else best_params

    def on_train_begin(self, history):
        self.history, self.n_iter = history, 0
        estimator = self.estimator
        # The best of the earlier calls' values (a NaN score never counts as the best).
        if estimator.early_stopping:
            scores = history.history.get(estimator._monitor(), [])
            self.best = max((v for v in scores if not math.isnan(v)), default=-np.inf)
        else:
            self.best = min((v for v in history.loss if not math.isnan(v)), default=np.inf)

    def on_epoch_end(self, epoch, logs):
        estimator, tol = self.estimator, self.estimator.tol
        verbose = bool(estimator.verbose)
        if self.validation is not None:
            arch, (X_val, Y_val) = self.validation
            values = estimator._validation_scores(arch, self.params, X_val, Y_val)
            logs.update(values)
            for key, value in values.items():
                self.history.history.setdefault(key, []).append(value)
        self.n_iter += 1
        self.rows_seen += self.n_train
        if verbose:
            print("Iteration %d, loss = %.8f" % (self.n_iter, logs["loss"]))
        if estimator.early_stopping:
            score = logs[estimator._monitor()]
            if verbose:
                print("Validation score: %f" % score)
            # A NaN score (a diverging network) compares False both times, as there.
            self.no_improvement_count = (self.no_improvement_count + 1
                                         if score < self.best + tol else 0)
            if score > self.best:
                self.best, self.best_params = score, self.params.copy()
        else:
            loss = logs["loss"]
            self.no_improvement_count = (self.no_improvement_count + 1
                                         if loss > self.best - tol else 0)
            self.best = min(self.best, loss)
        optimizer = self.history.optimizer
        sgd = estimator.solver == "sgd"
        if sgd and estimator.learning_rate == "invscaling":
            optimizer.lr = (float(estimator.learning_rate_init)
                            / (self.rows_seen + 1) ** estimator.power_t)
        if self.no_improvement_count > estimator.n_iter_no_change:
            watched = "Validation score" if estimator.early_stopping else "Training loss"
            message = (f"{watched} did not improve more than tol={tol:f} for "
                       f"{estimator.n_iter_no_change:d} consecutive epochs.")
            if not (sgd and estimator.learning_rate == "adaptive"):
                _say(verbose, message + " Stopping.")
                raise trainer.StopTraining
            if optimizer.lr <= _ADAPTIVE_MIN_LR:
                _say(verbose, message + " Learning rate too small. Stopping.")
                raise trainer.StopTraining
            optimizer.lr /= _ADAPTIVE_DIVISOR
            _say(verbose, message + " Setting learning rate to %f" % optimizer.lr)
            self.no_improvement_count = 0

    def on_train_end(self, history):
        if self.estimator.early_stopping:  # scikit-learn's "restore best weights"
            self.params[:] = self.best_params


def _say(verbose, line):
    if verbose:
        print(line)


class _BufferViews(list):
    """coefs_ or intercepts_: a list of views into the flat buffer, written on item assignment.

    ``views[i] = array`` copies array into the buffer (shapes must match), and so does
    slice assignment of a list of arrays; the list itself never changes length.
    """

    def __init__(self, name, views):
        super().__init__(views)
        self.name = name

    def __setitem__(self, index, value):
        if isinstance(index, slice):
            targets, values = list.__getitem__(self, index), list(value)
            if len(values) != len(targets):
                raise ValueError(f"{self.name} holds {len(targets)} arrays here, got "
                                 f"{len(values)}")
            for target, array in zip(targets, values):
                self._write(target, array)
        else:
            self._write(list.__getitem__(self, index), value)

    def _write(self, target, value):
        value = np.asarray(value)
        if value.shape != target.shape:
            raise ValueError(f"{self.name}: an array of shape {target.shape} is needed here "
                             f"(the network's layer), got shape {value.shape}")
        target[...] = value


class FastMLPClassifier(ClassifierMixin, _BaseFastMLP):
    """Multi-layer perceptron classifier trained by fastnn's compiled loop.

    scikit-learn's ``MLPClassifier`` with fastnn's engine: the parameters, their
    defaults and the fitted attributes are scikit-learn's; how each maps onto
    ``fastnn.trainer.fit`` is written out in the module docstring.

    Parameters
    ----------
    hidden_layer_sizes : array-like of int or int, default=(100,)
        Width of each hidden layer; empty for none.
    activation : {"identity", "logistic", "sigmoid", "tanh", "relu", "leaky_relu", "elu", \
"selu", "gelu", "softplus", "silu"}, default="relu"
        Hidden activation ("logistic" and "sigmoid" are the same function; formulas in
        ``fastnn.kernels.activations``).
    solver : {"lbfgs", "sgd", "adam", "rmsprop", "adadelta"}, default="adam"
        "lbfgs" is scipy's L-BFGS-B on the full-batch loss (module docstring).
    alpha : float, default=1e-4
        L2 penalty on the weights, scaled as scikit-learn scales it.
    batch_size : int or "auto", default="auto"
        Rows per mini-batch; "auto" is min(200, n_samples).
    learning_rate : {"constant", "invscaling", "adaptive", "step", "cosine", "plateau"}, \
default="constant"
        scikit-learn's three change "sgd"'s rate only, as there; fastnn's "step",
        "cosine" and "plateau" apply to every solver (module docstring).
    learning_rate_init : float, default=0.001
    power_t : float, default=0.5
        Exponent of "invscaling".
    max_iter : int, default=200
        Epochs per ``fit`` (iterations for "lbfgs").
    shuffle : bool, default=True
        Draw a new row order every epoch.
    random_state : int, RandomState or None, default=None
        Seeds the initial weights, the validation split and the row orders (module
        docstring, "Seeding").
    tol : float, default=1e-4
        Smallest improvement that counts, for convergence and early stopping.
    verbose : bool, default=False
        Print scikit-learn's lines on stdout ("Iteration N, loss = ...").
    warm_start : bool, default=False
        Continue from the fitted weights, optimizer state and history.
    momentum : float in [0, 1), default=0.9
        SGD momentum.
    nesterovs_momentum : bool, default=True
    early_stopping : bool, default=False
        Hold out validation_fraction of the rows and stop on the validation accuracy.
    validation_fraction : float in [0, 1), default=0.1
        Must be > 0 with early_stopping.
    beta_1, beta_2 : float in [0, 1), default=0.9, 0.999
        Adam's moment decay rates.
    epsilon : float, default=1e-8
        Adam's (also RMSprop's and Adadelta's) denominator offset.
    n_iter_no_change : int or np.inf, default=10
        Epochs without an improvement by tol on the best value seen that are
        tolerated (scikit-learn's rule).
    max_fun : int, default=15000
        Most loss evaluations of "lbfgs".
    rho : float in [0, 1) or None, default=None
        RMSprop's or Adadelta's decay (None: 0.9 and 0.95).
    progress : bool, default=False
        fastnn's own: draw the Keras-style progress bar on stderr.
    init : {"sklearn", "glorot_uniform", "he_normal", "normal"}, default="sklearn"
        Initialiser of ``fastnn.network.init_params``.  "sklearn" is scikit-learn's
        rule and draw order (weights and biases uniform, Glorot's bound, halved
        variance for "logistic"), so with the same random_state the network starts
        from scikit-learn's initial weights; the others start the biases at zero.
    dtype : {"float32", "float64"} or None, default=None
        None keeps float32 input in float32 and converts anything else to float64.
    threads : int or None, default=None
        Threads for training and prediction (None: Numba's setting).
    negative_slope : float in [0, 1), default=0.2
        leaky_relu's slope for z < 0 (Keras 3's default; PyTorch's is 0.01).
    dropout : float in [0, 1), default=0.0
        Dropout rate of every hidden layer's output during training (inverted
        dropout, off at prediction; masks from ``fastnn.kernels.dropout``, bitwise
        the same with any thread count); not with solver="lbfgs".
    class_weight : dict, "balanced" or None, default=None
        {class label: weight} or "balanced" (n_samples / (n_classes * count)); each
        row's sample weight is multiplied by its class's weight (scikit-learn's
        ``compute_sample_weight``).  Naming a class y does not hold is an error.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    coefs_ : list of ndarray of shape (fan_in, fan_out)
        Views into the flat parameter buffer.
    intercepts_ : list of ndarray of shape (fan_out,)
        Views into the flat parameter buffer.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Only when X had string column names.
    n_iter_ : int
        Epochs run by the last call (L-BFGS iterations with "lbfgs").
    t_ : int
        Training rows seen, over all calls.
    loss_ : float
        Training loss of the last epoch.
    loss_curve_ : list of float
        Training loss of every epoch, over all calls that continued the history.
    validation_scores_ : list of float or None
        Validation accuracy of every epoch (with early_stopping).
    best_validation_score_ : float or None
    best_loss_ : float or None
        Lowest training loss (None with early_stopping, as in scikit-learn).
    n_layers_ : int
        Layers counting input and output.
    n_outputs_ : int
    out_activation_ : {"logistic", "softmax"}
    """

    _metric = "accuracy"

    _parameter_constraints: dict = {
        **_BaseFastMLP._parameter_constraints,
        "class_weight": [None, dict, StrOptions({"balanced"})],
    }

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 rho=None, progress=False, init="sklearn", dtype=None, threads=None,
                 dropout=0.0, negative_slope=0.2, class_weight=None):
        super().__init__(
            hidden_layer_sizes, activation, solver=solver, alpha=alpha, batch_size=batch_size,
            learning_rate=learning_rate, learning_rate_init=learning_rate_init,
            power_t=power_t, max_iter=max_iter, shuffle=shuffle, random_state=random_state,
            tol=tol, verbose=verbose, warm_start=warm_start, momentum=momentum,
            nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
            validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2,
            epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun, rho=rho,
            progress=progress, init=init, dtype=dtype, threads=threads, dropout=dropout,
            negative_slope=negative_slope)
        self.class_weight = class_weight

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Train on X and the labels y; returns self.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            Class labels (numbers or strings), or a multilabel indicator matrix.
        sample_weight : array-like of shape (n_samples,), default=None
        """
        return self._fit(X, y, sample_weight, incremental=False)

    @available_if(lambda estimator: estimator._check_solver())
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over X, y, continuing the weights, optimizer and history; returns self.

        classes (array of shape (n_classes,)) is required on the first call, as in
        scikit-learn: every label any later call may see.
        """
        _check_label_types(y, "y")
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y, input_name="y").startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                _check_label_types(classes, "classes")
                self._label_binarizer.fit(classes)
        return self._fit(X, y, sample_weight, incremental=True)

    def _encode_targets(self, y, sample_weight, first, incremental):
        """(Y of shape (n_samples, n_outputs), the fitted LabelBinarizer)."""
        _check_label_types(y, "y")
        check_classification_targets(y)
        if first and not incremental:
            # One class is fitted too, as scikit-learn does: a sigmoid output trained
            # towards 0, and predict gives that class.
            encoder = LabelBinarizer().fit(y)
        else:
            encoder = self._label_binarizer
            classes = unique_labels(y)
            if self.warm_start and not incremental:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        f"warm_start can only be used where `y` has the same classes as in the "
                        f"previous call to fit. Previously got {self.classes_}, `y` has {classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has "
                                 f"{self.classes_}. 'y' has {classes}.")
        return encoder.transform(y), encoder

    @staticmethod
    def _head(encoder):
        return "softmax" if encoder.y_type_ == "multiclass" else "sigmoid"

    def _set_encoder(self, encoder):
        self._label_binarizer = encoder
        self.classes_ = encoder.classes_

    def _encoder_config(self):
        classes = self.classes_
        labels = classes.tolist()  # Python numbers, strings and bools for every dtype
        if classes.dtype == object:
            labels = [c if isinstance(c, (str, int, float, bool)) else str(c) for c in labels]
        return {"classes": labels, "classes_dtype": classes.dtype.str,
                "y_type": self._label_binarizer.y_type_}

    @staticmethod
    def _encoder_from_config(fitted):
        dtype = np.dtype(fitted["classes_dtype"])
        classes = np.array(fitted["classes"], dtype=dtype)
        if fitted["y_type"] == "multilabel-indicator":
            return LabelBinarizer().fit(np.eye(len(classes), dtype=int))
        return LabelBinarizer().fit(classes)

    def predict(self, X):
        """Class labels, ndarray of shape (n_samples,) (or (n_samples, n_labels) for multilabel)."""
        out = self._output(X)
        if self.n_outputs_ == 1:
            out = out.ravel()
        return self._label_binarizer.inverse_transform(out)

    def predict_proba(self, X):
        """Class probabilities, ndarray of shape (n_samples, n_classes) in the network's dtype.

        Columns follow ``classes_``.  For multilabel problems, the probability of each label.
        """
        out = self._output(X)
        if self.n_outputs_ == 1:
            return np.hstack([1 - out, out])
        return out

    def predict_log_proba(self, X):
        """log of predict_proba, ndarray of shape (n_samples, n_classes)."""
        proba = self.predict_proba(X)
        return np.log(proba, out=proba)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class FastMLPRegressor(RegressorMixin, _BaseFastMLP):
    """Multi-layer perceptron regressor (squared error) trained by fastnn's compiled loop.

    scikit-learn's ``MLPRegressor`` with fastnn's engine; the parameters and
    attributes are those of ``FastMLPClassifier`` (early stopping monitors the
    validation R^2), without classes_.  The loss is ``0.5 * sum over outputs of the
    squared error``, averaged over rows (scikit-learn also averages over outputs, so
    for several outputs its loss_curve_ is n_outputs times smaller).  Targets of
    shape (n_samples,) give predictions of that shape.  ``loss`` (keyword only here;
    scikit-learn's is its first positional parameter) is "squared_error", or
    "poisson" (exp output, half Poisson deviance; module docstring).  Without class_weight.
    """

    _metric = "r2"

    _parameter_constraints: dict = {
        **_BaseFastMLP._parameter_constraints,
        "loss": [StrOptions({"squared_error", "poisson"})],
    }

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, loss="squared_error",
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 rho=None, progress=False, init="sklearn", dtype=None, threads=None,
                 dropout=0.0, negative_slope=0.2):
        super().__init__(
            hidden_layer_sizes, activation, solver=solver, alpha=alpha, batch_size=batch_size,
            learning_rate=learning_rate, learning_rate_init=learning_rate_init,
            power_t=power_t, max_iter=max_iter, shuffle=shuffle, random_state=random_state,
            tol=tol, verbose=verbose, warm_start=warm_start, momentum=momentum,
            nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
            validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2,
            epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun, rho=rho,
            progress=progress, init=init, dtype=dtype, threads=threads, dropout=dropout,
            negative_slope=negative_slope)
        self.loss = loss

    def _arch_loss(self):
        return "poisson" if self.loss == "poisson" else None

    def _output(self, X):
        out = super()._output(X)
        return np.exp(out, out=out) if self._exp_output() else out

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Train on X and the targets y, of shape (n_samples,) or (n_samples, n_outputs).

        Returns self.
        """
        return self._fit(X, y, sample_weight, incremental=False)

    @available_if(lambda estimator: estimator._check_solver())
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over X, y, continuing the weights, optimizer and history; returns self."""
        return self._fit(X, y, sample_weight, incremental=True)

    def _encode_targets(self, y, sample_weight, first, incremental):
        return (y.reshape(-1, 1) if y.ndim == 1 else y), None

    @staticmethod
    def _head(encoder):
        return "identity"

    def _set_encoder(self, encoder):
        pass

    def _encoder_config(self):
        return {}

    @staticmethod
    def _encoder_from_config(fitted):
        return None

    def predict(self, X):
        """Predicted targets, ndarray of shape (n_samples,) or (n_samples, n_outputs)."""
        out = self._output(X)
        return out.ravel() if self.n_outputs_ == 1 else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


def _check_label_types(labels, name):
    """Refuse labels that mix types (strings and numbers), which cannot be sorted into classes_.

    (scikit-learn's own message for them is "Unknown label type: unknown", which
    suggests a regression target.)
    """
    labels = np.asarray(labels)
    if labels.dtype != object:
        return
    kinds = {"string" if isinstance(v, (str, bytes)) else
             "number" if isinstance(v, numbers.Number) else type(v).__name__
             for v in labels.ravel()}
    if len(kinds) > 1:
        raise ValueError(f"{name} mixes labels of different types ({', '.join(sorted(kinds))}); "
                         f"give labels of one type, e.g. all strings ({name}.astype(str))")


def _is_dask_collection(value):
    """True for a Dask array (or other collection); Dask is only asked when already imported."""
    dask = sys.modules.get("dask")
    return dask is not None and dask.is_dask_collection(value)


def _column(y):
    return np.asarray(y).reshape(-1, 1)


def _partial_rows(history):
    """Rows done of the history's epoch interrupted part-way (0 if none)."""
    partial = getattr(history, "partial", None)
    return 0 if partial is None else int(partial.next_row)


def _to_json(value):
    """A parameter value as JSON: tuples, dicts and infinities tagged, NumPy scalars as numbers.

    A dict (class_weight) becomes a list of [key, value] pairs, so that keys that are
    not strings (class labels 0, 1, ...) come back with their type.
    """
    if isinstance(value, tuple):
        return {"tuple": [_to_json(v) for v in value]}
    if isinstance(value, dict):
        return {"dict": [[_to_json(k), _to_json(v)] for k, v in value.items()]}
    if isinstance(value, list):
        return [_to_json(v) for v in value]
    if isinstance(value, np.random.RandomState):
        return None
    if isinstance(value, type):  # dtype=np.float32
        return np.dtype(value).name
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return {"float": repr(value)}
    return value


def _from_json(value):
    if isinstance(value, dict) and set(value) == {"tuple"}:
        return tuple(_from_json(v) for v in value["tuple"])
    if isinstance(value, dict) and set(value) == {"dict"}:
        return {_from_json(k): _from_json(v) for k, v in value["dict"]}
    if isinstance(value, dict) and set(value) == {"float"}:
        return float(value["float"])
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value
