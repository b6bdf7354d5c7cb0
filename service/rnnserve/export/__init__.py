"""Keras models (`ModelSpec`) as ONNX graphs with explicit state (`convert.to_onnx`), and exported packages
(`package.write_package` / `read_package`). Each layer kind's converter lives with its kind (`service/rnnserve/kinds/`);
`converters/` holds what they share (the recurrent loop, fused ops)."""
