"""Data-parallel averaging (fastnn.distributed) against trainer.fit runs averaged by hand.

A round trains every partition that has rows left from the same averaged weights
and optimizer state, then the client takes the row-weighted mean of the results
(weights and state, summed in float64 in partition order) and the largest step
count.  The reference here replays that with public pieces: one ``trainer.fit``
per partition and round (``trainer.interrupt_after`` ends a round after
``sync_every`` batches; the next call finishes the epoch from there), and the mean
written out in the same order.  Rows are not shuffled, so the row order of each
partition is fixed and the reference must agree bitwise; the epoch's loss, a ratio
of sums added in another order, to 1e-12.

The workers are threads of this process (``processes=False``): what is tested is
the arithmetic of the rounds, not the cluster (tests/test_distributed.py).
"""

import numpy as np
import pytest

pytest.importorskip("distributed")
import dask.array as da  # noqa: E402
from distributed import Client  # noqa: E402

from fastnn import Adam, RMSprop, SGD, fit, trainer  # noqa: E402
from fastnn import distributed as fd  # noqa: E402
from fastnn.trainer import History  # noqa: E402

from .conftest import make_problem  # noqa: E402

#: Two partitions of unequal size, so that a plain mean differs from the weighted one,
#: and batches of 8: 4 batches (the last of 6 rows) and 7 (the last of 2).
ROWS, BATCH = (30, 50), 8

#: The epoch's loss: sums of per-batch losses over both partitions, added in another
#: order by the reference; float64 rounding over ~10 terms is ~1e-15 relative.
LOSS_RTOL = 1e-12


@pytest.fixture(scope="module")
def client():
    with Client(processes=False, n_workers=2, threads_per_worker=1,
                dashboard_address=None) as client:
        yield client


def replayed(arch, params0, parts, make_optimizer, epochs, sync_every, backend):
    """What a data-parallel run must give, from trainer.fit runs and the weighted mean.

    Returns (params, slots, iterations, epoch losses).
    """
    params, slots, iterations = params0.copy(), None, 0
    histories = [History() for _ in parts]
    losses = []
    for _ in range(epochs):
        next_rows = [0] * len(parts)
        epoch_sums = np.zeros(2)  # loss * rows, rows, over both partitions
        while any(r < len(X) for r, (X, _) in zip(next_rows, parts)):
            results = []
            for p, (X, Y) in enumerate(parts):
                if next_rows[p] == len(X):
                    continue  # done with this epoch: sits out the round
                local, optimizer = params.copy(), make_optimizer()
                if slots is not None:
                    optimizer.slots, optimizer.iterations = slots.copy(), iterations
                with trainer.interrupt_after(sync_every or 10**9):  # the round's batches
                    history = fit(arch, local, X, Y, epochs=1, batch_size=BATCH,
                                  optimizer=optimizer, shuffle=False, history=histories[p],
                                  backend=backend)
                done = len(X) if history.partial is None else history.partial.next_row
                if done == len(X):
                    epoch_sums += (history.loss[-1] * len(X), len(X))
                results.append((done - next_rows[p], local, optimizer))
                next_rows[p] = done
            total = float(sum(rows for rows, _, _ in results))
            if len(results) == 1:
                params, slots = results[0][1], results[0][2].slots
            else:
                params, slots = np.zeros(params.shape[0]), np.zeros(results[0][2].slots.shape)
                for rows, local, optimizer in results:  # fastnn's order: partition order
                    params += (rows / total) * local
                    slots += (rows / total) * optimizer.slots
            iterations = max(optimizer.iterations for _, _, optimizer in results)
        losses.append(epoch_sums[0] / epoch_sums[1])
    return params, slots, iterations, losses


OPTIMIZERS = [pytest.param(lambda: Adam(lr=0.02), id="adam"),
              pytest.param(lambda: SGD(lr=0.1, momentum=0.9, nesterov=True), id="nesterov"),
              pytest.param(lambda: RMSprop(lr=0.01), id="rmsprop")]


@pytest.mark.parametrize("sync_every, backend", [("epoch", "numba"), ("epoch", "numpy"),
                                                 (2, "numba"), (3, "numpy")])
@pytest.mark.parametrize("make_optimizer", OPTIMIZERS)
def test_rounds_are_the_row_weighted_mean_of_trainer_fit_runs(rng, client, make_optimizer,
                                                              sync_every, backend):
    arch, params0, X, Y = make_problem(rng, (5, 7, 3), ("tanh",), "softmax", "float64",
                                       n=sum(ROWS))
    parts = [(X[:ROWS[0]], Y[:ROWS[0]]), (X[ROWS[0]:], Y[ROWS[0]:])]
    params = params0.copy()
    history = fd.fit(arch, params, da.from_array(X, chunks=(ROWS, X.shape[1])),
                     da.from_array(Y, chunks=(ROWS, Y.shape[1])), epochs=2, client=client,
                     batch_size=BATCH, optimizer=make_optimizer(), sync_every=sync_every,
                     shuffle=False, backend=backend, threads=1)
    expected, slots, iterations, losses = replayed(
        arch, params0, parts, make_optimizer, 2, None if sync_every == "epoch" else sync_every,
        backend)
    assert not np.array_equal(expected, params0)
    np.testing.assert_array_equal(params, expected)
    np.testing.assert_array_equal(history.optimizer.slots, slots)
    assert history.optimizer.iterations == iterations == 2 * 7
    np.testing.assert_allclose(history.loss, losses, rtol=LOSS_RTOL)
    # Each round averaged something different from either partition's own weights.
    alone = params0.copy()
    fit(arch, alone, *parts[0], epochs=2, batch_size=BATCH, optimizer=make_optimizer(),
        shuffle=False, backend=backend)
    assert np.abs(alone - expected).max() > 1e-3
