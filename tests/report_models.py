"""Small models for the report tests, with costs that are easy to work out by hand.

``tiny()`` on a 1x3x8x8 input (fvcore convention: 1 FLOP per multiply-add):

- ``stem``: 1x1 conv 3 -> 4 over 64 pixels: 768 FLOPs, 256 activations
- ``blocks`` (an ``nn.ModuleList``, never called itself): ``blocks.0`` and ``blocks.1``,
  1x1 convs 4 -> 4: 1024 FLOPs and 256 activations each
- ``head``: its forward pools (the ``mean`` of adaptive average pooling, 256 FLOPs, in
  ``head.pool``); ``head.fc`` (4 -> 2: 8 FLOPs, 2 activations) is called by the model's
  own forward, outside ``head``
- the model's own forward adds nothing itself; total 3080 FLOPs, 770 activations
  (pooling has none)
"""
from torch import nn


class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.pool(x).flatten(1)


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 1)
        self.blocks = nn.ModuleList([nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 1)])
        self.head = Head()

    def forward(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.head.fc(self.head(x))


def tiny():
    return Tiny()


class Double(nn.Module):
    """Computes in float64 (which some datasheets give no peak for)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 8 * 8, 2).double()

    def forward(self, x):
        return self.fc(x.double().flatten(1))


def double():
    return Double()
