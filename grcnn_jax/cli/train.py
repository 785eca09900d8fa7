"""Train a GRCNN: ``python -m grcnn_jax.main --config configs/grcl.py --workdir DIR``.

Any config field can be overridden: ``--config.batch_size=64 --config.model.T=3``.
A restart with the same ``--workdir`` resumes from its latest checkpoint.

Several hosts: ``jax.distributed.initialize()`` runs when the launch environment
says so (SLURM with more than one task, or ``--coordinator_address`` with
``--num_processes`` and ``--process_id``); each host then loads its own share
of every global batch.
"""

from __future__ import annotations

import logging
import os

from absl import app, flags
from ml_collections import config_flags
from grcnn_jax import process
from grcnn_jax.cli import common

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Training configuration file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and TensorBoard logs.")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0, for several hosts.")
flags.DEFINE_integer("num_processes", None, "Number of processes (hosts) in a multi-host run.")
flags.DEFINE_integer("process_id", None, "This process's index in a multi-host run.")
flags.mark_flags_as_required(["config", "workdir"])


def initialize_distributed() -> None:
    """Starts jax.distributed when several processes are asked for, explicitly or by SLURM."""
    import jax

    if FLAGS.coordinator_address or FLAGS.num_processes:
        missing = [n for n in ("coordinator_address", "num_processes", "process_id")
                   if getattr(FLAGS, n) is None]
        if missing:
            raise app.UsageError(f"a multi-host run needs --{', --'.join(missing)} as well")
        jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes,
                                   FLAGS.process_id)
    elif int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        jax.distributed.initialize()          # reads SLURM's environment


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")

    process.log_our_progress()
    initialize_distributed()
    import jax

    from grcnn_jax.training import train

    logging.info("JAX process %d of %d, %d local of %d devices (%s)", jax.process_index(),
                 jax.process_count(), jax.local_device_count(), jax.device_count(),
                 jax.devices()[0].platform)
    with common.refusals_as_one_line():
        train.train_and_evaluate(FLAGS.config, FLAGS.workdir)


def parse_flags(argv: list[str]) -> list[str]:
    """absl's parsing, with a misspelled ``--config.x`` override reported without a traceback."""
    try:
        with common.overrides_refused_in_one_line(argv[1:]):
            return FLAGS(argv)
    except flags.Error as e:
        raise SystemExit(f"FATAL Flags parsing error: {e}\nPass --helpshort or --helpfull "
                         "to see help on flags.") from None


def run() -> None:
    """The ``grcnn-train`` command (``python -m grcnn_jax.main``)."""
    common.run_command(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
