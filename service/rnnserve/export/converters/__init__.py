"""What the layer kinds' converters share: the recurrent loop (`recurrent`: Scan, unrolled chain, directions) and
onnxruntime's fused recurrent ops (`native`). Each converter lives with its layer kind (`rnnserve.kinds`), which
registers it in `rnnserve.export.registry`."""
