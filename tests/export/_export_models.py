"""Small torch models the export tests share (torch imported by the tests that use them)."""

from __future__ import annotations

import torch


class CNN(torch.nn.Module):
    """conv-bn-relu, max pool, conv-relu, flatten, linear: 1 x 8 x 8 in, 5 out."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 6, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(6)
        self.conv2 = torch.nn.Conv2d(6, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8 * 4 * 4, 5)

    def forward(self, x):
        x = torch.nn.functional.max_pool2d(torch.relu(self.bn(self.conv(x))), 2)
        return self.fc(torch.relu(self.conv2(x)).flatten(1))
