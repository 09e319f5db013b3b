"""Model factories that fail in the ways a CLI user can make them fail."""
import torch


class Inner(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(5, 5)  # a 224x224 image's last dim is 224, not 5

    def forward(self, x):
        return self.proj(x)


class Outer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = Inner()

    def forward(self, x):
        return self.inner(x)


class Raises(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.block = torch.nn.Sequential(torch.nn.Identity(), Checker())

    def forward(self, x):
        return self.block(x)


class Checker(torch.nn.Module):
    def forward(self, x):
        if x.shape[-1] != 32:
            raise ValueError("expected 32x32 images")
        return x


def op_fails():
    return Outer()


def python_fails():
    return Raises()


def not_a_module():
    return 42
