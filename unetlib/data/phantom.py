"""What a synthetic mouse looks like before the camera counts it: the noise-free scenes.

Two scenes share the drawing primitives (soft organ outlines, smooth-noise textures, dye
kinetics):

- :class:`DemoScene`, the demo's acquisition: three high-contrast elliptical organs in a
  mouse that lies still. Every recipe segments it well, which is what a demo needs and
  why it cannot tell a good recipe from a weak one.
- :class:`HardScene`, the ``"hard"`` preset, built to be as hard as a real acquisition:
  four irregular organs, one of them thin and elongated (the spleen) and one small (the
  bladder); textured organs whose contrast against the body nearly vanishes in some
  lasers; breathing that moves the organs from frame to frame, a slow drift of the whole
  mouse over the acquisition; scattered light that blurs every edge; vignetting; and a
  pose per mouse (offset, angle, size), so several mice of a study lie differently.

A scene gives, for a frame index, the expected photo-electron counts (without the dark
offset) and the true organ labels; :mod:`unetlib.data.synthetic` adds the camera's noise and
writes the stacks.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from unetlib.core.config import SyntheticConfig
from unetlib.core.errors import ParameterError

__all__ = ["BODY_GAIN", "DEMO_ORGANS", "DemoScene", "HARD_ORGANS", "HardScene", "Organ",
           "dye_level", "organs_of", "scene_for"]


@dataclass(frozen=True)
class Organ:
    """An elliptical organ: geometry in fractions of the frame, kinetics in laser cycles."""

    name: str
    centre: tuple[float, float]  # (y, x) as fractions of height and width
    radii: tuple[float, float]  # (ry, rx) as fractions of height and width
    angle_degrees: float
    laser_gain: tuple[float, ...]  # relative brightness under each laser (cycled)
    uptake_cycles: float  # time constant of dye uptake
    clearance_cycles: float  # time constant of dye clearance (inf: accumulates)
    baseline: float  # fraction of the peak signal before any dye arrives
    dye_amplitude: float = 1.0  # this mouse's uptake relative to the reference mouse


DEMO_ORGANS: tuple[Organ, ...] = (
    Organ("liver", (0.46, 0.40), (0.15, 0.13), -20.0, (1.00, 0.55, 0.80, 0.35), 4.0, 60.0, 0.45),
    Organ("kidney", (0.58, 0.60), (0.07, 0.045), 15.0, (0.80, 1.00, 0.45, 0.60), 2.0, 25.0, 0.50),
    Organ("bladder", (0.62, 0.80), (0.065, 0.06), 0.0, (0.70, 0.50, 1.00, 0.90), 15.0, np.inf, 0.45),
)
# The hard preset's organs. The spleen is 16 px thin and 165 px long at the camera's size;
# the bladder 36 px across. Before the dye arrives every organ is only about 1.8 times as
# bright as the body in laser 1 (BODY_GAIN), with textures of +-25 % and +-30 % on both;
# in laser 2 the spleen is as bright as the body around it and the kidney, bladder and
# liver barely brighter, so only texture and outline tell them apart there.
HARD_ORGANS: tuple[Organ, ...] = (
    Organ("liver", (0.44, 0.38), (0.15, 0.14), -20.0, (0.85, 0.40, 0.70, 0.30), 4.0, 60.0, 0.45),
    Organ("kidney", (0.60, 0.58), (0.065, 0.04), 15.0, (0.80, 0.45, 0.40, 0.55), 2.0, 25.0, 0.50),
    Organ("spleen", (0.33, 0.67), (0.016, 0.13), 22.0, (0.75, 0.30, 0.60, 0.45), 3.0, 40.0, 0.55),
    Organ("bladder", (0.67, 0.79), (0.035, 0.028), 0.0, (0.90, 0.45, 0.90, 0.80), 15.0, np.inf, 0.45),
)
BODY_GAIN = (0.22, 0.18, 0.25, 0.15)  # autofluorescence of the body under each laser
BREATHING_PERIOD_FRAMES = 14.0
BREATHING_SCALE = 0.03  # relative change of the organ radii over a breath
BREATHING_SHIFT = 0.006  # vertical displacement over a breath, fraction of the height

# The hard scene. Breathing (about 1 Hz) is sampled every 2.5 s, so its phase looks random
# from frame to frame: a period of 3.7 frames does that deterministically.
HARD_BREATHING_PERIOD_FRAMES = 3.7
HARD_BREATHING_SCALE = 0.04
HARD_BREATHING_SHIFT = 0.012
HARD_DRIFT = (0.02, 0.015)  # drift of the whole mouse over the acquisition (y, x fractions)
HARD_BODY_TEXTURE = 0.25  # amplitude of the body's coarse texture
HARD_ORGAN_TEXTURE = 0.30  # amplitude of the organs' fine texture
HARD_ORGAN_IRREGULARITY = 0.07  # amplitude of each outline harmonic (2nd to 4th)
HARD_SCATTER_SIGMA = 1.5  # pixels of Gaussian blur from light scattered in tissue
HARD_VIGNETTING = 0.35  # fraction of light lost in the frame's corners


def organs_of(config: SyntheticConfig) -> tuple[Organ, ...]:
    """The organs of the config's preset, in label order (value ``k`` is the k-th), with
    the config's ``dye_changes`` applied to their kinetics.

    Raises
    ------
    ParameterError
        A dye change names no organ of the preset.
    """
    organs = HARD_ORGANS if config.preset == "hard" else DEMO_ORGANS
    changes = {name: (amplitude, clearance) for name, amplitude, clearance in config.dye_changes}
    unknown = sorted(set(changes) - {organ.name for organ in organs})
    if unknown:
        raise ParameterError(f"dye_changes name {', '.join(unknown)}, not an organ of the "
                             f"{config.preset} preset ({', '.join(o.name for o in organs)}).")
    return tuple(dataclasses.replace(organ, dye_amplitude=changes[organ.name][0],
                                     clearance_cycles=organ.clearance_cycles * changes[organ.name][1])
                 if organ.name in changes else organ for organ in organs)


def scene_for(config: SyntheticConfig) -> "DemoScene | HardScene":
    """The noise-free scene of the config's preset (built once, then rendered per frame)."""
    return HardScene(config) if config.preset == "hard" else DemoScene(config)


