"""Neural-network building blocks (PyTorch conventions): `Module`, `Parameter`, layers, losses,
`functional` and `init`."""

from chainrule.checkpoint import checkpoint_sequential  # noqa: F401,E402
from chainrule.nn import functional, init  # noqa: F401
from chainrule.nn.layers import (  # noqa: F401
    GELU,
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    BCELoss,
    BCEWithLogitsLoss,
    Conv1d,
    Conv2d,
    CrossEntropyLoss,
    Dropout,
    Embedding,
    Flatten,
    Identity,
    L1Loss,
    LayerNorm,
    LeakyReLU,
    Linear,
    MaxPool2d,
    ModuleList,
    MSELoss,
    NLLLoss,
    ReLU,
    Sequential,
    Sigmoid,
    Softmax,
    Tanh,
)
from chainrule.nn.module import Module, Parameter  # noqa: F401
