"""The R keras layer API: `layer_*()` functions with R's argument names, order and defaults (None is R's NULL).

Every function follows R's `object` rule (`compose`): with `object=None` it returns the layer; with a Sequential
model it adds the layer and returns the model; with a symbolic tensor it applies the layer and returns the output
tensor (a list of tensors with `return_state`). Extra keyword arguments are Keras' own (`name`, `seed`,
`zero_output_for_mask`, `input_shape`, `dtype="float32"`, ...); those Keras 3 rejects are rejected the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rnnserve.modeling import arguments
from rnnserve.modeling.base import Layer
from rnnserve.modeling.cells import RNN, GRUCell, LSTMCell, SimpleRNNCell, StackedRNNCells
from rnnserve.modeling.core import Dense, Dropout, Embedding, InputLayer, Masking
from rnnserve.modeling.models import Functional, Sequential
from rnnserve.modeling.recurrent import GRU, LSTM, SimpleRNN
from rnnserve.modeling.tensors import KerasTensor
from rnnserve.modeling.wrappers import Bidirectional, TimeDistributed


def compose(object: Any, layer: Layer) -> Any:
    """R's rule for a layer function's first argument."""
    if object is None:
        return layer
    if isinstance(object, Sequential):
        object.add(layer)
        return object
    if isinstance(object, KerasTensor) or (
        isinstance(object, (list, tuple)) and len(object) == 1 and isinstance(object[0], KerasTensor)
    ):
        return layer(object)
    raise arguments.invalid(
        "object", object, "must be NULL, a Sequential model or a symbolic tensor (arrays are not supported)"
    )


# ---- recurrent layers --------------------------------------------------------------------------------------------


def layer_simple_rnn(
    object: Any = None,
    units: Any = None,
    activation: Any = "tanh",
    use_bias: bool = True,
    return_sequences: bool = False,
    return_state: bool = False,
    go_backwards: bool = False,
    stateful: bool = False,
    unroll: bool = False,
    kernel_initializer: Any = "glorot_uniform",
    recurrent_initializer: Any = "orthogonal",
    bias_initializer: Any = "zeros",
    kernel_regularizer: Any = None,
    recurrent_regularizer: Any = None,
    bias_regularizer: Any = None,
    activity_regularizer: Any = None,
    kernel_constraint: Any = None,
    recurrent_constraint: Any = None,
    bias_constraint: Any = None,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    **kwargs: Any,
) -> Any:
    """Fully-connected RNN whose output is fed back as input (Keras SimpleRNN)."""
    layer = SimpleRNN(
        units, activation=activation, use_bias=use_bias, return_sequences=return_sequences,
        return_state=return_state, go_backwards=go_backwards, stateful=stateful, unroll=unroll,
        kernel_initializer=kernel_initializer, recurrent_initializer=recurrent_initializer,
        bias_initializer=bias_initializer, kernel_regularizer=kernel_regularizer,
        recurrent_regularizer=recurrent_regularizer, bias_regularizer=bias_regularizer,
        activity_regularizer=activity_regularizer, kernel_constraint=kernel_constraint,
        recurrent_constraint=recurrent_constraint, bias_constraint=bias_constraint, dropout=dropout,
        recurrent_dropout=recurrent_dropout, **kwargs,
    )  # fmt: skip
    return compose(object, layer)


def layer_gru(
    object: Any = None,
    units: Any = None,
    activation: Any = "tanh",
    recurrent_activation: Any = "sigmoid",
    use_bias: bool = True,
    return_sequences: bool = False,
    return_state: bool = False,
    go_backwards: bool = False,
    stateful: bool = False,
    unroll: bool = False,
    time_major: bool = False,
    reset_after: bool = True,
    kernel_initializer: Any = "glorot_uniform",
    recurrent_initializer: Any = "orthogonal",
    bias_initializer: Any = "zeros",
    kernel_regularizer: Any = None,
    recurrent_regularizer: Any = None,
    bias_regularizer: Any = None,
    activity_regularizer: Any = None,
    kernel_constraint: Any = None,
    recurrent_constraint: Any = None,
    bias_constraint: Any = None,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    **kwargs: Any,
) -> Any:
    """Gated Recurrent Unit (Keras GRU); `implementation=` is accepted as in Keras, `time_major=TRUE` is not."""
    _reject_time_major(time_major)
    layer = GRU(
        units, activation=activation, recurrent_activation=recurrent_activation, use_bias=use_bias,
        return_sequences=return_sequences, return_state=return_state, go_backwards=go_backwards,
        stateful=stateful, unroll=unroll, reset_after=reset_after, kernel_initializer=kernel_initializer,
        recurrent_initializer=recurrent_initializer, bias_initializer=bias_initializer,
        kernel_regularizer=kernel_regularizer, recurrent_regularizer=recurrent_regularizer,
        bias_regularizer=bias_regularizer, activity_regularizer=activity_regularizer,
        kernel_constraint=kernel_constraint, recurrent_constraint=recurrent_constraint,
        bias_constraint=bias_constraint, dropout=dropout, recurrent_dropout=recurrent_dropout, **kwargs,
    )  # fmt: skip
    return compose(object, layer)


def layer_lstm(
    object: Any = None,
    units: Any = None,
    activation: Any = "tanh",
    recurrent_activation: Any = "sigmoid",
    use_bias: bool = True,
    return_sequences: bool = False,
    return_state: bool = False,
    go_backwards: bool = False,
    stateful: bool = False,
    time_major: bool = False,
    unroll: bool = False,
    kernel_initializer: Any = "glorot_uniform",
    recurrent_initializer: Any = "orthogonal",
    bias_initializer: Any = "zeros",
    unit_forget_bias: bool = True,
    kernel_regularizer: Any = None,
    recurrent_regularizer: Any = None,
    bias_regularizer: Any = None,
    activity_regularizer: Any = None,
    kernel_constraint: Any = None,
    recurrent_constraint: Any = None,
    bias_constraint: Any = None,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    **kwargs: Any,
) -> Any:
    """Long Short-Term Memory (Keras LSTM); `implementation=` is accepted as in Keras, `time_major=TRUE` is not."""
    _reject_time_major(time_major)
    layer = LSTM(
        units, activation=activation, recurrent_activation=recurrent_activation, use_bias=use_bias,
        return_sequences=return_sequences, return_state=return_state, go_backwards=go_backwards,
        stateful=stateful, unroll=unroll, kernel_initializer=kernel_initializer,
        recurrent_initializer=recurrent_initializer, bias_initializer=bias_initializer,
        unit_forget_bias=unit_forget_bias, kernel_regularizer=kernel_regularizer,
        recurrent_regularizer=recurrent_regularizer, bias_regularizer=bias_regularizer,
        activity_regularizer=activity_regularizer, kernel_constraint=kernel_constraint,
        recurrent_constraint=recurrent_constraint, bias_constraint=bias_constraint, dropout=dropout,
        recurrent_dropout=recurrent_dropout, **kwargs,
    )  # fmt: skip
    return compose(object, layer)


def _reject_time_major(time_major: Any) -> None:
    """R keras 2 had `time_major`; Keras 3 removed it (SEMANTICS §7), so only its default FALSE is accepted."""
    if arguments.flag("time_major", time_major):
        raise arguments.invalid(
            "time_major", time_major, "is not supported: Keras 3 removed it; inputs are (batch, time, features)"
        )


# ---- wrappers ----------------------------------------------------------------------------------------------------


def bidirectional(
    object: Any = None,
    layer: Any = None,
    merge_mode: str | None = "concat",
    weights: Any = None,
    backward_layer: Any = None,
    **kwargs: Any,
) -> Any:
    """Bidirectional wrapper around a recurrent layer (`layer_simple_rnn`, `layer_gru`, `layer_lstm` or `layer_rnn`
    with a cell or stacked cells); `backward_layer` must be NULL (the backward copy of `layer`, fresh weights and
    cells, is made for you). `merge_mode=NULL` returns the forward and backward outputs unmerged."""
    return compose(object, Bidirectional(layer, merge_mode, weights=weights, backward_layer=backward_layer, **kwargs))


def time_distributed(object: Any = None, layer: Any = None, **kwargs: Any) -> Any:
    """Apply a layer_dense() to every timestep."""
    return compose(object, TimeDistributed(layer, **kwargs))


# ---- core layers -------------------------------------------------------------------------------------------------


def layer_dense(
    object: Any = None,
    units: Any = None,
    activation: Any = None,
    use_bias: bool = True,
    kernel_initializer: Any = "glorot_uniform",
    bias_initializer: Any = "zeros",
    kernel_regularizer: Any = None,
    bias_regularizer: Any = None,
    activity_regularizer: Any = None,
    kernel_constraint: Any = None,
    bias_constraint: Any = None,
    **kwargs: Any,
) -> Any:
    """Densely connected layer, applied to the last axis."""
    layer = Dense(
        units, activation=activation, use_bias=use_bias, kernel_initializer=kernel_initializer,
        bias_initializer=bias_initializer, kernel_regularizer=kernel_regularizer,
        bias_regularizer=bias_regularizer, activity_regularizer=activity_regularizer,
        kernel_constraint=kernel_constraint, bias_constraint=bias_constraint, **kwargs,
    )  # fmt: skip
    return compose(object, layer)


def layer_embedding(
    object: Any = None,
    input_dim: Any = None,
    output_dim: Any = None,
    embeddings_initializer: Any = "uniform",
    embeddings_regularizer: Any = None,
    activity_regularizer: Any = None,
    embeddings_constraint: Any = None,
    mask_zero: bool = False,
    input_length: Any = None,
    **kwargs: Any,
) -> Any:
    """Turn token ids into dense vectors; `mask_zero=TRUE` masks id 0 (SEMANTICS §4)."""
    layer = Embedding(
        input_dim, output_dim, embeddings_initializer=embeddings_initializer,
        embeddings_regularizer=embeddings_regularizer, activity_regularizer=activity_regularizer,
        embeddings_constraint=embeddings_constraint, mask_zero=mask_zero, input_length=input_length, **kwargs,
    )  # fmt: skip
    return compose(object, layer)


def layer_masking(object: Any = None, mask_value: float = 0.0, **kwargs: Any) -> Any:
    """Mask the timesteps whose features all equal `mask_value`."""
    return compose(object, Masking(mask_value, **kwargs))


def layer_dropout(
    object: Any = None, rate: Any = None, noise_shape: Any = None, seed: Any = None, **kwargs: Any
) -> Any:
    """Dropout (inactive at inference; kept in the config)."""
    return compose(object, Dropout(rate, noise_shape=noise_shape, seed=seed, **kwargs))


# ---- inputs and models -------------------------------------------------------------------------------------------


def layer_input(
    shape: Any = None,
    batch_size: Any = None,
    dtype: str | None = None,
    sparse: Any = None,
    batch_shape: Any = None,
    name: str | None = None,
) -> KerasTensor:
    """A symbolic model input: `shape` without the batch axis, or `batch_shape` with it (a fixed batch size is
    what `stateful=TRUE` needs). `dtype` is "float32" (default) or an integer type for token ids."""
    if sparse:
        raise arguments.invalid("sparse", sparse, "is not supported: inputs are dense")
    if batch_shape is not None:
        if shape is not None or batch_size is not None:
            raise arguments.invalid("batch_shape", batch_shape, "cannot be combined with shape or batch_size")
        full = arguments.shape("batch_shape", batch_shape)
        if not full:
            raise arguments.invalid("batch_shape", batch_shape, "must include the batch axis")
    elif shape is not None:
        batch = None if batch_size is None else arguments.positive_int("batch_size", batch_size)
        full = (batch, *arguments.shape("shape", shape))
    else:
        raise arguments.invalid("shape", shape, "or batch_shape must be given")
    return InputLayer(full, dtype, arguments.name("name", name)).output


def keras_model_sequential(
    layers: Any = None,
    name: str | None = None,
    *,
    input_shape: Any = None,
    batch_size: Any = None,
    dtype: str | None = None,
    input_layer_name: str | None = None,
) -> Sequential:
    """A Sequential model; `input_shape` (and `batch_size` for stateful layers) creates its input layer."""
    model = Sequential(name=name)
    if input_shape is not None:
        model.add(layer_input(input_shape, batch_size=batch_size, dtype=dtype, name=input_layer_name))
    elif batch_size is not None:
        raise arguments.invalid("batch_size", batch_size, "needs input_shape as well")
    for layer in _as_list(layers):
        model.add(layer)
    return model


def keras_model(inputs: Any, outputs: Any = None, name: str | None = None) -> Functional:
    """A Functional model from `layer_input()` tensors to output tensors."""
    if outputs is None:
        raise arguments.invalid("outputs", outputs, "must be given (tensors computed from `inputs`)")
    return Functional(inputs, outputs, name=name)


def _as_list(layers: Any) -> Iterable[Any]:
    if layers is None:
        return ()
    return layers if isinstance(layers, (list, tuple)) else (layers,)


# ---- RNN and cells -----------------------------------------------------------------------------------------------


def layer_rnn(
    object: Any = None,
    cell: Any = None,
    return_sequences: bool = False,
    return_state: bool = False,
    go_backwards: bool = False,
    stateful: bool = False,
    unroll: bool = False,
    zero_output_for_mask: bool = False,
    **kwargs: Any,
) -> Any:
    """Base class for recurrent layers (Keras RNN) around `cell`: an `rnn_cell_*()`, a list of them or
    `rnn_cells_stack()` (cells stacked: each timestep runs them in turn)."""
    layer = RNN(
        cell, return_sequences=return_sequences, return_state=return_state, go_backwards=go_backwards,
        stateful=stateful, unroll=unroll, zero_output_for_mask=zero_output_for_mask, **kwargs,
    )  # fmt: skip
    return compose(object, layer)


def rnn_cell_simple(
    units: Any,
    activation: Any = "tanh",
    use_bias: bool = True,
    kernel_initializer: Any = "glorot_uniform",
    recurrent_initializer: Any = "orthogonal",
    bias_initializer: Any = "zeros",
    kernel_regularizer: Any = None,
    recurrent_regularizer: Any = None,
    bias_regularizer: Any = None,
    kernel_constraint: Any = None,
    recurrent_constraint: Any = None,
    bias_constraint: Any = None,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    seed: int | None = None,
    **kwargs: Any,
) -> SimpleRNNCell:
    """Cell class for SimpleRNN (Keras SimpleRNNCell), for layer_rnn()."""
    return SimpleRNNCell(
        units, activation=activation, use_bias=use_bias, kernel_initializer=kernel_initializer,
        recurrent_initializer=recurrent_initializer, bias_initializer=bias_initializer,
        kernel_regularizer=kernel_regularizer, recurrent_regularizer=recurrent_regularizer,
        bias_regularizer=bias_regularizer, kernel_constraint=kernel_constraint,
        recurrent_constraint=recurrent_constraint, bias_constraint=bias_constraint, dropout=dropout,
        recurrent_dropout=recurrent_dropout, seed=seed, **kwargs,
    )  # fmt: skip


def rnn_cell_gru(
    units: Any,
    activation: Any = "tanh",
    recurrent_activation: Any = "sigmoid",
    use_bias: bool = True,
    kernel_initializer: Any = "glorot_uniform",
    recurrent_initializer: Any = "orthogonal",
    bias_initializer: Any = "zeros",
    kernel_regularizer: Any = None,
    recurrent_regularizer: Any = None,
    bias_regularizer: Any = None,
    kernel_constraint: Any = None,
    recurrent_constraint: Any = None,
    bias_constraint: Any = None,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    reset_after: bool = True,
    seed: int | None = None,
    **kwargs: Any,
) -> GRUCell:
    """Cell class for the GRU layer (Keras GRUCell), for layer_rnn()."""
    return GRUCell(
        units, activation=activation, recurrent_activation=recurrent_activation, use_bias=use_bias,
        kernel_initializer=kernel_initializer, recurrent_initializer=recurrent_initializer,
        bias_initializer=bias_initializer, kernel_regularizer=kernel_regularizer,
        recurrent_regularizer=recurrent_regularizer, bias_regularizer=bias_regularizer,
        kernel_constraint=kernel_constraint, recurrent_constraint=recurrent_constraint,
        bias_constraint=bias_constraint, dropout=dropout, recurrent_dropout=recurrent_dropout,
        reset_after=reset_after, seed=seed, **kwargs,
    )  # fmt: skip


def rnn_cell_lstm(
    units: Any,
    activation: Any = "tanh",
    recurrent_activation: Any = "sigmoid",
    use_bias: bool = True,
    kernel_initializer: Any = "glorot_uniform",
    recurrent_initializer: Any = "orthogonal",
    bias_initializer: Any = "zeros",
    unit_forget_bias: bool = True,
    kernel_regularizer: Any = None,
    recurrent_regularizer: Any = None,
    bias_regularizer: Any = None,
    kernel_constraint: Any = None,
    recurrent_constraint: Any = None,
    bias_constraint: Any = None,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    seed: int | None = None,
    **kwargs: Any,
) -> LSTMCell:
    """Cell class for the LSTM layer (Keras LSTMCell), for layer_rnn()."""
    return LSTMCell(
        units, activation=activation, recurrent_activation=recurrent_activation, use_bias=use_bias,
        kernel_initializer=kernel_initializer, recurrent_initializer=recurrent_initializer,
        bias_initializer=bias_initializer, unit_forget_bias=unit_forget_bias,
        kernel_regularizer=kernel_regularizer, recurrent_regularizer=recurrent_regularizer,
        bias_regularizer=bias_regularizer, kernel_constraint=kernel_constraint,
        recurrent_constraint=recurrent_constraint, bias_constraint=bias_constraint, dropout=dropout,
        recurrent_dropout=recurrent_dropout, seed=seed, **kwargs,
    )  # fmt: skip


def rnn_cells_stack(cells: Any, *more: Any, **kwargs: Any) -> StackedRNNCells:
    """Wrapper allowing a stack of RNN cells to behave as a single cell (Keras StackedRNNCells); further unnamed
    arguments are more cells."""
    return StackedRNNCells(cells, *more, **kwargs)
