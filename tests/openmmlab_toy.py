"""A model type registered in an mmengine registry of its own scope, as an OpenMMLab
package registers its models (tests/configs/ name it)."""
from mmengine.registry import MODELS as ROOT
from mmengine.registry import Registry
from torch import nn

MODELS = Registry("model", parent=ROOT, scope="dftoy")


@MODELS.register_module()
class ToyClassifier(nn.Module):
    """backbone (convolutions, counted by extract_feat) and a head."""

    def __init__(self, width: int = 8, depth: int = 2, num_classes: int = 10):
        super().__init__()
        self.backbone = nn.Sequential(*[nn.Conv2d(3 if i == 0 else width, width, 3, padding=1)
                                        for i in range(depth)])
        self.head = nn.Linear(width, num_classes)

    def extract_feat(self, x):
        return self.backbone(x)

    def forward(self, x):
        return self.head(self.extract_feat(x).mean((2, 3)))
