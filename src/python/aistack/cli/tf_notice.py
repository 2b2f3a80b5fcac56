"""TensorFlow start-up noise, silenced before any command imports TensorFlow.

Kept apart from the commands because it must act at package import: the commands import
TensorFlow lazily, and by then it is too late to change how TensorFlow starts.
"""

from __future__ import annotations

import importlib
import os
import sys
import types

TF_PROFILER_PLUGIN = "tensorflow.python.profiler.internal._pywrap_profiler_plugin"


class _LoadOnFirstUse(types.ModuleType):
    """Stands in for an extension module until an attribute of it is first read."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        sys.modules.pop(self.__name__, None)
        return getattr(importlib.import_module(self.__name__), name)


def defer_tf_profiler_plugin() -> None:
    """TensorFlow's oneDNN start-up notice once per process, not twice.

    ``import tensorflow`` loads ``_pywrap_profiler_plugin.so`` (the remote-profiling client),
    which carries its own copy of TensorFlow's platform code and absl logging: loading it
    prints the notice a second time, before absl is initialised, so TF_CPP_MIN_LOG_LEVEL
    cannot filter it. Nothing here profiles remotely, so that library is loaded only if
    ``tf.profiler.experimental.client`` is actually called.
    """
    sys.modules.setdefault(TF_PROFILER_PLUGIN, _LoadOnFirstUse(TF_PROFILER_PLUGIN))


def quiet_tensorflow_start_up() -> None:
    """Info logs off unless TF_CPP_MIN_LOG_LEVEL says otherwise; the notice printed once."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    defer_tf_profiler_plugin()
