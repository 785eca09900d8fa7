"""A tiny GRCNN for tests and quick checks, not for reading text: the paper's architecture
(GRCL with T = 2 and shared recurrent convs, two BLSTMs, CTC) at widths 8/8/8/16/16, BLSTM 8,
with XLA's convolutions.

It compiles and runs a step in seconds on a CPU, so the test suite trains it
(tests/helpers.py: ``tiny_config``, ``tiny_overrides``), the benchmarks time it
(``python -m benchmarks.peer --configs tiny``) and the notebooks run their quick
path with it. Data: the synthetic words, as every config's default; the tests point
``data.train`` and ``data.val`` at small LMDBs.

    python -m grcnn_jax.main --config configs/tiny.py --workdir /tmp/grcnn_tiny

Some tests compare runs of it bit for bit or against reference runs: changing a value here
changes what they compare.
"""

from grcnn_jax.config.defaults import get_base_config


def get_config():
    config = get_base_config()
    m = config.model
    m.T = 2
    m.conv0_features = 8
    m.grcl_features = (8, 8, 16)
    m.out_features = 16
    m.hidden = 8
    # XLA's own convolutions: Winograd (the CPU default) pays at the paper's 64-512 channels,
    # not at 8-16, and it doubles the train step's compile time (6.3 s -> 3.2 s on 2 cores),
    # which is most of what the test suite spends. tests/models/test_conv.py and test_model.py test
    # Winograd itself; the shipped model's tests run it.
    m.conv_impl = "xla"
    # Both iterations unrolled in training too (the default rolls them into a while loop): at
    # the test suite's XLA -O0 backend a rolled loop's backward runs 8x slower (tiny gradient
    # at batch 8: 290 ms -> 34 ms, compile time the same), and at -O3 unrolled is faster too
    # (28 -> 16 ms). tests/models/test_model.py and test_scan.py test the rolled loop itself.
    m.scan_unroll = 2
    o = config.optimizer
    o.name = "adam"
    o.learning_rate = 3e-3
    config.batch_size = 8
    config.eval_batch_size = 8
    config.num_train_steps = 6
    config.log_every = 1
    config.eval_every = 1_000
    config.checkpoint_every = 1_000
    config.async_checkpoints = False
    config.data.synth_val_size = 16
    config.data.num_workers = 0
    return config
