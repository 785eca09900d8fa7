"""Process settings of the command-line entry points."""

import os
import subprocess
import sys

import pytest

from grcnn_jax import process


@pytest.mark.parametrize("environ,glibc,thp,expect", [
    ({}, (2, 36), "madvise", True),
    ({}, (2, 36), "always", False),                       # huge pages already
    ({}, (2, 36), "never", False),                        # nothing to gain
    ({}, (2, 34), "madvise", False),                      # glibc without the tunable
    ({}, None, "madvise", False),                         # not glibc (musl)
    ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}, (2, 36), "madvise", False),   # done
    ({"GRCNN_HUGE_PAGES": "0"}, (2, 36), "madvise", False),                     # turned off
])
def test_huge_pages_would_help(monkeypatch, environ, glibc, thp, expect):
    monkeypatch.setattr(process, "_glibc_version", lambda: glibc)
    monkeypatch.setattr(process, "_thp_mode", lambda: thp)
    monkeypatch.setattr(sys, "platform", "linux")
    assert process.huge_pages_would_help(environ) is expect


def test_restart_keeps_the_command_line_and_other_tunables(tmp_path):
    if not sys.platform.startswith("linux"):
        pytest.skip("the restart is for Linux only")
    script = tmp_path / "show.py"
    script.write_text("import os, sys\nfrom grcnn_jax import process\n"
                      "process._thp_mode = lambda: 'madvise'\n"
                      "process._glibc_version = lambda: (2, 36)\n"
                      "process.use_huge_pages()\n"
                      "print(os.environ['GLIBC_TUNABLES'], sys.argv[1:])\n")
    env = dict(os.environ, GLIBC_TUNABLES="glibc.malloc.arena_max=2")
    env.pop("GRCNN_HUGE_PAGES", None)
    out = subprocess.run([sys.executable, str(script), "a", "--b=c"], env=env,
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1 ['a', '--b=c']"


def test_compilation_cache_folder(monkeypatch, tmp_path):
    import jax

    before = jax.config.jax_compilation_cache_dir
    try:
        monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "mine"))
        assert process.enable_compilation_cache() == str(tmp_path / "mine")
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "mine")
        monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR")
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        assert process.enable_compilation_cache() == str(tmp_path / "xdg" / "grcnn_jax" / "xla")
        monkeypatch.setenv("GRCNN_COMPILATION_CACHE", "0")
        assert process.enable_compilation_cache() is None
    finally:
        jax.config.update("jax_compilation_cache_dir", before)


def test_step_compiler_options_leave_a_users_preset_alone(monkeypatch):
    """On the CPU the train step gets XLA's FAST_COMPILE preset, unless XLA_FLAGS names one."""
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    assert process.step_compiler_options() == {"xla_cpu_opt_preset": "CPU_OPT_PRESET_FAST_COMPILE"}
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_opt_preset=CPU_OPT_PRESET_DEFAULT")
    assert process.step_compiler_options() is None


def test_the_compilation_cache_is_set_without_importing_jax(tmp_path):
    """A command that never needs jax does not import it to set the cache; jax, imported
    later, still uses the folder."""
    code = ("import sys\nfrom grcnn_jax import process\n"
            "print(process.enable_compilation_cache(), 'jax' in sys.modules)\n"
            "import jax\nprint(jax.config.jax_compilation_cache_dir)\n")
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path))
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    env.pop("GRCNN_COMPILATION_CACHE", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.split("\n")
    folder = str(tmp_path / "grcnn_jax" / "xla")
    assert out[:2] == [f"{folder} False", folder]
