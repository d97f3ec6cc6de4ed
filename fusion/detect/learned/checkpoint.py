"""mmdetection3d checkpoints in and out, without mmengine.

An mmdet3d 1.x checkpoint is a torch pickle `{"meta": {...}, "state_dict": {...}, ...}`; mmengine also
stores its message hub and optimizer, objects whose classes are not installed here. `read_checkpoint`
unpickles tensors, containers and plain values only; any other class becomes an inert stand-in (no
code of the file's choosing runs). Keys map explicitly between mmdet3d's names and our modules':

    mmdet3d key                                   ours
    [pts_]voxel_encoder.pfn_layers.0.linear.weight  voxel_encoder.pfn_layers.0.linear.weight
    [pts_]backbone.blocks.0.0.weight                 backbone.blocks.0.0.weight
    [pts_]neck.deblocks.0.0.weight                   neck.deblocks.0.0.weight
    [pts_]bbox_head.conv_cls.weight                  bbox_head.conv_cls.weight (PointPillars)
    pts_bbox_head.task_heads.0.reg.0.conv.weight     bbox_head.task_heads.0.reg.0.conv.weight (CenterPoint)

Keys of the checkpoint that the model lacks, keys the model needs that the checkpoint lacks, and
shape mismatches are errors that list them.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, Final

import torch
from torch import Tensor, nn

from fusion.detect.errors import DetectError

MODULES: Final = ("voxel_encoder", "middle_encoder", "backbone", "neck", "bbox_head")
_SAFE: Final = {
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch", "Size"),
    ("torch", "device"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "slice"),
    ("builtins", "complex"),
    ("numpy", "dtype"),
    ("numpy", "ndarray"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("_codecs", "encode"),
}


class _Inert:
    """Stands in for a class of the pickle that is not a tensor or a plain value."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.args = args

    def __setstate__(self, state: object) -> None:
        self.state = state


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE or (module == "torch" and name.endswith(("Storage", "Tensor"))):
            return super().find_class(module, name)
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        return type(name, (_Inert,), {"__module__": f"inert.{module}"})


class _RestrictedPickle:
    """A `pickle_module` for torch.load whose Unpickler only builds tensors and plain values."""

    Unpickler = _Unpickler
    __name__ = "fusion_restricted_pickle"

    @staticmethod
    def load(file: IO[bytes], **kwargs: Any) -> Any:
        return _Unpickler(file, **kwargs).load()


def read_checkpoint(path: Path | str) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(state_dict, meta) of an mmdet3d/mmengine checkpoint, or of a bare state dict. CPU tensors.

    Raises DetectError naming the file when it is missing, not a torch file, or holds no weights.
    """
    p = Path(path)
    if not p.is_file():
        raise DetectError(f"{p}: no such checkpoint; pass the .pth file of an mmdet3d model")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        try:
            ckpt = torch.load(p, map_location="cpu", weights_only=False, pickle_module=_RestrictedPickle)
        except Exception as err:
            raise DetectError(_unreadable(p, err)) from err
    except Exception as err:
        raise DetectError(_unreadable(p, err)) from err
    if not isinstance(ckpt, Mapping):
        raise DetectError(f"{p}: a checkpoint must be a dict with a 'state_dict'; got {type(ckpt).__name__}")
    state = ckpt.get("state_dict", ckpt)
    meta = ckpt.get("meta") if isinstance(ckpt.get("meta"), Mapping) else {}
    if not isinstance(state, Mapping):
        raise DetectError(f"{p}: 'state_dict' is not a mapping of tensors")
    tensors = {str(k): v for k, v in state.items() if isinstance(v, Tensor)}
    if not tensors:
        raise DetectError(f"{p}: holds no weights (no tensors in its state_dict)")
    return tensors, dict(meta or {})


def to_model_key(key: str, prefix: str) -> str | None:
    """Our module's name for the mmdet3d key (None when it belongs to no module we build)."""
    if key.startswith("module."):
        key = key[len("module.") :]
    for name in MODULES:
        if key.startswith(f"{prefix}{name}."):
            return name + key[len(prefix) + len(name) :]
    return None


def to_mmdet3d_key(key: str, prefix: str) -> str:
    """The mmdet3d name of one of our model's keys (the inverse of `to_model_key`)."""
    return prefix + key


def load_mmdet3d_state(model: nn.Module, state: Mapping[str, Tensor], prefix: str, source: str) -> None:
    """Load an mmdet3d state dict into `model` (PillarNet) by the explicit key mapping.

    Raises DetectError listing unknown keys, missing keys (BatchNorm's num_batches_tracked may be
    absent: it does not change inference) and shape mismatches.
    """
    own = model.state_dict()
    mapped: dict[str, Tensor] = {}
    unknown: list[str] = []
    for key, value in state.items():
        ours = to_model_key(key, prefix)
        if ours is None or ours not in own:
            unknown.append(key)
        else:
            mapped[ours] = value
    missing = [
        to_mmdet3d_key(k, prefix) for k in own if k not in mapped and not k.endswith("num_batches_tracked")
    ]
    shapes = [
        f"{to_mmdet3d_key(k, prefix)} {tuple(v.shape)} (model: {tuple(own[k].shape)})"
        for k, v in mapped.items()
        if tuple(v.shape) != tuple(own[k].shape)
    ]
    problems = []
    if unknown:
        problems.append(f"{len(unknown)} unknown key(s): {_listing(unknown)}")
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_listing(missing)}")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatch(es): {_listing(shapes)}")
    if problems:
        raise DetectError(
            f"{source}: the checkpoint does not fit the model config: {'; '.join(problems)}; "
            "pass the --model-config the checkpoint was trained with"
        )
    for key, value in own.items():
        if key not in mapped:
            mapped[key] = value  # num_batches_tracked only
    model.load_state_dict(mapped, strict=True)


def _listing(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def mmdet3d_state(model: nn.Module, prefix: str) -> dict[str, Tensor]:
    """The model's weights under mmdet3d's key names (for saving a checkpoint mmdet3d can load)."""
    return {to_mmdet3d_key(k, prefix): v.detach().cpu() for k, v in model.state_dict().items()}


def _unreadable(path: Path, err: Exception) -> str:
    """One line for a file torch cannot load: the cause's first sentence and the fix."""
    cause = str(err).strip().splitlines()[0].split(". ")[0] if str(err).strip() else ""
    return (
        f"{path}: not a readable torch checkpoint ({type(err).__name__}: {cause}); pass the .pth file an "
        "mmdet3d (or bench/train_pointpillars.py) training run saved, copied again if it was cut short"
    )
