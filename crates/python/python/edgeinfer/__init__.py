"""edgeinfer: quantized LLMs (GGUF) and an LSTM text classifier on small CPUs.

Every computation runs in Rust with the GIL released; errors are ``edgeinfer.Error``
subclasses.
"""

from ._edgeinfer import (
    ContextFullError,
    Error,
    InvalidInputError,
    LoadError,
    LstmClassifier,
    Model,
    TextIterator,
)

__all__ = [
    "ContextFullError",
    "Error",
    "InvalidInputError",
    "LoadError",
    "LstmClassifier",
    "Model",
    "TextIterator",
]
