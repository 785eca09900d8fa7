"""The measurements of ``benchmarks/peer.py``, our side: each runs in a fresh subprocess
(``run_ours``), so that its peak memory and compile time are its own.

    python -m benchmarks.peer_jobs '["ours", "train", "grcl", 32, 5, 2, "float32"]'

prints one JSON record: ``ours`` (compile and time our train step or inference),
``ceiling`` (the device's float32 matmul rate), ``loader`` (the training loader's images/s).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time

from grcnn_jax import process

# Model fields over config_base's; "reader" is configs/reader.py's model section (the model
# that ships), "tiny" configs/tiny.py's (the tests').
CONFIGS = {"grcl": {"T": 5, "hidden": 256}, "small": {"T": 3, "hidden": 512},
           "reader": {"model_of": "configs/reader.py"}, "tiny": {"model_of": "configs/tiny.py"}}
PEER_WIDTHS = (64, 64, 128, 256, 512)     # the peer script's: conv0, grcl1-3, out
PEER_CLASSES = 37                         # and its NUM_CLASSES, IMG_H x IMG_W
PEER_IMAGE = (32, 100)
MODES = ("train", "infer")
DTYPES = ("float32", "bfloat16")         # ours; the peer computes in float32
REPO = os.path.join(os.path.dirname(__file__), "..")


def model_config(name: str, dtype: str):
    """config_base's config (ADADELTA, as the peer) with the model of ``CONFIGS[name]``."""
    import runpy

    from grcnn_jax.config.defaults import get_base_config

    config = get_base_config()
    fields = dict(CONFIGS[name])
    if "model_of" in fields:
        config_file = os.path.join(REPO, fields.pop("model_of"))
        config.model.update(runpy.run_path(config_file)["get_config"]().model.to_dict())
    config.model.update(fields)
    config.model.dtype = dtype
    return config


def peer_model(name: str) -> dict | None:
    """How the PyTorch peer builds ``CONFIGS[name]``'s model: T, hidden, the widths (conv0,
    grcl1-3, out) and the model's forward and train GFLOP per image; None where the peer's
    network cannot be that model (ungated or unshared GRCLs, T = 0, whose GRCL the peer still
    gives a gate convolution, another class count or image size).

    At the peer's own widths it runs as it is; at others, through ``peer_widths.py``."""
    from grcnn_jax.text.charset import Charset
    from grcnn_jax.models.flops import forward_flops, train_flops

    config = model_config(name, "float32")
    m = config.model
    classes = Charset.from_spec(config.charset).num_classes
    if not (m.gated and m.share and m.T >= 1 and len(m.grcl_features) == 3
            and classes == PEER_CLASSES
            and (config.image_height, config.image_width) == PEER_IMAGE):
        return None
    return {"T": m.T, "hidden": m.hidden,
            "widths": (m.conv0_features, *m.grcl_features, m.out_features),
            "gflop": (forward_flops(m, classes) / 1e9, train_flops(m, classes) / 1e9)}


