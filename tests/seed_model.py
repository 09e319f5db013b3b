"""The seed's model, shaped as mmpretrain's ImageClassifier (resnet50_8xb32_in1k):
backbone (ResNet-50 without its pooling and classifier), neck.gap, head.fc. Its
``extract_feat`` stops before the classifier, as get_flops.py counts it."""
import torch
import torchvision


class Backbone(torch.nn.Module):
    def __init__(self):
        super().__init__()
        r = torchvision.models.resnet50(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = r.conv1, r.bn1, r.relu, r.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = r.layer1, r.layer2, r.layer3, r.layer4

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class GlobalAveragePooling(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.gap = torch.nn.AdaptiveAvgPool2d((1, 1))

    def forward(self, x):
        return self.gap(x).flatten(1)


class LinearClsHead(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(2048, 1000)

    def forward(self, x):
        return self.fc(x)


class ImageClassifier(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = Backbone()
        self.neck = GlobalAveragePooling()
        self.head = LinearClsHead()

    def extract_feat(self, x):
        return self.neck(self.backbone(x))

    def forward(self, x):
        return self.head(self.extract_feat(x))


def build():
    return ImageClassifier()