def dye_level(organ: Organ, cycle: float) -> float:
    """Relative dye signal of ``organ`` at a time in laser cycles since the injection:
    the baseline before it, then uptake and clearance."""
    cycle = max(cycle, 0.0)
    uptake = 1.0 - np.exp(-cycle / organ.uptake_cycles)
    clearance = np.exp(-cycle / organ.clearance_cycles) if np.isfinite(organ.clearance_cycles) else 1.0
    return float(organ.baseline
                 + (1.0 - organ.baseline) * organ.dye_amplitude * uptake * clearance)


# Width (pixels) of an organ's soft edge in the demo preset, and the distance beyond which
# that edge is exactly 0 (tanh rounds to 1 in double precision from about 19 widths on).
ORGAN_EDGE = 1.5
EDGE_REACH = 20 * ORGAN_EDGE


def _soft_edge(distance: np.ndarray, width: float) -> np.ndarray:
    """A smooth 1 -> 0 transition across an outline (diffuse light blurs organ edges)."""
    return (0.5 * (1.0 - np.tanh(distance / width))).astype(np.float32)


def _smooth_noise(rng: np.random.Generator, height: int, width: int,
                  cells: tuple[int, int]) -> np.ndarray:
    """Low-frequency noise in [-1, 1]: a coarse random grid, bilinearly upsampled."""
    grid = rng.uniform(-1.0, 1.0, size=(cells[0] + 1, cells[1] + 1))
    gy = np.linspace(0, cells[0], height)
    gx = np.linspace(0, cells[1], width)
    y0 = np.minimum(gy.astype(int), cells[0] - 1)
    x0 = np.minimum(gx.astype(int), cells[1] - 1)
    fy = (gy - y0)[:, None]
    fx = (gx - x0)[None, :]
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bottom = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


