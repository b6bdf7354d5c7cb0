"""One converter module per Keras layer family; importing this package registers them all."""

from service.export.converters import (  # noqa: F401
    bidirectional,
    dense,
    dropout,
    embedding,
    gru,
    lstm,
    masking,
    simple_rnn,
    time_distributed,
)
