"""FastMLPClassifier against scikit-learn's MLPClassifier, fit time, for one solver.

With ``--solver lbfgs`` (the default) both run scipy's L-BFGS-B with tol=0 (so every
fit runs max_iter iterations unless the line search gives up) from their own initial
weights; what differs is the loss and gradient: fastnn's compiled full-batch kernel
against scikit-learn's NumPy (BLAS) passes.  With a stochastic solver (``--solver
adam`` or ``sgd``) both run max_iter epochs of 200-row mini-batches (tol=0 and
n_iter_no_change=max_iter: no early stop); ``--epochs`` sets max_iter for every set.
Each configuration is fitted ``--repeats`` times, the two libraries
alternating, with 1 and 2 threads (fastnn's ``threads=``, scikit-learn's BLAS
through threadpoolctl); the median wall time is printed, with the iterations and
loss evaluations of the last fit.  The first fastnn fit of each data set (compiling,
or loading the Numba cache) is not timed.

The sparse set (CSR) runs through fastnn's sparse first layer (kernels/sparse.py)
and scikit-learn's sparse products.

    python scripts/solvers_vs_sklearn.py [--solver lbfgs|adam|sgd] [--epochs N]
                                         [--repeats 5] [--only digits|synthetic|sparse]
"""

import argparse
import time
import warnings

import numpy as np
from scipy import sparse
from sklearn.datasets import load_digits, make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier
from threadpoolctl import threadpool_limits

from fastnn.estimators import FastMLPClassifier


def data_sets():
    """name -> (X, y, max_iter)."""
    digits = load_digits()
    X_syn, y_syn = make_classification(n_samples=20000, n_features=100, n_informative=40,
                                       n_classes=5, random_state=0)
    # Text-like: 20000 rows of 50000 features at 0.1 % density (CSR), 5 classes from a
    # random linear map of the features (so there is something to learn).
    rng = np.random.RandomState(0)
    X_text = sparse.random(20000, 50000, density=0.001, format="csr", random_state=rng)
    y_text = np.asarray(X_text @ rng.standard_normal((50000, 5))).argmax(axis=1)
    return {"digits 1797x64": (digits.data / 16.0, digits.target, 200),
            "synthetic 20000x100": (X_syn, y_syn, 50),
            "sparse 20000x50000, 0.1 %": (X_text, y_text, 50)}


def timed_fit(make, X, y):
    start = time.perf_counter()
    model = make().fit(X, y)
    return time.perf_counter() - start, model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", help="run the data sets whose name starts with this")
    parser.add_argument("--solver", default="lbfgs", choices=["lbfgs", "adam", "sgd"])
    parser.add_argument("--epochs", type=int, help="max_iter of every set (default: its own)")
    args = parser.parse_args()
    warnings.simplefilter("ignore", ConvergenceWarning)
    print("| data | threads | fastnn s | scikit-learn s | speed-up | iterations (fastnn, sklearn) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, (X, y, max_iter) in data_sets().items():
        if args.only and not name.startswith(args.only):
            continue
        max_iter = args.epochs or max_iter
        settings = dict(hidden_layer_sizes=(100,), solver=args.solver, max_iter=max_iter,
                        tol=0.0, random_state=0)
        if args.solver != "lbfgs":
            settings["n_iter_no_change"] = max_iter
        FastMLPClassifier(**settings, threads=1).fit(X, y)  # compile / load the cache
        for threads in (1, 2):
            fast_times, sklearn_times = [], []
            for _ in range(args.repeats):
                seconds, fast = timed_fit(
                    lambda: FastMLPClassifier(**settings, threads=threads), X, y)
                fast_times.append(seconds)
                with threadpool_limits(limits=threads):
                    seconds, reference = timed_fit(lambda: MLPClassifier(**settings), X, y)
                sklearn_times.append(seconds)
            fast_s, sklearn_s = np.median(fast_times), np.median(sklearn_times)
            print(f"| {name} | {threads} | {fast_s:.3f} | {sklearn_s:.3f} | "
                  f"{sklearn_s / fast_s:.1f}x | {fast.n_iter_}, {reference.n_iter_} |",
                  flush=True)


if __name__ == "__main__":
    main()
