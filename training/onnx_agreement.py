"""Do the served ONNX graphs answer the external slices as the eager model does?

``python -m handler.export_onnx --check`` measures top-1 agreement on the validation split. The
scans where the model is least sure are the external ones, so this runs the same comparison over
every brain slice of the external patient volumes (and the packaged MRI), with the slices made as
``make external`` makes them:

    python -m training.onnx_agreement --weights model_store/brain_tumor.safetensors \
        --onnx build/onnx/brain_tumor.onnx --also model_store/brain_tumor.int8.onnx

Exits non-zero when a ``--onnx`` graph (one that may be served) agrees on fewer than
:data:`MIN_AGREEMENT` of the slices; ``--also`` graphs are measured and reported only.
"""

import argparse
import json
import sys
from pathlib import Path

import torch
from PIL import Image

from neuroscan.model import load_trained_model
from neuroscan.preprocess import pixels, preprocess_batch
from training.external import DEFAULT_EXTERNAL, volume_sources
from training.external_metrics import read_reference
from training.external_sources import ExternalDataMissing
from training.external_volumes import is_brain_slice

MIN_AGREEMENT = 0.995


def external_batches(external: Path, batch_size: int = 32) -> list[torch.Tensor]:
    """Every external brain slice, preprocessed as served, in batches."""
    volumes = [volume for volume, _ in volume_sources(external, read_reference())]
    slices = [pixels(Image.fromarray(s)) for volume in volumes for s in volume.slices if is_brain_slice(s)]
    return [preprocess_batch(slices[i:i + batch_size]) for i in range(0, len(slices), batch_size)]


def agreement(weights: Path, graphs: list[Path], batches: list[torch.Tensor]) -> dict:
    """Per graph: slices, top-1 agreement with eager fp32 and the number of slices that differ."""
    import onnxruntime as ort

    model, _ = load_trained_model(weights)
    head = model.get_classifier()
    sessions = {path.name: ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]) for path in graphs}
    same = dict.fromkeys(sessions, 0)
    total = 0
    for batch in batches:
        with torch.inference_mode():
            reference = model(batch).argmax(1)
            for name, session in sessions.items():
                features = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: batch.numpy()})[0])
                same[name] += int((head(features.mean(dim=(2, 3))).argmax(1) == reference).sum())
        total += len(batch)
    return {name: {"slices": total, "agreement_with_eager": round(count / total, 5), "disagreements": total - count}
            for name, count in same.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--onnx", type=Path, nargs="+", required=True, help="graphs held to the bar")
    parser.add_argument("--also", type=Path, nargs="*", default=[], help="graphs only measured")
    parser.add_argument("--external", type=Path, default=DEFAULT_EXTERNAL)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    try:
        batches = external_batches(args.external)
    except ExternalDataMissing as exc:
        sys.exit(str(exc))
    result = agreement(args.weights, [*args.onnx, *args.also], batches)
    print(json.dumps(result, indent=1))
    held = {path.name for path in args.onnx}
    low = [name for name, row in result.items() if name in held and row["agreement_with_eager"] < MIN_AGREEMENT]
    if low:
        sys.exit(f"{', '.join(low)}: agreement with the eager model on external slices is below "
                 f"{MIN_AGREEMENT:.1%}")


if __name__ == "__main__":
    main()
