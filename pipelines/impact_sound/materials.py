"""Material presets derived from physics: a struck, simply supported rectangular plate of a given material.

Modal model (paper Eq. 1–2): M ẍ + C ẋ + K x = F with Rayleigh damping C = αM + βK decouples into modes
q̈_i + (α + βω_i²) q̇_i + ω_i² q_i = φ_i(x₀)·F, so mode i rings at ω_i and decays as e^{−(α + βω_i²)t/2}.

- Frequencies: the eigenvalues of a thin (Kirchhoff) plate of size a × b × h, simply supported on all edges,
  which have a closed form (Leissa, "Vibration of Plates", NASA SP-160, 1969, §4.1):
  ω_mn = π² [(m/a)² + (n/b)²] · √(D / (ρh)),  D = E h³ / (12 (1 − ν²)),  mode shape sin(mπx/a)·sin(nπy/b).
- Powers: a unit impulse at the strike point x₀ heard at the same point (a microphone close to the hit): each
  mode's amplitude is ∝ φ_mn(x₀)², the modal masses ρhab/4 being equal. Radiation efficiency and the contact
  time of the stick (which would soften the highest modes) are not modelled.
- Damping: each material's loss factor η (a damping ratio ζ = η/2) turned into Rayleigh α, β by the usual
  two-frequency calibration (e.g. Chopra, "Dynamics of Structures", Rayleigh damping): ζ = α/(2ω) + βω/2 equals
  η/2 at 500 Hz and 4 kHz, so α = η ω₁ω₂/(ω₁ + ω₂), β = η/(ω₁ + ω₂). Between the anchors damping is a little
  lower, above them higher, as Rayleigh damping always is.

The same plate (20 × 15 cm, 5 mm, struck off-centre) is used for every material, so presets differ only by the
material: stiffer-per-mass materials sound higher, lower-loss materials ring longer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pipelines.impact_sound.edits import rayleigh_decay_times
from pipelines.impact_sound.modal import IMPACT, Modes

RAYLEIGH_ANCHORS_HZ = (500.0, 4000.0)


@dataclass(frozen=True)
class Material:
    """Elastic and damping constants of an isotropic material (SI units)."""

    name: str
    youngs_modulus: float  # E, Pa
    density: float  # ρ, kg/m³
    poisson_ratio: float  # ν
    loss_factor: float  # η (structural, flexural), dimensionless

    @property
    def rayleigh(self) -> tuple[float, float]:
        """(α in 1/s, β in s) with damping ratio η/2 at the two anchor frequencies."""
        w1, w2 = (2.0 * math.pi * f for f in RAYLEIGH_ANCHORS_HZ)
        return self.loss_factor * w1 * w2 / (w1 + w2), self.loss_factor / (w1 + w2)


# Elastic constants: typical handbook values. Steel and aluminium: Cremer & Heckl, "Structure-Borne Sound"
# (Springer, 1988), static-properties table, as tabulated by T. Irvine, "Damping properties of materials" (rev. C,
# 2004). Glass: mid-range of "glass, typical" (2.4–2.8 Mg/m³, 48–83 GPa, ν 0.17–0.27) in common mechanical-property
# tables. Oak: USDA Forest Products Laboratory, "Wood Handbook" (FPL-GTR-190, 2010), red oak along the grain
# (MOE 12.5 GPa at 12 % moisture, specific gravity 0.63, ν_LR 0.35), treated as isotropic. PMMA (acrylic,
# "Plexiglass"): typical datasheet values. Porcelain: typical values for vitrified porcelain.
# Loss factors: Cremer & Heckl's table of flexural loss factors at room temperature (also in Beranek & Vér,
# "Noise and Vibration Control Engineering", 1992): steel 0.2–3e-4 (we take 1e-4), aluminium ~1e-4, glass
# 0.6–2e-3 (1e-3), oak/fir 0.008–0.01 (0.01), plexiglass 0.02–0.04 (0.03). Porcelain is not in that table:
# 2e-3 is our estimate, between glass (vitrified, 1e-3) and fired clay/brick (0.01–0.02).
MATERIALS: dict[str, Material] = {
    "metal": Material("metal (steel)", 210e9, 7800.0, 0.31, 1e-4),
    "aluminium": Material("aluminium", 72e9, 2700.0, 0.34, 1e-4),
    "glass": Material("glass", 65e9, 2500.0, 0.22, 1e-3),
    "ceramic": Material("ceramic (porcelain)", 70e9, 2400.0, 0.22, 2e-3),
    "wood": Material("wood (oak)", 12.5e9, 700.0, 0.35, 1e-2),
    "plastic": Material("plastic (acrylic)", 3.2e9, 1190.0, 0.37, 3e-2),
}


@dataclass(frozen=True)
class Plate:
    """A simply supported rectangular plate, struck at (strike_x·width, strike_y·height)."""

    width_m: float = 0.20
    height_m: float = 0.15
    thickness_m: float = 0.005
    strike_x: float = 0.37
    strike_y: float = 0.29


def plate_modes(material: Material, plate: Plate, max_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """Undamped frequencies (Hz, rising) of all plate modes below `max_hz`, with their strike-point shape φ(x₀)."""
    a, b, h = plate.width_m, plate.height_m, plate.thickness_m
    rigidity = material.youngs_modulus * h**3 / (12.0 * (1.0 - material.poisson_ratio**2))  # D
    speed = math.sqrt(rigidity / (material.density * h))  # √(D/ρh), m²/s
    # f_mn = (π/2)·[(m/a)² + (n/b)²]·√(D/ρh): enough orders to pass max_hz along each axis.
    orders_m = np.arange(1, int(a * math.sqrt(2.0 * max_hz / (math.pi * speed))) + 2)
    orders_n = np.arange(1, int(b * math.sqrt(2.0 * max_hz / (math.pi * speed))) + 2)
    m, n = np.meshgrid(orders_m, orders_n, indexing="ij")
    frequencies = 0.5 * math.pi * ((m / a) ** 2 + (n / b) ** 2) * speed
    shape = np.sin(m * math.pi * plate.strike_x) * np.sin(n * math.pi * plate.strike_y)
    below = frequencies < max_hz
    order = np.argsort(frequencies[below], kind="stable")
    return frequencies[below][order], shape[below][order]


def material_preset(
    name: str,
    *,
    plate: Plate = Plate(),
    max_modes: int = 48,
    sample_rate: int = IMPACT.sample_rate,
    max_hz: float = 16000.0,
    dynamic_range_db: float = 60.0,
) -> Modes:
    """Modes of `plate` made of material `name` (one of MATERIALS), struck once: its lowest `max_modes` modes
    below `max_hz` (and Nyquist), strongest at −6 dB, dropping modes more than `dynamic_range_db` weaker (near a
    nodal line) and overdamped ones. Frequencies are the damped ones, ω√(1 − ζ²)."""
    if name not in MATERIALS:
        raise ValueError(f"unknown material {name!r}; choose one of {', '.join(MATERIALS)}")
    material = MATERIALS[name]
    frequencies, shape = plate_modes(material, plate, min(max_hz, 0.95 * sample_rate / 2.0))
    response = shape**2  # driving-point response of each mode to a unit impulse (equal modal masses)
    powers = 20.0 * np.log10(np.maximum(response, 1e-300) / response.max()) - 6.0
    alpha, beta = material.rayleigh
    omega = 2.0 * np.pi * frequencies
    zeta = (alpha / omega + beta * omega) / 2.0
    keep = (powers >= -6.0 - dynamic_range_db) & (zeta < 1.0)
    keep &= np.cumsum(keep) <= max_modes
    damped = frequencies[keep] * np.sqrt(1.0 - zeta[keep] ** 2)
    return Modes(frequencies=damped, powers=powers[keep], decays=rayleigh_decay_times(frequencies[keep], alpha, beta),
                 sample_rate=sample_rate)
