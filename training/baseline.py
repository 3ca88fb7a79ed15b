"""From-scratch CNN baseline (Conv/BatchNorm/Pool/Dropout), the original system's kind of model."""

from itertools import pairwise

from torch import nn

from neuroscan.classes import NUM_CLASSES


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class BaselineCNN(nn.Module):
    """Five conv blocks (32..256 channels), global pooling, dropout, linear head."""

    def __init__(self, num_classes: int = NUM_CLASSES, widths: tuple[int, ...] = (32, 64, 128, 192, 256)):
        super().__init__()
        channels = (3, *widths)
        self.features = nn.Sequential(*(_block(a, b) for a, b in pairwise(channels)))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.3)
        self.classifier = nn.Linear(widths[-1], num_classes)

    def forward_features(self, x):
        return self.features(x)

    def forward_head(self, x, pre_logits: bool = False):
        x = self.dropout(self.pool(x).flatten(1))
        return x if pre_logits else self.classifier(x)

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def forward(self, x):
        return self.forward_head(self.forward_features(x))
