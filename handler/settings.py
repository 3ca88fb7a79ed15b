"""Handler settings, read from the ``handler:`` section of config/model-config.yaml."""

from dataclasses import dataclass, field, fields


@dataclass(frozen=True)
class HandlerSettings:
    """What a worker needs to know beyond the archive's files."""

    weights: str = "brain_tumor.safetensors"
    backend: str = "eager"
    backend_options: dict = field(default_factory=dict)
    torch_threads: int = 1
    # False: a non-MRI upload is answered 200 with is_mri=false and a reason (the dashboard
    # warns); True: it is refused with 422 so services can never use its label by mistake.
    reject_non_mri: bool = False
    # Operating point of the not-an-MRI feature distance; None keeps the one fitted in training.
    not_mri_threshold: float | None = None
    # Operating point of the outside-the-validated-domain limit on the same distance; None: as fitted.
    domain_threshold: float | None = None

    @classmethod
    def from_yaml(cls, config: dict | None) -> "HandlerSettings":
        section = (config or {}).get("handler", {}) or {}
        known = {f.name for f in fields(cls)}
        unknown = set(section) - known
        if unknown:
            raise ValueError(f"unknown handler settings in model-config.yaml: {sorted(unknown)}")
        return cls(**section)
