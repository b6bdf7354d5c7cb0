"""rnnserve: Keras-exact recurrent models on ONNX, served as stateful streams."""

__version__ = "0.1.0"
