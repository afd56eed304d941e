"""The three front ends train the same network to the same bits.

The promise of one loop: Keras-style (``Sequential``), scikit-learn-style
(``FastMLPClassifier``) and command-line training of one configuration with one
seed give identical weights.  Each front end is also checked against
``fastnn.fit`` in its own test module; this one puts the two Python front ends
side by side on the same rows (the command line's own data preparation is
compared with ``Sequential`` in tests/test_cli.py).
"""

import warnings

import numpy as np
from sklearn.datasets import load_iris
from sklearn.exceptions import ConvergenceWarning

from fastnn import Adam, Dense, FastMLPClassifier, Sequential


def test_estimator_and_sequential_train_the_same_weights():
    X, y = load_iris(return_X_y=True)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    Y = np.eye(3)[y]

    estimator = FastMLPClassifier(hidden_layer_sizes=(8, 6), activation="tanh", solver="adam",
                                  alpha=1e-3, batch_size=16, learning_rate_init=0.01,
                                  max_iter=6, n_iter_no_change=100, random_state=3, threads=1,
                                  init="glorot_uniform")  # Sequential's initialiser
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # 6 epochs, on purpose
        estimator.fit(X, y)

    model = Sequential([Dense(8, input_dim=4, activation="tanh"), Dense(6, activation="tanh"),
                        Dense(3, activation="softmax")], dtype="float64", random_state=3)
    model.compile(optimizer=Adam(lr=0.01), loss="categorical_crossentropy", l2=1e-3)
    model.fit(X, Y, epochs=6, batch_size=16, verbose=0, threads=1)

    weights = model.get_weights()
    assert estimator.n_iter_ == model.history.epochs == 6
    for layer, (W, b) in enumerate(zip(weights[::2], weights[1::2])):
        np.testing.assert_array_equal(estimator.coefs_[layer], W)
        np.testing.assert_array_equal(estimator.intercepts_[layer], b)
    assert estimator.loss_curve_ == model.history.loss
