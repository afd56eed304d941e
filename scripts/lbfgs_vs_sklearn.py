"""solver="lbfgs": FastMLPClassifier against scikit-learn's MLPClassifier, fit time.

Both run scipy's L-BFGS-B with tol=0 (so every fit runs max_iter iterations unless
the line search gives up) from their own initial weights; what differs is the loss
and gradient: fastnn's compiled full-batch kernel against scikit-learn's NumPy
(BLAS) passes.  Each configuration is fitted ``--repeats`` times, the two libraries
alternating, with 1 and 2 threads (fastnn's ``threads=``, scikit-learn's BLAS
through threadpoolctl); the median wall time is printed, with the iterations and
loss evaluations of the last fit.  The first fastnn fit of each data set (compiling,
or loading the Numba cache) is not timed.

    python scripts/lbfgs_vs_sklearn.py [--repeats 5]
"""

import argparse
import time
import warnings

import numpy as np
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
    return {"digits 1797x64": (digits.data / 16.0, digits.target, 200),
            "synthetic 20000x100": (X_syn, y_syn, 50)}


def timed_fit(make, X, y):
    start = time.perf_counter()
    model = make().fit(X, y)
    return time.perf_counter() - start, model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    warnings.simplefilter("ignore", ConvergenceWarning)
    print("| data | threads | fastnn s | scikit-learn s | speed-up | iterations (fastnn, sklearn) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, (X, y, max_iter) in data_sets().items():
        settings = dict(hidden_layer_sizes=(100,), solver="lbfgs", max_iter=max_iter, tol=0.0,
                        random_state=0)
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
