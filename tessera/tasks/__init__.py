"""What the model learns: the task registry (registry) and one module per task, each registering
itself on import. The names below are the package's interface; importing it registers every task.
"""

from tessera.tasks.registry import (  # noqa: F401
    REGISTRY,
    Task,
    get,
    holes_of,
    model_input,
    psnr_inside,
    register,
    rng_for,
)
from tessera.tasks import reconstruct, denoise, restore, paired, upscale  # noqa: F401, E402
