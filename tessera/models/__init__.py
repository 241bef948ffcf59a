"""What the model is: the registry of named, fully convolutional presets and a user's own model
file (registry, presets, userfile), Tessera's own layers (layers), what a built model's geometry
and receptive radius are (geometry), and loading a trained one (loading).

The names below are the package's interface; importing it registers every preset.
"""

from tessera.models.registry import (  # noqa: F401
    DEFAULT_PRESET,
    PRESETS,
    Arg,
    Preset,
    arguments,
    build,
    declared_geometry,
    declared_size_multiple,
    get_preset,
    label,
    normalise,
    preset,
)
from tessera.models import presets  # noqa: F401  (registers the presets)
from tessera.models.layers import (  # noqa: F401
    BIHARMONIC_STEPS,
    FILL_STEPS,
    fill_reach,
    mask_layers,
)
from tessera.models.userfile import build_file, check_model  # noqa: F401
from tessera.models.geometry import (  # noqa: F401
    PROBE_MAX_SIDE,
    PROBE_RTOL,
    Geometry,
    describe,
    geometry,
    latent_values_per_pixel,
    layer_radius,
    probe_radius,
    receptive_radius,
    woken,
)
from tessera.models.loading import (  # noqa: F401
    HDF5_SIGNATURE,
    load_trained,
    refuse_hdf5,
    refuse_unnamed_file,
)
