"""grcnn_jax: scene-text recognition with the Gated Recurrent Convolution Neural Network."""

import os as _os
import sys as _sys


def _started_as_a_command() -> bool:
    # While ``python -m grcnn_jax.X`` imports this package, runpy has not yet set argv[0]
    # to the module's path: it is still '-m'. A console script is named grcnn-*.
    name = _os.path.basename(_sys.argv[0]) if _sys.argv else ""
    return name == "-m" or name.startswith("grcnn-")


if _started_as_a_command():
    # Ctrl-C while a command is still importing (jax takes seconds): one line, no traceback.
    # Later, the command's own handling (common.refusals_as_one_line) takes over.
    _previous_hook = _sys.excepthook

    def _one_line_on_ctrl_c(kind, error, tb):
        if issubclass(kind, KeyboardInterrupt):
            print("interrupted (Ctrl-C)", file=_sys.stderr, flush=True)
        else:
            _previous_hook(kind, error, tb)

    _sys.excepthook = _one_line_on_ctrl_c
    _previous_unraisable = _sys.unraisablehook

    def _ctrl_c_in_a_callback(hook_args):
        # Ctrl-C that lands in a callback Python cannot raise from (jax's garbage-collection
        # hook, say) would be printed and then ignored: stop, as anywhere else.
        if issubclass(hook_args.exc_type, KeyboardInterrupt):
            print("interrupted (Ctrl-C)", file=_sys.stderr, flush=True)
            _os._exit(130)
        _previous_unraisable(hook_args)

    _sys.unraisablehook = _ctrl_c_in_a_callback
