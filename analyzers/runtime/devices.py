"""Which device runs a live model: CUDA when there is one, else Apple MPS, else the CPU.

Torch is imported on first use, TensorFlow only when a Keras model asks (`tf_gpus`), so listing the
devices for the GUI's selector never pays for a framework it does not need.
"""

from __future__ import annotations

from dataclasses import dataclass

from analyzers.errors import LayerScopeError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


@dataclass(frozen=True)
class DeviceInfo:
    """One device a model can run on, as the selector lists it."""

    name: str  # "cpu", "cuda:0", "mps"
    description: str  # "NVIDIA H200 (139.8 GiB)", "CPU (16 threads)"


def torch_has_cuda() -> bool:
    """True when torch sees a CUDA device."""
    import torch

    return bool(torch.cuda.is_available())


def torch_has_mps() -> bool:
    """True on Apple silicon with a torch build that has the MPS backend."""
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def torch_devices() -> list[DeviceInfo]:
    """Every device torch can run on here, best first (CUDA devices, MPS, CPU)."""
    import torch

    out: list[DeviceInfo] = []
    if torch_has_cuda():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            out.append(DeviceInfo(f"cuda:{i}", f"{props.name} ({props.total_memory / 2**30:.1f} GiB)"))
    if torch_has_mps():
        out.append(DeviceInfo("mps", "Apple GPU (MPS)"))
    out.append(DeviceInfo("cpu", f"CPU ({torch.get_num_threads()} threads)"))
    return out


def tf_gpus() -> list[str]:
    """TensorFlow's visible GPUs ("GPU:0", ...); imports TensorFlow, so only Keras paths call it."""
    from analyzers.runtime.tf_import import tensorflow

    return [f"GPU:{i}" for i, _ in enumerate(tensorflow().config.list_physical_devices("GPU"))]


def resolve_torch_device(requested: str = "auto") -> str:
    """The torch device for a request: auto -> cuda > mps > cpu; an unavailable device is one sentence."""
    req = (requested or "auto").strip().lower()
    if req == "auto":
        if torch_has_cuda():
            return "cuda:0"
        if torch_has_mps():
            return "mps"
        return "cpu"
    if req == "cpu":
        return "cpu"
    if req.startswith("cuda"):
        if not torch_has_cuda():
            raise LayerScopeError("--device cuda was asked for, but no CUDA device is available on this machine "
                                  "(use --device auto or cpu).")
        import torch

        index = int(req.split(":", 1)[1]) if ":" in req else 0
        if index >= torch.cuda.device_count():
            raise LayerScopeError(f"--device {requested}: this machine has only {torch.cuda.device_count()} "
                                  "CUDA device(s).")
        return f"cuda:{index}"
    if req == "mps":
        if not torch_has_mps():
            raise LayerScopeError("--device mps was asked for, but the Apple MPS backend is not available here.")
        return "mps"
    raise LayerScopeError(f"--device {requested} is not a device; use one of {', '.join(DEVICE_CHOICES)}.")


def resolve_tf_device(requested: str = "auto") -> str:
    """The TensorFlow device for a request: auto -> the first GPU TF sees, else the CPU."""
    req = (requested or "auto").strip().lower()
    if req == "cpu":
        return "CPU:0"
    if req == "mps":
        raise LayerScopeError("--device mps applies to PyTorch models; TensorFlow places Keras models itself "
                              "(use --device auto or cpu).")
    if req not in ("auto",) and not req.startswith("cuda"):
        raise LayerScopeError(f"--device {requested} is not a device; use one of {', '.join(DEVICE_CHOICES)}.")
    gpus = tf_gpus()
    if req.startswith("cuda"):
        if not gpus:
            raise LayerScopeError("--device cuda was asked for, but TensorFlow sees no GPU on this machine "
                                  "(use --device auto or cpu).")
        index = int(req.split(":", 1)[1]) if ":" in req else 0
        if index >= len(gpus):
            raise LayerScopeError(f"--device {requested}: TensorFlow sees only {len(gpus)} GPU(s).")
        return gpus[index]
    return gpus[0] if gpus else "CPU:0"


def describe_device(name: str) -> str:
    """A human label for a resolved device name ("cuda:0 (NVIDIA H200)", "cpu")."""
    if name.startswith("cuda"):
        import torch

        index = int(name.split(":", 1)[1]) if ":" in name else 0
        return f"{name} ({torch.cuda.get_device_name(index)})"
    return name
