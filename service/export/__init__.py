"""Keras models (`ModelSpec`) as ONNX graphs with explicit state (`convert.to_onnx`), and exported packages
(`package.write_package` / `read_package`). Converters live in `converters/`, one module per layer family."""
