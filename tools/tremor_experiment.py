"""Closed-loop tremor experiment: physiological tremor and the stretch reflex against ankle angle.

Reproduces, in simulation, the design of Jalaleddini, Nagamori, Laine, Golkar, Kearney and
Valero-Cuevas (2017) "Physiological tremor increases when skeletal muscle is shortened:
implications for fusimotor control", J Physiol 595: tonic isometric plantarflexion at 30 % of
the maximum voluntary torque at three ankle angles, with the torque's 4-12 Hz fluctuation
(physiological tremor) and the reflex response to a fast dorsiflexion (stretch reflex)
measured at each angle, for two fusimotor rules: constant gamma-static drive, and
gamma-static drive that rises as the muscle shortens.

    python tools/tremor_experiment.py            # about 25 s on 2 CPU cores (writes docs/tremor.*)

Model (all conditions and trials are one batched torch simulation, float64):

* Plant: one lumped plantarflexor muscle-tendon unit (triceps surae, `Muscle`) on an
  ankle hinge whose angle is imposed by a dynamometer (isometric hold; a ramp-and-hold
  dorsiflexion for the stretch reflex). Hill-type contractile element (Gaussian
  force-length, hyperbolic force-velocity with an eccentric branch, exponential passive
  element, a small parallel damping) in series with a nonlinear compliant tendon
  (exponential toe, then linear). No fibre mass; the belly changes length ``fascicle_gear``
  (2.5) times as much as the fascicles (a lumped, power-conserving stand-in for pennation,
  aponeurosis and belly-shape gearing), so the fascicles move ~0.3 mm per degree of ankle
  rotation. The fibre velocity is solved each substep from the force balance
  ``a fL fV(v) + fPE + b v = fT`` (closed form on each branch of fV) and the fascicle
  length is integrated by Euler at ``SUBSTEPS`` per ms. With the joint fixed, the fascicle
  only moves by tendon stretch, which is what the spindle sees.
* Activation: first-order, rise 30 ms, decay 150 ms (the activation filter of Song et al.
  2008 used in Nagamori's afferented muscle model).
* Proprioception: `neuromimic.proprioception.Afferents` (Mileusnic et al. 2006 spindle,
  Lin and Crago 2002 tendon organ) stepped at 1 ms; Ia, II and Ib delays 22, 30, 22 ms.
* Spinal stage: the population-sigmoid stage of the afferented muscle model of
  Jalaleddini et al. (2017; A. Nagamori's code), from Tsianos et al. (2014):
  ``sigma(x) = 1 / (1 + exp(-11 (x - 0.5)))``; alpha drive
  ``sigma(sigma(Ia/300 + Ia_PC) + sigma(II/3000) - sigma(Ib/400 - 0.3) + u)``, then
  signal-dependent motor noise (SD proportional to the drive, low-passed at 100 Hz), an
  efferent delay of 18 ms (a 40 ms short-latency loop) and the activation filter. The
  Ia loop gain is ``sigma'(outer) sigma'(Ia/300 + Ia_PC) / 300`` per pps: it rises
  steeply (about 2.5-fold per 25 pps) with the tonic Ia rate, so gamma-static, by raising
  the tonic Ia, moves the spinal operating point up the sigmoid. The II and Ib terms are
  kept as in their model but are nearly flat at these rates (negligible gain).
  ``Loop.ia_presynaptic`` is -0.15 here (theirs -0.1; see `Loop`).
* Voluntary loop: ``u`` (the tracking controller, inside the outer sigmoid as in their
  model) integrates the torque error (target 30 % of the maximum voluntary torque at that
  angle) seen through a 120 ms transcortical/visual delay, with a 1 s time constant: it
  holds the mean torque but is far too slow to act in the 4-12 Hz band. Each trial starts
  at the hold's exact equilibrium.
* Fusimotor rules (inputs of the model, fixed for a hold): ``constant`` gamma-static
  and gamma-dynamic 70 pps at every angle; ``length_dependent`` gamma-static
  ``70 + slope (Lf_neutral - Lf_hold)`` pps (slope 1400 pps/L0, i.e. 14 pps per 0.01 L0 of
  shortening, clipped to 0..200 pps), where ``Lf_hold`` is the fascicle length (L0) of the
  30 % hold at that angle, so both rules agree at the neutral angle and gamma-static rises
  as the muscle shortens, spanning the physiological range over the three angles
  (~200 pps plantarflexed, 0 dorsiflexed); gamma-dynamic 70 pps.

Measures per condition (angle x rule):

* tremor: SD of the torque band-passed 4-12 Hz (4th-order Butterworth, zero phase) over
  the hold after ``SETTLE_S``, mean over trials; also as % of the mean torque, with the
  afferent loop off (the afferent input held at its tonic value, the voluntary loop still
  holding the force, same noise) for reference, and the peak frequency of the mean torque
  spectrum (Welch) in 3-20 Hz;
* stretch reflex: a noise-free ramp-and-hold dorsiflexion (4 deg at 150 deg/s) from the
  hold, run with the afferent loop on and off (same imposed movement, same initial
  state); the reflex torque is their difference and its amplitude the peak within 300 ms
  of the ramp onset; also the peak Ia rise during the ramp;
* mean torque as % of the maximum voluntary torque at that angle, mean Ia rate at the
  hold, the gamma drives and the fascicle length of the hold.

A gamma-static sweep (0-200 pps at each angle, ``--no-sweep`` skips it) shows how the
drive itself changes tremor and reflex at each length. ``trends`` in the output says
whether each of the paper's claims holds.

What this model gives (default run; see docs/tremor.json): the paper's pattern
reproduces. With the length-dependent rule tremor rises as the muscle shortens
(dorsiflexed < neutral < plantarflexed, about 1.8-fold from long to short) while the
stretch reflex falls (about 0.55-fold); with constant gamma tremor instead falls as the
muscle shortens (about 5-fold), and the reflex falls too. Mechanism (the sweep): at every
length more gamma-static raises the tonic Ia rate and so the slope of the spinal sigmoid,
and the tremor-band loop gain rises despite the spindle's falling small-signal gain; the
length-dependent rule's extra gamma-static at the short length outweighs the spindle's
loss of length sensitivity there. Limits: (1) the reflex falls with shortening because
the stretch excites the spindle less at short lengths; gamma-static barely changes it at
a fixed length (it rises slightly with gamma-static at the short length), so the paper's
"higher baseline leaves less room for the reflex" is not what sets it here; (2) the
reflex saturates the sigmoid (tens of Nm, near maximal activation), far larger than
human short-latency reflex torques; (3) the outcome hinges on the fascicle excursion:
with ``fascicle_gear`` 2 (a 0.19 L0 span instead of 0.16) the spindle's length
sensitivity wins and tremor falls with shortening under both rules, and with
``ia_presynaptic`` -0.1 the constant rule's dorsiflexed hold falls into clonus (a ~10 Nm
6 Hz oscillation); (4) the loop's resonance sits at 6.5-7 Hz; the constant rule's
dorsiflexed hold (tremor 2.9 % of the torque, 6 times the loop-off value) shows a sharp
spectral peak with a 13 Hz harmonic, close to a limit cycle, and high gamma-static at the
neutral and dorsiflexed lengths (sweep, >= 105 pps) gives tremor of 3-12 % of the torque,
a near-unstable loop.

Prints one JSON object (last) and writes ``<output-dir>/tremor.json`` and ``tremor.png``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import scipy.signal
import torch

from neuromimic.proprioception import AfferentConfig, Afferents

DT_MS = 1.0  # sensor / neural step (ms)
SUBSTEPS = 2  # muscle substeps per neural step (0.5 ms Euler)
SETTLE_S = 2.0  # start of each hold excluded from the tremor measures (s)
TREMOR_BAND_HZ = (4.0, 12.0)
PEAK_SEARCH_HZ = (3.0, 20.0)
ANGLES_DEG = (-15.0, 0.0, 10.0)  # plantarflexed (muscle short), neutral, dorsiflexed (long)
ANGLE_LABELS = ("plantarflexed", "neutral", "dorsiflexed")
REFLEX_WINDOW_S = 0.3  # reflex amplitude: peak within this time of the ramp onset
SWEEP_GAMMAS = (0.0, 35.0, 70.0, 105.0, 140.0, 200.0)  # gamma-static drives of the sweep (pps)


@dataclass(frozen=True)
class Muscle:
    """Lumped ankle plantarflexors (soleus-like) and their hinge. Normalised curves follow
    Thelen (2003) and Zajac (1989) unless stated.

    Attributes:
        peak_force_n: peak isometric force F0 (N). Lumped triceps surae ~4000 N (Arnold et
            al. 2010 give soleus 3550 N plus gastrocnemii); with the moment arm, a maximum
            plantarflexion torque of ~200 Nm, the human range (150-250 Nm).
        optimal_fibre_m: optimal fascicle length L0 (m); soleus 4.4 cm, gastrocnemii 5-6.5
            cm (Arnold et al. 2010), force-weighted ~5 cm.
        tendon_slack_m: tendon (free tendon plus aponeurosis) slack length (m); soleus
            0.28 m, gastrocnemii ~0.39 m (Arnold et al. 2010).
        tendon_strain_at_peak: tendon strain at F0; Achilles tendon strains 5-8 % at
            maximal contractions in vivo (Magnusson et al. 2003); 5 %.
        moment_arm_m: Achilles moment arm (m), constant; 4-5 cm (Maganaris et al. 1998).
        fibre_at_rest_neutral: fascicle length (L0) of the relaxed muscle at the neutral
            angle (slack tendon); sets the MTU length. 1.05: the fascicles of the 30 %
            holds lie at ~0.89 L0 (15 deg plantarflexion), ~0.98 L0 (neutral) and ~1.04 L0
            (10 deg dorsiflexion), inside the spindle's working range (at <~0.8 L0 the
            Mileusnic spindle is slack at any gamma drive). A lumped triceps surae: the
            gastrocnemii operate at longer relative lengths than the soleus.
        fascicle_gear: belly length change per fascicle length change (belly force = fibre
            force / gear, so power is conserved; the normalised force balance is unchanged).
            A massless lumped gear standing in for pennation, aponeurosis stretch and belly
            shape changes: ultrasound shows soleus and gastrocnemius fascicles move roughly
            0.3-0.5 mm per degree of ankle rotation, well under the ~0.8 mm/deg of the
            muscle-tendon unit. 2.5 gives ~0.3 mm/deg (0.16 L0 over the 25 deg).
        fl_width: width ``gamma`` of the Gaussian force-length curve ``exp(-(l-1)^2/gamma)``
            (Thelen 2003: 0.45).
        passive_strain: passive fibre strain at F0 (Thelen 2003: 0.6), with shape 4.
        vmax_l0_s: maximum shortening velocity (L0/s); 10 L0/s (Thelen 2003; Zajac 1989).
        hill_af: Hill curvature a/F0 of the shortening branch (0.25, Thelen 2003).
        eccentric_max: force-velocity asymptote when lengthening (1.8 F0, Thelen 2003).
        eccentric_slope_ratio: slope of fV at v=0+ over the slope at v=0-; 2 (Katz 1939:
            the lengthening slope is steeper).
        damping: parallel damping (F0 per L0/s); small, as in Millard et al. (2013); it
            keeps the force balance solvable at zero activation.
        tau_act_s, tau_deact_s: activation and deactivation time constants (s); 30 and 150
            ms, the activation filter of Song et al. (2008) used in Nagamori's afferented
            muscle model (Zajac 1989 and Thelen 2003 use faster 10-15/40-50 ms).
    """

    peak_force_n: float = 4000.0
    optimal_fibre_m: float = 0.05
    tendon_slack_m: float = 0.30
    tendon_strain_at_peak: float = 0.05
    moment_arm_m: float = 0.045
    fibre_at_rest_neutral: float = 1.05
    fascicle_gear: float = 2.5
    fl_width: float = 0.45
    passive_strain: float = 0.6
    vmax_l0_s: float = 10.0
    hill_af: float = 0.25
    eccentric_max: float = 1.8
    eccentric_slope_ratio: float = 2.0
    damping: float = 0.02
    tau_act_s: float = 0.03
    tau_deact_s: float = 0.15

    # ------------------------------------------------------------------ static curves
    def force_length(self, lf):
        return torch.exp(-((lf - 1.0) ** 2) / self.fl_width)

    def passive_force(self, lf):
        k = 4.0
        return torch.where(
            lf > 1.0,
            (torch.exp(k * (lf - 1.0) / self.passive_strain) - 1.0) / (math.exp(k) - 1.0),
            torch.zeros_like(lf),
        )

    def tendon_force(self, strain):
        """Thelen (2003) tendon: exponential toe up to 0.609 e0 (force 0.333 F0), then linear."""
        e0 = self.tendon_strain_at_peak
        toe_strain, toe_force, k_toe = 0.609 * e0, 0.3333, 3.0
        k_lin = 1.712 / e0
        strain = strain.clamp(min=0.0)
        toe = toe_force / (math.exp(k_toe) - 1.0) * (torch.exp(k_toe * strain.clamp(max=toe_strain) / toe_strain) - 1.0)
        return torch.where(strain <= toe_strain, toe, k_lin * (strain - toe_strain) + toe_force)

    def tendon_strain(self, force):
        """Inverse of `tendon_force` (force in F0)."""
        e0 = self.tendon_strain_at_peak
        toe_strain, toe_force, k_toe = 0.609 * e0, 0.3333, 3.0
        k_lin = 1.712 / e0
        toe = toe_strain / k_toe * torch.log1p(force.clamp(min=0.0) * (math.exp(k_toe) - 1.0) / toe_force)
        return torch.where(force <= toe_force, toe, toe_strain + (force - toe_force) / k_lin)

    def mtu_length(self, angle_deg):
        """Muscle-tendon length (m); dorsiflexion (positive angle) lengthens the plantarflexors."""
        neutral = self.tendon_slack_m + self.fascicle_gear * self.fibre_at_rest_neutral * self.optimal_fibre_m
        return neutral + self.moment_arm_m * torch.deg2rad(angle_deg)

    def fibre_length(self, mtu, force):
        """Fascicle length (L0) when the tendon carries ``force`` (F0)."""
        return (mtu - self.tendon_slack_m * (1.0 + self.tendon_strain(force))) / (
            self.fascicle_gear * self.optimal_fibre_m
        )

    def tendon_force_at(self, mtu, lf):
        """Tendon force (F0) when the muscle-tendon length is ``mtu`` (m) and the fascicles ``lf`` (L0)."""
        belly = self.fascicle_gear * lf * self.optimal_fibre_m
        return self.tendon_force((mtu - belly) / self.tendon_slack_m - 1.0)

    # ---------------------------------------------------------------------- dynamics
    def fibre_velocity(self, activation, lf, tendon_force):
        """Fascicle velocity (L0/s) balancing ``a fL fV(v) + fPE + b v = fT`` (closed form)."""
        a_fl = activation * self.force_length(lf)
        target = (tendon_force - self.passive_force(lf)).clamp(min=0.0)
        b, vmax, af = self.damping, self.vmax_l0_s, self.hill_af
        # Shortening (target < a fL): fV = (vmax + v) / (vmax - v/af); a quadratic in v.
        q = b / af
        big_b = a_fl + b * vmax + target / af
        c = vmax * (a_fl - target)
        shortening = -2.0 * c / (big_b + torch.sqrt(big_b**2 + 4.0 * q * c.clamp(min=0.0)))
        # Lengthening: fV = 1 + (Fe - 1) v / (v + k), slope at 0 = ratio x the shortening slope.
        fe = self.eccentric_max
        k = (fe - 1.0) / (self.eccentric_slope_ratio * (1.0 + 1.0 / af) / vmax)
        p = a_fl * fe + b * k - target
        excess = (target - a_fl).clamp(min=0.0)
        root = torch.sqrt(p**2 + 4.0 * b * excess * k)
        lengthening = torch.where(p > 0, 2.0 * excess * k / (p + root).clamp(min=1e-300), (root - p) / (2.0 * b))
        return torch.where(target < a_fl, shortening, lengthening)

    def activation_step(self, activation, excitation, dt):
        tau = torch.where(excitation > activation, self.tau_act_s, self.tau_deact_s)
        return excitation + (activation - excitation) * torch.exp(-dt / tau)

    # --------------------------------------------------------------------- statics
    def hold(self, angle_deg, force):
        """``(fascicle length L0, activation)`` of an isometric hold at ``force`` (F0)."""
        lf = self.fibre_length(self.mtu_length(angle_deg), force)
        activation = (force - self.passive_force(lf)) / self.force_length(lf)
        return lf, activation

    def max_force(self, angle_deg):
        """Tendon force (F0) of a maximal (activation 1) isometric contraction at each angle."""
        low, high = torch.zeros_like(angle_deg), torch.full_like(angle_deg, 2.0)
        for _ in range(60):  # the activation a hold needs rises monotonically with its force
            mid = 0.5 * (low + high)
            _, activation = self.hold(angle_deg, mid)
            low, high = torch.where(activation < 1.0, mid, low), torch.where(activation < 1.0, high, mid)
        return 0.5 * (low + high)


@dataclass(frozen=True)
class Loop:
    """The neural side: afferent delays, the spinal population-sigmoid stage, the voluntary
    loop, motor noise and the fusimotor rules.

    The spinal stage follows the afferented muscle model of Jalaleddini et al. (2017; code
    by A. Nagamori), which takes the sigmoidal input-output curve of a motoneurone/
    interneurone population from Tsianos, Goodner and Loeb (2014, J Neurophysiol 112):
    ``sigma(x) = 1 / (1 + exp(-sigmoid_slope (x - sigmoid_centre)))``. Each afferent class
    passes its own sigmoid, ``Ia_in = sigma(Ia / ia_norm_pps + ia_presynaptic)``,
    ``II_in = sigma(II / ii_norm_pps)``, ``Ib_in = sigma(Ib / ib_norm_pps + ib_offset)``, and
    the alpha drive is ``sigma(Ia_in + II_in - Ib_in + u)``, where ``u`` is the voluntary
    (force-tracking) command. These constants are theirs except ``ia_presynaptic``.

    Attributes:
        target_fraction: hold torque as a fraction of the maximum voluntary torque (0.3).
        ia_delay_ms: Ia conduction delay from the calf to the spinal cord (ms); ~1 m of
            50-60 m/s axons plus the synapse: 22 ms.
        ii_delay_ms: group II conduction delay (ms); slower axons (30-40 m/s): 30 ms.
        ib_delay_ms: Ib conduction delay (ms); Ib axons are as fast as Ia: 22 ms.
        efferent_delay_ms: alpha motoneurone conduction plus neuromuscular transmission
            (ms), 18 ms: with the Ia delay the 40 ms latency of the soleus short-latency
            stretch reflex.
        sigmoid_slope, sigmoid_centre: the population curve (Tsianos et al. 2014: 11, 0.5).
            Its slope ``sigma' = slope sigma (1 - sigma)`` is ~0.06 at an argument of 0.03,
            0.4 at 0.2 and 2.75 (its maximum) at 0.5 (with ``ia_presynaptic`` -0.15: Ia 55,
            105 and 195 pps): the Ia loop gain rises steeply with the tonic Ia rate.
        ia_norm_pps: Ia rate that adds 1 to the Ia sigmoid's argument (300 pps).
        ia_presynaptic: presynaptic control of the Ia input, added to its argument. Their
            default is -0.1; here -0.15 (15 pps more Ia needed for the same input, a modest
            increase of presynaptic inhibition): with -0.1 the constant rule's dorsiflexed
            hold (tonic Ia ~130 pps) is in clonus, a sustained ~6 Hz oscillation of ~10 Nm.
        ii_norm_pps: group II normalisation (3000 pps). With it the II input is nearly flat
            (II 20-60 pps moves its argument by 0.02), as in their model; kept for fidelity.
        ib_norm_pps, ib_offset: Ib normalisation and offset (400 pps, -0.3), inhibitory;
            likewise nearly flat at the Ib rates of a 30 % hold (~80 pps).
        noise_cv: SD of the motor noise relative to the alpha drive (signal-dependent
            noise, Jones et al. 2002; Harris and Wolpert 1998). Sets the absolute tremor size.
        noise_cutoff_hz: corner of the first-order low-pass filter of the noise (100 Hz, as
            in their model).
        voluntary_delay_ms: delay of the voluntary (transcortical/visual) torque loop.
        voluntary_tau_s: time constant of the voluntary integrator ``u`` (sigmoid-argument
            units per unit torque error as a fraction of the maximum): it holds the mean
            torque and is far too slow to act in the 4-12 Hz band.
        gamma_static_pps, gamma_dynamic_pps: fusimotor drive of the constant rule, and at
            the neutral angle for the length-dependent rule. 70 pps: their default, a
            mid-range drive (Mileusnic et al. 2006 test 0-150 pps).
        gamma_slope_pps_per_l0: rise of gamma-static per L0 of fascicle shortening of the
            length-dependent rule; 1400 pps/L0 (14 pps per 0.01 L0, ~0.5 mm) makes the rule
            span the physiological range over the three holds (0.89-1.04 L0): ~200 pps
            plantarflexed, 70 neutral, 0 (clipped) dorsiflexed. A free choice: the paper
            gives the direction of the modulation, not its size.
        gamma_static_range_pps: the length-dependent gamma-static is clipped to this range.
    """

    target_fraction: float = 0.3
    ia_delay_ms: float = 22.0
    ii_delay_ms: float = 30.0
    ib_delay_ms: float = 22.0
    efferent_delay_ms: float = 18.0
    sigmoid_slope: float = 11.0
    sigmoid_centre: float = 0.5
    ia_norm_pps: float = 300.0
    ia_presynaptic: float = -0.15
    ii_norm_pps: float = 3000.0
    ib_norm_pps: float = 400.0
    ib_offset: float = -0.3
    noise_cv: float = 0.1
    noise_cutoff_hz: float = 100.0
    voluntary_delay_ms: float = 120.0
    voluntary_tau_s: float = 1.0
    gamma_static_pps: float = 70.0
    gamma_dynamic_pps: float = 70.0
    gamma_slope_pps_per_l0: float = 1400.0
    gamma_static_range_pps: tuple[float, float] = (0.0, 200.0)

    def population(self, x):
        """The population input-output curve ``sigma`` (Tsianos et al. 2014)."""
        return torch.sigmoid(self.sigmoid_slope * (x - self.sigmoid_centre))

    def population_inverse(self, y):
        """The argument at which `population` gives ``y`` (0 < y < 1)."""
        return self.sigmoid_centre + torch.logit(y) / self.sigmoid_slope

    def afferent_input(self, rates):
        """Net afferent input ``Ia_in + II_in - Ib_in`` [B] from rates [B, 3] (Ia, II, Ib; pps)."""
        ia_in = self.population(rates[:, 0] / self.ia_norm_pps + self.ia_presynaptic)
        ii_in = self.population(rates[:, 1] / self.ii_norm_pps)
        ib_in = self.population(rates[:, 2] / self.ib_norm_pps + self.ib_offset)
        return ia_in + ii_in - ib_in


@dataclass(frozen=True)
class Perturbation:
    """Ramp-and-hold dorsiflexion of the reflex trials."""

    amplitude_deg: float = 4.0
    velocity_deg_s: float = 150.0
    onset_s: float = 0.5


GAMMA_RULES = ("constant", "length_dependent")


@dataclass
class Rows:
    """Per-row settings of one batched simulation (each a [B] tensor)."""

    angle_deg: torch.Tensor
    gamma_static: torch.Tensor
    gamma_dynamic: torch.Tensor
    afferent_loop: torch.Tensor  # 1: afferent input live; 0: held at its tonic value
    noise_cv: torch.Tensor
    perturb: torch.Tensor  # 1 for a ramp-and-hold row
    voluntary: torch.Tensor  # 1 when the voluntary loop runs
    meta: list[dict] = field(default_factory=list)


def gamma_static_for(rule: str, hold_length, neutral_length, loop: Loop):
    """Gamma-static drive (pps) of a hold at fascicle length ``hold_length`` (L0) under ``rule``."""
    if rule == "constant":
        return torch.full_like(hold_length, loop.gamma_static_pps)
    if rule == "length_dependent":
        low, high = loop.gamma_static_range_pps
        return (loop.gamma_static_pps + loop.gamma_slope_pps_per_l0 * (neutral_length - hold_length)).clamp(low, high)
    raise ValueError(f"unknown gamma rule {rule!r}; choose from {GAMMA_RULES}")


def simulate(
    rows: Rows, duration_s: float, muscle: Muscle, loop: Loop, perturbation: Perturbation, seed: int = 0
) -> dict[str, np.ndarray]:
    """Run every row for ``duration_s``; returns 1 ms traces [B, T] (torque in Nm, Ia in pps,
    fascicle length in L0, excitation) and per-row statics."""
    dtype = torch.float64
    generator = torch.Generator().manual_seed(seed)
    batch = rows.angle_deg.shape[0]
    dt = DT_MS * 1e-3
    sub_dt = dt / SUBSTEPS
    steps = round(duration_s / dt)

    angle0 = rows.angle_deg.to(dtype)
    max_force = muscle.max_force(angle0)
    target_force = loop.target_fraction * max_force
    lf, activation = muscle.hold(angle0, target_force)
    gs, gd = rows.gamma_static.to(dtype)[:, None], rows.gamma_dynamic.to(dtype)[:, None]
    afferents = Afferents(
        AfferentConfig(
            dt_ms=DT_MS, ia_delay_ms=loop.ia_delay_ms, ii_delay_ms=loop.ii_delay_ms, ib_delay_ms=loop.ib_delay_ms
        )
    )
    state = afferents.initial_state(lf[:, None], target_force[:, None], gs, gd)
    rates = state["in_flight"][:, -1, :, 0].clone()  # [B, 3]: the settled (tonic) rates
    ia = rates[:, 0]
    live = rows.afferent_loop.to(dtype)
    tonic_input = loop.afferent_input(rates)
    # Voluntary command that puts the alpha drive at the hold's activation with tonic afferents.
    voluntary_command = loop.population_inverse(activation) - tonic_input

    eff = round(loop.efferent_delay_ms / DT_MS)
    vol = round(loop.voluntary_delay_ms / DT_MS)
    command = torch.empty(steps + eff, batch, dtype=dtype)
    command[:eff] = activation
    force_trace = torch.empty(steps + vol, batch, dtype=dtype)
    force_trace[:vol] = target_force
    ia_trace = torch.empty(steps, batch, dtype=dtype)
    lf_trace = torch.empty(steps, batch, dtype=dtype)
    excitation_trace = torch.empty(steps, batch, dtype=dtype)

    rho = math.exp(-2.0 * math.pi * loop.noise_cutoff_hz * dt)
    innovation = math.sqrt(1.0 - rho**2)
    noise = torch.randn(batch, generator=generator, dtype=dtype)
    noise_cv = rows.noise_cv.to(dtype)
    voluntary = rows.voluntary.to(dtype) * dt / loop.voluntary_tau_s
    perturb = rows.perturb.to(dtype)
    ramp_s = perturbation.amplitude_deg / perturbation.velocity_deg_s

    def imposed_angle(t):
        ramp = min(max((t - perturbation.onset_s) / ramp_s, 0.0), 1.0)
        return angle0 + perturb * perturbation.amplitude_deg * ramp

    force = target_force
    for k in range(steps):
        t = k * dt
        # Spinal population stage, sent now, reaching the muscle after the efferent delay; with
        # the afferent loop off the afferent input stays at its tonic value.
        afferent_input = live * loop.afferent_input(rates) + (1.0 - live) * tonic_input
        drive = loop.population(afferent_input + voluntary_command)
        noise = rho * noise + innovation * torch.randn(batch, generator=generator, dtype=dtype)
        command[k + eff] = (drive * (1.0 + noise_cv * noise)).clamp(0.0, 1.0)
        excitation = command[k]
        lf_start = lf
        for j in range(SUBSTEPS):
            ts = t + (j + 1) * sub_dt
            activation = muscle.activation_step(activation, excitation, sub_dt)
            mtu = muscle.mtu_length(imposed_angle(ts))
            force = muscle.tendon_force_at(mtu, lf)
            lf = lf + sub_dt * muscle.fibre_velocity(activation, lf, force)
        force = muscle.tendon_force_at(mtu, lf)
        rates, state = afferents(state, lf[:, None], ((lf - lf_start) / dt)[:, None], force[:, None], gs, gd)
        rates = rates[:, :, 0]
        ia = rates[:, 0]
        force_trace[k + vol] = force
        # Slow voluntary loop: integrate the delayed torque error (as a fraction of the maximum).
        voluntary_command = voluntary_command + voluntary * (target_force - force_trace[k]) / max_force
        ia_trace[k], lf_trace[k], excitation_trace[k] = ia, lf, excitation

    torque = force_trace[vol:] * muscle.peak_force_n * muscle.moment_arm_m
    return {
        "torque_nm": torque.T.numpy(),
        "ia_pps": ia_trace.T.numpy(),
        "fibre_l0": lf_trace.T.numpy(),
        "excitation": excitation_trace.T.numpy(),
        "max_torque_nm": (max_force * muscle.peak_force_n * muscle.moment_arm_m).numpy(),
        "hold_fibre_l0": muscle.hold(angle0, target_force)[0].numpy(),
    }


# ------------------------------------------------------------------------- analysis
def band_sd(torque: np.ndarray, fs: float, band=TREMOR_BAND_HZ) -> np.ndarray:
    """SD [B] of each row of ``torque`` [B, T] after a zero-phase 4th-order Butterworth band-pass."""
    sos = scipy.signal.butter(4, band, btype="bandpass", fs=fs, output="sos")
    filtered = scipy.signal.sosfiltfilt(sos, scipy.signal.detrend(torque, axis=-1), axis=-1)
    return filtered.std(axis=-1)


def spectrum(torque: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray]:
    """Welch power spectral density (Nm^2/Hz) of each row [B, T], 0.5 Hz resolution or finer."""
    nperseg = min(torque.shape[-1], int(2 * fs))
    return scipy.signal.welch(scipy.signal.detrend(torque, axis=-1), fs=fs, nperseg=nperseg, axis=-1)


def hold_lengths(muscle: Muscle, loop: Loop) -> torch.Tensor:
    """Fascicle length (L0) of the target hold at each of `ANGLES_DEG`."""
    angles = torch.tensor(ANGLES_DEG, dtype=torch.float64)
    return muscle.hold(angles, loop.target_fraction * muscle.max_force(angles))[0]


def rule_gammas(muscle: Muscle, loop: Loop) -> dict[str, list[float]]:
    """Gamma-static (pps) of each rule at each of `ANGLES_DEG`."""
    lengths = hold_lengths(muscle, loop)
    neutral = lengths[ANGLES_DEG.index(0.0)]
    return {rule: [round(float(g), 6) for g in gamma_static_for(rule, lengths, neutral, loop)] for rule in GAMMA_RULES}


def build_rows(
    muscle: Muscle, loop: Loop, trials: int, sweep_gammas: tuple[float, ...] = (), sweep_trials: int = 1
) -> Rows:
    """Rows of the experiment. Each (angle, gamma-static) condition of the two rules gets
    ``trials`` noisy holds with the afferent loop on and one noise-free ramp-and-hold with
    the loop on; each angle gets ``trials`` noisy holds and one ramp-and-hold with the loop
    off (the afferent input held at its tonic value, the voluntary command set to give the
    same alpha drive: the gamma drive has no effect, so the loop-off rows serve both rules).
    ``sweep_gammas`` adds conditions with these gamma-static drives at every angle
    (``sweep_trials`` holds each)."""
    gammas = rule_gammas(muscle, loop)
    conditions: dict[tuple[float, float], int] = {}
    for i, angle in enumerate(ANGLES_DEG):
        for rule in GAMMA_RULES:
            conditions[(angle, gammas[rule][i])] = max(conditions.get((angle, gammas[rule][i]), 0), trials)
        for gamma in sweep_gammas:
            conditions[(angle, float(gamma))] = max(conditions.get((angle, float(gamma)), 0), sweep_trials)
    columns = {
        name: []
        for name in ("angle_deg", "gamma_static", "gamma_dynamic", "afferent_loop", "noise_cv", "perturb", "voluntary")
    }
    meta = []

    def add(angle, gamma, kind, loop_on):
        hold = kind == "hold"
        values = {
            "angle_deg": angle,
            "gamma_static": gamma,
            "gamma_dynamic": loop.gamma_dynamic_pps,
            "afferent_loop": 1.0 if loop_on else 0.0,
            "noise_cv": loop.noise_cv if hold else 0.0,
            "perturb": 0.0 if hold else 1.0,
            "voluntary": 1.0 if hold else 0.0,
        }
        for name, value in values.items():
            columns[name].append(value)
        meta.append({"angle": angle, "gamma_static": gamma, "kind": kind, "loop": loop_on})

    for (angle, gamma), count in conditions.items():
        for _ in range(count):
            add(angle, gamma, "hold", True)
        add(angle, gamma, "reflex", True)
    for angle in ANGLES_DEG:
        for _ in range(trials):
            add(angle, loop.gamma_static_pps, "hold", False)
        add(angle, loop.gamma_static_pps, "reflex", False)
    tensors = {name: torch.tensor(values, dtype=torch.float64) for name, values in columns.items()}
    return Rows(**tensors, meta=meta)


def analyse(
    rows: Rows, traces: dict[str, np.ndarray], loop: Loop, perturbation: Perturbation, settle_s: float = SETTLE_S
) -> dict:
    """The measures of every (angle, gamma-static) condition (module docstring), arranged as
    ``conditions`` (angle x rule) and ``gamma_sweep`` (angle x gamma-static)."""
    fs = 1000.0 / DT_MS
    settle = round(settle_s * fs)
    onset = round(perturbation.onset_s * fs)
    window = round(REFLEX_WINDOW_S * fs)
    torque = traces["torque_nm"]

    def pick(kind, loop_on, angle, gamma=None):
        return [
            i
            for i, m in enumerate(rows.meta)
            if m["kind"] == kind
            and m["loop"] == loop_on
            and m["angle"] == angle
            and (gamma is None or m["gamma_static"] == gamma)
        ]

    def measure(angle, gamma):
        on, off = pick("hold", True, angle, gamma), pick("hold", False, angle)
        (reflex_on,), (reflex_off,) = pick("reflex", True, angle, gamma), pick("reflex", False, angle)
        hold_on = torque[on, settle:]
        max_torque = float(traces["max_torque_nm"][on[0]])
        sd_on, sd_off = band_sd(hold_on, fs), band_sd(torque[off, settle:], fs)
        freqs, psd = spectrum(hold_on, fs)
        mean_psd = psd.mean(axis=0)
        search = (freqs >= PEAK_SEARCH_HZ[0]) & (freqs <= PEAK_SEARCH_HZ[1])
        reflex = torque[reflex_on, onset : onset + window] - torque[reflex_off, onset : onset + window]
        ia_rise = traces["ia_pps"][reflex_on, onset : onset + window] - traces["ia_pps"][reflex_on, onset - 1]
        peak = int(np.argmax(reflex))
        above = np.nonzero(reflex > 0.1 * reflex[peak])[0] if reflex[peak] > 0 else np.array([])
        return {
            "angle_deg": angle,
            "angle_label": ANGLE_LABELS[ANGLES_DEG.index(angle)],
            "gamma_static_pps": gamma,
            "gamma_dynamic_pps": loop.gamma_dynamic_pps,
            "hold_fascicle_l0": float(traces["hold_fibre_l0"][on[0]]),
            "max_torque_nm": max_torque,
            "mean_torque_pct_max": float(100.0 * hold_on.mean() / max_torque),
            "tremor_sd_nm": float(sd_on.mean()),
            "tremor_sd_sem_nm": float(sd_on.std(ddof=1) / math.sqrt(len(sd_on))) if len(sd_on) > 1 else 0.0,
            "tremor_pct_of_mean_torque": float(100.0 * sd_on.mean() / hold_on.mean()),
            "tremor_sd_ia_loop_off_nm": float(sd_off.mean()),
            "tremor_peak_hz": float(freqs[search][np.argmax(mean_psd[search])]),
            "mean_ia_pps": float(traces["ia_pps"][on, settle:].mean()),
            "reflex_amplitude_nm": float(max(reflex[peak], 0.0)),
            "reflex_peak_latency_ms": float(peak * DT_MS),
            "reflex_onset_latency_ms": float(above[0] * DT_MS) if len(above) else None,
            "reflex_ia_rise_pps": float(ia_rise.max()),
            "trials": len(on),
            "_psd": (freqs, mean_psd),
            "_reflex": reflex,
        }

    measured = {}
    for m in rows.meta:
        key = (m["angle"], m["gamma_static"])
        if m["loop"] and m["kind"] == "hold" and key not in measured:
            measured[key] = measure(*key)
    return {"measured": measured}


def arrange(measured: dict, gammas: dict[str, list[float]], sweep_gammas: tuple[float, ...]) -> dict:
    """``conditions`` (rule x angle) and ``gamma_sweep`` (angle x gamma) from the measures."""
    conditions = [
        {"gamma_rule": rule, **measured[(angle, gammas[rule][i])]}
        for rule in GAMMA_RULES
        for i, angle in enumerate(ANGLES_DEG)
    ]
    sweep = [measured[(angle, float(g))] for angle in ANGLES_DEG for g in sweep_gammas]
    return {"conditions": conditions, "gamma_sweep": sweep}


def trends(conditions: list[dict]) -> dict:
    """Whether each claim of the paper holds: monotonic in angle, short (plantarflexed) to long."""
    out = {}
    for rule in GAMMA_RULES:
        rows = sorted((c for c in conditions if c["gamma_rule"] == rule), key=lambda c: c["angle_deg"])
        tremor = [c["tremor_sd_nm"] for c in rows]
        reflex = [c["reflex_amplitude_nm"] for c in rows]
        out[rule] = {
            "tremor_rises_as_muscle_shortens": all(a > b for a, b in itertools.pairwise(tremor)),
            "reflex_falls_as_muscle_shortens": all(a < b for a, b in itertools.pairwise(reflex)),
            "tremor_short_over_long": tremor[0] / tremor[-1],
            "reflex_short_over_long": reflex[0] / reflex[-1],
        }
    return out


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conditions, sweep = result["conditions"], result["gamma_sweep"]
    fig, axes = plt.subplots(1, 4 if sweep else 3, figsize=(18 if sweep else 14, 4.2))
    styles = {
        "constant": ("tab:gray", "o", "constant gamma"),
        "length_dependent": ("tab:red", "s", "length-dependent gamma-static"),
    }
    xlabel = "ankle angle (deg; + = dorsiflexed, muscle longer)"
    for rule in GAMMA_RULES:
        color, marker, label = styles[rule]
        rows = [c for c in conditions if c["gamma_rule"] == rule]
        angles = [c["angle_deg"] for c in rows]
        axes[0].errorbar(
            angles,
            [c["tremor_sd_nm"] for c in rows],
            yerr=[c["tremor_sd_sem_nm"] for c in rows],
            color=color,
            marker=marker,
            label=label,
            capsize=3,
        )
        axes[1].plot(angles, [c["reflex_amplitude_nm"] for c in rows], color=color, marker=marker, label=label)
        for c, ls in zip(rows, ("-", "--", ":"), strict=True):
            if rule == "constant" or c["angle_deg"] != 0.0:
                freqs, psd = c["_psd"]
                keep = (freqs >= 1) & (freqs <= 25)
                axes[2].semilogy(
                    freqs[keep], psd[keep], color=color, ls=ls, label=f"{label}, {c['angle_deg']:+.0f} deg"
                )
    off = [c for c in conditions if c["gamma_rule"] == GAMMA_RULES[0]]
    axes[0].plot(
        [c["angle_deg"] for c in off],
        [c["tremor_sd_ia_loop_off_nm"] for c in off],
        color="k",
        ls=":",
        marker="x",
        label="afferent loop off",
    )
    axes[0].set(xlabel=xlabel, ylabel="torque SD, 4-12 Hz (Nm)", title="physiological tremor (30 % MVC hold)")
    axes[1].set(xlabel=xlabel, ylabel="reflex torque peak (Nm)", title="stretch reflex (4 deg at 150 deg/s)")
    axes[2].set(xlabel="frequency (Hz)", ylabel="torque PSD (Nm$^2$/Hz)", title="torque spectra, afferent loop on")
    axes[2].axvspan(*TREMOR_BAND_HZ, color="k", alpha=0.06)
    for ax in axes[:2]:
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7)
    axes[2].legend(fontsize=6)
    if sweep:
        for angle, color in zip(ANGLES_DEG, ("tab:blue", "tab:green", "tab:orange"), strict=True):
            rows = sorted((c for c in sweep if c["angle_deg"] == angle), key=lambda c: c["gamma_static_pps"])
            gs = [c["gamma_static_pps"] for c in rows]
            label = f"{angle:+.0f} deg (fascicle {rows[0]['hold_fascicle_l0']:.2f} L0)"
            axes[3].plot(gs, [c["tremor_sd_nm"] for c in rows], color=color, marker="o", label=f"tremor, {label}")
        twin = axes[3].twinx()
        for angle, color in zip(ANGLES_DEG, ("tab:blue", "tab:green", "tab:orange"), strict=True):
            rows = sorted((c for c in sweep if c["angle_deg"] == angle), key=lambda c: c["gamma_static_pps"])
            twin.plot(
                [c["gamma_static_pps"] for c in rows],
                [c["reflex_amplitude_nm"] for c in rows],
                color=color,
                ls="--",
                marker="^",
                mfc="none",
            )
        twin.set_ylabel("reflex torque peak (Nm), dashed")
        twin.set_ylim(bottom=0)
        axes[3].set(xlabel="gamma-static (pps)", ylabel="tremor SD 4-12 Hz (Nm), solid", title="gamma-static sweep")
        axes[3].set_ylim(bottom=0)
        axes[3].legend(fontsize=6, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(
    duration_s: float = 12.0,
    trials: int = 4,
    seed: int = 0,
    muscle: Muscle | None = None,
    loop: Loop | None = None,
    perturbation: Perturbation | None = None,
    sweep_gammas: tuple[float, ...] = SWEEP_GAMMAS,
    sweep_trials: int = 2,
) -> dict:
    """Build, simulate and analyse the whole experiment; the JSON-ready summary (plus arrays
    under ``_`` keys for the figure)."""
    muscle, loop, perturbation = muscle or Muscle(), loop or Loop(), perturbation or Perturbation()
    if duration_s < SETTLE_S + 1.0 or duration_s < perturbation.onset_s + REFLEX_WINDOW_S:
        raise ValueError(f"duration must be at least {SETTLE_S + 1.0} s")
    start = time.perf_counter()
    gammas = rule_gammas(muscle, loop)
    rows = build_rows(muscle, loop, trials, sweep_gammas, sweep_trials)
    traces = simulate(rows, duration_s, muscle, loop, perturbation, seed)
    result = arrange(analyse(rows, traces, loop, perturbation)["measured"], gammas, sweep_gammas)
    result["trends"] = trends(result["conditions"])
    result["wall_clock_s"] = time.perf_counter() - start
    result["settings"] = {
        "duration_s": duration_s,
        "trials": trials,
        "seed": seed,
        "settle_s": SETTLE_S,
        "sweep_gammas_pps": list(sweep_gammas),
        "sweep_trials": sweep_trials,
        "muscle": asdict(muscle),
        "loop": asdict(loop),
        "perturbation": asdict(perturbation),
        "angles_deg": list(ANGLES_DEG),
        "rows": len(rows.meta),
    }
    return result


def public(result: dict) -> dict:
    """``result`` without the arrays kept for plotting."""

    def strip(items):
        return [{k: v for k, v in c.items() if not k.startswith("_")} for c in items]

    return {**result, "conditions": strip(result["conditions"]), "gamma_sweep": strip(result["gamma_sweep"])}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--duration", type=float, default=12.0, help="seconds per hold, the first 2 s excluded (default 12)"
    )
    parser.add_argument("--trials", type=int, default=4, help="noisy holds per condition (default 4)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--gamma-slope",
        type=float,
        default=Loop.gamma_slope_pps_per_l0,
        help="length-dependent rule: gamma-static rise per L0 of shortening (pps/L0)",
    )
    parser.add_argument(
        "--ia-presynaptic",
        type=float,
        default=Loop.ia_presynaptic,
        help="presynaptic control of the Ia input (sigmoid-argument units)",
    )
    parser.add_argument("--no-sweep", action="store_true", help="skip the gamma-static sweep at each angle")
    parser.add_argument("--output-dir", type=Path, default=Path(__file__).resolve().parents[1] / "docs")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    loop = Loop(gamma_slope_pps_per_l0=args.gamma_slope, ia_presynaptic=args.ia_presynaptic)
    result = run(
        args.duration,
        args.trials,
        args.seed,
        loop=loop,
        sweep_gammas=() if args.no_sweep else SWEEP_GAMMAS,
        sweep_trials=max(1, args.trials // 2),
    )
    args.output_dir.mkdir(parents=True, exist_ok=True)
    plot(result, args.output_dir / "tremor.png")
    summary = public(result)
    figure = (args.output_dir / "tremor.png").resolve()
    root = Path(__file__).resolve().parents[1]
    summary["figure"] = str(figure.relative_to(root)) if figure.is_relative_to(root) else str(figure)
    (args.output_dir / "tremor.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