class DemoScene:
    """Pixel grids and the static body texture of the demo preset (computed once)."""

    def __init__(self, config: SyntheticConfig) -> None:
        self.config = config
        self.organs = organs_of(config)
        height, width = config.height, config.width
        self.yy, self.xx = np.mgrid[0:height, 0:width].astype(np.float32)
        body_distance, _ = self._ellipse_distance((0.5, 0.5), (0.33, 0.42), 8.0, 0.0, 0.0)
        self.body = _soft_edge(body_distance, width=3.0)
        texture_rng = np.random.default_rng([config.seed, 2**31 - 1])
        self.texture = 1.0 + 0.15 * _smooth_noise(texture_rng, height, width, cells=(12, 15))

    def _ellipse_distance(self, centre, radii, angle_degrees, scale, shift,
                          reach: float | None = None) -> tuple[np.ndarray, tuple[slice, slice]]:
        """Approximate signed distance in pixels to an ellipse (negative inside), and the
        part of the frame it covers: the whole frame, or with ``reach`` only the box of
        the pixels within ``reach`` of the ellipse by that distance (every pixel outside
        lies farther). A box holds the same values the whole frame would there."""
        height, width = self.config.height, self.config.width
        cy = (centre[0] + shift) * height
        cx = centre[1] * width
        ry = radii[0] * height * (1.0 + scale)
        rx = radii[1] * width * (1.0 + scale)
        theta = np.deg2rad(angle_degrees)
        box = (slice(0, height), slice(0, width))
        if reach is not None:
            grown = 1.0 + reach / min(rx, ry)  # the radius where the distance is ``reach``
            half_y = grown * np.hypot(rx * np.sin(theta), ry * np.cos(theta)) + 2.0
            half_x = grown * np.hypot(rx * np.cos(theta), ry * np.sin(theta)) + 2.0
            box = (slice(int(np.clip(np.floor(cy - half_y), 0, height)),
                         int(np.clip(np.ceil(cy + half_y) + 1, 0, height))),
                   slice(int(np.clip(np.floor(cx - half_x), 0, width)),
                         int(np.clip(np.ceil(cx + half_x) + 1, 0, width))))
        dy, dx = self.yy[box] - cy, self.xx[box] - cx
        u = (dx * np.cos(theta) + dy * np.sin(theta)) / rx
        v = (-dx * np.sin(theta) + dy * np.cos(theta)) / ry
        radius = np.sqrt(u * u + v * v)
        return (radius - 1.0) * min(rx, ry), box

    def organ_distances(self, frame_index: int, reach: float | None = None
                        ) -> list[tuple[np.ndarray, tuple[slice, slice]]]:
        """Each organ's signed distance and the part of the frame it covers (the whole
        frame without ``reach``; see :meth:`_ellipse_distance`)."""
        phase = 2.0 * np.pi * frame_index / BREATHING_PERIOD_FRAMES
        scale = BREATHING_SCALE * np.sin(phase)
        shift = BREATHING_SHIFT * np.sin(phase)
        dy, dx = self.config.organ_shift
        grow = self.config.organ_scale
        return [self._ellipse_distance((o.centre[0] + dy, o.centre[1] + dx),
                                       (o.radii[0] * grow, o.radii[1] * grow),
                                       o.angle_degrees, scale, shift, reach)
                for o in self.organs]

    def expected_counts(self, frame_index: int) -> tuple[np.ndarray, np.ndarray]:
        """Noise-free expected counts of one frame (float32, no dark offset) and its labels."""
        config = self.config
        laser = frame_index % config.lasers
        cycle = frame_index / config.lasers
        signal = self.body * BODY_GAIN[laser % len(BODY_GAIN)]
        labels = np.zeros((config.height, config.width), dtype=np.uint8)
        # Beyond EDGE_REACH of an organ its soft edge is exactly 0, so only the box around
        # it is computed: the same frame, bit for bit, 5-7x faster at 508 x 636.
        for number, (organ, (distance, box)) in enumerate(
                zip(self.organs, self.organ_distances(frame_index, EDGE_REACH)), 1):
            level = (config.organ_contrast * organ.laser_gain[laser % len(organ.laser_gain)]
                     * dye_level(organ, cycle - config.injection_cycle))
            signal[box] = np.maximum(signal[box], level * _soft_edge(distance, width=ORGAN_EDGE))
            labels[box][distance < 0] = number
        return (signal * self.texture * config.max_count).astype(np.float32), labels


