"""The numpy reference of every supported layer: the executable spec ONNX graphs are tested against.

`activations` (canonical names and formulas), `cells` (one timestep), `recurrent` (the loop: masks, direction,
states), `core` (Dense, Embedding, Masking, Dropout), `wrappers` (Bidirectional, TimeDistributed) and `model`
(`ReferenceModel`, a `Runner` over a `ModelSpec`).
"""
