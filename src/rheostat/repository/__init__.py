"""Model repository: families of variants on disk, their configs and versions."""

from rheostat.repository.loader import (
    CONFIG_FILE,
    MODEL_FILE,
    Family,
    Repository,
    family_to_dict,
    load_family,
    load_repository,
    write_family_config,
)
from rheostat.repository.schema import (
    DTYPES,
    BatchPolicyName,
    DynamicBatching,
    FamilyConfig,
    ImagePreprocessing,
    InputKind,
    InstanceGroup,
    QueuePolicy,
    TensorSpec,
    VariantConfig,
)

__all__ = [
    "CONFIG_FILE",
    "DTYPES",
    "MODEL_FILE",
    "BatchPolicyName",
    "DynamicBatching",
    "Family",
    "FamilyConfig",
    "ImagePreprocessing",
    "InputKind",
    "InstanceGroup",
    "QueuePolicy",
    "Repository",
    "TensorSpec",
    "VariantConfig",
    "family_to_dict",
    "load_family",
    "load_repository",
    "write_family_config",
]