class HardScene:
    """The hard preset: irregular textured organs in a breathing, drifting mouse whose pose
    (``pose_shift``, ``pose_angle_degrees``, ``pose_scale``) the config sets.

    Geometry lives in the mouse's own frame (pixels of an upright, centred mouse); every
    camera frame maps its pixels back into that frame through the mouse's pose at that
    moment (pose, drift, breathing), so the textures move with the mouse as tissue does.
    """

    def __init__(self, config: SyntheticConfig) -> None:
        self.config = config
        self.organs = organs_of(config)
        height, width = config.height, config.width
        self.yy, self.xx = np.mgrid[0:height, 0:width].astype(np.float32)
        rng = np.random.default_rng([config.seed, 2**31 - 2])
        self.body_texture = 1.0 + HARD_BODY_TEXTURE * _smooth_noise(rng, height, width, (10, 12))
        self.organ_texture = 1.0 + HARD_ORGAN_TEXTURE * _smooth_noise(rng, height, width, (42, 52))
        # Each organ's outline: harmonics 2-4 of the angle with this mouse's phases.
        self.harmonics = [(rng.uniform(0.3, 1.0, 3) * HARD_ORGAN_IRREGULARITY,
                           rng.uniform(0.0, 2.0 * np.pi, 3)) for _ in self.organs]
        centre_y, centre_x = (height - 1) / 2.0, (width - 1) / 2.0
        corner = np.hypot(centre_y, centre_x)
        radius = np.hypot(self.yy - centre_y, self.xx - centre_x) / corner
        self.vignette = (1.0 - HARD_VIGNETTING * radius ** 2).astype(np.float32)

    def _mouse_coordinates(self, frame_index: int) -> tuple[np.ndarray, np.ndarray]:
        """Where each camera pixel lies in the mouse's own frame at this frame's moment."""
        config = self.config
        height, width = config.height, config.width
        progress = frame_index / max(1, config.cycles * config.lasers - 1) - 0.5
        shift_y = (config.pose_shift[0] + HARD_DRIFT[0] * progress) * height
        shift_x = (config.pose_shift[1] + HARD_DRIFT[1] * progress) * width
        theta = np.deg2rad(config.pose_angle_degrees)
        centre_y, centre_x = (height - 1) / 2.0, (width - 1) / 2.0
        dy = (self.yy - centre_y - shift_y) / config.pose_scale
        dx = (self.xx - centre_x - shift_x) / config.pose_scale
        mouse_y = centre_y + dy * np.cos(theta) - dx * np.sin(theta)
        mouse_x = centre_x + dy * np.sin(theta) + dx * np.cos(theta)
        return mouse_y, mouse_x

    def _distance(self, mouse_y: np.ndarray, mouse_x: np.ndarray, organ_centre, radii,
                  angle_degrees: float, harmonics=None) -> np.ndarray:
        """Approximate signed distance in camera pixels to an outline (negative inside)."""
        height, width = self.config.height, self.config.width
        ry, rx = radii[0] * height, radii[1] * width
        theta = np.deg2rad(angle_degrees)
        dy, dx = mouse_y - organ_centre[0] * height, mouse_x - organ_centre[1] * width
        u = (dx * np.cos(theta) + dy * np.sin(theta)) / rx
        v = (-dx * np.sin(theta) + dy * np.cos(theta)) / ry
        radius = np.sqrt(u * u + v * v)
        if harmonics is not None:
            amplitudes, phases = harmonics
            angle = np.arctan2(v, u)
            outline = 1.0 + sum(a * np.cos(k * angle + p)
                                for k, a, p in zip((2, 3, 4), amplitudes, phases))
            radius = radius / outline
        return (radius - 1.0) * min(rx, ry) * self.config.pose_scale

    def expected_counts(self, frame_index: int) -> tuple[np.ndarray, np.ndarray]:
        """Noise-free expected counts of one frame (float32, no dark offset) and its labels."""
        config = self.config
        laser = frame_index % config.lasers
        cycle = frame_index / config.lasers
        mouse_y, mouse_x = self._mouse_coordinates(frame_index)
        coordinates = np.stack([mouse_y, mouse_x])
        body_texture = ndimage.map_coordinates(self.body_texture, coordinates, order=1,
                                               mode="nearest")
        organ_texture = ndimage.map_coordinates(self.organ_texture, coordinates, order=1,
                                                mode="nearest")
        body = _soft_edge(self._distance(mouse_y, mouse_x, (0.5, 0.5), (0.33, 0.42), 8.0), 3.0)
        signal = body * BODY_GAIN[laser % len(BODY_GAIN)] * body_texture
        phase = 2.0 * np.pi * frame_index / HARD_BREATHING_PERIOD_FRAMES
        breath_scale = 1.0 + HARD_BREATHING_SCALE * np.sin(phase)
        breath_shift = HARD_BREATHING_SHIFT * np.sin(phase)
        labels = np.zeros((config.height, config.width), dtype=np.uint8)
        for number, (organ, harmonics) in enumerate(zip(self.organs, self.harmonics), 1):
            centre = (organ.centre[0] + breath_shift, organ.centre[1])
            radii = (organ.radii[0] * breath_scale, organ.radii[1] * breath_scale)
            distance = self._distance(mouse_y, mouse_x, centre, radii, organ.angle_degrees,
                                      harmonics)
            level = (config.organ_contrast * organ.laser_gain[laser % len(organ.laser_gain)]
                     * dye_level(organ, cycle - config.injection_cycle))
            inside = _soft_edge(distance, width=1.0)
            signal = signal * (1.0 - inside) + level * organ_texture * inside
            labels[distance < 0] = number
        signal = ndimage.gaussian_filter(signal, HARD_SCATTER_SIGMA)
        return (signal * self.vignette * config.max_count).astype(np.float32), labels
