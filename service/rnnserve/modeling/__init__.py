"""Build Keras recurrent models from Python with R keras' layer API, as a `rnnserve.spec.ModelSpec` with freshly
initialised (seedable) weights.

    x = layer_input(shape=(None, 3))
    y = layer_lstm(x, units=8, return_sequences=True)
    model = keras_model(x, layer_dense(y, units=2))
    spec = model.to_spec()
"""

from rnnserve.modeling.constraints import (
    constraint_maxnorm,
    constraint_minmaxnorm,
    constraint_nonneg,
    constraint_unitnorm,
)
from rnnserve.modeling.initializers import (
    initializer_constant,
    initializer_glorot_normal,
    initializer_glorot_uniform,
    initializer_he_normal,
    initializer_he_uniform,
    initializer_identity,
    initializer_lecun_normal,
    initializer_lecun_uniform,
    initializer_ones,
    initializer_orthogonal,
    initializer_random_normal,
    initializer_random_uniform,
    initializer_truncated_normal,
    initializer_variance_scaling,
    initializer_zeros,
)
from rnnserve.modeling.layers import (
    bidirectional,
    keras_model,
    keras_model_sequential,
    layer_dense,
    layer_dropout,
    layer_embedding,
    layer_gru,
    layer_input,
    layer_lstm,
    layer_masking,
    layer_rnn,
    layer_simple_rnn,
    rnn_cell_gru,
    rnn_cell_lstm,
    rnn_cell_simple,
    rnn_cells_stack,
    time_distributed,
)
from rnnserve.modeling.models import Functional, Model, Sequential
from rnnserve.modeling.naming import clear_session
from rnnserve.modeling.regularizers import (
    regularizer_l1,
    regularizer_l1_l2,
    regularizer_l2,
    regularizer_orthogonal,
)
from rnnserve.modeling.seeding import set_random_seed
from rnnserve.modeling.tensors import KerasTensor

__all__ = [
    "Functional",
    "KerasTensor",
    "Model",
    "Sequential",
    "bidirectional",
    "clear_session",
    "constraint_maxnorm",
    "constraint_minmaxnorm",
    "constraint_nonneg",
    "constraint_unitnorm",
    "initializer_constant",
    "initializer_glorot_normal",
    "initializer_glorot_uniform",
    "initializer_he_normal",
    "initializer_he_uniform",
    "initializer_identity",
    "initializer_lecun_normal",
    "initializer_lecun_uniform",
    "initializer_ones",
    "initializer_orthogonal",
    "initializer_random_normal",
    "initializer_random_uniform",
    "initializer_truncated_normal",
    "initializer_variance_scaling",
    "initializer_zeros",
    "keras_model",
    "keras_model_sequential",
    "layer_dense",
    "layer_dropout",
    "layer_embedding",
    "layer_gru",
    "layer_input",
    "layer_lstm",
    "layer_masking",
    "layer_rnn",
    "layer_simple_rnn",
    "regularizer_l1",
    "regularizer_l1_l2",
    "regularizer_l2",
    "regularizer_orthogonal",
    "rnn_cell_gru",
    "rnn_cell_lstm",
    "rnn_cell_simple",
    "rnn_cells_stack",
    "set_random_seed",
    "time_distributed",
]
