"""rnnserve: Keras-exact recurrent models on ONNX, served as stateful streams."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("rnnserve")  # the one place it is written: pyproject.toml
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
