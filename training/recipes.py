"""Training recipes: which parameters train in each phase, for how long, at what learning rate."""

from dataclasses import dataclass, replace

from torch import nn


@dataclass(frozen=True)
class Phase:
    """One stage of gradual fine-tuning."""

    name: str
    epochs: int
    lr: float
    trainable: str  # "head", "top" or "all"
    weight_decay: float = 1e-4


@dataclass(frozen=True)
class Recipe:
    name: str
    phases: tuple[Phase, ...]
    batch_size: int = 32
    label_smoothing: float = 0.05
    patience: int = 6
    # A trained weight file to start from, head included (None: ImageNet features, a new head).
    start_from: str | None = None
    # Packaged healthy heads whose slices join the no-tumour class, by name (training/healthy.py).
    templates: tuple[str, ...] = ()
    # Weight the loss by inverse class frequency, so every class counts alike (the template makes
    # no-tumour the largest class).
    balanced: bool = False
    # Share of tumour-free slices given a synthetic mass and the glioma label (training/lesions.py; 0: none).
    lesion_share: float = 0.0
    # Share of the start weights in the exported model: the fine-tune averaged in weight space with where it
    # began (WiSE-FT), keeping what the start got right that a short polish forgets (0: the fine-tune as is).
    start_share: float = 0.0


MNI152 = ("MNI152 2009a",)

# 2.2: 2.1 fine-tuned on robust-lesions' schedule with the Colin27 head (skull, scalp, skull base
# to vertex) added to the tumour-free slices, for the vertex and skull-base false alarms on real series, and
# masses in a quarter of them, so more tumour-free heads do not teach that a head with skull is tumour-free
# (MODEL_CARD.md).
COLIN = Recipe("robust-colin", (Phase("all", 3, 1e-4, "all"),), start_from="model_store/brain_tumor.safetensors",
               templates=(*MNI152, "Colin27"), balanced=True, lesion_share=0.25)

RECIPES: dict[str, Recipe] = {
    # 1: frozen backbone, head only, high LR; 2: top blocks, lower LR; 3: everything, very low LR.
    "lite0": Recipe(
        "lite0",
        (
            Phase("head", 3, 3e-3, "head", 0.0),
            Phase("top", 6, 1e-3, "top"),
            Phase("all", 30, 3e-4, "all"),
        ),
    ),
    # 2.x: the shipped model fine-tuned end to end under style randomisation (training/augment.py),
    # short enough for one session on 2 CPU cores (about 9 minutes an epoch).
    "robust": Recipe("robust", (Phase("all", 5, 3e-4, "all"),), start_from="model_store/brain_tumor.safetensors",
                     templates=MNI152),
    # 2.0 polished at a third of the learning rate with a class-balanced loss (glioma slices taken for
    # meningioma are 2.0's main in-distribution error). Tried, not shipped: it meets the validation bars
    # and finds fewer tumours on the external volumes (MODEL_CARD.md, "Robust fine-tune").
    "robust-polish": Recipe("robust-polish", (Phase("all", 3, 1e-4, "all"),),
                            start_from="model_store/brain_tumor.safetensors", templates=MNI152, balanced=True),
    # 2.1: 2.0 polished as above with synthetic masses painted into some tumour-free slices
    # (training/lesions.py), so a lesion in another sequence's look is a tumour (MODEL_CARD.md).
    "robust-lesions": Recipe("robust-lesions", (Phase("all", 3, 1e-4, "all"),),
                             start_from="model_store/brain_tumor.safetensors", templates=MNI152, balanced=True,
                             lesion_share=0.15),
    "robust-colin": COLIN,
    # 2.2.0 polished with the same data at a third of the learning rate. Tried, not shipped: it meets the
    # validation bars and gives one more confident `notumor` on a tumour slice elsewhere (MODEL_CARD.md,
    # "Colin27 fine-tune").
    "colin-polish": replace(COLIN, name="colin-polish", phases=(Phase("all", 2, 3e-5, "all"),)),
    # 2.3 (shipped): 2.2.0 polished at a third of the learning rate with masses in 35% of the tumour-free
    # slices, exported as the mean of its weights and 2.2.0's: the polish alone meets the validation bars
    # with more confident misses elsewhere, the mean gives no more of them than 2.2.0 (MODEL_CARD.md).
    "masses-average": replace(COLIN, name="masses-average", phases=(Phase("all", 2, 3e-5, "all"),),
                              lesion_share=0.35, start_share=0.5),
    "baseline": Recipe("baseline", (Phase("all", 30, 2e-3, "all"),), batch_size=64, patience=8),
}


def trainable_parameters(model: nn.Module, trainable: str) -> list[nn.Parameter]:
    """Freeze everything, then unfreeze the phase's part; returns the parameters to optimise."""
    for p in model.parameters():
        p.requires_grad_(False)
    if trainable == "all":
        modules = [model]
    elif trainable == "head":
        modules = [model.get_classifier()]
    elif trainable == "top":
        modules = [model.get_classifier(), *_top_modules(model)]
    else:
        raise ValueError(f"unknown trainable group {trainable!r}")
    params = [p for m in modules for p in m.parameters()]
    for p in params:
        p.requires_grad_(True)
    return params


def _top_modules(model: nn.Module, blocks: int = 2) -> list[nn.Module]:
    """The last ``blocks`` stages plus the final conv/BN of a timm EfficientNet."""
    return [*model.blocks[-blocks:], model.conv_head, model.bn2]
