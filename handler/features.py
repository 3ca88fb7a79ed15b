"""Feature-map backends: the part of the network that varies with the speed options.

Every backend maps a preprocessed batch (N, 3, H, W) to the last feature map (N, C, h, w);
the handler applies global pooling and the linear head itself, so predictions, the
not-an-MRI distance and Grad-CAM all come from that one map.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from neuroscan.weights import WeightFile


class FeatureBackend(Protocol):
    name: str

    def __call__(self, batch: torch.Tensor) -> torch.Tensor: ...


@dataclass
class EagerBackend:
    """Plain PyTorch eager mode, optionally channels-last (the reference everything is checked against)."""

    model: nn.Module
    channels_last: bool = False
    name: str = "eager"

    def __post_init__(self) -> None:
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return self.model.forward_features(batch)


def eager_backend(weights: WeightFile, model_dir: Path, **options) -> EagerBackend:
    """Build the timm model from the weight file (the only backend that needs timm)."""
    from neuroscan.model import create_model
    from neuroscan.spec import get_spec

    model = create_model(get_spec(weights.meta.spec))
    model.load_state_dict(weights.state_dict, strict=True)
    return EagerBackend(model.eval(), **options)


@dataclass
class JitBackend:
    """``torch.jit.trace`` + ``freeze`` of the feature extractor (timm's Conv2dSame pads fixed first)."""

    module: torch.jit.ScriptModule
    channels_last: bool = False
    name: str = "jit"

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return self.module(batch)


def jit_backend(weights: WeightFile, model_dir: Path, channels_last: bool = False) -> JitBackend:
    """Trace the timm model (needs timm, so not for the slim server image)."""
    from handler.export_onnx import FeatureExtractor, freeze_same_padding
    from neuroscan.model import create_model
    from neuroscan.spec import get_spec

    model = create_model(get_spec(weights.meta.spec))
    model.load_state_dict(weights.state_dict, strict=True)
    model = freeze_same_padding(model.eval(), weights.meta.input_size)
    size = weights.meta.input_size
    example = torch.zeros(2, 3, size, size)
    extractor = FeatureExtractor(model).eval()
    if channels_last:
        extractor = extractor.to(memory_format=torch.channels_last)
        example = example.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        module = torch.jit.freeze(torch.jit.trace(extractor, example))
        for _ in range(2):  # the profiling executor optimises on the first runs, not on a request
            module(example)
    return JitBackend(module, channels_last)


@dataclass
class OnnxBackend:
    """An exported feature-map graph run by ONNX Runtime (no timm needed at serving time)."""

    session: object
    input_name: str = "input"
    output_name: str = "features"
    name: str = "onnx"

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        array = batch.detach().contiguous().numpy()
        return torch.from_numpy(self.session.run([self.output_name], {self.input_name: array})[0])


def onnx_backend(weights: WeightFile, model_dir: Path, model: str = "brain_tumor.onnx", intra_op_threads: int = 1,
                 inter_op_threads: int = 1, allow_spinning: bool = True) -> OnnxBackend:
    """ONNX Runtime on the CPU with a fixed thread count per worker.

    ``model`` names a file in the archive: ``brain_tumor.onnx`` (fp32) or ``brain_tumor.int8.onnx``
    (static QDQ int8), the first exported at ``make archive``, the second committed next to the
    weights (``make int8`` quantises it), both by handler/export_onnx.py. A graph exported
    from other weights than the archive's safetensors file is refused (the head, the not-MRI statistics
    and the temperature come from that file). ``allow_spinning: false`` stops idle intra-op threads
    burning CPU when several multi-threaded workers share the cores.
    """
    import onnxruntime as ort

    path = Path(model_dir) / model
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {path} (make archive exports it)")
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(intra_op_threads)
    options.inter_op_num_threads = int(inter_op_threads)
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not allow_spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    exported = session.get_modelmeta().custom_metadata_map.get("neuroscan_version")
    if exported is not None and exported != weights.meta.version:
        raise ValueError(f"{path.name} was exported from model version {exported}, "
                         f"but the weight file is version {weights.meta.version}")
    size = weights.meta.input_size
    backend = OnnxBackend(session, session.get_inputs()[0].name, session.get_outputs()[0].name,
                          name="onnx-int8" if "int8" in path.name else "onnx")
    backend(torch.zeros(1, 3, size, size))  # first run allocates; keep it off the first request
    return backend


# name -> factory(weight file, unpacked archive directory, **backend_options from the YAML)
BACKENDS = {"eager": eager_backend, "jit": jit_backend, "onnx": onnx_backend}


def create_backend(name: str, weights: WeightFile, model_dir: Path, options: dict) -> FeatureBackend:
    """Build the backend the model-config YAML names; unknown names fail the worker at start."""
    try:
        factory = BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; known: {sorted(BACKENDS)}") from None
    return factory(weights, model_dir, **options)
