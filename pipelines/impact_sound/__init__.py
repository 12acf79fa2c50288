"""Impact sounds from physics (Su et al., CVPR 2023): modal analysis, synthesis, artist edits and material presets.

Pure numpy/scipy, no weights. `python -m pipelines.impact_sound --help` for the command line.
"""

from pipelines.impact_sound.edits import (
    keep_band, match_modes, morph, mute_band, rayleigh_decay_times, remove_band, scale_damping, set_rayleigh_damping,
    shift_pitch, tilt_brightness,
)
from pipelines.impact_sound.materials import MATERIALS, Material, Plate, material_preset
from pipelines.impact_sound.modal import Modes, estimate_modes, official_code_resynthesis, synthesize

__all__ = [
    "MATERIALS", "Material", "Modes", "Plate", "estimate_modes", "keep_band", "match_modes", "material_preset",
    "morph", "mute_band", "official_code_resynthesis", "rayleigh_decay_times", "remove_band", "scale_damping",
    "set_rayleigh_damping", "shift_pitch", "synthesize", "tilt_brightness",
]
