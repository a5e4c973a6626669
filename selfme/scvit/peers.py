"""Published peers on MEGC2019 motion images, in SCViT's harness: STSTNet and OFF-ApexNet.

Both read the 28 x 28 onset-to-apex motion images (channels u, v, optical strain) and expose what
SCViT does: ``forward(x, with_regions=...)`` returns the logits, or the logits and region embeddings
[B, 4, D] (the mean of a convolutional feature map over its UL, UR, BL, BR quadrants, see
``selfme.scvit.regions``), so the same training loop, SC loss and LOSO evaluation apply unchanged.

STSTNet (Liong et al., 2019, "Shallow Triple Stream Three-dimensional CNN (STSTNet) for
Micro-expression Recognition"): three parallel streams on the same (u, v, strain) input, each one 3 x 3
convolution (3, 5 and 8 filters, 'same' padding) with ReLU and 3 x 3 max pooling of stride 3 (padding
1: 28 -> 10); the 16 maps are concatenated, average-pooled 2 x 2 (10 -> 5) and flattened into a
dense softmax layer: 448 + 1,203 = 1,651 parameters for 3 classes. No batch normalisation or dropout is
described for the original; the published recipe is Adam lr 5e-5, batch 256, 800 epochs
(configs/ststnet.yaml). Regions: the quadrants of the 10 x 10 concatenated map the dense layer reads.

OFF-ApexNet (Gan, Liong et al., 2019, "OFF-ApexNet on micro-expression recognition system"): two
streams, one on the horizontal and one on the vertical flow, each two 5 x 5 'same' convolutions (6,
then 16 filters) with ReLU and 2 x 2 max pooling (28 -> 14 -> 7); the two 7 x 7 x 16 maps are
flattened, concatenated (1,568) and classified by two fully connected layers of 1,024 units and the
output layer: 2,664,475 parameters for 3 classes. Regions: the quadrants of the 7 x 7 x 32 map of both
streams (odd grid: the middle row and column belong to neither half).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from selfme.scvit.regions import region_embeddings

PEERS = ("ststnet", "off_apexnet")


def _regions(feature_map: torch.Tensor) -> torch.Tensor:
    """Quadrant means [B, 4, C] of a feature map [B, C, H, W]."""
    b, c, h, w = feature_map.shape
    return region_embeddings(feature_map.flatten(2).transpose(1, 2), (h, w))


class STSTNet(nn.Module):
    """Three conv streams (``filters``) -> ReLU -> max pool 3/3 -> concat -> avg pool 2 -> dense.

    in_chans: input channels (3: u, v, strain); img_size: input side (28 in the paper).
    """

    def __init__(self, *, num_classes: int, in_chans: int = 3, img_size: int = 28,
                 filters: tuple[int, ...] = (3, 5, 8)) -> None:
        super().__init__()
        self.streams = nn.ModuleList(nn.Conv2d(in_chans, f, kernel_size=3, padding=1) for f in filters)
        pooled = (img_size + 2 - 3) // 3 + 1          # max pool 3, stride 3, padding 1
        if pooled < 2:
            raise ValueError(f"STSTNet needs images of at least 4 pixels, got {img_size}")
        self.grid = (pooled, pooled)
        side = pooled // 2                             # average pool 2 x 2
        self.head = nn.Linear(sum(filters) * side * side, num_classes)
        self.num_classes = int(num_classes)
        self.in_chans = int(in_chans)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The concatenated stream outputs [B, sum(filters), 10, 10] (28 px input).

        ReLU is applied after the max pooling: ReLU is monotone, so relu(maxpool(a)) = maxpool(relu(a))
        exactly, values and gradients (tested), and it then runs on a ninth of the elements (about
        1.25x faster a training step at batch 256 on CPU)."""
        return torch.cat([F.relu(F.max_pool2d(conv(x), 3, stride=3, padding=1)) for conv in self.streams], dim=1)

    def forward(self, x: torch.Tensor, *, with_regions: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        maps = self.feature_map(x)
        logits = self.head(F.avg_pool2d(maps, 2).flatten(1))
        return (logits, _regions(maps)) if with_regions else logits


class OFFApexNet(nn.Module):
    """Two streams (``stream_channels``: u and v) of conv5-6 / pool / conv5-16 / pool, FC 1024, FC 1024.

    in_chans: input channels (the streams read channels 0 and 1: u, v); img_size: input side (28).
    drop_rate: dropout before each hidden FC layer's output layer (0 in our runs).
    """

    def __init__(self, *, num_classes: int, in_chans: int = 3, img_size: int = 28,
                 stream_channels: tuple[int, ...] = (0, 1), filters: tuple[int, int] = (6, 16),
                 hidden: int = 1024, drop_rate: float = 0.0) -> None:
        super().__init__()
        if max(stream_channels) >= in_chans:
            raise ValueError(f"OFF-ApexNet streams read channels {stream_channels}, the input has {in_chans}")
        if img_size % 4 or img_size < 8:
            raise ValueError(f"OFF-ApexNet needs an image side divisible by 4, got {img_size}")
        self.stream_channels = tuple(int(c) for c in stream_channels)
        self.streams = nn.ModuleList(
            nn.ModuleList([nn.Conv2d(1, filters[0], 5, padding=2), nn.Conv2d(filters[0], filters[1], 5, padding=2)])
            for _ in self.stream_channels)
        side = img_size // 4
        self.grid = (side, side)
        self.fc = nn.Sequential(nn.Linear(len(self.stream_channels) * filters[1] * side * side, hidden), nn.ReLU(),
                                nn.Dropout(drop_rate), nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(drop_rate))
        self.head = nn.Linear(hidden, num_classes)
        self.num_classes = int(num_classes)
        self.in_chans = int(in_chans)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """Both streams' second pooled maps, concatenated: [B, 2 * 16, 7, 7] (28 px input)."""
        maps = []
        for channel, (conv1, conv2) in zip(self.stream_channels, self.streams):
            h = F.max_pool2d(F.relu(conv1(x[:, channel:channel + 1])), 2)
            maps.append(F.max_pool2d(F.relu(conv2(h)), 2))
        return torch.cat(maps, dim=1)

    def forward(self, x: torch.Tensor, *, with_regions: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        maps = self.feature_map(x)
        # each stream is flattened on its own, then the two vectors are concatenated (as the paper)
        per_stream = maps.split(maps.shape[1] // len(self.stream_channels), dim=1)
        logits = self.head(self.fc(torch.cat([m.flatten(1) for m in per_stream], dim=1)))
        return (logits, _regions(maps)) if with_regions else logits


def create_peer(name: str, *, num_classes: int, in_chans: int, img_size: int, drop_rate: float = 0.0) -> nn.Module:
    """A peer by name (``scvit.model_name``: ststnet | off_apexnet), randomly initialised."""
    if name == "ststnet":
        return STSTNet(num_classes=num_classes, in_chans=in_chans, img_size=img_size)
    if name == "off_apexnet":
        return OFFApexNet(num_classes=num_classes, in_chans=in_chans, img_size=img_size, drop_rate=drop_rate)
    raise ValueError(f"unknown peer {name!r}; known: {PEERS}")