def ours(mode: str, name: str, batch: int, reps: int, warmup: int, dtype: str) -> dict:
    """Runs in the subprocess: compiles and times our step; returns one record."""
    import jax
    import numpy as np

    from grcnn_jax.training import setup, state as train_state
    from grcnn_jax.text.charset import Charset
    from grcnn_jax.models import create_model
    from grcnn_jax.models.flops import forward_flops, train_flops

    config = model_config(name, dtype)
    charset = Charset.from_spec(config.charset)
    model = create_model(config.model, charset.num_classes)
    if mode == "train":
        state = setup.train_state_of(config, model, jax.random.key(0))
    else:       # what inference holds (load.load_for_inference): no optimizer state
        variables = jax.jit(model.init)(
            jax.random.key(0), np.zeros((1, config.image_height, config.image_width), np.uint8))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch, config.image_height, config.image_width), np.uint8)
    lengths = rng.integers(3, 11, batch)
    labels = rng.integers(1, charset.num_classes, (batch, 25)).astype(np.int32)
    paddings = (np.arange(25)[None] >= lengths[:, None]).astype(np.float32)
    batch_arrays = {"image": images, "labels": labels, "label_paddings": paddings,
                    "mask": np.ones(batch, np.float32)}
    batch_arrays = jax.device_put(batch_arrays)

    if mode == "train":
        step = jax.jit(train_state.train_step, donate_argnums=(0,))
        key = jax.random.key(1)
        t0 = time.perf_counter()
        compiled = step.lower(state, batch_arrays, key).compile(
            compiler_options=process.step_compiler_options())
        compile_s = time.perf_counter() - t0

        def run():
            nonlocal state
            state, metrics = compiled(state, batch_arrays, key)
            jax.block_until_ready(metrics["loss"])
    else:
        def infer(params, batch_stats, images):
            logits = model.apply({"params": params, "batch_stats": batch_stats}, images,
                                 train=False)
            return logits.argmax(-1)
        t0 = time.perf_counter()
        compiled = jax.jit(infer).lower(variables["params"], variables["batch_stats"],
                                        batch_arrays["image"]).compile()
        compile_s = time.perf_counter() - t0

        def run():
            jax.block_until_ready(compiled(variables["params"], variables["batch_stats"],
                                           batch_arrays["image"]))
    # The compiler's scratch memory back to the kernel (as training does), then the peak of
    # the steps alone (the peer is eager: its whole run is its steps).
    compile_peak_mb = _peak_rss_mb()
    process.release_free_memory()
    _reset_peak_rss()
    for _ in range(warmup):
        run()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return {"compile_s": compile_s, "median_s": statistics.median(times),
            "gflop_per_image": (train_flops if mode == "train" else forward_flops)(
                config.model, charset.num_classes) / 1e9,
            "peak_rss_mb": max(compile_peak_mb, _peak_rss_mb()), "run_rss_mb": _peak_rss_mb(),
            "jax": jax.__version__, "device": str(jax.devices()[0].device_kind)}


def _peak_rss_mb() -> float:
    """This process's peak resident memory (MB) since it started or since _reset_peak_rss."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak_rss() -> None:
    """Linux: the peak restarts from the current resident memory (elsewhere: nothing)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def matmul_ceiling(size: int = 2048, reps: int = 10) -> dict:
    """Runs in the subprocess: float32 [n,n] x [n,n] GFLOP/s (best of reps) on device 0."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    jax.block_until_ready(f(a))
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(f(a))
        best = min(best, time.perf_counter() - t0)
    return {"gflops": 2 * size ** 3 / best / 1e9, "device": str(jax.devices()[0].device_kind)}


def loader(batch: int, batches: int, warmup: int) -> dict:
    """Runs in the subprocess: the training loader's images/s with the config's workers."""
    from grcnn_jax import assemble as components
    from benchmarks.data_loader import loader_images_per_s

    config = model_config("grcl", "float32")
    source = components.open_split(config, "train")
    rate = loader_images_per_s(source, batch, config.data.num_workers, batches, warmup)
    return {"images_per_s": rate, "workers": config.data.num_workers}


JOBS = {"ours": ours, "ceiling": matmul_ceiling, "loader": loader}


def run_ours(job: str, *args) -> dict:
    """Runs ``JOBS[job](*args)`` in a fresh subprocess; returns its record."""
    # The persistent compilation cache off: compile_s is the real compile time.
    env = dict(os.environ, GRCNN_COMPILATION_CACHE="0")
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.peer_jobs", json.dumps([job, *args])],
        capture_output=True, text=True, check=False, env=env, cwd=REPO)
    if out.returncode != 0:
        raise RuntimeError(f"our {job} benchmark {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> None:
    """Runs the job ``argv[1]`` names (a JSON list: job, then its arguments)."""
    job, *args = json.loads(argv[1])
    print(json.dumps(JOBS[job](*args)))


if __name__ == "__main__":
    process.configure()
    main(sys.argv)
